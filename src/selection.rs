//! Which keys a command works on: groups (kb_ids by id or glob, KATO's
//! global keys, foreign keys), categories and key globs, applied the same
//! way online (SCAN) and offline (archives); the one check that a `--kb`
//! names something ([`Selection::check_kbs`]); and what a selection leaves
//! out of a keyspace ([`LeftOut`]).
//!
//! With no group named (`--kb`, `--global`, `--foreign`), every group is
//! selected: a backup or a migration never drops a key silently. Naming
//! groups selects those only; categories and key globs narrow any of them.

use serde::Serialize;

use crate::kato::attribute::{KeyspaceCensus, Wanted};
use crate::kato::{display_bytes, Category, Group};
use crate::pattern::Glob;

/// A parsed `--kb`/`--global`/`--foreign`/`--category`/`--match`
/// selection. No group named selects every group; empty category and key
/// glob lists select all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub kbs: Vec<Glob>,
    /// KATO's global keys (sessions, global STM, caches).
    pub kato: bool,
    /// Keys that are not KATO's.
    pub foreign: bool,
    pub categories: Vec<Category>,
    pub matches: Vec<Glob>,
    /// A `--kb` that matches no kb_id is accepted (the selection is then
    /// empty for it) instead of being an error.
    pub allow_empty: bool,
}

impl Selection {
    /// Whether the selection names any group; if not, it selects them all.
    pub fn names_groups(&self) -> bool {
        !self.kbs.is_empty() || self.kato || self.foreign
    }

    /// Whether the selection takes every key of the db (no group named, no
    /// category, no key glob): nothing can be left out but kbdump's own
    /// temporary keys.
    pub fn is_everything(&self) -> bool {
        !self.names_groups() && self.categories.is_empty() && self.matches.is_empty()
    }

    pub fn group_selected(&self, group: Group) -> bool {
        match group {
            Group::Kb => !self.names_groups() || !self.kbs.is_empty(),
            Group::Kato => !self.names_groups() || self.kato,
            Group::Foreign => !self.names_groups() || self.foreign,
        }
    }

    /// Whether the kb_id is selected (an empty kb_id, outside any knowledge
    /// base, never is: see [`Self::block_selected`]).
    pub fn kb_selected(&self, kb_id: &[u8]) -> bool {
        !kb_id.is_empty() && (!self.names_groups() || self.kbs.iter().any(|g| g.is_match(kb_id)))
    }

    pub fn category_selected(&self, category: Category) -> bool {
        self.categories.is_empty() || self.categories.contains(&category)
    }

    /// Whether a block of this kb_id (empty outside kb_ids) and category
    /// can hold selected keys.
    pub fn block_selected(&self, kb_id: &[u8], category: Category) -> bool {
        let group = match Group::of(kb_id, category) {
            Group::Kb => self.kb_selected(kb_id),
            other => self.group_selected(other),
        };
        group && self.category_selected(category)
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

    /// The selected kb_ids among `existing`.
    pub fn selected_kbs(&self, existing: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut kbs: Vec<Vec<u8>> = existing
            .iter()
            .filter(|kb| self.kb_selected(kb))
            .cloned()
            .collect();
        kbs.sort();
        kbs.dedup();
        kbs
    }

    /// What an attributor should yield for this selection over `kb_ids`
    /// (the selected kb_ids, see [`Self::selected_kbs`]).
    pub fn wanted(&self, kb_ids: &[Vec<u8>]) -> Wanted {
        Wanted {
            kbs: Some(kb_ids.iter().cloned().collect()),
            kato: self.group_selected(Group::Kato),
            foreign: self.group_selected(Group::Foreign),
        }
    }

    /// The one rule for `--kb`, whatever holds the kb_ids (a server, an
    /// archive, ClickHouse): every `--kb` must match some kb_id of
    /// `existing`, else the selection is an error naming `place`, the
    /// kb_ids it holds and the nearest name. A nightly backup with a typo
    /// must fail, not write a month of empty, verified archives.
    /// `allow_empty` accepts it.
    pub fn check_kbs(&self, existing: &[Vec<u8>], place: &str) -> Result<(), UnmatchedKbs> {
        if self.allow_empty {
            return Ok(());
        }
        let unmatched: Vec<&Glob> = self
            .kbs
            .iter()
            .filter(|g| !existing.iter().any(|kb| !kb.is_empty() && g.is_match(kb)))
            .collect();
        if unmatched.is_empty() {
            return Ok(());
        }
        let mut names: Vec<String> = existing
            .iter()
            .filter(|kb| !kb.is_empty())
            .map(|kb| display_bytes(kb))
            .collect();
        names.sort();
        names.dedup();
        let unmatched: Vec<String> = unmatched
            .iter()
            .map(|g| display_bytes(g.as_bytes()))
            .collect();
        let suggestions = unmatched
            .iter()
            .filter_map(|u| nearest(u, &names).map(|n| (u.clone(), n.to_string())))
            .collect();
        Err(UnmatchedKbs {
            unmatched,
            place: place.to_string(),
            existing: names,
            suggestions,
        })
    }

    /// What this selection leaves out of a keyspace, by group. Keys that a
    /// `--match` glob skips inside selected cells are not counted (the
    /// census has no keys, only counts).
    pub fn left_out(&self, census: &KeyspaceCensus) -> LeftOut {
        let mut out = LeftOut {
            temporary: census.temporary,
            ..LeftOut::default()
        };
        for (kb, categories) in &census.kbs {
            let skipped: u64 = categories
                .iter()
                .filter(|(c, _)| !self.block_selected(kb, **c))
                .map(|(_, n)| n)
                .sum();
            out.kb_keys += skipped;
            out.kb_ids += u64::from(!self.kb_selected(kb));
        }
        for (category, n) in &census.kato {
            if !self.block_selected(b"", *category) {
                out.kato += n;
            }
        }
        if !self.block_selected(b"", Category::Foreign) {
            out.foreign = census.foreign;
        }
        out
    }
}

/// A `--kb` that matches no kb_id (see [`Selection::check_kbs`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct UnmatchedKbs {
    /// The `--kb` values that match nothing, as given (display form).
    pub unmatched: Vec<String>,
    /// Where the kb_ids were looked for (`Redis at host:port`, `archive FILE`).
    pub place: String,
    /// The kb_ids that do exist there, sorted.
    pub existing: Vec<String>,
    /// `(unmatched, nearest kb_id)` where one is close.
    pub suggestions: Vec<(String, String)>,
}

/// kb_ids listed in full in the message; more are counted.
const LISTED_KBS: usize = 20;

impl UnmatchedKbs {
    fn message(&self) -> String {
        let given: Vec<String> = self.unmatched.iter().map(|u| format!("--kb {u}")).collect();
        let mut out = format!(
            "{} {} no kb_id in {}",
            given.join(", "),
            if given.len() == 1 { "matches" } else { "match" },
            self.place
        );
        for (given, near) in &self.suggestions {
            out += &format!("; did you mean {near} (for {given})?");
        }
        if self.existing.is_empty() {
            out += "; it holds no kb_id at all";
        } else {
            let shown: Vec<&str> = self
                .existing
                .iter()
                .take(LISTED_KBS)
                .map(String::as_str)
                .collect();
            out += &format!("; its kb_ids: {}", shown.join(", "));
            if self.existing.len() > LISTED_KBS {
                out += &format!(" and {} more", self.existing.len() - LISTED_KBS);
            }
        }
        out + "; fix the name, or add --allow-empty if an empty selection is meant"
    }
}

/// The name of `names` closest to `given` by edit distance, when it is
/// close enough to be a likely typo.
fn nearest<'a>(given: &str, names: &'a [String]) -> Option<&'a str> {
    let limit = (given.chars().count() / 3).max(2);
    names
        .iter()
        .map(|n| (edit_distance(given, n), n))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n.as_str())
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// What a selection leaves out of a keyspace, by group (see
/// [`Selection::left_out`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LeftOut {
    /// kb_ids not selected at all.
    pub kb_ids: u64,
    /// Keys of kb_ids left out: of the kb_ids not selected, and of the
    /// categories not selected.
    pub kb_keys: u64,
    /// KATO's global keys left out.
    pub kato: u64,
    /// Foreign keys left out.
    pub foreign: u64,
    /// kbdump's own temporary keys: never exported or copied.
    pub temporary: u64,
}

impl LeftOut {
    /// Whether every key but kbdump's temporary ones is selected.
    pub fn is_nothing(&self) -> bool {
        self.kb_keys == 0 && self.kato == 0 && self.foreign == 0
    }

    /// One line for people: what was left out and how to take it, or
    /// `None` when nothing was.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        let mut flags = Vec::new();
        if self.kb_keys > 0 {
            parts.push(match self.kb_ids {
                0 => format!("{} keys of other categories", self.kb_keys),
                n => format!("{} keys of {n} other kb_ids or categories", self.kb_keys),
            });
        }
        if self.kato > 0 {
            parts.push(format!("{} KATO global keys", self.kato));
            flags.push("--global");
        }
        if self.foreign > 0 {
            parts.push(format!("{} foreign keys", self.foreign));
            flags.push("--foreign");
        }
        let mut line = (!parts.is_empty()).then(|| format!("left out: {}", parts.join(", ")))?;
        if !flags.is_empty() {
            line += &format!("; add {} to take them", flags.join("/"));
        }
        Some(line)
    }

    /// kbdump's temporary keys, when there are any: never taken.
    pub fn describe_temporary(&self) -> Option<String> {
        (self.temporary > 0).then(|| {
            format!(
                "{} kbdump temporary keys ({}*, left by an interrupted restore; they expire within an hour) are never exported",
                self.temporary,
                String::from_utf8_lossy(crate::kato::TEMP_KEY_PREFIX)
            )
        })
    }
}

/// The SCAN MATCH pattern for every key of one kb_id (built by the key
/// catalogue).
pub use crate::kato::keys::kb_scan_pattern;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kato::attribute::Census;

    fn kbs(names: &[&str]) -> Vec<Vec<u8>> {
        names.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    fn naming(kbs: &[&str]) -> Selection {
        Selection {
            kbs: kbs.iter().map(|k| Glob::new(*k)).collect(),
            ..Selection::default()
        }
    }

    #[test]
    fn empty_selection_selects_every_group() {
        let s = Selection::default();
        assert!(s.selects(b"any", Category::Other, b"any:key"));
        assert!(s.selects(b"", Category::Sessions, b"kato:session:x"));
        assert!(s.selects(b"", Category::Foreign, b"cache:1"));
        assert!(s.is_everything());
        assert_eq!(s.literal_kbs(), None);
    }

    #[test]
    fn naming_groups_selects_those_only() {
        let s = naming(&["*"]);
        assert!(s.kb_selected(b"node0"));
        assert!(!s.block_selected(b"", Category::Sessions), "* is no group");
        assert!(!s.block_selected(b"", Category::Foreign));
        let global = Selection {
            kato: true,
            ..naming(&["node0"])
        };
        assert!(global.block_selected(b"node0", Category::Emotives));
        assert!(global.block_selected(b"", Category::Stm));
        assert!(!global.block_selected(b"node1", Category::Emotives));
        assert!(!global.block_selected(b"", Category::Foreign));
        let foreign = Selection {
            foreign: true,
            ..Selection::default()
        };
        assert!(foreign.block_selected(b"", Category::Foreign));
        assert!(!foreign.kb_selected(b"node0"));
        assert!(!foreign.block_selected(b"", Category::Caches));
    }

    #[test]
    fn filters_combine() {
        let s = Selection {
            kbs: vec![Glob::new("node[01]_kato")],
            categories: vec![Category::Emotives],
            matches: vec![Glob::new("*:emotives:a*")],
            ..Selection::default()
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
        let sessions = Selection {
            categories: vec![Category::Sessions],
            ..Selection::default()
        };
        assert!(sessions.block_selected(b"", Category::Sessions));
        assert!(!sessions.block_selected(b"node0", Category::Emotives));
    }

    #[test]
    fn a_kb_that_matches_nothing_is_an_error_with_a_suggestion() {
        let existing = kbs(&["node0_kato", "node1_kato", ""]);
        assert_eq!(
            naming(&["node0_kato", "node*"]).check_kbs(&existing, "x"),
            Ok(())
        );
        let err = naming(&["node9_kato", "node0_kato"])
            .check_kbs(&existing, "Redis at 127.0.0.1:6379")
            .unwrap_err();
        assert_eq!(err.unmatched, ["node9_kato"]);
        assert_eq!(err.existing, ["node0_kato", "node1_kato"]);
        let text = err.to_string();
        assert!(
            text.starts_with("--kb node9_kato matches no kb_id in Redis at 127.0.0.1:6379"),
            "{text}"
        );
        assert!(text.contains("did you mean node0_kato"), "{text}");
        assert!(text.contains("--allow-empty"), "{text}");
        let glob = naming(&["zzz*"])
            .check_kbs(&existing, "archive a.kbd")
            .unwrap_err();
        assert!(glob.suggestions.is_empty());
        assert!(naming(&["x"])
            .check_kbs(&[], "p")
            .unwrap_err()
            .to_string()
            .contains("no kb_id at all"));
        // `*` does not match the empty kb_id of keys outside kb_ids.
        assert!(naming(&["*"]).check_kbs(&kbs(&[""]), "p").is_err());
        let allowed = Selection {
            allow_empty: true,
            ..naming(&["node9_kato"])
        };
        assert_eq!(allowed.check_kbs(&existing, "p"), Ok(()));
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("node9_kato", "node0_kato"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let names = vec!["node0_kato".to_string(), "other".to_string()];
        assert_eq!(nearest("nod0_kato", &names), Some("node0_kato"));
        assert_eq!(nearest("completely_else", &names), None);
    }

    #[test]
    fn left_out_counts_what_the_selection_skips_by_group() {
        let mut census = Census::new();
        for key in [
            &b"a:frequency:1"[..],
            b"a:emotives:1",
            b"b:frequency:1",
            b"stm:events:a",
            b"kato:session:s",
            b"stm:global",
            b"cache:1",
            b"__kbdump_tmp:{a:frequency:1}:1:0",
        ] {
            census.add(key.to_vec());
        }
        let census = census.finish();
        let all = Selection::default().left_out(&census);
        assert!(all.is_nothing());
        assert_eq!(all.temporary, 1);
        assert_eq!(all.describe(), None);
        let a = naming(&["a"]).left_out(&census);
        assert_eq!(
            a,
            LeftOut {
                kb_ids: 1,
                kb_keys: 1,
                kato: 2,
                foreign: 1,
                temporary: 1
            }
        );
        let line = a.describe().unwrap();
        assert!(
            line.contains("2 KATO global keys, 1 foreign keys; add --global/--foreign"),
            "{line}"
        );
        let emotives = Selection {
            categories: vec![Category::Emotives],
            kato: true,
            ..naming(&["a"])
        };
        let left = emotives.left_out(&census);
        assert_eq!((left.kb_keys, left.kato, left.foreign), (3, 2, 1));
    }

    #[test]
    fn scan_pattern_escapes_the_kb_id() {
        assert_eq!(kb_scan_pattern(b"kb*[1]"), b"kb\\*\\[1\\]:*".to_vec());
    }
}
