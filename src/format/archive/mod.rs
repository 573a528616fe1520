//! The `.kbd` archive format, version 1 (documented in `docs/FORMAT.md`).
//!
//! Pure: reads from `impl Read`, writes to `impl Write`, knows nothing about
//! Redis connections. An archive is a magic number and a format version,
//! then a sequence of checksummed frames: one header, any number of blocks
//! (each holding the records of one kb_id and category, zstd-compressed on
//! its own), an index of the blocks, and a fixed-size end frame. Frames make
//! the format streamable (export to a pipe, restore from one); the index and
//! the end frame make a seekable file selectively readable.

mod check;
mod error;
mod frame;
mod reader;
mod types;
mod writer;

pub use check::{duplicate, index_against_blocks, misplaced, KeySet, SeenBlock};
pub use error::{Error, Result};
pub use frame::{
    EndInfo, FrameKind, END_MAGIC, FORMAT_VERSION, MAGIC, MAX_BLOCK_PAYLOAD, MAX_BLOCK_TARGET,
    MAX_HEADER_PAYLOAD, MAX_INDEX_PAYLOAD, MAX_RAW_BLOCK, MAX_RECORD_LEN,
};
pub use reader::{ArchiveReader, Block, BlockRecords, IndexedArchive};
pub use types::{
    BlockMeta, Header, Index, IndexEntry, KbWindow, Record, SelectionSpec, ShardSnapshot,
    SourceInfo, ABSENT_TYPE,
};
pub use writer::{ArchiveWriter, Checkpoint, WriterOptions};

#[cfg(test)]
mod tests;
