//! Progress reporting as a library trait; the binary draws it with
//! indicatif, tests and scripts use [`NoProgress`].

/// How much work a run has, when its source knows before reading: an
/// archive's index, a mirror query, a live server's discovery census.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Total {
    /// Keys the run will handle (what `advance` counts).
    pub keys: u64,
    /// Their payload bytes, when known.
    pub bytes: Option<u64>,
    /// Counted before the run on a server that keeps changing (a census
    /// of a live server), rather than read from a fixed index.
    pub estimate: bool,
}

/// Receives progress of a long operation. Implementations must be cheap:
/// `advance` is called once per batch of keys.
pub trait Progress: Send + Sync {
    /// How much work the run has. Called at most once, before the first
    /// `advance`, and only when the source knows it; without it the work
    /// is open-ended.
    fn total(&self, _total: Total) {}
    /// A new phase or kb_id starts (a label for the bar).
    fn stage(&self, _label: &str) {}
    /// A SCAN page returned `keys` keys that are about to be read.
    fn scanned(&self, _keys: u64) {}
    /// `keys` more keys and `bytes` more payload bytes are done.
    fn advance(&self, _keys: u64, _bytes: u64) {}
    /// The operation ended (successfully or not).
    fn finish(&self) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
