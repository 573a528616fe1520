//! Passwords off the command line: `--password-file`, `REDISCLI_AUTH`
//! (and `--clickhouse-password-file`, `CLICKHOUSE_PASSWORD`), their order
//! after a password in the URL, an ACL user named in the URL without a
//! password, and no password ever in a message, a report or an archive.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::cli::{stderr, stdout};
use crate::support::clickhouse as chs;
use crate::support::redis::RedisServer;
use crate::support::seed::{seed_kato, SeedSpec};

const PASSWORD: &str = "pw-from-a-file-4711";

/// kbdump with `env` set and `REDISCLI_AUTH`/`CLICKHOUSE_PASSWORD` cleared
/// unless given, so the caller's environment does not leak in.
fn kbdump_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kbdump"));
    cmd.args(args)
        .env_remove("REDISCLI_AUTH")
        .env_remove("CLICKHOUSE_PASSWORD")
        .env_remove("REDIS_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run kbdump")
}

fn kbdump(args: &[&str]) -> Output {
    kbdump_env(args, &[])
}

/// A mode-0600 file holding `text`.
fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
}

#[track_caller]
fn assert_auth_failed(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "stdout: {}", stdout(out));
    let err = stderr(out);
    assert!(err.contains("authentication failed"), "{err}");
    err
}

#[track_caller]
fn assert_no_secret(text: &str, secret: &str) {
    assert!(!text.contains(secret), "{secret:?} leaked into: {text}");
}

fn protected() -> RedisServer {
    let server = RedisServer::builder().requirepass(PASSWORD).start();
    seed_kato(&mut server.client(), &SeedSpec::small());
    server
}

fn bare_url(server: &RedisServer) -> String {
    format!("redis://127.0.0.1:{}/0", server.port())
}

#[test]
fn password_file_and_rediscli_auth_authenticate() {
    let server = protected();
    let dir = tempfile::tempdir().unwrap();
    let url = bare_url(&server);
    // First line only; the trailing newline (LF or CRLF) is not part of it.
    let file = secret_file(dir.path(), "pw", &format!("{PASSWORD}\r\nsecond line\n"));
    assert_ok(&kbdump(&[
        "kbs",
        "--redis",
        &url,
        "--password-file",
        path(&file),
    ]));
    assert_ok(&kbdump_env(
        &["kbs", "--redis", &url],
        &[("REDISCLI_AUTH", PASSWORD)],
    ));
    // REDIS_URL without a password plus a password file: the cron recipe.
    assert_ok(&kbdump_env(
        &["kbs", "--password-file", path(&file)],
        &[("REDIS_URL", &url)],
    ));

    // Nothing given: the error says where a password can come from.
    let err = assert_auth_failed(&kbdump(&["kbs", "--redis", &url]));
    assert!(
        err.contains("--password-file") && err.contains("REDISCLI_AUTH"),
        "{err}"
    );
}

#[test]
fn url_password_beats_password_file_beats_rediscli_auth() {
    let server = protected();
    let dir = tempfile::tempdir().unwrap();
    let good = secret_file(dir.path(), "good", PASSWORD);
    let bad = secret_file(dir.path(), "bad", "not-the-password-1\n");
    let url = bare_url(&server);
    let url_good = server.url();
    let url_bad = format!("redis://:not-the-password-2@127.0.0.1:{}/0", server.port());
    let env_bad = [("REDISCLI_AUTH", "not-the-password-3")];
    let env_good = [("REDISCLI_AUTH", PASSWORD)];

    assert_ok(&kbdump_env(
        &["kbs", "--redis", &url_good, "--password-file", path(&bad)],
        &env_bad,
    ));
    let err = assert_auth_failed(&kbdump_env(
        &["kbs", "--redis", &url_bad, "--password-file", path(&good)],
        &env_good,
    ));
    assert!(err.contains("password in the URL"), "{err}");
    assert_ok(&kbdump_env(
        &["kbs", "--redis", &url, "--password-file", path(&good)],
        &env_bad,
    ));
    let err = assert_auth_failed(&kbdump_env(
        &["kbs", "--redis", &url, "--password-file", path(&bad)],
        &env_good,
    ));
    assert!(
        err.contains(&format!("--password-file {}", path(&bad))),
        "{err}"
    );
    let err = assert_auth_failed(&kbdump_env(&["kbs", "--redis", &url], &env_bad));
    assert!(err.contains("REDISCLI_AUTH"), "{err}");
    for secret in [
        "not-the-password-1",
        "not-the-password-2",
        "not-the-password-3",
    ] {
        assert_no_secret(&err, secret);
    }
}

/// An ACL user with every command and key, and this password.
fn full_access_user(server: &RedisServer, name: &str, password: &str) {
    let _: () = ::redis::cmd("ACL")
        .arg("SETUSER")
        .arg(name)
        .arg("on")
        .arg(format!(">{password}"))
        .arg("~*")
        .arg("+@all")
        .query(&mut server.client())
        .unwrap();
}

#[test]
fn an_acl_user_named_in_the_url_takes_its_password_from_a_file() {
    let server = protected();
    full_access_user(&server, "alice", &format!("{PASSWORD}-alice"));
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(dir.path(), "alice", &format!("{PASSWORD}-alice\n"));
    let url = format!("redis://alice@127.0.0.1:{}/0", server.port());
    assert_ok(&kbdump(&[
        "kbs",
        "--redis",
        &url,
        "--password-file",
        path(&file),
    ]));
    assert_ok(&kbdump_env(
        &["kbs", "--redis", &url],
        &[("REDISCLI_AUTH", &format!("{PASSWORD}-alice"))],
    ));
    // The default user's password is not alice's: AUTH went out as alice.
    let default_pw = secret_file(dir.path(), "default", PASSWORD);
    let err = assert_auth_failed(&kbdump(&[
        "kbs",
        "--redis",
        &url,
        "--password-file",
        path(&default_pw),
    ]));
    assert!(err.contains("alice"), "{err}");
    // A user without any password is a usage error, not a silent login as
    // the default user.
    let out = kbdump(&["kbs", "--redis", &url]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("user alice") && err.contains("--password-file"),
        "{err}"
    );
}

#[test]
fn bad_password_files_are_named() {
    let server = protected();
    let dir = tempfile::tempdir().unwrap();
    let url = bare_url(&server);
    let missing = dir.path().join("nope");
    let out = kbdump(&["kbs", "--redis", &url, "--password-file", path(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(path(&missing)), "{}", stderr(&out));

    let empty = secret_file(dir.path(), "empty", "\n");
    let out = kbdump(&["kbs", "--redis", &url, "--password-file", path(&empty)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("empty"), "{}", stderr(&out));

    // Readable by others: works, with a warning that says how to fix it.
    let open = secret_file(dir.path(), "open", PASSWORD);
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = kbdump(&["kbs", "--redis", &url, "--password-file", path(&open)]);
    assert_ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains("warning") && err.contains("chmod 600") && err.contains(path(&open)),
        "{err}"
    );
}

#[test]
fn passwords_never_show_in_reports_messages_or_archives() {
    let server = protected();
    full_access_user(&server, "bob", PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(dir.path(), "pw", PASSWORD);
    let url = format!("redis://bob@127.0.0.1:{}/0", server.port());
    let archive = dir.path().join("x.kbd");
    let with_pw = ["--redis", &url, "--password-file", path(&file)];
    let runs: Vec<Vec<&str>> = vec![
        vec!["--json", "kbs"],
        vec!["kbs"],
        vec!["--json", "export", "-o", path(&archive)],
        vec!["--json", "diff", path(&archive)],
        vec!["--json", "restore", path(&archive), "--dry-run"],
        vec!["restore", path(&archive)],
    ];
    for run in runs {
        let mut args = run.clone();
        args.extend_from_slice(&with_pw);
        let out = kbdump(&args);
        assert_ok(&out);
        assert_no_secret(&stdout(&out), PASSWORD);
        assert_no_secret(&stderr(&out), PASSWORD);
    }
    for view in [
        kbdump(&["--json", "inspect", path(&archive)]),
        kbdump(&["inspect", path(&archive)]),
    ] {
        assert_ok(&view);
        assert_no_secret(&stdout(&view), PASSWORD);
        assert!(!stdout(&view).contains("bob"), "{}", stdout(&view));
    }
    let bytes = std::fs::read(&archive).unwrap();
    let raw = String::from_utf8_lossy(&bytes);
    assert_no_secret(&raw, PASSWORD);
    // A wrong password in the environment does not show either.
    let out = kbdump_env(
        &["--json", "kbs", "--redis", &url],
        &[("REDISCLI_AUTH", "env-secret-0815")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_no_secret(&stderr(&out), "env-secret-0815");
    assert_no_secret(&stdout(&out), "env-secret-0815");
}

#[test]
fn copy_takes_a_password_file_per_side() {
    let source = protected();
    let target = RedisServer::builder().requirepass("target-pw-99").start();
    let dir = tempfile::tempdir().unwrap();
    let from_pw = secret_file(dir.path(), "from", PASSWORD);
    let to_pw = secret_file(dir.path(), "to", "target-pw-99\n");
    let out = kbdump(&[
        "copy",
        "-q",
        "--from",
        &bare_url(&source),
        "--from-password-file",
        path(&from_pw),
        "--to",
        &bare_url(&target),
        "--to-password-file",
        path(&to_pw),
        "--kb",
        "node0_kato",
    ]);
    assert_ok(&out);
    let keys: Vec<Vec<u8>> = ::redis::cmd("KEYS")
        .arg("node0_kato:*")
        .query(&mut target.client())
        .unwrap();
    assert!(!keys.is_empty());
    // A wrong target password names the target side.
    let out = kbdump(&[
        "copy",
        "-q",
        "--from",
        &bare_url(&source),
        "--from-password-file",
        path(&from_pw),
        "--to",
        &bare_url(&target),
        "--to-password-file",
        path(&from_pw),
    ]);
    let err = assert_auth_failed(&out);
    assert!(
        err.contains("target") && err.contains("--to-password-file"),
        "{err}"
    );
    assert_no_secret(&err, PASSWORD);
}

#[tokio::test]
async fn clickhouse_password_from_a_file_or_clickhouse_password() {
    let server = chs::server();
    let db = server.database("secrets_password").await;
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "http://{}@127.0.0.1:{}/?database={db}",
        chs::SECURED_USER,
        server.http_port()
    );
    let good = secret_file(dir.path(), "ch", &format!("{}\n", chs::SECURED_PASSWORD));
    let bad = secret_file(dir.path(), "ch-bad", "ch-wrong-pw-1");
    let redis_url = redis.url();
    let check = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["check", "--clickhouse", &url, "--redis", &redis_url];
        args.extend_from_slice(extra);
        kbdump_env(&args, env)
    };
    // Authenticated, the run gets as far as the missing table.
    let reached = |out: &Output| {
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(out);
        assert!(err.contains("has no table"), "{err}");
        assert_no_secret(&err, chs::SECURED_PASSWORD);
    };
    reached(&check(&["--clickhouse-password-file", path(&good)], &[]));
    reached(&check(
        &[],
        &[("CLICKHOUSE_PASSWORD", chs::SECURED_PASSWORD)],
    ));
    reached(&check(
        &["--clickhouse-password-file", path(&good)],
        &[("CLICKHOUSE_PASSWORD", "ch-wrong-pw-2")],
    ));
    let out = check(
        &["--clickhouse-password-file", path(&bad)],
        &[("CLICKHOUSE_PASSWORD", chs::SECURED_PASSWORD)],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("refused the credentials"), "{err}");
    assert_no_secret(&err, "ch-wrong-pw-1");
}
