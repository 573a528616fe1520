//! The undo archive of a replace is a write-ahead log: a key is overwritten
//! only once its previous value is synced into the undo file, so whatever
//! stops the run (a full disk, a signal, a crash) leaves an undo that holds
//! every key the run changed, and restoring it gives back the state before.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::cli::*;
use crate::support::redis::RedisServer;
use kbdump::format::archive::ArchiveReader;
use serde_json::Value as Json;

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
fn noise(seed: u64, len: usize) -> Vec<u8> {
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
    // 4 batches of 1000 keys, 300 incompressible bytes each: the undo of
    // the first batch fits on the disk, the second does not.
    let Some(disk) = TinyDisk::mount("512k") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let (n, len) = (4000, 300);
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
    let report = json_with_code(&out, 2);
    assert_eq!(total(&report, "failed"), 50, "{report:#}");
    assert_eq!(report["undo_archive"], Json::Null, "{report:#}");
    assert!(!undo.exists());
    assert!(temp_files(dir.path()).is_empty());
    assert_same(&before, &snap(&server));
}
