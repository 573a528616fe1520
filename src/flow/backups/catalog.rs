//! What a backup directory holds: backup names, a listing from headers and
//! indexes only, retention applied to the good backups, files moved aside,
//! and the small JSON records kept beside the backups.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::BackupError;
use crate::format::archive::{Header, MAGIC};
use crate::kato::Category;
use crate::plan::retention::{self, civil_from_days, days_from_civil, Decision, Policy};
use crate::source::archive::{ArchiveInput, ArchiveSource};

const PREFIX: &str = "kbdump-";
const SUFFIX: &str = ".kbd";
/// Appended to a backup that failed verification.
pub const DAMAGED_SUFFIX: &str = ".damaged";
const DAY_MS: i64 = 86_400_000;

/// The file name of a backup made at `ms`: `kbdump-20240531T031500.123Z.kbd`
/// (UTC; sorts by time; milliseconds keep several a day apart).
pub fn backup_name(ms: i64) -> String {
    let (days, in_day) = (ms.div_euclid(DAY_MS), ms.rem_euclid(DAY_MS));
    let (y, m, d) = civil_from_days(days);
    let s = in_day / 1000;
    format!(
        "{PREFIX}{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{:03}Z{SUFFIX}",
        s / 3600,
        s % 3600 / 60,
        s % 60,
        in_day % 1000
    )
}

/// The time in a backup's name and whether it was moved aside as damaged;
/// `None` for any other name.
pub fn parse_name(name: &str) -> Option<(i64, bool)> {
    let (name, damaged) = match name.strip_suffix(DAMAGED_SUFFIX) {
        Some(n) => (n, true),
        None => (name, false),
    };
    let stamp = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let b = stamp.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = stamp.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() != 20 || b[8] != b'T' || b[15] != b'.' || b[19] != b'Z' {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (h, mi, s, ms) = (
        digits(9..11)?,
        digits(11..13)?,
        digits(13..15)?,
        digits(16..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    Some((
        days * DAY_MS + ((h * 60 + mi) * 60 + s) * 1000 + ms,
        damaged,
    ))
}

/// Whether a backup can be relied on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Header and index read; not moved aside.
    Good,
    /// Moved aside after failing verification, or its header or index
    /// does not read.
    Damaged,
}

/// Keys and payload bytes of one kb_id x category of a backup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Cell {
    pub keys: u64,
    pub bytes: u64,
}

/// One backup file, as its header and index describe it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub name: String,
    /// The time in the name.
    pub named_ms: i64,
    pub size: u64,
    pub status: Status,
    /// Why it is damaged, when its header or index says so.
    pub problem: Option<String>,
    pub header: Option<Header>,
    pub cells: BTreeMap<(Vec<u8>, Category), Cell>,
}

impl Entry {
    /// When the backup was made: its header's time, else its name's.
    pub fn created_ms(&self) -> i64 {
        self.header
            .as_ref()
            .map_or(self.named_ms, |h| h.created_at_ms)
    }

    pub fn keys(&self) -> u64 {
        self.cells.values().map(|c| c.keys).sum()
    }

    /// The kb_ids backed up (keys outside kb_ids, with an empty kb_id in
    /// the archive, are not a kb_id).
    pub fn kb_ids(&self) -> Vec<Vec<u8>> {
        let cells = self.cells.keys().filter(|(kb, _)| !kb.is_empty());
        let mut kbs: Vec<Vec<u8>> = cells.map(|(kb, _)| kb.clone()).collect();
        kbs.dedup();
        kbs
    }

    pub fn is_good(&self) -> bool {
        self.status == Status::Good
    }
}

/// Every backup in `dir` (regular files named like a backup; anything else
/// is ignored), oldest first, read from headers and indexes only.
pub fn list(dir: &Path) -> Result<Vec<Entry>, BackupError> {
    if !dir.is_dir() {
        return Err(BackupError::MissingDir(dir.to_path_buf()));
    }
    let read_dir = |source| BackupError::ReadDir {
        path: dir.to_path_buf(),
        cause: source,
    };
    let mut entries = Vec::new();
    for item in fs::read_dir(dir).map_err(read_dir)? {
        let item = item.map_err(read_dir)?;
        let name = item.file_name().to_string_lossy().into_owned();
        let Some((named_ms, damaged)) = parse_name(&name) else {
            continue;
        };
        // Never follow a symlink: only regular files are backups.
        let Ok(meta) = item.path().symlink_metadata() else {
            continue;
        };
        if meta.is_file() {
            entries.push(describe(item.path(), name, named_ms, damaged, meta.len())?);
        }
    }
    entries.sort_by(|a, b| (a.created_ms(), &a.name).cmp(&(b.created_ms(), &b.name)));
    Ok(entries)
}

/// Reads a backup's header and index. A file this user may not read is an
/// error (the check cannot judge it), not a damaged backup.
fn describe(
    path: PathBuf,
    name: String,
    named_ms: i64,
    damaged: bool,
    size: u64,
) -> Result<Entry, BackupError> {
    if let Err(source) = File::open(&path) {
        return Err(BackupError::Io {
            what: "cannot read backup",
            path,
            cause: source,
        });
    }
    let mut entry = Entry {
        path,
        name,
        named_ms,
        size,
        status: if damaged {
            Status::Damaged
        } else {
            Status::Good
        },
        problem: damaged.then(|| "failed verification (moved aside)".to_string()),
        header: None,
        cells: BTreeMap::new(),
    };
    let overview = ArchiveSource::open(&ArchiveInput::path(entry.path.clone()))
        .map_err(|e| e.to_string())
        .and_then(|source| source.overview().map_err(|e| e.to_string()));
    match overview {
        Ok(overview) => {
            for (_, meta) in &overview.blocks {
                let cell = entry
                    .cells
                    .entry((meta.kb_id.clone(), meta.category))
                    .or_default();
                cell.keys += meta.records;
                cell.bytes += meta.payload_bytes;
            }
            entry.header = Some(overview.header);
        }
        Err(problem) => {
            entry.status = Status::Damaged;
            entry.problem.get_or_insert(problem);
        }
    }
    Ok(entry)
}

/// What retention did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneOutcome {
    pub policy: String,
    /// Kept backups with the rules that keep them.
    pub kept: Vec<(String, Vec<String>)>,
    pub deleted: Vec<String>,
}

/// Applies `policy` to the good backups in `dir` at `now_ms`; deletes what
/// it does not keep unless `dry_run`. Damaged files and files that are not
/// backups are never deleted, and a file is deleted only after its first
/// bytes were checked to be a kbdump archive.
pub fn prune(
    dir: &Path,
    policy: &Policy,
    now_ms: i64,
    dry_run: bool,
) -> Result<PruneOutcome, BackupError> {
    let good: Vec<Entry> = list(dir)?.into_iter().filter(Entry::is_good).collect();
    let times: Vec<i64> = good.iter().map(Entry::created_ms).collect();
    let decisions = retention::apply(&times, policy, now_ms);
    let mut outcome = PruneOutcome {
        policy: policy.to_string(),
        ..PruneOutcome::default()
    };
    for (entry, Decision { keep, reasons }) in good.iter().zip(decisions) {
        if keep {
            outcome.kept.push((entry.name.clone(), reasons));
            continue;
        }
        if !dry_run {
            delete_backup(&entry.path)?;
        }
        outcome.deleted.push(entry.name.clone());
    }
    Ok(outcome)
}

fn delete_backup(path: &Path) -> Result<(), BackupError> {
    let io = |what, source| BackupError::Io {
        what,
        path: path.to_path_buf(),
        cause: source,
    };
    let mut magic = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| io("cannot read", e))?;
    if magic != MAGIC {
        // Named like a backup but not one: not ours to delete.
        return Ok(());
    }
    fs::remove_file(path).map_err(|e| io("cannot delete", e))
}

/// Deletes the temporary files of backups whose run died before renaming
/// them into place (`.kbdump-<timestamp>.kbd.tmp-<pid>`). Only called with
/// the directory's lock held, so no run is writing one. Returns their names.
pub fn remove_stale_temporaries(dir: &Path) -> Result<Vec<String>, BackupError> {
    let read_dir = |source| BackupError::ReadDir {
        path: dir.to_path_buf(),
        cause: source,
    };
    let mut removed = Vec::new();
    for item in fs::read_dir(dir).map_err(read_dir)? {
        let item = item.map_err(read_dir)?;
        let name = item.file_name().to_string_lossy().into_owned();
        let Some((backup, _pid)) = name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp-"))
        else {
            continue;
        };
        let is_file = item.path().symlink_metadata().is_ok_and(|m| m.is_file());
        if is_file && parse_name(backup).is_some_and(|(_, damaged)| !damaged) {
            fs::remove_file(item.path()).map_err(|source| BackupError::Io {
                what: "cannot delete",
                path: item.path(),
                cause: source,
            })?;
            removed.push(name);
        }
    }
    Ok(removed)
}

/// Renames a backup that failed verification to `<name>.damaged`.
pub fn move_aside(path: &Path) -> Result<PathBuf, BackupError> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(DAMAGED_SUFFIX);
    let aside = PathBuf::from(aside);
    fs::rename(path, &aside).map_err(|source| BackupError::Io {
        what: "cannot move aside",
        path: path.to_path_buf(),
        cause: source,
    })?;
    Ok(aside)
}

/// Writes a small file atomically: a temporary name in the same directory,
/// fsync, rename. `mode` is its permission bits.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), BackupError> {
    let io = |what, source| BackupError::Io {
        what,
        path: path.to_path_buf(),
        cause: source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut file = File::create(&temp)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io("cannot write", e));
    }
    if let Some(dir) = path.parent().and_then(|d| File::open(d).ok()) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Reads a JSON record beside the backups; a missing file is the default.
pub fn read_record<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
) -> Result<T, BackupError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| BackupError::Io {
            what: "cannot parse",
            path: path.to_path_buf(),
            cause: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(source) => Err(BackupError::Io {
            what: "cannot read",
            path: path.to_path_buf(),
            cause: source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_parse_back() {
        let t = days_from_civil(2024, 5, 31) * DAY_MS + 3 * 3_600_000 + 15 * 60_000 + 123;
        assert_eq!(backup_name(t), "kbdump-20240531T031500.123Z.kbd");
        assert_eq!(parse_name(&backup_name(t)), Some((t, false)));
        assert_eq!(
            parse_name("kbdump-20240531T031500.123Z.kbd.damaged"),
            Some((t, true))
        );
        assert!(backup_name(t) < backup_name(t + 1));
        assert!(backup_name(t + 999) < backup_name(t + 1000));
        for other in [
            "kbdump-20240531T031500.123Z.kbd.tmp",
            ".kbdump-20240531T031500.123Z.kbd.tmp-12",
            "kbdump-2024-05-31.kbd",
            "kato-20240531T031500.123Z.kbd",
            "kbdump-20241331T031500.123Z.kbd",
            "kbdump-20240531T031500.12xZ.kbd",
            "kbdump.lock",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    #[test]
    fn only_temporaries_of_backups_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in [
            ".kbdump-20240531T031500.123Z.kbd.tmp-4242",
            ".notes.txt.tmp-1",
            "kbdump-20240531T031500.123Z.kbd",
            ".kbdump-tests.json.tmp-7",
        ] {
            fs::write(d.join(name), b"x").unwrap();
        }
        let removed = remove_stale_temporaries(d).unwrap();
        assert_eq!(removed, [".kbdump-20240531T031500.123Z.kbd.tmp-4242"]);
        let mut left: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 3, "{left:?}");
    }
}
