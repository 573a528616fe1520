//! KATO's key catalogue: which knowledge base and category a Redis key
//! belongs to.
//!
//! Pure: works on key bytes only. Keys are bytes, never assumed to be text,
//! because KATO symbols may hold any byte.
//!
//! A key is `{kb_id}:{rest}`. Since a kb_id may itself contain `:`, the kb_id
//! is taken to end just before the *first* category marker found in the key
//! (`:frequency:`, `:emotives:`, …). A key with no marker belongs to the
//! longest known kb_id that prefixes it (when the caller knows some), else to
//! the text before its first `:`, with category [`Category::Other`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A family of KATO keys, as named in the key catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Frequency,
    Emotives,
    Metadata,
    Affinity,
    Symbols,
    Globals,
    Metrics,
    Predictions,
    Other,
}

/// How a category can be brought back when it is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recoverability {
    /// Exists only in Redis: a backup is the only way back.
    BackupOnly,
    /// Can be rebuilt from ClickHouse (`kbdump rebuild`).
    Rebuildable,
    /// Rebuildable, but only approximately (true pattern frequencies are lost).
    Approximate,
    /// Short-lived data that KATO recreates by itself.
    Ephemeral,
    /// Not in the catalogue: treat as precious.
    Unknown,
}

impl Category {
    pub const ALL: [Category; 9] = [
        Category::Frequency,
        Category::Emotives,
        Category::Metadata,
        Category::Affinity,
        Category::Symbols,
        Category::Globals,
        Category::Metrics,
        Category::Predictions,
        Category::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Category::Frequency => "frequency",
            Category::Emotives => "emotives",
            Category::Metadata => "metadata",
            Category::Affinity => "affinity",
            Category::Symbols => "symbols",
            Category::Globals => "globals",
            Category::Metrics => "metrics",
            Category::Predictions => "predictions",
            Category::Other => "other",
        }
    }

    pub fn recoverability(self) -> Recoverability {
        match self {
            Category::Frequency | Category::Emotives | Category::Metadata | Category::Affinity => {
                Recoverability::BackupOnly
            }
            Category::Symbols | Category::Metrics => Recoverability::Rebuildable,
            Category::Globals => Recoverability::Approximate,
            Category::Predictions => Recoverability::Ephemeral,
            Category::Other => Recoverability::Unknown,
        }
    }
}

impl Recoverability {
    pub fn describe(self) -> &'static str {
        match self {
            Recoverability::BackupOnly => "backup only (not in ClickHouse)",
            Recoverability::Rebuildable => "rebuildable from ClickHouse",
            Recoverability::Approximate => "rebuildable approximately from ClickHouse",
            Recoverability::Ephemeral => "ephemeral (KATO recreates it)",
            Recoverability::Unknown => "unknown: treat as precious",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A category name that is not in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown category {given:?}; known categories: {known}")]
pub struct UnknownCategory {
    pub given: String,
    pub known: String,
}

impl FromStr for Category {
    type Err = UnknownCategory;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| UnknownCategory {
                given: s.to_string(),
                known: Category::ALL.map(Category::name).join(", "),
            })
    }
}

/// Markers that follow `{kb_id}` and name the category. A marker ending in
/// `:` prefixes a variable part; one without must end the key.
const MARKERS: &[(&[u8], Category)] = &[
    (b":frequency:", Category::Frequency),
    (b":emotives:", Category::Emotives),
    (b":metadata:", Category::Metadata),
    (b":affinity:", Category::Affinity),
    (b":symbols:freq", Category::Symbols),
    (b":symbols:pmf", Category::Symbols),
    (b":symbol_to_patterns:", Category::Symbols),
    (b":symbol:freq:", Category::Symbols),
    (b":symbol:pmf:", Category::Symbols),
    (
        b":global:total_symbols_in_patterns_frequencies",
        Category::Globals,
    ),
    (b":global:total_pattern_frequencies", Category::Globals),
    (b":global:total_unique_patterns", Category::Globals),
    (b":entropy:", Category::Metrics),
    (b":normalized_entropy:", Category::Metrics),
    (b":global_normalized_entropy:", Category::Metrics),
    (b":tf_vector:", Category::Metrics),
    (b":prediction:", Category::Predictions),
];

/// Where a key belongs: its kb_id (bytes) and category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified<'a> {
    pub kb_id: &'a [u8],
    pub category: Category,
}

/// Classifies a key without knowledge of which kb_ids exist.
/// Returns `None` for keys that have no `kb_id:` prefix at all.
pub fn classify(key: &[u8]) -> Option<Classified<'_>> {
    classify_with(key, &[])
}

/// Classifies a key; `known_kbs` resolves keys without a category marker to
/// the longest known kb_id that prefixes them (so `a:b:x` goes to kb `a:b`
/// when `a:b` is known).
pub fn classify_with<'a>(key: &'a [u8], known_kbs: &[Vec<u8>]) -> Option<Classified<'a>> {
    if let Some(found) = classify_by_marker(key) {
        return Some(found);
    }
    let kb_len = longest_known_prefix(key, known_kbs)
        .or_else(|| key.iter().position(|&b| b == b':'))
        .filter(|&len| len > 0)?;
    Some(Classified {
        kb_id: &key[..kb_len],
        category: Category::Other,
    })
}

fn classify_by_marker(key: &[u8]) -> Option<Classified<'_>> {
    // Scan left to right: the kb_id ends at the first marker, so a symbol that
    // happens to contain a marker cannot shift the split.
    (1..key.len()).find_map(|at| {
        if key[at] != b':' {
            return None;
        }
        let rest = &key[at..];
        MARKERS
            .iter()
            .find(|(marker, _)| marker_matches(rest, marker))
            .map(|&(_, category)| Classified {
                kb_id: &key[..at],
                category,
            })
    })
}

fn marker_matches(rest: &[u8], marker: &[u8]) -> bool {
    if marker.ends_with(b":") {
        rest.starts_with(marker)
    } else {
        rest == marker
    }
}

fn longest_known_prefix(key: &[u8], known_kbs: &[Vec<u8>]) -> Option<usize> {
    known_kbs
        .iter()
        .filter(|kb| key.len() > kb.len() && key.starts_with(kb) && key[kb.len()] == b':')
        .map(Vec::len)
        .max()
}

/// Renders bytes for humans: UTF-8 as is, other bytes as `\xNN`, and a
/// backslash as `\\` so that [`parse_display_bytes`] can invert it exactly.
pub fn display_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The inverse of [`display_bytes`]: `\xNN` is a byte, `\\` a backslash,
/// anything else literal text. Used for keys given on the command line.
pub fn parse_display_bytes(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'\\', Some(b'\\')) => {
                out.push(b'\\');
                i += 2;
            }
            (b'\\', Some(b'x')) if i + 4 <= bytes.len() => match hex_byte(&bytes[i + 2..i + 4]) {
                Some(b) => {
                    out.push(b);
                    i += 4;
                }
                None => {
                    out.push(b'\\');
                    i += 1;
                }
            },
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    std::str::from_utf8(two)
        .ok()
        .and_then(|s| u8::from_str_radix(s, 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(key: &[u8]) -> Option<(Vec<u8>, Category)> {
        classify(key).map(|c| (c.kb_id.to_vec(), c.category))
    }

    #[test]
    fn every_catalogue_shape_is_classified() {
        let p = "3f786850e387550fdab836ed7e6dc881de23001b";
        let cases: Vec<(String, Category)> = vec![
            (format!("node0_kato:frequency:{p}"), Category::Frequency),
            (format!("node0_kato:emotives:{p}"), Category::Emotives),
            (format!("node0_kato:metadata:{p}"), Category::Metadata),
            ("node0_kato:affinity:sym".into(), Category::Affinity),
            ("node0_kato:symbols:freq".into(), Category::Symbols),
            ("node0_kato:symbols:pmf".into(), Category::Symbols),
            (
                "node0_kato:symbol_to_patterns:a b".into(),
                Category::Symbols,
            ),
            ("node0_kato:symbol:freq:x".into(), Category::Symbols),
            ("node0_kato:symbol:pmf:x".into(), Category::Symbols),
            (
                "node0_kato:global:total_symbols_in_patterns_frequencies".into(),
                Category::Globals,
            ),
            (
                "node0_kato:global:total_pattern_frequencies".into(),
                Category::Globals,
            ),
            (
                "node0_kato:global:total_unique_patterns".into(),
                Category::Globals,
            ),
            (format!("node0_kato:entropy:{p}"), Category::Metrics),
            (
                format!("node0_kato:normalized_entropy:{p}"),
                Category::Metrics,
            ),
            (
                format!("node0_kato:global_normalized_entropy:{p}"),
                Category::Metrics,
            ),
            (format!("node0_kato:tf_vector:{p}"), Category::Metrics),
            ("node0_kato:prediction:42".into(), Category::Predictions),
            ("node0_kato:something_else".into(), Category::Other),
        ];
        for (key, want) in cases {
            assert_eq!(
                cat(key.as_bytes()),
                Some((b"node0_kato".to_vec(), want)),
                "{key}"
            );
        }
    }

    #[test]
    fn kb_id_with_colon_and_glob_chars_splits_at_first_marker() {
        assert_eq!(
            cat(b"kb*[1]?:x:emotives:p"),
            Some((b"kb*[1]?:x".to_vec(), Category::Emotives))
        );
    }

    #[test]
    fn symbol_containing_a_marker_does_not_move_the_split() {
        assert_eq!(
            cat(b"kb:affinity:x:emotives:y"),
            Some((b"kb".to_vec(), Category::Affinity))
        );
    }

    #[test]
    fn exact_markers_must_end_the_key() {
        assert_eq!(
            cat(b"kb:symbols:freqx"),
            Some((b"kb".to_vec(), Category::Other))
        );
        assert_eq!(
            cat(b"kb:global:total_unique_patterns:z"),
            Some((b"kb".to_vec(), Category::Other))
        );
    }

    #[test]
    fn keys_without_prefix_are_not_kato() {
        assert_eq!(cat(b"plainkey"), None);
        assert_eq!(cat(b":leading"), None);
        assert_eq!(cat(b""), None);
    }

    #[test]
    fn known_kbs_resolve_unmarked_keys_to_the_longest_prefix() {
        let known = vec![b"a".to_vec(), b"a:b".to_vec()];
        let c = classify_with(b"a:b:weird", &known).unwrap();
        assert_eq!((c.kb_id, c.category), (&b"a:b"[..], Category::Other));
        let c = classify_with(b"a:c", &known).unwrap();
        assert_eq!(c.kb_id, b"a");
    }

    #[test]
    fn binary_keys_classify() {
        let key = b"kb\xff:frequency:\x00\x01";
        assert_eq!(cat(key), Some((b"kb\xff".to_vec(), Category::Frequency)));
    }

    #[test]
    fn category_names_round_trip_and_unknown_is_an_error() {
        for c in Category::ALL {
            assert_eq!(c.name().parse::<Category>().unwrap(), c);
        }
        let err = "emotive".parse::<Category>().unwrap_err();
        assert!(err.to_string().contains("emotives"), "{err}");
    }

    #[test]
    fn display_bytes_round_trips() {
        let raw = b"kb\xff:a\\b\x00\\x41";
        let shown = display_bytes(raw);
        assert_eq!(shown, "kb\\xff:a\\\\b\0\\\\x41");
        assert_eq!(parse_display_bytes(&shown), raw.to_vec());
    }
}
