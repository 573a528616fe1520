//! A buffered, offset-counting input over any `Read`, with the running
//! file checksum and the capture of value bytes.
//!
//! The buffer is refilled in large reads; the checksum and the capture are
//! brought up to date only when the buffer moves (and at the end of a
//! value), so the per-byte primitives are plain index arithmetic. Nothing
//! here allocates by a length read from the input: [`Input::bytes`] checks
//! the limit first and then grows with the bytes that actually arrive.

use std::io::{ErrorKind, Read};

use crc_fast::{CrcAlgorithm, Digest};

use super::error::{RdbError, Result};

/// Buffer size: large reads keep system-call overhead far below the cost
/// of parsing, and 1 MiB stays well inside "constant memory".
const BUF: usize = 1 << 20;

pub(super) struct Input<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// File offset of `buf[0]`.
    base: u64,
    crc: Digest,
    /// `buf[crc_from..pos]` is consumed but not yet in `crc`.
    crc_from: usize,
    /// While capturing: `buf[mark..pos]` is consumed but not yet in
    /// `captured`.
    mark: Option<usize>,
    captured: Vec<u8>,
    /// The most a capture may collect: checked before each skip, so a
    /// lying length is refused before its bytes are collected.
    capture_limit: u64,
}

impl<R: Read> Input<R> {
    pub fn new(inner: R) -> Self {
        Input {
            inner,
            buf: vec![0; BUF].into_boxed_slice(),
            pos: 0,
            end: 0,
            base: 0,
            crc: Digest::new(CrcAlgorithm::Crc64Redis),
            crc_from: 0,
            mark: None,
            captured: Vec::new(),
            capture_limit: u64::MAX,
        }
    }

    /// File offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The CRC-64 of every byte consumed so far.
    pub fn checksum(&mut self) -> u64 {
        self.sync_crc();
        self.crc.finalize()
    }

    fn sync_crc(&mut self) {
        self.crc.update(&self.buf[self.crc_from..self.pos]);
        self.crc_from = self.pos;
    }

    fn sync_capture(&mut self) {
        if let Some(mark) = self.mark {
            self.captured.extend_from_slice(&self.buf[mark..self.pos]);
            self.mark = Some(self.pos);
        }
    }

    /// Make at least `min` (≤ `BUF`) unread bytes available.
    #[inline]
    fn want(&mut self, min: usize, what: &'static str) -> Result<()> {
        if self.end - self.pos >= min {
            return Ok(());
        }
        self.refill(min, what)
    }

    #[cold]
    fn refill(&mut self, min: usize, what: &'static str) -> Result<()> {
        self.sync_crc();
        self.sync_capture();
        self.buf.copy_within(self.pos..self.end, 0);
        self.base += self.pos as u64;
        self.end -= self.pos;
        self.pos = 0;
        self.crc_from = 0;
        if self.mark.is_some() {
            self.mark = Some(0);
        }
        while self.end < min {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(RdbError::Truncated {
                        what,
                        offset: self.base + self.end as u64,
                    })
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(RdbError::Io {
                        offset: self.base + self.end as u64,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    #[inline]
    pub fn u8(&mut self, what: &'static str) -> Result<u8> {
        self.want(1, what)?;
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        self.want(N, what)?;
        let out: [u8; N] = self.buf[self.pos..self.pos + N]
            .try_into()
            .expect("want made N bytes available");
        self.pos += N;
        Ok(out)
    }

    /// Step over `n` bytes (any size: refills as often as needed).
    pub fn skip(&mut self, mut n: u64, what: &'static str) -> Result<()> {
        if self.mark.is_some() && self.captured_len().saturating_add(n) > self.capture_limit {
            return Err(RdbError::TooLarge {
                what,
                len: n,
                limit: self.capture_limit,
                offset: self.offset(),
            });
        }
        loop {
            let here = (self.end - self.pos) as u64;
            if n <= here {
                self.pos += n as usize;
                return Ok(());
            }
            n -= here;
            self.pos = self.end;
            self.want(1, what)?;
        }
    }

    /// The next `n` bytes as a vector. `n` is checked against `limit`
    /// before anything is allocated, and the vector grows only with bytes
    /// that were actually read.
    pub fn bytes(&mut self, n: u64, limit: u64, what: &'static str) -> Result<Vec<u8>> {
        if n > limit {
            return Err(RdbError::TooLarge {
                what,
                len: n,
                limit,
                offset: self.offset(),
            });
        }
        let n = n as usize;
        if self.end - self.pos >= n {
            let out = self.buf[self.pos..self.pos + n].to_vec();
            self.pos += n;
            return Ok(out);
        }
        let mut out = Vec::with_capacity(n.min(BUF));
        while out.len() < n {
            self.want(1, what)?;
            let k = (n - out.len()).min(self.end - self.pos);
            out.extend_from_slice(&self.buf[self.pos..self.pos + k]);
            self.pos += k;
        }
        Ok(out)
    }

    /// Start collecting consumed bytes, after `prefix`, at most `limit`.
    pub fn begin_capture(&mut self, prefix: &[u8], limit: u64) {
        self.capture_limit = limit;
        self.captured.clear();
        self.captured.extend_from_slice(prefix);
        self.mark = Some(self.pos);
    }

    /// The bytes consumed since [`Input::begin_capture`] (after its
    /// prefix); capturing stops.
    pub fn end_capture(&mut self) -> Vec<u8> {
        self.sync_capture();
        self.mark = None;
        std::mem::take(&mut self.captured)
    }

    /// Stop capturing and drop what was collected (after an error).
    pub fn abandon_capture(&mut self) {
        self.mark = None;
        self.captured = Vec::new();
    }

    /// Bytes collected so far by the current capture (for limits).
    pub fn captured_len(&self) -> u64 {
        let pending = self.mark.map_or(0, |m| self.pos - m);
        (self.captured.len() + pending) as u64
    }

    /// The unread buffered bytes and the inner reader.
    pub fn into_parts(self) -> (Vec<u8>, R) {
        (self.buf[self.pos..self.end].to_vec(), self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte per call, to exercise refills.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() || out.is_empty() {
                return Ok(0);
            }
            out[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    #[test]
    fn capture_and_checksum_survive_refills() {
        let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let mut inp = Input::new(Trickle(&data));
        inp.skip(10, "x").unwrap();
        inp.begin_capture(b"T", u64::MAX);
        inp.skip(3000, "x").unwrap();
        let _ = inp.array::<4>("x").unwrap();
        let got = inp.end_capture();
        assert_eq!(got[0], b'T');
        assert_eq!(&got[1..], &data[10..3014]);
        assert_eq!(inp.offset(), 3014);
        inp.skip(5000 - 3014, "x").unwrap();
        assert_eq!(inp.checksum(), crate::format::dump::crc64(&data));
        assert!(inp.u8("x").unwrap_err().is_truncation());
    }

    #[test]
    fn truncation_names_the_end_offset() {
        let mut inp = Input::new(&b"abc"[..]);
        inp.u8("a").unwrap();
        let err = inp.array::<4>("four bytes").unwrap_err();
        assert!(
            matches!(
                err,
                RdbError::Truncated {
                    what: "four bytes",
                    offset: 3
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn bytes_refuses_lengths_over_the_limit_before_allocating() {
        let mut inp = Input::new(&b"abc"[..]);
        let err = inp.bytes(u64::MAX, 1 << 20, "key").unwrap_err();
        assert!(matches!(err, RdbError::TooLarge { .. }), "{err}");
        let err = inp.bytes(100, 1 << 20, "key").unwrap_err();
        assert!(
            matches!(err, RdbError::Truncated { offset: 3, .. }),
            "{err}"
        );
    }
}
