//! Glue several commands share: archive inputs, the ClickHouse and Redis
//! write connections, and the restore engine run with its undo archive.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::sync::mpsc;

use super::options::globs;
use super::progress::key_progress;
use super::GlobalOpts;
use crate::clock::system_now_ms as now_ms;
use crate::format::archive::{ArchiveWriter, Header, Record, SourceInfo, FORMAT_VERSION};
use crate::net::clickhouse::Ch;
use crate::net::redis::RedisConn;
use crate::sink::file::AtomicFile;
use crate::sink::redis::{restore, Mode, RestoreOptions, RestoreSummary, SourceItem, Target};
use crate::source::archive::SourceResult;

/// An archive given as a path or `-` for stdin.
#[derive(Debug, Clone)]
pub enum ArchiveInput {
    Stdin,
    Path(PathBuf),
}

impl ArchiveInput {
    pub fn parse(arg: &str) -> ArchiveInput {
        if arg == "-" {
            ArchiveInput::Stdin
        } else {
            ArchiveInput::Path(PathBuf::from(arg))
        }
    }

    pub fn name(&self) -> String {
        match self {
            ArchiveInput::Stdin => "<stdin>".to_string(),
            ArchiveInput::Path(p) => p.display().to_string(),
        }
    }

    /// Opens the input for a front-to-back read.
    pub fn open_stream(&self) -> anyhow::Result<Box<dyn Read + Send>> {
        Ok(match self {
            ArchiveInput::Stdin => Box::new(BufReader::with_capacity(1 << 20, io::stdin())),
            ArchiveInput::Path(p) => Box::new(BufReader::with_capacity(1 << 20, open_file(p)?)),
        })
    }
}

pub fn open_file(path: &PathBuf) -> anyhow::Result<File> {
    if path.is_dir() {
        anyhow::bail!(
            "cannot open archive {}: it is a directory; name a .kbd file",
            path.display()
        );
    }
    File::open(path).with_context(|| format!("cannot open archive {}", path.display()))
}

/// The archive reader's own result: an archive that could not be opened at
/// all is an error even though no record failed.
pub async fn source_outcome(
    source: tokio::task::JoinHandle<SourceResult>,
    input: &ArchiveInput,
) -> anyhow::Result<Header> {
    source
        .await
        .context("the archive reader stopped unexpectedly")?
        .map_err(|e| anyhow::anyhow!("{}: {e}", input.name()))
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

/// Runs the restore engine; in replace mode (not a dry run) the keys about
/// to be overwritten go to an undo archive at `undo`, which is completed
/// even when the restore fails midway.
pub async fn restore_with_undo(
    target: &Target,
    rx: mpsc::Receiver<SourceItem>,
    options: &RestoreOptions,
    undo: &Path,
    global: &GlobalOpts,
) -> anyhow::Result<(RestoreSummary, Option<PathBuf>)> {
    let undo = match (options.mode, options.dry_run) {
        (Mode::Replace, false) => Some(UndoWriter::start(undo, target)?),
        _ => None,
    };
    let progress = key_progress(global);
    let result = restore(
        target,
        rx,
        options,
        undo.as_ref().map(|u| u.tx.clone()),
        progress.as_ref(),
    )
    .await;
    let undo_file = match undo {
        Some(u) => u.finish().await?,
        None => None,
    };
    Ok((result?, undo_file))
}

/// Feeds restore from an in-process channel (used by copy).
pub fn restore_channel() -> (mpsc::Sender<SourceItem>, mpsc::Receiver<SourceItem>) {
    mpsc::channel(4096)
}

/// The undo archive: a writer thread fed with the keys about to be
/// overwritten. It is completed (and renamed into place) even when the
/// restore fails midway, so whatever was overwritten can be put back.
struct UndoWriter {
    tx: mpsc::Sender<Record>,
    task: tokio::task::JoinHandle<anyhow::Result<Option<PathBuf>>>,
}

impl UndoWriter {
    fn start(path: &Path, target: &Target) -> anyhow::Result<UndoWriter> {
        let file = AtomicFile::create(path, false).context("creating the undo archive")?;
        let header = Header {
            format_version: FORMAT_VERSION,
            tool: format!("kbdump {}", env!("CARGO_PKG_VERSION")),
            created_at_ms: now_ms(),
            source: SourceInfo {
                kind: "undo".into(),
                address: target.conn.address().to_string(),
                product: target.info.product.clone(),
                version: target.info.version.clone(),
                rdb_version: Some(target.kind.rdb_version),
                mode: if target.info.cluster {
                    "cluster"
                } else {
                    "standalone"
                }
                .into(),
                db: u32::try_from(target.conn.db()).unwrap_or(0),
            },
            selection: Default::default(),
        };
        let (tx, mut rx) = mpsc::channel::<Record>(1024);
        let path = path.to_path_buf();
        let task = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<PathBuf>> {
            let mut writer = ArchiveWriter::new(BufWriter::new(file), &header, Default::default())?;
            let mut count = 0u64;
            while let Some(record) = rx.blocking_recv() {
                writer.push(&record)?;
                count += 1;
            }
            let (out, _) = writer.finish()?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            if count == 0 {
                return Ok(None);
            }
            file.commit()?;
            Ok(Some(path))
        });
        Ok(UndoWriter { tx, task })
    }

    async fn finish(self) -> anyhow::Result<Option<PathBuf>> {
        drop(self.tx);
        self.task
            .await
            .context("the undo writer stopped unexpectedly")?
    }
}
