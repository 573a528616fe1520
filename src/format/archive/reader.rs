//! Archive readers: a streaming one for pipes and whole-file passes, and an
//! indexed one that reads only the blocks a selection needs.

use std::io::{Read, Seek, SeekFrom};

use super::error::{Error, Result};
use super::frame::{
    read_frame, read_full, EndInfo, FrameKind, RawFrame, END_LEN, END_MAGIC, FORMAT_VERSION, MAGIC,
};
use super::types::{BlockMeta, BlockMetaWire, Header, Index, IndexEntry, Record, RecordWire};

/// Decompressed blocks larger than this are refused as corrupt: the writer
/// never produces them (one block holds at most one oversized key).
const MAX_RAW_BLOCK: u64 = 4 << 30;

/// One block, checksum verified, records still compressed.
#[derive(Debug, Clone)]
pub struct Block {
    pub offset: u64,
    pub meta: BlockMeta,
    /// The stored category name when this build does not know it.
    unknown_category: Option<String>,
    compressed: Vec<u8>,
}

impl Block {
    fn from_frame(frame: RawFrame) -> Result<Block> {
        frame.check(&format!("block at byte {}", frame.offset))?;
        let offset = frame.offset;
        let payload = frame.payload;
        let bad = |what: &str| Error::corrupt(offset, format!("block: {what}"));
        let meta_len = payload
            .get(..4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| bad("missing metadata length"))?;
        let meta_bytes = payload
            .get(4..4 + meta_len)
            .ok_or_else(|| bad("metadata length exceeds the block"))?;
        let wire: BlockMetaWire = rmp_serde::from_slice(meta_bytes)
            .map_err(|e| bad(&format!("unreadable metadata: {e}")))?;
        let (meta, unknown_category) = wire.split();
        let compressed = payload[4 + meta_len..].to_vec();
        Ok(Block {
            offset,
            meta,
            unknown_category,
            compressed,
        })
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

    /// Decompresses the block and returns its records.
    pub fn records(&self) -> Result<BlockRecords> {
        let bad =
            |what: String| Error::corrupt(self.offset, format!("{}: {what}", self.describe()));
        if self.meta.raw_len > MAX_RAW_BLOCK {
            return Err(bad(format!(
                "declares {} decompressed bytes",
                self.meta.raw_len
            )));
        }
        let raw = zstd::bulk::decompress(&self.compressed, self.meta.raw_len as usize)
            .map_err(|e| bad(format!("zstd: {e}")))?;
        if raw.len() as u64 != self.meta.raw_len {
            return Err(bad(format!(
                "decompressed to {} bytes, metadata says {}",
                raw.len(),
                self.meta.raw_len
            )));
        }
        Ok(BlockRecords {
            raw,
            pos: 0,
            remaining: self.meta.records,
            offset: self.offset,
            kb_id: self.meta.kb_id.clone(),
            category: self.meta.category,
        })
    }
}

/// Iterator over the records of one block.
pub struct BlockRecords {
    raw: Vec<u8>,
    pos: usize,
    remaining: u64,
    offset: u64,
    kb_id: Vec<u8>,
    category: crate::kato::Category,
}

impl BlockRecords {
    fn decode_next(&mut self) -> Result<Record> {
        let mut cursor = std::io::Cursor::new(&self.raw[self.pos..]);
        let wire: RecordWire = {
            let mut de = rmp_serde::Deserializer::new(&mut cursor);
            serde::Deserialize::deserialize(&mut de).map_err(|e| {
                Error::corrupt(self.offset, format!("record {} of block: {e}", self.pos))
            })?
        };
        let used = cursor.position() as usize;
        let record = if wire.absent {
            Record::absent(wire.key.into_owned(), self.kb_id.clone(), self.category)
        } else {
            Record {
                key: wire.key.into_owned(),
                kb_id: self.kb_id.clone(),
                category: self.category,
                redis_type: wire.redis_type.into_owned(),
                expire_at_ms: wire.expire_at_ms,
                payload: wire.payload.into_owned(),
            }
        };
        self.pos += used;
        Ok(record)
    }
}

impl Iterator for BlockRecords {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.remaining == 0 {
            return (self.pos != self.raw.len()).then(|| {
                self.pos = self.raw.len();
                Err(Error::corrupt(
                    self.offset,
                    "block holds more data than its record count",
                ))
            });
        }
        self.remaining -= 1;
        let item = self.decode_next();
        if item.is_err() {
            self.remaining = 0;
            self.pos = self.raw.len();
        }
        Some(item)
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
pub struct ArchiveReader<R: Read> {
    input: R,
    offset: u64,
    header: Header,
    index: Option<Index>,
    end: Option<EndInfo>,
    blocks_seen: u64,
    done: bool,
}

impl<R: Read> ArchiveReader<R> {
    pub fn new(mut input: R) -> Result<Self> {
        read_preamble(&mut input)?;
        let frame = read_frame(&mut input, PREAMBLE_LEN, None)?.ok_or(Error::Truncated {
            offset: PREAMBLE_LEN,
            what: "the input ends before the header frame".into(),
        })?;
        let offset = PREAMBLE_LEN + frame.total_len();
        let header = parse_header(frame)?;
        Ok(ArchiveReader {
            input,
            offset,
            header,
            index: None,
            end: None,
            blocks_seen: 0,
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

    /// The next block. A block whose checksum fails yields `Err` and the
    /// reader stays usable (the next call reads the following frame); other
    /// errors end the stream. `Ok(None)` only after a valid end frame.
    pub fn next_block(&mut self) -> Result<Option<Block>> {
        while !self.done {
            let frame = self.next_frame()?;
            match frame.kind()? {
                FrameKind::Block => {
                    self.blocks_seen += 1;
                    return Block::from_frame(frame).map(Some);
                }
                FrameKind::Index => self.index = Some(parse_index(&frame)?),
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
        let result = read_frame(&mut self.input, self.offset, None).and_then(|frame| {
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
        if end.block_count != self.blocks_seen {
            return Err(Error::corrupt(
                frame.offset,
                format!(
                    "end frame counts {} blocks, the stream held {}",
                    end.block_count, self.blocks_seen
                ),
            ));
        }
        self.end = Some(end);
        Ok(())
    }

    /// The end frame's summary, once reached.
    pub fn end_info(&self) -> Option<EndInfo> {
        self.end
    }
}

/// Random access through the index: only the selected blocks are read.
pub struct IndexedArchive<R: Read + Seek> {
    input: R,
    header: Header,
    index: Index,
    end: EndInfo,
    file_len: u64,
}

impl<R: Read + Seek> IndexedArchive<R> {
    pub fn open(input: R) -> Result<Self> {
        Self::open_or_keep(input).map_err(|(e, _)| e)
    }

    /// Like [`Self::open`], but a failure hands the input back, so a
    /// caller can fall back to a front-to-back read of a cut file without
    /// opening it again.
    pub fn open_or_keep(mut input: R) -> std::result::Result<Self, (Error, R)> {
        match Self::read_layout(&mut input) {
            Ok((header, index, end, file_len)) => Ok(IndexedArchive {
                input,
                header,
                index,
                end,
                file_len,
            }),
            Err(e) => Err((e, input)),
        }
    }

    fn read_layout(input: &mut R) -> Result<(Header, Index, EndInfo, u64)> {
        let file_len = input.seek(SeekFrom::End(0))?;
        input.seek(SeekFrom::Start(0))?;
        read_preamble(input)?;
        let frame = read_frame(input, PREAMBLE_LEN, Some(file_len - PREAMBLE_LEN))?.ok_or(
            Error::Truncated {
                offset: PREAMBLE_LEN,
                what: "the file ends before the header frame".into(),
            },
        )?;
        let header = parse_header(frame)?;
        let end = read_end(input, file_len)?;
        let index = read_index(input, &end, file_len)?;
        Ok((header, index, end, file_len))
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
        return Err(Error::corrupt(
            end.index_offset,
            "index and end frame disagree on the block count",
        ));
    }
    Ok(index)
}
