//! Safety rails and findings of incident reviews: error messages say
//! their cause once.

use std::collections::BTreeMap;

use crate::support::cli::*;
use crate::support::redis::RedisServer;
use tempfile::TempDir;

/// Segments of a message (split at ": " and "; ") that appear twice.
fn repeated_segments(message: &str) -> Vec<String> {
    let mut seen = BTreeMap::new();
    for segment in message
        .trim()
        .split([':', ';'])
        .map(str::trim)
        .filter(|s| s.len() > 8)
    {
        *seen.entry(segment.to_string()).or_insert(0) += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(s, _)| s)
        .collect()
}

#[test]
fn error_messages_say_their_cause_once() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("missing.kbd");
    let missing = missing.to_str().unwrap();
    let server = RedisServer::start();
    let url = server.url();
    let archive = export(&server, dir.path(), "x.kbd", &[]);
    let archive = archive.to_str().unwrap();
    let unreachable = format!(
        "redis://127.0.0.1:{}",
        crate::support::clickhouse::free_port()
    );
    let a_dir = dir.path().join("a-directory");
    std::fs::create_dir(&a_dir).unwrap();
    let a_dir = a_dir.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["inspect", missing],
        vec!["verify", missing],
        vec!["restore", missing, "--redis", &url],
        vec!["diff", missing, "--redis", &url],
        vec!["kbs", "--redis", &unreachable],
        vec!["export", "-o", a_dir, "--force", "--redis", &url],
        vec!["export", "-o", "/nonexistent-dir/x.kbd", "--redis", &url],
        vec![
            "restore", archive, "--redis", &url, "--mode", "replace", "--yes", "--undo", a_dir,
        ],
    ];
    for args in cases {
        let out = kbdump(&args);
        let message = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {message}");
        assert!(
            repeated_segments(&message).is_empty(),
            "{args:?} repeats {:?}: {message}",
            repeated_segments(&message)
        );
    }
}
