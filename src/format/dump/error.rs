//! The one error type of the decoder.
//!
//! Every variant names what was being read and the byte offset where the
//! problem sits, so a damaged archive entry can be reported precisely.
//! Offsets count from the start of the payload, except inside a container
//! blob (listpack, ziplist, intset, ...) where [`DecodeError::InContainer`]
//! gives the blob's payload offset and the inner error the offset inside the
//! (possibly LZF-decompressed) blob.

use thiserror::Error;

/// Why a DUMP payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload is shorter than the 10-byte trailer plus a type byte.
    #[error("payload too short: {len} bytes, a DUMP payload has at least 10")]
    TooShort { len: usize },
    /// The CRC-64 in the trailer does not match the bytes before it.
    #[error("bad checksum: trailer says {expected:#018x}, bytes give {found:#018x}")]
    BadChecksum { expected: u64, found: u64 },
    /// The input ended in the middle of something.
    #[error("truncated {what} at byte offset {offset}")]
    Truncated { what: &'static str, offset: usize },
    /// A type byte this decoder does not know (for this RDB version).
    #[error("unknown type byte {type_byte} for rdb version {rdb_version}")]
    UnknownType { type_byte: u8, rdb_version: u16 },
    /// A type that exists but cannot be decoded without outside knowledge.
    #[error("unsupported type byte {type_byte}: {why}")]
    Unsupported { type_byte: u8, why: &'static str },
    /// The bytes are present but make no sense.
    #[error("corrupt {what} at byte offset {offset}")]
    Corrupt { what: String, offset: usize },
    /// The value ended before the trailer did.
    #[error("{count} unexpected bytes after the value at byte offset {offset}")]
    TrailingBytes { count: usize, offset: usize },
    /// An error inside a container blob stored as a string.
    /// (The inner error is in the message, so it is not also the
    /// `source`: a printed chain would repeat it.)
    #[error("in the {container} stored at byte offset {offset}: {inner}")]
    InContainer {
        container: &'static str,
        offset: usize,
        inner: Box<DecodeError>,
    },
}

impl DecodeError {
    /// Shorthand for [`DecodeError::Corrupt`].
    pub(crate) fn corrupt(what: impl Into<String>, offset: usize) -> Self {
        DecodeError::Corrupt {
            what: what.into(),
            offset,
        }
    }
}

/// The decoder's result type.
pub type Result<T, E = DecodeError> = std::result::Result<T, E>;
