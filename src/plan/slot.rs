//! Redis Cluster hash slots: which of the 16384 slots a key lives in, and
//! a short hash tag for each slot, so that a key kbdump makes for its own
//! use (a temporary key of the logical restore path) can be put in the slot
//! of any given key, whatever braces that key holds.

use std::sync::OnceLock;

/// The number of hash slots of Redis Cluster (and Valkey cluster).
pub const SLOTS: u16 = 16384;

const XMODEM: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// The slot of `key`: CRC16 (XMODEM) of its hash tag, modulo 16384. The
/// tag is the text between the first `{` and the first `}` after it, when
/// that text is not empty; otherwise the whole key.
pub fn hash_slot(key: &[u8]) -> u16 {
    XMODEM.checksum(hashed_part(key)) % SLOTS
}

fn hashed_part(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(len) if len > 0 => &key[open + 1..open + 1 + len],
        _ => key,
    }
}

/// A tag (decimal digits, no braces) whose slot is `slot`: `{tag}` in a
/// key puts the key in that slot. Taking the key's own tag instead fails
/// for keys with unbalanced or empty braces (`a}b`, `{}x`), whose slot
/// comes from the whole key, braces included.
pub fn tag_for_slot(slot: u16) -> &'static str {
    &tags()[usize::from(slot % SLOTS)]
}

/// The smallest decimal number hashing to each slot (found once, in about
/// 170,000 CRC16 computations of a few bytes).
fn tags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        let mut tags = vec![String::new(); usize::from(SLOTS)];
        let mut missing = usize::from(SLOTS);
        let mut n: u64 = 0;
        while missing > 0 {
            let text = n.to_string();
            let slot = usize::from(hash_slot(text.as_bytes()));
            if tags[slot].is_empty() {
                tags[slot] = text;
                missing -= 1;
            }
            n += 1;
        }
        tags
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_cluster_specification() {
        // The reference values of the Redis Cluster specification and of
        // `CLUSTER KEYSLOT`.
        assert_eq!(XMODEM.checksum(b"123456789"), 0x31C3);
        assert_eq!(hash_slot(b"foo"), 12182);
        assert_eq!(hash_slot(b"{user1000}.following"), hash_slot(b"user1000"));
        assert_ne!(hash_slot(b"foo{}{bar}"), hash_slot(b"bar"));
        assert_eq!(hash_slot(b"foo{{bar}}zap"), hash_slot(b"{bar"));
        assert_eq!(hash_slot(b"foo{bar}{zap}"), hash_slot(b"bar"));
    }

    #[test]
    fn every_slot_has_a_tag_that_hashes_to_it() {
        for slot in 0..SLOTS {
            let tag = tag_for_slot(slot);
            assert!(!tag.contains(['{', '}']));
            assert_eq!(hash_slot(tag.as_bytes()), slot, "{tag}");
        }
    }
}
