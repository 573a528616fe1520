//! The key catalogue as data: one row per category with its name, how it
//! can be brought back when lost, and the key shapes that mark it.
//!
//! Every key of a db falls into one [`Group`]: a knowledge base (its keys
//! start with `{kb_id}:` and a category marker, or are KATO's per-kb keys
//! that name the kb_id as a suffix, `stm:events:{kb_id}`), KATO's global
//! keys (sessions, the global short-term memory, caches: `kato:` is KATO's
//! own namespace and never a kb_id), or foreign keys (another
//! application's). kbdump's own temporary keys ([`TEMP_KEY_PREFIX`]) are in
//! none: they are never exported.
//!
//! Adding a category means adding its variant to [`Category`], its shapes
//! (in [`shapes`]) and its row to [`CATALOGUE`] (in variant order; a
//! compile-time check holds the order), then the table in `README.md`
//! ("What KATO keeps where") and a case in `kato`'s classification test.
//! Everything else (classification, `--category` parsing, the archive's
//! category names, the backup-only categories a mirror copies) reads this
//! table.

use std::fmt;

use shapes::*;

/// A family of KATO keys, as named in the key catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Frequency,
    Emotives,
    Metadata,
    Affinity,
    Symbols,
    Globals,
    Metrics,
    Predictions,
    /// Short-term memory streams: `stm:events:{kb_id}` of a kb, and
    /// KATO's global `stm:global`.
    Stm,
    /// KATO's sessions and their index (global keys).
    Sessions,
    /// KATO's caches of metrics, patterns and probabilities (global keys).
    Caches,
    /// Keys of a kb_id without a marker, and `kato:` keys of no known shape.
    Other,
    /// Keys that are not KATO's.
    Foreign,
}

/// Where a key belongs: the three groups every key of a db falls into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// A knowledge base's keys (non-empty kb_id).
    Kb,
    /// KATO's keys outside any kb_id: sessions, global STM, caches.
    Kato,
    /// Keys of other applications.
    Foreign,
}

impl Group {
    /// The group of a (kb_id, category) pair, as records and archive blocks
    /// carry it: a non-empty kb_id is a knowledge base; outside one (empty
    /// kb_id) category `foreign` is the foreign group and every other
    /// category (including names this build does not know) KATO's.
    pub fn of(kb_id: &[u8], category: Category) -> Group {
        match (kb_id.is_empty(), category) {
            (false, _) => Group::Kb,
            (true, Category::Foreign) => Group::Foreign,
            (true, _) => Group::Kato,
        }
    }

    /// Its name in JSON reports.
    pub fn name(self) -> &'static str {
        match self {
            Group::Kb => "kb",
            Group::Kato => "kato",
            Group::Foreign => "foreign",
        }
    }

    /// What its keys are called in messages ("KATO global keys").
    pub fn describe(self) -> &'static str {
        match self {
            Group::Kb => "kb_id keys",
            Group::Kato => "KATO global keys",
            Group::Foreign => "foreign keys",
        }
    }
}

/// The prefix of the temporary keys kbdump's logical restore writes and
/// renames into place (`__kbdump_tmp:{tag}:…`). They are kbdump's own: never
/// a kb_id, never exported or copied; a leftover expires within an hour.
pub const TEMP_KEY_PREFIX: &[u8] = b"__kbdump_tmp:";

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
    /// KATO's working state (short-term memory, sessions): only a backup
    /// brings it back; not mirrored into ClickHouse.
    WorkingState,
    /// Not in the catalogue: treat as precious.
    Unknown,
    /// Not KATO's: another application's data, kept as it is.
    NotKato,
}

impl Recoverability {
    pub fn describe(self) -> &'static str {
        match self {
            Recoverability::BackupOnly => "backup only (not in ClickHouse)",
            Recoverability::Rebuildable => "rebuildable from ClickHouse",
            Recoverability::Approximate => "rebuildable approximately from ClickHouse",
            Recoverability::Ephemeral => "ephemeral (KATO recreates it)",
            Recoverability::WorkingState => "KATO's working state: backup only",
            Recoverability::Unknown => "unknown: treat as precious",
            Recoverability::NotKato => "not KATO's: kept as is",
        }
    }
}

/// One key shape: `{kb_id}{marker}`, followed by a variable part (a
/// pattern name, a symbol, an id) when the marker ends in `:`, else
/// nothing. The marker is what names the category of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    marker: &'static str,
}

impl Shape {
    /// `{kb}{marker}{variable part}`; `marker` ends in `:`.
    pub const fn prefix(marker: &'static str) -> Shape {
        let bytes = marker.as_bytes();
        assert!(bytes.len() > 1 && bytes[0] == b':' && bytes[bytes.len() - 1] == b':');
        Shape { marker }
    }

    /// Exactly `{kb}{marker}`; `marker` does not end in `:`.
    pub const fn exact(marker: &'static str) -> Shape {
        let bytes = marker.as_bytes();
        assert!(bytes.len() > 1 && bytes[0] == b':' && bytes[bytes.len() - 1] != b':');
        Shape { marker }
    }

    /// The text between the kb_id and the variable part (`:frequency:`).
    pub const fn marker(self) -> &'static str {
        self.marker
    }

    /// Whether a variable part follows the marker.
    pub fn is_prefix(self) -> bool {
        self.marker.ends_with(':')
    }

    /// Whether `rest`, the part of a key from a `:` on, has this shape.
    pub fn matches(self, rest: &[u8]) -> bool {
        if self.is_prefix() {
            rest.starts_with(self.marker.as_bytes())
        } else {
            rest == self.marker.as_bytes()
        }
    }
}

/// A KATO key shape that does not start with `{kb_id}:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outer {
    /// `{prefix}{kb_id}`: a key of the kb_id it ends with.
    KbSuffix(&'static str),
    /// `{prefix}{anything}`: a global key.
    Prefix(&'static str),
    /// Exactly this key: a global key.
    Exact(&'static str),
}

impl Outer {
    /// The fixed text of the shape.
    pub const fn text(self) -> &'static str {
        match self {
            Outer::KbSuffix(t) | Outer::Prefix(t) | Outer::Exact(t) => t,
        }
    }

    /// How many bytes of `key` this shape matches (its fixed text), if it
    /// matches: the longest match wins, so `kato:session:` beats `kato:`.
    pub fn matched_len(self, key: &[u8]) -> Option<usize> {
        let text = self.text().as_bytes();
        let hit = match self {
            Outer::Exact(_) => key == text,
            Outer::KbSuffix(_) | Outer::Prefix(_) => key.starts_with(text),
        };
        hit.then_some(text.len())
    }
}

/// The key shapes of KATO (README.md, "What KATO keeps where"), by name, for the
/// code that builds keys (see `kato::keys`).
pub mod shapes {
    use super::{Outer, Shape};

    pub const FREQUENCY: Shape = Shape::prefix(":frequency:");
    pub const EMOTIVES: Shape = Shape::prefix(":emotives:");
    pub const METADATA: Shape = Shape::prefix(":metadata:");
    pub const AFFINITY: Shape = Shape::prefix(":affinity:");
    pub const SYMBOLS_FREQ: Shape = Shape::exact(":symbols:freq");
    pub const SYMBOLS_PMF: Shape = Shape::exact(":symbols:pmf");
    pub const SYMBOL_TO_PATTERNS: Shape = Shape::prefix(":symbol_to_patterns:");
    /// Older KATO: one string per symbol.
    pub const SYMBOL_FREQ: Shape = Shape::prefix(":symbol:freq:");
    /// Older KATO: one string per symbol.
    pub const SYMBOL_PMF: Shape = Shape::prefix(":symbol:pmf:");
    pub const TOTAL_SYMBOLS_IN_PATTERNS_FREQUENCIES: Shape =
        Shape::exact(":global:total_symbols_in_patterns_frequencies");
    pub const TOTAL_PATTERN_FREQUENCIES: Shape = Shape::exact(":global:total_pattern_frequencies");
    pub const TOTAL_UNIQUE_PATTERNS: Shape = Shape::exact(":global:total_unique_patterns");
    pub const ENTROPY: Shape = Shape::prefix(":entropy:");
    pub const NORMALIZED_ENTROPY: Shape = Shape::prefix(":normalized_entropy:");
    pub const GLOBAL_NORMALIZED_ENTROPY: Shape = Shape::prefix(":global_normalized_entropy:");
    pub const TF_VECTOR: Shape = Shape::prefix(":tf_vector:");
    pub const PREDICTION: Shape = Shape::prefix(":prediction:");

    /// A kb's short-term memory stream (consumer group `stm_group_{kb_id}`).
    pub const STM_EVENTS: Outer = Outer::KbSuffix("stm:events:");
    pub const STM_GLOBAL: Outer = Outer::Exact("stm:global");
    /// `kato:session:session-{hex}-{ms}`, `kato:session:_active_index`,
    /// `kato:session:node:{node_id}:active`.
    pub const SESSION: Outer = Outer::Prefix("kato:session:");
    /// `kato:metrics:{name}:{md5}`, `kato:metrics:_index`.
    pub const METRICS_CACHE: Outer = Outer::Prefix("kato:metrics:");
    pub const PATTERNS_TOP: Outer = Outer::Prefix("patterns:top:");
    pub const PATTERNS_NAME: Outer = Outer::Prefix("patterns:name:");
    pub const SYMBOL_PROBABILITIES: Outer = Outer::Exact("symbols:probabilities");
    pub const SESSION_SYMBOL_PROBABILITIES: Outer = Outer::Prefix("symbols:probabilities:");
    /// Anything else in KATO's own namespace.
    pub const KATO_NAMESPACE: Outer = Outer::Prefix("kato:");
}

/// One category of the catalogue.
#[derive(Debug)]
pub struct Entry {
    pub category: Category,
    /// The name used on the command line, in archives and in reports.
    pub name: &'static str,
    pub recoverability: Recoverability,
    /// The shapes whose marker names this category. [`Category::Other`]
    /// has none: it is every key under a kb_id without a marker.
    pub shapes: &'static [Shape],
    /// KATO's shapes of this category that do not start with `{kb_id}:`.
    pub outer: &'static [Outer],
}

/// The catalogue, one row per category, in [`Category`] order.
pub const CATALOGUE: &[Entry] = &[
    Entry {
        category: Category::Frequency,
        name: "frequency",
        recoverability: Recoverability::BackupOnly,
        shapes: &[FREQUENCY],
        outer: &[],
    },
    Entry {
        category: Category::Emotives,
        name: "emotives",
        recoverability: Recoverability::BackupOnly,
        shapes: &[EMOTIVES],
        outer: &[],
    },
    Entry {
        category: Category::Metadata,
        name: "metadata",
        recoverability: Recoverability::BackupOnly,
        shapes: &[METADATA],
        outer: &[],
    },
    Entry {
        category: Category::Affinity,
        name: "affinity",
        recoverability: Recoverability::BackupOnly,
        shapes: &[AFFINITY],
        outer: &[],
    },
    Entry {
        category: Category::Symbols,
        name: "symbols",
        recoverability: Recoverability::Rebuildable,
        shapes: &[
            SYMBOLS_FREQ,
            SYMBOLS_PMF,
            SYMBOL_TO_PATTERNS,
            SYMBOL_FREQ,
            SYMBOL_PMF,
        ],
        outer: &[],
    },
    Entry {
        category: Category::Globals,
        name: "globals",
        recoverability: Recoverability::Approximate,
        shapes: &[
            TOTAL_SYMBOLS_IN_PATTERNS_FREQUENCIES,
            TOTAL_PATTERN_FREQUENCIES,
            TOTAL_UNIQUE_PATTERNS,
        ],
        outer: &[],
    },
    Entry {
        category: Category::Metrics,
        name: "metrics",
        recoverability: Recoverability::Rebuildable,
        shapes: &[
            ENTROPY,
            NORMALIZED_ENTROPY,
            GLOBAL_NORMALIZED_ENTROPY,
            TF_VECTOR,
        ],
        outer: &[],
    },
    Entry {
        category: Category::Predictions,
        name: "predictions",
        recoverability: Recoverability::Ephemeral,
        shapes: &[PREDICTION],
        outer: &[],
    },
    Entry {
        category: Category::Stm,
        name: "stm",
        recoverability: Recoverability::WorkingState,
        shapes: &[],
        outer: &[STM_EVENTS, STM_GLOBAL],
    },
    Entry {
        category: Category::Sessions,
        name: "sessions",
        recoverability: Recoverability::WorkingState,
        shapes: &[],
        outer: &[SESSION],
    },
    Entry {
        category: Category::Caches,
        name: "caches",
        recoverability: Recoverability::Ephemeral,
        shapes: &[],
        outer: &[
            METRICS_CACHE,
            PATTERNS_TOP,
            PATTERNS_NAME,
            SYMBOL_PROBABILITIES,
            SESSION_SYMBOL_PROBABILITIES,
        ],
    },
    Entry {
        category: Category::Other,
        name: "other",
        recoverability: Recoverability::Unknown,
        shapes: &[],
        outer: &[KATO_NAMESPACE],
    },
    Entry {
        category: Category::Foreign,
        name: "foreign",
        recoverability: Recoverability::NotKato,
        shapes: &[],
        outer: &[],
    },
];

// Row `i` of the catalogue is the category with discriminant `i`, so a
// category finds its row without a search.
const _: () = {
    let mut i = 0;
    while i < CATALOGUE.len() {
        assert!(CATALOGUE[i].category as usize == i);
        i += 1;
    }
};

/// The categories that only a backup brings back: what a mirror copies.
pub const BACKUP_ONLY: [Category; count(Recoverability::BackupOnly)] =
    having(Recoverability::BackupOnly);

const fn count(recoverability: Recoverability) -> usize {
    let (mut n, mut i) = (0, 0);
    while i < CATALOGUE.len() {
        if CATALOGUE[i].recoverability as u8 == recoverability as u8 {
            n += 1;
        }
        i += 1;
    }
    n
}

const fn having<const N: usize>(recoverability: Recoverability) -> [Category; N] {
    let mut out = [Category::Other; N];
    let (mut n, mut i) = (0, 0);
    while i < CATALOGUE.len() {
        if CATALOGUE[i].recoverability as u8 == recoverability as u8 {
            out[n] = CATALOGUE[i].category;
            n += 1;
        }
        i += 1;
    }
    out
}

impl Category {
    /// Every category, in catalogue order.
    pub const ALL: [Category; CATALOGUE.len()] = {
        let mut out = [Category::Other; CATALOGUE.len()];
        let mut i = 0;
        while i < CATALOGUE.len() {
            out[i] = CATALOGUE[i].category;
            i += 1;
        }
        out
    };

    /// This category's row of the catalogue.
    pub fn entry(self) -> &'static Entry {
        &CATALOGUE[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.entry().name
    }

    pub fn recoverability(self) -> Recoverability {
        self.entry().recoverability
    }

    /// The key shapes of this category (none for [`Category::Other`]).
    pub fn shapes(self) -> &'static [Shape] {
        self.entry().shapes
    }

    /// KATO's shapes of this category outside the `{kb_id}:` prefix.
    pub fn outer(self) -> &'static [Outer] {
        self.entry().outer
    }

    /// Whether a kb_id's keys can be of this category.
    pub fn of_kbs(self) -> bool {
        !self.shapes().is_empty()
            || self.outer().iter().any(|o| matches!(o, Outer::KbSuffix(_)))
            || self == Category::Other
    }

    /// Whether KATO's global keys can be of this category.
    pub fn of_kato(self) -> bool {
        self.outer()
            .iter()
            .any(|o| matches!(o, Outer::Prefix(_) | Outer::Exact(_)))
    }

    /// The categories of a kb_id's keys, in catalogue order.
    pub fn of_kb() -> impl Iterator<Item = Category> {
        Category::ALL.into_iter().filter(|c| c.of_kbs())
    }

    /// The categories of KATO's global keys, in catalogue order.
    pub fn of_global() -> impl Iterator<Item = Category> {
        Category::ALL.into_iter().filter(|c| c.of_kato())
    }

    /// The category named `name`, if the catalogue has it.
    pub fn from_name(name: &str) -> Option<Category> {
        CATALOGUE
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.category)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_the_variants_and_names_are_unique() {
        for (i, c) in Category::ALL.into_iter().enumerate() {
            assert_eq!(c as usize, i);
            assert_eq!(c.entry().category, c);
            assert_eq!(Category::from_name(c.name()), Some(c));
        }
        assert_eq!(Category::from_name("emotive"), None);
    }

    #[test]
    fn backup_only_categories_are_the_unrecoverable_ones() {
        assert_eq!(
            BACKUP_ONLY,
            [
                Category::Frequency,
                Category::Emotives,
                Category::Metadata,
                Category::Affinity
            ]
        );
    }

    #[test]
    fn every_category_belongs_to_a_group() {
        let kb: Vec<_> = Category::of_kb().map(Category::name).collect();
        assert_eq!(
            kb,
            [
                "frequency",
                "emotives",
                "metadata",
                "affinity",
                "symbols",
                "globals",
                "metrics",
                "predictions",
                "stm",
                "other"
            ]
        );
        let global: Vec<_> = Category::of_global().map(Category::name).collect();
        assert_eq!(global, ["stm", "sessions", "caches", "other"]);
        for c in Category::ALL {
            assert!(c.of_kbs() || c.of_kato() || c == Category::Foreign, "{c}");
        }
        assert_eq!(Group::of(b"kb", Category::Foreign), Group::Kb);
        assert_eq!(Group::of(b"", Category::Foreign), Group::Foreign);
        assert_eq!(Group::of(b"", Category::Sessions), Group::Kato);
        assert_eq!(Group::of(b"", Category::Other), Group::Kato);
    }

    #[test]
    fn outer_shapes_are_told_apart_by_the_longest_match() {
        let outer: Vec<Outer> = CATALOGUE.iter().flat_map(|e| e.outer).copied().collect();
        for a in &outer {
            let probe = [a.text().as_bytes(), b"x"].concat();
            let probe = match a {
                Outer::Exact(t) => t.as_bytes(),
                _ => &probe[..],
            };
            let best = outer
                .iter()
                .filter_map(|b| b.matched_len(probe).map(|n| (n, b)))
                .max_by_key(|(n, _)| *n);
            assert_eq!(best.map(|(_, b)| b), Some(a), "{}", a.text());
            let ties = outer
                .iter()
                .filter(|b| b.matched_len(probe) == best.map(|(n, _)| n))
                .count();
            assert_eq!(ties, 1, "{}", a.text());
        }
    }

    #[test]
    fn no_two_markers_match_at_the_same_place() {
        // Classification takes the first marker found scanning left to
        // right; the order of the rows must not matter at one position.
        let shapes: Vec<Shape> = CATALOGUE.iter().flat_map(|e| e.shapes).copied().collect();
        for a in &shapes {
            let probe = [a.marker().as_bytes(), b"x"].concat();
            let probe = if a.is_prefix() {
                &probe[..]
            } else {
                a.marker().as_bytes()
            };
            let hits = shapes.iter().filter(|b| b.matches(probe)).count();
            assert_eq!(hits, 1, "{}", a.marker());
        }
    }
}
