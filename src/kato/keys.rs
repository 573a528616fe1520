//! Building KATO keys and SCAN patterns from the catalogue's shapes, so
//! that no other module spells a key shape out.
//!
//! kb_ids, pattern names and symbols are bytes. SCAN patterns escape the
//! kb_id (and everything else that is literal), since a kb_id may hold
//! glob metacharacters.

pub use super::catalogue::shapes::*;
pub use super::catalogue::{Outer, Shape};

use super::catalogue::Category;
use crate::pattern::escape;

impl Shape {
    /// The key of this shape in kb `kb`: `{kb}{marker}{tail}` (`tail` is
    /// empty for an exact shape).
    pub fn key(self, kb: &[u8], tail: &[u8]) -> Vec<u8> {
        let mut key = Vec::new();
        self.key_into(&mut key, kb, tail);
        key
    }

    /// [`Shape::key`] into a reused buffer.
    pub fn key_into<'a>(self, buf: &'a mut Vec<u8>, kb: &[u8], tail: &[u8]) -> &'a [u8] {
        debug_assert!(self.is_prefix() || tail.is_empty(), "{}", self.marker());
        buf.clear();
        buf.reserve(kb.len() + self.marker().len() + tail.len());
        buf.extend_from_slice(kb);
        buf.extend_from_slice(self.marker().as_bytes());
        buf.extend_from_slice(tail);
        buf
    }

    /// The SCAN MATCH pattern for every key of this shape in kb `kb`: the
    /// escaped `{kb}{marker}`, then `*` when a variable part follows.
    pub fn scan_pattern(self, kb: &[u8]) -> Vec<u8> {
        let mut pattern = escape(&self.key(kb, b""));
        if self.is_prefix() {
            pattern.push(b'*');
        }
        pattern
    }
}

/// `{kb}:frequency:{pattern}`.
pub fn frequency(kb: &[u8], pattern: &[u8]) -> Vec<u8> {
    FREQUENCY.key(kb, pattern)
}

/// `{kb}:emotives:{pattern}`.
pub fn emotives(kb: &[u8], pattern: &[u8]) -> Vec<u8> {
    EMOTIVES.key(kb, pattern)
}

/// `{kb}:metadata:{pattern}`.
pub fn metadata(kb: &[u8], pattern: &[u8]) -> Vec<u8> {
    METADATA.key(kb, pattern)
}

/// `{kb}:symbol_to_patterns:{symbol}`.
pub fn symbol_to_patterns(kb: &[u8], symbol: &[u8]) -> Vec<u8> {
    SYMBOL_TO_PATTERNS.key(kb, symbol)
}

/// `{kb}:symbols:freq`, the hash symbol -> occurrences.
pub fn symbols_freq(kb: &[u8]) -> Vec<u8> {
    SYMBOLS_FREQ.key(kb, b"")
}

/// `{kb}:symbols:pmf`, the hash symbol -> number of patterns.
pub fn symbols_pmf(kb: &[u8]) -> Vec<u8> {
    SYMBOLS_PMF.key(kb, b"")
}

/// `stm:events:{kb}`, the kb's short-term memory stream.
pub fn stm_events(kb: &[u8]) -> Vec<u8> {
    [STM_EVENTS.text().as_bytes(), kb].concat()
}

/// The SCAN MATCH pattern for the STM streams of the kb_ids that `glob` (a
/// `--kb` glob, not escaped) matches: `stm:events:{glob}`.
pub fn stm_glob_scan_pattern(glob: &[u8]) -> Vec<u8> {
    [&escape(STM_EVENTS.text().as_bytes())[..], glob].concat()
}

/// The same key in kb_id `to` for a key of kb_id `from` (`--rename-kb`):
/// `{from}:…` becomes `{to}:…` and `stm:events:{from}` becomes
/// `stm:events:{to}`. `None` when the key does not name `from` where the
/// catalogue's shapes put a kb_id.
pub fn rekeyed(key: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    if key.starts_with(from) && key.get(from.len()) == Some(&b':') {
        return Some([to, &key[from.len()..]].concat());
    }
    (key == stm_events(from)).then(|| stm_events(to))
}

/// The SCAN MATCH pattern for every key of one kb_id: `{kb}:*`, escaped.
pub fn kb_scan_pattern(kb: &[u8]) -> Vec<u8> {
    let mut pattern = escape(kb);
    pattern.extend_from_slice(b":*");
    pattern
}

/// The SCAN MATCH pattern for every key of the kb_ids that `glob` (a
/// `--kb` glob, not escaped) matches: `{glob}:*`.
pub fn kb_glob_scan_pattern(glob: &[u8]) -> Vec<u8> {
    [glob, b":*"].concat()
}

/// The SCAN MATCH patterns that together cover one category of one kb_id,
/// one per shape of the category. What they return is still attributed
/// (see `kato::attribute`): a kb_id that itself holds a marker does not own
/// the keys its patterns match. [`Category::Other`] has no shapes: its keys
/// are found by [`kb_scan_pattern`].
pub fn category_scan_patterns(kb: &[u8], category: Category) -> Vec<Vec<u8>> {
    category
        .shapes()
        .iter()
        .map(|shape| shape.scan_pattern(kb))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kato::{classify, CATALOGUE};
    use crate::pattern::glob_match;

    #[test]
    fn builders_spell_the_catalogue_shapes() {
        assert_eq!(frequency(b"kb", b"p1"), b"kb:frequency:p1");
        assert_eq!(emotives(b"kb", b"p1"), b"kb:emotives:p1");
        assert_eq!(metadata(b"kb", b"p1"), b"kb:metadata:p1");
        assert_eq!(
            symbol_to_patterns(b"kb", b"a b\xff"),
            b"kb:symbol_to_patterns:a b\xff"
        );
        assert_eq!(symbols_freq(b"kb"), b"kb:symbols:freq");
        assert_eq!(symbols_pmf(b"kb"), b"kb:symbols:pmf");
        assert_eq!(
            TOTAL_UNIQUE_PATTERNS.key(b"kb", b""),
            b"kb:global:total_unique_patterns"
        );
        assert_eq!(TF_VECTOR.key(b"kb", b"p"), b"kb:tf_vector:p");
        let mut buf = b"leftover".to_vec();
        assert_eq!(ENTROPY.key_into(&mut buf, b"kb", b"p"), b"kb:entropy:p");
    }

    #[test]
    fn every_built_key_classifies_to_its_category() {
        for entry in CATALOGUE {
            for shape in entry.shapes {
                let tail: &[u8] = if shape.is_prefix() { b"x:y" } else { b"" };
                let key = shape.key(b"kb:1", tail);
                let c = classify(&key).unwrap();
                assert_eq!((c.kb_id, c.category), (&b"kb:1"[..], entry.category));
            }
        }
    }

    #[test]
    fn keys_are_rekeyed_where_they_name_their_kb_id() {
        assert_eq!(
            rekeyed(b"a:emotives:x", b"a", b"b"),
            Some(b"b:emotives:x".to_vec())
        );
        assert_eq!(
            rekeyed(b"stm:events:a", b"a", b"b"),
            Some(b"stm:events:b".to_vec())
        );
        assert_eq!(rekeyed(b"stm:events:ab", b"a", b"b"), None);
        assert_eq!(rekeyed(b"ab:emotives:x", b"a", b"b"), None);
        assert_eq!(stm_glob_scan_pattern(b"node*"), b"stm:events:node*");
        let key = stm_events(b"kb:1");
        let c = classify(&key).unwrap();
        assert_eq!((c.kb_id, c.category), (&b"kb:1"[..], Category::Stm));
    }

    #[test]
    fn scan_patterns_escape_the_kb_id() {
        assert_eq!(kb_scan_pattern(b"a*b"), b"a\\*b:*");
        assert_eq!(kb_glob_scan_pattern(b"node*"), b"node*:*");
        assert_eq!(
            category_scan_patterns(b"k[1]", Category::Emotives),
            vec![b"k\\[1\\]:emotives:*".to_vec()]
        );
        assert_eq!(
            category_scan_patterns(b"kb", Category::Globals)[2],
            b"kb:global:total_unique_patterns"
        );
        assert!(category_scan_patterns(b"kb", Category::Other).is_empty());
        for entry in CATALOGUE {
            for shape in entry.shapes {
                let tail: &[u8] = if shape.is_prefix() { b"p" } else { b"" };
                let pattern = shape.scan_pattern(b"kb*?");
                assert!(glob_match(&pattern, &shape.key(b"kb*?", tail)));
                assert!(!glob_match(&pattern, &shape.key(b"kbxy", tail)));
            }
        }
    }
}
