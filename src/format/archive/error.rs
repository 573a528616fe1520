use std::io;

/// Everything that can be wrong with an archive. Offsets are byte offsets
/// from the start of the archive, so a damaged file can be examined by hand.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
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
    #[error("archive writer misuse: {0}")]
    Usage(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn corrupt(offset: u64, what: impl Into<String>) -> Error {
        Error::Corrupt {
            offset,
            what: what.into(),
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
        )
    }
}
