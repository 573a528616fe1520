//! Sets of keys in bounded memory: 16 bytes per key instead of the key.
//!
//! Export drops keys that SCAN returns twice, and diff finds server keys
//! that an archive lacks; both need "have I seen this key?" for millions of
//! keys. A 128-bit fingerprint (two independently salted SipHash values)
//! makes a collision between two distinct keys practically impossible
//! (about 2^-128 per pair) without holding the keys themselves.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

#[derive(Debug, Default)]
pub struct KeyFingerprints(HashSet<u128>);

impl KeyFingerprints {
    fn fingerprint(key: &[u8]) -> u128 {
        let half = |salt: u8| {
            let mut h = DefaultHasher::new();
            salt.hash(&mut h);
            key.hash(&mut h);
            h.finish()
        };
        (u128::from(half(1)) << 64) | u128::from(half(2))
    }

    /// Adds a key; true when it was not there yet.
    pub fn insert(&mut self, key: &[u8]) -> bool {
        self.0.insert(Self::fingerprint(key))
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.0.contains(&Self::fingerprint(key))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_keys_exactly() {
        let mut set = KeyFingerprints::default();
        assert!(set.insert(b"a"));
        assert!(!set.insert(b"a"));
        assert!(set.insert(b"b"));
        assert!(set.contains(b"a") && !set.contains(b"c"));
        assert_eq!(set.len(), 2);
        let many: Vec<Vec<u8>> = (0..100_000u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let mut big = KeyFingerprints::default();
        assert!(many.iter().all(|k| big.insert(k)), "no collisions");
    }
}
