//! The undo archive of a replace is a write-ahead log: a key is overwritten
//! only once its previous value is synced into the undo file, so whatever
//! stops the run (a full disk, a signal, a crash) leaves an undo that holds
//! every key the run changed, and restoring it gives back the state before.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::cli::*;
use crate::support::redis::RedisServer;
use crate::support::seed::{seed_kato, SeedSpec, Seeded};
use kbdump::clock::{system_now_ms as now_ms, Clock};
use kbdump::flow::restore::is_undo_archive;
use kbdump::format::archive::ArchiveReader;
use kbdump::progress::NoProgress;
use kbdump::selection::Selection;
use kbdump::sink::redis::{restore, Mode, RestoreOptions, Target};
use kbdump::source::archive::{ArchiveInput, ArchiveSource};

const KB: &str = "wal_kato";

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop: a
/// disk that really fills up.
struct TinyDisk {
    dir: tempfile::TempDir,
}

impl TinyDisk {
    /// `None` where mounting is not allowed (not root): the caller skips.
    fn mount(size: &str) -> Option<TinyDisk> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?;
        status.success().then_some(TinyDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Incompressible bytes, so that the undo's size is predictable.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn wal_key(i: usize) -> String {
    format!("{KB}:emotives:{i:05}")
}

/// Writes `n` string keys of `len` noise bytes, version `round`.
fn write_round(server: &RedisServer, n: usize, len: usize, round: u64) {
    let mut conn = server.client();
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET")
            .arg(wal_key(i))
            .arg(noise(round * 1_000_000 + i as u64, len))
            .ignore();
    }
    pipe.query::<()>(&mut conn).unwrap();
}

/// The keys in every intact block of an archive, cut or not.
pub fn keys_in(path: &Path) -> BTreeSet<Vec<u8>> {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = ArchiveReader::new(file).unwrap();
    let mut keys = BTreeSet::new();
    while let Ok(Some(block)) = reader.next_block() {
        for record in block.records().unwrap() {
            keys.insert(record.unwrap().key);
        }
    }
    keys
}

/// Files in `dir` whose name marks them as temporary.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".tmp-"))
        .collect()
}

#[test]
fn a_full_disk_stops_the_replace_with_every_overwritten_key_in_the_undo() {
    // 16 batches of 1000 keys, 300 incompressible bytes each (about 5 MB of
    // undo): the first group the undo writer syncs at once (at most the 4
    // batches in flight, 1.4 MB) fits on the disk, the whole does not.
    let Some(disk) = TinyDisk::mount("2m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let (n, len) = (16_000, 300);
    let server = RedisServer::start();
    write_round(&server, n, len, 1);
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&server, dir.path(), "round1.kbd", &["--kb", KB]);
    write_round(&server, n, len, 2);
    let before = snap(&server);

    let undo = disk.path().join("undo.kbd");
    let out = kbdump(&[
        "restore",
        archive.to_str().unwrap(),
        "--redis",
        &server.url(),
        "--mode",
        "replace",
        "--yes",
        "--undo",
        undo.to_str().unwrap(),
        "--quiet",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(undo.to_str().unwrap()), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("kbdump restore --mode replace"), "{err}");

    // What changed is a strict, non-empty part of the keys, and all of it is
    // in the undo.
    let after = snap(&server);
    let changed: BTreeSet<Vec<u8>> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        !changed.is_empty() && changed.len() < n,
        "{}",
        changed.len()
    );
    let saved = keys_in(&undo);
    let unsaved: Vec<String> = changed.difference(&saved).map(|k| show(k)).collect();
    assert!(
        unsaved.is_empty(),
        "overwritten, not in the undo: {unsaved:?}"
    );
    assert!(temp_files(disk.path()).is_empty());

    let undo2 = dir.path().join("undo2.kbd");
    let url = server.url();
    let out = kbdump(&[
        "restore",
        undo.to_str().unwrap(),
        "--redis",
        &url,
        "--mode",
        "replace",
        "--yes",
        "--undo",
        undo2.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_same(&before, &snap(&server));
}

/// `kbdump restore ARCHIVE --mode replace --undo UNDO --quiet` with extra
/// arguments, on `url`.
fn replace(archive: &Path, url: &str, undo: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "restore",
        archive.to_str().unwrap(),
        "--redis",
        url,
        "--mode",
        "replace",
        "--yes",
        "--undo",
        undo.to_str().unwrap(),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    kbdump(&args)
}

#[test]
fn an_undo_that_cannot_take_the_first_batch_stops_before_any_overwrite() {
    let Some(disk) = TinyDisk::mount("64k") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let server = RedisServer::start();
    write_round(&server, 2000, 300, 1);
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&server, dir.path(), "round1.kbd", &["--kb", KB]);
    write_round(&server, 2000, 300, 2);
    let before = snap(&server);
    let undo = disk.path().join("undo.kbd");
    let out = replace(&archive, &server.url(), &undo, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(undo.to_str().unwrap()), "{err}");
    assert!(err.contains("nothing was overwritten"), "{err}");
    assert_same(&before, &snap(&server));
    let left: Vec<_> = std::fs::read_dir(disk.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_replace_that_overwrote_nothing_leaves_no_undo_file() {
    let server = RedisServer::start();
    write_round(&server, 50, 10, 1);
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&server, dir.path(), "round1.kbd", &["--kb", KB]);
    write_round(&server, 50, 10, 2);
    let before = snap(&server);
    // A user that may read everything but not RESTORE: every overwrite fails.
    let _: () = run(
        &server,
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("norestore")
            .arg("on")
            .arg(">pw")
            .arg("~*")
            .arg("+@all")
            .arg("-restore"),
    );
    let url = format!("redis://norestore:pw@127.0.0.1:{}/0", server.port());
    let undo = dir.path().join("undo.kbd");
    let out = replace(&archive, &url, &undo, &["--json"]);
    // The permission check refuses the run before anything is written
    // (one message naming RESTORE rather than 50 failed keys).
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("RESTORE"), "{}", stderr(&out));
    assert!(!undo.exists());
    assert!(temp_files(dir.path()).is_empty());
    assert_same(&before, &snap(&server));
}

/// Before a replace: every 4th KATO key deleted (so the replace creates
/// it, keys with a TTL among them), every 3rd changed, some to a value with
/// an expiry of its own. Returns the deleted keys.
pub fn diverge(server: &RedisServer, seeded: &Seeded) -> BTreeSet<Vec<u8>> {
    let mut deleted = BTreeSet::new();
    for (i, key) in seeded.kato().iter().enumerate() {
        if i % 4 == 0 || (i % 7 == 0 && seeded.keys[key].ttl_ms.is_some()) {
            let _: i64 = run(server, redis::cmd("DEL").arg(key));
            deleted.insert(key.clone());
        } else if i % 3 == 0 {
            let _: i64 = run(server, redis::cmd("DEL").arg(key));
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(format!("changed {i}"));
            if i % 2 == 0 {
                cmd.arg("PX").arg(900_000);
            }
            let _: () = run(server, &mut cmd);
        }
    }
    let created_with_ttl = deleted.iter().filter(|k| seeded.keys[*k].ttl_ms.is_some());
    assert!(
        created_with_ttl.count() > 0,
        "the replace creates keys with a TTL"
    );
    deleted
}

#[test]
fn undo_of_a_replace_deletes_the_keys_it_created_and_puts_back_the_rest() {
    let server = RedisServer::start();
    let seeded = seed_kato(&mut server.client(), &SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&server, dir.path(), "all.kbd", &[]);
    let deleted = diverge(&server, &seeded);
    let before = snap(&server);

    let undo = dir.path().join("undo.kbd");
    let undo_arg = undo.to_str().unwrap();
    let report = restore_ok(
        &archive,
        &server,
        &["--mode", "replace", "--yes", "--undo", undo_arg],
    );
    assert_eq!(report["undo_archive"], undo_arg, "{report:#}");
    assert_eq!(report["saved_for_undo"], seeded.all().len(), "{report:#}");
    assert_eq!(report["undo_absent"], deleted.len(), "{report:#}");
    let replaced = snap(&server);
    assert_ne!(replaced.len(), before.len());

    let undo2 = dir.path().join("undo2.kbd");
    let undo2_arg = undo2.to_str().unwrap();
    let report = restore_ok(
        &undo,
        &server,
        &["--mode", "replace", "--yes", "--undo", undo2_arg],
    );
    assert_eq!(
        total(&report, "deleted"),
        deleted.len() as u64,
        "{report:#}"
    );
    assert_same(&before, &snap(&server));
    // The undo of the undo is the replace again.
    let undo3 = dir.path().join("undo3.kbd");
    restore_ok(
        &undo2,
        &server,
        &[
            "--mode",
            "replace",
            "--yes",
            "--undo",
            undo3.to_str().unwrap(),
        ],
    );
    assert_same(&replaced, &snap(&server));
}

#[test]
fn undo_of_a_copy_in_replace_mode_gives_back_the_target_as_it_was() {
    let (source, target) = (RedisServer::start(), RedisServer::start());
    let seeded = seed_kato(&mut source.client(), &SeedSpec::small());
    seed_kato(&mut target.client(), &SeedSpec::small());
    let deleted = diverge(&target, &seeded);
    let _: () = run(&target, redis::cmd("SET").arg("target:only").arg("stays"));
    let before = snap(&target);
    let dir = tempfile::tempdir().unwrap();
    let undo = dir.path().join("undo.kbd");
    let out = kbdump(&[
        "copy",
        "--json",
        "--quiet",
        "--from",
        &source.url(),
        "--to",
        &target.url(),
        "--mode",
        "replace",
        "--yes",
        "--undo",
        undo.to_str().unwrap(),
    ]);
    let report = json_with_code(&out, 0);
    assert_eq!(report["undo_absent"], deleted.len(), "{report:#}");
    assert_ne!(snap(&target), before);
    let undo2 = dir.path().join("undo2.kbd");
    restore_ok(
        &undo,
        &target,
        &[
            "--mode",
            "replace",
            "--yes",
            "--undo",
            undo2.to_str().unwrap(),
        ],
    );
    assert_same(&before, &snap(&target));
}

/// A key that had ten minutes left when a replace overwrote it with a
/// persistent value: its undo, applied an hour later, deletes it, because
/// that is what the server would hold had there been no replace.
#[tokio::test(flavor = "multi_thread")]
async fn an_undo_applied_after_a_saved_expiry_deletes_the_key() {
    let server = RedisServer::start();
    let key = format!("{KB}:emotives:short");
    let _: () = run(&server, redis::cmd("SET").arg(&key).arg("new"));
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&server, dir.path(), "new.kbd", &["--kb", KB]);
    let set_old = redis::cmd("SET")
        .arg(&key)
        .arg("old")
        .arg("PX")
        .arg(600_000)
        .clone();
    let _: () = run(&server, &mut set_old.clone());
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

    let source = ArchiveSource::open(&ArchiveInput::path(undo.clone())).unwrap();
    assert!(is_undo_archive(source.header()));
    let (items, _task) = source.stream(Selection::default()).split();
    let target = Target::connect(&server.url()).await.unwrap();
    let options = RestoreOptions {
        mode: Mode::Replace,
        clock: Clock::fixed(now_ms() + 3_600_000),
        expired_means_absent: true,
        ..RestoreOptions::default()
    };
    let summary = restore(&target, items, &options, None, &NoProgress)
        .await
        .unwrap();
    assert_eq!(summary.total().deleted, 1, "{summary:?}");
    let exists: i64 = run(&server, redis::cmd("EXISTS").arg(&key));
    assert_eq!(exists, 0);
}

#[test]
fn offline_commands_read_absent_records_for_what_they_are() {
    let server = RedisServer::start();
    write_round(&server, 3, 10, 1);
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&server, dir.path(), "three.kbd", &["--kb", KB]);
    let _: i64 = run(&server, redis::cmd("DEL").arg(wal_key(1)));
    let undo = dir.path().join("undo.kbd");
    let report = restore_ok(
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
    assert_eq!(report["undo_absent"], 1, "{report:#}");
    let file = undo.to_str().unwrap();
    ok(&["verify", file]);
    let cat = stdout(&ok(&["cat", file, "--match", &wal_key(1)]));
    assert!(cat.contains("absent"), "{cat}");
    let ls = stdout(&ok(&["ls", "--json", file, "--match", &wal_key(1)]));
    assert!(ls.contains("\"absent\":true"), "{ls}");
    // Against the server as it is now (the key exists), the undo differs
    // by that one key; after the undo it is identical.
    let (code, diff) = diff_json(&undo, &server, &[]);
    assert_eq!(code, Some(1), "{diff:#}");
    assert_eq!(
        diff_keys(&diff),
        [(wal_key(1).into_bytes(), "extra".to_string())].into()
    );
    let undo2 = dir.path().join("undo2.kbd");
    restore_ok(
        &undo,
        &server,
        &[
            "--mode",
            "replace",
            "--yes",
            "--undo",
            undo2.to_str().unwrap(),
        ],
    );
    let (code, diff) = diff_json(&undo, &server, &[]);
    assert_eq!(code, Some(0), "{diff:#}");
}
