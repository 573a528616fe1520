//! Streaming archive writer: records in, framed zstd blocks out.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use super::error::{Error, Result};
use super::frame::{
    write_frame, EndInfo, FrameKind, END_MAGIC, FORMAT_VERSION, MAGIC, MAX_BLOCK_TARGET,
    MAX_RECORD_LEN,
};
use super::types::{BlockMeta, Header, Index, IndexEntry, KbWindow, Record, RecordWire};
use crate::kato::Category;

/// Tuning knobs of the writer.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// zstd level (1–19).
    pub level: i32,
    /// A block is closed once its uncompressed records reach this size
    /// (at most [`MAX_BLOCK_TARGET`], so that readers can bound a block).
    pub block_target: usize,
    /// Upper bound for all open (not yet written) blocks together; the
    /// largest is flushed early when exceeded. Keeps memory flat when records
    /// of many kb_ids arrive interleaved (as from an RDB file).
    pub open_budget: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            level: 3,
            block_target: 256 << 10,
            open_budget: 16 << 20,
        }
    }
}

#[derive(Default)]
struct OpenBlock {
    raw: Vec<u8>,
    records: u64,
    payload_bytes: u64,
    rdb_versions: BTreeSet<u16>,
    type_bytes: BTreeSet<u8>,
}

/// A point between blocks of an archive being written (see
/// [`ArchiveWriter::checkpoint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Bytes of complete frames up to this point.
    pub offset: u64,
    blocks: usize,
    records: u64,
}

/// Writes an archive to any `Write`; nothing is seeked, so a pipe works.
pub struct ArchiveWriter<W: Write> {
    out: W,
    offset: u64,
    options: WriterOptions,
    open: BTreeMap<(Vec<u8>, Category), OpenBlock>,
    open_bytes: usize,
    index: Index,
    record_count: u64,
}

impl<W: Write> ArchiveWriter<W> {
    /// Writes the magic, format version and header frame.
    pub fn new(mut out: W, header: &Header, options: WriterOptions) -> Result<Self> {
        if !(1..=19).contains(&options.level) {
            return Err(Error::Usage(format!(
                "zstd level {} is outside 1-19 (readers bound the zstd window to what \
                 these levels use)",
                options.level
            )));
        }
        if options.block_target as u64 > MAX_BLOCK_TARGET {
            return Err(Error::Usage(format!(
                "block target {} is above the {MAX_BLOCK_TARGET} bytes readers accept",
                options.block_target
            )));
        }
        out.write_all(&MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes())?;
        let encoded = rmp_serde::to_vec_named(header)
            .map_err(|e| Error::Usage(format!("cannot encode header: {e}")))?;
        let header_len = write_frame(&mut out, FrameKind::Header, &encoded)?;
        Ok(ArchiveWriter {
            out,
            offset: MAGIC.len() as u64 + 2 + header_len,
            options,
            open: BTreeMap::new(),
            open_bytes: 0,
            index: Index::default(),
            record_count: 0,
        })
    }

    /// Adds one record to the open block of its kb_id and category.
    pub fn push(&mut self, record: &Record) -> Result<()> {
        let wire = RecordWire {
            key: (&record.key[..]).into(),
            redis_type: (&record.redis_type[..]).into(),
            expire_at_ms: record.expire_at_ms,
            payload: (&record.payload[..]).into(),
            absent: record.is_absent(),
        };
        let slot = (record.kb_id.clone(), record.category);
        let block = self.open.entry(slot.clone()).or_default();
        let before = block.raw.len();
        rmp_serde::encode::write_named(&mut block.raw, &wire)
            .map_err(|e| Error::Usage(format!("cannot encode record: {e}")))?;
        let encoded = (block.raw.len() - before) as u64;
        if encoded > MAX_RECORD_LEN {
            block.raw.truncate(before);
            return Err(Error::Usage(format!(
                "key {} takes {encoded} bytes, more than an archive record may ({MAX_RECORD_LEN}; \
                 Redis refuses a RESTORE argument that large by default); leave it out with \
                 --match",
                crate::kato::display_bytes(&record.key)
            )));
        }
        block.records += 1;
        block.payload_bytes += record.payload.len() as u64;
        if let Some(version) = trailer_version(&record.payload) {
            block.rdb_versions.insert(version);
        }
        if let Some(&type_byte) = record.payload.first() {
            block.type_bytes.insert(type_byte);
        }
        let full = block.raw.len() >= self.options.block_target;
        self.open_bytes += block.raw.len() - before;
        self.record_count += 1;
        if full {
            self.flush_block(&slot)?;
        }
        while self.open_bytes > self.options.open_budget {
            let largest = self.largest_open_block();
            self.flush_block(&largest)?;
        }
        Ok(())
    }

    /// Closes every open block of `kb_id` and records its SCAN window.
    pub fn finish_kb(&mut self, window: KbWindow) -> Result<()> {
        let slots: Vec<_> = self
            .open
            .keys()
            .filter(|(kb, _)| *kb == window.kb_id)
            .cloned()
            .collect();
        for slot in slots {
            self.flush_block(&slot)?;
        }
        self.index.kbs.push(window);
        Ok(())
    }

    /// Records a kb_id window without closing blocks (for sources whose
    /// kb_ids arrive interleaved).
    pub fn add_kb_window(&mut self, window: KbWindow) {
        self.index.kbs.push(window);
    }

    /// Writes every open block and flushes the inner writer: everything
    /// pushed so far is then on `out` as complete block frames, so a reader
    /// of the bytes written up to here finds every record (as a truncated
    /// archive). The undo archive calls it once per batch.
    pub fn flush_blocks(&mut self) -> Result<()> {
        let slots: Vec<_> = self.open.keys().cloned().collect();
        for slot in slots {
            self.flush_block(&slot)?;
        }
        self.out.flush()?;
        Ok(())
    }

    /// Where the archive stands after the last [`Self::flush_blocks`]: the
    /// point [`Self::rewind`] goes back to when a later write fails.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            offset: self.offset,
            blocks: self.index.blocks.len(),
            records: self.record_count,
        }
    }

    /// Forgets everything after `checkpoint` (open blocks too). The caller
    /// cuts the output back to `checkpoint.offset` and positions it there,
    /// so that [`Self::finish`] can still complete the archive.
    pub fn rewind(&mut self, checkpoint: Checkpoint) {
        self.offset = checkpoint.offset;
        self.index.blocks.truncate(checkpoint.blocks);
        self.record_count = checkpoint.records;
        self.open.clear();
        self.open_bytes = 0;
    }

    /// The inner writer (to sync or cut a file between blocks).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Bytes written so far (what a progress bar shows).
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// Writes the remaining blocks, the index and the end frame; returns the
    /// inner writer, flushed. Without this call the archive stays incomplete
    /// and readers report it as truncated.
    pub fn finish(mut self) -> Result<(W, Index)> {
        let slots: Vec<_> = self.open.keys().cloned().collect();
        for slot in slots {
            self.flush_block(&slot)?;
        }
        let encoded = rmp_serde::to_vec_named(&self.index)
            .map_err(|e| Error::Usage(format!("cannot encode index: {e}")))?;
        let index_offset = self.offset;
        self.offset += write_frame(&mut self.out, FrameKind::Index, &encoded)?;
        let end = EndInfo {
            index_offset,
            block_count: self.index.blocks.len() as u64,
            record_count: self.record_count,
        };
        self.offset += write_frame(&mut self.out, FrameKind::End, &end.encode())?;
        self.out.write_all(&END_MAGIC)?;
        self.out.flush()?;
        Ok((self.out, self.index))
    }

    fn largest_open_block(&self) -> (Vec<u8>, Category) {
        self.open
            .iter()
            .max_by_key(|(_, b)| b.raw.len())
            .map(|(slot, _)| slot.clone())
            .expect("open_bytes > 0 implies an open block")
    }

    fn flush_block(&mut self, slot: &(Vec<u8>, Category)) -> Result<()> {
        let Some(block) = self.open.remove(slot) else {
            return Ok(());
        };
        self.open_bytes -= block.raw.len();
        let compressed = zstd::bulk::compress(&block.raw, self.options.level)?;
        let meta = BlockMeta {
            kb_id: slot.0.clone(),
            category: slot.1,
            records: block.records,
            payload_bytes: block.payload_bytes,
            raw_len: block.raw.len() as u64,
            rdb_versions: block.rdb_versions.into_iter().collect(),
            type_bytes: block.type_bytes.into_iter().collect(),
        };
        let meta_bytes = rmp_serde::to_vec_named(&meta)
            .map_err(|e| Error::Usage(format!("cannot encode block metadata: {e}")))?;
        let mut payload = Vec::with_capacity(4 + meta_bytes.len() + compressed.len());
        payload.extend_from_slice(&(meta_bytes.len() as u32).to_le_bytes());
        payload.extend_from_slice(&meta_bytes);
        payload.extend_from_slice(&compressed);
        let offset = self.offset;
        let len = write_frame(&mut self.out, FrameKind::Block, &payload)?;
        self.offset += len;
        self.index.blocks.push(IndexEntry::new(offset, len, meta));
        Ok(())
    }
}

/// The RDB version in a DUMP payload's trailer, if the payload is long enough.
fn trailer_version(payload: &[u8]) -> Option<u16> {
    let n = payload.len();
    (n >= 10).then(|| u16::from_le_bytes([payload[n - 10], payload[n - 9]]))
}
