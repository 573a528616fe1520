//! `backups verify`: a full re-read of every good backup (every frame,
//! block and payload, as `kbdump verify` does), or a sampled one (kopia's
//! percent-sampled verification): the header, index and end of every file
//! and a random share of its blocks, at least one per file, so that
//! repeated runs cover the whole directory over time. A file that fails is
//! moved aside as damaged.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use serde::Serialize;

use super::catalog::{list, move_aside, Entry};
use super::lock::DirLock;
use super::BackupError;
use crate::flow::verify::{check_payload_decodes, verify, Problem, VerifyReport};
use crate::format::archive::{IndexedArchive, Record};
use crate::kato::display_bytes;
use crate::source::archive::ArchiveInput;

/// How much of each backup to read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Depth {
    Full,
    /// Percent of the blocks of each file (0 < pct <= 100), chosen with
    /// this seed.
    Sample {
        pct: f64,
        seed: u64,
    },
}

/// The verdict on one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileVerdict {
    pub name: String,
    pub blocks_checked: u64,
    pub blocks_total: u64,
    pub records_checked: u64,
    pub problems: Vec<Problem>,
    /// Where a damaged file was moved.
    pub moved_to: Option<String>,
}

impl FileVerdict {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies the good backups of `dir` (moving damaged ones aside).
pub fn verify_dir(dir: &Path, depth: Depth, now_ms: i64) -> Result<Vec<FileVerdict>, BackupError> {
    let _lock = DirLock::acquire(dir, "backups verify", now_ms)?;
    let mut verdicts = Vec::new();
    for entry in list(dir)?.into_iter().filter(Entry::is_good) {
        let mut verdict = match depth {
            Depth::Full => full(&entry)?,
            Depth::Sample { pct, seed } => sampled(&entry, pct, seed),
        };
        if !verdict.is_clean() {
            verdict.moved_to = Some(move_aside(&entry.path)?.display().to_string());
        }
        verdicts.push(verdict);
    }
    Ok(verdicts)
}

fn full(entry: &Entry) -> Result<FileVerdict, BackupError> {
    let check = |r: &Record| check_payload_decodes(&r.payload);
    let report: VerifyReport = verify(&ArchiveInput::path(entry.path.clone()), &check)?;
    let mut problems = report.problems.clone();
    if problems.is_empty() && !report.complete {
        problems.push(Problem {
            offset: None,
            block: None,
            message: "the archive does not end properly".into(),
        });
    }
    Ok(FileVerdict {
        name: entry.name.clone(),
        blocks_checked: report.blocks_ok + report.blocks_damaged,
        blocks_total: report.blocks_ok + report.blocks_damaged,
        records_checked: report.records_ok + report.records_damaged,
        problems,
        moved_to: None,
    })
}

fn sampled(entry: &Entry, pct: f64, seed: u64) -> FileVerdict {
    let mut verdict = FileVerdict {
        name: entry.name.clone(),
        blocks_checked: 0,
        blocks_total: 0,
        records_checked: 0,
        problems: Vec::new(),
        moved_to: None,
    };
    let problem = |offset: Option<u64>, block: Option<String>, message: String| Problem {
        offset,
        block,
        message,
    };
    let opened = File::open(&entry.path)
        .map_err(|e| e.to_string())
        .and_then(|f| IndexedArchive::open(BufReader::new(f)).map_err(|e| e.to_string()));
    let mut archive = match opened {
        Ok(a) => a,
        Err(message) => {
            verdict.problems.push(problem(None, None, message));
            return verdict;
        }
    };
    let entries = archive.index().blocks.clone();
    verdict.blocks_total = entries.len() as u64;
    for i in sample(entries.len(), pct, seed ^ name_hash(&entry.name)) {
        let listed = &entries[i];
        let what = format!(
            "block at byte {} (kb {}, {})",
            listed.offset,
            display_bytes(&listed.meta.kb_id),
            listed.category_name()
        );
        verdict.blocks_checked += 1;
        let block = match archive.read_block(listed) {
            Ok(b) => b,
            Err(e) => {
                verdict
                    .problems
                    .push(problem(Some(listed.offset), Some(what), e.to_string()));
                continue;
            }
        };
        let records = match block.records() {
            Ok(r) => r,
            Err(e) => {
                verdict
                    .problems
                    .push(problem(Some(listed.offset), Some(what), e.to_string()));
                continue;
            }
        };
        let mut count = 0;
        for record in records {
            count += 1;
            verdict.records_checked += 1;
            let checked = record.map_err(|e| e.to_string()).and_then(|r| {
                check_payload_decodes(&r.payload)
                    .map_err(|m| format!("key {}: {m}", display_bytes(&r.key)))
            });
            if let Err(message) = checked {
                verdict
                    .problems
                    .push(problem(Some(listed.offset), Some(what.clone()), message));
            }
        }
        if count != listed.meta.records {
            let message = format!(
                "holds {count} records, the index says {}",
                listed.meta.records
            );
            verdict
                .problems
                .push(problem(Some(listed.offset), Some(what), message));
        }
    }
    verdict
}

/// `pct` percent of `n` indexes (rounded up, at least one when `n > 0`),
/// chosen by a seeded hash, in file order.
pub fn sample(n: usize, pct: f64, seed: u64) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let take = ((n as f64 * pct / 100.0).ceil() as usize).clamp(1, n);
    let mut ranked: Vec<(u64, usize)> = (0..n).map(|i| (splitmix(seed ^ i as u64), i)).collect();
    ranked.sort_unstable();
    let mut chosen: Vec<usize> = ranked[..take].iter().map(|(_, i)| *i).collect();
    chosen.sort_unstable();
    chosen
}

/// SplitMix64: a fixed, well-mixed hash of a counter.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_take_the_share_asked_for_at_least_one() {
        assert_eq!(sample(0, 50.0, 1), Vec::<usize>::new());
        assert_eq!(sample(10, 1.0, 1).len(), 1);
        assert_eq!(sample(10, 25.0, 1).len(), 3);
        assert_eq!(sample(10, 100.0, 1), (0..10).collect::<Vec<_>>());
        // Different seeds cover different blocks.
        let covered: std::collections::BTreeSet<usize> =
            (0..50).flat_map(|seed| sample(10, 10.0, seed)).collect();
        assert_eq!(covered.len(), 10);
    }
}
