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
