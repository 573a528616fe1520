//! `backups test`: the runbook's restore test as one command. The newest
//! good backup (or a chosen file) is restored into an empty scratch
//! server, every key is compared with the archive (`diff`), and the
//! scratch server is emptied again by deleting exactly the keys the backup
//! holds (never FLUSHALL/FLUSHDB: a scratch URL that points at the wrong
//! database loses nothing that was not just written). The result is
//! recorded beside the backups for `backups check --max-test-age`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::catalog::{list, read_record, write_atomic, Entry};
use super::check::TESTS_FILE;
use super::lock::DirLock;
use super::BackupError;
use crate::clock::Clock;
use crate::flow::diff::{diff, DiffOptions, DiffReport, KeyDiff};
use crate::flow::restore::{restore_with_undo, RestoreFlowError};
use crate::format::encryption::Keyring;
use crate::net::redis::{RedisConn, RedisIoError};
use crate::plan::health::TestHistory;
use crate::progress::Progress;
use crate::records::{Failure, SourceItem};
use crate::selection::Selection;
use crate::sink::redis::{Counts, RestoreOptions, RestoreSummary, Target};
use crate::source::archive::{ArchiveInput, ArchiveSource};

/// Keys per UNLINK when the scratch server is emptied.
const UNLINK_BATCH: usize = 500;
/// Differences listed in a result (all are counted).
const EXAMPLES: usize = 20;

/// What a restore test found.
#[derive(Debug, Clone, Serialize)]
pub struct TestOutcome {
    pub backup: PathBuf,
    pub scratch: String,
    pub ok: bool,
    /// One line: what passed or what went wrong.
    pub detail: String,
    pub restored: Counts,
    pub failures: Vec<Failure>,
    /// Parts of the backup that could not be read.
    pub damaged: Vec<Failure>,
    pub differences: u64,
    pub examples: Vec<KeyDiff>,
    /// Keys deleted from the scratch server afterwards.
    pub removed: u64,
    /// Keys still on the scratch server afterwards (written by someone
    /// else during the test).
    pub left_on_scratch: u64,
}

/// Runs a restore test of `backup` (default: the newest usable backup in
/// `dir`, an encrypted one opened with `keys`) on the scratch server
/// `target`, and records it in `dir`. An encrypted backup without a
/// matching identity fails before the scratch server is touched.
pub async fn restore_test(
    dir: &Path,
    backup: Option<&Path>,
    target: &Target,
    clock: &Clock,
    keys: &Keyring,
    progress: &dyn Progress,
) -> Result<TestOutcome, BackupError> {
    let _lock = DirLock::acquire(dir, "backups test", clock.now_ms())?;
    let path = match backup {
        Some(p) => p.to_path_buf(),
        None => newest_usable(dir, keys)?,
    };
    let input = ArchiveInput::path(path.clone()).with_keys(keys.clone());
    let source = ArchiveSource::open(&input)?;
    let mut conn = target.conn.clone();
    let held: u64 = conn.query(redis::cmd("DBSIZE"), "DBSIZE").await?;
    if held > 0 {
        return Err(BackupError::ScratchNotEmpty {
            address: conn.address().to_string(),
            keys: held,
        });
    }
    if let Some(size) = source.selected_size(&Selection::default()) {
        target
            .check_headroom(size.payload_bytes, size.keys)
            .map_err(RestoreFlowError::from)?;
    }
    let compared = restore_and_compare(&input, source, target, clock, progress).await;
    // Emptied whatever the comparison said, and before its error is told.
    let (removed, left_on_scratch) = empty_scratch(&input, &conn).await?;
    let (summary, report) = compared?;
    let outcome = judge(
        path,
        conn.address(),
        summary,
        report,
        removed,
        left_on_scratch,
    );
    record(dir, &outcome, clock.now_ms())?;
    Ok(outcome)
}

fn newest_usable(dir: &Path, keys: &Keyring) -> Result<PathBuf, BackupError> {
    list(dir, keys)?
        .into_iter()
        .filter(Entry::is_usable)
        .max_by_key(|e| (e.created_ms(), e.name.clone()))
        .map(|e| e.path)
        .ok_or_else(|| BackupError::NoGoodBackup(dir.to_path_buf()))
}

async fn restore_and_compare(
    input: &ArchiveInput,
    source: ArchiveSource,
    target: &Target,
    clock: &Clock,
    progress: &dyn Progress,
) -> Result<(RestoreSummary, DiffReport), BackupError> {
    let options = RestoreOptions {
        memory_budget: target.memory_budget(),
        max_payload: target.max_bulk,
        max_bytes: (target.max_bulk / 4).clamp(1, 1 << 20) as usize,
        clock: clock.clone(),
        ..RestoreOptions::default()
    };
    let (items, task) = source.stream(Selection::default()).split();
    // Missing mode writes no undo archive; the path is never created.
    let no_undo = Path::new("/nonexistent/kbdump-test.undo.kbd");
    let (summary, _) = restore_with_undo(target, items, &options, no_undo, clock, progress).await?;
    task.finish().await?;
    let (items, task) = ArchiveSource::open(input)?
        .stream(Selection::default())
        .split();
    let diff_options = DiffOptions {
        clock: clock.clone(),
        ..DiffOptions::default()
    };
    let report = diff(
        &target.conn,
        items,
        &diff_options,
        &crate::progress::NoProgress,
    )
    .await?;
    task.finish().await?;
    Ok((summary, report))
}

/// Deletes every key the backup holds, and kbdump's own temporary keys of
/// a logical restore; returns (deleted, keys left on the server).
async fn empty_scratch(input: &ArchiveInput, conn: &RedisConn) -> Result<(u64, u64), BackupError> {
    let mut conn = conn.clone();
    let (mut items, task) = ArchiveSource::open(input)?
        .stream(Selection::default())
        .split();
    let mut removed = 0;
    let mut batch = Vec::with_capacity(UNLINK_BATCH);
    while let Some(item) = items.recv().await {
        if let SourceItem::Record(r) = item {
            batch.push(r.key);
            if batch.len() >= UNLINK_BATCH {
                removed += unlink(&mut conn, std::mem::take(&mut batch)).await?;
            }
        }
    }
    removed += unlink(&mut conn, batch).await?;
    // A damaged block ends as a Damaged item, not an error: its keys were
    // not restored either.
    let _ = task.finish().await;
    let mut temps = conn.scan(&b"__kbdump_tmp:*"[..], 1000);
    while let Some(page) = temps.next_page().await? {
        removed += unlink(&mut conn, page).await?;
    }
    let left: u64 = conn.query(redis::cmd("DBSIZE"), "DBSIZE").await?;
    Ok((removed, left))
}

async fn unlink(conn: &mut RedisConn, keys: Vec<Vec<u8>>) -> Result<u64, RedisIoError> {
    if keys.is_empty() {
        return Ok(0);
    }
    let mut cmd = redis::cmd("UNLINK");
    cmd.arg(keys);
    conn.query(cmd, "UNLINK").await
}

fn judge(
    backup: PathBuf,
    scratch: &str,
    summary: RestoreSummary,
    report: DiffReport,
    removed: u64,
    left_on_scratch: u64,
) -> TestOutcome {
    let restored = summary.total();
    let differences = report.keys.len() as u64;
    let mut damaged = report.damaged.clone();
    if damaged.is_empty() && summary.damaged > 0 {
        damaged.push(Failure {
            what: backup.display().to_string(),
            reason: format!("{} damaged parts", summary.damaged),
        });
    }
    let ok = differences == 0 && summary.failures.is_empty() && damaged.is_empty();
    let detail = if ok {
        format!(
            "{} keys restored into {scratch} and identical to the backup ({} expired since)",
            restored.restored, restored.expired
        )
    } else {
        let mut parts = Vec::new();
        if !damaged.is_empty() {
            let first = &damaged[0];
            parts.push(format!(
                "{} damaged parts ({}: {})",
                damaged.len(),
                first.what,
                first.reason
            ));
        }
        if !summary.failures.is_empty() {
            parts.push(format!("{} keys failed to restore", summary.failures.len()));
        }
        if differences > 0 {
            parts.push(format!("{differences} keys differ after the restore"));
        }
        parts.join("; ")
    };
    TestOutcome {
        backup,
        scratch: scratch.to_string(),
        ok,
        detail,
        restored,
        failures: summary.failures,
        damaged,
        differences,
        examples: report.keys.into_iter().take(EXAMPLES).collect(),
        removed,
        left_on_scratch,
    }
}

fn record(dir: &Path, outcome: &TestOutcome, now_ms: i64) -> Result<(), BackupError> {
    let path = dir.join(TESTS_FILE);
    let mut history: TestHistory = read_record(&path).unwrap_or_default();
    history.last_at_ms = Some(now_ms);
    history.last_ok = outcome.ok;
    history.last_backup = outcome.backup.display().to_string();
    history.last_detail = outcome.detail.clone();
    if outcome.ok {
        history.last_success_ms = Some(now_ms);
    }
    let text = serde_json::to_vec_pretty(&history).unwrap_or_default();
    write_atomic(&path, &text, 0o600)
}
