//! The streaming RESP command reader: `*N\r\n` then N bulk strings
//! `$len\r\n<bytes>\r\n`, as the server appends every write to an AOF.
//!
//! Memory is bounded by one command: every declared length is checked
//! against [`Limits`] before anything is collected for it, and vectors grow
//! only with the bytes that actually arrive. Lines starting with `#` are
//! annotations (Redis 7 writes `#TS:<unix seconds>` with
//! `aof-timestamp-enabled`) and are skipped.

use std::io::{ErrorKind, Read};

use super::error::{AofError, Result};

/// Read size: large reads keep system calls rare.
const BUF: usize = 1 << 16;
/// The longest `*N` / `$len` / annotation line accepted (an annotation is
/// short; a count has at most 20 digits).
const MAX_LINE: usize = 1024;

/// Limits on one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest argument (default 512 MiB, the servers' default
    /// `proto-max-bulk-len` and the archive's largest record).
    pub max_arg_bytes: u64,
    /// The most arguments in one command (default 16 Mi; an AOF rewrite
    /// writes at most 64 items per command).
    pub max_args: u64,
    /// The most bytes of one command, all arguments together (1 GiB).
    pub max_command_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_arg_bytes: 512 << 20,
            max_args: 16 << 20,
            max_command_bytes: 1 << 30,
        }
    }
}

/// One command as the AOF holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The name and the arguments.
    pub args: Vec<Vec<u8>>,
    /// Byte offset of the command's `*` in its stream.
    pub offset: u64,
}

impl Command {
    /// The command name, upper case (commands are case-insensitive).
    pub fn name(&self) -> Vec<u8> {
        self.args
            .first()
            .map(|n| n.to_ascii_uppercase())
            .unwrap_or_default()
    }
}

/// Reads the commands of an AOF part (or of what follows its RDB
/// preamble) from any [`Read`].
pub struct CommandReader<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    limits: Limits,
    done: bool,
}

impl<R: Read> CommandReader<R> {
    /// A reader whose first byte sits at offset `start` of its file (after
    /// an RDB preamble, say), with the default limits.
    pub fn new(inner: R, start: u64) -> Self {
        Self::with_limits(inner, start, Limits::default())
    }

    /// [`CommandReader::new`] with bytes already read from the input
    /// (what an RDB reader buffered past its end) in front.
    pub fn with_prefix(prefix: Vec<u8>, inner: R, start: u64) -> CommandReader<PrefixThen<R>> {
        CommandReader::new(
            PrefixThen {
                prefix,
                at: 0,
                inner,
            },
            start,
        )
    }

    pub fn with_limits(inner: R, start: u64, limits: Limits) -> Self {
        CommandReader {
            inner,
            buf: vec![0; BUF].into_boxed_slice(),
            pos: 0,
            end: 0,
            base: start,
            limits,
            done: false,
        }
    }

    /// Offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The next command; `Ok(None)` at the clean end of the input. After
    /// an error the reader is finished.
    pub fn next_command(&mut self) -> Result<Option<Command>> {
        if self.done {
            return Ok(None);
        }
        let got = self.command();
        if !matches!(got, Ok(Some(_))) {
            self.done = true;
        }
        got
    }

    fn command(&mut self) -> Result<Option<Command>> {
        loop {
            if !self.fill(1)? {
                return Ok(None);
            }
            match self.buf[self.pos] {
                b'#' => {
                    let at = self.offset();
                    self.line(at)?;
                }
                b'*' => break,
                // Redis pads nothing, but a stray newline between
                // commands is harmless to its loader too.
                b'\n' => self.pos += 1,
                other => {
                    return Err(AofError::Corrupt {
                        offset: self.offset(),
                        what: format!(
                            "expected a command ('*'), found {:?}",
                            (other as char).escape_default().to_string()
                        ),
                    })
                }
            }
        }
        let start = self.offset();
        let count = self.header_line(b'*', start, "argument count")?;
        if count == 0 || count > self.limits.max_args {
            return Err(AofError::Corrupt {
                offset: start,
                what: format!(
                    "a command of {count} arguments (1 to {} expected)",
                    self.limits.max_args
                ),
            });
        }
        let mut args = Vec::with_capacity(count.min(64) as usize);
        let mut total = 0u64;
        for _ in 0..count {
            let at = self.offset();
            let len = self.header_line(b'$', start, "argument length")?;
            if len > self.limits.max_arg_bytes {
                return Err(AofError::TooLarge {
                    offset: at,
                    len,
                    limit: self.limits.max_arg_bytes,
                });
            }
            total += len;
            if total > self.limits.max_command_bytes {
                return Err(AofError::TooLarge {
                    offset: start,
                    len: total,
                    limit: self.limits.max_command_bytes,
                });
            }
            args.push(self.bulk(len, start)?);
        }
        Ok(Some(Command {
            args,
            offset: start,
        }))
    }

    /// `<sigil><decimal>\r\n`, for the command starting at `start`.
    fn header_line(&mut self, sigil: u8, start: u64, what: &'static str) -> Result<u64> {
        let at = self.offset();
        let line = self.line(start)?;
        let digits = line.strip_prefix(&[sigil]).unwrap_or(&[]);
        let parsed = std::str::from_utf8(digits)
            .ok()
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u64>().ok());
        parsed.ok_or_else(|| AofError::Corrupt {
            offset: at,
            what: format!(
                "{what}: expected '{}' and a number, found {:?}",
                sigil as char,
                line.escape_ascii().to_string()
            ),
        })
    }

    /// One line without its `\r\n`; the input ending inside it is a
    /// truncation of the command starting at `start`.
    fn line(&mut self, start: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            if !self.fill(1)? {
                return Err(AofError::Truncated { offset: start });
            }
            let avail = &self.buf[self.pos..self.end];
            if let Some(nl) = avail.iter().position(|&b| b == b'\n') {
                out.extend_from_slice(&avail[..nl]);
                self.pos += nl + 1;
                break;
            }
            out.extend_from_slice(avail);
            self.pos = self.end;
            if out.len() > MAX_LINE {
                break;
            }
        }
        if out.len() > MAX_LINE || out.pop() != Some(b'\r') {
            return Err(AofError::Corrupt {
                offset: self.offset() - out.len().min(MAX_LINE) as u64,
                what: "a line that does not end in \\r\\n within 1 KiB".into(),
            });
        }
        Ok(out)
    }

    /// `len` bytes and the `\r\n` after them.
    fn bulk(&mut self, len: u64, start: u64) -> Result<Vec<u8>> {
        let n = len as usize;
        let mut out = Vec::with_capacity(n.min(BUF));
        while out.len() < n {
            if !self.fill(1)? {
                return Err(AofError::Truncated { offset: start });
            }
            let k = (n - out.len()).min(self.end - self.pos);
            out.extend_from_slice(&self.buf[self.pos..self.pos + k]);
            self.pos += k;
        }
        if !self.fill(2)? {
            return Err(AofError::Truncated { offset: start });
        }
        if &self.buf[self.pos..self.pos + 2] != b"\r\n" {
            return Err(AofError::Corrupt {
                offset: self.offset(),
                what: format!("an argument of {len} bytes not followed by \\r\\n"),
            });
        }
        self.pos += 2;
        Ok(out)
    }

    /// Makes at least `min` (≤ `BUF`) unread bytes available; false when
    /// the input ends first.
    fn fill(&mut self, min: usize) -> Result<bool> {
        if self.end - self.pos >= min {
            return Ok(true);
        }
        self.buf.copy_within(self.pos..self.end, 0);
        self.base += self.pos as u64;
        self.end -= self.pos;
        self.pos = 0;
        while self.end < min {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(AofError::Io {
                        offset: self.base + self.end as u64,
                        source,
                    })
                }
            }
        }
        Ok(true)
    }
}

impl<R: Read> Iterator for CommandReader<R> {
    type Item = Result<Command>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_command().transpose()
    }
}

/// Bytes already read, then the rest of the input.
pub struct PrefixThen<R> {
    prefix: Vec<u8>,
    at: usize,
    inner: R,
}

impl<R: Read> Read for PrefixThen<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at < self.prefix.len() {
            let n = (self.prefix.len() - self.at).min(out.len());
            out[..n].copy_from_slice(&self.prefix[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        self.inner.read(out)
    }
}

/// True when `bytes` (the first bytes of a file) look like AOF commands.
pub fn looks_like_commands(bytes: &[u8]) -> bool {
    let digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    (bytes.first() == Some(&b'*') && digit(1)) || bytes.starts_with(b"#TS:")
}

/// The RESP form of a command (for tests and for writing an AOF).
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8]) -> (Vec<Vec<Vec<u8>>>, Option<AofError>) {
        let mut r = CommandReader::new(bytes, 0);
        let mut got = Vec::new();
        loop {
            match r.next_command() {
                Ok(Some(c)) => got.push(c.args),
                Ok(None) => return (got, None),
                Err(e) => return (got, Some(e)),
            }
        }
    }

    fn two_commands() -> Vec<u8> {
        let mut b = encode_command(&[b"SELECT", b"0"]);
        b.extend(encode_command(&[b"SET", b"k", b"hello\r\nworld"]));
        b
    }

    #[test]
    fn reads_commands_and_skips_annotations() {
        let mut b = b"#TS:1700000000\r\n".to_vec();
        b.extend(two_commands());
        let (got, err) = all(&b);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1][2], b"hello\r\nworld");
        let mut r = CommandReader::new(&b[..], 100);
        r.next_command().unwrap();
        assert_eq!(r.next_command().unwrap().unwrap().offset, 100 + 16 + 23);
    }

    #[test]
    fn every_cut_is_a_truncation_of_the_last_command() {
        let b = two_commands();
        let second = encode_command(&[b"SELECT", b"0"]).len();
        for cut in second + 1..b.len() {
            let (got, err) = all(&b[..cut]);
            assert_eq!(got.len(), 1, "cut at {cut}");
            assert!(
                matches!(err, Some(AofError::Truncated { offset }) if offset == second as u64),
                "cut at {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn damage_names_its_offset() {
        let mut b = two_commands();
        let second = encode_command(&[b"SELECT", b"0"]).len();
        b[second + 5] = b'x'; // the "$3" of SET
        let (got, err) = all(&b);
        assert_eq!(got.len(), 1);
        assert!(
            matches!(err, Some(AofError::Corrupt { offset, .. }) if offset == second as u64 + 4),
            "{err:?}"
        );
        let (_, err) = all(b"garbage");
        assert!(matches!(err, Some(AofError::Corrupt { offset: 0, .. })));
        let mut b = two_commands();
        let len = b.len();
        b[len - 2] = b'!';
        assert!(matches!(all(&b).1, Some(AofError::Corrupt { .. })));
    }

    #[test]
    fn lying_lengths_are_refused_before_allocating() {
        let (_, err) = all(b"*1\r\n$99999999999\r\nab");
        assert!(matches!(err, Some(AofError::TooLarge { .. })), "{err:?}");
        let (_, err) = all(b"*99999999999999\r\n");
        assert!(matches!(err, Some(AofError::Corrupt { .. })), "{err:?}");
        let (_, err) = all(b"*0\r\n");
        assert!(matches!(err, Some(AofError::Corrupt { .. })), "{err:?}");
        let long = [b"*".as_slice(), &[b'1'; 5000]].concat();
        assert!(matches!(all(&long).1, Some(AofError::Corrupt { .. })));
    }

    #[test]
    fn a_prefix_is_read_first() {
        let b = two_commands();
        let (head, tail) = b.split_at(7);
        let r = CommandReader::<&[u8]>::with_prefix(head.to_vec(), tail, 0);
        assert_eq!(r.count(), 2);
    }

    #[test]
    fn detection_by_content() {
        assert!(looks_like_commands(b"*2\r\n$6\r\nSELECT"));
        assert!(looks_like_commands(b"#TS:17"));
        assert!(!looks_like_commands(b"REDIS0011"));
        assert!(!looks_like_commands(b"*x"));
    }
}
