//! Progress reporting as a library trait; the binary draws it with
//! indicatif, tests and scripts use [`NoProgress`].

/// Receives progress of a long operation. Implementations must be cheap:
/// `advance` is called once per batch of keys.
pub trait Progress: Send + Sync {
    /// A new phase or kb_id starts (a label for the bar).
    fn stage(&self, _label: &str) {}
    /// `keys` more keys and `bytes` more payload bytes are done.
    fn advance(&self, _keys: u64, _bytes: u64) {}
    /// The operation ended (successfully or not).
    fn finish(&self) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
