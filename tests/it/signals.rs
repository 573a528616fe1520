//! SIGINT and SIGTERM stop export, restore and copy cleanly: no temporary
//! file is left, the undo archive of a replace is complete and named, the
//! logical path's temporary keys are gone, the exit status is 130 or 143
//! and one line on stderr says what was done. SIGKILL cannot be handled,
//! but the undo archive is a write-ahead log: it still holds every key the
//! run changed.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::cli::*;
use crate::support::redis::RedisServer;
use crate::support::seed::{seed_kato, SeedSpec, Snapshot};
use crate::undo::{diverge, noise, temp_files};

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends `signal` (`INT`, `TERM`, `KILL`) to the child, with kill(1): the
/// crate forbids `unsafe`, so no libc::kill.
fn send(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[track_caller]
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Stops the server from executing writes (reads go on) for `ms`, so a run
/// is caught midway whatever the machine's speed.
fn pause_writes(server: &RedisServer, ms: u64) {
    let _: () = run(
        server,
        redis::cmd("CLIENT").arg("PAUSE").arg(ms).arg("WRITE"),
    );
}

fn finish(child: Child) -> Output {
    let out = child.wait_with_output().unwrap();
    eprintln!("{}", stderr(&out));
    out
}

/// A one-line summary on stderr that names the signal.
#[track_caller]
fn assert_one_line(out: &Output, signal: &str, mentions: &[&str]) {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains(signal), "{err}");
    for m in mentions {
        assert!(lines[0].contains(m), "{m}: {err}");
    }
}

/// A KATO-like server plus `bulk` keys of kb `bulk_kato`: a run long
/// enough to be caught midway.
fn big_kato(bulk: usize) -> RedisServer {
    let server = RedisServer::start();
    seed_kato(&mut server.client(), &SeedSpec::small());
    let mut conn = server.client();
    for chunk in (0..bulk).collect::<Vec<_>>().chunks(5000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET")
                .arg(format!("bulk_kato:emotives:{i:06}"))
                .arg(noise(*i as u64, 64))
                .ignore();
        }
        pipe.query::<()>(&mut conn).unwrap();
    }
    server
}

/// Seeds `server` like [`big_kato`] did, then makes it differ: the replace
/// overwrites some keys, creates others. Returns the snapshot before it.
fn diverged(server: &RedisServer, bulk: usize) -> Snapshot {
    let seeded = seed_kato(&mut server.client(), &SeedSpec::small());
    diverge(server, &seeded);
    let mut pipe = redis::pipe();
    for i in (0..bulk).step_by(3) {
        pipe.cmd("SET")
            .arg(format!("bulk_kato:emotives:{i:06}"))
            .arg("before")
            .ignore();
    }
    pipe.query::<()>(&mut server.client()).unwrap();
    snap(server)
}

/// Restores the undo archive and checks that the server is back to
/// `before`, key by key. Returns the restore's exit code.
fn undo_gives_back(undo: &Path, server: &RedisServer, before: &Snapshot) -> Option<i32> {
    let undo2 = undo.with_extension("undo2.kbd");
    let out = kbdump(&[
        "restore",
        undo.to_str().unwrap(),
        "--redis",
        &server.url(),
        "--mode",
        "replace",
        "--yes",
        "--undo",
        undo2.to_str().unwrap(),
        "--quiet",
    ]);
    assert_same(before, &snap(server));
    out.status.code()
}

fn no_temp_keys(server: &RedisServer) {
    let left: Vec<Vec<u8>> = run(server, redis::cmd("KEYS").arg("__kbdump_tmp:*"));
    assert!(left.is_empty(), "{} temporary keys left", left.len());
}

#[test]
fn an_interrupted_export_leaves_no_file_and_exits_with_the_signal() {
    let server = big_kato(60_000);
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.kbd");
        let url = server.url();
        let child = spawn(&["export", "--redis", &url, "-o", target.to_str().unwrap()]);
        // Writing has started once the temporary file holds data.
        wait_for("the archive to grow", || {
            temp_files(dir.path())
                .first()
                .is_some_and(|t| std::fs::metadata(t).is_ok_and(|m| m.len() > 0))
        });
        send(&child, signal);
        let out = finish(child);
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        assert_one_line(&out, &format!("SIG{signal}"), &["no archive was written"]);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

/// Starts `args` (a replace with `--undo undo`), waits until the undo file
/// exists (keys are being overwritten), holds the target's writes and sends
/// `signal`.
fn interrupt_replace(args: &[&str], undo: &Path, target: &RedisServer, signal: &str) -> Output {
    let child = spawn(args);
    wait_for("the undo archive", || undo.exists());
    pause_writes(target, 1500);
    send(&child, signal);
    finish(child)
}

#[test]
fn an_interrupted_replace_commits_its_undo_and_the_undo_gives_back_every_key() {
    const BULK: usize = 40_000;
    let source = big_kato(BULK);
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&source, dir.path(), "all.kbd", &[]);
    drop(source);
    let target = RedisServer::start();
    let before = diverged(&target, BULK);
    let undo = dir.path().join("undo.kbd");
    let url = target.url();
    // --logical: the temporary keys of keys in flight must be gone too.
    let args = [
        "restore",
        archive.to_str().unwrap(),
        "--redis",
        &url,
        "--mode",
        "replace",
        "--yes",
        "--logical",
        "--undo",
        undo.to_str().unwrap(),
    ];
    let out = interrupt_replace(&args, &undo, &target, "TERM");
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert_one_line(
        &out,
        "SIGTERM",
        &[undo.to_str().unwrap(), "kbdump restore --mode replace"],
    );
    assert!(temp_files(dir.path()).is_empty());
    no_temp_keys(&target);
    assert_ne!(snap(&target), before, "the run wrote something");
    assert_eq!(
        undo_gives_back(&undo, &target, &before),
        Some(0),
        "a complete undo"
    );
}

#[test]
fn an_interrupted_copy_commits_its_undo_and_the_undo_gives_back_every_key() {
    const BULK: usize = 40_000;
    let source = big_kato(BULK);
    let target = RedisServer::start();
    let before = diverged(&target, BULK);
    let dir = tempfile::tempdir().unwrap();
    let undo = dir.path().join("undo.kbd");
    let (from, to) = (source.url(), target.url());
    let args = [
        "copy",
        "--from",
        &from,
        "--to",
        &to,
        "--mode",
        "replace",
        "--yes",
        "--undo",
        undo.to_str().unwrap(),
    ];
    let out = interrupt_replace(&args, &undo, &target, "INT");
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_one_line(&out, "SIGINT", &[undo.to_str().unwrap()]);
    assert!(temp_files(dir.path()).is_empty());
    assert_eq!(undo_gives_back(&undo, &target, &before), Some(0));
}

/// SIGKILL: no cleanup at all, yet the undo (cut short) holds every key the
/// run overwrote or created.
#[test]
fn a_killed_replace_leaves_an_undo_that_gives_back_every_key() {
    const BULK: usize = 40_000;
    let source = big_kato(BULK);
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&source, dir.path(), "all.kbd", &[]);
    drop(source);
    let target = RedisServer::start();
    let before = diverged(&target, BULK);
    let undo = dir.path().join("undo.kbd");
    let url = target.url();
    let child = spawn(&[
        "restore",
        archive.to_str().unwrap(),
        "--redis",
        &url,
        "--mode",
        "replace",
        "--yes",
        "--undo",
        undo.to_str().unwrap(),
    ]);
    wait_for("the undo archive", || undo.exists());
    send(&child, "KILL");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), None, "killed by the signal");
    assert_ne!(snap(&target), before, "the run wrote something");
    // Cut short, so the restore of it says so (exit 2), after putting back
    // every block it holds.
    let code = undo_gives_back(&undo, &target, &before);
    assert!(matches!(code, Some(0) | Some(2)), "{code:?}");
}

/// Into stdout, an interrupted export leaves a cut archive, which readers
/// report as truncated, never a complete-looking one.
#[test]
fn an_interrupted_export_into_stdout_leaves_a_truncated_archive() {
    let server = big_kato(60_000);
    let url = server.url();
    let mut child = spawn(&["export", "--redis", &url, "-o", "-"]);
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match std::io::Read::read(&mut stdout, &mut buf) {
                Ok(0) | Err(_) => return bytes,
                Ok(n) => {
                    bytes.extend_from_slice(&buf[..n]);
                    let _ = tx.send(bytes.len());
                }
            }
        }
    });
    rx.recv().unwrap();
    let _: () = run(
        &server,
        redis::cmd("CLIENT").arg("PAUSE").arg(1500).arg("ALL"),
    );
    send(&child, "INT");
    let out = finish(child);
    let bytes = reader.join().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_one_line(&out, "SIGINT", &["cut short"]);
    let cut = kbdump::format::archive::IndexedArchive::open(std::io::Cursor::new(bytes));
    assert!(
        matches!(cut, Err(kbdump::format::archive::Error::Truncated { .. })),
        "{:?}",
        cut.err()
    );
}

/// Commands that have nothing to clean up are dropped where they are: a
/// `kbs` waiting on a paused server ends at once.
#[test]
fn other_commands_stop_at_once() {
    let server = RedisServer::start();
    let _: () = run(&server, redis::cmd("SET").arg("kb:emotives:x").arg(1));
    let _: () = run(
        &server,
        redis::cmd("CLIENT").arg("PAUSE").arg(4000).arg("ALL"),
    );
    let url = server.url();
    let child = spawn(&["kbs", "--redis", &url]);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    send(&child, "TERM");
    let out = finish(child);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited for the pause"
    );
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert_one_line(&out, "SIGTERM", &[]);
}
