//! Regression tests from an adversarial review: export into a pipe closed
//! early or onto a full disk, kb_ids that prefix one another, credentials
//! in malformed URLs, `verify` on a directory, keys that expire while a
//! restore is writing them.

mod cli_support;
mod support;

use std::io::Read;
use std::process::{Command, Stdio};

use cli_support::*;
use kbdump::archive::Record;
use kbdump::export::now_ms;
use kbdump::kato::Category;
use kbdump::progress::NoProgress;
use kbdump::restore::{restore, Mode, RestoreOptions, SourceItem, Target};
use support::redis::RedisServer;

/// A server holding about `mib` MiB of incompressible values in kb `r`.
fn incompressible(mib: usize) -> RedisServer {
    let server = RedisServer::start();
    let mut conn = server.client();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut pipe = ::redis::pipe();
    for i in 0..mib * 1024 {
        let value: Vec<u8> = (0..1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        pipe.cmd("SET")
            .arg(format!("r:metadata:{i}"))
            .arg(value)
            .ignore();
        if i % 1000 == 999 {
            pipe.query::<()>(&mut conn).unwrap();
            pipe = ::redis::pipe();
        }
    }
    pipe.query::<()>(&mut conn).unwrap();
    server
}

#[test]
fn export_into_a_pipe_closed_early_is_not_an_error() {
    let server = incompressible(24);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(["export", "--quiet", "--redis", &server.url(), "-o", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut head = [0u8; 100];
    stdout.read_exact(&mut head).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
}

#[test]
fn export_onto_a_full_disk_says_so_and_leaves_no_file() {
    let server = incompressible(8);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("full.kbd");
    // `ulimit -f` makes writes past 1 MiB fail with EFBIG, like a full disk.
    let script = format!(
        "trap '' XFSZ; ulimit -f 1024; exec '{}' export --quiet --redis '{}' -o '{}'",
        env!("CARGO_BIN_EXE_kbdump"),
        server.url(),
        target.display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("File too large"),
        "the error must say what went wrong: {}",
        stderr(&out)
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[test]
fn a_kb_export_leaves_unmarked_keys_of_a_longer_kb_to_that_kb() {
    let server = RedisServer::start();
    for key in ["a:emotives:1", "a:weird", "a:b:emotives:2", "a:b:weird"] {
        run::<()>(&server, ::redis::cmd("SET").arg(key).arg("v"));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = export(&server, dir.path(), "a.kbd", &["--kb", "a"]);
    let listed = stdout(&ok(&["ls", file.to_str().unwrap()]));
    let keys: std::collections::BTreeSet<&str> = listed.lines().collect();
    assert_eq!(
        keys,
        ["a:emotives:1", "a:weird"].into_iter().collect(),
        "kb a:b's keys must not be exported as kb a's"
    );
    // Nor does diff count them as extra keys of kb a.
    let out = kbdump(&[
        "diff",
        file.to_str().unwrap(),
        "--redis",
        &server.url(),
        "--json",
    ]);
    let report = json_with_code(&out, 0);
    assert_eq!(report["identical"], true, "{report}");
    // Without a longer kb_id, an unmarked key with more colons stays with `a`.
    run::<()>(&server, ::redis::cmd("DEL").arg("a:b:emotives:2"));
    let file = export(&server, dir.path(), "a2.kbd", &["--kb", "a"]);
    let listed = stdout(&ok(&["ls", file.to_str().unwrap()]));
    assert_eq!(listed.lines().count(), 3, "{listed}");
}

#[test]
fn credentials_in_a_url_without_scheme_are_not_printed() {
    let out = kbdump(&[
        "export",
        "--redis",
        "user:secret@127.0.0.1:1",
        "-o",
        "/nonexistent-dir/x.kbd",
    ]);
    let out2 = kbdump(&["kbs", "--redis", "user:secret@127.0.0.1:1"]);
    for out in [out, out2] {
        assert_eq!(out.status.code(), Some(2));
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!all.contains("secret"), "{all}");
    }
}

#[test]
fn verify_of_a_directory_is_an_input_error_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let out = kbdump(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stderr(&out).contains("directory"), "{}", stderr(&out));
}

/// A record that expires `in_ms` from now, with a payload from `server`.
fn expiring_record(server: &RedisServer, key: &str, in_ms: i64) -> Record {
    let mut conn = server.client();
    let mut cmd = ::redis::cmd("SADD");
    cmd.arg(key);
    for i in 0..50 {
        cmd.arg(format!("member-{i}"));
    }
    let () = cmd.query(&mut conn).unwrap();
    let payload: Vec<u8> = ::redis::cmd("DUMP").arg(key).query(&mut conn).unwrap();
    let () = ::redis::cmd("DEL").arg(key).query(&mut conn).unwrap();
    Record {
        key: key.as_bytes().to_vec(),
        kb_id: b"kb".to_vec(),
        category: Category::Emotives,
        redis_type: "set".into(),
        expire_at_ms: Some(now_ms() + in_ms),
        payload,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_that_expires_while_waiting_to_be_written_is_expired_not_failed() {
    let server = RedisServer::start();
    for logical in [false, true] {
        for mode in [Mode::Missing, Mode::Replace] {
            let key = format!("kb:emotives:{logical}-{mode:?}");
            let record = expiring_record(&server, &key, 300);
            // A live key of the same name: replace mode must not delete it
            // for an archived value that has expired.
            run::<()>(&server, ::redis::cmd("SET").arg(&key).arg("live"));
            let target = Target::connect(&server.url()).await.unwrap();
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            tx.send(SourceItem::Record(record)).await.unwrap();
            let options = RestoreOptions {
                mode,
                force_logical: logical,
                ..RestoreOptions::default()
            };
            // The batch is written only when the source ends, after expiry.
            let closer = tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(600)).await;
                drop(tx);
            });
            let summary = restore(&target, rx, &options, None, &NoProgress)
                .await
                .unwrap();
            closer.await.unwrap();
            let total = summary.total();
            assert_eq!(
                (total.expired, total.failed, total.restored),
                (1, 0, 0),
                "logical {logical}, {mode:?}: {summary:?}"
            );
            let value: Option<String> = run(&server, ::redis::cmd("GET").arg(&key));
            assert_eq!(
                value.as_deref(),
                Some("live"),
                "logical {logical}, {mode:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_that_expires_while_being_re_created_is_expired_not_failed() {
    let server = RedisServer::start();
    // Big enough that re-creating it with commands takes a while.
    let key = "kb:emotives:big";
    let mut conn = server.client();
    for chunk in 0..100 {
        let mut cmd = ::redis::cmd("SADD");
        cmd.arg(key);
        for i in 0..2000 {
            cmd.arg(format!("member-{chunk}-{i}-{}", "x".repeat(40)));
        }
        let () = cmd.query(&mut conn).unwrap();
    }
    let payload: Vec<u8> = ::redis::cmd("DUMP").arg(key).query(&mut conn).unwrap();
    let () = ::redis::cmd("DEL").arg(key).query(&mut conn).unwrap();
    let target = Target::connect(&server.url()).await.unwrap();
    // Measure how long one logical restore of it takes here.
    let timed = |expire_at_ms| Record {
        key: key.as_bytes().to_vec(),
        kb_id: b"kb".to_vec(),
        category: Category::Emotives,
        redis_type: "set".into(),
        expire_at_ms,
        payload: payload.clone(),
    };
    let options = RestoreOptions {
        force_logical: true,
        max_elements: 100,
        ..RestoreOptions::default()
    };
    let started = now_ms();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(SourceItem::Record(timed(None))).await.unwrap();
    drop(tx);
    let summary = restore(&target, rx, &options, None, &NoProgress)
        .await
        .unwrap();
    assert_eq!(summary.total().restored, 1);
    let took = now_ms() - started;
    let () = ::redis::cmd("DEL").arg(key).query(&mut conn).unwrap();
    // Expires about halfway through the re-creation.
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(SourceItem::Record(timed(Some(now_ms() + took / 2 + 5))))
        .await
        .unwrap();
    drop(tx);
    let summary = restore(&target, rx, &options, None, &NoProgress)
        .await
        .unwrap();
    let total = summary.total();
    assert_eq!(total.failed, 0, "took {took} ms: {summary:?}");
    let exists: i64 = ::redis::cmd("EXISTS").arg(key).query(&mut conn).unwrap();
    assert_eq!(exists, 0);
}

/// A backup cut short (interrupted copy) has no index; restore still puts
/// back every intact block, then names the truncation and exits 2.
#[test]
fn a_truncated_archive_restores_its_intact_blocks() {
    let source = RedisServer::start();
    support::seed::seed_kato(&mut source.client(), &support::seed::SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let full = export(&source, dir.path(), "full.kbd", &["--kb", "node0_kato"]);
    let bytes = std::fs::read(&full).unwrap();
    let cut = dir.path().join("cut.kbd");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let out = kbdump(&["verify", cut.to_str().unwrap()]);
    assert!(stdout(&out).contains("truncated"), "{}", stdout(&out));

    let target = RedisServer::start();
    let (code, report) = restore_json(&cut, &target, &[]);
    assert_eq!(code, Some(2), "{report}");
    let failures = report["failures"].to_string();
    assert!(failures.contains("truncated"), "{report}");
    let restored = total(&report, "restored");
    assert!(restored > 0, "intact blocks come back: {report}");
    let on_target: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut target.client())
        .unwrap();
    assert_eq!(on_target.len() as u64, restored);
    let mut source_conn = source.client();
    for key in on_target {
        let a: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query(&mut source_conn)
            .unwrap();
        let b: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query(&mut target.client())
            .unwrap();
        let (a, b) = (
            kbdump::dump::decode(&a).unwrap(),
            kbdump::dump::decode(&b).unwrap(),
        );
        assert!(a.logically_eq(&b), "{}", show(&key));
    }
}

/// JSON printed into a pipe that the reader closes early (`| head`) is not
/// an error either.
#[test]
fn json_into_a_pipe_closed_early_is_not_an_error() {
    let server = RedisServer::start();
    let mut pipe = ::redis::pipe();
    for i in 0..3000 {
        pipe.cmd("SET")
            .arg(format!("kb{i}:frequency:p"))
            .arg(1)
            .ignore();
    }
    pipe.query::<()>(&mut server.client()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(["kbs", "--json", "--redis", &server.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut head = [0u8; 10];
    stdout.read_exact(&mut head).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}
