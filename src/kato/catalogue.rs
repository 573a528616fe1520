//! The key catalogue as data: one row per category with its name, how it
//! can be brought back when lost, and the key shapes that mark it.
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

/// The key shapes of KATO (README.md, "What KATO keeps where"), by name, for the
/// code that builds keys (see `kato::keys`).
pub mod shapes {
    use super::Shape;

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
}

/// The catalogue, one row per category, in [`Category`] order.
pub const CATALOGUE: &[Entry] = &[
    Entry {
        category: Category::Frequency,
        name: "frequency",
        recoverability: Recoverability::BackupOnly,
        shapes: &[FREQUENCY],
    },
    Entry {
        category: Category::Emotives,
        name: "emotives",
        recoverability: Recoverability::BackupOnly,
        shapes: &[EMOTIVES],
    },
    Entry {
        category: Category::Metadata,
        name: "metadata",
        recoverability: Recoverability::BackupOnly,
        shapes: &[METADATA],
    },
    Entry {
        category: Category::Affinity,
        name: "affinity",
        recoverability: Recoverability::BackupOnly,
        shapes: &[AFFINITY],
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
    },
    Entry {
        category: Category::Predictions,
        name: "predictions",
        recoverability: Recoverability::Ephemeral,
        shapes: &[PREDICTION],
    },
    Entry {
        category: Category::Other,
        name: "other",
        recoverability: Recoverability::Unknown,
        shapes: &[],
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
