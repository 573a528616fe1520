//! Safety rails and findings of incident reviews: diff compares only what
//! the archive covered, a missing-mode rerun after an out-of-memory run
//! counts the keys already there as kept, and error messages say their
//! cause once.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::cli::*;
use crate::support::redis::{info_field, RedisServer};
use crate::support::seed::{seed_kato, Category, SeedSpec, Seeded};
use tempfile::TempDir;

fn seeded(spec: &SeedSpec) -> (RedisServer, Seeded) {
    let server = RedisServer::start();
    let seeded = seed_kato(&mut server.client(), spec);
    (server, seeded)
}

#[test]
fn diff_compares_only_what_the_archive_selected() {
    let (server, seeded) = seeded(&SeedSpec::small());
    let dir = TempDir::new().unwrap();
    let archive = export(
        &server,
        dir.path(),
        "emotives.kbd",
        &["--category", "emotives"],
    );
    let (code, report) = diff_json(&archive, &server, &[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert!(diff_keys(&report).is_empty(), "{report:#}");

    // A real difference within the covered selection is still found.
    let lost = seeded
        .of_category(Category::Emotives)
        .into_iter()
        .next()
        .unwrap();
    let _: i64 = run(&server, redis::cmd("DEL").arg(&lost));
    let extra = b"node0_kato:emotives:added-later".to_vec();
    let _: () = run(&server, redis::cmd("SET").arg(&extra).arg("[]"));
    let (code, report) = diff_json(&archive, &server, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    let want: BTreeSet<_> = [(lost, "missing".to_string()), (extra, "extra".to_string())].into();
    assert_eq!(diff_keys(&report), want, "{report:#}");

    // The user's selection narrows it further; it never widens it.
    let (code, report) = diff_json(&archive, &server, &["--category", "metadata"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert!(diff_keys(&report).is_empty(), "{report:#}");

    // A --match export covers only its keys.
    let matched = export(&server, dir.path(), "m.kbd", &["--match", "*:metadata:*"]);
    let (code, report) = diff_json(&matched, &server, &[]);
    assert_eq!(code, Some(0), "{report:#}");
}

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

/// `maxmemory` set to what the server uses now plus `extra` bytes.
fn cap_memory(server: &RedisServer, extra: u64) {
    let used: u64 = info_field(&server.info("memory"), "used_memory")
        .unwrap()
        .parse()
        .unwrap();
    let set = |name: &str, value: String| {
        let _: () = run(server, redis::cmd("CONFIG").arg("SET").arg(name).arg(value));
    };
    set("maxmemory-policy", "noeviction".into());
    set("maxmemory", (used + extra).to_string());
}

#[test]
fn a_missing_mode_rerun_after_running_out_of_memory_keeps_what_is_there() {
    let (source, _) = seeded(&SeedSpec::default());
    let dir = TempDir::new().unwrap();
    let archive = export(&source, dir.path(), "all.kbd", &[]);
    for extra in [&[][..], &["--logical"][..]] {
        let target = RedisServer::start();
        cap_memory(&target, 256 * 1024);
        let (code, first) = restore_json(&archive, &target, extra);
        assert_eq!(code, Some(2), "{first:#}");
        let present = snap(&target);
        assert!(
            !present.is_empty() && total(&first, "failed") > 0,
            "{first:#}"
        );

        // Still short of memory: what is there is kept; only keys that are
        // not there fail.
        let (code, again) = restore_json(&archive, &target, extra);
        assert_eq!(code, Some(2), "{again:#}");
        assert_eq!(
            total(&again, "kept"),
            present.len() as u64,
            "{extra:?}: {again:#}"
        );
        for failure in again["failures"].as_array().unwrap() {
            let key = kbdump::kato::parse_display_bytes(failure["what"].as_str().unwrap());
            assert!(
                !present.contains_key(&key),
                "{extra:?}: present key failed: {failure}"
            );
            assert!(
                failure["reason"].as_str().unwrap().contains("OOM"),
                "{failure}"
            );
        }

        // With memory: everything else comes back, nothing fails.
        let _: () = run(
            &target,
            redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0),
        );
        let (code, last) = restore_json(&archive, &target, extra);
        assert_eq!(code, Some(0), "{last:#}");
        assert_eq!(total(&last, "kept"), present.len() as u64, "{last:#}");
        assert_eq!(total(&last, "failed"), 0, "{last:#}");
    }
}
