//! LZF decompression (liblzf format), used by RDB strings with the `0xC3`
//! marker and by any container blob stored that way.
//!
//! Written here rather than pulled in: it is thirty lines, and owning it
//! lets the decoder bound its output by the stated length and reject
//! back-references before the start of the output instead of panicking.

use super::error::{DecodeError, Result};

/// The most output one input byte can yield: a 3-byte back-reference
/// copies at most 264 bytes. Used to refuse absurd stated lengths before
/// allocating anything.
const MAX_RATIO: usize = 88;

/// Decompress `input`, which must expand to exactly `out_len` bytes.
/// `offset` is where `input` starts in the payload, for error messages.
pub fn decompress(input: &[u8], out_len: usize, offset: usize) -> Result<Vec<u8>> {
    if out_len > input.len().saturating_mul(MAX_RATIO) {
        return Err(DecodeError::corrupt(
            format!(
                "lzf string: {} bytes cannot expand to {out_len}",
                input.len()
            ),
            offset,
        ));
    }
    let mut out = Vec::with_capacity(out_len);
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            i = copy_literal(input, i, ctrl + 1, &mut out, out_len, offset)?;
        } else {
            i = copy_backref(input, i, ctrl, &mut out, out_len, offset)?;
        }
    }
    if out.len() != out_len {
        return Err(DecodeError::corrupt(
            format!(
                "lzf string: expanded to {} bytes, expected {out_len}",
                out.len()
            ),
            offset,
        ));
    }
    Ok(out)
}

fn copy_literal(
    input: &[u8],
    i: usize,
    len: usize,
    out: &mut Vec<u8>,
    out_len: usize,
    offset: usize,
) -> Result<usize> {
    let Some(lit) = input.get(i..i + len) else {
        return Err(DecodeError::Truncated {
            what: "lzf literal run",
            offset: offset + i,
        });
    };
    check_room(out.len() + len, out_len, offset + i)?;
    out.extend_from_slice(lit);
    Ok(i + len)
}

fn copy_backref(
    input: &[u8],
    mut i: usize,
    ctrl: usize,
    out: &mut Vec<u8>,
    out_len: usize,
    offset: usize,
) -> Result<usize> {
    let truncated = |i: usize| DecodeError::Truncated {
        what: "lzf back-reference",
        offset: offset + i,
    };
    let mut len = ctrl >> 5;
    if len == 7 {
        len += *input.get(i).ok_or_else(|| truncated(i))? as usize;
        i += 1;
    }
    let low = *input.get(i).ok_or_else(|| truncated(i))? as usize;
    i += 1;
    let distance = ((ctrl & 0x1f) << 8) + low + 1;
    if distance > out.len() {
        return Err(DecodeError::corrupt(
            "lzf back-reference before the start of the output",
            offset + i - 1,
        ));
    }
    let len = len + 2;
    check_room(out.len() + len, out_len, offset + i)?;
    // Byte by byte on purpose: source and destination may overlap, which is
    // how LZF encodes runs.
    let start = out.len() - distance;
    for k in 0..len {
        out.push(out[start + k]);
    }
    Ok(i)
}

fn check_room(needed: usize, out_len: usize, offset: usize) -> Result<()> {
    if needed > out_len {
        return Err(DecodeError::corrupt(
            format!("lzf string: output exceeds the stated {out_len} bytes"),
            offset,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_only() {
        assert_eq!(decompress(b"\x02abc", 3, 0).unwrap(), b"abc");
    }

    #[test]
    fn overlapping_backref_makes_a_run() {
        // literal "a", then copy 7 bytes from distance 1.
        let out = decompress(&[0x00, b'a', 0xa0, 0x00], 8, 0).unwrap();
        assert_eq!(out, b"aaaaaaaa");
    }

    #[test]
    fn long_backref_uses_extra_length_byte() {
        // literal "ab", then len 7 + 3 = 10 (+2 = 12 bytes) from distance 2.
        let out = decompress(&[0x01, b'a', b'b', 0xe0, 0x03, 0x01], 14, 0).unwrap();
        assert_eq!(out, b"ababababababab");
    }

    #[test]
    fn real_payload_string() {
        // From the Redis 7.0 str:lzf vector: "abcdefgh" x 128.
        let input = hex("08616263646566676861e0ff07e1ff07e1ff07e1d407016768");
        let out = decompress(&input, 1024, 0).unwrap();
        assert_eq!(out, b"abcdefgh".repeat(128));
    }

    #[test]
    fn backref_before_start_is_corrupt() {
        let err = decompress(&[0x20, 0x00], 3, 5).unwrap_err();
        assert!(
            matches!(err, DecodeError::Corrupt { offset: 6, .. }),
            "{err}"
        );
    }

    #[test]
    fn truncated_literal() {
        let err = decompress(&[0x05, b'a'], 6, 0).unwrap_err();
        assert!(matches!(err, DecodeError::Truncated { .. }), "{err}");
    }

    #[test]
    fn wrong_stated_length() {
        assert!(decompress(b"\x02abc", 4, 0).is_err());
        assert!(decompress(b"\x02abc", 2, 0).is_err());
    }

    #[test]
    fn absurd_length_is_refused_before_allocating() {
        let err = decompress(b"\x00a", usize::MAX / 2, 0).unwrap_err();
        assert!(matches!(err, DecodeError::Corrupt { .. }));
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
