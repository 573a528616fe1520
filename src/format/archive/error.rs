use std::io;

/// Everything that can be wrong with an archive. Offsets are byte offsets
/// from the start of the archive, so a damaged file can be examined by hand.
///
/// Errors of kbdump say their cause in their own message and do not also
/// return it as [`std::error::Error::source`]: a chain printed with `{:#}`
/// would say it twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("i/o error: {0}")]
    Io(io::Error),
    #[error("not a kbdump archive (bad magic number {found:02x?}); is this the right file?")]
    BadMagic { found: Vec<u8> },
    #[error(
        "archive format version {found} is newer than this kbdump understands (up to {supported}); \
         upgrade kbdump to read it"
    )]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("archive is truncated at byte {offset}: {what}; the file was cut short (interrupted copy or export?)")]
    Truncated { offset: u64, what: String },
    #[error("checksum mismatch in {what} at byte {offset}: stored {stored:08x}, computed {computed:08x}; the archive is damaged there")]
    Checksum {
        offset: u64,
        what: String,
        stored: u32,
        computed: u32,
    },
    #[error("corrupt archive at byte {offset}: {what}")]
    Corrupt { offset: u64, what: String },
    /// The index does not describe the blocks the file holds: a reader
    /// must not use it to find blocks (read front to back instead).
    #[error("the archive's index at byte {offset} does not match its blocks: {what}")]
    Index { offset: u64, what: String },
    /// A record that decodes but does not belong in its block (its key
    /// classifies to another kb_id or category): damage to that record
    /// only; the block's other records are still read.
    #[error("{block}: key {key} {why}; skipped as damage")]
    Misplaced {
        offset: u64,
        block: String,
        key: String,
        why: String,
    },
    #[error("archive writer misuse: {0}")]
    Usage(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

impl Error {
    /// The kind of the I/O error underneath, if this is one (a broken
    /// pipe is not a failure of an export to stdout).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io(e) => Some(e.kind()),
            _ => None,
        }
    }

    pub(crate) fn corrupt(offset: u64, what: impl Into<String>) -> Error {
        Error::Corrupt {
            offset,
            what: what.into(),
        }
    }

    /// The byte offset the error is about, when it has one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Error::Truncated { offset, .. }
            | Error::Checksum { offset, .. }
            | Error::Corrupt { offset, .. }
            | Error::Index { offset, .. }
            | Error::Misplaced { offset, .. } => Some(*offset),
            Error::BadMagic { .. } | Error::UnsupportedVersion { .. } => Some(0),
            Error::Io(_) | Error::Usage(_) => None,
        }
    }

    /// True for damage to the file (as opposed to an I/O failure or misuse).
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            Error::BadMagic { .. }
                | Error::UnsupportedVersion { .. }
                | Error::Truncated { .. }
                | Error::Checksum { .. }
                | Error::Corrupt { .. }
                | Error::Index { .. }
                | Error::Misplaced { .. }
        )
    }
}
