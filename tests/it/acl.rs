//! Redis ACL users: a command the user may not run is named in a short
//! error with the `ACL SETUSER` line that grants it (not reported as an
//! authentication failure), and the minimal ACL that docs/SAFETY.md lists
//! per command is enough.

use std::path::Path;
use std::process::Output;

use crate::support::cli::{assert_same, export, kbdump, run, snap, stderr, stdout};
use crate::support::redis::RedisServer;
use crate::support::seed::{seed_kato, SeedSpec};

const PASSWORD: &str = "acl-s3cret-pw";

/// Creates `user` with password [`PASSWORD`] and `rules`; returns its URL.
fn acl_user(server: &RedisServer, user: &str, rules: &[&str]) -> String {
    let mut cmd = ::redis::cmd("ACL");
    cmd.arg("SETUSER")
        .arg(user)
        .arg("reset")
        .arg("on")
        .arg(format!(">{PASSWORD}"));
    for rule in rules {
        cmd.arg(*rule);
    }
    let _: () = run(server, &mut cmd);
    format!("redis://{user}:{PASSWORD}@127.0.0.1:{}/0", server.port())
}

/// Every command but `command`, on every key.
fn all_but(server: &RedisServer, user: &str, command: &str) -> String {
    acl_user(server, user, &["~*", "+@all", &format!("-{command}")])
}

/// Exit 2, one short message that names the user, the refused command and
/// the server, and how to grant it; never the password.
#[track_caller]
fn assert_refused(out: &Output, server: &RedisServer, user: &str, command: &str) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {}\nstderr: {err}",
        stdout(out)
    );
    let expected = format!(
        "user {user} lacks permission for {} on 127.0.0.1:{} (ACL NOPERM)",
        command.to_uppercase(),
        server.port()
    );
    assert!(err.contains(&expected), "wanted {expected:?} in: {err}");
    let grant = format!("ACL SETUSER {user} +{command}");
    assert!(err.contains(&grant), "wanted {grant:?} in: {err}");
    assert!(!err.contains("authentication failed"), "{err}");
    assert!(err.len() < 1_000, "{} bytes of error: {err}", err.len());
    assert!(!err.contains(PASSWORD) && !stdout(out).contains(PASSWORD));
}

fn seeded() -> RedisServer {
    let server = RedisServer::start();
    seed_kato(&mut server.client(), &SeedSpec::small());
    server
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn export_names_the_command_the_user_may_not_run() {
    let server = seeded();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.kbd");
    for command in ["dump", "scan", "info"] {
        let user = format!("no{command}");
        let url = all_but(&server, &user, command);
        let args = ["export", "-q", "--redis", &url, "--method", "scan"];
        let result = kbdump(&[&args[..], &["-o", path(&out)]].concat());
        assert_refused(&result, &server, &user, command);
        assert!(
            !out.exists(),
            "no archive is left after a refused {command}"
        );
    }
}

#[test]
fn kbs_and_diff_name_the_command_the_user_may_not_run() {
    let server = seeded();
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&server, dir.path(), "all.kbd", &[]);
    let url = all_but(&server, "noscan", "scan");
    assert_refused(
        &kbdump(&["kbs", "--redis", &url]),
        &server,
        "noscan",
        "scan",
    );
    assert_refused(
        &kbdump(&["diff", path(&archive), "--redis", &url]),
        &server,
        "noscan",
        "scan",
    );
    let url = all_but(&server, "nodump", "dump");
    assert_refused(
        &kbdump(&["diff", path(&archive), "--json", "--redis", &url]),
        &server,
        "nodump",
        "dump",
    );
}

#[test]
fn restore_names_the_command_the_user_may_not_run() {
    let source = seeded();
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&source, dir.path(), "all.kbd", &[]);
    let target = RedisServer::start();
    for (command, extra) in [
        ("restore", &[][..]),
        ("info", &[][..]),
        ("dump", &["--mode", "replace"][..]),
    ] {
        let user = format!("no{command}");
        let url = all_but(&target, &user, command);
        let mut args = vec!["restore", path(&archive), "-q", "--redis", &url];
        args.extend_from_slice(extra);
        assert_refused(&kbdump(&args), &target, &user, command);
    }
    let keys: Vec<Vec<u8>> = run(&target, ::redis::cmd("KEYS").arg("*"));
    assert!(keys.is_empty(), "nothing was written: {} keys", keys.len());
}

#[test]
fn copy_names_the_command_the_user_may_not_run_on_either_side() {
    let source = seeded();
    let target = RedisServer::start();
    let from = all_but(&source, "nodump", "dump");
    let to = format!("redis://127.0.0.1:{}/0", target.port());
    assert_refused(
        &kbdump(&["copy", "-q", "--from", &from, "--to", &to]),
        &source,
        "nodump",
        "dump",
    );
    let from = format!("redis://127.0.0.1:{}/0", source.port());
    let to = all_but(&target, "norestore", "restore");
    assert_refused(
        &kbdump(&["copy", "-q", "--from", &from, "--to", &to]),
        &target,
        "norestore",
        "restore",
    );
}

#[test]
fn a_wrong_password_is_still_an_authentication_error() {
    let server = seeded();
    acl_user(&server, "alice", &["~*", "+@all"]);
    let url = format!("redis://alice:not-it@127.0.0.1:{}/0", server.port());
    let out = kbdump(&["kbs", "--redis", &url]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains("not-it") && !err.contains("lacks permission"));
}

/// The ACL rules docs/SAFETY.md lists for `command` (the row of its
/// "Minimal ACL per command" table whose first cell is `` `command` ``).
pub(crate) fn documented_rules(command: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/SAFETY.md"))
        .expect("docs/SAFETY.md");
    let section = doc
        .split("\n## Minimal ACL per command")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/SAFETY.md has the section Minimal ACL per command");
    let row = format!("| `{command}` |");
    let line = section
        .lines()
        .find(|l| l.starts_with(&row))
        .unwrap_or_else(|| panic!("docs/SAFETY.md has no row {row}"));
    let cell = line[row.len()..].split('|').next().unwrap().trim();
    cell.trim_matches('`')
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// A user with exactly the documented rules of `command`.
fn documented_user(server: &RedisServer, user: &str, command: &str) -> String {
    let rules = documented_rules(command);
    acl_user(
        server,
        user,
        &rules.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

#[track_caller]
fn assert_ok(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what} as the documented user: {}{}",
        stdout(out),
        stderr(out)
    );
}

#[test]
fn the_documented_minimal_acl_is_enough() {
    let source = RedisServer::start();
    seed_kato(&mut source.client(), &SeedSpec::small());
    // No selector: every key of the db, KATO's global and foreign keys too.
    let expected = snap(&source);
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("all.kbd");

    let url = documented_user(&source, "kbdump-kbs", "kbs");
    assert_ok(&kbdump(&["kbs", "--redis", &url]), "kbs");
    let url = documented_user(&source, "kbdump-export", "export");
    assert_ok(
        &kbdump(&["export", "-q", "--redis", &url, "-o", path(&archive)]),
        "export",
    );
    // The snapshot's rules: the archive is point-in-time, no fallback.
    let url = documented_user(&source, "kbdump-snapshot", "export --method rdb");
    let snapshot = dir.path().join("snapshot.kbd");
    let args = ["export", "-q", "--redis", &url, "--method", "rdb"];
    assert_ok(
        &kbdump(&[&args[..], &["-o", path(&snapshot)]].concat()),
        "export --method rdb",
    );
    let url = documented_user(&source, "kbdump-export", "export");
    // A kb_id named literally is probed (its STM stream with EXISTS).
    let one = dir.path().join("one.kbd");
    let args = ["export", "-q", "--redis", &url, "--kb", "node0_kato"];
    assert_ok(
        &kbdump(&[&args[..], &["-o", path(&one)]].concat()),
        "export --kb",
    );

    // Missing mode into an empty server, then again (everything kept).
    let target = RedisServer::start();
    let url = documented_user(&target, "kbdump-restore", "restore");
    for _ in 0..2 {
        let out = kbdump(&["restore", path(&archive), "-q", "--redis", &url]);
        assert_ok(&out, "restore");
    }
    assert_same(&expected, &snap(&target));
    let url = documented_user(&target, "kbdump-diff", "diff");
    assert_ok(&kbdump(&["diff", path(&archive), "--redis", &url]), "diff");

    // Replace mode over a changed key, with its undo archive.
    let _: () = run(
        &target,
        ::redis::cmd("SET")
            .arg("node0_kato:frequency:changed")
            .arg("1"),
    );
    let url = documented_user(&target, "kbdump-replace", "restore --mode replace");
    let undo = dir.path().join("undo.kbd");
    let out = kbdump(&[
        "restore",
        path(&archive),
        "-q",
        "--mode",
        "replace",
        "--yes",
        "--undo",
        path(&undo),
        "--redis",
        &url,
    ]);
    assert_ok(&out, "restore --mode replace");
    assert!(undo.exists());

    let url = documented_user(&target, "kbdump-dry", "restore --dry-run");
    let out = kbdump(&["restore", path(&archive), "--dry-run", "--redis", &url]);
    assert_ok(&out, "restore --dry-run");

    // Every key re-created with commands.
    let fresh = RedisServer::start();
    let url = documented_user(&fresh, "kbdump-logical", "restore --logical");
    let out = kbdump(&[
        "restore",
        path(&archive),
        "-q",
        "--logical",
        "--redis",
        &url,
    ]);
    assert_ok(&out, "restore --logical");
    assert_same(&expected, &snap(&fresh));
}
