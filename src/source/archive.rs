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

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::PathBuf;

use tokio::sync::mpsc::{channel, Sender};

use super::aof::{is_aof_dir, AofEnd, AofOpenError, AofSource};
use super::rdb::{RdbEnd, RdbSource};
use super::{RecordStream, SourceError};
use crate::format::aof::looks_like_commands;
use crate::format::archive::{
    self, ArchiveReader, Block, BlockMeta, Header, Index, IndexEntry, IndexedArchive, KbWindow,
    KeySet,
};
use crate::format::encryption::{self, Keyring};
use crate::format::rdb::{looks_like_rdb, RdbError};
use crate::kato::display_bytes;
use crate::records::{SelectedSize, SourceItem};
use crate::selection::Selection;

/// Records in flight between the reader thread and the consumer.
const CHANNEL_RECORDS: usize = 4096;

/// Read-ahead of a front-to-back read.
const STREAM_BUFFER: usize = 1 << 20;

/// Where an archive comes from (a path, or `-` for stdin), and the
/// identities that open it when it is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInput {
    place: Place,
    keys: Keyring,
    /// An AOF damaged in the middle yields the keys as they were before
    /// the damage (instead of none).
    salvage: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Stdin,
    Path(PathBuf),
}

/// An input opened for reading, decrypted when it was encrypted.
pub enum OpenedInput {
    /// A file: seekable, so read through its index.
    Seekable(Box<dyn SeekableInput>),
    /// Stdin: front to back.
    Stream(Box<dyn Read + Send>),
}

impl ArchiveInput {
    /// `-` is stdin, anything else a path.
    pub fn parse(arg: &str) -> ArchiveInput {
        if arg == "-" {
            ArchiveInput::stdin()
        } else {
            ArchiveInput::path(PathBuf::from(arg))
        }
    }

    pub fn path(path: impl Into<PathBuf>) -> ArchiveInput {
        ArchiveInput {
            place: Place::Path(path.into()),
            keys: Keyring::default(),
            salvage: false,
        }
    }

    pub fn stdin() -> ArchiveInput {
        ArchiveInput {
            place: Place::Stdin,
            keys: Keyring::default(),
            salvage: false,
        }
    }

    /// The same input, opened with these identities when it is encrypted.
    pub fn with_keys(mut self, keys: Keyring) -> ArchiveInput {
        self.keys = keys;
        self
    }

    /// The same input; an AOF damaged in the middle yields the keys as
    /// they were before the damage instead of none (`--salvage`).
    pub fn salvaging(mut self, salvage: bool) -> ArchiveInput {
        self.salvage = salvage;
        self
    }

    /// The file's path; `None` for stdin.
    pub fn file_path(&self) -> Option<&std::path::Path> {
        match &self.place {
            Place::Path(p) => Some(p),
            Place::Stdin => None,
        }
    }

    /// The name used in messages.
    pub fn name(&self) -> String {
        match &self.place {
            Place::Stdin => "<stdin>".to_string(),
            Place::Path(p) => p.display().to_string(),
        }
    }

    /// Opens the input: a file seekable, stdin as a stream; an encrypted
    /// one (age) is decrypted with the input's identities, or refused with
    /// a message saying what it needs.
    pub fn open(&self) -> Result<OpenedInput, OpenError> {
        let io_error = |cause| OpenError::Io {
            name: self.name(),
            cause,
        };
        let Place::Path(path) = &self.place else {
            return self.open_stdin();
        };
        if path.is_dir() {
            return Err(OpenError::IsDirectory(path.clone()));
        }
        let mut file = File::open(path).map_err(io_error)?;
        if !encryption::sniff(&mut file).map_err(io_error)? {
            return Ok(OpenedInput::Seekable(Box::new(file)));
        }
        let recipients = encryption::describe_header(&mut file);
        file.rewind().map_err(io_error)?;
        let clear = self.keys.open(&self.name(), &recipients, file)?;
        Ok(OpenedInput::Seekable(Box::new(clear)))
    }

    fn open_stdin(&self) -> Result<OpenedInput, OpenError> {
        let io_error = |cause| OpenError::Io {
            name: self.name(),
            cause,
        };
        let mut stdin = BufReader::with_capacity(STREAM_BUFFER, io::stdin());
        let mut prefix = vec![0u8; encryption::AGE_MAGIC.len()];
        let got = encryption::read_up_to(&mut stdin, &mut prefix).map_err(io_error)?;
        prefix.truncate(got);
        let encrypted = encryption::is_encrypted(&prefix);
        let whole = io::Cursor::new(prefix).chain(stdin);
        if !encrypted {
            return Ok(OpenedInput::Stream(Box::new(whole)));
        }
        let clear = self.keys.open(&self.name(), "read from a stream", whole)?;
        Ok(OpenedInput::Stream(Box::new(BufReader::with_capacity(
            STREAM_BUFFER,
            clear,
        ))))
    }

    /// Whether a path holds a physical backup (an RDB file, an AOF file or
    /// directory), by its content; stdin is not looked at (it cannot be
    /// read twice).
    pub fn holds_physical(&self) -> Result<bool, OpenError> {
        let Some(path) = self.file_path() else {
            return Ok(false);
        };
        if is_aof_dir(path) {
            return Ok(true);
        }
        match self.open()? {
            OpenedInput::Seekable(mut file) => peek_file(&mut file)
                .map(|head| looks_like_rdb(&head) || looks_like_commands(&head))
                .map_err(|cause| OpenError::Io {
                    name: self.name(),
                    cause,
                }),
            OpenedInput::Stream(_) => Ok(false),
        }
    }

    /// Opens the input for a front-to-back read.
    pub fn open_stream(&self) -> Result<Box<dyn Read + Send>, OpenError> {
        Ok(match self.open()? {
            OpenedInput::Seekable(file) => Box::new(BufReader::with_capacity(STREAM_BUFFER, file)),
            OpenedInput::Stream(stream) => stream,
        })
    }
}

/// Why an archive could not be opened at all.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open archive {}: it is a directory without an AOF manifest; name a .kbd file, an RDB or AOF file, or an AOF directory (appendonlydir)", .0.display())]
    IsDirectory(PathBuf),
    #[error("cannot open archive {name}: {cause}")]
    Io { name: String, cause: io::Error },
    #[error("{name}: {cause}")]
    Archive { name: String, cause: archive::Error },
    #[error(transparent)]
    Encrypted(#[from] encryption::CryptError),
    #[error("{name}: {cause}")]
    Rdb { name: String, cause: RdbError },
    #[error(transparent)]
    Aof(#[from] AofOpenError),
}

/// What an archive holds, from its index (or a metadata-only pass).
#[derive(Debug, Clone)]
pub struct Overview {
    pub header: Header,
    pub blocks: Vec<(u64, BlockMeta)>,
    pub kbs: Vec<KbWindow>,
    /// How the index and end frame disagree with the blocks, found by a
    /// front-to-back pass (a stream, or a file whose index is not used).
    pub problems: Vec<String>,
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
    /// A complete, seekable file whose index describes its blocks.
    Indexed(Box<IndexedArchive<Box<dyn SeekableInput>>>),
    /// A stream, or a file read front to back: `cut` says why when it has
    /// no usable end (truncated), `fallback` when its index cannot be
    /// trusted to find the blocks. Header read.
    Sequential {
        reader: Box<ArchiveReader<Box<dyn Read + Send>>>,
        cut: Option<archive::Error>,
        fallback: Option<archive::Error>,
    },
    /// A physical backup (an RDB file or stream), read front to back.
    Rdb(Box<RdbSource>),
    /// An append-only file or directory, replayed for the selection.
    Aof(Box<AofSource>),
}

/// A physical backup, opened: an RDB file or an AOF.
pub enum Physical {
    Rdb(Box<RdbSource>),
    Aof(Box<AofSource>),
}

/// How the read of a physical backup ended.
#[derive(Debug)]
pub struct PhysicalEnd {
    pub header: Header,
    /// The input was read to its end (an RDB up to its checksum; an AOF
    /// up to its end or a cut last command).
    pub complete: bool,
}

impl Physical {
    pub fn header(&self) -> &Header {
        match self {
            Physical::Rdb(r) => r.header(),
            Physical::Aof(a) => a.header(),
        }
    }

    /// Every selected key, and the damage, to `emit`.
    pub fn read(
        self,
        selection: &Selection,
        emit: &mut dyn FnMut(SourceItem) -> bool,
    ) -> PhysicalEnd {
        match self {
            Physical::Rdb(r) => {
                let RdbEnd {
                    header, checksum, ..
                } = r.read(selection, emit);
                PhysicalEnd {
                    header,
                    complete: checksum.is_some(),
                }
            }
            Physical::Aof(a) => {
                let AofEnd {
                    header, complete, ..
                } = a.read(selection, emit);
                PhysicalEnd { header, complete }
            }
        }
    }
}

/// Payload bytes allowed in the channel between the reader thread and
/// the consumer, besides the record count: records can be large.
const CHANNEL_BYTES: u64 = 64 << 20;

impl ArchiveSource {
    /// Opens an archive: a file through its index, stdin as a stream. A
    /// file whose end is missing (truncated) is opened for a front-to-back
    /// read; [`Self::truncation`] says so. So is a file whose index or end
    /// frame is damaged or does not describe its blocks: a lying index
    /// would make a selective read miss blocks; [`Self::warning`] says so.
    pub fn open(input: &ArchiveInput) -> Result<ArchiveSource, OpenError> {
        Self::open_db(input, Some(0))
    }

    /// [`Self::open`], reading database `db` (`None`: every database) when
    /// the input turns out to be a physical backup: an RDB file
    /// (`dump.rdb`) is recognised by its content, whatever its name, and
    /// read as [`RdbSource`]. An archive holds one database and ignores it.
    pub fn open_db(input: &ArchiveInput, db: Option<u64>) -> Result<ArchiveSource, OpenError> {
        let name = input.name();
        let io_error = |cause| OpenError::Io {
            name: name.clone(),
            cause,
        };
        let rdb = |input: Box<dyn Read + Send>| {
            RdbSource::open(name.clone(), input, db).map_err(|cause| OpenError::Rdb {
                name: name.clone(),
                cause,
            })
        };
        let aof = |path: &std::path::Path| -> Result<ArchiveSource, OpenError> {
            let source = AofSource::open(path, db)?.salvaging(input.salvage);
            Ok(ArchiveSource {
                name: name.clone(),
                body: Body::Aof(Box::new(source)),
            })
        };
        if let Some(path) = input.file_path().filter(|p| is_aof_dir(p)) {
            return aof(path);
        }
        match input.open()? {
            OpenedInput::Seekable(mut file) => {
                let head = peek_file(&mut file).map_err(io_error)?;
                if let Some(path) = input.file_path().filter(|_| looks_like_commands(&head)) {
                    return aof(path);
                }
                if looks_like_rdb(&head) {
                    // A file can be read twice: a first pass finds every
                    // kb_id, so the second holds no key until the end.
                    let first = RdbSource::first_pass(&mut file, db).ok();
                    if let Some(path) = input
                        .file_path()
                        .filter(|_| first.as_ref().is_some_and(|f| f.1))
                    {
                        // An AOF with an RDB preamble.
                        return aof(path);
                    }
                    let kbs = first.map(|f| f.0);
                    file.rewind().map_err(io_error)?;
                    let source = rdb(Box::new(file))?;
                    let source = match kbs {
                        Some(kbs) => source.knowing(kbs),
                        None => source,
                    };
                    return Ok(ArchiveSource::of_rdb(name.clone(), source));
                }
                ArchiveSource::seekable(name.clone(), file)
            }
            OpenedInput::Stream(stream) => {
                let mut stream = BufReader::with_capacity(STREAM_BUFFER, stream);
                if looks_like_rdb(io::BufRead::fill_buf(&mut stream).map_err(io_error)?) {
                    return Ok(ArchiveSource::of_rdb(name.clone(), rdb(Box::new(stream))?));
                }
                ArchiveSource::sequential(name.clone(), stream)
            }
        }
        .map_err(|cause| OpenError::Archive { name, cause })
    }

    /// Opens a seekable input through its index; one without a usable end
    /// (truncated), or whose index cannot be used, is rewound for a
    /// front-to-back read.
    pub fn seekable(
        name: String,
        input: impl SeekableInput + 'static,
    ) -> archive::Result<ArchiveSource> {
        let input: Box<dyn SeekableInput> = Box::new(input);
        let (e, mut input) = match IndexedArchive::open_or_keep(input) {
            Ok(indexed) => {
                return Ok(ArchiveSource {
                    name,
                    body: Body::Indexed(Box::new(indexed)),
                })
            }
            Err((e, input)) if e.is_damage() => (e, input),
            Err((e, _)) => return Err(e),
        };
        input.rewind()?;
        let stream: Box<dyn Read + Send> = Box::new(BufReader::with_capacity(STREAM_BUFFER, input));
        // A damaged preamble or header fails here again, as it should.
        let reader = ArchiveReader::new(stream)?;
        let (cut, fallback) = match e {
            cut @ archive::Error::Truncated { .. } => (Some(cut), None),
            other => (None, Some(other)),
        };
        Ok(ArchiveSource {
            name,
            body: Body::Sequential {
                reader: Box::new(reader),
                cut,
                fallback,
            },
        })
    }

    /// Opens a stream for a front-to-back read (its header is read now).
    pub fn sequential(
        name: String,
        input: impl Read + Send + 'static,
    ) -> archive::Result<ArchiveSource> {
        let input: Box<dyn Read + Send> = Box::new(input);
        let body = Body::Sequential {
            reader: Box::new(ArchiveReader::new(input)?),
            cut: None,
            fallback: None,
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
            Body::Rdb(r) => r.header(),
            Body::Aof(a) => a.header(),
        }
    }

    /// Whether the input is a physical backup (an RDB file, an AOF).
    pub fn is_physical(&self) -> bool {
        matches!(self.body, Body::Rdb(_) | Body::Aof(_))
    }

    fn of_rdb(name: String, rdb: RdbSource) -> ArchiveSource {
        ArchiveSource {
            name,
            body: Body::Rdb(Box::new(rdb)),
        }
    }

    /// The physical backup; `None` for an archive.
    pub fn into_physical(self) -> Option<Physical> {
        match self.body {
            Body::Rdb(rdb) => Some(Physical::Rdb(rdb)),
            Body::Aof(aof) => Some(Physical::Aof(aof)),
            _ => None,
        }
    }

    /// Why a file has no usable index (it was cut short), if so.
    pub fn truncation(&self) -> Option<&archive::Error> {
        match &self.body {
            Body::Sequential { cut, .. } => cut.as_ref(),
            Body::Indexed(_) | Body::Rdb(_) | Body::Aof(_) => None,
        }
    }

    /// What a user should be told before the records: why a file is read
    /// front to back although it is seekable.
    pub fn warning(&self) -> Option<String> {
        match &self.body {
            Body::Sequential { cut: Some(cut), .. } => {
                Some(format!("{cut}; reading every intact block front to back"))
            }
            Body::Sequential {
                fallback: Some(e), ..
            } => Some(format!(
                "{e}; not trusting the index, reading the whole file front to back"
            )),
            _ => None,
        }
    }

    /// The size of the selected blocks, from the index; `None` when there
    /// is no index to read it from before the records (a stream, a cut
    /// file, an index not trusted).
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

    /// Records per block, as `(kb_id, category, records)`, from the index
    /// (for the `--kb` check and what a selection leaves out); `None`
    /// without an index (a stream, a cut file).
    pub fn indexed_cells(&self) -> Option<Vec<(Vec<u8>, crate::kato::Category, u64)>> {
        let Body::Indexed(archive) = &self.body else {
            return None;
        };
        let blocks = archive.index().blocks.iter();
        Some(
            blocks
                .map(|e| (e.meta.kb_id.clone(), e.meta.category, e.meta.records))
                .collect(),
        )
    }

    /// What the archive holds: from the index of a file; for a stream,
    /// every block frame is read and checked, none is decompressed.
    pub fn overview(self) -> archive::Result<Overview> {
        match self.body {
            Body::Rdb(rdb) => Ok(physical_overview(Physical::Rdb(rdb))),
            Body::Aof(aof) => Ok(physical_overview(Physical::Aof(aof))),
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
                problems: Vec::new(),
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
                    problems: reader.layout_problems(),
                })
            }
        }
    }

    /// Calls `visit` for every selected record and every damaged part
    /// ([`SourceItem::Damaged`]: a damaged block, a record outside its
    /// block, a duplicate key, an index that disagrees with the blocks),
    /// on this thread, stopping at the first error of `visit`. Offline
    /// commands (`ls`, `cat`) use it; a cut file is refused here, as its
    /// damage would otherwise surface only after a partial listing.
    pub fn visit<E: From<archive::Error>>(
        self,
        selection: &Selection,
        mut visit: impl FnMut(SourceItem) -> Result<(), E>,
    ) -> Result<Header, E> {
        if let Body::Sequential { cut: Some(cut), .. } = self.body {
            return Err(cut.into());
        }
        let mut failed = None;
        let header = read_body(self.body, selection, &mut |item| match visit(item) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(header),
        }
    }

    /// Streams the selected records on a blocking thread. A damaged block
    /// is reported as [`SourceItem::Damaged`] and the others are still
    /// read; damage that loses the frame structure (a cut file's end, too)
    /// ends the stream with a `Damaged` item, so every intact block before
    /// it is still yielded. The channel holds at most 4096
    /// records and about 64 MiB of payload.
    pub fn stream(self, selection: Selection) -> RecordStream<Header> {
        let (tx, rx) = channel(CHANNEL_RECORDS);
        let task = tokio::task::spawn_blocking(move || -> Result<Header, SourceError> {
            let mut sender = BudgetedSender::new(tx);
            Ok(read_body(self.body, &selection, &mut |item| {
                sender.send(item)
            }))
        });
        RecordStream::new(rx, task)
    }
}

/// Sends items while keeping the payload bytes waiting in the channel
/// under [`CHANNEL_BYTES`] (or one record, if larger): the record count
/// alone would let 4096 large records pile up.
struct BudgetedSender {
    tx: Sender<SourceItem>,
    /// Payload sizes of the items sent and maybe not yet received, oldest
    /// first.
    sizes: VecDeque<u64>,
    bytes: u64,
}

impl BudgetedSender {
    fn new(tx: Sender<SourceItem>) -> BudgetedSender {
        BudgetedSender {
            tx,
            sizes: VecDeque::new(),
            bytes: 0,
        }
    }

    /// False when the consumer has gone.
    fn send(&mut self, item: SourceItem) -> bool {
        let size = match &item {
            SourceItem::Record(r) => r.payload.len() as u64 + r.key.len() as u64,
            _ => 0,
        };
        loop {
            // The channel holds the newest `waiting` items sent.
            let waiting = self.tx.max_capacity() - self.tx.capacity();
            while self.sizes.len() > waiting {
                self.bytes -= self.sizes.pop_front().unwrap_or(0);
            }
            if self.sizes.is_empty() || self.bytes + size <= CHANNEL_BYTES {
                break;
            }
            // Wait until at least one more item has been taken.
            let free = self.tx.capacity() + 1;
            match futures::executor::block_on(self.tx.reserve_many(free)) {
                Ok(permits) => drop(permits),
                Err(_) => return false,
            }
        }
        self.sizes.push_back(size);
        self.bytes += size;
        self.tx.blocking_send(item).is_ok()
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

/// Where the items of a read go; false stops the read (the consumer has
/// gone or failed).
type Emit<'a> = dyn FnMut(SourceItem) -> bool + 'a;

fn read_body(body: Body, selection: &Selection, emit: &mut Emit<'_>) -> Header {
    let mut keys = KeySet::new();
    match body {
        Body::Indexed(archive) => read_indexed(*archive, selection, &mut keys, emit),
        Body::Sequential { reader, .. } => read_sequential(*reader, selection, &mut keys, emit),
        Body::Rdb(rdb) => rdb.read(selection, emit).header,
        Body::Aof(aof) => aof.read(selection, emit).header,
    }
}

/// What a physical backup holds, as if each kb_id and category were one
/// block: every key is read (a file has no index), none is decoded.
fn physical_overview(rdb: Physical) -> Overview {
    let mut blocks: Vec<BlockMeta> = Vec::new();
    let mut problems = Vec::new();
    let header = rdb
        .read(&Selection::default(), &mut |item| {
            match item {
                SourceItem::Record(r) => {
                    let at = blocks
                        .iter()
                        .position(|b| b.kb_id == r.kb_id && b.category == r.category)
                        .unwrap_or_else(|| {
                            blocks.push(BlockMeta {
                                kb_id: r.kb_id.clone(),
                                category: r.category,
                                records: 0,
                                payload_bytes: 0,
                                raw_len: 0,
                                rdb_versions: Vec::new(),
                                type_bytes: Vec::new(),
                            });
                            blocks.len() - 1
                        });
                    add_to_block(&mut blocks[at], &r.payload);
                }
                SourceItem::Damaged { what, reason } => problems.push(format!("{what}: {reason}")),
                SourceItem::KbDone(_) => {}
            }
            true
        })
        .header;
    Overview {
        header,
        blocks: blocks.into_iter().map(|b| (0, b)).collect(),
        kbs: Vec::new(),
        problems,
    }
}

fn add_to_block(block: &mut BlockMeta, payload: &[u8]) {
    block.records += 1;
    block.payload_bytes += payload.len() as u64;
    if let Some((type_byte, version)) = crate::format::dump::peek_type_and_version(payload) {
        if !block.rdb_versions.contains(&version) {
            block.rdb_versions.push(version);
        }
        if !block.type_bytes.contains(&type_byte) {
            block.type_bytes.push(type_byte);
        }
    }
}

/// The first bytes of a file (for detection by content); the file is
/// rewound afterwards.
fn peek_file(file: &mut (impl Read + Seek)) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(16);
    file.by_ref().take(16).read_to_end(&mut head)?;
    file.rewind()?;
    Ok(head)
}

fn read_indexed(
    mut archive: IndexedArchive<Box<dyn SeekableInput>>,
    selection: &Selection,
    keys: &mut KeySet,
    emit: &mut Emit<'_>,
) -> Header {
    for entry in selected_entries(archive.index(), selection) {
        let sent = match archive.read_block(&entry) {
            Ok(block) => send_block(&block, selection, keys, emit),
            Err(e) => damaged(emit, describe_entry(&entry), e),
        };
        if !sent {
            break;
        }
    }
    archive.header().clone()
}

/// Reads front to back. Unselected blocks are skipped without
/// decompression; a block with a bad checksum is reported and skipped.
/// At the end, an index or end frame that disagrees with the blocks is
/// reported too.
fn read_sequential<R: Read>(
    mut reader: ArchiveReader<R>,
    selection: &Selection,
    keys: &mut KeySet,
    emit: &mut Emit<'_>,
) -> Header {
    loop {
        match reader.next_block() {
            Ok(Some(block)) => {
                if selection.block_selected(&block.meta.kb_id, block.meta.category)
                    && !send_block(&block, selection, keys, emit)
                {
                    break;
                }
            }
            Ok(None) => {
                let problems = reader.layout_problems();
                if !problems.is_empty() {
                    let at = reader.end_info().map_or(0, |e| e.index_offset);
                    emit(SourceItem::Damaged {
                        what: format!("archive index at byte {at}"),
                        reason: format!(
                            "{} (every block was still read front to back)",
                            problems.join("; ")
                        ),
                    });
                }
                break;
            }
            Err(e @ archive::Error::Checksum { .. }) => {
                if !damaged(emit, "archive block".into(), e) {
                    break;
                }
            }
            Err(e) => {
                damaged(emit, "archive".into(), e);
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
        entry.category_name()
    )
}

/// Sends a block's selected records; false when the consumer has gone.
/// A record outside its block, or a key already sent, goes as damage.
fn send_block(
    block: &Block,
    selection: &Selection,
    keys: &mut KeySet,
    emit: &mut Emit<'_>,
) -> bool {
    let records = match block.records() {
        Ok(r) => r,
        Err(e) => return damaged(emit, block.describe(), e),
    };
    for record in records {
        let item = match record {
            Ok(r) if !selection.key_selected(&r.key) => continue,
            Ok(r) if !keys.first(&r.key) => SourceItem::Damaged {
                what: block.describe(),
                reason: archive::duplicate(&r.key),
            },
            Ok(r) => SourceItem::Record(r),
            Err(archive::Error::Misplaced { key, why, .. }) => SourceItem::Damaged {
                what: block.describe(),
                reason: format!("key {key} {why}; skipped"),
            },
            Err(e) => SourceItem::Damaged {
                what: block.describe(),
                reason: e.to_string(),
            },
        };
        if !emit(item) {
            return false;
        }
    }
    true
}

fn damaged(emit: &mut Emit<'_>, what: String, e: archive::Error) -> bool {
    emit(SourceItem::Damaged {
        what,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::archive::{ArchiveWriter, Record, WriterOptions};
    use crate::kato::Category;

    /// An archive of `n` keys of `size` payload bytes each.
    fn archive_of(n: usize, size: usize) -> Vec<u8> {
        let header = Header::new(Default::default(), Default::default(), 0);
        let mut w = ArchiveWriter::new(Vec::new(), &header, WriterOptions::default()).unwrap();
        for i in 0..n {
            w.push(&Record {
                key: format!("kb:emotives:p{i}").into_bytes(),
                kb_id: b"kb".to_vec(),
                category: Category::Emotives,
                redis_type: "string".into(),
                expire_at_ms: None,
                payload: vec![0; size],
            })
            .unwrap();
        }
        w.finish().unwrap().0
    }

    /// Large records do not pile up in the channel: it holds about
    /// CHANNEL_BYTES of payload, not 4096 records, while the consumer is
    /// slow.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_channel_is_bounded_in_bytes() {
        const SIZE: usize = 8 << 20;
        let source =
            ArchiveSource::seekable("mem".into(), io::Cursor::new(archive_of(16, SIZE))).unwrap();
        let (mut rx, task) = source.stream(Selection::default()).split();
        // About 64 MiB of payload: 8 records of 8 MiB, and the one on its way.
        let most = (64 << 20) / SIZE + 1;
        let mut received = 0;
        while received < 16 {
            // Give the reader time to fill the channel as far as it may.
            for _ in 0..40 {
                if rx.len() > most || rx.len() + received == 16 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            assert!(rx.len() <= most, "{} records of 8 MiB waiting", rx.len());
            match rx.recv().await {
                Some(SourceItem::Record(_)) => received += 1,
                other => panic!("{other:?}"),
            }
        }
        task.finish().await.unwrap();
    }
}
