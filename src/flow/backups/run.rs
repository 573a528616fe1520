//! `backup`: one export into the directory under a fresh name, re-read and
//! verified block by block from disk, and only then retention.

use std::fs;
use std::io::BufWriter;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::catalog::{backup_name, move_aside, prune, remove_stale_temporaries, PruneOutcome};
use super::lock::{DirLock, Holder};
use super::BackupError;
use crate::clock::Clock;
use crate::flow::export::export;
use crate::flow::verify::{check_payload_decodes, verify, VerifyReport};
use crate::format::archive::{Record, SelectionSpec, WriterOptions};
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
    pub verified: VerifyReport,
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
    let (file, created_ms) = fresh_file(dir, &clock)?;
    let path = file_target(dir, created_ms);
    let out = BufWriter::with_capacity(1 << 20, file);
    let (out, summary) = export(
        &source,
        options.writer,
        out,
        progress,
        &crate::stop::Stop::never(),
    )
    .await?;
    let file = out.into_inner().map_err(|e| BackupError::Io {
        what: "cannot write",
        path: path.clone(),
        cause: e.into_error(),
    })?;
    if summary.keys == 0 && !options.allow_empty {
        // Dropping the unfinished file removes it.
        return Err(empty(&address, &options.spec));
    }
    file.commit()?;
    let archive_bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let verified = verify_written(&path)?;
    let retention = prune(dir, &options.policy, clock.now_ms(), false)?;
    Ok(BackupOutcome {
        file: path,
        created_ms,
        archive_bytes,
        summary,
        server: source.server_info().cloned().unwrap_or_default(),
        address,
        verified,
        retention,
        took_over: lock.took_over.clone(),
        stale_temporaries,
    })
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

fn file_target(dir: &Path, ms: i64) -> PathBuf {
    dir.join(backup_name(ms))
}

/// An output file under a name no other backup has (the next free
/// millisecond), private from its first byte.
fn fresh_file(dir: &Path, clock: &Clock) -> Result<(AtomicFile, i64), BackupError> {
    let mut ms = clock.now_ms();
    while file_target(dir, ms).exists() || dir.join(format!("{}.damaged", backup_name(ms))).exists()
    {
        ms += 1;
    }
    let path = file_target(dir, ms);
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
fn verify_written(path: &Path) -> Result<VerifyReport, BackupError> {
    let check = |r: &Record| check_payload_decodes(&r.payload);
    let report = verify(&ArchiveInput::path(path.to_path_buf()), &check)?;
    if report.is_clean() {
        return Ok(report);
    }
    let problem = report
        .problems
        .first()
        .map_or("the archive does not end properly".to_string(), |p| {
            p.message.clone()
        });
    let moved_to = move_aside(path)?;
    Err(BackupError::Damaged {
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
        let path = file_target(dir.path(), 1_717_200_000_000);
        write_archive(&path, 20);
        assert!(verify_written(&path).unwrap().is_clean());
        let entry = IndexedArchive::open(fs::File::open(&path).unwrap())
            .unwrap()
            .index()
            .blocks[0]
            .clone();
        let mut bytes = fs::read(&path).unwrap();
        bytes[(entry.offset + entry.len / 2) as usize] ^= 0x40;
        fs::write(&path, bytes).unwrap();
        let err = verify_written(&path).unwrap_err();
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
        fs::write(file_target(dir.path(), at), b"").unwrap();
        fs::write(
            dir.path().join(format!("{}.damaged", backup_name(at + 1))),
            b"",
        )
        .unwrap();
        let (file, ms) = fresh_file(dir.path(), &Clock::fixed(at)).unwrap();
        assert_eq!(ms, at + 2);
        let mode = fs::metadata(file.temp_path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
