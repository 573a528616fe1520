//! `backup`: one export into the directory under a fresh name, re-read and
//! verified block by block from disk, and only then retention.
//!
//! An encrypted backup (`--encrypt-to`) is verified without the identity,
//! which need not be on the host: the run produced the plaintext itself,
//! so what can still go wrong is the bytes on disk. The SHA-256 of the
//! ciphertext is computed while it is written, the file is synced and read
//! back from disk, and the two must match. With `--identity` the file is
//! also decrypted and every block and payload checked, as a clear backup.
//! Its plaintext summary (counts per kb_id x category, the ciphertext's
//! digest and length) is written beside it before the backup is renamed
//! into place, so an encrypted backup never appears without one.

use std::fs;
use std::io::BufWriter;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::catalog::{
    backup_name, move_aside, prune, remove_stale_temporaries, sealed_backup_name, summary_path,
    write_atomic, PruneOutcome, DAMAGED_SUFFIX,
};
use super::lock::{DirLock, Holder};
use super::BackupError;
use crate::clock::Clock;
use crate::flow::export::export;
use crate::flow::verify::{check_payload_decodes, verify, VerifyReport};
use crate::format::archive::{Record, SelectionSpec, WriterOptions};
use crate::format::encryption::{
    fingerprint, DigestWriter, Fingerprint, Keyring, MaybeSealed, Recipients,
};
use crate::format::summary::{Counts, SealedSummary, SummaryOf, Verified};
use crate::net::redis::{Endpoint, ServerInfo};
use crate::plan::retention::Policy;
use crate::progress::Progress;
use crate::sink::file::AtomicFile;
use crate::source::archive::ArchiveInput;
use crate::source::live::{ExportOptions, ExportSummary, LiveSource};

/// How a backup runs.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub dir: PathBuf,
    /// What to read (its clock also names the file).
    pub export: ExportOptions,
    /// The selection as given, for the header.
    pub spec: SelectionSpec,
    pub writer: WriterOptions,
    pub policy: Policy,
    /// Write a backup even when the selection holds no key.
    pub allow_empty: bool,
    /// Encrypt to these (`--encrypt-to`, `--recipients-file`).
    pub recipients: Option<Recipients>,
    /// Identities (`--identity`): an encrypted backup is then decrypted
    /// and verified in full, and retention opens encrypted backups.
    pub keys: Keyring,
}

/// What was checked of an encrypted backup after writing it.
#[derive(Debug, Serialize)]
pub struct SealedOutcome {
    pub recipients: usize,
    pub sha256: String,
    pub ciphertext_bytes: u64,
    /// The plaintext summary written beside it.
    pub summary: PathBuf,
    /// `ciphertext`: the bytes read back from disk are the bytes written;
    /// `contents`: also decrypted and every block checked.
    pub verified: Verified,
}

/// What a backup did.
#[derive(Debug, Serialize)]
pub struct BackupOutcome {
    pub file: PathBuf,
    pub created_ms: i64,
    pub archive_bytes: u64,
    #[serde(skip)]
    pub summary: ExportSummary,
    #[serde(skip)]
    pub server: ServerInfo,
    pub address: String,
    /// The block-by-block verification; `None` for an encrypted backup
    /// written without an identity (see `encrypted`).
    pub verified: Option<VerifyReport>,
    /// Set for an encrypted backup.
    pub encrypted: Option<SealedOutcome>,
    pub retention: PruneOutcome,
    /// The stale lock holder taken over, if any.
    pub took_over: Option<Holder>,
    /// Temporary files of runs that died, deleted.
    pub stale_temporaries: Vec<String>,
}

/// Backs the server at `endpoint` up into `options.dir`. The lock is taken
/// before the server is contacted, so a second run fails at once however
/// slow the server is.
pub async fn backup(
    endpoint: &Endpoint,
    options: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupOutcome, BackupError> {
    let dir = &options.dir;
    if !dir.is_dir() {
        return Err(BackupError::MissingDir(dir.clone()));
    }
    refuse_identity_that_cannot_open(options)?;
    let clock = options.export.clock.clone();
    let lock = DirLock::acquire(dir, "backup", clock.now_ms())?;
    let stale_temporaries = remove_stale_temporaries(dir)?;
    let conn = options.export.pace.patience.connect(endpoint).await?;
    let address = conn.address().to_string();
    let source = LiveSource::open(conn, options.export.clone(), options.spec.clone()).await?;
    // The census counted nothing selected: refuse before creating a file.
    let counted_none = source.estimated_total().is_some_and(|t| t.keys == 0);
    if counted_none && !options.allow_empty {
        return Err(empty(&address, &options.spec));
    }
    let encrypted = options.recipients.is_some();
    let (file, created_ms) = fresh_file(dir, &clock, encrypted)?;
    let path = file_target(dir, created_ms, encrypted);
    let sealed = MaybeSealed::new(
        DigestWriter::new(file, encrypted),
        options.recipients.as_ref(),
    )
    .map_err(|e| write_error(&path, e))?;
    let out = BufWriter::with_capacity(1 << 20, sealed);
    let (out, summary) = export(
        &source,
        options.writer,
        out,
        progress,
        &crate::stop::Stop::never(),
    )
    .await?;
    let sealed = out
        .into_inner()
        .map_err(|e| write_error(&path, e.into_error()))?;
    let (mut file, written) = sealed.finish().map_err(|e| write_error(&path, e))?.finish();
    if summary.keys == 0 && !options.allow_empty {
        // Dropping the unfinished file removes it.
        return Err(empty(&address, &options.spec));
    }
    let server = source.server_info().cloned().unwrap_or_default();
    let (verified, encrypted) = match &options.recipients {
        None => {
            file.commit()?;
            (Some(verify_written(&path, &options.keys)?), None)
        }
        Some(recipients) => {
            file.sync()?;
            let sealed = Sealed {
                path: &path,
                temp: file.temp_path(),
                written: &written,
                recipients: recipients.len(),
                created_ms,
                source: &source.header().source,
                spec: &options.spec,
                summary: &summary,
            };
            let checked = check_sealed(&sealed, &options.keys);
            // Under its name whatever the check said: a failed one is
            // moved aside, as a clear backup would be.
            file.commit()?;
            match checked {
                Ok(done) => done,
                Err(problem) => return Err(damaged(&path, problem)?),
            }
        }
    };
    let archive_bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let retention = prune(dir, &options.policy, clock.now_ms(), false, &options.keys)?;
    Ok(BackupOutcome {
        file: path,
        created_ms,
        archive_bytes,
        summary,
        server,
        address,
        verified,
        encrypted,
        retention,
        took_over: lock.took_over.clone(),
        stale_temporaries,
    })
}

fn write_error(path: &Path, cause: std::io::Error) -> BackupError {
    BackupError::Io {
        what: "cannot write",
        path: path.to_path_buf(),
        cause,
    }
}

/// A run that is to verify an encrypted backup with `--identity` fails
/// before it writes anything when the identity cannot open it.
fn refuse_identity_that_cannot_open(options: &BackupOptions) -> Result<(), BackupError> {
    let Some(recipients) = &options.recipients else {
        return Ok(());
    };
    if options.keys.is_empty() || recipients.opened_by(&options.keys)? {
        return Ok(());
    }
    Err(BackupError::IdentityCannotOpen {
        identities: format!("{:?}", options.keys),
        recipients: recipients.len(),
    })
}

/// An encrypted backup just written, still under its temporary name.
struct Sealed<'a> {
    path: &'a Path,
    temp: &'a Path,
    written: &'a Fingerprint,
    recipients: usize,
    created_ms: i64,
    source: &'a crate::format::archive::SourceInfo,
    spec: &'a SelectionSpec,
    summary: &'a ExportSummary,
}

/// Reads the synced file back from disk and compares its digest with what
/// was written; with `keys`, decrypts it and checks every block too; then
/// writes its summary. The problem, if any, for [`damaged`].
fn check_sealed(
    sealed: &Sealed<'_>,
    keys: &Keyring,
) -> Result<(Option<VerifyReport>, Option<SealedOutcome>), String> {
    let on_disk = fs::File::open(sealed.temp)
        .and_then(fingerprint)
        .map_err(|e| format!("cannot read it back: {e}"))?;
    if on_disk != *sealed.written {
        return Err(format!(
            "read back from disk it is {} bytes with SHA-256 {}, but {} bytes with SHA-256 {} \
             were written",
            on_disk.bytes, on_disk.sha256, sealed.written.bytes, sealed.written.sha256
        ));
    }
    let report = if keys.is_empty() {
        None
    } else {
        Some(verify_contents(sealed.temp, keys)?)
    };
    let verified = if report.is_some() {
        Verified::Contents
    } else {
        Verified::Ciphertext
    };
    let summary = summary_of(sealed, verified);
    let summary_file = summary_path(sealed.path);
    write_atomic(&summary_file, &summary.to_json(), 0o600).map_err(|e| e.to_string())?;
    Ok((
        report,
        Some(SealedOutcome {
            recipients: sealed.recipients,
            sha256: sealed.written.sha256.clone(),
            ciphertext_bytes: sealed.written.bytes,
            summary: summary_file,
            verified,
        }),
    ))
}

fn summary_of(sealed: &Sealed<'_>, verified: Verified) -> SealedSummary {
    let cells: std::collections::BTreeMap<_, _> = sealed
        .summary
        .tallies
        .iter()
        .map(|(place, t)| {
            let counts = Counts {
                keys: t.keys,
                bytes: t.bytes,
            };
            (place.clone(), counts)
        })
        .collect();
    let name = sealed
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    SealedSummary::new(SummaryOf {
        backup: &name,
        created_ms: sealed.created_ms,
        created_at: iso(sealed.created_ms),
        source: sealed.source,
        selection: sealed.spec,
        cells: &cells,
        ciphertext: sealed.written,
        recipients: sealed.recipients,
        verified,
    })
}

/// `2024-05-31T03:15:00.123Z`.
fn iso(ms: i64) -> String {
    let name = backup_name(ms);
    let stamp = &name["kbdump-".len()..name.len() - ".kbd".len()];
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..19]
    )
}

/// Every block and payload of a file, decrypted with `keys`.
fn verify_contents(path: &Path, keys: &Keyring) -> Result<VerifyReport, String> {
    let check = |r: &Record| check_payload_decodes(&r.payload);
    let input = ArchiveInput::path(path.to_path_buf()).with_keys(keys.clone());
    let report = verify(&input, &check).map_err(|e| e.to_string())?;
    if report.is_clean() {
        return Ok(report);
    }
    Err(report
        .problems
        .first()
        .map_or("the archive does not end properly".to_string(), |p| {
            p.message.clone()
        }))
}

fn empty(address: &str, spec: &SelectionSpec) -> BackupError {
    let mut selection = String::new();
    for kb in &spec.kbs {
        selection += &format!(" --kb {}", crate::kato::display_bytes(kb));
    }
    for c in &spec.categories {
        selection += &format!(" --category {c}");
    }
    for m in &spec.matches {
        selection += &format!(" --match {}", crate::kato::display_bytes(m));
    }
    if !selection.is_empty() {
        selection = format!(" for{selection}");
    }
    BackupError::Empty {
        address: address.to_string(),
        selection,
    }
}

fn file_target(dir: &Path, ms: i64, encrypted: bool) -> PathBuf {
    dir.join(if encrypted {
        sealed_backup_name(ms)
    } else {
        backup_name(ms)
    })
}

/// Whether any backup, clear or encrypted, good or moved aside, has the
/// time `ms` in its name.
fn name_in_use(dir: &Path, ms: i64) -> bool {
    [backup_name(ms), sealed_backup_name(ms)]
        .iter()
        .any(|name| dir.join(name).exists() || dir.join(format!("{name}{DAMAGED_SUFFIX}")).exists())
}

/// An output file under a name no other backup has (the next free
/// millisecond), private from its first byte.
fn fresh_file(
    dir: &Path,
    clock: &Clock,
    encrypted: bool,
) -> Result<(AtomicFile, i64), BackupError> {
    let mut ms = clock.now_ms();
    while name_in_use(dir, ms) {
        ms += 1;
    }
    let path = file_target(dir, ms, encrypted);
    let file = AtomicFile::create(&path, false)?;
    fs::set_permissions(file.temp_path(), fs::Permissions::from_mode(0o600)).map_err(|source| {
        BackupError::Io {
            what: "cannot restrict the permissions of",
            path: file.temp_path().to_path_buf(),
            cause: source,
        }
    })?;
    Ok((file, ms))
}

/// Re-reads the file from disk: every block, every payload. A file that
/// fails is moved aside and the backup is an error.
fn verify_written(path: &Path, keys: &Keyring) -> Result<VerifyReport, BackupError> {
    let check = |r: &Record| check_payload_decodes(&r.payload);
    let input = ArchiveInput::path(path.to_path_buf()).with_keys(keys.clone());
    let report = verify(&input, &check)?;
    if report.is_clean() {
        return Ok(report);
    }
    let problem = report
        .problems
        .first()
        .map_or("the archive does not end properly".to_string(), |p| {
            p.message.clone()
        });
    Err(damaged(path, problem)?)
}

/// Moves a new backup that failed verification aside: the error to return.
fn damaged(path: &Path, problem: String) -> Result<BackupError, BackupError> {
    let moved_to = move_aside(path)?;
    Ok(BackupError::Damaged {
        file: path.to_path_buf(),
        moved_to,
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::archive::{ArchiveWriter, Header, IndexedArchive, SourceInfo};
    use crate::format::dump;
    use crate::kato::Category;

    /// An archive of `keys` string keys of kb `kb1`, written to `path`.
    fn write_archive(path: &Path, keys: usize) {
        let header = Header::new(SourceInfo::default(), SelectionSpec::default(), 0);
        let file = fs::File::create(path).unwrap();
        let mut writer = ArchiveWriter::new(file, &header, WriterOptions::default()).unwrap();
        for i in 0..keys {
            writer
                .push(&Record {
                    key: format!("kb1:emotives:p{i}").into_bytes(),
                    kb_id: b"kb1".to_vec(),
                    category: Category::Emotives,
                    redis_type: "string".into(),
                    expire_at_ms: None,
                    payload: dump::seal(0, b"\x02{}", 10),
                })
                .unwrap();
        }
        writer.finish().unwrap();
    }

    #[test]
    fn a_written_backup_that_fails_verification_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = file_target(dir.path(), 1_717_200_000_000, false);
        write_archive(&path, 20);
        let keys = Keyring::default();
        assert!(verify_written(&path, &keys).unwrap().is_clean());
        let entry = IndexedArchive::open(fs::File::open(&path).unwrap())
            .unwrap()
            .index()
            .blocks[0]
            .clone();
        let mut bytes = fs::read(&path).unwrap();
        bytes[(entry.offset + entry.len / 2) as usize] ^= 0x40;
        fs::write(&path, bytes).unwrap();
        let err = verify_written(&path, &keys).unwrap_err();
        assert!(matches!(err, BackupError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("moved aside"), "{err}");
        assert!(!path.exists());
        let aside = PathBuf::from(format!("{}.damaged", path.display()));
        assert!(aside.exists());
    }

    #[test]
    fn a_name_in_use_moves_to_the_next_millisecond() {
        let dir = tempfile::tempdir().unwrap();
        let at = 1_717_200_000_000;
        fs::write(file_target(dir.path(), at, false), b"").unwrap();
        fs::write(
            dir.path().join(format!("{}.damaged", backup_name(at + 1))),
            b"",
        )
        .unwrap();
        fs::write(file_target(dir.path(), at + 2, true), b"").unwrap();
        fs::write(
            dir.path()
                .join(format!("{}.damaged", sealed_backup_name(at + 3))),
            b"",
        )
        .unwrap();
        let (file, ms) = fresh_file(dir.path(), &Clock::fixed(at), true).unwrap();
        assert_eq!(ms, at + 4);
        let mode = fs::metadata(file.temp_path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn the_summary_time_is_iso_utc() {
        assert_eq!(iso(1_717_125_300_123), "2024-05-31T03:15:00.123Z");
    }
}
