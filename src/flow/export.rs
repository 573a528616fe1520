//! Export: a live source (SCAN + DUMP, or the server's snapshot) joined to
//! an archive sink. The scan runs on the
//! calling task, the writer on a blocking thread; the bounded channel
//! between them keeps memory flat.

use std::io::Write;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::format::archive::{self, WriterOptions};
use crate::progress::Progress;
use crate::records::SourceItem;
use crate::sink::archive::spawn_writer;
use crate::source::live::{ExportSummary, LiveSource};
use crate::source::snapshot::{SnapshotSource, SnapshotSummary};
use crate::source::SourceError;
use crate::stop::Stop;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("writing the archive failed: {0}")]
    Archive(archive::Error),
    #[error("the archive writer stopped unexpectedly")]
    WriterGone,
    /// A stop was requested: the archive was abandoned unfinished.
    #[error("the export was interrupted")]
    Interrupted,
}

// Not `#[from]`: the message says the cause, so it is not also the source.
impl From<archive::Error> for ExportError {
    fn from(e: archive::Error) -> ExportError {
        ExportError::Archive(e)
    }
}

impl ExportError {
    /// The kind of the I/O error that stopped the writer, if one did.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            ExportError::Archive(e) => e.io_kind(),
            _ => None,
        }
    }
}

/// Records in flight between the scan and the writer.
const CHANNEL_RECORDS: usize = 4096;

/// How long an interrupted export waits for its writer to let go of the
/// output: a writer blocked on a stream whose reader stalled is left behind.
const ABANDON_WAIT: Duration = Duration::from_secs(5);

/// Exports what `source` yields into an archive written to `out`. Once
/// `stop` is requested the scan ends and the archive is abandoned
/// unfinished ([`ExportError::Interrupted`]; `out` is dropped, so an
/// [`AtomicFile`](crate::sink::file::AtomicFile) removes its temporary
/// file).
pub async fn export<W: Write + Send + 'static>(
    source: &LiveSource,
    writer: WriterOptions,
    out: W,
    progress: &dyn Progress,
    stop: &Stop,
) -> Result<(W, ExportSummary), ExportError> {
    let header = source.header().clone();
    let run = |tx: mpsc::Sender<SourceItem>| async move { source.run(&tx, progress).await };
    export_with(header, run, writer, out, progress, stop).await
}

/// Exports a server's snapshot ([`SnapshotSource`]) into an archive
/// written to `out`, as [`export`] does a SCAN read. A `--kb` that names
/// nothing, or a transfer that breaks off, is known only at the end: the
/// error comes before the archive is finished, so an
/// [`AtomicFile`](crate::sink::file::AtomicFile) never gets its final name.
pub async fn export_snapshot<W: Write + Send + 'static>(
    source: &mut SnapshotSource,
    writer: WriterOptions,
    out: W,
    progress: &dyn Progress,
    stop: &Stop,
) -> Result<(W, SnapshotSummary), ExportError> {
    let header = source.header().clone();
    let run = |tx: mpsc::Sender<SourceItem>| async move { source.run(&tx, progress).await };
    export_with(header, run, writer, out, progress, stop).await
}

/// The join of [`export`] and [`export_snapshot`]: `run` reads the source
/// into the channel it is given (and drops it when done).
async fn export_with<W, T, F, Fut>(
    header: archive::Header,
    run: F,
    writer: WriterOptions,
    out: W,
    progress: &dyn Progress,
    stop: &Stop,
) -> Result<(W, T), ExportError>
where
    W: Write + Send + 'static,
    F: FnOnce(mpsc::Sender<SourceItem>) -> Fut,
    Fut: std::future::Future<Output = Result<T, SourceError>>,
{
    let (tx, rx) = mpsc::channel::<SourceItem>(CHANNEL_RECORDS);
    let (fail, failed) = Stop::new();
    let written = spawn_writer(out, header, writer, rx, stop.clone(), failed);
    let scanned = tokio::select! {
        biased;
        () = stop.requested() => None,
        scanned = run(tx.clone()) => Some(scanned),
    };
    // Said before the channel closes, so that the writer, which finishes
    // the archive when it does, abandons it instead.
    if matches!(scanned, Some(Err(_))) {
        fail.request();
    }
    drop(tx);
    progress.finish();
    let Some(scanned) = scanned else {
        let _ = tokio::time::timeout(ABANDON_WAIT, written).await;
        return Err(ExportError::Interrupted);
    };
    let written = written.await.map_err(|_| ExportError::WriterGone)?;
    let written = written.map(|w| w.ok_or(ExportError::Interrupted));
    match (scanned, written) {
        // The writer stopped first (disk full, broken pipe): its error is
        // the cause, the scan only saw the channel close.
        (Err(SourceError::ConsumerGone), Err(e)) => Err(e.into()),
        (Err(e), _) => Err(e.into()),
        (Ok(_), Err(e)) => Err(e.into()),
        (Ok(_), Ok(Err(interrupted))) => Err(interrupted),
        (Ok(summary), Ok(Ok(written))) => Ok((written.out, summary)),
    }
}

/// What a conversion of a physical backup wrote.
#[derive(Debug, Clone, Default)]
pub struct Converted {
    pub records: u64,
    /// Keys the archive's placement check refuses for the block they were
    /// attributed to (none is expected: every key of a db has a group);
    /// left out and named rather than written where a reader rejects them.
    pub unfiled: Vec<Vec<u8>>,
    /// Parts of the file that could not be read (a truncated end, an
    /// unknown type): every key before them is in the archive.
    pub damaged: Vec<crate::records::Failure>,
}

/// Converts a physical backup (an RDB file opened as an archive source)
/// into an archive written to `out`, with `header` (the file's own,
/// completed with the selection). The reader runs on a blocking thread,
/// the writer on another; the bounded channel between them keeps memory
/// flat.
pub async fn convert<W: Write + Send + 'static>(
    source: crate::source::archive::ArchiveSource,
    header: archive::Header,
    selection: crate::selection::Selection,
    writer: WriterOptions,
    out: W,
    progress: &dyn Progress,
    stop: &Stop,
) -> Result<(W, Converted), ExportError> {
    let (mut items, task) = source.stream(selection).split();
    let (tx, rx) = mpsc::channel::<SourceItem>(CHANNEL_RECORDS);
    let written = spawn_writer(out, header, writer, rx, stop.clone(), Stop::never());
    let mut records = 0u64;
    let mut unfiled = Vec::new();
    let forwarded = async {
        // Progress in batches: `advance` is meant per batch, not per key.
        let (mut keys, mut bytes) = (0u64, 0u64);
        while let Some(item) = items.recv().await {
            if let SourceItem::Record(r) = &item {
                if archive::misplaced(&r.kb_id, r.category, &r.key).is_some() {
                    unfiled.push(r.key.clone());
                    continue;
                }
                records += 1;
                keys += 1;
                bytes += r.payload.len() as u64;
                if keys == 1024 {
                    progress.advance(keys, bytes);
                    (keys, bytes) = (0, 0);
                }
            }
            if tx.send(item).await.is_err() {
                break;
            }
        }
        progress.advance(keys, bytes);
    };
    let completed = tokio::select! {
        biased;
        () = stop.requested() => false,
        () = forwarded => true,
    };
    drop(tx);
    drop(items);
    progress.finish();
    if !completed {
        let _ = tokio::time::timeout(ABANDON_WAIT, written).await;
        return Err(ExportError::Interrupted);
    }
    task.finish().await?;
    let written = written.await.map_err(|_| ExportError::WriterGone)??;
    let written = written.ok_or(ExportError::Interrupted)?;
    Ok((
        written.out,
        Converted {
            records,
            unfiled,
            damaged: written.damaged,
        },
    ))
}
