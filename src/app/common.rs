//! Glue several commands share: archive inputs, the ClickHouse and Redis
//! write connections, and the restore engine run with its undo archive.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::options::globs;
use super::progress::key_progress;
use super::GlobalOpts;
use crate::flow;
use crate::net::clickhouse::Ch;
use crate::net::redis::RedisConn;
use crate::records::SourceItem;
use crate::sink::redis::{RestoreOptions, RestoreSummary, Target};
use crate::source::{SourceError, SourceTask};

pub use crate::source::archive::ArchiveInput;

/// The source's own verdict: an archive that could not be read at all is
/// an error even though no record failed.
pub async fn source_outcome<T>(task: SourceTask<T>, input: &ArchiveInput) -> anyhow::Result<T> {
    task.finish().await.map_err(|e| match e {
        SourceError::Archive(e) => anyhow::anyhow!("{}: {e}", input.name()),
        other => other.into(),
    })
}

/// A ClickHouse client for the URL, after checking the server answers.
pub async fn connect_clickhouse(url: &str) -> anyhow::Result<Ch> {
    let ch = Ch::from_url(url)?;
    ch.ping().await?;
    Ok(ch)
}

/// The checked connection and its multiplexed connection for rebuild's
/// pipelines (both share one socket and the long response timeout that
/// large write pipelines need).
pub async fn write_connection(
    url: &str,
) -> anyhow::Result<(RedisConn, redis::aio::MultiplexedConnection)> {
    let checked = RedisConn::connect(url).await?;
    let conn = checked.multiplexed();
    Ok((checked, conn))
}

/// The kb_ids `--kb` names in ClickHouse (see [`Ch::resolve_kbs`]); warns
/// on stderr when globs were given and none matches.
pub async fn resolve_clickhouse_kbs(ch: &Ch, kbs: &[String]) -> anyhow::Result<Vec<String>> {
    let ids = ch.resolve_kbs(&globs(kbs)).await?;
    if ids.is_empty() && !kbs.is_empty() {
        eprintln!(
            "kbdump: warning: no kb_id in {} matches --kb {}",
            ch.target(),
            kbs.join(" --kb ")
        );
    }
    Ok(ids)
}

/// Runs the Redis sink with its undo archive (see
/// [`crate::flow::restore::restore_with_undo`]), drawing progress.
pub async fn restore_with_undo(
    target: &Target,
    items: mpsc::Receiver<SourceItem>,
    options: &RestoreOptions,
    undo: &Path,
    global: &GlobalOpts,
) -> anyhow::Result<(RestoreSummary, Option<PathBuf>)> {
    let progress = key_progress(global);
    let clock = options.clock.clone();
    Ok(
        flow::restore::restore_with_undo(target, items, options, undo, &clock, progress.as_ref())
            .await?,
    )
}

/// Opens an archive, telling the user on stderr when a file is read front
/// to back (cut short, or an index that does not match its blocks).
pub fn open_archive(input: &ArchiveInput) -> anyhow::Result<crate::source::archive::ArchiveSource> {
    let archive = crate::source::archive::ArchiveSource::open(input)?;
    if let Some(warning) = archive.warning() {
        eprintln!("kbdump: warning: {}: {warning}", input.name());
    }
    Ok(archive)
}

/// Reads the selected records of an archive on this thread (`ls`, `cat`):
/// each record goes to `record`; each damaged part (block, misplaced or
/// repeated key, index) is named on stderr and the read goes on. Returns
/// how many damaged parts there were.
pub fn visit_archive(
    input: &ArchiveInput,
    selection: &crate::selection::Selection,
    mut record: impl FnMut(crate::records::Record) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut damaged = 0u64;
    open_archive(input)?
        .visit(selection, |item| match item {
            SourceItem::Record(r) => record(r),
            SourceItem::Damaged { what, reason } => {
                damaged += 1;
                eprintln!("kbdump: {}: damaged: {what}: {reason}", input.name());
                Ok(())
            }
            SourceItem::KbDone(_) => Ok(()),
        })
        .map_err(|e: anyhow::Error| e.context(input.name()))?;
    if damaged > 0 {
        eprintln!(
            "kbdump: {}: {damaged} damaged part(s) skipped; `kbdump verify` lists every problem",
            input.name()
        );
    }
    Ok(damaged)
}
