//! Ziplists (§2.9): the compact list/hash/zset blob of Redis ≤ 6.2, also
//! the node format of type-14 quicklists.

use super::error::{DecodeError, Result};
use super::reader::Reader;

/// Header (zlbytes, zltail, zllen) size.
const HEADER: usize = 10;
/// `zllen` value meaning "count by walking".
const UNKNOWN_COUNT: u16 = u16::MAX;

/// All elements of a ziplist blob, integers rendered as decimal ASCII.
pub fn entries(blob: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut r = Reader::new(blob, 0);
    let total = r.u32_le("ziplist header")? as usize;
    let _tail = r.u32_le("ziplist header")?;
    let count = r.u16_le("ziplist header")?;
    if total != blob.len() {
        return Err(DecodeError::corrupt(
            format!(
                "ziplist: header says {total} bytes, blob has {}",
                blob.len()
            ),
            0,
        ));
    }
    let mut out = Vec::with_capacity(usize::from(count).min(blob.len() - HEADER));
    while r.peek("ziplist entry")? != 0xff {
        skip_prevlen(&mut r)?;
        out.push(entry(&mut r)?);
    }
    r.u8("ziplist end")?;
    check_end(&r, count, out.len())?;
    Ok(out)
}

fn check_end(r: &Reader, count: u16, found: usize) -> Result<()> {
    if !r.is_empty() {
        return Err(DecodeError::corrupt(
            "ziplist: bytes after the end marker",
            r.offset(),
        ));
    }
    if count != UNKNOWN_COUNT && usize::from(count) != found {
        return Err(DecodeError::corrupt(
            format!("ziplist: header says {count} entries, found {found}"),
            8,
        ));
    }
    Ok(())
}

fn skip_prevlen(r: &mut Reader) -> Result<()> {
    if r.u8("ziplist prevlen")? == 0xfe {
        r.take(4, "ziplist prevlen")?;
    }
    Ok(())
}

fn entry(r: &mut Reader) -> Result<Vec<u8>> {
    let start = r.offset();
    let b = r.u8("ziplist entry encoding")?;
    let int = match b {
        _ if b >> 6 == 0 => return str_of(r, usize::from(b & 0x3f)),
        _ if b >> 6 == 1 => {
            let len = (usize::from(b & 0x3f) << 8) | usize::from(r.u8("ziplist entry")?);
            return str_of(r, len);
        }
        0x80 => {
            let len = u32::from_be_bytes(r.array("ziplist entry")?);
            return str_of(r, len as usize);
        }
        0xc0 => i64::from(i16::from_le_bytes(r.array("ziplist int16")?)),
        0xd0 => i64::from(i32::from_le_bytes(r.array("ziplist int32")?)),
        0xe0 => i64::from_le_bytes(r.array("ziplist int64")?),
        0xf0 => int24(r.array("ziplist int24")?),
        0xfe => i64::from(r.u8("ziplist int8")? as i8),
        0xf1..=0xfd => i64::from(b & 0x0f) - 1,
        _ => {
            return Err(DecodeError::corrupt(
                format!("ziplist: invalid entry encoding {b:#04x}"),
                start,
            ))
        }
    };
    Ok(int.to_string().into_bytes())
}

fn str_of(r: &mut Reader, len: usize) -> Result<Vec<u8>> {
    Ok(r.take(len, "ziplist string")?.to_vec())
}

/// A signed 24-bit little-endian integer.
pub fn int24(b: [u8; 3]) -> i64 {
    i64::from(i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn redis_62_list_node() {
        // The ziplist inside the Redis 6.2 list:small vector.
        let zl = hex(
            "21000000 1b000000 0700 0001 6103 0162 03f2 02f3 02fef9 03c02c01 04f07011 01 ff"
                .replace(' ', "")
                .as_str(),
        );
        let got = entries(&zl).unwrap();
        let want: Vec<&[u8]> = vec![b"a", b"b", b"1", b"2", b"-7", b"300", b"70000"];
        assert_eq!(got, want);
    }

    #[test]
    fn int_encodings() {
        assert_eq!(int24([0xff, 0xff, 0xff]), -1);
        assert_eq!(int24([0x70, 0x11, 0x01]), 70000);
    }

    #[test]
    fn wrong_total_is_corrupt() {
        let zl = hex("0c0000000a00000000ff00");
        assert!(entries(&zl).is_err());
    }

    #[test]
    fn count_mismatch_is_corrupt() {
        let zl = hex("0c0000000a0000000100ff".replace("0c", "0b").as_str());
        assert!(matches!(entries(&zl), Err(DecodeError::Corrupt { .. })));
    }

    #[test]
    fn truncated_entry() {
        // 6-bit string of length 5 with 1 byte present, no end marker.
        let zl = hex("0d0000000a0000000100000561");
        assert!(matches!(entries(&zl), Err(DecodeError::Truncated { .. })));
    }
}
