//! KATO's key catalogue: which knowledge base and category a Redis key
//! belongs to.
//!
//! Pure: works on key bytes only. Keys are bytes, never assumed to be text,
//! because KATO symbols may hold any byte.
//!
//! KATO's keys outside the `{kb_id}:` prefix are recognised first, by their
//! fixed text ([`outside`]): `stm:events:{kb_id}` belongs to that kb_id
//! (category [`Category::Stm`]); sessions, the global STM and caches, and
//! anything else under `kato:`, are KATO's global keys, never a kb_id; keys
//! under [`TEMP_KEY_PREFIX`] are kbdump's own.
//!
//! Any other key is `{kb_id}:{rest}`. Since a kb_id may itself contain `:`,
//! the kb_id is taken to end just before the *first* category marker found
//! in the key (`:frequency:`, `:emotives:`, …). A key with no marker belongs
//! to the longest known kb_id that prefixes it (when the caller knows some),
//! else to the text before its first `:`, with category [`Category::Other`];
//! whether that text really is a kb_id, or the key is foreign, is decided
//! over a whole pass ([`attribute`]).
//!
//! - [`catalogue`](CATALOGUE): the categories, one row each (name,
//!   recoverability, key shapes);
//! - [`keys`]: keys and SCAN patterns built from those shapes;
//! - [`attribute`]: which kb_id owns each key of a whole SCAN pass (the
//!   rule for kb_ids that prefix one another), and the census built on it.

use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub mod attribute;
mod catalogue;
pub mod derived;
pub mod keys;
pub mod pytext;

pub use catalogue::*;

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
        Category::from_name(s).ok_or_else(|| UnknownCategory {
            given: s.to_string(),
            known: Category::ALL.map(Category::name).join(", "),
        })
    }
}

/// A category as stored (in an archive): a name. A name this build does
/// not know, written by a newer kbdump, reads as [`Category::Other`] and
/// keeps its name, so nothing is refused and nothing is renamed silently.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CategoryName {
    Known(Category),
    Unknown(String),
}

impl CategoryName {
    /// The category named `name`; never fails.
    pub fn parse(name: &str) -> CategoryName {
        match Category::from_name(name) {
            Some(c) => CategoryName::Known(c),
            None => CategoryName::Unknown(name.to_string()),
        }
    }

    /// The category to treat the keys as: [`Category::Other`] when unknown.
    pub fn category(&self) -> Category {
        match self {
            CategoryName::Known(c) => *c,
            CategoryName::Unknown(_) => Category::Other,
        }
    }

    /// The name as stored.
    pub fn name(&self) -> &str {
        match self {
            CategoryName::Known(c) => c.name(),
            CategoryName::Unknown(name) => name,
        }
    }

    /// The stored name, when it is not in the catalogue.
    pub fn unknown(&self) -> Option<&str> {
        match self {
            CategoryName::Known(_) => None,
            CategoryName::Unknown(name) => Some(name),
        }
    }

    /// The stored name, when it is not in the catalogue.
    pub fn into_unknown(self) -> Option<String> {
        match self {
            CategoryName::Known(_) => None,
            CategoryName::Unknown(name) => Some(name),
        }
    }
}

impl From<Category> for CategoryName {
    fn from(c: Category) -> Self {
        CategoryName::Known(c)
    }
}

/// A category is stored as its name (a MessagePack or JSON string), which
/// is what serde's unit variants were before: the bytes are the same.
impl Serialize for Category {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Serialize for CategoryName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Reads any name: unknown names are [`Category::Other`].
impl<'de> Deserialize<'de> for Category {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        CategoryName::deserialize(d).map(|n| n.category())
    }
}

impl<'de> Deserialize<'de> for CategoryName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = CategoryName;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a category name")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CategoryName, E> {
                Ok(CategoryName::parse(v))
            }

            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<CategoryName, E> {
                Ok(CategoryName::parse(&String::from_utf8_lossy(v)))
            }
        }
        d.deserialize_str(Name)
    }
}

/// Where a key belongs: its kb_id (bytes) and category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified<'a> {
    pub kb_id: &'a [u8],
    pub category: Category,
}

/// Where a key that KATO or kbdump names by its fixed text belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outside<'a> {
    /// A kb_id's key that does not start with it (`stm:events:{kb_id}`).
    Kb(Classified<'a>),
    /// One of KATO's global keys, of this category.
    Kato(Category),
    /// kbdump's own temporary key ([`TEMP_KEY_PREFIX`]).
    Temporary,
}

/// Recognises KATO's keys outside the `{kb_id}:` prefix and kbdump's
/// temporary keys; `None` for every other key. The longest matching shape
/// wins (`kato:session:` before `kato:`).
pub fn outside(key: &[u8]) -> Option<Outside<'_>> {
    if key.starts_with(TEMP_KEY_PREFIX) {
        return Some(Outside::Temporary);
    }
    let (len, shape, category) = CATALOGUE
        .iter()
        .flat_map(|e| e.outer.iter().map(move |o| (o, e.category)))
        .filter_map(|(o, c)| o.matched_len(key).map(|n| (n, *o, c)))
        .max_by_key(|(n, _, _)| *n)?;
    Some(match shape {
        Outer::KbSuffix(_) if key.len() > len => Outside::Kb(Classified {
            kb_id: &key[len..],
            category,
        }),
        _ => Outside::Kato(category),
    })
}

/// Classifies a key without knowledge of which kb_ids exist.
/// Returns `None` for keys that belong to no kb_id by their shape: no
/// `kb_id:` prefix at all, KATO's global keys, kbdump's temporary keys.
pub fn classify(key: &[u8]) -> Option<Classified<'_>> {
    classify_with(key, &[])
}

/// Classifies a key; `known_kbs` resolves keys without a category marker to
/// the longest known kb_id that prefixes them (so `a:b:x` goes to kb `a:b`
/// when `a:b` is known).
pub fn classify_with<'a>(key: &'a [u8], known_kbs: &[Vec<u8>]) -> Option<Classified<'a>> {
    match outside(key) {
        Some(Outside::Kb(found)) => return Some(found),
        Some(Outside::Kato(_) | Outside::Temporary) => return None,
        None => {}
    }
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
        CATALOGUE
            .iter()
            .find(|entry| entry.shapes.iter().any(|shape| shape.matches(rest)))
            .map(|entry| Classified {
                kb_id: &key[..at],
                category: entry.category,
            })
    })
}

fn longest_known_prefix(key: &[u8], known_kbs: &[Vec<u8>]) -> Option<usize> {
    known_kbs
        .iter()
        .filter(|kb| key.len() > kb.len() && key.starts_with(kb) && key[kb.len()] == b':')
        .map(Vec::len)
        .max()
}

/// The kb_id column of a report: the kb_id, or `(kato)` / `(foreign)` for
/// keys outside any kb_id (whose kb_id is empty).
pub fn place_label(kb_id: &[u8], category: Category) -> String {
    match Group::of(kb_id, category) {
        Group::Kb => display_bytes(kb_id),
        Group::Kato => "(kato)".to_string(),
        Group::Foreign => "(foreign)".to_string(),
    }
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
    fn kato_keys_outside_a_kb_are_never_a_kb_id() {
        let stm = classify(b"stm:events:node0_kato").unwrap();
        assert_eq!(
            (stm.kb_id, stm.category),
            (&b"node0_kato"[..], Category::Stm)
        );
        let colon = classify(b"stm:events:kb:1:frequency:x").unwrap();
        assert_eq!(colon.kb_id, b"kb:1:frequency:x");
        let global = [
            (&b"stm:global"[..], Category::Stm),
            (b"stm:events:", Category::Stm),
            (
                b"kato:session:session-3f2a-1700000000000",
                Category::Sessions,
            ),
            (b"kato:session:_active_index", Category::Sessions),
            (
                b"kato:session:node:n:1:emotives:x:active",
                Category::Sessions,
            ),
            (
                b"kato:metrics:normalized_entropy:0cc175b9",
                Category::Caches,
            ),
            (b"kato:metrics:frequency:0cc175b9", Category::Caches),
            (b"kato:metrics:_index", Category::Caches),
            (b"patterns:top:session-1:10", Category::Caches),
            (b"patterns:name:3f78", Category::Caches),
            (b"patterns:name:3f78:session-1", Category::Caches),
            (b"symbols:probabilities", Category::Caches),
            (b"symbols:probabilities:session-1", Category::Caches),
            (b"kato:something:new", Category::Other),
        ];
        for (key, category) in global {
            assert_eq!(outside(key), Some(Outside::Kato(category)), "{key:?}");
            assert_eq!(classify(key), None, "{key:?}");
        }
        for key in [&b"__kbdump_tmp:{kb:emotives:p}:12:0"[..], b"__kbdump_tmp:x"] {
            assert_eq!(outside(key), Some(Outside::Temporary));
            assert_eq!(classify(key), None);
        }
        // Shapes that only look alike stay with kb_ids or with nobody.
        assert_eq!(outside(b"stm:globalx"), None);
        assert_eq!(outside(b"symbols:probabilitiesx"), None);
        assert_eq!(outside(b"patterns:other"), None);
        assert_eq!(outside(b"katox:frequency:p"), None);
        assert_eq!(
            cat(b"stm:frequency:p"),
            Some((b"stm".to_vec(), Category::Frequency))
        );
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
    fn categories_are_stored_as_their_names_and_unknown_names_read_as_other() {
        for c in Category::ALL {
            let packed = rmp_serde::to_vec_named(&c).unwrap();
            assert_eq!(packed, rmp_serde::to_vec(c.name()).unwrap());
            assert_eq!(rmp_serde::from_slice::<Category>(&packed).unwrap(), c);
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{c}\""));
        }
        let future = rmp_serde::to_vec("forecasting").unwrap();
        assert_eq!(
            rmp_serde::from_slice::<Category>(&future).unwrap(),
            Category::Other
        );
        let name: CategoryName = rmp_serde::from_slice(&future).unwrap();
        assert_eq!(
            (name.category(), name.name(), name.unknown()),
            (Category::Other, "forecasting", Some("forecasting"))
        );
        assert_eq!(rmp_serde::to_vec(&name).unwrap(), future);
        let known: CategoryName = serde_json::from_str("\"emotives\"").unwrap();
        assert_eq!(known, CategoryName::Known(Category::Emotives));
        assert_eq!(known.unknown(), None);
        assert!(serde_json::from_str::<Category>("3").is_err());
    }

    #[test]
    fn display_bytes_round_trips() {
        let raw = b"kb\xff:a\\b\x00\\x41";
        let shown = display_bytes(raw);
        assert_eq!(shown, "kb\\xff:a\\\\b\0\\\\x41");
        assert_eq!(parse_display_bytes(&shown), raw.to_vec());
    }
}
