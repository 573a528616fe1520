//! Hand-built archives for the hostile-input tests: frame by frame, with
//! correct CRC-32C (as `src/format/archive/frame.rs` computes it), so a test
//! can say exactly what is wrong and nothing else is: lengths past the end,
//! huge declared sizes, decompression bombs, index entries out of range,
//! overlapping or duplicated, records outside their block, duplicate keys.
//!
//! Independent of kbdump's writer on purpose: the writer cannot produce
//! these files, and a bug shared by writer and reader would hide here.
//!
//! ```text
//! let mut a = Crafted::new();
//! let b = a.block("kb_a", "emotives", &[rec("kb_a:emotives:p1", b"{}")]);
//! a.index_mut().push(a.entry(b).clone());   // a duplicated index entry
//! let bytes = a.finish();
//! ```

use serde::Serialize;

const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
pub const MAGIC: [u8; 8] = *b"\x89KBD\r\n\x1a\n";
pub const END_MAGIC: [u8; 8] = *b"KBDEND\r\n";
/// RDB version written into the payloads' trailers (Redis 7.x).
pub const RDB_VERSION: u16 = 11;

/// One record as stored inside a block.
#[derive(Debug, Clone, Serialize)]
pub struct Rec {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(rename = "type")]
    pub redis_type: String,
    pub expire_at_ms: Option<i64>,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// A persistent string key holding `value`, with a valid DUMP payload.
pub fn rec(key: &str, value: &[u8]) -> Rec {
    Rec {
        key: key.as_bytes().to_vec(),
        redis_type: "string".into(),
        expire_at_ms: None,
        payload: string_payload(value),
    }
}

/// The DUMP payload of a string (type 0, RDB length-prefixed bytes).
pub fn string_payload(value: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(value.len() + 5);
    let n = value.len();
    if n < 64 {
        body.push(n as u8);
    } else if n < 16384 {
        body.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]);
    } else {
        body.push(0x80);
        body.extend_from_slice(&(n as u32).to_be_bytes());
    }
    body.extend_from_slice(value);
    kbdump::format::dump::seal(0, &body, RDB_VERSION)
}

/// Block metadata, as in the block frame and its index entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Meta {
    #[serde(with = "serde_bytes")]
    pub kb_id: Vec<u8>,
    pub category: String,
    pub records: u64,
    pub payload_bytes: u64,
    pub raw_len: u64,
    pub rdb_versions: Vec<u16>,
    pub type_bytes: Vec<u8>,
}

/// One index entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub offset: u64,
    pub len: u64,
    #[serde(flatten)]
    pub meta: Meta,
}

#[derive(Debug, Clone, Serialize)]
pub struct Window {
    #[serde(with = "serde_bytes")]
    pub kb_id: Vec<u8>,
    pub scan_started_ms: i64,
    pub scan_finished_ms: i64,
    pub keys: u64,
    pub vanished: u64,
    pub duplicates: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Index {
    pub blocks: Vec<Entry>,
    pub kbs: Vec<Window>,
}

/// The end frame's three numbers.
#[derive(Debug, Clone, Copy)]
pub struct End {
    pub index_offset: u64,
    pub block_count: u64,
    pub record_count: u64,
}

/// A block's parts before framing, for tests that bend one of them.
#[derive(Debug, Clone)]
pub struct BlockSpec {
    pub meta: Meta,
    /// The block payload after the metadata: normally one zstd frame.
    pub body: Vec<u8>,
}

impl BlockSpec {
    /// A correct block of `records` for kb `kb` and category `category`.
    pub fn new(kb: &str, category: &str, records: &[Rec]) -> BlockSpec {
        let mut raw = Vec::new();
        for r in records {
            rmp_serde::encode::write_named(&mut raw, r).unwrap();
        }
        let payload_bytes = records.iter().map(|r| r.payload.len() as u64).sum();
        let mut type_bytes: Vec<u8> = records
            .iter()
            .filter_map(|r| r.payload.first())
            .copied()
            .collect();
        type_bytes.sort();
        type_bytes.dedup();
        BlockSpec {
            meta: Meta {
                kb_id: kb.as_bytes().to_vec(),
                category: category.into(),
                records: records.len() as u64,
                payload_bytes,
                raw_len: raw.len() as u64,
                rdb_versions: vec![RDB_VERSION],
                type_bytes,
            },
            body: zstd::bulk::compress(&raw, 3).unwrap(),
        }
    }

    /// The block frame's payload: meta length, meta, body.
    pub fn payload(&self) -> Vec<u8> {
        let meta = rmp_serde::to_vec_named(&self.meta).unwrap();
        let mut out = (meta.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.body);
        out
    }
}

/// An archive under construction. Blocks are appended as frames; the
/// index (editable through [`Crafted::index_mut`]) and the end frame are
/// written by [`Crafted::finish`] or [`Crafted::finish_with`].
pub struct Crafted {
    bytes: Vec<u8>,
    index: Index,
    records: u64,
}

impl Default for Crafted {
    fn default() -> Self {
        Crafted::new()
    }
}

impl Crafted {
    /// Preamble and a valid header frame.
    pub fn new() -> Crafted {
        let header = kbdump::format::archive::Header::new(
            kbdump::format::archive::SourceInfo {
                kind: "crafted".into(),
                ..Default::default()
            },
            Default::default(),
            0,
        );
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&1u16.to_le_bytes());
        push_frame(&mut bytes, b'H', &rmp_serde::to_vec_named(&header).unwrap());
        Crafted {
            bytes,
            index: Index::default(),
            records: 0,
        }
    }

    /// Appends a correct block and its index entry; returns the entry's
    /// position in the index.
    pub fn block(&mut self, kb: &str, category: &str, records: &[Rec]) -> usize {
        self.block_spec(BlockSpec::new(kb, category, records))
    }

    /// Appends a block built from `spec` (meta as given) and its entry.
    pub fn block_spec(&mut self, spec: BlockSpec) -> usize {
        let offset = self.bytes.len() as u64;
        push_frame(&mut self.bytes, b'B', &spec.payload());
        self.records += spec.meta.records;
        self.index.blocks.push(Entry {
            offset,
            len: self.bytes.len() as u64 - offset,
            meta: spec.meta,
        });
        self.index.blocks.len() - 1
    }

    /// Appends a frame whose length field says `declared` instead of the
    /// payload's length (the CRC is computed over what is written, so
    /// only the length is wrong); returns its offset.
    pub fn frame_declaring(&mut self, kind: u8, declared: u32, payload: &[u8]) -> u64 {
        let offset = self.bytes.len() as u64;
        let start = self.bytes.len();
        self.bytes.push(kind);
        self.bytes.extend_from_slice(&declared.to_le_bytes());
        self.bytes.extend_from_slice(&[0; 4]);
        self.bytes.extend_from_slice(payload);
        let crc = crc_of(kind, declared, payload);
        self.bytes[start + 5..start + 9].copy_from_slice(&crc.to_le_bytes());
        offset
    }

    /// The bytes written so far (preamble, header, blocks), for a stream
    /// that ends early or continues with something else.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn entry(&self, n: usize) -> &Entry {
        &self.index.blocks[n]
    }

    pub fn index_mut(&mut self) -> &mut Index {
        &mut self.index
    }

    /// Records in the blocks appended so far (the end frame's count).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Index (with a SCAN window per kb_id of the blocks) and end frame,
    /// all consistent with what was appended.
    pub fn finish(mut self) -> Vec<u8> {
        let mut kbs: Vec<Vec<u8>> = self
            .index
            .blocks
            .iter()
            .map(|e| e.meta.kb_id.clone())
            .collect();
        kbs.sort();
        kbs.dedup();
        if self.index.kbs.is_empty() {
            self.index.kbs = kbs
                .into_iter()
                .map(|kb_id| Window {
                    kb_id,
                    scan_started_ms: 0,
                    scan_finished_ms: 0,
                    keys: 0,
                    vanished: 0,
                    duplicates: 0,
                })
                .collect();
        }
        let end = End {
            index_offset: self.bytes.len() as u64,
            block_count: self.index.blocks.len() as u64,
            record_count: self.records,
        };
        self.finish_with(end)
    }

    /// Index as it stands and an end frame saying `end` (its
    /// `index_offset` is not corrected: a test may want it wrong).
    pub fn finish_with(mut self, end: End) -> Vec<u8> {
        let index = rmp_serde::to_vec_named(&self.index).unwrap();
        push_frame(&mut self.bytes, b'I', &index);
        let mut payload = Vec::with_capacity(24);
        payload.extend_from_slice(&end.index_offset.to_le_bytes());
        payload.extend_from_slice(&end.block_count.to_le_bytes());
        payload.extend_from_slice(&end.record_count.to_le_bytes());
        push_frame(&mut self.bytes, b'E', &payload);
        self.bytes.extend_from_slice(&END_MAGIC);
        self.bytes
    }

    /// Where the index frame will start (for an end frame built by hand).
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
}

fn crc_of(kind: u8, declared: u32, payload: &[u8]) -> u32 {
    let mut digest = CASTAGNOLI.digest();
    digest.update(&[kind]);
    digest.update(&declared.to_le_bytes());
    digest.update(payload);
    digest.finalize()
}

/// Appends one correct frame.
pub fn push_frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc_of(kind, payload.len() as u32, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A valid zstd frame of `n_blocks` RLE blocks of 128 KiB each, all of
/// byte `byte`, after `prefix` stored as a raw block: expands to
/// `prefix.len() + n_blocks * 128 KiB` bytes from a few bytes per block
/// (4 GiB from 128 KiB). No content size in the frame header, so a
/// decoder learns the size only by decompressing.
pub fn zstd_bomb(prefix: &[u8], n_blocks: u32, byte: u8) -> Vec<u8> {
    const BLOCK: u32 = 128 << 10;
    let mut out = vec![0x28, 0xb5, 0x2f, 0xfd];
    // Frame header descriptor: no content size, no checksum, no dict;
    // window descriptor: 2^(10+7) = 128 KiB.
    out.extend_from_slice(&[0x00, 0x38]);
    let block_header = |last: bool, kind: u32, size: u32| {
        let v = u32::from(last) | (kind << 1) | (size << 3);
        [v as u8, (v >> 8) as u8, (v >> 16) as u8]
    };
    for chunk in prefix.chunks(BLOCK as usize) {
        let last = n_blocks == 0 && chunk.as_ptr_range().end == prefix.as_ptr_range().end;
        out.extend_from_slice(&block_header(last, 0, chunk.len() as u32));
        out.extend_from_slice(chunk);
    }
    for n in 0..n_blocks {
        out.extend_from_slice(&block_header(n + 1 == n_blocks, 1, BLOCK));
        out.push(byte);
    }
    out
}

/// The start of one MessagePack record map whose payload is a `bin 32` of
/// `payload_len` bytes that follow (for a bomb whose RLE bytes are the
/// payload).
pub fn record_prefix(key: &str, payload_len: u32) -> Vec<u8> {
    let mut out = vec![0x84];
    out.extend_from_slice(&[0xa3, b'k', b'e', b'y', 0xc4, key.len() as u8]);
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&[0xa4, b't', b'y', b'p', b'e', 0xa6]);
    out.extend_from_slice(b"string");
    out.extend_from_slice(&[0xac]);
    out.extend_from_slice(b"expire_at_ms");
    out.push(0xc0);
    out.extend_from_slice(&[0xa7]);
    out.extend_from_slice(b"payload");
    out.push(0xc6);
    out.extend_from_slice(&payload_len.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator's archives read back through kbdump's own reader.
    #[test]
    fn crafted_archives_are_valid_archives() {
        let mut a = Crafted::new();
        a.block("kb_a", "emotives", &[rec("kb_a:emotives:p1", b"{}")]);
        a.block("kb_b", "other", &[rec("kb_b:x", b"1"), rec("kb_b:y", b"2")]);
        let bytes = a.finish();
        let mut archive =
            kbdump::format::archive::IndexedArchive::open(std::io::Cursor::new(&bytes)).unwrap();
        let entries = archive.index().blocks.clone();
        assert_eq!(entries.len(), 2);
        let mut keys = Vec::new();
        for e in &entries {
            for r in archive.read_block(e).unwrap().records().unwrap() {
                keys.push(r.unwrap().key);
            }
        }
        assert_eq!(keys, [&b"kb_a:emotives:p1"[..], b"kb_b:x", b"kb_b:y"]);
    }

    #[test]
    fn the_bomb_is_a_valid_zstd_frame() {
        let prefix = record_prefix("kb:x", 3 * (128 << 10));
        let bomb = zstd_bomb(&prefix, 3, 0);
        let raw = zstd::stream::decode_all(&bomb[..]).unwrap();
        assert_eq!(raw.len(), prefix.len() + 3 * (128 << 10));
        assert_eq!(&raw[..prefix.len()], &prefix[..]);
    }
}
