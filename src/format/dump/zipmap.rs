//! Zipmaps (§2.11): the small-hash blob of Redis ≤ 2.4, only ever met in
//! very old archives but cheap to support.

use super::error::{DecodeError, Result};
use super::reader::Reader;

/// Field/value pairs of a zipmap blob, flattened (field, value, ...).
pub fn entries(blob: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut r = Reader::new(blob, 0);
    let _count = r.u8("zipmap header")?;
    let mut out = Vec::new();
    while r.peek("zipmap entry")? != 0xff {
        let klen = len(&mut r)?;
        out.push(r.take(klen, "zipmap key")?.to_vec());
        let vlen = len(&mut r)?;
        let free = usize::from(r.u8("zipmap free byte")?);
        out.push(r.take(vlen, "zipmap value")?.to_vec());
        r.take(free, "zipmap padding")?;
    }
    r.u8("zipmap end")?;
    if !r.is_empty() {
        return Err(DecodeError::corrupt(
            "zipmap: bytes after the end marker",
            r.offset(),
        ));
    }
    Ok(out)
}

fn len(r: &mut Reader) -> Result<usize> {
    let start = r.offset();
    match r.u8("zipmap length")? {
        b @ 0..=253 => Ok(usize::from(b)),
        254 => Ok(r.u32_le("zipmap length")? as usize),
        _ => Err(DecodeError::corrupt(
            "zipmap: end marker inside an entry",
            start,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_with_padding() {
        // 2 entries: "a" -> "xy" (1 free byte), "bc" -> "" .
        let blob = [2, 1, b'a', 2, 1, b'x', b'y', 0, 2, b'b', b'c', 0, 0, 0xff];
        let got = entries(&blob).unwrap();
        assert_eq!(
            got,
            vec![b"a".to_vec(), b"xy".to_vec(), b"bc".to_vec(), vec![]]
        );
    }

    #[test]
    fn truncated() {
        assert!(entries(&[1, 1, b'a', 5, 0, b'x']).is_err());
    }
}
