//! Archives at rest: `export --encrypt-to` writes an age file; every
//! archive-reading command opens it with `--identity` (through its index
//! for a file, front to back on stdin), refuses it with a message saying
//! what it needs without one, and never reads a cut or altered file as
//! good.

use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;

use crate::support::cli::*;
use crate::support::redis::RedisServer;
use crate::support::seed::{seed_kato, SeedSpec, Seeded, Snapshot};

const NODE0: &str = "node0_kato";

/// A fresh age key pair: the public key, and an identity file holding the
/// secret one.
fn keypair(dir: &Path, name: &str) -> (String, PathBuf) {
    let identity = age::x25519::Identity::generate();
    let path = dir.join(name);
    let secret = identity.to_string();
    std::fs::write(&path, format!("# {name}\n{}\n", secret.expose_secret())).unwrap();
    (identity.to_public().to_string(), path)
}

fn encrypted_export(server: &RedisServer, dir: &Path, recipient: &str) -> PathBuf {
    export(server, dir, "sealed.kbd", &["--encrypt-to", recipient])
}

/// A seeded server, its snapshot, and an encrypted export of it with the
/// identity that opens it.
struct Sealed {
    seeded: Seeded,
    before: Snapshot,
    archive: PathBuf,
    identity: PathBuf,
    _dir: tempfile::TempDir,
    _source: RedisServer,
}

fn sealed_export() -> Sealed {
    let source = RedisServer::start();
    let seeded = seed_kato(&mut source.client(), &SeedSpec::small());
    let before = snap(&source);
    let dir = tempfile::tempdir().unwrap();
    let (public, identity) = keypair(dir.path(), "key.txt");
    let archive = encrypted_export(&source, dir.path(), &public);
    Sealed {
        seeded,
        before,
        archive,
        identity,
        _dir: dir,
        _source: source,
    }
}

#[test]
fn an_encrypted_archive_round_trips_every_key_and_says_what_it_needs() {
    let fixture = sealed_export();
    let (before, sealed, identity) = (&fixture.before, &fixture.archive, &fixture.identity);

    let bytes = std::fs::read(sealed).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    // The archive's own magic and its kb_ids are not readable in clear.
    assert!(!bytes.windows(NODE0.len()).any(|w| w == NODE0.as_bytes()));

    for command in ["inspect", "ls", "verify"] {
        let out = kbdump(&[command, sealed.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("encrypted") && err.contains("--identity"),
            "{err}"
        );
        assert!(err.contains("X25519"), "{err}");
    }

    let id = identity.to_str().unwrap();
    let verify = ok(&["verify", sealed.to_str().unwrap(), "--identity", id]);
    assert!(stdout(&verify).contains("OK"), "{}", stdout(&verify));

    let target = RedisServer::start();
    restore_ok(sealed, &target, &["--identity", id]);
    assert_same(before, &snap(&target));
}

#[test]
fn a_selective_restore_of_an_encrypted_file_reads_through_the_index_and_stdin_works_too() {
    let fixture = sealed_export();
    let (before, sealed, identity) = (&fixture.before, &fixture.archive, &fixture.identity);
    let id = identity.to_str().unwrap();

    let target = RedisServer::start();
    restore_ok(sealed, &target, &["--identity", id, "--kb", NODE0]);
    let node0_keys = fixture.seeded.of_kb(NODE0.as_bytes());
    let node0 = |k: &[u8]| node0_keys.contains(k);
    assert_same(&only(before, node0), &snap(&target));

    let piped = RedisServer::start();
    let url = piped.url();
    let out = kbdump_stdin(
        &["restore", "-", "--redis", &url, "--identity", id, "--quiet"],
        sealed,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same(before, &snap(&piped));
}

#[test]
fn a_wrong_identity_a_cut_file_and_a_flipped_byte_are_errors() {
    let source = RedisServer::start();
    seed_kato(&mut source.client(), &SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let (public, identity) = keypair(dir.path(), "key.txt");
    let (_, stranger) = keypair(dir.path(), "stranger.txt");
    let sealed = encrypted_export(&source, dir.path(), &public);

    let out = kbdump(&[
        "verify",
        sealed.to_str().unwrap(),
        "--identity",
        stranger.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("stranger.txt"), "{}", stderr(&out));

    let bytes = std::fs::read(sealed).unwrap();
    let id = identity.to_str().unwrap();
    let cut = dir.path().join("cut.kbd");
    std::fs::write(&cut, &bytes[..bytes.len() - 200]).unwrap();
    let mut flipped_bytes = bytes.clone();
    let middle = flipped_bytes.len() / 2;
    flipped_bytes[middle] ^= 0x40;
    let flipped = dir.path().join("flipped.kbd");
    std::fs::write(&flipped, &flipped_bytes).unwrap();
    for bad in [&cut, &flipped] {
        let out = kbdump(&["verify", bad.to_str().unwrap(), "--identity", id]);
        assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
        assert!(!stdout(&out).contains("OK"), "{}", stdout(&out));
        let target = RedisServer::start();
        let (code, _) = restore_json_or_error(bad, &target, id);
        assert_ne!(code, Some(0));
    }
}

fn restore_json_or_error(file: &Path, server: &RedisServer, id: &str) -> (Option<i32>, String) {
    let url = server.url();
    let out = kbdump(&[
        "restore",
        file.to_str().unwrap(),
        "--redis",
        &url,
        "--identity",
        id,
        "--quiet",
    ]);
    (out.status.code(), stderr(&out))
}

#[test]
fn a_bad_recipient_is_refused_before_anything_is_written() {
    let source = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("never.kbd");
    let out = kbdump(&[
        "export",
        "--redis",
        &source.url(),
        "--encrypt-to",
        "age1notakey",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("age1notakey"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn an_encrypted_stream_to_stdout_reads_back() {
    let source = RedisServer::start();
    seed_kato(&mut source.client(), &SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let (public, identity) = keypair(dir.path(), "key.txt");
    let recipients = dir.path().join("recipients.txt");
    std::fs::write(&recipients, format!("# the backup team\n{public}\n")).unwrap();
    let out = ok(&[
        "export",
        "--quiet",
        "--redis",
        &source.url(),
        "--recipients-file",
        recipients.to_str().unwrap(),
        "-o",
        "-",
    ]);
    let streamed = dir.path().join("streamed.kbd");
    std::fs::write(&streamed, &out.stdout).unwrap();
    let out = kbdump_stdin(
        &["verify", "-", "--identity", identity.to_str().unwrap()],
        &streamed,
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

// ---- Encrypted backups in a backup directory (`backup --encrypt-to`) ----

/// kbdump with neither a server nor an identity from the environment
/// (`backups check` would check `REDIS_URL`; `KBDUMP_IDENTITY` would
/// open what these tests mean to leave sealed).
fn bare(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("KBDUMP_SCRATCH_URL")
        .env_remove("KBDUMP_IDENTITY")
        .output()
        .expect("run kbdump")
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// An encrypted backup of `server` into `dir`; the `--json` report.
fn sealed_backup(
    server: &RedisServer,
    dir: &Path,
    public: &str,
    extra: &[&str],
) -> serde_json::Value {
    let url = server.url();
    let mut args = vec![
        "--json",
        "backup",
        "--dir",
        p(dir),
        "--redis",
        &url,
        "--encrypt-to",
        public,
    ];
    args.extend_from_slice(extra);
    json_with_code(&bare(&args), 0)
}

/// The names in `dir` (the lock file left out), sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "kbdump.lock")
        .collect();
    names.sort();
    names
}

fn rows(dir: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["--json", "backups", "list", "--dir", p(dir)];
    args.extend_from_slice(extra);
    json_with_code(&bare(&args), 0)["backups"]
        .as_array()
        .unwrap()
        .clone()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn an_encrypted_backup_is_judged_honestly_without_the_identity_and_round_trips_with_it() {
    let source = RedisServer::start();
    let seeded = seed_kato(&mut source.client(), &SeedSpec::small());
    let before = snap(&source);
    let keys = tempfile::tempdir().unwrap();
    let (public, identity) = keypair(keys.path(), "key.txt");
    let id = p(&identity);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let report = sealed_backup(&source, d, &public, &[]);
    assert_eq!(report["encrypted"]["verified"], "ciphertext", "{report:#}");
    assert!(report["verified"].is_null(), "{report:#}");
    let files = names(d);
    assert_eq!(files.len(), 2, "{files:?}");
    let (backup, summary) = (d.join(&files[0]), d.join(&files[1]));
    assert!(files[0].ends_with(".kbd.age") && files[1] == format!("{}.summary.json", files[0]));
    assert_eq!((mode(&backup), mode(&summary)), (0o600, 0o600));
    let bytes = std::fs::read(&backup).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    assert!(!bytes.windows(NODE0.len()).any(|w| w == NODE0.as_bytes()));
    // The summary: counts in clear, the ciphertext's digest, no key.
    let text = std::fs::read_to_string(&summary).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let written = kbdump::format::encryption::fingerprint(&bytes[..]).unwrap();
    assert_eq!(doc["ciphertext"]["sha256"], written.sha256.as_str());
    assert_eq!(doc["ciphertext"]["bytes"], written.bytes);
    assert_eq!(doc["keys"], seeded.all().len() as u64);
    assert_eq!(doc["recipients"], 1);
    let some_key = seeded.of_kb(NODE0.as_bytes()).into_iter().next().unwrap();
    assert!(
        !text.contains(std::str::from_utf8(&some_key).unwrap()),
        "a key in the summary"
    );

    // Without the identity: sealed, counted, never called OK or good.
    let listed = rows(d, &[]);
    assert_eq!(listed[0]["status"], "sealed", "{listed:#?}");
    assert_eq!(listed[0]["contents_checked"], false);
    assert_eq!(listed[0]["keys"], seeded.all().len() as u64);
    assert_eq!(
        listed[0]["kb_ids"].as_array().unwrap().len(),
        seeded.kb_ids().len()
    );
    let out = bare(&["backups", "list", "--dir", p(d)]);
    assert!(
        stdout(&out).contains("0 good, 1 sealed") && stdout(&out).contains("NOT checked"),
        "{}",
        stdout(&out)
    );
    let out = bare(&["backups", "verify", "--dir", p(d)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains("SEALED, ciphertext intact") && said.contains("contents NOT checked"),
        "{said}"
    );
    assert!(!said.contains(": OK"), "{said}");
    let out = bare(&["backups", "check", "--dir", p(d), "--max-test-age", "off"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("0 read in full, 1 sealed"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("contents NOT checked"),
        "{}",
        stdout(&out)
    );
    // A restore test needs the identity, and says so before touching the scratch server.
    let scratch = RedisServer::start();
    let out = bare(&[
        "backups",
        "test",
        "--dir",
        p(d),
        "--scratch",
        &scratch.url(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--identity"), "{}", stderr(&out));

    // With the identity: read in full, tested, restored key by key with expiries.
    assert_eq!(rows(d, &["--identity", id])[0]["status"], "good");
    let out = bare(&["backups", "verify", "--dir", p(d), "--identity", id]);
    assert!(stdout(&out).contains(": OK ("), "{}", stdout(&out));
    let out = bare(&[
        "--json",
        "backups",
        "test",
        "--dir",
        p(d),
        "--scratch",
        &scratch.url(),
        "--identity",
        id,
    ]);
    assert_eq!(json_with_code(&out, 0)["ok"], true);
    let target = RedisServer::start();
    restore_ok(&backup, &target, &["--identity", id]);
    assert_same(&before, &snap(&target));
    assert!(!seeded.with_ttl().is_empty(), "the seed has expiring keys");

    // A run given the identity decrypts and checks every block of what it wrote.
    let report = sealed_backup(&source, d, &public, &["--identity", id]);
    assert_eq!(report["encrypted"]["verified"], "contents");
    assert_eq!(report["verified"]["records_ok"], seeded.all().len() as u64);
    // An identity that cannot open the recipients is refused before writing.
    let (_, stranger) = keypair(keys.path(), "stranger.txt");
    let url = source.url();
    let out = bare(&[
        "backup",
        "--dir",
        p(d),
        "--redis",
        &url,
        "--encrypt-to",
        &public,
        "--identity",
        p(&stranger),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("stranger.txt"), "{}", stderr(&out));
    let backups = names(d)
        .into_iter()
        .filter(|n| n.ends_with(".kbd.age"))
        .count();
    assert_eq!(backups, 2, "{:?}", names(d));
}

/// Flips one byte in the middle of a file.
fn flip(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_flipped_byte_in_an_encrypted_backup_is_caught_with_and_without_the_identity() {
    let source = RedisServer::start();
    seed_kato(&mut source.client(), &SeedSpec::small());
    let keys = tempfile::tempdir().unwrap();
    let (public, identity) = keypair(keys.path(), "key.txt");
    for with_identity in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        sealed_backup(&source, d, &public, &[]);
        let name = names(d)[0].clone();
        flip(&d.join(&name));
        let mut args = vec!["--json", "backups", "verify", "--dir", p(d)];
        if with_identity {
            args.extend(["--identity", p(&identity)]);
        }
        let report = json_with_code(&bare(&args), 1);
        let verdict = &report["backups"][0];
        assert_eq!(
            verdict["checked"],
            if with_identity {
                "contents"
            } else {
                "ciphertext"
            }
        );
        assert!(
            !verdict["problems"].as_array().unwrap().is_empty(),
            "{report:#}"
        );
        // Moved aside with its summary; never counted again.
        assert_eq!(
            names(d),
            [
                format!("{name}.damaged"),
                format!("{name}.damaged.summary.json")
            ]
        );
        assert_eq!(rows(d, &[])[0]["status"], "damaged");
    }
    // A file cut short is damaged by its size alone, even in a listing.
    let dir = tempfile::tempdir().unwrap();
    sealed_backup(&source, dir.path(), &public, &[]);
    let backup = dir.path().join(&names(dir.path())[0]);
    let bytes = std::fs::read(&backup).unwrap();
    std::fs::write(&backup, &bytes[..bytes.len() - 10]).unwrap();
    let listed = rows(dir.path(), &[]);
    assert_eq!(listed[0]["status"], "damaged");
    assert!(listed[0]["problem"]
        .as_str()
        .unwrap()
        .contains("cut short or altered"));
}

/// An age file that is not a backup, sealed to `public`.
fn stranger_age_file(path: &Path, public: &str) {
    use std::io::Write;
    let recipients = kbdump::format::encryption::Recipients::parse(&[public.to_string()], &[])
        .unwrap()
        .unwrap();
    let mut w = recipients.seal(Vec::new()).unwrap();
    w.write_all(b"someone's notes, not a backup").unwrap();
    std::fs::write(path, w.finish().unwrap()).unwrap();
}

#[test]
fn prune_counts_encrypted_backups_deletes_their_summaries_and_never_a_stranger_age_file() {
    let source = RedisServer::start();
    seed_kato(&mut source.client(), &SeedSpec::small());
    let keys = tempfile::tempdir().unwrap();
    let (public, _) = keypair(keys.path(), "key.txt");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&["backup", "--quiet", "--dir", p(d), "--redis", &source.url()]);
    for _ in 0..3 {
        sealed_backup(&source, d, &public, &[]);
    }
    // Named like a (very old) backup, and an age file, but no summary says
    // it is one; and an age file not named like a backup at all.
    let lookalike = "kbdump-20200101T000000.000Z.kbd.age";
    stranger_age_file(&d.join(lookalike), &public);
    stranger_age_file(&d.join("notes.txt.age"), &public);
    let listed = rows(d, &[]);
    let statuses: Vec<&str> = listed
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["unknown", "good", "sealed", "sealed", "sealed"],
        "{listed:#?}"
    );
    assert!(
        listed[0]["problem"].as_str().unwrap().contains("summary"),
        "{listed:#?}"
    );
    let sealed: Vec<String> = listed[2..]
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();

    let report = json_with_code(
        &bare(&[
            "--json",
            "backups",
            "prune",
            "--dir",
            p(d),
            "--keep-last",
            "2",
        ]),
        0,
    );
    let deleted: Vec<&str> = report["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(deleted.len(), 2, "{report:#}");
    assert_eq!(deleted[1], sealed[0]);
    let mut left = vec![lookalike.to_string(), "notes.txt.age".to_string()];
    for name in &sealed[1..] {
        left.push(name.clone());
        left.push(format!("{name}.summary.json"));
    }
    left.sort();
    assert_eq!(
        names(d),
        left,
        "the oldest sealed backup went with its summary"
    );

    // The newest backup without its summary: a finding, not a crash.
    std::fs::remove_file(d.join(format!("{}.summary.json", sealed[2]))).unwrap();
    let report = json_with_code(
        &bare(&[
            "--json",
            "backups",
            "check",
            "--dir",
            p(d),
            "--max-test-age",
            "off",
        ]),
        1,
    );
    let finding = &report["findings"][0];
    assert_eq!(finding["alarm"], "backup_damaged", "{report:#}");
    assert!(
        finding["message"].as_str().unwrap().contains("summary"),
        "{report:#}"
    );
    let out = bare(&["backups", "verify", "--dir", p(d)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("NOT CHECKED"), "{}", stdout(&out));
    assert!(
        d.join(&sealed[2]).exists(),
        "nothing says it is damaged: left in place"
    );
    // Retention neither counts nor deletes it.
    bare(&["backups", "prune", "--dir", p(d), "--keep-last", "1"]);
    assert!(d.join(&sealed[2]).exists() && d.join(lookalike).exists());
}
