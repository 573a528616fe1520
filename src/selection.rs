//! Which keys a command works on: kb_ids (ids or globs), categories and key
//! globs, applied the same way online (SCAN) and offline (archives).

use crate::kato::Category;
use crate::pattern::Glob;

/// A parsed `--kb`/`--category`/`--match` selection. Empty lists select all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub kbs: Vec<Glob>,
    pub categories: Vec<Category>,
    pub matches: Vec<Glob>,
}

impl Selection {
    pub fn kb_selected(&self, kb_id: &[u8]) -> bool {
        self.kbs.is_empty() || self.kbs.iter().any(|g| g.is_match(kb_id))
    }

    pub fn category_selected(&self, category: Category) -> bool {
        self.categories.is_empty() || self.categories.contains(&category)
    }

    /// Whether a block of this kb_id and category can hold selected keys.
    pub fn block_selected(&self, kb_id: &[u8], category: Category) -> bool {
        self.kb_selected(kb_id) && self.category_selected(category)
    }

    pub fn key_selected(&self, key: &[u8]) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|g| g.is_match(key))
    }

    /// Whether a record passes every filter.
    pub fn selects(&self, kb_id: &[u8], category: Category, key: &[u8]) -> bool {
        self.block_selected(kb_id, category) && self.key_selected(key)
    }

    /// kb_ids named literally (no glob characters): they need no discovery.
    pub fn literal_kbs(&self) -> Option<Vec<Vec<u8>>> {
        let all_literal = !self.kbs.is_empty() && self.kbs.iter().all(Glob::is_literal);
        all_literal.then(|| self.kbs.iter().map(|g| g.as_bytes().to_vec()).collect())
    }
}

/// The SCAN MATCH pattern for every key of one kb_id (built by the key
/// catalogue).
pub use crate::kato::keys::kb_scan_pattern;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_selection_selects_everything() {
        let s = Selection::default();
        assert!(s.selects(b"any", Category::Other, b"any:key"));
        assert_eq!(s.literal_kbs(), None);
    }

    #[test]
    fn filters_combine() {
        let s = Selection {
            kbs: vec![Glob::new("node[01]_kato")],
            categories: vec![Category::Emotives],
            matches: vec![Glob::new("*:emotives:a*")],
        };
        assert!(s.selects(
            b"node1_kato",
            Category::Emotives,
            b"node1_kato:emotives:abc"
        ));
        assert!(!s.selects(
            b"node2_kato",
            Category::Emotives,
            b"node2_kato:emotives:abc"
        ));
        assert!(!s.selects(
            b"node1_kato",
            Category::Metadata,
            b"node1_kato:metadata:abc"
        ));
        assert!(!s.selects(
            b"node1_kato",
            Category::Emotives,
            b"node1_kato:emotives:bcd"
        ));
    }

    #[test]
    fn scan_pattern_escapes_the_kb_id() {
        assert_eq!(kb_scan_pattern(b"kb*[1]"), b"kb\\*\\[1\\]:*".to_vec());
    }
}
