//! Everything that consumes records: an archive file written atomically,
//! a live Redis server (raw, retagged and logical restore paths, with an
//! undo archive), and the ClickHouse mirror table.

pub mod archive;
pub mod file;
pub mod mirror;
pub mod redis;
