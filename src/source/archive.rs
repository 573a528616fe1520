//! An archive as a record source: a seekable file (only the selected
//! blocks, through the index), a stream (`-`, front to back), or a file cut
//! short (no index: front to back, every intact block, the cut reported).
//!
//! [`ArchiveSource::open`] reads the header (and, for a file, the index)
//! once; every archive-reading command then asks the same value for what
//! it needs: the header, the selected size, an overview, the selected
//! records on the calling thread ([`ArchiveSource::visit`]) or on a
//! blocking thread feeding a bounded channel ([`ArchiveSource::stream`]).
//! Callers never match on file versus stream.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::PathBuf;

use tokio::sync::mpsc::{channel, Sender};

use super::{RecordStream, SourceError};
use crate::format::archive::{
    self, ArchiveReader, Block, BlockMeta, Header, Index, IndexEntry, IndexedArchive, KbWindow,
    Record,
};
use crate::kato::display_bytes;
use crate::records::{SelectedSize, SourceItem};
use crate::selection::Selection;

/// Records in flight between the reader thread and the consumer.
const CHANNEL_RECORDS: usize = 4096;

/// Read-ahead of a front-to-back read.
const STREAM_BUFFER: usize = 1 << 20;

/// Where an archive comes from: a path, or `-` for stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveInput {
    Stdin,
    Path(PathBuf),
}

impl ArchiveInput {
    /// `-` is stdin, anything else a path.
    pub fn parse(arg: &str) -> ArchiveInput {
        if arg == "-" {
            ArchiveInput::Stdin
        } else {
            ArchiveInput::Path(PathBuf::from(arg))
        }
    }

    /// The name used in messages.
    pub fn name(&self) -> String {
        match self {
            ArchiveInput::Stdin => "<stdin>".to_string(),
            ArchiveInput::Path(p) => p.display().to_string(),
        }
    }

    /// Opens a path as a file (refusing a directory with a clear message).
    pub fn open_file(&self) -> Result<Option<File>, OpenError> {
        let ArchiveInput::Path(path) = self else {
            return Ok(None);
        };
        if path.is_dir() {
            return Err(OpenError::IsDirectory(path.clone()));
        }
        File::open(path).map(Some).map_err(|source| OpenError::Io {
            name: path.display().to_string(),
            source,
        })
    }

    /// Opens the input for a front-to-back read.
    pub fn open_stream(&self) -> Result<Box<dyn Read + Send>, OpenError> {
        Ok(match self.open_file()? {
            Some(file) => Box::new(BufReader::with_capacity(STREAM_BUFFER, file)),
            None => Box::new(BufReader::with_capacity(STREAM_BUFFER, io::stdin())),
        })
    }
}

/// Why an archive could not be opened at all.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open archive {}: it is a directory; name a .kbd file", .0.display())]
    IsDirectory(PathBuf),
    #[error("cannot open archive {name}: {source}")]
    Io { name: String, source: io::Error },
    #[error("{name}: {source}")]
    Archive {
        name: String,
        source: archive::Error,
    },
}

/// What an archive holds, from its index (or a metadata-only pass).
#[derive(Debug, Clone)]
pub struct Overview {
    pub header: Header,
    pub blocks: Vec<(u64, BlockMeta)>,
    pub kbs: Vec<KbWindow>,
}

/// An opened archive, ready to yield records.
pub struct ArchiveSource {
    name: String,
    body: Body,
}

/// A seekable input (a file, or bytes in memory).
pub trait SeekableInput: Read + Seek + Send {}
impl<T: Read + Seek + Send> SeekableInput for T {}

enum Body {
    /// A complete, seekable file: header and index read.
    Indexed(IndexedArchive<Box<dyn SeekableInput>>),
    /// A stream, or a file without a usable end (`cut` says why): read front
    /// to back, header read.
    Sequential {
        reader: ArchiveReader<Box<dyn Read + Send>>,
        cut: Option<archive::Error>,
    },
}

impl ArchiveSource {
    /// Opens an archive: a file through its index, stdin as a stream. A
    /// file whose end is missing (truncated) is opened for a front-to-back
    /// read; [`Self::truncation`] says so.
    pub fn open(input: &ArchiveInput) -> Result<ArchiveSource, OpenError> {
        let name = input.name();
        match input.open_file()? {
            Some(file) => ArchiveSource::seekable(name.clone(), file),
            None => ArchiveSource::sequential(name.clone(), input.open_stream()?),
        }
        .map_err(|source| OpenError::Archive { name, source })
    }

    /// Opens a seekable input through its index; one without a usable end
    /// (truncated) is rewound for a front-to-back read.
    pub fn seekable(
        name: String,
        input: impl SeekableInput + 'static,
    ) -> archive::Result<ArchiveSource> {
        let input: Box<dyn SeekableInput> = Box::new(input);
        let body = match IndexedArchive::open_or_keep(input) {
            Ok(indexed) => Body::Indexed(indexed),
            Err((cut @ archive::Error::Truncated { .. }, mut input)) => {
                input.rewind()?;
                let stream: Box<dyn Read + Send> =
                    Box::new(BufReader::with_capacity(STREAM_BUFFER, input));
                Body::Sequential {
                    reader: ArchiveReader::new(stream)?,
                    cut: Some(cut),
                }
            }
            Err((e, _)) => return Err(e),
        };
        Ok(ArchiveSource { name, body })
    }

    /// Opens a stream for a front-to-back read (its header is read now).
    pub fn sequential(
        name: String,
        input: impl Read + Send + 'static,
    ) -> archive::Result<ArchiveSource> {
        let input: Box<dyn Read + Send> = Box::new(input);
        let body = Body::Sequential {
            reader: ArchiveReader::new(input)?,
            cut: None,
        };
        Ok(ArchiveSource { name, body })
    }

    /// The input's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn header(&self) -> &Header {
        match &self.body {
            Body::Indexed(a) => a.header(),
            Body::Sequential { reader, .. } => reader.header(),
        }
    }

    /// Why a file has no usable index (it was cut short), if so.
    pub fn truncation(&self) -> Option<&archive::Error> {
        match &self.body {
            Body::Sequential { cut, .. } => cut.as_ref(),
            Body::Indexed(_) => None,
        }
    }

    /// The size of the selected blocks, from the index; `None` when there
    /// is no index to read it from before the records (a stream, a cut
    /// file).
    pub fn selected_size(&self, selection: &Selection) -> Option<SelectedSize> {
        let Body::Indexed(archive) = &self.body else {
            return None;
        };
        let mut size = SelectedSize::default();
        for entry in selected_blocks(archive.index(), selection) {
            size.payload_bytes += entry.meta.payload_bytes;
            size.keys += entry.meta.records;
        }
        Some(size)
    }

    /// What the archive holds: from the index of a file; for a stream,
    /// every block frame is read and checked, none is decompressed.
    pub fn overview(self) -> archive::Result<Overview> {
        match self.body {
            Body::Sequential { cut: Some(cut), .. } => Err(cut),
            Body::Indexed(archive) => Ok(Overview {
                header: archive.header().clone(),
                blocks: archive
                    .index()
                    .blocks
                    .iter()
                    .map(|e| (e.offset, e.meta.clone()))
                    .collect(),
                kbs: archive.index().kbs.clone(),
            }),
            Body::Sequential { mut reader, .. } => {
                let mut blocks = Vec::new();
                while let Some(block) = reader.next_block()? {
                    blocks.push((block.offset, block.meta.clone()));
                }
                let kbs = reader.index().map(|i| i.kbs.clone()).unwrap_or_default();
                Ok(Overview {
                    header: reader.header().clone(),
                    blocks,
                    kbs,
                })
            }
        }
    }

    /// Calls `visit` for every selected record, on this thread, stopping at
    /// the first error (of the archive or of `visit`). Offline commands
    /// (`ls`, `cat`) use it; a cut file is refused here, as its damage
    /// would otherwise surface only after a partial listing.
    pub fn visit<E: From<archive::Error>>(
        self,
        selection: &Selection,
        mut visit: impl FnMut(Record) -> Result<(), E>,
    ) -> Result<Header, E> {
        match self.body {
            Body::Sequential { cut: Some(cut), .. } => Err(cut.into()),
            Body::Indexed(mut archive) => {
                for entry in selected_entries(archive.index(), selection) {
                    let block = archive.read_block(&entry)?;
                    visit_block(&block, selection, &mut visit)?;
                }
                Ok(archive.header().clone())
            }
            Body::Sequential { mut reader, .. } => {
                while let Some(block) = reader.next_block()? {
                    if selection.block_selected(&block.meta.kb_id, block.meta.category) {
                        visit_block(&block, selection, &mut visit)?;
                    }
                }
                Ok(reader.header().clone())
            }
        }
    }

    /// Streams the selected records on a blocking thread. A damaged block
    /// is reported as [`SourceItem::Damaged`] and the others are still
    /// read; damage that loses the frame structure (a cut file's end, too)
    /// ends the stream with a `Damaged` item, so every intact block before
    /// it is still yielded.
    pub fn stream(self, selection: Selection) -> RecordStream<Header> {
        let (tx, rx) = channel(CHANNEL_RECORDS);
        let task = tokio::task::spawn_blocking(move || -> Result<Header, SourceError> {
            match self.body {
                Body::Indexed(archive) => Ok(read_indexed(archive, &selection, &tx)),
                Body::Sequential { reader, .. } => Ok(read_sequential(reader, &selection, &tx)),
            }
        });
        RecordStream::new(rx, task)
    }
}

/// The index entries of the blocks a selection needs (by kb_id and
/// category; `--match` is applied to the records inside).
pub fn selected_blocks<'a>(
    index: &'a Index,
    selection: &'a Selection,
) -> impl Iterator<Item = &'a IndexEntry> {
    index
        .blocks
        .iter()
        .filter(|e| selection.block_selected(&e.meta.kb_id, e.meta.category))
}

fn selected_entries(index: &Index, selection: &Selection) -> Vec<IndexEntry> {
    selected_blocks(index, selection).cloned().collect()
}

fn visit_block<E: From<archive::Error>>(
    block: &Block,
    selection: &Selection,
    visit: &mut impl FnMut(Record) -> Result<(), E>,
) -> Result<(), E> {
    for record in block.records()? {
        let record = record?;
        if selection.key_selected(&record.key) {
            visit(record)?;
        }
    }
    Ok(())
}

fn read_indexed(
    mut archive: IndexedArchive<Box<dyn SeekableInput>>,
    selection: &Selection,
    tx: &Sender<SourceItem>,
) -> Header {
    for entry in selected_entries(archive.index(), selection) {
        let sent = match archive.read_block(&entry) {
            Ok(block) => send_block(tx, &block, selection),
            Err(e) => damaged(tx, describe_entry(&entry), e),
        };
        if !sent {
            break;
        }
    }
    archive.header().clone()
}

/// Reads front to back. Unselected blocks are skipped without
/// decompression; a block with a bad checksum is reported and skipped.
fn read_sequential<R: Read>(
    mut reader: ArchiveReader<R>,
    selection: &Selection,
    tx: &Sender<SourceItem>,
) -> Header {
    loop {
        match reader.next_block() {
            Ok(Some(block)) => {
                if selection.block_selected(&block.meta.kb_id, block.meta.category)
                    && !send_block(tx, &block, selection)
                {
                    break;
                }
            }
            Ok(None) => break,
            Err(e @ archive::Error::Checksum { .. }) => {
                if !damaged(tx, "archive block".into(), e) {
                    break;
                }
            }
            Err(e) => {
                damaged(tx, "archive".into(), e);
                break;
            }
        }
    }
    reader.header().clone()
}

fn describe_entry(entry: &IndexEntry) -> String {
    format!(
        "block at byte {} (kb {}, {})",
        entry.offset,
        display_bytes(&entry.meta.kb_id),
        entry.meta.category
    )
}

/// Sends a block's selected records; false when the consumer has gone.
fn send_block(tx: &Sender<SourceItem>, block: &Block, selection: &Selection) -> bool {
    let records = match block.records() {
        Ok(r) => r,
        Err(e) => return damaged(tx, block.describe(), e),
    };
    for record in records {
        let item = match record {
            Ok(r) if !selection.key_selected(&r.key) => continue,
            Ok(r) => SourceItem::Record(r),
            Err(e) => SourceItem::Damaged {
                what: block.describe(),
                reason: e.to_string(),
            },
        };
        if tx.blocking_send(item).is_err() {
            return false;
        }
    }
    true
}

fn damaged(tx: &Sender<SourceItem>, what: String, e: archive::Error) -> bool {
    tx.blocking_send(SourceItem::Damaged {
        what,
        reason: e.to_string(),
    })
    .is_ok()
}
