//! `export --method rdb|auto|scan`: the server's snapshot from its
//! replication stream. On every flavour it yields the records a SCAN
//! export yields (type, payload, expiry) and round-trips through restore;
//! it is one instant (writes made during the transfer are not in it);
//! selections and the strict `--kb` check hold; `auto` falls back to SCAN
//! with a note when the server refuses a snapshot, and a transfer that
//! breaks off is an error that leaves no archive.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kbdump::format::archive::{Header, IndexedArchive, Record};
use serde_json::Value as Json;
use tempfile::TempDir;

use crate::support::cli::*;
use crate::support::redis::{info_field, Flavor, RedisServer};
use crate::support::seed::{assert_same_data, seed_kato, SeedSpec};

/// Header and records (by key) of a seekable archive.
pub(crate) fn read_archive(path: &Path) -> (Header, BTreeMap<Vec<u8>, Record>) {
    let mut archive = IndexedArchive::open(std::fs::File::open(path).unwrap()).unwrap();
    let header = archive.header().clone();
    let mut records = BTreeMap::new();
    for entry in archive.index().blocks.clone() {
        for record in archive.read_block(&entry).unwrap().records().unwrap() {
            let record = record.unwrap();
            assert!(
                records.insert(record.key.clone(), record).is_none(),
                "a key twice"
            );
        }
    }
    (header, records)
}

/// `kbdump --json export --method METHOD` of `server` into `dir/name`:
/// exit code, report, stderr.
fn export_by(
    server_url: &str,
    dir: &Path,
    name: &str,
    method: &str,
    extra: &[&str],
) -> (Option<i32>, Json, String) {
    let path = dir.join(name);
    let args = [
        &[
            "export",
            "--redis",
            server_url,
            "--method",
            method,
            "-o",
            path.to_str().unwrap(),
        ][..],
        extra,
    ]
    .concat();
    json_outcome(&args)
}

#[track_caller]
fn exported(server: &RedisServer, dir: &Path, name: &str, method: &str, extra: &[&str]) -> Json {
    let (code, report, err) = export_by(&server.url(), dir, name, method, extra);
    assert_eq!(code, Some(0), "export --method {method} {extra:?}: {err}");
    report
}

/// The records of two archives agree key by key: kb_id, category, type,
/// payload, and expiry within the slack of a SCAN read's PTTL.
#[track_caller]
pub(crate) fn assert_same_records(a: &BTreeMap<Vec<u8>, Record>, b: &BTreeMap<Vec<u8>, Record>) {
    let only: Vec<String> = a
        .keys()
        .filter(|k| !b.contains_key(*k))
        .chain(b.keys().filter(|k| !a.contains_key(*k)))
        .take(10)
        .map(|k| show(k))
        .collect();
    assert!(only.is_empty(), "keys in one archive only: {only:?}");
    for (key, x) in a {
        let y = &b[key];
        let k = show(key);
        assert_eq!((&x.kb_id, x.category), (&y.kb_id, y.category), "{k}");
        assert_eq!(x.redis_type, y.redis_type, "{k}");
        assert_eq!(x.payload, y.payload, "{k}: payloads differ");
        match (x.expire_at_ms, y.expire_at_ms) {
            (None, None) => {}
            (Some(p), Some(q)) => assert!((p - q).abs() <= EXPIRY_SLACK_MS, "{k}: {p} vs {q}"),
            other => panic!("{k}: expiry {other:?}"),
        }
    }
}

/// A `redis-server` or `valkey-server` of `flavor` with the full KATO-like
/// dataset (large collections, TTLs, global and foreign keys, two dbs).
fn seeded(flavor: Flavor) -> RedisServer {
    let server = RedisServer::start_flavor(flavor);
    seed_kato(&mut server.client(), &SeedSpec::default());
    let mut conn = server.client();
    let _: () = redis::cmd("SELECT").arg(1).query(&mut conn).unwrap();
    let _: () = redis::cmd("SET")
        .arg("node0_kato:emotives:db1")
        .arg("another db")
        .query(&mut conn)
        .unwrap();
    server
}

#[test]
fn rdb_equals_scan_key_by_key_and_round_trips_on_every_flavor() {
    for flavor in Flavor::ALL {
        let server = seeded(flavor);
        let dir = TempDir::new().unwrap();
        let before = snap(&server);
        let rdb = exported(&server, dir.path(), "rdb.kbd", "rdb", &[]);
        let scan = exported(&server, dir.path(), "scan.kbd", "scan", &[]);
        assert_eq!(rdb["method"], "rdb", "{flavor:?}: {rdb:#}");
        assert_eq!(scan["method"], "scan", "{flavor:?}");
        assert_eq!(rdb["keys"], scan["keys"], "{flavor:?}");
        assert_eq!(rdb["groups"], scan["groups"], "{flavor:?}");
        assert_eq!(rdb["left_out"], scan["left_out"], "{flavor:?}");
        let (rdb_header, rdb_records) = read_archive(&dir.path().join("rdb.kbd"));
        let (scan_header, scan_records) = read_archive(&dir.path().join("scan.kbd"));
        assert_eq!(rdb_records.len(), before.len(), "{flavor:?}: db 0 only");
        assert_same_records(&rdb_records, &scan_records);
        let at = rdb_header.snapshot_at_ms.expect("a snapshot's instant");
        assert_eq!(rdb["snapshot_at_ms"], at, "{flavor:?}");
        assert!(scan_header.snapshot_at_ms.is_none(), "{flavor:?}");
        assert_eq!(rdb_header.source.version, scan_header.source.version);
        let shown = stdout(&ok(&[
            "inspect",
            dir.path().join("rdb.kbd").to_str().unwrap(),
        ]));
        assert!(
            shown.contains("(the server's snapshot: point-in-time)"),
            "{shown}"
        );

        let target = RedisServer::start_flavor(flavor);
        restore_ok(&dir.path().join("rdb.kbd"), &target, &[]);
        assert_same_data(&before, &snap(&target), EXPIRY_SLACK_MS);
    }
}

/// The keys (with their kb_id and category) an archive holds.
fn placed(path: &Path) -> Vec<(String, String, String)> {
    let (_, records) = read_archive(path);
    records
        .values()
        .map(|r| (show(&r.key), show(&r.kb_id), r.category.to_string()))
        .collect()
}

#[test]
fn selections_take_the_same_keys_as_scan_and_a_kb_that_names_nothing_fails() {
    let server = seeded(Flavor::Redis70);
    let dir = TempDir::new().unwrap();
    let selections: [&[&str]; 5] = [
        &["--kb", "node0_kato"],
        &["--category", "emotives"],
        &["--global"],
        &["--kb", "node*", "--category", "emotives", "--global"],
        &["--kb", "node1_kato", "--foreign"],
    ];
    for (i, selection) in selections.iter().enumerate() {
        let (rdb, scan) = (format!("rdb{i}.kbd"), format!("scan{i}.kbd"));
        let by_rdb = exported(&server, dir.path(), &rdb, "rdb", selection);
        let by_scan = exported(&server, dir.path(), &scan, "scan", selection);
        let keys = placed(&dir.path().join(&rdb));
        assert!(!keys.is_empty(), "{selection:?}");
        assert_eq!(keys, placed(&dir.path().join(&scan)), "{selection:?}");
        assert_eq!(by_rdb["left_out"], by_scan["left_out"], "{selection:?}");
        assert_eq!(by_rdb["groups"], by_scan["groups"], "{selection:?}");
    }

    for method in ["rdb", "auto"] {
        let (code, _, err) = export_by(
            &server.url(),
            dir.path(),
            "none.kbd",
            method,
            &["--kb", "node0_kat"],
        );
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("--kb node0_kat matches no kb_id"), "{err}");
        assert!(err.contains("node0_kato"), "suggests the kb_ids: {err}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("none"))
            .collect();
        assert!(left.is_empty(), "{method}: {left:?}");
    }
}

fn acl_user(server: &RedisServer, user: &str, rules: &[&str]) -> String {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER")
        .arg(user)
        .arg("reset")
        .arg("on")
        .arg(">pw-of-the-test");
    for rule in rules {
        cmd.arg(*rule);
    }
    let _: () = run(server, &mut cmd);
    format!(
        "redis://{user}:pw-of-the-test@127.0.0.1:{}/0",
        server.port()
    )
}

#[test]
fn auto_falls_back_to_scan_with_a_note_when_the_server_refuses_a_snapshot() {
    let server = RedisServer::start();
    seed_kato(&mut server.client(), &SeedSpec::small());
    let dir = TempDir::new().unwrap();
    let url = acl_user(&server, "nosync", &["~*", "+@all", "-sync", "-psync"]);
    let (code, report, err) = export_by(&url, dir.path(), "auto.kbd", "auto", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(report["method"], "scan", "{report:#}");
    assert!(err.contains("note: reading with SCAN"), "{err}");
    assert!(
        err.contains("SYNC") && err.contains("NOPERM"),
        "names the cause: {err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let (header, records) = read_archive(&dir.path().join("auto.kbd"));
    assert!(header.snapshot_at_ms.is_none());
    assert_eq!(records.len(), snap(&server).len());

    // --method rdb does not fall back: exit 2, no archive.
    let (code, _, err) = export_by(&url, dir.path(), "rdb.kbd", "rdb", &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("refused SYNC") && err.contains("--method"),
        "{err}"
    );
    assert!(!dir.path().join("rdb.kbd").exists());

    // A server whose SYNC is renamed away (as managed services do).
    let renamed = RedisServer::builder()
        .config("rename-command SYNC \"\"")
        .config("rename-command PSYNC \"\"")
        .start();
    seed_kato(&mut renamed.client(), &SeedSpec::small());
    let (code, report, err) = export_by(&renamed.url(), dir.path(), "renamed.kbd", "auto", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(report["method"], "scan");
    assert!(
        err.contains("note: reading with SCAN") && err.contains("SYNC"),
        "{err}"
    );
    assert_eq!(report["keys"], snap(&renamed).len());
}

/// Values of `size` bytes that do not compress (the RDB is as large as
/// they are) under `count` keys of kb_id `bulk_kato`.
fn bulk(server: &RedisServer, count: usize, size: usize) {
    let mut conn = server.client();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for chunk in (0..count).collect::<Vec<_>>().chunks(200) {
        let mut pipe = redis::pipe();
        for i in chunk {
            let value: Vec<u8> = (0..size / 8).flat_map(|_| noise().to_le_bytes()).collect();
            pipe.cmd("SET")
                .arg(format!("bulk_kato:emotives:{i:06}"))
                .arg(value)
                .ignore();
        }
        let _: () = pipe.query(&mut conn).unwrap();
    }
}

pub(crate) fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Full syncs the server has served (`INFO stats`).
pub(crate) fn full_syncs(server: &RedisServer) -> u64 {
    info_field(&server.info("stats"), "sync_full")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[track_caller]
pub(crate) fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_server_killed_mid_transfer_is_an_error_and_leaves_no_archive() {
    let mut server = RedisServer::start();
    // 40 MB: far more than the buffers between the socket and the pacing.
    bulk(&server, 5_000, 8_000);
    let dir = TempDir::new().unwrap();
    let target = dir.path().join("cut.kbd");
    let url = server.url();
    // Slow enough (about 25 s) to be caught midway.
    let args = ["export", "--redis", &url, "-o", target.to_str().unwrap()];
    let child = spawn(&[&args[..], &["--max-keys-per-sec", "200"]].concat());
    wait_for("the snapshot to start", || full_syncs(&server) > 0);
    std::thread::sleep(Duration::from_millis(500));
    server.kill();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("could not be read to its end"), "{err}");
    assert!(err.contains("broke off after"), "{err}");
    assert!(
        !err.contains("reading with SCAN"),
        "no fallback after a partial transfer: {err}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");

    // Into a stream: the archive ends without its index, never complete.
    let mut server = RedisServer::start();
    bulk(&server, 5_000, 8_000);
    let url = server.url();
    let args = [
        "export",
        "--redis",
        &url,
        "-o",
        "-",
        "--max-keys-per-sec",
        "200",
    ];
    let child = spawn(&args);
    wait_for("the snapshot to start", || full_syncs(&server) > 0);
    std::thread::sleep(Duration::from_millis(500));
    server.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let cut = IndexedArchive::open(std::io::Cursor::new(&out.stdout));
    assert!(
        matches!(cut, Err(kbdump::format::archive::Error::Truncated { .. })),
        "{} bytes: {:?}",
        out.stdout.len(),
        cut.err()
    );
}

#[test]
fn writes_during_the_transfer_are_not_in_the_archive() {
    let server = RedisServer::start();
    seed_kato(&mut server.client(), &SeedSpec::small());
    bulk(&server, 1_500, 2_000);
    let before = snap(&server);
    let dir = TempDir::new().unwrap();
    let target = dir.path().join("pit.kbd");
    let url = server.url();
    let args = ["--json", "export", "--redis", &url, "--method", "rdb"];
    let paced = ["--max-keys-per-sec", "1000", "-o", target.to_str().unwrap()];
    let child = spawn(&[&args[..], &paced].concat());
    wait_for("the snapshot to start", || full_syncs(&server) > 0);
    // The server forked as it took SYNC: everything from here is later.
    let mut conn = server.client();
    let late: Vec<String> = (0..50)
        .map(|i| format!("node0_kato:emotives:late{i}"))
        .collect();
    for key in &late {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("late")
            .query(&mut conn)
            .unwrap();
    }
    let changed: Vec<&Vec<u8>> = before
        .keys()
        .filter(|k| k.starts_with(b"bulk_kato:"))
        .collect();
    for key in changed.iter().rev().take(200) {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("changed")
            .query(&mut conn)
            .unwrap();
    }
    let gone = changed[0];
    let _: () = redis::cmd("DEL").arg(gone).query(&mut conn).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(full_syncs(&server), 1, "one snapshot served");

    let (_, records) = read_archive(&target);
    for key in &late {
        assert!(
            !records.contains_key(key.as_bytes()),
            "{key} was written after the snapshot"
        );
    }
    assert!(
        records.contains_key(gone.as_slice()),
        "deleted after the snapshot"
    );
    let restored = RedisServer::start();
    restore_ok(&target, &restored, &[]);
    assert_same_data(&before, &snap(&restored), EXPIRY_SLACK_MS);
}

#[test]
fn signals_stop_a_snapshot_export_and_leave_no_file() {
    let server = RedisServer::start();
    bulk(&server, 2_000, 4_000);
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let dir = TempDir::new().unwrap();
        let target = dir.path().join("out.kbd");
        let url = server.url();
        let syncs = full_syncs(&server);
        let args = ["export", "--redis", &url, "--method", "rdb", "-o"];
        let slow = ["--max-keys-per-sec", "200"];
        let child = spawn(&[&args[..], &[target.to_str().unwrap()], &slow].concat());
        wait_for("the snapshot to start", || full_syncs(&server) > syncs);
        std::thread::sleep(Duration::from_millis(300));
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "slow to stop: {err}"
        );
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(err.contains("no archive was written"), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

/// The read limits pace a snapshot too: the run takes at least the time
/// its limit allows for what it read (a lower bound: never a timing that
/// a slow machine could miss).
#[test]
fn read_limits_pace_a_snapshot() {
    let server = RedisServer::start();
    bulk(&server, 300, 1_000);
    let dir = TempDir::new().unwrap();
    for (name, limit, floor) in [
        ("keys.kbd", ["--max-keys-per-sec", "100"], 2.5),
        ("bytes.kbd", ["--max-bytes-per-sec", "100k"], 2.5),
    ] {
        let started = Instant::now();
        let report = exported(&server, dir.path(), name, "rdb", &limit);
        let took = started.elapsed().as_secs_f64();
        assert_eq!(report["keys"], 300);
        assert!(took >= floor, "{limit:?}: 300 keys of 1 kB in {took:.2} s");
    }
}
