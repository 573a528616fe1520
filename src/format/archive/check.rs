//! What a reader checks beyond checksums (docs/FORMAT.md, "What a reader
//! checks"): that the index describes the blocks the file really holds,
//! that every record belongs to its block's kb_id and category, and that no
//! key appears twice. Pure functions over what the readers found.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};

use super::frame::{EndInfo, FRAME_HEADER_LEN};
use super::types::{BlockMeta, Index, IndexEntry};
use crate::kato::{classify, classify_with, display_bytes, outside, Category, Outside};

/// Problems listed one by one before the rest are only counted.
const MAX_LISTED: usize = 20;

/// A block frame as a front-to-back pass found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenBlock {
    pub offset: u64,
    /// Frame length including its header.
    pub len: u64,
    /// A digest of its metadata (with the category name) and its record
    /// count; `None` when
    /// the frame is damaged (its metadata cannot be trusted).
    pub meta: Option<(u64, u64)>,
}

/// A digest of a block's metadata and stored category name, to compare a
/// block with its index entry without keeping every block's metadata.
pub fn meta_fingerprint(meta: &BlockMeta, category_name: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta.kb_id.hash(&mut h);
    category_name.hash(&mut h);
    (meta.records, meta.payload_bytes, meta.raw_len).hash(&mut h);
    meta.rdb_versions.hash(&mut h);
    meta.type_bytes.hash(&mut h);
    h.finish()
}

fn entry_name(n: usize, e: &IndexEntry) -> String {
    format!(
        "index entry {n} (byte {}, kb {}, {})",
        e.offset,
        display_bytes(&e.meta.kb_id),
        e.category_name()
    )
}

/// Collects problems, listing the first [`MAX_LISTED`].
#[derive(Default)]
struct Problems {
    listed: Vec<String>,
    more: usize,
}

impl Problems {
    fn push(&mut self, p: String) {
        if self.listed.len() < MAX_LISTED {
            self.listed.push(p);
        } else {
            self.more += 1;
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.more > 0 {
            self.listed
                .push(format!("and {} more index problems", self.more));
        }
        self.listed
    }
}

/// Compares an index and end frame with the blocks a front-to-back pass
/// found: every entry must describe a block found at its offset (same
/// length and metadata), no entry may repeat or overlap another, every
/// block found must be listed, and the end frame's counts must match.
/// `walk_complete` says whether the pass saw every byte up to the index
/// (otherwise blocks it could not reach are not held against the index).
pub fn index_against_blocks(
    index: &Index,
    end: &EndInfo,
    seen: &[SeenBlock],
    walk_complete: bool,
) -> Vec<String> {
    let mut problems = Problems::default();
    counts(index, end, seen, walk_complete, &mut problems);
    let by_offset: BTreeMap<u64, &SeenBlock> = seen.iter().map(|b| (b.offset, b)).collect();
    let mut listed: BTreeMap<u64, usize> = BTreeMap::new();
    for (n, entry) in index.blocks.iter().enumerate() {
        if let Some(first) = listed.insert(entry.offset, n) {
            listed.insert(entry.offset, first);
            problems.push(format!(
                "{} repeats index entry {first}",
                entry_name(n, entry)
            ));
            continue;
        }
        match by_offset.get(&entry.offset) {
            None if entry.offset.saturating_add(entry.len) > end.index_offset => problems.push(
                format!("{} points past the last block", entry_name(n, entry)),
            ),
            None if walk_complete => problems.push(format!(
                "{} points where no block starts",
                entry_name(n, entry)
            )),
            None => {}
            Some(block) if block.len != entry.len => problems.push(format!(
                "{} says {} bytes, the block there has {}",
                entry_name(n, entry),
                entry.len,
                block.len
            )),
            Some(SeenBlock {
                meta: Some((fingerprint, _)),
                ..
            }) if *fingerprint != meta_fingerprint(&entry.meta, entry.category_name()) => problems
                .push(format!(
                    "{} describes the block there differently (its metadata differs)",
                    entry_name(n, entry)
                )),
            Some(_) => {}
        }
    }
    overlaps(index, &mut problems);
    for block in seen {
        if !listed.contains_key(&block.offset) {
            problems.push(format!(
                "the block at byte {} is missing from the index",
                block.offset
            ));
        }
    }
    problems.finish()
}

fn counts(
    index: &Index,
    end: &EndInfo,
    seen: &[SeenBlock],
    walk_complete: bool,
    problems: &mut Problems,
) {
    if index.blocks.len() as u64 != end.block_count {
        problems.push(format!(
            "the index lists {} blocks, the end frame counts {}",
            index.blocks.len(),
            end.block_count
        ));
    }
    if walk_complete && seen.len() as u64 != end.block_count {
        problems.push(format!(
            "the end frame counts {} blocks, the file holds {}",
            end.block_count,
            seen.len()
        ));
    }
    let indexed: u64 = index.blocks.iter().map(|e| e.meta.records).sum();
    if indexed != end.record_count {
        problems.push(format!(
            "the end frame counts {} records, the index entries {indexed}",
            end.record_count
        ));
    }
    let metas: Option<u64> = seen.iter().map(|b| b.meta.map(|(_, n)| n)).sum();
    if let Some(held) = metas.filter(|_| walk_complete) {
        if held != end.record_count {
            problems.push(format!(
                "the end frame counts {} records, the blocks hold {held}",
                end.record_count
            ));
        }
    }
}

fn overlaps(index: &Index, problems: &mut Problems) {
    let mut spans: Vec<(u64, u64)> = index
        .blocks
        .iter()
        .map(|e| (e.offset, e.offset.saturating_add(e.len)))
        .collect();
    spans.sort_unstable();
    spans.dedup_by_key(|s| s.0);
    for pair in spans.windows(2) {
        if pair[1].0 < pair[0].1 {
            problems.push(format!(
                "index entries overlap: the block listed at byte {} runs to byte {}, past the \
                 one listed at byte {}",
                pair[0].0, pair[0].1, pair[1].0
            ));
        }
    }
}

/// The cheap check an indexed reader makes on opening: the entries, in
/// offset order, must cover the bytes between the header and the index
/// exactly (no gap, no overlap, no repeat), and their counts must be the
/// end frame's. The first problem found, if any.
pub fn index_tiles(index: &Index, end: &EndInfo, blocks_start: u64) -> Result<(), String> {
    if index.blocks.len() as u64 != end.block_count {
        return Err(format!(
            "the index lists {} blocks, the end frame counts {}",
            index.blocks.len(),
            end.block_count
        ));
    }
    let records: u64 = index.blocks.iter().map(|e| e.meta.records).sum();
    if records != end.record_count {
        return Err(format!(
            "the end frame counts {} records, the index entries {records}",
            end.record_count
        ));
    }
    let mut order: Vec<(usize, &IndexEntry)> = index.blocks.iter().enumerate().collect();
    order.sort_by_key(|(_, e)| e.offset);
    let mut next = blocks_start;
    for (n, entry) in order {
        if entry.offset != next {
            let how = if entry.offset < next {
                "overlaps or repeats another entry"
            } else {
                "leaves a gap before it (bytes no entry lists)"
            };
            return Err(format!("{} {how}", entry_name(n, entry)));
        }
        if entry.len < FRAME_HEADER_LEN + 4 {
            return Err(format!("{} is too short for a block", entry_name(n, entry)));
        }
        next = entry.offset.saturating_add(entry.len);
    }
    if next != end.index_offset {
        return Err(format!(
            "the indexed blocks end at byte {next}, the index starts at byte {}",
            end.index_offset
        ));
    }
    Ok(())
}

/// Why `key` does not belong in a block of `kb_id` and `category`, if it
/// does not: it must classify (`kato`) to that kb_id and, unless the block
/// is `other` (which also holds categories this build does not know), to
/// that category.
pub fn misplaced(kb_id: &[u8], category: Category, key: &[u8]) -> Option<String> {
    misplaced_in(&[kb_id.to_vec()], category, key)
}

/// [`misplaced`] with the block's kb_id given as `known[0]` (the only
/// entry), so a reader allocates it once per block, not per record.
pub(crate) fn misplaced_in(known: &[Vec<u8>], category: Category, key: &[u8]) -> Option<String> {
    let kb_id = &known[0][..];
    if kb_id.is_empty() {
        return misplaced_outside(category, key);
    }
    match classify_with(key, known) {
        None => Some("belongs to no kb_id".to_string()),
        Some(c) if c.kb_id != kb_id => Some(format!(
            "is a key of kb {}, not of this block's kb",
            display_bytes(c.kb_id)
        )),
        Some(c) if category != Category::Other && c.category != category => Some(format!(
            "is a {} key, not of this block's category",
            c.category
        )),
        Some(_) => None,
    }
}

/// [`misplaced`] for a block outside kb_ids (empty kb_id): the key must
/// be one of KATO's global keys of the block's category, or, in a
/// `foreign` block, a key that no category marker gives to a kb_id.
fn misplaced_outside(category: Category, key: &[u8]) -> Option<String> {
    let found = match outside(key) {
        Some(Outside::Temporary) => return Some("is a kbdump temporary key".to_string()),
        Some(Outside::Kb(c)) => return Some(of_a_kb(c.kb_id)),
        Some(Outside::Kato(c)) => c,
        None => match classify(key) {
            Some(c) if c.category != Category::Other => return Some(of_a_kb(c.kb_id)),
            _ => Category::Foreign,
        },
    };
    if category != Category::Other && found != category {
        return Some(format!("is a {found} key, not of this block's category"));
    }
    None
}

fn of_a_kb(kb_id: &[u8]) -> String {
    format!(
        "is a key of kb {}, not of a block outside kb_ids",
        display_bytes(kb_id)
    )
}

/// The keys read so far, to find a key stored twice. Keeps a 128-bit
/// digest per key (16 bytes), not the key.
#[derive(Debug, Default)]
pub struct KeySet {
    seen: HashSet<u128>,
}

impl KeySet {
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// True the first time a key is offered, false for a repeat.
    pub fn first(&mut self, key: &[u8]) -> bool {
        self.seen.insert(digest(key))
    }
}

fn digest(key: &[u8]) -> u128 {
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write_u8(salt);
        h.write(key);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// The message for a key stored twice.
pub fn duplicate(key: &[u8]) -> String {
    format!(
        "key {} is a duplicate: the archive holds it twice, and only its first copy is used",
        display_bytes(key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: u64, len: u64) -> IndexEntry {
        IndexEntry::new(
            offset,
            len,
            BlockMeta {
                kb_id: b"kb".to_vec(),
                category: Category::Emotives,
                records: 1,
                payload_bytes: 1,
                raw_len: 1,
                rdb_versions: vec![],
                type_bytes: vec![],
            },
        )
    }

    fn end(index_offset: u64, blocks: u64) -> EndInfo {
        EndInfo {
            index_offset,
            block_count: blocks,
            record_count: blocks,
        }
    }

    #[test]
    fn entries_must_tile_the_blocks() {
        let index = |e: Vec<IndexEntry>| Index {
            blocks: e,
            kbs: vec![],
        };
        let good = index(vec![entry(100, 50), entry(150, 30)]);
        assert_eq!(index_tiles(&good, &end(180, 2), 100), Ok(()));
        let repeat = index(vec![entry(100, 50), entry(100, 50)]);
        assert!(index_tiles(&repeat, &end(180, 2), 100).is_err());
        let gap = index(vec![entry(100, 40), entry(150, 30)]);
        assert!(index_tiles(&gap, &end(180, 2), 100).is_err());
        let past = index(vec![entry(100, 50), entry(150, 60)]);
        assert!(index_tiles(&past, &end(180, 2), 100).is_err());
    }

    #[test]
    fn records_must_classify_to_their_block() {
        assert_eq!(misplaced(b"kb", Category::Emotives, b"kb:emotives:p"), None);
        assert!(misplaced(b"kb", Category::Emotives, b"other:emotives:p").is_some());
        assert!(misplaced(b"kb", Category::Emotives, b"kb:metadata:p").is_some());
        assert_eq!(misplaced(b"kb", Category::Other, b"kb:metadata:p"), None);
        assert_eq!(misplaced(b"a:b", Category::Other, b"a:b:x"), None);
        assert!(misplaced(b"kb", Category::Other, b"nocolon").is_some());
    }

    #[test]
    fn records_outside_kb_ids_must_be_of_their_group() {
        assert_eq!(misplaced(b"", Category::Stm, b"stm:global"), None);
        assert_eq!(misplaced(b"", Category::Foreign, b"nocolon"), None);
        assert_eq!(misplaced(b"", Category::Foreign, b"user:42"), None);
        assert!(misplaced(b"", Category::Foreign, b"stm:global").is_some());
        assert!(misplaced(b"", Category::Stm, b"nocolon").is_some());
        assert!(misplaced(b"", Category::Foreign, b"kb:emotives:p").is_some());
        assert!(misplaced(b"", Category::Stm, b"stm:events:kb").is_some());
        assert!(misplaced(b"", Category::Foreign, b"__kbdump_tmp:{k}:1:0").is_some());
    }

    #[test]
    fn a_repeated_key_is_found() {
        let mut keys = KeySet::new();
        assert!(keys.first(b"a"));
        assert!(keys.first(b"b"));
        assert!(!keys.first(b"a"));
    }
}
