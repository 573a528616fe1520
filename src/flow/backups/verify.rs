//! `backups verify`: a full re-read of every good backup (every frame,
//! block and payload, as `kbdump verify` does), or a sampled one (kopia's
//! percent-sampled verification): the header, index and end of every file
//! and a random share of its blocks, at least one per file, so that
//! repeated runs cover the whole directory over time. A file that fails is
//! moved aside as damaged.
//!
//! An encrypted backup that no identity given opens is checked as far as
//! that is possible: its bytes against the SHA-256 and length its summary
//! recorded when it was written. Its verdict says that its contents were
//! not checked. One without a usable summary cannot be checked at all,
//! which is a problem of its own (it is not moved aside: nothing says it
//! is damaged).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use serde::Serialize;

use super::catalog::{list, move_aside, Entry, Status, DAMAGED_SUFFIX};
use super::lock::DirLock;
use super::BackupError;
use crate::flow::verify::{check_payload_decodes, verify, Problem, VerifyReport};
use crate::format::archive::{IndexedArchive, Record};
use crate::format::encryption::{fingerprint, Keyring};
use crate::kato::display_bytes;
use crate::source::archive::{ArchiveInput, OpenedInput};

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

/// What a verdict covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Checked {
    /// Every block read (or the sampled ones), decrypted if encrypted.
    Contents,
    /// Encrypted and not opened: only the ciphertext against its summary.
    Ciphertext,
    /// Encrypted, not opened, and without a usable summary.
    Nothing,
}

/// The verdict on one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileVerdict {
    pub name: String,
    pub checked: Checked,
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

/// Verifies the usable backups of `dir` (moving damaged ones aside), the
/// encrypted ones opened with `keys`; an encrypted backup nothing
/// describes gets a verdict with its problem.
pub fn verify_dir(
    dir: &Path,
    depth: Depth,
    now_ms: i64,
    keys: &Keyring,
) -> Result<Vec<FileVerdict>, BackupError> {
    let _lock = DirLock::acquire(dir, "backups verify", now_ms)?;
    let mut verdicts = Vec::new();
    for entry in list(dir, keys)? {
        let mut verdict = match (entry.status, depth) {
            (Status::Good, Depth::Full) => full(&entry, keys)?,
            (Status::Good, Depth::Sample { pct, seed }) => sampled(&entry, pct, seed, keys),
            (Status::Sealed, _) => ciphertext(&entry),
            (Status::Unknown, _) => unknown(&entry),
            // Already moved aside: told when it was.
            (Status::Damaged, _) if entry.name.ends_with(DAMAGED_SUFFIX) => continue,
            // Its header or index does not read, or it is not the size
            // its summary says: damaged, and moved aside like the rest.
            (Status::Damaged, _) => unreadable(&entry),
        };
        if !verdict.is_clean() && verdict.checked != Checked::Nothing {
            verdict.moved_to = Some(move_aside(&entry.path)?.display().to_string());
        }
        verdicts.push(verdict);
    }
    Ok(verdicts)
}

fn verdict(entry: &Entry, checked: Checked) -> FileVerdict {
    FileVerdict {
        name: entry.name.clone(),
        checked,
        blocks_checked: 0,
        blocks_total: 0,
        records_checked: 0,
        problems: Vec::new(),
        moved_to: None,
    }
}

fn problem(message: String) -> Problem {
    Problem {
        offset: None,
        block: None,
        message,
    }
}

/// An encrypted backup's bytes against its summary's SHA-256 and length.
fn ciphertext(entry: &Entry) -> FileVerdict {
    let mut verdict = verdict(entry, Checked::Ciphertext);
    let Some(summary) = &entry.summary else {
        verdict.checked = Checked::Nothing;
        verdict
            .problems
            .push(problem("its summary is missing".into()));
        return verdict;
    };
    match File::open(&entry.path).and_then(fingerprint) {
        Ok(found) if summary.matches(&found) => {}
        Ok(found) => verdict.problems.push(problem(format!(
            "its bytes are not the ciphertext written: {} bytes with SHA-256 {}, its summary \
             recorded {} bytes with SHA-256 {}",
            found.bytes, found.sha256, summary.ciphertext.bytes, summary.ciphertext.sha256
        ))),
        Err(e) => verdict
            .problems
            .push(problem(format!("cannot be read: {e}"))),
    }
    verdict
}

fn unreadable(entry: &Entry) -> FileVerdict {
    let checked = if entry.encrypted && entry.summary.is_some() && entry.header.is_none() {
        Checked::Ciphertext
    } else {
        Checked::Contents
    };
    let mut verdict = verdict(entry, checked);
    let why = entry
        .problem
        .clone()
        .unwrap_or_else(|| "does not read".into());
    verdict.problems.push(problem(why));
    verdict
}

fn unknown(entry: &Entry) -> FileVerdict {
    let mut verdict = verdict(entry, Checked::Nothing);
    let why = entry.problem.clone().unwrap_or_default();
    verdict
        .problems
        .push(problem(format!("not checked: {why}")));
    verdict
}

fn full(entry: &Entry, keys: &Keyring) -> Result<FileVerdict, BackupError> {
    let check = |r: &Record| check_payload_decodes(&r.payload);
    let input = ArchiveInput::path(entry.path.clone()).with_keys(keys.clone());
    let report: VerifyReport = verify(&input, &check)?;
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
        checked: Checked::Contents,
        blocks_checked: report.blocks_ok + report.blocks_damaged,
        blocks_total: report.blocks_ok + report.blocks_damaged,
        records_checked: report.records_ok + report.records_damaged,
        problems,
        moved_to: None,
    })
}

fn sampled(entry: &Entry, pct: f64, seed: u64, keys: &Keyring) -> FileVerdict {
    let mut verdict = verdict(entry, Checked::Contents);
    let problem = |offset: Option<u64>, block: Option<String>, message: String| Problem {
        offset,
        block,
        message,
    };
    let input = ArchiveInput::path(entry.path.clone()).with_keys(keys.clone());
    let opened = match input.open() {
        Ok(OpenedInput::Seekable(file)) => Ok(file),
        Ok(OpenedInput::Stream(_)) => Err("not a seekable file".to_string()),
        Err(e) => Err(e.to_string()),
    }
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
