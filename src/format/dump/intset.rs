//! Intsets (§2.11): the sorted integer array behind small integer sets.

use super::error::{DecodeError, Result};
use super::reader::Reader;

/// All members of an intset blob as decimal ASCII.
pub fn entries(blob: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut r = Reader::new(blob, 0);
    let width = r.u32_le("intset header")? as usize;
    let len = r.u32_le("intset header")? as usize;
    if !matches!(width, 2 | 4 | 8) {
        return Err(DecodeError::corrupt(
            format!("intset: element width {width}"),
            0,
        ));
    }
    if len.checked_mul(width) != Some(r.remaining()) {
        return Err(DecodeError::corrupt(
            format!(
                "intset: {len} elements of {width} bytes, {} bytes follow",
                r.remaining()
            ),
            4,
        ));
    }
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        let b = r.take(width, "intset element")?;
        out.push(signed_le(b).to_string().into_bytes());
    }
    Ok(out)
}

fn signed_le(b: &[u8]) -> i64 {
    match b.len() {
        2 => i64::from(i16::from_le_bytes([b[0], b[1]])),
        4 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        _ => i64::from_le_bytes(b.try_into().expect("8-byte element")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_byte_members() {
        let blob = [2, 0, 0, 0, 2, 0, 0, 0, 0xff, 0xff, 0x05, 0x00];
        assert_eq!(entries(&blob).unwrap(), vec![b"-1".to_vec(), b"5".to_vec()]);
    }

    #[test]
    fn eight_byte_members() {
        let mut blob = vec![8, 0, 0, 0, 1, 0, 0, 0];
        blob.extend_from_slice(&5_000_000_000i64.to_le_bytes());
        assert_eq!(entries(&blob).unwrap(), vec![b"5000000000".to_vec()]);
    }

    #[test]
    fn bad_width_and_length() {
        assert!(entries(&[3, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(entries(&[2, 0, 0, 0, 2, 0, 0, 0, 1, 0]).is_err());
        assert!(entries(&[2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
