//! The archive sink: records in, a `.kbd` archive out, written on a blocking
//! thread (zstd and file I/O) behind a bounded channel, which is the
//! backpressure that keeps memory flat.
//!
//! Two uses: an export writes what a source yields ([`spawn_writer`]); a
//! restore in replace mode saves the keys it is about to overwrite
//! ([`UndoArchive`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc::{self, Receiver, Sender};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::file::{AtomicFile, OutputError};
use crate::format::archive::{self, ArchiveWriter, Checkpoint, Header, Record, WriterOptions};
use crate::records::{Failure, SourceItem};
use crate::stop::Stop;

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
/// archive is finished (index and end frame) when the channel closes,
/// unless `stop` or `failed` was requested by then: then it is abandoned
/// unfinished (`None`), so that no reader takes an interrupted export, or
/// the records of a source that failed midway, for a complete archive.
///
/// Nothing is written before the first item (or a good end): a source that
/// fails before yielding anything (a `--kb` that names nothing, known only
/// at the end of a snapshot) leaves a stream untouched.
pub fn spawn_writer<W: Write + Send + 'static>(
    out: W,
    header: Header,
    options: WriterOptions,
    mut items: Receiver<SourceItem>,
    stop: Stop,
    failed: Stop,
) -> JoinHandle<archive::Result<Option<Written<W>>>> {
    tokio::task::spawn_blocking(move || {
        let abandoned = || stop.is_requested() || failed.is_requested();
        let mut first = items.blocking_recv();
        if first.is_none() && abandoned() {
            return Ok(None);
        }
        let mut writer = ArchiveWriter::new(out, &header, options)?;
        let mut damaged = Vec::new();
        while let Some(item) = first.take().or_else(|| items.blocking_recv()) {
            match item {
                SourceItem::Record(record) => writer.push(&record)?,
                SourceItem::KbDone(window) => writer.finish_kb(window)?,
                SourceItem::Damaged { what, reason } => damaged.push(Failure { what, reason }),
            }
        }
        if abandoned() {
            return Ok(None);
        }
        let (out, _) = writer.finish()?;
        Ok(Some(Written { out, damaged }))
    })
}

/// Why the undo archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    // The messages say their cause, so it is not also the source.
    #[error("creating the undo archive: {0}")]
    Create(OutputError),
    #[error("writing the undo archive: {0}")]
    Write(archive::Error),
    #[error("{0}")]
    File(OutputError),
    #[error("the undo writer stopped unexpectedly")]
    TaskGone,
}

impl From<archive::Error> for UndoError {
    fn from(e: archive::Error) -> UndoError {
        UndoError::Write(e)
    }
}

impl From<OutputError> for UndoError {
    fn from(e: OutputError) -> UndoError {
        UndoError::File(e)
    }
}

impl UndoError {
    /// The innermost cause (`No space left on device (os error 28)`), for a
    /// message that says it once.
    pub fn root_cause(&self) -> String {
        let io = match self {
            UndoError::Write(archive::Error::Io(e)) => Some(e),
            UndoError::Create(e) | UndoError::File(e) => e.io_cause(),
            _ => None,
        };
        io.map_or_else(|| self.to_string(), |e| e.to_string())
    }
}

/// The previous values could not be saved (the undo archive's outcome says
/// why): the keys must not be overwritten.
#[derive(Debug, thiserror::Error)]
#[error("the undo archive did not save the previous values")]
pub struct NotSaved;

/// One batch of previous values and who waits for them to be on disk.
struct SaveRequest {
    records: Vec<Record>,
    saved: oneshot::Sender<bool>,
}

/// Where a restore sends the previous values of the keys it is about to
/// overwrite (cheap to clone, one per batch in flight).
#[derive(Clone)]
pub struct UndoLog {
    tx: Sender<SaveRequest>,
}

impl UndoLog {
    /// Appends `records` to the undo archive and returns once they are
    /// synced to disk under the archive's final name.
    pub async fn save(&self, records: Vec<Record>) -> Result<(), NotSaved> {
        let (saved, answer) = oneshot::channel();
        let request = SaveRequest { records, saved };
        self.tx.send(request).await.map_err(|_| NotSaved)?;
        match answer.await {
            Ok(true) => Ok(()),
            _ => Err(NotSaved),
        }
    }
}

/// What an undo archive holds once it is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoSummary {
    pub path: PathBuf,
    /// Keys whose previous state it holds.
    pub keys: u64,
    /// Of those, the keys that did not exist (absent records: the undo
    /// deletes them).
    pub absent: u64,
    /// The index and end frame were written; `false` after a failure cut
    /// it short (it still holds every key it acknowledged, readable front
    /// to back).
    pub complete: bool,
}

/// How the undo archive ended: what is on disk (`None`: no file), and the
/// failure that stopped it, if any.
#[derive(Debug)]
pub struct UndoOutcome {
    pub summary: Option<UndoSummary>,
    pub failure: Option<UndoError>,
}

/// The undo archive of a replace, a write-ahead log of the previous
/// values: each batch is appended as complete blocks, synced, and the file
/// renamed into place (at the first batch) before the batch's keys may be
/// overwritten. At every sync point the file is a readable archive cut
/// short, so a crash leaves every overwritten key in it; a normal end adds
/// the index and the end frame. After a failure the file is cut back to
/// the last synced batch and no batch is acknowledged any more.
pub struct UndoArchive {
    log: UndoLog,
    task: JoinHandle<UndoOutcome>,
}

/// Batches waiting for the undo writer (each holds up to one restore batch).
const UNDO_CHANNEL: usize = 16;

impl UndoArchive {
    /// Creates the file (under a temporary name until the first batch) and
    /// starts the writer.
    pub fn start(path: &Path, header: Header) -> Result<UndoArchive, UndoError> {
        let file = AtomicFile::create(path, false).map_err(UndoError::Create)?;
        let writer = ArchiveWriter::new(file, &header, Default::default())?;
        let (tx, rx) = mpsc::channel::<SaveRequest>(UNDO_CHANNEL);
        let undo = UndoWriter::new(writer, path);
        let task = tokio::task::spawn_blocking(move || undo.run(rx));
        Ok(UndoArchive {
            log: UndoLog { tx },
            task,
        })
    }

    /// Where the restore sends the previous values.
    pub fn log(&self) -> UndoLog {
        self.log.clone()
    }

    /// Closes the archive once every [`UndoLog`] is dropped. `keep: false`
    /// removes it (no key was overwritten, so there is nothing to undo).
    pub async fn finish(self, keep: bool) -> UndoOutcome {
        drop(self.log);
        let mut outcome = self.task.await.unwrap_or(UndoOutcome {
            summary: None,
            failure: Some(UndoError::TaskGone),
        });
        if !keep && outcome.failure.is_none() {
            if let Some(summary) = outcome.summary.take() {
                if let Err(e) = std::fs::remove_file(&summary.path) {
                    outcome.failure = Some(
                        OutputError::Io {
                            path: summary.path,
                            cause: e,
                        }
                        .into(),
                    );
                }
            }
        }
        outcome
    }
}

/// The writer thread's state.
struct UndoWriter {
    writer: ArchiveWriter<AtomicFile>,
    path: PathBuf,
    /// The end of the last synced batch.
    good: Checkpoint,
    keys: u64,
    absent: u64,
    /// Renamed into place (at the first synced batch).
    published: bool,
}

/// Batches written together before one sync (group commit).
const GROUP: usize = 8;

impl UndoWriter {
    fn new(writer: ArchiveWriter<AtomicFile>, path: &Path) -> Self {
        UndoWriter {
            good: writer.checkpoint(),
            writer,
            path: path.to_path_buf(),
            keys: 0,
            absent: 0,
            published: false,
        }
    }

    fn run(mut self, mut rx: Receiver<SaveRequest>) -> UndoOutcome {
        while let Some(first) = rx.blocking_recv() {
            let group = gather(first, &mut rx);
            let result = self.write_group(&group);
            for request in group {
                let _ = request.saved.send(result.is_ok());
            }
            if let Err(e) = result {
                // Requests still queued are refused when `rx` drops: no
                // batch after a failure is acknowledged.
                drop(rx);
                return self.stop(e);
            }
        }
        self.close()
    }

    /// Writes the group's records as complete blocks, syncs, and renames
    /// the file into place at the first batch.
    fn write_group(&mut self, group: &[SaveRequest]) -> Result<(), UndoError> {
        for request in group {
            for record in &request.records {
                self.writer.push(record)?;
            }
        }
        self.writer.flush_blocks()?;
        let file = self.writer.get_mut();
        file.sync()?;
        file.publish()?;
        self.published = true;
        self.good = self.writer.checkpoint();
        let records = || group.iter().flat_map(|r| &r.records);
        self.keys += records().count() as u64;
        self.absent += records().filter(|r| r.is_absent()).count() as u64;
        Ok(())
    }

    /// The normal end: index and end frame, synced. An undo that never
    /// got a batch is removed (it was never published).
    fn close(self) -> UndoOutcome {
        if !self.published {
            return UndoOutcome {
                summary: None,
                failure: None,
            };
        }
        let summary = self.summary();
        let failure = self.finish_file().err();
        UndoOutcome {
            summary: Some(UndoSummary {
                complete: failure.is_none(),
                ..summary
            }),
            failure,
        }
    }

    /// After a failure: the file is cut back to the last synced batch and,
    /// if the index still fits, completed.
    fn stop(mut self, failure: UndoError) -> UndoOutcome {
        let summary = self.published.then(|| self.summary());
        self.writer.rewind(self.good);
        let cut = self.writer.get_mut().truncate(self.good.offset).is_ok();
        // An unpublished file is dropped here, which removes it.
        let complete = cut && self.published && self.finish_file().is_ok();
        UndoOutcome {
            summary: summary.map(|s| UndoSummary { complete, ..s }),
            failure: Some(failure),
        }
    }

    /// What is on disk, before the end is written.
    fn summary(&self) -> UndoSummary {
        UndoSummary {
            path: self.path.clone(),
            keys: self.keys,
            absent: self.absent,
            complete: false,
        }
    }

    fn finish_file(self) -> Result<(), UndoError> {
        let (mut file, _) = self.writer.finish()?;
        file.sync()?;
        Ok(())
    }
}

/// `first` and whatever else is already waiting, up to [`GROUP`].
fn gather(first: SaveRequest, rx: &mut Receiver<SaveRequest>) -> Vec<SaveRequest> {
    let mut group = vec![first];
    while group.len() < GROUP {
        match rx.try_recv() {
            Ok(more) => group.push(more),
            Err(_) => break,
        }
    }
    group
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::archive::{ArchiveReader, SourceInfo};
    use crate::kato::Category;

    fn record(i: u32) -> Record {
        let mut payload = vec![0u8, 1, b'x'];
        payload.extend_from_slice(&[10, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        Record {
            key: format!("kb:emotives:{i}").into_bytes(),
            kb_id: b"kb".to_vec(),
            category: Category::Emotives,
            redis_type: "string".into(),
            expire_at_ms: None,
            payload,
        }
    }

    /// Keys in every intact block of the file, and whether it ends properly.
    fn on_disk(path: &Path) -> (usize, bool) {
        let mut reader = ArchiveReader::new(std::fs::File::open(path).unwrap()).unwrap();
        let mut keys = 0;
        loop {
            match reader.next_block() {
                Ok(Some(block)) => keys += block.records().unwrap().count(),
                Ok(None) => return (keys, true),
                Err(_) => return (keys, false),
            }
        }
    }

    fn header() -> Header {
        Header::new(SourceInfo::default(), Default::default(), 0)
    }

    #[tokio::test]
    async fn every_acknowledged_batch_is_on_disk_under_the_final_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("undo.kbd");
        let undo = UndoArchive::start(&path, header()).unwrap();
        assert!(!path.exists(), "nothing to undo yet, nothing published");
        let log = undo.log();
        log.save((0..3).map(record).collect()).await.unwrap();
        assert_eq!(on_disk(&path), (3, false));
        log.save((3..5).map(record).collect()).await.unwrap();
        assert_eq!(on_disk(&path), (5, false));
        drop(log);
        let outcome = undo.finish(true).await;
        assert!(outcome.failure.is_none());
        let summary = outcome.summary.unwrap();
        assert_eq!((summary.keys, summary.complete), (5, true));
        assert_eq!(on_disk(&path), (5, true));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
    }

    #[tokio::test]
    async fn an_undo_without_batches_or_not_kept_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("undo.kbd");
        let outcome = UndoArchive::start(&path, header())
            .unwrap()
            .finish(true)
            .await;
        assert!(outcome.summary.is_none() && outcome.failure.is_none());
        let undo = UndoArchive::start(&path, header()).unwrap();
        undo.log().save(vec![record(1)]).await.unwrap();
        let outcome = undo.finish(false).await;
        assert!(outcome.summary.is_none() && outcome.failure.is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
