//! Everything that yields records: an archive (seekable file, stream or
//! truncated file), a live server (SCAN + DUMP), and the ClickHouse mirror.
//!
//! Each opens as its own type (it knows different things up front: an
//! archive its header and, from the index, the selected size; a live
//! server its provenance; the mirror its size from a query), and each is
//! also a [`Source`], the one type the commands that take "any source"
//! (restore, diff) hold. Every source produces the same [`RecordStream`]:
//! a bounded channel of [`SourceItem`]s, so memory stays flat, and a task
//! that ends with the source's own verdict.

pub mod aof;
pub mod archive;
pub mod live;
pub mod mirror;
pub mod rdb;
pub mod snapshot;

use tokio::sync::mpsc::Receiver;
use tokio::task::JoinHandle;

pub use crate::records::{SelectedSize, SourceItem};

use crate::format::archive::{self as archive_format, Header};
use crate::net::clickhouse::ChError;
use crate::net::mirror::MirrorError;
use crate::net::redis::RedisIoError;
use crate::selection::Selection;

/// Why a source stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Archive(#[from] archive_format::Error),
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    #[error(transparent)]
    Redis(#[from] RedisIoError),
    #[error(transparent)]
    ClickHouse(#[from] ChError),
    /// A `--kb` names no kb_id of what was read (known only at its end,
    /// for a stream such as a snapshot).
    #[error(transparent)]
    Selection(#[from] crate::selection::UnmatchedKbs),
    /// A server's snapshot could not be read to its end (the transfer
    /// broke off, or its bytes are not a whole RDB).
    #[error("the snapshot from Redis at {address} could not be read to its end: {reason}")]
    Snapshot { address: String, reason: String },
    #[error("the {0} reader stopped unexpectedly")]
    TaskGone(&'static str),
    /// The consumer stopped taking records (its own error says why).
    #[error("the consumer of the records stopped")]
    ConsumerGone,
}

/// Records on their way from a source to a sink, and the task producing
/// them.
pub struct RecordStream<T> {
    items: Receiver<SourceItem>,
    task: SourceTask<T>,
}

/// The producing side of a [`RecordStream`]: await it once the items are
/// consumed (or dropped) for the source's verdict.
pub struct SourceTask<T> {
    handle: JoinHandle<Result<T, SourceError>>,
    what: &'static str,
}

impl<T> RecordStream<T> {
    pub(crate) fn new(
        items: Receiver<SourceItem>,
        handle: JoinHandle<Result<T, SourceError>>,
    ) -> Self {
        Self::named(items, handle, "source")
    }

    pub(crate) fn named(
        items: Receiver<SourceItem>,
        handle: JoinHandle<Result<T, SourceError>>,
        what: &'static str,
    ) -> Self {
        RecordStream {
            items,
            task: SourceTask { handle, what },
        }
    }

    /// The items for a sink, and the task to await afterwards.
    pub fn split(self) -> (Receiver<SourceItem>, SourceTask<T>) {
        (self.items, self.task)
    }

    /// Changes what the task's result is, keeping the items.
    pub fn map<U: Send + 'static>(self, f: impl FnOnce(T) -> U + Send + 'static) -> RecordStream<U>
    where
        T: Send + 'static,
    {
        let SourceTask { handle, what } = self.task;
        let handle = tokio::spawn(async move {
            match handle.await {
                Ok(result) => result.map(f),
                Err(_) => Err(SourceError::TaskGone(what)),
            }
        });
        RecordStream::named(self.items, handle, what)
    }
}

impl<T> SourceTask<T> {
    /// Waits for the source to end.
    pub async fn finish(self) -> Result<T, SourceError> {
        self.handle
            .await
            .map_err(|_| SourceError::TaskGone(self.what))?
    }
}

/// How a source ended.
#[derive(Debug)]
// One per run, returned once: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum SourceEnd {
    /// An archive: its header.
    Archive(Header),
    /// The mirror: how many records it sent.
    Mirror(u64),
    /// A live server: what the scan read.
    Live(live::ExportSummary),
}

/// Any record source.
// One per command: the archive source is kept inline, as it is the one
// every archive-reading command matches on.
#[allow(clippy::large_enum_variant)]
pub enum Source {
    Archive(archive::ArchiveSource),
    // Boxed, as the live source: it carries a ClickHouse client.
    Mirror(Box<mirror::MirrorSource>),
    // Boxed: a live source carries its census and the counting task.
    Live(Box<live::LiveSource>),
}

impl Source {
    /// The size of the selection when the source knows it before reading
    /// (an archive's index, a mirror query), for the memory guard.
    pub fn selected_size(&self, selection: &Selection) -> Option<SelectedSize> {
        match self {
            Source::Archive(a) => a.selected_size(selection),
            Source::Mirror(m) => m.selected_size(),
            Source::Live(_) => None,
        }
    }

    /// The archive header or provenance of the records, when known.
    pub fn header(&self) -> Option<&Header> {
        match self {
            Source::Archive(a) => Some(a.header()),
            Source::Live(l) => Some(l.header()),
            Source::Mirror(_) => None,
        }
    }

    /// Starts yielding the selected records.
    pub fn stream(self, selection: Selection) -> RecordStream<SourceEnd> {
        match self {
            Source::Archive(a) => a.stream(selection).map(SourceEnd::Archive),
            Source::Mirror(m) => (*m).stream().map(SourceEnd::Mirror),
            Source::Live(l) => (*l).stream().map(SourceEnd::Live),
        }
    }
}
