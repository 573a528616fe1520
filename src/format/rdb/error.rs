//! The one error type of the RDB reader.
//!
//! Every variant that points into the file carries the byte offset (from
//! the start of the file) where the problem sits, so an operator can tell a
//! truncated copy from a damaged one and `redis-check-rdb` can be pointed
//! at the same place.

use thiserror::Error;

/// Why an RDB file could not be read (further).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RdbError {
    /// The file does not start with `REDIS` or `VALKEY` and a version.
    #[error("not an RDB file: it starts with {found:?}, an RDB file starts with REDIS or VALKEY and a version number")]
    BadMagic { found: String },
    /// A version this reader does not know (its types could mean anything).
    #[error("unsupported RDB version {version} ({magic} magic); this reader knows REDIS 1-14 and VALKEY 80-81")]
    UnsupportedVersion { magic: &'static str, version: u16 },
    /// The input ended in the middle of something.
    #[error("truncated {what} at byte offset {offset}: the file ends there")]
    Truncated { what: &'static str, offset: u64 },
    /// A type or opcode byte that this reader does not know for the file's
    /// version. The value's length cannot be known, so nothing after it
    /// can be read.
    #[error("unknown type or opcode {byte} at byte offset {offset} (rdb version {rdb_version}); the rest of the file cannot be read")]
    UnknownType {
        byte: u8,
        offset: u64,
        rdb_version: u16,
    },
    /// A known type whose length cannot be found without outside knowledge.
    #[error("type {type_byte} at byte offset {offset} cannot be read: {why}; the rest of the file cannot be read")]
    Undelimitable {
        type_byte: u8,
        offset: u64,
        why: &'static str,
    },
    /// The bytes are present but make no sense.
    #[error("corrupt {what} at byte offset {offset}")]
    Corrupt { what: String, offset: u64 },
    /// A declared length larger than the reader's limit: refused before
    /// anything is allocated for it.
    #[error("{what} of {len} bytes at byte offset {offset} exceeds the limit of {limit} bytes")]
    TooLarge {
        what: &'static str,
        len: u64,
        limit: u64,
        offset: u64,
    },
    /// The CRC-64 after the EOF opcode does not match the file.
    #[error("bad checksum at byte offset {offset}: the file says {expected:#018x}, its bytes give {found:#018x}")]
    BadChecksum {
        expected: u64,
        found: u64,
        offset: u64,
    },
    /// The underlying reader failed.
    #[error("read error at byte offset {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: std::io::Error,
    },
}

impl RdbError {
    /// The byte offset the error points at, when it points into the file.
    pub fn offset(&self) -> Option<u64> {
        match self {
            RdbError::BadMagic { .. } | RdbError::UnsupportedVersion { .. } => Some(0),
            RdbError::Truncated { offset, .. }
            | RdbError::UnknownType { offset, .. }
            | RdbError::Undelimitable { offset, .. }
            | RdbError::Corrupt { offset, .. }
            | RdbError::TooLarge { offset, .. }
            | RdbError::BadChecksum { offset, .. }
            | RdbError::Io { offset, .. } => Some(*offset),
        }
    }

    /// True when the input simply ended early (a cut copy, a transfer that
    /// stopped), as opposed to bytes that are wrong.
    pub fn is_truncation(&self) -> bool {
        matches!(self, RdbError::Truncated { .. })
    }
}

/// The reader's result type.
pub type Result<T, E = RdbError> = std::result::Result<T, E>;
