//! Listpacks (§2.10): the compact blob of Redis ≥ 7.0 hashes, zsets, sets,
//! quicklist-2 nodes, field-TTL hashes and stream nodes.
//!
//! Elements keep their integer/string distinction because stream nodes
//! store flags and id deltas as integers.

use super::error::{DecodeError, Result};
use super::reader::Reader;
use super::ziplist::int24;

/// Header (total bytes, count) size.
const HEADER: usize = 6;
/// Count value meaning "count by walking".
const UNKNOWN_COUNT: u16 = u16::MAX;

/// One listpack element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elem<'a> {
    Int(i64),
    Str(&'a [u8]),
}

impl Elem<'_> {
    /// The element as Redis returns it to clients: integers as decimal ASCII.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Elem::Int(v) => v.to_string().into_bytes(),
            Elem::Str(s) => s.to_vec(),
        }
    }

    /// The element as an integer, if it is one (or a string that is one).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Elem::Int(v) => Some(*v),
            Elem::Str(s) => std::str::from_utf8(s).ok()?.parse().ok(),
        }
    }
}

/// All elements of a listpack blob.
pub fn elements(blob: &[u8]) -> Result<Vec<Elem<'_>>> {
    let mut r = Reader::new(blob, 0);
    let total = r.u32_le("listpack header")? as usize;
    let count = r.u16_le("listpack header")?;
    if total != blob.len() {
        return Err(DecodeError::corrupt(
            format!(
                "listpack: header says {total} bytes, blob has {}",
                blob.len()
            ),
            0,
        ));
    }
    let mut out = Vec::with_capacity(usize::from(count).min(blob.len() - HEADER));
    while r.peek("listpack element")? != 0xff {
        out.push(element(&mut r)?);
    }
    r.u8("listpack end")?;
    if !r.is_empty() {
        return Err(DecodeError::corrupt(
            "listpack: bytes after the end marker",
            r.offset(),
        ));
    }
    if count != UNKNOWN_COUNT && usize::from(count) != out.len() {
        return Err(DecodeError::corrupt(
            format!(
                "listpack: header says {count} elements, found {}",
                out.len()
            ),
            4,
        ));
    }
    Ok(out)
}

/// All elements rendered as bytes.
pub fn entries(blob: &[u8]) -> Result<Vec<Vec<u8>>> {
    Ok(elements(blob)?.iter().map(Elem::to_bytes).collect())
}

fn element<'a>(r: &mut Reader<'a>) -> Result<Elem<'a>> {
    let start = r.offset();
    let elem = encoding_and_data(r)?;
    skip_backlen(r, r.offset() - start)?;
    Ok(elem)
}

fn encoding_and_data<'a>(r: &mut Reader<'a>) -> Result<Elem<'a>> {
    let start = r.offset();
    let b = r.u8("listpack element encoding")?;
    Ok(match b {
        0x00..=0x7f => Elem::Int(i64::from(b)),
        0x80..=0xbf => Elem::Str(r.take(usize::from(b & 0x3f), "listpack string")?),
        0xc0..=0xdf => Elem::Int(int13(b, r.u8("listpack int13")?)),
        0xe0..=0xef => {
            let len = (usize::from(b & 0x0f) << 8) | usize::from(r.u8("listpack string")?);
            Elem::Str(r.take(len, "listpack string")?)
        }
        0xf0 => {
            let len = r.u32_le("listpack string")? as usize;
            Elem::Str(r.take(len, "listpack string")?)
        }
        0xf1 => Elem::Int(i64::from(i16::from_le_bytes(r.array("listpack int16")?))),
        0xf2 => Elem::Int(int24(r.array("listpack int24")?)),
        0xf3 => Elem::Int(i64::from(i32::from_le_bytes(r.array("listpack int32")?))),
        0xf4 => Elem::Int(i64::from_le_bytes(r.array("listpack int64")?)),
        _ => {
            return Err(DecodeError::corrupt(
                format!("listpack: invalid element encoding {b:#04x}"),
                start,
            ))
        }
    })
}

fn int13(hi: u8, lo: u8) -> i64 {
    let v = (i64::from(hi & 0x1f) << 8) | i64::from(lo);
    if v >= 1 << 12 {
        v - (1 << 13)
    } else {
        v
    }
}

/// Skip the backlen of an element whose encoding+data took `len` bytes,
/// checking that it really encodes `len` (a cheap corruption check).
fn skip_backlen(r: &mut Reader, len: usize) -> Result<()> {
    let start = r.offset();
    let size = backlen_size(len);
    let bytes = r.take(size, "listpack backlen")?;
    let mut value = 0usize;
    for (i, b) in bytes.iter().enumerate() {
        value |= usize::from(b & 0x7f) << (7 * (size - 1 - i));
    }
    if value != len {
        return Err(DecodeError::corrupt(
            format!("listpack: backlen says {value}, element has {len} bytes"),
            start,
        ));
    }
    Ok(())
}

fn backlen_size(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2097150 => 3,
        2097151..=268435454 => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn redis_70_list_node() {
        let lp = hex("1c000000 0700 8161 02 8162 02 01 01 02 01 dff9 02 c12c 02 f27011 01 04 ff");
        let got = entries(&lp).unwrap();
        let want: Vec<&[u8]> = vec![b"a", b"b", b"1", b"2", b"-7", b"300", b"70000"];
        assert_eq!(got, want);
    }

    #[test]
    fn int13_sign() {
        assert_eq!(int13(0xdf, 0xf9), -7);
        assert_eq!(int13(0xc1, 0x2c), 300);
        assert_eq!(int13(0xd0, 0x00), -4096);
    }

    #[test]
    fn backlen_checked() {
        // "a" with a wrong backlen of 3.
        let lp = hex("0b000000 0100 8161 03 ff");
        assert!(matches!(elements(&lp), Err(DecodeError::Corrupt { .. })));
    }

    #[test]
    fn long_string_backlen_two_bytes() {
        let s = vec![b'z'; 200];
        let mut lp = vec![0, 0, 0, 0, 1, 0, 0xe0, 200];
        lp.extend_from_slice(&s);
        // encoding+data = 202 bytes: backlen 0x01, 0x80|0x4a (MSB group first).
        lp.extend_from_slice(&[0x01, 0xca, 0xff]);
        let total = lp.len() as u32;
        lp[..4].copy_from_slice(&total.to_le_bytes());
        assert_eq!(entries(&lp).unwrap(), vec![s]);
    }

    #[test]
    fn invalid_encoding_byte() {
        let lp = hex("08000000 0100 f5 ff");
        assert!(matches!(
            elements(&lp),
            Err(DecodeError::Corrupt { offset: 6, .. })
        ));
    }

    #[test]
    fn missing_end_is_truncated() {
        let lp = hex("08000000 0100 0101");
        assert!(matches!(elements(&lp), Err(DecodeError::Truncated { .. })));
    }
}
