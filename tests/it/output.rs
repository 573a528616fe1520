//! Where kbdump writes: archives into files (private to their owner,
//! never a rename over a device, FIFO or directory), streams into FIFOs and
//! devices, and reports into stdout that may be a pipe closed early or a
//! full device; `--quiet` prints nothing on success.

use std::io::Cursor;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::cli::*;
use crate::support::redis::RedisServer;
use kbdump::format::archive::IndexedArchive;

/// A server with `n` small keys of kb `out_kato`.
fn small_server(n: usize) -> RedisServer {
    let server = RedisServer::start();
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET")
            .arg(format!("out_kato:emotives:{i:04}"))
            .arg(format!("value {i}"))
            .ignore();
    }
    pipe.query::<()>(&mut server.client()).unwrap();
    server
}

fn export_to(server: &RedisServer, output: &str, extra: &[&str]) -> Output {
    let url = server.url();
    let mut args = vec!["export", "--quiet", "--redis", &url, "-o", output];
    args.extend_from_slice(extra);
    kbdump(&args)
}

/// Keys in a complete archive held in memory.
fn archive_keys(bytes: Vec<u8>) -> u64 {
    let archive = IndexedArchive::open(Cursor::new(bytes)).expect("a complete archive");
    archive.index().blocks.iter().map(|b| b.meta.records).sum()
}

/// Waits for a child that should end on its own.
fn wait_briefly(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{child:?} never ended");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn export_streams_into_fifos_and_devices_instead_of_renaming_over_them() {
    let server = small_server(100);
    let dir = tempfile::tempdir().unwrap();

    // A FIFO: whoever reads it gets the whole archive, and it stays a FIFO.
    let fifo = dir.path().join("pipe");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader = Command::new("cat")
        .arg(&fifo)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = export_to(&server, fifo.to_str().unwrap(), &["--force"]);
    let read = wait_briefly(reader);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert_eq!(archive_keys(read.stdout), 100);

    // A character device (a private /dev/null): written to, not replaced.
    let null = dir.path().join("null");
    let made = Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status();
    if made.is_ok_and(|s| s.success()) {
        let out = export_to(&server, null.to_str().unwrap(), &["--force"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let kind = std::fs::metadata(&null).unwrap().file_type();
        assert!(kind.is_char_device(), "{kind:?}");
    }
    // /dev/null needs no --force: a device is a stream, not a file to keep.
    let out = export_to(&server, "/dev/null", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());

    // `-o /dev/stdout` means stdout, like `-o -`.
    let out = export_to(&server, "/dev/stdout", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(archive_keys(out.stdout), 100);

    let mut expected = vec!["pipe".to_string()];
    if null.exists() {
        expected.push("null".into());
    }
    expected.sort();
    assert_eq!(entries(dir.path()), expected, "no temporary file is left");
}

#[test]
fn export_onto_a_directory_is_refused_even_with_force_and_leaves_nothing() {
    let server = small_server(10);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.kbd");
    std::fs::create_dir(&target).unwrap();
    let out = export_to(&server, target.to_str().unwrap(), &["--force"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is a directory"), "{err}");
    assert!(err.contains(target.to_str().unwrap()), "{err}");
    assert_eq!(entries(dir.path()), ["out.kbd"]);
    assert!(target.is_dir());
    assert_eq!(entries(&target), Vec::<String>::new());
}

#[test]
fn archives_and_undo_files_are_readable_by_their_owner_only() {
    let server = small_server(10);
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&server, dir.path(), "a.kbd", &[]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&archive), 0o600);
    // Over an existing, more open file too.
    std::fs::write(dir.path().join("b.kbd"), b"old").unwrap();
    std::fs::set_permissions(
        dir.path().join("b.kbd"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let b = dir.path().join("b.kbd");
    let out = export_to(&server, b.to_str().unwrap(), &["--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(mode(&b), 0o600);
    let undo = dir.path().join("undo.kbd");
    restore_ok(
        &archive,
        &server,
        &[
            "--mode",
            "replace",
            "--yes",
            "--undo",
            undo.to_str().unwrap(),
        ],
    );
    assert_eq!(mode(&undo), 0o600);
}

/// Every command that prints a report, as text and as JSON: (name, args).
fn reporting_commands(server: &RedisServer, archive: &Path) -> Vec<Vec<String>> {
    let (url, file) = (server.url(), archive.to_str().unwrap().to_string());
    let with = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut all = Vec::new();
    for json in [false, true] {
        let mut list = vec![
            with(&["kbs", "--redis", &url]),
            with(&["ls", &file, "--long"]),
            with(&["cat", &file]),
            with(&["inspect", &file]),
            with(&["verify", &file]),
            with(&["diff", &file, "--redis", &url]),
            with(&["restore", &file, "--redis", &url]),
        ];
        if json {
            list.iter_mut().for_each(|args| args.push("--json".into()));
        }
        all.extend(list);
    }
    all
}

#[test]
fn a_report_into_a_closed_pipe_is_a_quiet_success() {
    let server = small_server(2000);
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&server, dir.path(), "a.kbd", &[]);
    for args in reporting_commands(&server, &archive) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kbdump"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the command writes its first byte.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

#[test]
fn a_report_onto_a_full_device_fails_with_a_message_not_a_panic() {
    let server = small_server(20);
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&server, dir.path(), "a.kbd", &[]);
    for args in reporting_commands(&server, &archive) {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_kbdump"))
            .args(&args)
            .stdout(Stdio::from(full))
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("cannot write to stdout: No space left on device"),
            "{args:?}: {err}"
        );
    }
}

/// `kbdump --quiet ARGS`: exit code, stdout, stderr.
fn quiet(args: &[&str]) -> (Option<i32>, String, String) {
    let out = kbdump(&[&["--quiet"], args].concat());
    (out.status.code(), stdout(&out), stderr(&out))
}

#[test]
fn quiet_commands_print_nothing_when_they_succeed() {
    let (source, target) = (small_server(50), RedisServer::start());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("q.kbd");
    let (f, s, t) = (file.to_str().unwrap(), source.url(), target.url());
    let undo = dir.path().join("undo.kbd");
    let copy_undo = dir.path().join("copy-undo.kbd");
    let runs: Vec<Vec<&str>> = vec![
        vec!["export", "--redis", &s, "-o", f],
        vec!["verify", f],
        vec!["restore", f, "--redis", &t],
        vec!["diff", f, "--redis", &t],
        vec![
            "restore",
            f,
            "--redis",
            &t,
            "--mode",
            "replace",
            "--yes",
            "--undo",
            undo.to_str().unwrap(),
        ],
        vec![
            "copy",
            "--from",
            &s,
            "--to",
            &t,
            "--mode",
            "replace",
            "--yes",
            "--undo",
            copy_undo.to_str().unwrap(),
        ],
    ];
    for args in runs {
        let (code, out, err) = quiet(&args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert_eq!((out.as_str(), err.as_str()), ("", ""), "{args:?}");
    }
    // Into stdout the archive is the output, and nothing else is printed.
    let out = kbdump(&["--quiet", "export", "--redis", &s, "-o", "-"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!out.stdout.is_empty());
    assert_eq!(stderr(&out), "");
    // What is not a success is still said.
    let _: () = run(
        &target,
        redis::cmd("SET").arg("out_kato:emotives:0000").arg("x"),
    );
    let (code, out, _) = quiet(&["diff", f, "--redis", &t]);
    assert_eq!(code, Some(1));
    assert!(out.contains("changed"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn quiet_rebuild_and_mirror_print_nothing_when_they_succeed() {
    use crate::support::clickhouse as chs;
    let server = chs::server();
    let db = server.database("quiet_output").await;
    chs::create_patterns_table(&server.client(), &db).await;
    chs::insert_patterns(&server.client(), &db, &chs::seed_rows("qkb", 20, 1)).await;
    let (ch, redis) = (server.url(&db), RedisServer::start());
    let r = redis.url();
    for args in [
        vec!["rebuild", "--clickhouse", &ch, "--redis", &r],
        vec!["mirror", "--create", "--clickhouse", &ch, "--redis", &r],
    ] {
        let (code, out, err) = tokio::task::block_in_place(|| quiet(&args));
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert_eq!((out.as_str(), err.as_str()), ("", ""), "{args:?}");
    }
}
