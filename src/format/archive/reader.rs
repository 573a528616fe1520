//! Archive readers: a streaming one for pipes and whole-file passes, and an
//! indexed one that reads only the blocks a selection needs.

use std::io::{BufReader, Read, Seek, SeekFrom};

use super::check::{self, SeenBlock};
use super::error::{Error, Result};
use super::frame::{
    read_frame, read_full, EndInfo, FrameKind, RawFrame, END_LEN, END_MAGIC, FORMAT_VERSION,
    FRAME_HEADER_LEN, MAGIC, MAX_RAW_BLOCK,
};
use super::types::{BlockMeta, BlockMetaWire, Header, Index, IndexEntry, Record, RecordWire};

/// The largest zstd window a reader accepts (16 MiB): the writer's levels
/// (1-19) use at most 8 MiB, and a larger window would be memory a hostile
/// frame makes the decoder allocate.
const MAX_WINDOW_LOG: u32 = 24;

/// Decompressed bytes pulled from zstd at a time.
const DECODE_BUFFER: usize = 64 << 10;

/// One block, checksum verified, records still compressed.
#[derive(Debug, Clone)]
pub struct Block {
    pub offset: u64,
    pub meta: BlockMeta,
    /// Frame length including its header.
    frame_len: u64,
    /// The stored category name when this build does not know it.
    unknown_category: Option<String>,
    /// The frame payload; the zstd frame starts at `body_at`.
    payload: Vec<u8>,
    body_at: usize,
}

impl Block {
    fn from_frame(frame: RawFrame) -> Result<Block> {
        frame.check(&format!("block at byte {}", frame.offset))?;
        let offset = frame.offset;
        let frame_len = frame.total_len();
        let payload = frame.payload;
        let (meta, unknown_category, body_at) = parse_meta(&payload)
            .map_err(|what| Error::corrupt(offset, format!("block: {what}")))?;
        Ok(Block {
            offset,
            meta,
            frame_len,
            unknown_category,
            payload,
            body_at,
        })
    }

    /// Where this block stands in the file, for the index cross-check.
    fn seen(&self) -> SeenBlock {
        SeenBlock {
            offset: self.offset,
            len: self.frame_len,
            meta: Some((
                check::meta_fingerprint(&self.meta, self.category_name()),
                self.meta.records,
            )),
        }
    }

    /// The category's name as stored: `meta.category`'s, or a name this
    /// build does not know (its records read as `other`).
    pub fn category_name(&self) -> &str {
        self.unknown_category
            .as_deref()
            .unwrap_or(self.meta.category.name())
    }

    /// A short name for messages: `block at byte N (kb node0, emotives)`.
    pub fn describe(&self) -> String {
        format!(
            "block at byte {} (kb {}, {})",
            self.offset,
            crate::kato::display_bytes(&self.meta.kb_id),
            self.category_name()
        )
    }

    /// The block's records, decompressed as they are read: memory holds
    /// one record at a time, never the whole block. A block declaring
    /// more than a writer produces ([`MAX_RAW_BLOCK`]) is refused before
    /// anything is inflated, and the stream is cut at `raw_len`, so a
    /// decompression bomb ends in an error naming the block.
    ///
    /// A record that cannot be decoded ends the iteration with its error;
    /// a record that decodes but does not belong in this block (its key
    /// classifies to another kb_id or category) yields
    /// [`Error::Misplaced`] and the iteration goes on.
    pub fn records(&self) -> Result<BlockRecords<'_>> {
        if self.meta.raw_len > MAX_RAW_BLOCK {
            return Err(self.bad(format!(
                "declares {} decompressed bytes, more than a writer puts in a block \
                 ({MAX_RAW_BLOCK})",
                self.meta.raw_len
            )));
        }
        let mut decoder = zstd::stream::read::Decoder::with_buffer(&self.payload[self.body_at..])
            .map_err(|e| self.bad(format!("zstd: {e}")))?;
        decoder
            .window_log_max(MAX_WINDOW_LOG)
            .map_err(|e| self.bad(format!("zstd: {e}")))?;
        let limited = Limited {
            inner: decoder,
            produced: 0,
            limit: self.meta.raw_len,
        };
        Ok(BlockRecords {
            block: self,
            stream: BufReader::with_capacity(DECODE_BUFFER, limited),
            remaining: self.meta.records,
            index: 0,
            done: false,
            known: [self.meta.kb_id.clone()],
        })
    }

    fn bad(&self, what: String) -> Error {
        Error::corrupt(self.offset, format!("{}: {what}", self.describe()))
    }
}

/// The block metadata at the start of a block frame's payload, the stored
/// category name when unknown, and where the zstd frame starts.
fn parse_meta(payload: &[u8]) -> std::result::Result<(BlockMeta, Option<String>, usize), String> {
    let meta_len = payload
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or("missing metadata length")?;
    let meta_bytes = payload
        .get(4..4 + meta_len)
        .ok_or("metadata length exceeds the block")?;
    let wire: BlockMetaWire =
        rmp_serde::from_slice(meta_bytes).map_err(|e| format!("unreadable metadata: {e}"))?;
    let (meta, unknown) = wire.split();
    Ok((meta, unknown, 4 + meta_len))
}

/// A reader that yields at most `limit + 1` bytes of `inner`: one byte
/// past the limit is enough to know the stream is longer than declared.
struct Limited<R> {
    inner: R,
    produced: u64,
    limit: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let room = (self.limit + 1).saturating_sub(self.produced);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want])?;
        self.produced += n as u64;
        Ok(n)
    }
}

/// Iterator over the records of one block (see [`Block::records`]).
pub struct BlockRecords<'a> {
    block: &'a Block,
    stream: BufReader<Limited<zstd::stream::read::Decoder<'static, &'a [u8]>>>,
    remaining: u64,
    index: u64,
    done: bool,
    /// The block's kb_id, as the one known kb_id for classification.
    known: [Vec<u8>; 1],
}

impl BlockRecords<'_> {
    fn produced(&self) -> u64 {
        self.stream.get_ref().produced
    }

    fn raw_len(&self) -> u64 {
        self.block.meta.raw_len
    }

    /// The error for a stream that ended or overflowed where it should not.
    fn length_error(&self) -> Option<Error> {
        let (produced, raw_len) = (self.produced(), self.raw_len());
        if produced > raw_len {
            Some(self.block.bad(format!(
                "decompresses to more than the {raw_len} bytes its metadata declares"
            )))
        } else {
            None
        }
    }

    fn decode_next(&mut self) -> Result<Record> {
        let wire: std::result::Result<RecordWire, _> = {
            let mut de = rmp_serde::Deserializer::new(&mut self.stream);
            serde::Deserialize::deserialize(&mut de)
        };
        let wire = wire.map_err(|e| {
            self.length_error().unwrap_or_else(|| {
                let ended = self.produced() < self.raw_len();
                self.block.bad(if ended && is_eof(&e) {
                    format!(
                        "decompressed to {} bytes, metadata says {}",
                        self.produced(),
                        self.raw_len()
                    )
                } else {
                    format!("record {}: {e}", self.index)
                })
            })
        })?;
        if wire.absent {
            return Ok(Record::absent(
                wire.key.into_owned(),
                self.block.meta.kb_id.clone(),
                self.block.meta.category,
            ));
        }
        Ok(Record {
            key: wire.key.into_owned(),
            kb_id: self.block.meta.kb_id.clone(),
            category: self.block.meta.category,
            redis_type: wire.redis_type.into_owned(),
            expire_at_ms: wire.expire_at_ms,
            payload: wire.payload.into_owned(),
        })
    }

    /// After the last record: the stream must end exactly at `raw_len`.
    fn check_end(&mut self) -> Option<Error> {
        let mut byte = [0u8; 1];
        match read_full(&mut self.stream, &mut byte) {
            Err(e) => Some(self.block.bad(format!("zstd: {e}"))),
            Ok(1) => Some(self.length_error().unwrap_or_else(|| {
                self.block
                    .bad("holds more data than its record count".to_string())
            })),
            Ok(_) if self.produced() != self.raw_len() => Some(self.block.bad(format!(
                "decompressed to {} bytes, metadata says {}",
                self.produced(),
                self.raw_len()
            ))),
            Ok(_) => None,
        }
    }
}

fn is_eof(e: &rmp_serde::decode::Error) -> bool {
    use rmp_serde::decode::Error as E;
    match e {
        E::InvalidMarkerRead(io) | E::InvalidDataRead(io) => {
            io.kind() == std::io::ErrorKind::UnexpectedEof
        }
        _ => false,
    }
}

impl Iterator for BlockRecords<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.done {
            return None;
        }
        if self.remaining == 0 {
            self.done = true;
            return self.check_end().map(Err);
        }
        self.remaining -= 1;
        self.index += 1;
        let record = match self.decode_next() {
            Ok(r) => r,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        if let Some(why) = check::misplaced_in(&self.known, self.block.meta.category, &record.key) {
            return Some(Err(Error::Misplaced {
                offset: self.block.offset,
                block: self.block.describe(),
                key: crate::kato::display_bytes(&record.key),
                why,
            }));
        }
        Some(Ok(record))
    }
}

/// Reads the magic number and format version; refuses other files and
/// newer formats before anything else is parsed.
fn read_preamble<R: Read>(input: &mut R) -> Result<u16> {
    let mut magic = [0u8; 8];
    let got = read_full(input, &mut magic)?;
    if got == 0 {
        return Err(Error::Truncated {
            offset: 0,
            what: "the input is empty".into(),
        });
    }
    if magic[..got] != MAGIC[..got] {
        return Err(Error::BadMagic {
            found: magic[..got].to_vec(),
        });
    }
    if got < magic.len() {
        return Err(Error::Truncated {
            offset: got as u64,
            what: "the input ends inside the magic number".into(),
        });
    }
    let mut version = [0u8; 2];
    if read_full(input, &mut version)? < 2 {
        return Err(Error::Truncated {
            offset: 8,
            what: "the input ends before the format version".into(),
        });
    }
    let version = u16::from_le_bytes(version);
    if version == 0 {
        return Err(Error::corrupt(8, "format version 0 does not exist"));
    }
    if version > FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(version)
}

const PREAMBLE_LEN: u64 = 10;

fn parse_header(frame: RawFrame) -> Result<Header> {
    if frame.kind_byte != FrameKind::Header.byte() {
        return Err(Error::corrupt(
            frame.offset,
            "the first frame is not a header",
        ));
    }
    frame.check("header frame")?;
    rmp_serde::from_slice(&frame.payload)
        .map_err(|e| Error::corrupt(frame.offset, format!("unreadable header: {e}")))
}

fn parse_index(frame: &RawFrame) -> Result<Index> {
    frame.check("index frame")?;
    rmp_serde::from_slice(&frame.payload)
        .map_err(|e| Error::corrupt(frame.offset, format!("unreadable index: {e}")))
}

/// Reads an archive front to back. Works on pipes.
///
/// Besides the frames, the reader keeps where each block was (24 bytes a
/// block) so that, once the end is reached, the index and the end frame
/// can be compared with what the file really held:
/// [`ArchiveReader::layout_problems`].
pub struct ArchiveReader<R: Read> {
    input: R,
    offset: u64,
    /// The input's total length when known (a file): bounds every frame.
    len: Option<u64>,
    header: Header,
    blocks_start: u64,
    index: Option<Index>,
    end: Option<EndInfo>,
    seen: Vec<SeenBlock>,
    /// False once a part of the file was skipped (see [`Self::resume_at`]).
    walk_complete: bool,
    done: bool,
}

impl<R: Read> ArchiveReader<R> {
    pub fn new(input: R) -> Result<Self> {
        Self::open(input, None)
    }

    /// A reader of an input whose total length is known (a file): a frame
    /// declaring more than remains is reported at its own offset as a
    /// damaged length, not as a truncation at the end of the file.
    pub fn with_len(input: R, len: u64) -> Result<Self> {
        Self::open(input, Some(len))
    }

    fn open(mut input: R, len: Option<u64>) -> Result<Self> {
        read_preamble(&mut input)?;
        let limit = len.map(|l| l.saturating_sub(PREAMBLE_LEN));
        let frame = read_frame(&mut input, PREAMBLE_LEN, limit)?.ok_or(Error::Truncated {
            offset: PREAMBLE_LEN,
            what: "the input ends before the header frame".into(),
        })?;
        let offset = PREAMBLE_LEN + frame.total_len();
        let header = parse_header(frame)?;
        Ok(ArchiveReader {
            input,
            offset,
            len,
            header,
            blocks_start: offset,
            index: None,
            end: None,
            seen: Vec::new(),
            walk_complete: true,
            done: false,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The index, once the stream has been read past it.
    pub fn index(&self) -> Option<&Index> {
        self.index.as_ref()
    }

    /// Where the next frame starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next block. A block whose checksum fails yields `Err` and the
    /// reader stays usable (the next call reads the following frame); other
    /// errors end the stream. `Ok(None)` only after a valid end frame.
    pub fn next_block(&mut self) -> Result<Option<Block>> {
        while !self.done {
            let frame = self.next_frame()?;
            match frame.kind()? {
                FrameKind::Block => {
                    let (offset, len) = (frame.offset, frame.total_len());
                    let block = Block::from_frame(frame);
                    self.seen.push(match &block {
                        Ok(b) => b.seen(),
                        Err(_) => SeenBlock {
                            offset,
                            len,
                            meta: None,
                        },
                    });
                    return block.map(Some);
                }
                FrameKind::Index => {
                    let parsed = parse_index(&frame);
                    if parsed.is_err() {
                        self.done = true;
                    }
                    self.index = Some(parsed?);
                }
                FrameKind::End => self.finish_end(&frame)?,
                FrameKind::Header => {
                    self.done = true;
                    return Err(Error::corrupt(frame.offset, "a second header frame"));
                }
            }
        }
        Ok(None)
    }

    fn next_frame(&mut self) -> Result<RawFrame> {
        let limit = self.len.map(|l| l.saturating_sub(self.offset));
        let result = read_frame(&mut self.input, self.offset, limit).and_then(|frame| {
            frame.ok_or(Error::Truncated {
                offset: self.offset,
                what: "the input ends without an end frame".into(),
            })
        });
        match result {
            Ok(frame) => {
                self.offset += frame.total_len();
                Ok(frame)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    fn finish_end(&mut self, frame: &RawFrame) -> Result<()> {
        self.done = true;
        frame.check("end frame")?;
        let end = EndInfo::decode(&frame.payload, frame.offset)?;
        let mut magic = [0u8; 8];
        let got = read_full(&mut self.input, &mut magic)?;
        if got < 8 {
            return Err(Error::Truncated {
                offset: self.offset + got as u64,
                what: "the input ends inside the end magic".into(),
            });
        }
        if magic != END_MAGIC {
            return Err(Error::corrupt(self.offset, "bad end magic"));
        }
        self.end = Some(end);
        Ok(())
    }

    /// The end frame's summary, once reached.
    pub fn end_info(&self) -> Option<EndInfo> {
        self.end
    }

    /// Once the end frame was read: how the index and the end frame
    /// disagree with the blocks the stream held (see
    /// [`check::index_against_blocks`]); empty when they agree. A file
    /// without an index frame before its end is one problem.
    pub fn layout_problems(&self) -> Vec<String> {
        let Some(end) = &self.end else {
            return Vec::new();
        };
        let Some(index) = &self.index else {
            return vec!["the archive has no index frame".to_string()];
        };
        let mut problems = check::index_against_blocks(index, end, &self.seen, self.walk_complete);
        if self.walk_complete
            && self
                .seen
                .first()
                .is_some_and(|b| b.offset != self.blocks_start)
        {
            problems.push("the first block does not follow the header".to_string());
        }
        problems
    }

    /// The blocks seen so far, in stream order.
    pub fn seen_blocks(&self) -> &[SeenBlock] {
        &self.seen
    }
}

impl<R: Read + Seek> ArchiveReader<R> {
    /// Goes on reading at `offset` after damage that lost the frame
    /// structure (a damaged length field): the caller knows from the index
    /// where the next frame starts. What lies between is not checked
    /// against the index.
    pub fn resume_at(&mut self, offset: u64) -> Result<()> {
        self.input.seek(SeekFrom::Start(offset))?;
        self.offset = offset;
        self.walk_complete = false;
        self.done = false;
        Ok(())
    }
}

/// Random access through the index: only the selected blocks are read.
pub struct IndexedArchive<R: Read + Seek> {
    input: R,
    header: Header,
    index: Index,
    end: EndInfo,
    file_len: u64,
    blocks_start: u64,
}

impl<R: Read + Seek> IndexedArchive<R> {
    /// Opens a file through its index, after checking that the index
    /// describes the blocks ([`Self::check_index`]).
    pub fn open(input: R) -> Result<Self> {
        Self::open_or_keep(input).map_err(|(e, _)| e)
    }

    /// Like [`Self::open`], but a failure hands the input back, so a
    /// caller can fall back to a front-to-back read of a cut file without
    /// opening it again.
    pub fn open_or_keep(input: R) -> std::result::Result<Self, (Error, R)> {
        let mut archive = Self::open_unchecked(input)?;
        match archive.check_index() {
            Ok(()) => Ok(archive),
            Err(e) => Err((e, archive.input)),
        }
    }

    /// Reads the header, end frame and index without comparing the index
    /// with the blocks (`verify` does that itself, block by block).
    pub fn open_unchecked(mut input: R) -> std::result::Result<Self, (Error, R)> {
        match Self::read_layout(&mut input) {
            Ok((header, index, end, file_len, blocks_start)) => Ok(IndexedArchive {
                input,
                header,
                index,
                end,
                file_len,
                blocks_start,
            }),
            Err(e) => Err((e, input)),
        }
    }

    fn read_layout(input: &mut R) -> Result<(Header, Index, EndInfo, u64, u64)> {
        let file_len = input.seek(SeekFrom::End(0))?;
        input.seek(SeekFrom::Start(0))?;
        read_preamble(input)?;
        let frame = read_frame(input, PREAMBLE_LEN, Some(file_len - PREAMBLE_LEN))?.ok_or(
            Error::Truncated {
                offset: PREAMBLE_LEN,
                what: "the file ends before the header frame".into(),
            },
        )?;
        let blocks_start = PREAMBLE_LEN + frame.total_len();
        let header = parse_header(frame)?;
        let end = read_end(input, file_len)?;
        let index = read_index(input, &end, file_len)?;
        Ok((header, index, end, file_len, blocks_start))
    }

    /// Checks that the index can be trusted to find the blocks: its
    /// entries cover the bytes between the header and the index exactly,
    /// their counts are the end frame's, and each entry's metadata is the
    /// one at the start of the block it points at (read without the
    /// block's payload). A block whose frame header does not match its
    /// entry is left for [`Self::read_block`] to report as damaged. An
    /// error here is [`Error::Index`]: read the file front to back instead.
    pub fn check_index(&mut self) -> Result<()> {
        let at = self.end.index_offset;
        check::index_tiles(&self.index, &self.end, self.blocks_start)
            .map_err(|what| Error::Index { offset: at, what })?;
        for n in 0..self.index.blocks.len() {
            let entry = &self.index.blocks[n];
            let (offset, entry_meta, name) = (
                entry.offset,
                entry.meta.clone(),
                entry.category_name().to_string(),
            );
            let Some((meta, category_name)) = self.peek_meta(offset, entry.len)? else {
                continue;
            };
            if meta != entry_meta || category_name != name {
                return Err(Error::Index {
                    offset: at,
                    what: format!(
                        "index entry {n} (byte {offset}) describes the block there differently \
                         (kb {}, {name}; the block says kb {}, {category_name})",
                        crate::kato::display_bytes(&entry_meta.kb_id),
                        crate::kato::display_bytes(&meta.kb_id),
                    ),
                });
            }
        }
        Ok(())
    }

    /// The metadata at the start of the block frame at `offset`, without
    /// reading its records; `None` when the frame header does not say a
    /// block of `len` bytes (damage the block read will report).
    fn peek_meta(&mut self, offset: u64, len: u64) -> Result<Option<(BlockMeta, String)>> {
        self.input.seek(SeekFrom::Start(offset))?;
        let mut head = [0u8; FRAME_HEADER_LEN as usize + 4];
        if read_full(&mut self.input, &mut head)? < head.len() {
            return Ok(None);
        }
        let frame_len = u64::from(u32::from_le_bytes(head[1..5].try_into().expect("4 bytes")));
        let meta_len = u64::from(u32::from_le_bytes(head[9..13].try_into().expect("4 bytes")));
        if head[0] != FrameKind::Block.byte()
            || frame_len + FRAME_HEADER_LEN != len
            || meta_len + 4 > frame_len
        {
            return Ok(None);
        }
        let mut meta = Vec::new();
        (&mut self.input).take(meta_len).read_to_end(&mut meta)?;
        let Ok(wire) = rmp_serde::from_slice::<BlockMetaWire>(&meta) else {
            return Ok(None);
        };
        let (meta, unknown) = wire.split();
        let name = unknown.unwrap_or_else(|| meta.category.name().to_string());
        Ok(Some((meta, name)))
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn end_info(&self) -> EndInfo {
        self.end
    }

    /// Where the first block starts (right after the header frame).
    pub fn blocks_start(&self) -> u64 {
        self.blocks_start
    }

    /// Gives the input back (for a front-to-back read after all).
    pub fn into_input(self) -> R {
        self.input
    }

    /// Reads and checks one block listed in the index.
    pub fn read_block(&mut self, entry: &IndexEntry) -> Result<Block> {
        self.input.seek(SeekFrom::Start(entry.offset))?;
        let limit = self.file_len.saturating_sub(entry.offset);
        let frame =
            read_frame(&mut self.input, entry.offset, Some(limit))?.ok_or(Error::Truncated {
                offset: entry.offset,
                what: "an indexed block lies past the end of the file".into(),
            })?;
        if frame.kind_byte != FrameKind::Block.byte() || frame.total_len() != entry.len {
            return Err(Error::corrupt(
                entry.offset,
                "the index points at something that is not the block it lists",
            ));
        }
        let block = Block::from_frame(frame)?;
        if block.meta != entry.meta || block.category_name() != entry.category_name() {
            return Err(Error::corrupt(
                entry.offset,
                "block metadata differs from its index entry",
            ));
        }
        Ok(block)
    }
}

fn read_end<R: Read + Seek>(input: &mut R, file_len: u64) -> Result<EndInfo> {
    let truncated = || Error::Truncated {
        offset: file_len,
        what: "no valid end frame at the end of the file".into(),
    };
    if file_len < PREAMBLE_LEN + END_LEN {
        return Err(truncated());
    }
    let at = file_len - END_LEN;
    // The end magic first: without it the file was cut short, and the bytes
    // before it are whatever block happened to be there, not a frame header.
    input.seek(SeekFrom::Start(file_len - END_MAGIC.len() as u64))?;
    let mut magic = [0u8; 8];
    read_full(input, &mut magic)?;
    if magic != END_MAGIC {
        return Err(truncated());
    }
    input.seek(SeekFrom::Start(at))?;
    let frame = read_frame(input, at, Some(END_LEN))?.ok_or_else(truncated)?;
    if frame.kind_byte != FrameKind::End.byte() {
        return Err(Error::corrupt(
            at,
            "the end magic is not preceded by an end frame",
        ));
    }
    frame.check("end frame")?;
    let end = EndInfo::decode(&frame.payload, at)?;
    if end.index_offset >= at {
        return Err(Error::corrupt(at, "end frame points past itself"));
    }
    Ok(end)
}

fn read_index<R: Read + Seek>(input: &mut R, end: &EndInfo, file_len: u64) -> Result<Index> {
    input.seek(SeekFrom::Start(end.index_offset))?;
    let limit = file_len - END_LEN - end.index_offset;
    let frame = read_frame(input, end.index_offset, Some(limit))?.ok_or(Error::Truncated {
        offset: end.index_offset,
        what: "missing index frame".into(),
    })?;
    if frame.kind_byte != FrameKind::Index.byte() {
        return Err(Error::corrupt(
            end.index_offset,
            "the end frame does not point at the index",
        ));
    }
    let index = parse_index(&frame)?;
    if index.blocks.len() as u64 != end.block_count {
        return Err(Error::Index {
            offset: end.index_offset,
            what: format!(
                "the index lists {} blocks, the end frame counts {}",
                index.blocks.len(),
                end.block_count
            ),
        });
    }
    Ok(index)
}
