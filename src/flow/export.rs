//! Export: a live source joined to an archive sink. The scan runs on the
//! calling task, the writer on a blocking thread; the bounded channel
//! between them keeps memory flat.

use std::io::Write;

use tokio::sync::mpsc;

use crate::format::archive::{self, WriterOptions};
use crate::progress::Progress;
use crate::records::SourceItem;
use crate::sink::archive::spawn_writer;
use crate::source::live::{ExportSummary, LiveSource};
use crate::source::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("writing the archive failed: {0}")]
    Archive(#[from] archive::Error),
    #[error("the archive writer stopped unexpectedly")]
    WriterGone,
}

/// Records in flight between the scan and the writer.
const CHANNEL_RECORDS: usize = 4096;

/// Exports what `source` yields into an archive written to `out`.
pub async fn export<W: Write + Send + 'static>(
    source: &LiveSource,
    writer: WriterOptions,
    out: W,
    progress: &dyn Progress,
) -> Result<(W, ExportSummary), ExportError> {
    let (tx, rx) = mpsc::channel::<SourceItem>(CHANNEL_RECORDS);
    let written = spawn_writer(out, source.header().clone(), writer, rx);
    let scanned = source.run(&tx, progress).await;
    drop(tx);
    let written = written.await.map_err(|_| ExportError::WriterGone)?;
    progress.finish();
    match (scanned, written) {
        // The writer stopped first (disk full, broken pipe): its error is
        // the cause, the scan only saw the channel close.
        (Err(SourceError::ConsumerGone), Err(e)) => Err(e.into()),
        (Err(e), _) => Err(e.into()),
        (Ok(_), Err(e)) => Err(e.into()),
        (Ok(summary), Ok(written)) => Ok((written.out, summary)),
    }
}
