//! Everything that yields records: an archive (seekable file, stream or
//! truncated file), a live server (SCAN + DUMP), and the ClickHouse mirror.
//! Each produces the same [`RecordStream`]: a bounded channel of
//! [`SourceItem`]s and a task that ends with the source's verdict.

pub mod archive;
pub mod live;
pub mod mirror;

pub use crate::records::{SelectedSize, SourceItem};
