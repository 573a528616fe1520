//! The plaintext summary kept beside an encrypted backup
//! (`<backup>.summary.json`): what the backup holds, counted per kb_id and
//! category, and the SHA-256 and length of its ciphertext, so a host that
//! does not hold the identity can still list, judge and check the file's
//! bytes. It reveals the kb_ids and their counts, never a key or a value
//! (docs/SAFETY.md). A JSON document (docs/FORMAT.md, "Summaries of
//! encrypted backups").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::archive::{SelectionSpec, SourceInfo};
use super::encryption::Fingerprint;
use crate::kato::{display_bytes, parse_display_bytes, Category, CategoryName};

/// The `format` field of every summary.
pub const SUMMARY_FORMAT: &str = "kbdump-sealed-summary";
/// The version this kbdump writes and reads.
pub const SUMMARY_VERSION: u32 = 1;
/// The largest summary a reader takes: one line per kb_id x category is
/// far below this for any real backup.
pub const SUMMARY_LIMIT: u64 = 16 << 20;

/// Why a summary cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("not a kbdump summary: {0}")]
    NotJson(String),
    #[error("not a kbdump summary (its format field is {0:?})")]
    WrongFormat(String),
    #[error(
        "summary version {0} is newer than this kbdump reads ({SUMMARY_VERSION}); upgrade kbdump"
    )]
    Newer(u32),
    #[error("larger than {SUMMARY_LIMIT} bytes, more than any backup's summary")]
    TooLarge,
}

/// How the run that wrote the backup checked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verified {
    /// The ciphertext re-read from disk matched what was written; the
    /// contents were not decrypted (no identity on the host).
    Ciphertext,
    /// Decrypted with `--identity` and every block and payload checked.
    Contents,
}

/// Keys and payload bytes of one kb_id x category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub keys: u64,
    pub bytes: u64,
}

/// The counts of one kb_id (empty: the keys outside kb_ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KbCounts {
    /// As `display_bytes` writes it (`\xNN` for bytes that are not UTF-8).
    pub kb_id: String,
    /// Per category name.
    pub categories: BTreeMap<String, Counts>,
}

/// The selection as given, in text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectionText {
    pub kbs: Vec<String>,
    pub global: bool,
    pub foreign: bool,
    pub categories: Vec<String>,
    pub matches: Vec<String>,
}

/// The SHA-256 and length of the encrypted file, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ciphertext {
    pub sha256: String,
    pub bytes: u64,
}

/// The summary of one encrypted backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedSummary {
    pub format: String,
    pub version: u32,
    /// The backup's file name, without its directory.
    pub backup: String,
    /// `kbdump <version>` of the writer.
    pub tool: String,
    pub created_ms: i64,
    /// The same instant, ISO 8601 UTC, for people.
    pub created_at: String,
    pub source: SourceInfo,
    pub selection: SelectionText,
    pub kb_ids: Vec<KbCounts>,
    pub keys: u64,
    pub payload_bytes: u64,
    pub ciphertext: Ciphertext,
    pub recipients: usize,
    pub verified: Verified,
}

/// What a summary is made from.
pub struct SummaryOf<'a> {
    pub backup: &'a str,
    pub created_ms: i64,
    pub created_at: String,
    pub source: &'a SourceInfo,
    pub selection: &'a SelectionSpec,
    /// Keys and payload bytes per (kb_id, category).
    pub cells: &'a BTreeMap<(Vec<u8>, Category), Counts>,
    pub ciphertext: &'a Fingerprint,
    pub recipients: usize,
    pub verified: Verified,
}

impl SealedSummary {
    pub fn new(of: SummaryOf<'_>) -> SealedSummary {
        let mut kb_ids: Vec<KbCounts> = Vec::new();
        for ((kb, category), counts) in of.cells {
            let kb_id = display_bytes(kb);
            if kb_ids.last().is_none_or(|k| k.kb_id != kb_id) {
                kb_ids.push(KbCounts {
                    kb_id,
                    categories: BTreeMap::new(),
                });
            }
            if let Some(last) = kb_ids.last_mut() {
                last.categories.insert(category.to_string(), *counts);
            }
        }
        let text = |v: &[Vec<u8>]| v.iter().map(|b| display_bytes(b)).collect();
        SealedSummary {
            format: SUMMARY_FORMAT.to_string(),
            version: SUMMARY_VERSION,
            backup: of.backup.to_string(),
            tool: format!("kbdump {}", env!("CARGO_PKG_VERSION")),
            created_ms: of.created_ms,
            created_at: of.created_at,
            source: of.source.clone(),
            selection: SelectionText {
                kbs: text(&of.selection.kbs),
                global: of.selection.global,
                foreign: of.selection.foreign,
                categories: of
                    .selection
                    .categories
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
                matches: text(&of.selection.matches),
            },
            keys: of.cells.values().map(|c| c.keys).sum(),
            payload_bytes: of.cells.values().map(|c| c.bytes).sum(),
            kb_ids,
            ciphertext: Ciphertext {
                sha256: of.ciphertext.sha256.clone(),
                bytes: of.ciphertext.bytes,
            },
            recipients: of.recipients,
            verified: of.verified,
        }
    }

    /// The document, pretty-printed, ending in a newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Reads a summary; anything but a summary of a version this kbdump
    /// reads is an error saying what it is.
    pub fn parse(bytes: &[u8]) -> Result<SealedSummary, SummaryError> {
        if bytes.len() as u64 > SUMMARY_LIMIT {
            return Err(SummaryError::TooLarge);
        }
        #[derive(Deserialize)]
        struct Probe {
            format: Option<String>,
            version: Option<u32>,
        }
        let probe: Probe =
            serde_json::from_slice(bytes).map_err(|e| SummaryError::NotJson(e.to_string()))?;
        let format = probe.format.unwrap_or_default();
        if format != SUMMARY_FORMAT {
            return Err(SummaryError::WrongFormat(format));
        }
        match probe.version {
            Some(v) if v > SUMMARY_VERSION => return Err(SummaryError::Newer(v)),
            _ => {}
        }
        serde_json::from_slice(bytes).map_err(|e| SummaryError::NotJson(e.to_string()))
    }

    /// Keys and payload bytes per (kb_id, category); a category name this
    /// build does not know counts as `other`, as in an archive.
    pub fn cells(&self) -> BTreeMap<(Vec<u8>, Category), Counts> {
        let mut cells: BTreeMap<(Vec<u8>, Category), Counts> = BTreeMap::new();
        for kb in &self.kb_ids {
            for (name, counts) in &kb.categories {
                let category = CategoryName::parse(name).category();
                let cell = cells
                    .entry((parse_display_bytes(&kb.kb_id), category))
                    .or_default();
                cell.keys += counts.keys;
                cell.bytes += counts.bytes;
            }
        }
        cells
    }

    /// The selection the backup was made with.
    pub fn selection_spec(&self) -> SelectionSpec {
        let bytes = |v: &[String]| v.iter().map(|s| parse_display_bytes(s)).collect();
        SelectionSpec {
            kbs: bytes(&self.selection.kbs),
            global: self.selection.global,
            foreign: self.selection.foreign,
            categories: self
                .selection
                .categories
                .iter()
                .filter_map(|c| Category::from_name(c))
                .collect(),
            matches: bytes(&self.selection.matches),
        }
    }

    /// Whether `found` (the file as it is now) is the ciphertext written.
    pub fn matches(&self, found: &Fingerprint) -> bool {
        self.ciphertext.bytes == found.bytes && self.ciphertext.sha256 == found.sha256
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SealedSummary {
        let mut cells = BTreeMap::new();
        cells.insert(
            (b"node0_kato".to_vec(), Category::Emotives),
            Counts {
                keys: 12,
                bytes: 900,
            },
        );
        cells.insert(
            (b"node0_kato".to_vec(), Category::Metadata),
            Counts { keys: 3, bytes: 40 },
        );
        cells.insert(
            (b"odd\xff".to_vec(), Category::Emotives),
            Counts { keys: 1, bytes: 5 },
        );
        cells.insert((Vec::new(), Category::Other), Counts { keys: 2, bytes: 7 });
        let selection = SelectionSpec {
            kbs: vec![b"node*".to_vec()],
            categories: vec![Category::Emotives],
            ..SelectionSpec::default()
        };
        SealedSummary::new(SummaryOf {
            backup: "kbdump-20240531T031500.123Z.kbd.age",
            created_ms: 1_717_125_300_123,
            created_at: "2024-05-31T03:15:00.123Z".into(),
            source: &SourceInfo::default(),
            selection: &selection,
            cells: &cells,
            ciphertext: &Fingerprint {
                sha256: "ab".repeat(32),
                bytes: 4096,
            },
            recipients: 2,
            verified: Verified::Ciphertext,
        })
    }

    #[test]
    fn a_summary_reads_back_with_its_counts_and_selection() {
        let summary = sample();
        assert_eq!(summary.keys, 18);
        assert_eq!(summary.payload_bytes, 952);
        let back = SealedSummary::parse(&summary.to_json()).unwrap();
        assert_eq!(back, summary);
        let cells = back.cells();
        assert_eq!(cells.len(), 4);
        assert_eq!(cells[&(b"odd\xff".to_vec(), Category::Emotives)].keys, 1);
        assert_eq!(
            cells[&(b"node0_kato".to_vec(), Category::Emotives)].bytes,
            900
        );
        assert_eq!(back.selection_spec().kbs, vec![b"node*".to_vec()]);
        assert_eq!(back.selection_spec().categories, vec![Category::Emotives]);
    }

    #[test]
    fn other_documents_and_newer_versions_are_named() {
        assert!(matches!(
            SealedSummary::parse(b"{"),
            Err(SummaryError::NotJson(_))
        ));
        assert!(matches!(
            SealedSummary::parse(br#"{"format":"something-else"}"#),
            Err(SummaryError::WrongFormat(_))
        ));
        let newer = br#"{"format":"kbdump-sealed-summary","version":9}"#;
        let err = SealedSummary::parse(newer).unwrap_err();
        assert!(err.to_string().contains("upgrade"), "{err}");
        // A summary of this version with a field missing is not a summary.
        let partial = br#"{"format":"kbdump-sealed-summary","version":1}"#;
        assert!(SealedSummary::parse(partial).is_err());
    }

    #[test]
    fn the_fingerprint_must_match_in_length_and_digest() {
        let summary = sample();
        let same = Fingerprint {
            sha256: "ab".repeat(32),
            bytes: 4096,
        };
        assert!(summary.matches(&same));
        assert!(!summary.matches(&Fingerprint {
            bytes: 4095,
            ..same.clone()
        }));
        assert!(!summary.matches(&Fingerprint {
            sha256: "cd".repeat(32),
            ..same
        }));
    }
}
