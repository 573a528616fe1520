//! A bounds-checked byte cursor plus the RDB primitives built on it:
//! lengths (§2.5), strings with their integer and LZF forms (§2.6) and
//! doubles (§2.7).
//!
//! Every read checks the remaining input first, so malformed payloads give
//! `Truncated`/`Corrupt` errors and never a panic or an allocation sized by
//! an untrusted length field.

use super::error::{DecodeError, Result};
use super::lzf;

/// A cursor over `data`; `base` is added to every reported offset so errors
/// point into the whole payload.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `data` whose first byte sits at payload offset `base`.
    pub fn new(data: &'a [u8], base: usize) -> Self {
        Reader { data, pos: 0, base }
    }

    /// The payload offset of the next byte.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// True when everything has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                what,
                offset: self.offset(),
            });
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let bytes = self.take(N, what)?;
        Ok(bytes.try_into().expect("take returned N bytes"))
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    /// The next byte without consuming it.
    pub fn peek(&self, what: &'static str) -> Result<u8> {
        self.data
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::Truncated {
                what,
                offset: self.offset(),
            })
    }

    pub fn u16_le(&mut self, what: &'static str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub fn u32_le(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn u64_le(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub fn i64_le(&mut self, what: &'static str) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    pub fn u64_be(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// An RDB length (§2.5). The special `11xxxxxx` form is an error here.
    pub fn length(&mut self, what: &'static str) -> Result<u64> {
        let start = self.offset();
        match self.length_or_special(what)? {
            Len::Plain(n) => Ok(n),
            Len::Special(_) => Err(DecodeError::corrupt(
                format!("{what}: string encoding where a length was expected"),
                start,
            )),
        }
    }

    /// A length used as a count of things still to read. Each thing takes
    /// at least `min_size` bytes, so a count larger than the rest of the
    /// input allows is corrupt; this is what keeps allocations bounded.
    pub fn count(&mut self, what: &'static str, min_size: usize) -> Result<usize> {
        let start = self.offset();
        let n = self.length(what)?;
        let max = self.remaining() / min_size.max(1);
        if n > max as u64 {
            return Err(DecodeError::corrupt(
                format!("{what}: {n} items cannot fit in {} bytes", self.remaining()),
                start,
            ));
        }
        Ok(n as usize)
    }

    fn length_or_special(&mut self, what: &'static str) -> Result<Len> {
        let start = self.offset();
        let b = self.u8(what)?;
        Ok(match LengthForm::of(b) {
            LengthForm::Short(n) => Len::Plain(n),
            LengthForm::Medium(high) => Len::Plain(high | u64::from(self.u8(what)?)),
            LengthForm::Special(k) => Len::Special(k),
            LengthForm::Be32 => Len::Plain(u64::from(u32::from_be_bytes(self.array(what)?))),
            LengthForm::Be64 => Len::Plain(self.u64_be(what)?),
            LengthForm::Invalid => {
                return Err(DecodeError::corrupt(
                    format!("{what}: invalid length byte {b:#04x}"),
                    start,
                ))
            }
        })
    }

    /// An RDB string (§2.6): raw, integer-encoded or LZF-compressed.
    pub fn string(&mut self, what: &'static str) -> Result<Vec<u8>> {
        let start = self.offset();
        match self.length_or_special(what)? {
            Len::Plain(n) => Ok(self.take(bounded(n), what)?.to_vec()),
            Len::Special(0) => Ok(i64::from(self.u8(what)? as i8).to_string().into_bytes()),
            Len::Special(1) => Ok(i16::from_le_bytes(self.array(what)?)
                .to_string()
                .into_bytes()),
            Len::Special(2) => Ok(i32::from_le_bytes(self.array(what)?)
                .to_string()
                .into_bytes()),
            Len::Special(3) => self.lzf_string(what),
            Len::Special(k) => Err(DecodeError::corrupt(
                format!("{what}: unknown string encoding {k}"),
                start,
            )),
        }
    }

    fn lzf_string(&mut self, what: &'static str) -> Result<Vec<u8>> {
        let clen = self.length(what)?;
        let ulen = self.length(what)?;
        let at = self.offset();
        let input = self.take(bounded(clen), what)?;
        lzf::decompress(input, bounded(ulen), at)
    }

    /// A zset v1 score (§2.7): length byte with NaN/inf markers, then text.
    pub fn text_double(&mut self, what: &'static str) -> Result<f64> {
        let start = self.offset();
        match self.u8(what)? {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            n => {
                let text = self.take(n as usize, what)?;
                parse_score(text)
                    .ok_or_else(|| DecodeError::corrupt(format!("{what}: not a number"), start))
            }
        }
    }

    /// A binary64 score (§2.7, type 5).
    pub fn binary_double(&mut self, what: &'static str) -> Result<f64> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }

    /// A 16-byte raw stream id: ms and seq, both big endian.
    pub fn raw_stream_id(&mut self, what: &'static str) -> Result<(u64, u64)> {
        Ok((self.u64_be(what)?, self.u64_be(what)?))
    }
}

enum Len {
    Plain(u64),
    Special(u8),
}

/// What the first byte of an RDB length (§2.5) says: the one place that
/// knows the encoding, for this cursor and for the streaming RDB reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthForm {
    /// `00xxxxxx`: the length itself.
    Short(u64),
    /// `01xxxxxx yyyyyyyy`: these high bits, OR the next byte.
    Medium(u64),
    /// `11xxxxxx`: a specially encoded string of kind `xxxxxx` follows.
    Special(u8),
    /// `0x80`: a 32-bit big-endian length follows.
    Be32,
    /// `0x81`: a 64-bit big-endian length follows.
    Be64,
    /// Any other `10xxxxxx` byte.
    Invalid,
}

impl LengthForm {
    /// Classify a length's first byte.
    pub fn of(b: u8) -> LengthForm {
        match b >> 6 {
            0 => LengthForm::Short(u64::from(b & 0x3f)),
            1 => LengthForm::Medium(u64::from(b & 0x3f) << 8),
            3 => LengthForm::Special(b & 0x3f),
            _ if b == 0x80 => LengthForm::Be32,
            _ if b == 0x81 => LengthForm::Be64,
            _ => LengthForm::Invalid,
        }
    }
}

/// A length field as `usize`, saturated: anything that large fails the
/// following bounds check anyway.
fn bounded(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Parse a score written as text (`2.5`, `inf`, `-inf`, `1e10`).
pub fn parse_score(text: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(text).ok()?;
    match s {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => s.parse().ok().filter(|v: &f64| !v.is_nan()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(bytes: &[u8]) -> Reader<'_> {
        Reader::new(bytes, 0)
    }

    #[test]
    fn length_forms() {
        assert_eq!(r(&[0x3f]).length("n").unwrap(), 63);
        assert_eq!(r(&[0x41, 0x02]).length("n").unwrap(), 0x102);
        assert_eq!(r(&[0x80, 0, 1, 0, 0]).length("n").unwrap(), 0x10000);
        let mut long = vec![0x81];
        long.extend_from_slice(&[0xff; 8]);
        assert_eq!(r(&long).length("n").unwrap(), u64::MAX);
    }

    #[test]
    fn invalid_length_byte() {
        let err = r(&[0x82]).length("n").unwrap_err();
        assert!(
            matches!(err, DecodeError::Corrupt { offset: 0, .. }),
            "{err}"
        );
        assert!(r(&[0xc0, 1]).length("n").is_err());
    }

    #[test]
    fn integer_strings() {
        assert_eq!(r(&[0xc0, 0x9c]).string("s").unwrap(), b"-100");
        assert_eq!(r(&[0xc1, 0x30, 0x75]).string("s").unwrap(), b"30000");
        assert_eq!(
            r(&[0xc2, 0x00, 0x94, 0x35, 0x77]).string("s").unwrap(),
            b"2000000000"
        );
    }

    #[test]
    fn unknown_string_encoding() {
        assert!(matches!(
            r(&[0xc4]).string("s"),
            Err(DecodeError::Corrupt { .. })
        ));
    }

    #[test]
    fn huge_string_length_is_truncated_not_allocated() {
        let err = r(&[0x80, 0xff, 0xff, 0xff, 0xff, b'a'])
            .string("s")
            .unwrap_err();
        assert!(
            matches!(err, DecodeError::Truncated { offset: 5, .. }),
            "{err}"
        );
    }

    #[test]
    fn count_is_bounded_by_input() {
        assert!(r(&[0x05, 1, 2]).count("c", 1).is_err());
        assert_eq!(r(&[0x02, 1, 2]).count("c", 1).unwrap(), 2);
    }

    #[test]
    fn text_doubles() {
        assert_eq!(r(b"\x032.5").text_double("d").unwrap(), 2.5);
        assert_eq!(r(&[254]).text_double("d").unwrap(), f64::INFINITY);
        assert_eq!(r(&[255]).text_double("d").unwrap(), f64::NEG_INFINITY);
        assert!(r(&[253]).text_double("d").unwrap().is_nan());
        assert!(r(b"\x02xy").text_double("d").is_err());
    }

    #[test]
    fn offsets_include_base() {
        let mut rd = Reader::new(&[1, 2], 100);
        rd.u8("a").unwrap();
        assert_eq!(rd.offset(), 101);
        let err = rd.u16_le("b").unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                what: "b",
                offset: 101
            }
        );
    }
}
