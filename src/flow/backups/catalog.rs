//! What a backup directory holds: backup names, a listing from headers and
//! indexes only (or, for an encrypted backup that no identity given opens,
//! from its plaintext summary), retention applied to the usable backups,
//! files moved aside, and the small JSON records kept beside the backups.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::BackupError;
use crate::format::archive::{Header, SelectionSpec, MAGIC};
use crate::format::encryption::{CryptError, Keyring, AGE_MAGIC};
use crate::format::summary::{SealedSummary, SUMMARY_LIMIT};
use crate::kato::Category;
use crate::plan::retention::{self, civil_from_days, days_from_civil, Decision, Policy};
use crate::source::archive::{ArchiveInput, ArchiveSource, OpenError};

const PREFIX: &str = "kbdump-";
const SUFFIX: &str = ".kbd";
/// Appended to the name of an encrypted backup (`….kbd.age`, as the `age`
/// tool names its output).
pub const AGE_SUFFIX: &str = ".age";
/// Appended to an encrypted backup's name for its plaintext summary.
pub const SUMMARY_SUFFIX: &str = ".summary.json";
/// Appended to a backup that failed verification.
pub const DAMAGED_SUFFIX: &str = ".damaged";
const DAY_MS: i64 = 86_400_000;

/// The file name of an encrypted backup made at `ms`:
/// `kbdump-20240531T031500.123Z.kbd.age`.
pub fn sealed_backup_name(ms: i64) -> String {
    format!("{}{AGE_SUFFIX}", backup_name(ms))
}

/// Where the plaintext summary of the (encrypted) backup at `path` is.
pub fn summary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(SUMMARY_SUFFIX);
    PathBuf::from(name)
}

/// What a backup's file name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Named {
    /// The time in the name (unix ms).
    pub ms: i64,
    /// Moved aside after failing verification (`….damaged`).
    pub damaged: bool,
    /// Encrypted (`….kbd.age`).
    pub encrypted: bool,
}

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

/// What a backup's name says (time, moved aside, encrypted); `None` for
/// any other name, a summary's included.
pub fn parse_name(name: &str) -> Option<Named> {
    let (name, damaged) = match name.strip_suffix(DAMAGED_SUFFIX) {
        Some(n) => (n, true),
        None => (name, false),
    };
    let (name, encrypted) = match name.strip_suffix(AGE_SUFFIX) {
        Some(n) => (n, true),
        None => (name, false),
    };
    let ms = parse_stamp(name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?)?;
    Some(Named {
        ms,
        damaged,
        encrypted,
    })
}

fn parse_stamp(stamp: &str) -> Option<i64> {
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
    Some(days * DAY_MS + ((h * 60 + mi) * 60 + s) * 1000 + ms)
}

/// Whether a backup can be relied on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Header and index read (a clear backup, or an encrypted one that an
    /// identity given opened); not moved aside.
    Good,
    /// Encrypted, and no identity given opens it: described by its
    /// summary, whose length it has; its contents were not read here.
    Sealed,
    /// Moved aside after failing verification, its header or index does
    /// not read, or it is not the size its summary says it was written.
    Damaged,
    /// Encrypted, no identity given opens it, and its summary is missing
    /// or unusable: nothing says what it holds. Never counted, never
    /// deleted.
    Unknown,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Good => "good",
            Status::Sealed => "sealed",
            Status::Damaged => "damaged",
            Status::Unknown => "unknown",
        }
    }
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
    /// Named `….kbd.age`.
    pub encrypted: bool,
    pub status: Status,
    /// Why it is damaged or unknown.
    pub problem: Option<String>,
    /// Why a sealed one was not opened.
    pub note: Option<String>,
    pub header: Option<Header>,
    /// An encrypted backup's summary, when it was read.
    pub summary: Option<SealedSummary>,
    pub cells: BTreeMap<(Vec<u8>, Category), Cell>,
}

impl Entry {
    /// When the backup was made: its header's time, else its summary's,
    /// else its name's.
    pub fn created_ms(&self) -> i64 {
        if let Some(h) = &self.header {
            return h.created_at_ms;
        }
        self.summary
            .as_ref()
            .map_or(self.named_ms, |s| s.created_ms)
    }

    /// The selection it was made with, when known.
    pub fn selection(&self) -> Option<SelectionSpec> {
        match (&self.header, &self.summary) {
            (Some(h), _) => Some(h.selection.clone()),
            (None, Some(s)) => Some(s.selection_spec()),
            (None, None) => None,
        }
    }

    /// The kind of source it was read from (`redis-server`, …), when known.
    pub fn source_kind(&self) -> Option<&str> {
        match (&self.header, &self.summary) {
            (Some(h), _) => Some(&h.source.kind),
            (None, Some(s)) => Some(&s.source.kind),
            (None, None) => None,
        }
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

    /// Its contents were read (header and index).
    pub fn is_good(&self) -> bool {
        self.status == Status::Good
    }

    /// Counted as a backup: good, or sealed (encrypted, intact as far as
    /// its summary tells without the identity).
    pub fn is_usable(&self) -> bool {
        matches!(self.status, Status::Good | Status::Sealed)
    }
}

/// Every backup in `dir` (regular files named like a backup; anything else
/// is ignored), oldest first, read from headers and indexes only; an
/// encrypted one is opened with `keys`, or described by its summary when
/// none of them opens it.
pub fn list(dir: &Path, keys: &Keyring) -> Result<Vec<Entry>, BackupError> {
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
        let Some(named) = parse_name(&name) else {
            continue;
        };
        // Never follow a symlink: only regular files are backups.
        let Ok(meta) = item.path().symlink_metadata() else {
            continue;
        };
        if meta.is_file() {
            entries.push(describe(item.path(), name, named, meta.len(), keys)?);
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
    named: Named,
    size: u64,
    keys: &Keyring,
) -> Result<Entry, BackupError> {
    let mut first = [0u8; AGE_MAGIC.len()];
    let got = File::open(&path)
        .and_then(|mut f| crate::format::encryption::read_up_to(&mut f, &mut first));
    let got = match got {
        Ok(n) => n,
        Err(source) => {
            return Err(BackupError::Io {
                what: "cannot read backup",
                path,
                cause: source,
            })
        }
    };
    let mut entry = Entry {
        path,
        name,
        named_ms: named.ms,
        size,
        encrypted: named.encrypted,
        status: if named.damaged {
            Status::Damaged
        } else {
            Status::Good
        },
        problem: named
            .damaged
            .then(|| "failed verification (moved aside)".to_string()),
        note: None,
        header: None,
        summary: None,
        cells: BTreeMap::new(),
    };
    if named.encrypted && !first[..got].starts_with(AGE_MAGIC) {
        entry.status = Status::Damaged;
        entry.problem = Some("named as an encrypted backup (.age) but is not an age file".into());
        return Ok(entry);
    }
    let input = ArchiveInput::path(entry.path.clone()).with_keys(keys.clone());
    let opened = ArchiveSource::open(&input);
    if named.encrypted {
        if let Err(OpenError::Encrypted(
            e @ (CryptError::NeedsIdentity { .. } | CryptError::NoMatchingIdentity { .. }),
        )) = &opened
        {
            let why = match e {
                CryptError::NeedsIdentity { .. } => "no --identity given".to_string(),
                _ => "none of the identities given opens it".to_string(),
            };
            from_summary(&mut entry, &why);
            return Ok(entry);
        }
    }
    let overview = opened
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

/// Describes an encrypted backup that was not opened by its summary: its
/// counts, and whether the file is still the size it was written.
fn from_summary(entry: &mut Entry, not_opened: &str) {
    let sidecar = summary_path(&entry.path);
    let sidecar_name = sidecar
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let summary = match read_summary(&sidecar) {
        Ok(s) => s,
        Err(why) => {
            if entry.status != Status::Damaged {
                entry.status = Status::Unknown;
                entry.problem = Some(format!(
                    "encrypted ({not_opened}) and its summary {sidecar_name} {why}: nothing \
                     tells what it holds or that it is intact; kbdump backups verify \
                     --identity FILE reads it in full"
                ));
            }
            return;
        }
    };
    if summary.backup != entry.name && entry.status != Status::Damaged {
        entry.status = Status::Unknown;
        entry.problem = Some(format!(
            "encrypted ({not_opened}) and its summary {sidecar_name} describes another file ({})",
            summary.backup
        ));
        return;
    }
    for ((kb, category), counts) in summary.cells() {
        entry.cells.insert(
            (kb, category),
            Cell {
                keys: counts.keys,
                bytes: counts.bytes,
            },
        );
    }
    if entry.status == Status::Good {
        if summary.ciphertext.bytes == entry.size {
            entry.status = Status::Sealed;
            entry.note = Some(format!(
                "encrypted, not opened ({not_opened}): counts from its summary, contents not \
                 checked"
            ));
        } else {
            entry.status = Status::Damaged;
            entry.problem = Some(format!(
                "the file is {} bytes, its summary says {} were written: cut short or \
                 altered since",
                entry.size, summary.ciphertext.bytes
            ));
        }
    }
    entry.summary = Some(summary);
}

/// Reads a summary file, bounded; why it cannot be used otherwise.
pub fn read_summary(path: &Path) -> Result<SealedSummary, String> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(f) => f.take(SUMMARY_LIMIT + 1).read_to_end(&mut bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("is missing".into()),
        Err(e) => return Err(format!("cannot be read ({e})")),
    }
    .map_err(|e| format!("cannot be read ({e})"))?;
    SealedSummary::parse(&bytes).map_err(|e| format!("is unusable ({e})"))
}

/// What retention did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneOutcome {
    pub policy: String,
    /// Kept backups with the rules that keep them.
    pub kept: Vec<(String, Vec<String>)>,
    pub deleted: Vec<String>,
}

/// Applies `policy` to the usable backups in `dir` at `now_ms` (clear and
/// encrypted alike); deletes what it does not keep unless `dry_run`, an
/// encrypted backup with its summary. Damaged and unknown files and files
/// that are not backups are never deleted, and a file is deleted only
/// after its first bytes were checked to be a kbdump archive, or an age
/// file that its summary (or an identity) showed to be a backup.
pub fn prune(
    dir: &Path,
    policy: &Policy,
    now_ms: i64,
    dry_run: bool,
    keys: &Keyring,
) -> Result<PruneOutcome, BackupError> {
    let good: Vec<Entry> = list(dir, keys)?
        .into_iter()
        .filter(Entry::is_usable)
        .collect();
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
        if dry_run || delete_backup(entry)? {
            outcome.deleted.push(entry.name.clone());
        }
    }
    Ok(outcome)
}

/// Deletes a usable backup (and an encrypted one's summary) after
/// checking its first bytes again; whether it was deleted.
fn delete_backup(entry: &Entry) -> Result<bool, BackupError> {
    let path = &entry.path;
    let io = |what, path: &Path, source| BackupError::Io {
        what,
        path: path.to_path_buf(),
        cause: source,
    };
    let mut first = [0u8; AGE_MAGIC.len()];
    let got = File::open(path)
        .and_then(|mut f| crate::format::encryption::read_up_to(&mut f, &mut first))
        .map_err(|e| io("cannot read", path, e))?;
    let ours = if entry.encrypted {
        first[..got].starts_with(AGE_MAGIC)
    } else {
        first[..got].starts_with(&MAGIC)
    };
    if !ours {
        // Named like a backup but not one: not ours to delete.
        return Ok(false);
    }
    fs::remove_file(path).map_err(|e| io("cannot delete", path, e))?;
    let sidecar = summary_path(path);
    match fs::remove_file(&sidecar) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("cannot delete", &sidecar, e)),
        _ => Ok(true),
    }
}

/// Deletes the temporary files of backups whose run died before renaming
/// them into place (`.kbdump-<timestamp>.kbd[.age].tmp-<pid>`, and a
/// summary's `.kbdump-<timestamp>.kbd.age.summary.json.tmp-<pid>`). Only
/// called with the directory's lock held, so no run is writing one.
/// Returns their names.
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
        let backup = backup.strip_suffix(SUMMARY_SUFFIX).unwrap_or(backup);
        if is_file && parse_name(backup).is_some_and(|n| !n.damaged) {
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

/// Renames a backup that failed verification to `<name>.damaged` (and an
/// encrypted one's summary with it, to `<name>.damaged.summary.json`).
pub fn move_aside(path: &Path) -> Result<PathBuf, BackupError> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(DAMAGED_SUFFIX);
    let aside = PathBuf::from(aside);
    let rename = |from: &Path, to: &Path| {
        fs::rename(from, to).map_err(|source| BackupError::Io {
            what: "cannot move aside",
            path: from.to_path_buf(),
            cause: source,
        })
    };
    rename(path, &aside)?;
    let sidecar = summary_path(path);
    if sidecar.exists() {
        rename(&sidecar, &summary_path(&aside))?;
    }
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
        let named = |damaged, encrypted| {
            Some(Named {
                ms: t,
                damaged,
                encrypted,
            })
        };
        assert_eq!(parse_name(&backup_name(t)), named(false, false));
        assert_eq!(
            parse_name("kbdump-20240531T031500.123Z.kbd.damaged"),
            named(true, false)
        );
        assert_eq!(sealed_backup_name(t), "kbdump-20240531T031500.123Z.kbd.age");
        assert_eq!(parse_name(&sealed_backup_name(t)), named(false, true));
        assert_eq!(
            parse_name("kbdump-20240531T031500.123Z.kbd.age.damaged"),
            named(true, true)
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
            "kbdump-20240531T031500.123Z.kbd.age.summary.json",
            "kbdump-20240531T031500.123Z.age",
            "kbdump-20240531T031500.123Z.kbd.age.age",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    /// An "encrypted backup" (the age magic and some bytes) with a summary
    /// naming `summary_for`, recording `recorded` bytes; returns its path.
    fn sealed_file(dir: &Path, ms: i64, summary_for: &str, recorded: u64) -> PathBuf {
        use crate::format::encryption::Fingerprint;
        use crate::format::summary::{Counts, SummaryOf, Verified};
        let path = dir.join(sealed_backup_name(ms));
        fs::write(&path, [AGE_MAGIC, &[7u8; 100][..]].concat()).unwrap();
        let mut cells = BTreeMap::new();
        cells.insert(
            (b"kb1".to_vec(), Category::Emotives),
            Counts { keys: 4, bytes: 40 },
        );
        let summary = SealedSummary::new(SummaryOf {
            backup: summary_for,
            created_ms: ms,
            created_at: String::new(),
            source: &Default::default(),
            selection: &SelectionSpec::default(),
            cells: &cells,
            ciphertext: &Fingerprint {
                sha256: String::new(),
                bytes: recorded,
            },
            recipients: 1,
            verified: Verified::Ciphertext,
        });
        fs::write(summary_path(&path), summary.to_json()).unwrap();
        path
    }

    #[test]
    fn an_encrypted_backup_is_judged_by_its_summary_without_an_identity() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let t = 1_717_200_000_000;
        let size = (AGE_MAGIC.len() + 100) as u64;
        sealed_file(d, t, &sealed_backup_name(t), size);
        sealed_file(d, t + 1, &sealed_backup_name(t + 1), size + 1);
        sealed_file(d, t + 2, "kbdump-20000101T000000.000Z.kbd.age", size);
        let gone = sealed_file(d, t + 3, &sealed_backup_name(t + 3), size);
        fs::remove_file(summary_path(&gone)).unwrap();
        let not_age = d.join(sealed_backup_name(t + 4));
        fs::write(&not_age, b"plain text").unwrap();
        let newest = sealed_file(d, t + 5, &sealed_backup_name(t + 5), size);
        let entries = list(d, &Keyring::default()).unwrap();
        let statuses: Vec<Status> = entries.iter().map(|e| e.status).collect();
        use Status::*;
        assert_eq!(
            statuses,
            [Sealed, Damaged, Unknown, Unknown, Damaged, Sealed]
        );
        assert_eq!(entries[0].keys(), 4);
        assert!(entries[0].is_usable() && !entries[0].is_good());
        let problems: Vec<String> = entries
            .iter()
            .map(|e| e.problem.clone().unwrap_or_default())
            .collect();
        assert!(problems[1].contains("cut short or altered"), "{problems:?}");
        assert!(problems[2].contains("another file"), "{problems:?}");
        assert!(problems[3].contains("is missing"), "{problems:?}");
        assert!(problems[4].contains("not an age file"), "{problems:?}");
        // Retention counts the sealed ones only, and deletes the older
        // with its summary; nothing else is touched.
        let policy = Policy {
            last: 1,
            ..Policy::default()
        };
        let pruned = prune(d, &policy, t + 10, false, &Keyring::default()).unwrap();
        assert_eq!(pruned.deleted, [sealed_backup_name(t)], "{pruned:?}");
        assert!(!summary_path(&d.join(sealed_backup_name(t))).exists());
        assert!(newest.exists() && summary_path(&newest).exists());
        assert_eq!(fs::read_dir(d).unwrap().count(), 8);
    }

    #[test]
    fn only_temporaries_of_backups_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in [
            ".kbdump-20240531T031500.123Z.kbd.tmp-4242",
            ".kbdump-20240601T031500.123Z.kbd.age.tmp-4243",
            ".kbdump-20240601T031500.123Z.kbd.age.summary.json.tmp-4243",
            ".notes.txt.tmp-1",
            "kbdump-20240531T031500.123Z.kbd",
            ".kbdump-tests.json.tmp-7",
        ] {
            fs::write(d.join(name), b"x").unwrap();
        }
        let mut removed = remove_stale_temporaries(d).unwrap();
        removed.sort();
        assert_eq!(
            removed,
            [
                ".kbdump-20240531T031500.123Z.kbd.tmp-4242",
                ".kbdump-20240601T031500.123Z.kbd.age.summary.json.tmp-4243",
                ".kbdump-20240601T031500.123Z.kbd.age.tmp-4243",
            ]
        );
        let mut left: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 3, "{left:?}");
    }
}
