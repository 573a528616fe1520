//! Frames: `kind (u8) | length (u32 LE) | crc32c (u32 LE) | payload`.
//! The CRC covers the kind, the length and the payload, so a damaged frame
//! header is caught just like a damaged payload.

use std::io::{self, Read, Write};

use super::error::{Error, Result};

/// First eight bytes of every archive. The high-bit byte and the CR/LF/^Z
/// sequence catch text-mode mangling, as in PNG.
pub const MAGIC: [u8; 8] = *b"\x89KBD\r\n\x1a\n";
/// Last eight bytes of a complete archive.
pub const END_MAGIC: [u8; 8] = *b"KBDEND\r\n";
/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of a frame header (kind, length, crc).
pub const FRAME_HEADER_LEN: u64 = 9;
/// Payload bytes of the end frame.
pub const END_PAYLOAD_LEN: u32 = 24;
/// Total size of the end frame plus the end magic.
pub const END_LEN: u64 = FRAME_HEADER_LEN + END_PAYLOAD_LEN as u64 + 8;

/// The largest record (one key: MessagePack map with key, type, expiry and
/// DUMP payload) a writer stores. Redis refuses a RESTORE argument above
/// its default `proto-max-bulk-len` of 512 MiB anyway.
pub const MAX_RECORD_LEN: u64 = 512 << 20;
/// The largest block target a writer accepts.
pub const MAX_BLOCK_TARGET: u64 = 16 << 20;
/// The largest decompressed block a writer produces: it closes a block
/// once it reaches the target, so a block is under the target plus one
/// record.
pub const MAX_RAW_BLOCK: u64 = MAX_BLOCK_TARGET + MAX_RECORD_LEN;
/// Payload bounds per frame kind: what a writer can produce. A frame
/// declaring more is damage, never an allocation. Blocks: the zstd bound
/// of the largest raw block plus room for the metadata.
pub const MAX_HEADER_PAYLOAD: u64 = 16 << 20;
pub const MAX_BLOCK_PAYLOAD: u64 = MAX_RAW_BLOCK + MAX_RAW_BLOCK / 128 + (16 << 20);
/// About 2.5 million blocks: 600 GB of keys in full blocks.
pub const MAX_INDEX_PAYLOAD: u64 = 256 << 20;

const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Header,
    Block,
    Index,
    End,
}

impl FrameKind {
    pub fn byte(self) -> u8 {
        match self {
            FrameKind::Header => b'H',
            FrameKind::Block => b'B',
            FrameKind::Index => b'I',
            FrameKind::End => b'E',
        }
    }

    pub fn from_byte(b: u8) -> Option<FrameKind> {
        match b {
            b'H' => Some(FrameKind::Header),
            b'B' => Some(FrameKind::Block),
            b'I' => Some(FrameKind::Index),
            b'E' => Some(FrameKind::End),
            _ => None,
        }
    }

    /// The largest payload a writer puts in a frame of this kind.
    pub fn max_payload(self) -> u64 {
        match self {
            FrameKind::Header => MAX_HEADER_PAYLOAD,
            FrameKind::Block => MAX_BLOCK_PAYLOAD,
            FrameKind::Index => MAX_INDEX_PAYLOAD,
            FrameKind::End => u64::from(END_PAYLOAD_LEN),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Header => "header frame",
            FrameKind::Block => "block",
            FrameKind::Index => "index frame",
            FrameKind::End => "end frame",
        }
    }
}

pub fn frame_crc(kind: u8, payload: &[u8]) -> u32 {
    let mut digest = CASTAGNOLI.digest();
    digest.update(&[kind]);
    digest.update(&(payload.len() as u32).to_le_bytes());
    digest.update(payload);
    digest.finalize()
}

/// Writes one frame; returns the number of bytes written.
pub fn write_frame<W: Write>(out: &mut W, kind: FrameKind, payload: &[u8]) -> Result<u64> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&len| u64::from(len) <= kind.max_payload())
        .ok_or_else(|| {
            Error::Usage(format!(
                "{} of {} bytes is larger than an archive allows ({} bytes)",
                kind.name(),
                payload.len(),
                kind.max_payload()
            ))
        })?;
    let crc = frame_crc(kind.byte(), payload);
    out.write_all(&[kind.byte()])?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&crc.to_le_bytes())?;
    out.write_all(payload)?;
    Ok(FRAME_HEADER_LEN + payload.len() as u64)
}

/// A frame as read, before its checksum is judged.
#[derive(Debug)]
pub struct RawFrame {
    pub offset: u64,
    pub kind_byte: u8,
    pub stored_crc: u32,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn kind(&self) -> Result<FrameKind> {
        FrameKind::from_byte(self.kind_byte).ok_or_else(|| {
            Error::corrupt(
                self.offset,
                format!("unknown frame kind byte 0x{:02x}", self.kind_byte),
            )
        })
    }

    pub fn total_len(&self) -> u64 {
        FRAME_HEADER_LEN + self.payload.len() as u64
    }

    /// Checks the CRC; `what` names the frame in the error.
    pub fn check(&self, what: &str) -> Result<()> {
        let computed = frame_crc(self.kind_byte, &self.payload);
        if computed == self.stored_crc {
            Ok(())
        } else {
            Err(Error::Checksum {
                offset: self.offset,
                what: what.to_string(),
                stored: self.stored_crc,
                computed,
            })
        }
    }
}

/// Reads one frame at `offset`. `Ok(None)` on a clean end of input exactly at
/// a frame boundary (the caller decides whether that end was expected).
/// The kind byte and the declared length are judged before any payload is
/// read: an unknown kind, or a length above what a writer produces for
/// that kind ([`FrameKind::max_payload`]) or above `limit` (the remaining
/// file size when known), is damage, reported instead of allocated.
pub fn read_frame<R: Read>(
    input: &mut R,
    offset: u64,
    limit: Option<u64>,
) -> Result<Option<RawFrame>> {
    let mut head = [0u8; FRAME_HEADER_LEN as usize];
    let got = read_full(input, &mut head)?;
    if got == 0 {
        return Ok(None);
    }
    if got < head.len() {
        return Err(Error::Truncated {
            offset: offset + got as u64,
            what: format!("frame header at byte {offset} is incomplete"),
        });
    }
    let kind_byte = head[0];
    let len = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes"));
    let stored_crc = u32::from_le_bytes(head[5..9].try_into().expect("4 bytes"));
    let kind = FrameKind::from_byte(kind_byte).ok_or_else(|| {
        Error::corrupt(
            offset,
            format!("damaged frame header: unknown frame kind byte 0x{kind_byte:02x}"),
        )
    })?;
    if u64::from(len) > kind.max_payload() {
        return Err(Error::corrupt(
            offset,
            format!(
                "damaged frame header: the {} declares {len} payload bytes, more than a writer \
                 puts in one ({})",
                kind.name(),
                kind.max_payload()
            ),
        ));
    }
    if let Some(limit) = limit {
        if u64::from(len) > limit.saturating_sub(FRAME_HEADER_LEN) {
            return Err(Error::Corrupt {
                offset,
                what: format!(
                    "damaged frame header: the {} declares {len} payload bytes, but only {} \
                     remain in the file",
                    kind.name(),
                    limit.saturating_sub(FRAME_HEADER_LEN)
                ),
            });
        }
    }
    let payload = read_payload(input, offset, len)?;
    Ok(Some(RawFrame {
        offset,
        kind_byte,
        stored_crc,
        payload,
    }))
}

fn read_payload<R: Read>(input: &mut R, offset: u64, len: u32) -> Result<Vec<u8>> {
    // Grow with the data actually read: a damaged length field on a stream
    // must end in a truncation error, not a multi-gigabyte allocation.
    let mut payload = Vec::with_capacity((len as usize).min(1 << 20));
    let read = input.take(u64::from(len)).read_to_end(&mut payload)?;
    if read < len as usize {
        return Err(Error::Truncated {
            offset: offset + FRAME_HEADER_LEN + read as u64,
            what: format!(
                "frame at byte {offset} declares {len} payload bytes, input ended after {read}"
            ),
        });
    }
    Ok(payload)
}

/// Reads until `buf` is full or the input ends; returns bytes read.
pub fn read_full<R: Read>(input: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The end frame's payload: where the index is and what the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndInfo {
    pub index_offset: u64,
    pub block_count: u64,
    pub record_count: u64,
}

impl EndInfo {
    pub fn encode(&self) -> [u8; END_PAYLOAD_LEN as usize] {
        let mut out = [0u8; END_PAYLOAD_LEN as usize];
        out[0..8].copy_from_slice(&self.index_offset.to_le_bytes());
        out[8..16].copy_from_slice(&self.block_count.to_le_bytes());
        out[16..24].copy_from_slice(&self.record_count.to_le_bytes());
        out
    }

    pub fn decode(payload: &[u8], offset: u64) -> Result<EndInfo> {
        if payload.len() != END_PAYLOAD_LEN as usize {
            return Err(Error::corrupt(
                offset,
                format!(
                    "end frame has {} bytes, expected {END_PAYLOAD_LEN}",
                    payload.len()
                ),
            ));
        }
        let word = |i: usize| u64::from_le_bytes(payload[i..i + 8].try_into().expect("8 bytes"));
        Ok(EndInfo {
            index_offset: word(0),
            block_count: word(8),
            record_count: word(16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn frame_round_trip_and_checksum() {
        let mut buf = Vec::new();
        write_frame(&mut buf, FrameKind::Block, b"hello").unwrap();
        let frame = read_frame(&mut Cursor::new(&buf), 0, None)
            .unwrap()
            .unwrap();
        assert_eq!(frame.payload, b"hello");
        assert_eq!(frame.kind().unwrap(), FrameKind::Block);
        frame.check("block").unwrap();
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            match read_frame(&mut Cursor::new(&bad), 0, Some(bad.len() as u64)) {
                Ok(Some(f)) => assert!(f.check("block").is_err(), "flip at {i} undetected"),
                Ok(None) => panic!("flip at {i} read as end"),
                Err(_) => {}
            }
        }
    }

    #[test]
    fn truncated_frame_is_reported_as_truncation() {
        let mut buf = Vec::new();
        write_frame(&mut buf, FrameKind::Block, b"hello world").unwrap();
        for cut in 1..buf.len() {
            let err = read_frame(&mut Cursor::new(&buf[..cut]), 0, None).unwrap_err();
            assert!(matches!(err, Error::Truncated { .. }), "cut {cut}: {err}");
        }
    }

    /// On an endless input, a length above what a writer puts in a frame
    /// of that kind, or an unknown kind, is damage before any payload is
    /// read (it would otherwise be read, and held, as it arrives).
    #[test]
    fn a_length_above_the_kind_bound_is_damage_before_any_read() {
        for (kind, len) in [
            (b'B', u32::MAX),
            (b'I', u32::MAX),
            (b'H', 1 << 30),
            (b'E', 25),
        ] {
            let mut head = vec![kind];
            head.extend_from_slice(&len.to_le_bytes());
            head.extend_from_slice(&[0; 4]);
            let mut endless = Cursor::new(head).chain(io::repeat(0));
            let err = read_frame(&mut endless, 0, None).unwrap_err();
            assert!(
                matches!(&err, Error::Corrupt { what, .. } if what.contains("more than a writer")),
                "{err}"
            );
        }
        let mut unknown = Cursor::new(vec![b'Z', 1, 0, 0, 0, 0, 0, 0, 0]).chain(io::repeat(0));
        let err = read_frame(&mut unknown, 0, None).unwrap_err();
        assert!(err.to_string().contains("unknown frame kind"), "{err}");
    }

    #[test]
    fn damaged_length_is_bounded_by_the_file_size() {
        let mut buf = Vec::new();
        write_frame(&mut buf, FrameKind::Block, b"x").unwrap();
        buf[4] = 0xff;
        let err = read_frame(&mut Cursor::new(&buf), 0, Some(buf.len() as u64)).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }
}
