//! The archive sink: records in, a `.kbd` archive out, written on a blocking
//! thread (zstd and file I/O) behind a bounded channel, which is the
//! backpressure that keeps memory flat.
//!
//! Two uses: an export writes what a source yields ([`spawn_writer`]); a
//! restore in replace mode saves the keys it is about to overwrite
//! ([`UndoArchive`]).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tokio::sync::mpsc::{self, Receiver, Sender};
use tokio::task::JoinHandle;

use super::file::{AtomicFile, OutputError};
use crate::format::archive::{self, ArchiveWriter, Header, Record, WriterOptions};
use crate::records::{Failure, SourceItem};

/// What the writer thread wrote.
#[derive(Debug)]
pub struct Written<W> {
    pub out: W,
    /// Parts of the source that could not be read, so are not in the
    /// archive.
    pub damaged: Vec<Failure>,
}

/// Writes every record that arrives on `items` into an archive on `out`;
/// each kb_id's end ([`SourceItem::KbDone`]) goes into the index. The
/// archive is finished (index and end frame) when the channel closes.
pub fn spawn_writer<W: Write + Send + 'static>(
    out: W,
    header: Header,
    options: WriterOptions,
    mut items: Receiver<SourceItem>,
) -> JoinHandle<archive::Result<Written<W>>> {
    tokio::task::spawn_blocking(move || {
        let mut writer = ArchiveWriter::new(out, &header, options)?;
        let mut damaged = Vec::new();
        while let Some(item) = items.blocking_recv() {
            match item {
                SourceItem::Record(record) => writer.push(&record)?,
                SourceItem::KbDone(window) => writer.finish_kb(window)?,
                SourceItem::Damaged { what, reason } => damaged.push(Failure { what, reason }),
            }
        }
        let (out, _) = writer.finish()?;
        Ok(Written { out, damaged })
    })
}

/// Why the undo archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error("creating the undo archive: {0}")]
    Create(#[source] OutputError),
    #[error("writing the undo archive: {0}")]
    Write(#[from] archive::Error),
    #[error("committing the undo archive: {0}")]
    Commit(#[source] OutputError),
    #[error("the undo writer stopped unexpectedly")]
    TaskGone,
}

/// The undo archive of a replace: a writer thread fed with the keys about
/// to be overwritten. It is completed (and renamed into place) even when
/// the restore fails midway, so whatever was overwritten can be put back.
/// An undo that received no key leaves no file.
pub struct UndoArchive {
    tx: Sender<Record>,
    task: JoinHandle<Result<Option<PathBuf>, UndoError>>,
}

/// Keys in flight to the undo writer.
const UNDO_CHANNEL: usize = 1024;

impl UndoArchive {
    /// Creates the file (under a temporary name) and starts the writer.
    pub fn start(path: &Path, header: Header) -> Result<UndoArchive, UndoError> {
        let file = AtomicFile::create(path, false).map_err(UndoError::Create)?;
        let (tx, mut rx) = mpsc::channel::<Record>(UNDO_CHANNEL);
        let path = path.to_path_buf();
        let task = tokio::task::spawn_blocking(move || {
            let mut writer = ArchiveWriter::new(BufWriter::new(file), &header, Default::default())?;
            let mut count = 0u64;
            while let Some(record) = rx.blocking_recv() {
                writer.push(&record)?;
                count += 1;
            }
            let (out, _) = writer.finish()?;
            let file = out
                .into_inner()
                .map_err(|e| archive::Error::Io(e.into_error()))?;
            if count == 0 {
                return Ok(None);
            }
            file.commit().map_err(UndoError::Commit)?;
            Ok(Some(path))
        });
        Ok(UndoArchive { tx, task })
    }

    /// Where the restore sends the previous values.
    pub fn sender(&self) -> Sender<Record> {
        self.tx.clone()
    }

    /// Closes the archive; its path when it holds any key.
    pub async fn finish(self) -> Result<Option<PathBuf>, UndoError> {
        drop(self.tx);
        self.task.await.map_err(|_| UndoError::TaskGone)?
    }
}
