//! The vocabulary that sources and sinks share: what a source yields
//! ([`SourceItem`]), what a report lists when a key or a part of the source
//! fails ([`Failure`]), and the size of a selection when a source knows it
//! up front ([`SelectedSize`]).

use serde::Serialize;

pub use crate::format::archive::{KbWindow, Record};

/// One item from a record source.
#[derive(Debug)]
pub enum SourceItem {
    /// A key, ready to be written.
    Record(Record),
    /// A part of the source that could not be read (a damaged block, a bad
    /// row): the consumer counts it as failed and goes on.
    Damaged { what: String, reason: String },
    /// Every key of one kb_id has been sent (live sources): its SCAN window
    /// and counters, which an archive sink stores in its index.
    KbDone(KbWindow),
}

/// A key that could not be restored or compared, or a part of the source
/// that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The key (escaped for display), or the damaged block.
    pub what: String,
    pub reason: String,
}

/// The size of a selection, from an archive's index or a mirror query
/// (for the memory guard). An upper bound when `--match` narrows the
/// selection inside blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SelectedSize {
    pub payload_bytes: u64,
    pub keys: u64,
}
