//! The one error type of the AOF readers (commands and manifest).

use thiserror::Error;

/// Why an AOF part or manifest could not be read (further). Offsets count
/// from the start of the part's file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AofError {
    /// The input ends inside the command starting at `offset`: what
    /// precedes it is intact (`redis-check-aof --fix` cuts the file there).
    #[error("truncated command at byte offset {offset}: the file ends inside it")]
    Truncated { offset: u64 },
    /// Bytes that are not RESP where a command should be.
    #[error("corrupt command at byte offset {offset}: {what}")]
    Corrupt { offset: u64, what: String },
    /// A declared length over the reader's limit, refused before anything
    /// was collected for it.
    #[error("argument or command of {len} bytes at byte offset {offset} exceeds the limit of {limit} bytes")]
    TooLarge { offset: u64, len: u64, limit: u64 },
    /// The underlying reader failed.
    #[error("read error at byte offset {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    /// A manifest line that cannot be understood.
    #[error("manifest line {line}: {what}")]
    Manifest { line: usize, what: String },
}

impl AofError {
    /// The byte offset the error points at, when it points into a file.
    pub fn offset(&self) -> Option<u64> {
        match self {
            AofError::Truncated { offset }
            | AofError::Corrupt { offset, .. }
            | AofError::TooLarge { offset, .. }
            | AofError::Io { offset, .. } => Some(*offset),
            AofError::Manifest { .. } => None,
        }
    }

    /// Whether the input simply ended early (the rest is intact).
    pub fn is_truncation(&self) -> bool {
        matches!(self, AofError::Truncated { .. })
    }
}

pub type Result<T, E = AofError> = std::result::Result<T, E>;
