//! Running the kbdump binary and reading its JSON reports, and whole-server
//! snapshots with expiries as absolute instants (so two snapshots taken
//! seconds apart compare equal when nothing changed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kbdump::kato::{display_bytes, parse_display_bytes};
use serde_json::Value as Json;

use crate::support::redis::RedisServer;
use crate::support::seed::{self, Snapshot};

/// Expiry instants measured on two reads may differ by this much.
pub const EXPIRY_SLACK_MS: i64 = 1_500;

pub fn kbdump(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(args)
        .output()
        .expect("run kbdump")
}

/// Runs kbdump with `input` on stdin.
pub fn kbdump_stdin(args: &[&str], input: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(args)
        .stdin(Stdio::from(std::fs::File::open(input).unwrap()))
        .output()
        .expect("run kbdump")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `kbdump --json ARGS`: its exit code, the JSON on stdout (`Null`
/// when there is none) and stderr.
pub fn json_outcome(args: &[&str]) -> (Option<i32>, Json, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Json::Null);
    (out.status.code(), json, stderr)
}

/// Asserts the exit code and returns the JSON on stdout.
#[track_caller]
pub fn json_with_code(out: &Output, code: i32) -> Json {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

#[track_caller]
pub fn ok(args: &[&str]) -> Output {
    let out = kbdump(args);
    assert!(
        out.status.success(),
        "kbdump {args:?} failed ({:?}): {}{}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    out
}

/// Exports `extra` selectors of `server` into `dir/name`.
pub fn export(server: &RedisServer, dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut args = vec![
        "export",
        "--quiet",
        "--redis",
        &server.url(),
        "-o",
        path.to_str().unwrap(),
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    args.extend(extra.iter().map(|s| s.to_string()));
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    path
}

/// `kbdump restore FILE --redis URL --json ...`, returning exit code and report.
pub fn restore_json(file: &Path, server: &RedisServer, extra: &[&str]) -> (Option<i32>, Json) {
    let url = server.url();
    let mut args = vec![
        "restore",
        file.to_str().unwrap(),
        "--redis",
        &url,
        "--json",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let out = kbdump(&args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "restore {extra:?} printed no JSON ({e}): {}{}",
            stdout(&out),
            stderr(&out)
        )
    });
    (out.status.code(), report)
}

/// A successful restore's JSON report.
#[track_caller]
pub fn restore_ok(file: &Path, server: &RedisServer, extra: &[&str]) -> Json {
    let (code, report) = restore_json(file, server, extra);
    assert_eq!(code, Some(0), "restore {extra:?}: {report:#}");
    report
}

/// Every key of the server; `pttl` holds the absolute expiry instant.
pub fn snap(server: &RedisServer) -> Snapshot {
    let mut conn = server.client();
    let before = kbdump::clock::system_now_ms();
    let mut snapshot = seed::snapshot(&mut conn);
    let after = kbdump::clock::system_now_ms();
    let now = (before + after) / 2;
    for key in snapshot.values_mut() {
        key.pttl = key.pttl.map(|ms| now + ms);
    }
    snapshot
}

#[track_caller]
pub fn assert_same(expected: &Snapshot, actual: &Snapshot) {
    seed::assert_same_data(expected, actual, EXPIRY_SLACK_MS);
}

/// The report's counters per (kb_id, category) cell.
pub fn cells(report: &Json) -> BTreeMap<(String, String), Json> {
    report["contents"]
        .as_array()
        .expect("contents")
        .iter()
        .map(|c| {
            let key = (
                c["kb_id"].as_str().unwrap().to_string(),
                c["category"].as_str().unwrap().to_string(),
            );
            (key, c.clone())
        })
        .collect()
}

/// A counter of the report's total.
pub fn total(report: &Json, field: &str) -> u64 {
    report["total"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("no total.{field} in {report:#}"))
}

/// `(key, kind)` of every key a `diff --json` lists.
pub fn diff_keys(report: &Json) -> BTreeSet<(Vec<u8>, String)> {
    report["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            (
                parse_display_bytes(k["key"].as_str().unwrap()),
                k["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `kbdump diff FILE --json` with its exit code.
pub fn diff_json(file: &Path, server: &RedisServer, extra: &[&str]) -> (Option<i32>, Json) {
    let url = server.url();
    let mut args = vec!["diff", file.to_str().unwrap(), "--redis", &url, "--json"];
    args.extend_from_slice(extra);
    let out = kbdump(&args);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("diff printed no JSON ({e}): {}", stderr(&out)));
    (out.status.code(), report)
}

pub fn show(key: &[u8]) -> String {
    display_bytes(key)
}

/// Runs one command on a server, panicking with the command on failure.
pub fn run<T: ::redis::FromRedisValue>(server: &RedisServer, cmd: &mut ::redis::Cmd) -> T {
    cmd.query(&mut server.client())
        .unwrap_or_else(|e| panic!("{:?} failed: {e}", cmd.args_iter().next()))
}

/// The snapshot restricted to keys for which `keep` holds.
pub fn only(snapshot: &Snapshot, keep: impl Fn(&[u8]) -> bool) -> Snapshot {
    snapshot
        .iter()
        .filter(|(k, _)| keep(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
