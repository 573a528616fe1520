//! Diff: an archive against a live server, per kb_id and category.
//!
//! Equality is logical: two servers may encode one value differently
//! (listpack vs hashtable), so payloads are decoded and compared as values
//! when their bytes differ. Expiry differences are reported on their own.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tokio::sync::mpsc::Receiver;

use crate::clock::Clock;
use crate::fingerprint::KeyFingerprints;
use crate::format::archive::Record;
use crate::format::dump;
use crate::kato::{self, Category};
use crate::net::redis::{Dumped, RedisConn, RedisIoError};
use crate::records::{Failure, SourceItem};
use crate::selection::{kb_scan_pattern, Selection};

/// How a key differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// In the archive, not on the server.
    Missing,
    /// On the server (within the selection), not in the archive.
    Extra,
    /// Present on both with a different type or value.
    Changed,
    /// Same value, different expiry.
    Expiry,
}

/// Per kb_id x category counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiffCounts {
    pub same: u64,
    pub missing: u64,
    pub extra: u64,
    pub changed: u64,
    pub expiry: u64,
    /// Archived keys whose expiry has passed (not a difference).
    pub expired_in_archive: u64,
}

impl DiffCounts {
    fn add(&mut self, kind: Kind) {
        match kind {
            Kind::Missing => self.missing += 1,
            Kind::Extra => self.extra += 1,
            Kind::Changed => self.changed += 1,
            Kind::Expiry => self.expiry += 1,
        }
    }

    pub fn differences(&self) -> u64 {
        self.missing + self.extra + self.changed + self.expiry
    }
}

/// One differing key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyDiff {
    #[serde(serialize_with = "as_display")]
    pub key: Vec<u8>,
    #[serde(serialize_with = "as_display")]
    pub kb_id: Vec<u8>,
    pub category: Category,
    pub kind: Kind,
    /// What differs, in words.
    pub detail: String,
}

fn as_display<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&kato::display_bytes(bytes))
}

#[derive(Debug, Clone, Default)]
pub struct DiffReport {
    pub tallies: BTreeMap<(Vec<u8>, Category), DiffCounts>,
    pub keys: Vec<KeyDiff>,
    /// Parts of the archive that could not be read.
    pub damaged: Vec<Failure>,
}

impl DiffReport {
    pub fn is_identical(&self) -> bool {
        self.keys.is_empty()
    }

    fn note(&mut self, kb_id: &[u8], category: Category, key: Vec<u8>, kind: Kind, detail: String) {
        self.tallies
            .entry((kb_id.to_vec(), category))
            .or_default()
            .add(kind);
        self.keys.push(KeyDiff {
            key,
            kb_id: kb_id.to_vec(),
            category,
            kind,
            detail,
        });
    }

    fn same(&mut self, kb_id: &[u8], category: Category) {
        self.tallies
            .entry((kb_id.to_vec(), category))
            .or_default()
            .same += 1;
    }
}

#[derive(Debug, Clone)]
pub struct DiffOptions {
    pub selection: Selection,
    /// Expiries closer than this are equal (the archive's are measured at
    /// export time, with one round trip of uncertainty).
    pub expiry_tolerance_ms: i64,
    pub batch_keys: usize,
    /// "Now", for archived expiries: an archived key whose instant has
    /// passed is expected to be gone.
    pub clock: Clock,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            selection: Selection::default(),
            expiry_tolerance_ms: 2_000,
            batch_keys: 512,
            clock: Clock::system(),
        }
    }
}

/// Compares every archived record from `source` with `conn`, then scans the
/// server for selected keys of the archive's kb_ids that the archive lacks.
pub async fn diff(
    conn: &RedisConn,
    mut source: Receiver<SourceItem>,
    options: &DiffOptions,
) -> Result<DiffReport, RedisIoError> {
    let mut report = DiffReport::default();
    let mut archived = KeyFingerprints::default();
    let mut kb_ids = BTreeSet::new();
    let mut batch = Vec::with_capacity(options.batch_keys);
    let mut conn = conn.clone();
    while let Some(item) = source.recv().await {
        match item {
            SourceItem::Record(record) => {
                archived.insert(&record.key);
                kb_ids.insert(record.kb_id.clone());
                batch.push(record);
                if batch.len() >= options.batch_keys {
                    compare_batch(&mut conn, std::mem::take(&mut batch), options, &mut report)
                        .await?;
                }
            }
            SourceItem::Damaged { what, reason } => report.damaged.push(Failure { what, reason }),
            SourceItem::KbDone(_) => {}
        }
    }
    compare_batch(&mut conn, batch, options, &mut report).await?;
    let kb_ids: Vec<Vec<u8>> = kb_ids.into_iter().collect();
    for kb_id in &kb_ids {
        find_extra(&mut conn, kb_id, &kb_ids, &archived, options, &mut report).await?;
    }
    report.keys.sort_by(|a, b| {
        (&a.kb_id, a.category, a.kind, &a.key).cmp(&(&b.kb_id, b.category, b.kind, &b.key))
    });
    Ok(report)
}

async fn compare_batch(
    conn: &mut RedisConn,
    batch: Vec<Record>,
    options: &DiffOptions,
    report: &mut DiffReport,
) -> Result<(), RedisIoError> {
    if batch.is_empty() {
        return Ok(());
    }
    let keys: Vec<Vec<u8>> = batch.iter().map(|r| r.key.clone()).collect();
    let live = conn.dump_keys(&keys).await?;
    let now = options.clock.now_ms();
    for (record, live) in batch.into_iter().zip(live) {
        compare_one(record, live, now, options, report);
    }
    Ok(())
}

fn compare_one(
    record: Record,
    live: Dumped,
    now: i64,
    options: &DiffOptions,
    report: &mut DiffReport,
) {
    let (kb, cat) = (record.kb_id.clone(), record.category);
    if record.expire_at_ms.is_some_and(|at| at <= now) {
        report
            .tallies
            .entry((kb, cat))
            .or_default()
            .expired_in_archive += 1;
        return;
    }
    if record.is_absent() {
        match live {
            Dumped::Present { .. } => report.note(
                &kb,
                cat,
                record.key,
                Kind::Extra,
                "on the server, recorded as absent in the archive".into(),
            ),
            Dumped::Vanished => report.same(&kb, cat),
        }
        return;
    }
    let Dumped::Present { payload, pttl_ms } = live else {
        report.note(
            &kb,
            cat,
            record.key,
            Kind::Missing,
            "not on the server".into(),
        );
        return;
    };
    if let Some(detail) = value_difference(&record.payload, &payload) {
        report.note(&kb, cat, record.key, Kind::Changed, detail);
        return;
    }
    let live_expiry = pttl_ms.map(|ms| now + ms);
    match expiry_difference(
        record.expire_at_ms,
        live_expiry,
        options.expiry_tolerance_ms,
    ) {
        Some(detail) => report.note(&kb, cat, record.key, Kind::Expiry, detail),
        None => report.same(&kb, cat),
    }
}

/// `None` when both payloads hold the same logical value.
pub fn value_difference(archived: &[u8], live: &[u8]) -> Option<String> {
    if archived == live {
        return None;
    }
    let a = match dump::decode(archived) {
        Ok(v) => v,
        Err(e) => return Some(format!("archived payload cannot be decoded: {e}")),
    };
    let b = match dump::decode(live) {
        Ok(v) => v,
        Err(e) => return Some(format!("live payload cannot be decoded: {e}")),
    };
    if a.redis_type() != b.redis_type() {
        return Some(format!(
            "type {} in the archive, {} on the server",
            a.redis_type().name(),
            b.redis_type().name()
        ));
    }
    (!a.logically_eq(&b)).then(|| format!("{} value differs", a.redis_type().name()))
}

fn expiry_difference(archived: Option<i64>, live: Option<i64>, tolerance: i64) -> Option<String> {
    let show = |e: Option<i64>| {
        e.map_or("none".to_string(), |ms| format!("{ms} ms"))
            .replace(" ms", "")
    };
    match (archived, live) {
        (None, None) => None,
        (Some(a), Some(b)) if (a - b).abs() <= tolerance => None,
        _ => Some(format!(
            "expiry {} in the archive, {} on the server (unix ms)",
            show(archived),
            show(live)
        )),
    }
}

async fn find_extra(
    conn: &mut RedisConn,
    kb_id: &[u8],
    all_kbs: &[Vec<u8>],
    archived: &KeyFingerprints,
    options: &DiffOptions,
    report: &mut DiffReport,
) -> Result<(), RedisIoError> {
    let pattern = kb_scan_pattern(kb_id);
    let mut cursor = 0;
    let mut seen = KeyFingerprints::default();
    // Unmarked keys such as `kb:x:y` belong to kb `kb:x` when the server has
    // one (a key of it with a category marker), as export decides: set them
    // aside until the whole prefix has been scanned.
    let mut learned: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut unmarked = Vec::new();
    let mut extra = |key: Vec<u8>, known: &[Vec<u8>], report: &mut DiffReport| {
        let Some(c) = kato::classify_with(&key, known) else {
            return;
        };
        if c.kb_id != kb_id || !options.selection.selects(kb_id, c.category, &key) {
            return;
        }
        if archived.contains(&key) || !seen.insert(&key) {
            return;
        }
        let category = c.category;
        report.note(
            kb_id,
            category,
            key,
            Kind::Extra,
            "not in the archive".into(),
        );
    };
    loop {
        let (next, keys) = conn.scan_page(cursor, &pattern, 1000).await?;
        for key in keys {
            match kato::classify_with(&key, all_kbs) {
                Some(c)
                    if c.kb_id != kb_id
                        && c.category != Category::Other
                        && !learned.contains(c.kb_id) =>
                {
                    learned.insert(c.kb_id.to_vec());
                }
                Some(c) if c.kb_id != kb_id => {}
                Some(c)
                    if c.category == Category::Other && key[kb_id.len() + 1..].contains(&b':') =>
                {
                    unmarked.push(key)
                }
                Some(_) => extra(key, all_kbs, report),
                None => {}
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut known = all_kbs.to_vec();
    known.extend(learned);
    for key in unmarked {
        extra(key, &known, report);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_tolerance() {
        assert_eq!(expiry_difference(None, None, 100), None);
        assert_eq!(expiry_difference(Some(1000), Some(1050), 100), None);
        assert!(expiry_difference(Some(1000), Some(1200), 100).is_some());
        assert!(expiry_difference(None, Some(1), 100)
            .unwrap()
            .contains("none"));
    }

    #[test]
    fn same_value_in_two_encodings_is_equal() {
        // A hash as listpack (type 16, Redis 7.0 vector) and the same hash as
        // a plain hashtable (type 4) built by hand.
        let listpack = hex(
            "101e1e0000000600826631038276310382663203020182663303f2e0930404ff0a001efbda3a36e72b9e",
        );
        let mut body = vec![3u8];
        for (f, v) in [("f1", "v1"), ("f2", "2"), ("f3", "300000")] {
            body.push(f.len() as u8);
            body.extend_from_slice(f.as_bytes());
            body.push(v.len() as u8);
            body.extend_from_slice(v.as_bytes());
        }
        let hashtable = dump::seal(4, &body, 10);
        assert_eq!(value_difference(&listpack, &hashtable), None);
        let other = dump::seal(0, b"\x02v1", 10);
        assert!(value_difference(&listpack, &other)
            .unwrap()
            .contains("type hash"));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
