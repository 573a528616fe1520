//! Diff: an archive against a live server, per kb_id and category.
//!
//! Equality is logical: two servers may encode one value differently
//! (listpack vs hashtable), so payloads are decoded and compared as values
//! when their bytes differ. Expiry differences are reported on their own.
//!
//! The first keys of each kb_id x category x kind carry their values (the
//! archived one, the live one, or both) in the JSON form of
//! [`crate::format::dump`], so a person sees what changed; the others are
//! only named, which keeps the report's size bounded whatever the data.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{json, Value as Json};
use tokio::sync::mpsc::Receiver;

use crate::clock::Clock;
use crate::fingerprint::KeyFingerprints;
use crate::format::archive::Record;
use crate::format::dump;
use crate::kato::attribute::{Attributed, Attributor, Wanted};
use crate::kato::{self, keys, Category};
use crate::net::redis::{Dumped, RedisConn, RedisIoError};
use crate::progress::Progress;
use crate::records::{Failure, SourceItem};
use crate::selection::Selection;

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

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 4] = [Kind::Missing, Kind::Extra, Kind::Changed, Kind::Expiry];

    /// Whether a key of this kind carries values in the report: an expiry
    /// difference has one value on both sides.
    fn shows_values(self) -> bool {
        self != Kind::Expiry
    }
}

impl DiffCounts {
    /// How many keys differ in this way.
    pub fn of(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Missing => self.missing,
            Kind::Extra => self.extra,
            Kind::Changed => self.changed,
            Kind::Expiry => self.expiry,
        }
    }

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
    /// The archived value (missing and changed keys) as
    /// [`dump::Value::to_json`] gives it, or `{"error": why}` when it does
    /// not decode; only on the first keys of each group (see
    /// [`DiffOptions::values_per_group`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived: Option<Json>,
    /// The live value (changed and extra keys), in the same form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Json>,
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

    /// How many keys differ in this way, over every kb_id and category.
    pub fn count(&self, kind: Kind) -> u64 {
        self.tallies.values().map(|c| c.of(kind)).sum()
    }

    /// Whether any key differs in one of these ways (what `--fail-on`
    /// turns into exit status 1).
    pub fn has_any(&self, kinds: &[Kind]) -> bool {
        kinds.iter().any(|&kind| self.count(kind) > 0)
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
            archived: None,
            live: None,
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
    /// What the archive was made of (its header's selection): a key outside
    /// it is not "extra" on the server, the archive never meant to hold it.
    pub covered: Selection,
    /// Expiries closer than this are equal (the archive's are measured at
    /// export time, with one round trip of uncertainty).
    pub expiry_tolerance_ms: i64,
    pub batch_keys: usize,
    /// "Now", for archived expiries: an archived key whose instant has
    /// passed is expected to be gone.
    pub clock: Clock,
    /// Keys per kb_id x category x kind (in key order) that carry their
    /// values; 0 for none. Bounds the memory the values take and the size
    /// of the report.
    pub values_per_group: usize,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            selection: Selection::default(),
            covered: Selection::default(),
            expiry_tolerance_ms: 2_000,
            batch_keys: 512,
            clock: Clock::system(),
            values_per_group: 5,
        }
    }
}

/// Compares every archived record from `source` with `conn`, then scans the
/// server for selected keys of the archive's kb_ids that the archive lacks,
/// and finally attaches the values of the first keys of each group.
/// `progress` counts the archived keys compared.
pub async fn diff(
    conn: &RedisConn,
    mut source: Receiver<SourceItem>,
    options: &DiffOptions,
    progress: &dyn Progress,
) -> Result<DiffReport, RedisIoError> {
    let mut report = DiffReport::default();
    let mut kept = Kept::new(options.values_per_group);
    let mut archived = KeyFingerprints::default();
    let mut kb_ids = BTreeSet::new();
    let mut groups_read = BTreeSet::new();
    let mut batch = Vec::with_capacity(options.batch_keys);
    let mut conn = conn.clone();
    while let Some(item) = source.recv().await {
        match item {
            SourceItem::Record(record) => {
                archived.insert(&record.key);
                kb_ids.insert(record.kb_id.clone());
                groups_read.insert(kato::Group::of(&record.kb_id, record.category));
                batch.push(record);
                if batch.len() >= options.batch_keys {
                    let full = std::mem::take(&mut batch);
                    compare_batch(&mut conn, full, options, &mut report, &mut kept, progress)
                        .await?;
                }
            }
            SourceItem::Damaged { what, reason } => report.damaged.push(Failure { what, reason }),
            SourceItem::KbDone(_) => {}
        }
    }
    compare_batch(&mut conn, batch, options, &mut report, &mut kept, progress).await?;
    progress.stage("extra keys");
    // Keys outside kb_ids (KATO's global keys, foreign keys) have an empty
    // kb_id; their extras are looked for over the whole keyspace.
    let outside = kb_ids.remove(&Vec::new());
    let kb_ids: Vec<Vec<u8>> = kb_ids.into_iter().collect();
    for kb_id in &kb_ids {
        find_extra(&conn, kb_id, &kb_ids, &archived, options, &mut report).await?;
    }
    if outside {
        let groups = (
            groups_read.contains(&kato::Group::Kato),
            groups_read.contains(&kato::Group::Foreign),
        );
        find_extra_outside(&conn, groups, &archived, options, &mut report).await?;
    }
    report.keys.sort_by(|a, b| {
        (&a.kb_id, a.category, a.kind, &a.key).cmp(&(&b.kb_id, b.category, b.kind, &b.key))
    });
    attach_values(&mut conn, &mut report, kept, options).await?;
    progress.finish();
    Ok(report)
}

async fn compare_batch(
    conn: &mut RedisConn,
    batch: Vec<Record>,
    options: &DiffOptions,
    report: &mut DiffReport,
    kept: &mut Kept,
    progress: &dyn Progress,
) -> Result<(), RedisIoError> {
    if batch.is_empty() {
        return Ok(());
    }
    let keys: Vec<Vec<u8>> = batch.iter().map(|r| r.key.clone()).collect();
    let bytes = batch.iter().map(|r| r.payload.len() as u64).sum();
    let live = conn.dump_keys(&keys).await?;
    let now = options.clock.now_ms();
    let compared = batch.len() as u64;
    for (record, live) in batch.into_iter().zip(live) {
        compare_one(record, live, now, options, report, kept);
    }
    progress.advance(compared, bytes);
    Ok(())
}

fn compare_one(
    record: Record,
    live: Dumped,
    now: i64,
    options: &DiffOptions,
    report: &mut DiffReport,
    kept: &mut Kept,
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
        kept.offer((kb.clone(), cat, Kind::Missing), &record.key, || Payloads {
            archived: Some(record.payload),
            live: None,
        });
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
        kept.offer((kb.clone(), cat, Kind::Changed), &record.key, || Payloads {
            archived: Some(record.payload),
            live: Some(payload),
        });
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

/// A kb_id x category x kind: the unit the report shows the first keys of.
type Group = (Vec<u8>, Category, Kind);

/// The payloads a differing key will show.
#[derive(Debug, Default)]
struct Payloads {
    archived: Option<Vec<u8>>,
    live: Option<Vec<u8>>,
}

/// The payloads of the keys that will carry values: per group, the `limit`
/// smallest keys seen so far. The report lists each group's keys in order,
/// so once every key is seen these are exactly its first keys, and memory
/// stays bounded by `limit` payloads per group whatever the data.
#[derive(Debug)]
struct Kept {
    limit: usize,
    groups: BTreeMap<Group, BTreeMap<Vec<u8>, Payloads>>,
}

impl Kept {
    fn new(limit: usize) -> Kept {
        Kept {
            limit,
            groups: BTreeMap::new(),
        }
    }

    /// Keeps the payloads of `key` (made only then) if it is among the
    /// group's first keys so far.
    fn offer(&mut self, group: Group, key: &[u8], payloads: impl FnOnce() -> Payloads) {
        if self.limit == 0 {
            return;
        }
        let keys = self.groups.entry(group).or_default();
        let full = keys.len() >= self.limit;
        if full
            && keys
                .last_key_value()
                .is_some_and(|(last, _)| key >= last.as_slice())
        {
            return;
        }
        keys.insert(key.to_vec(), payloads());
        if keys.len() > self.limit {
            keys.pop_last();
        }
    }

    fn take(&mut self, group: &Group, key: &[u8]) -> Option<Payloads> {
        self.groups.get_mut(group)?.remove(key)
    }
}

/// Gives the first `values_per_group` keys of each group their values:
/// the kept payloads of missing and changed keys, and a DUMP of the extra
/// ones (only they are read again).
async fn attach_values(
    conn: &mut RedisConn,
    report: &mut DiffReport,
    mut kept: Kept,
    options: &DiffOptions,
) -> Result<(), RedisIoError> {
    let mut shown: BTreeMap<Group, usize> = BTreeMap::new();
    let mut extra = Vec::new();
    for (at, k) in report.keys.iter_mut().enumerate() {
        if !k.kind.shows_values() {
            continue;
        }
        let group = (k.kb_id.clone(), k.category, k.kind);
        let n = shown.entry(group.clone()).or_default();
        if *n >= options.values_per_group {
            continue;
        }
        *n += 1;
        if k.kind == Kind::Extra {
            extra.push(at);
        } else if let Some(p) = kept.take(&group, &k.key) {
            k.archived = p.archived.as_deref().map(value_json);
            k.live = p.live.as_deref().map(value_json);
        }
    }
    for chunk in extra.chunks(options.batch_keys.max(1)) {
        let keys: Vec<&[u8]> = chunk.iter().map(|&at| &report.keys[at].key[..]).collect();
        let dumped = conn.dump_keys(&keys).await?;
        for (&at, dumped) in chunk.iter().zip(dumped) {
            report.keys[at].live = Some(match dumped {
                Dumped::Present { payload, .. } => value_json(&payload),
                Dumped::Vanished => json!({"error": "no longer on the server"}),
            });
        }
    }
    Ok(())
}

/// A payload's value in the JSON form `cat --json` prints, or why it has
/// none.
fn value_json(payload: &[u8]) -> Json {
    match dump::decode(payload) {
        Ok(value) => value.to_json(),
        Err(e) => json!({"error": format!("cannot be decoded: {e}")}),
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
    conn: &RedisConn,
    kb_id: &[u8],
    all_kbs: &[Vec<u8>],
    archived: &KeyFingerprints,
    options: &DiffOptions,
    report: &mut DiffReport,
) -> Result<(), RedisIoError> {
    let mut seen = KeyFingerprints::default();
    // `kb:*` also matches keys of a longer kb_id such as `kb:x`: the
    // attributor decides whom a key belongs to, as export does, holding
    // unmarked keys such as `kb:x:y` until the whole prefix is scanned.
    let mut attributor = Attributor::knowing(all_kbs).wanting([kb_id]);
    let mut extra = |a: Attributed, report: &mut DiffReport| {
        if !options.selection.selects(kb_id, a.category, &a.key)
            || !options.covered.selects(kb_id, a.category, &a.key)
        {
            return;
        }
        if archived.contains(&a.key) || !seen.insert(&a.key) {
            return;
        }
        report.note(
            kb_id,
            a.category,
            a.key,
            Kind::Extra,
            "not in the archive".into(),
        );
    };
    let mut scan = conn.scan(keys::kb_scan_pattern(kb_id), 1000);
    while let Some(page) = scan.next_page().await? {
        for key in page {
            if let Some(a) = attributor.push(key) {
                extra(a, report);
            }
        }
    }
    for a in attributor.finish().attributed {
        extra(a, report);
    }
    // The kb's STM stream does not start with its kb_id.
    let stm = keys::stm_events(kb_id);
    for key in conn.clone().existing(&[stm]).await? {
        let a = Attributed {
            key,
            kb_id: kb_id.to_vec(),
            category: Category::Stm,
        };
        extra(a, report);
    }
    Ok(())
}

/// Extra keys of the groups outside kb_ids that the archive holds
/// (`(kato, foreign)`): a census first lists every kb_id, so the pass over
/// the whole keyspace holds no key.
async fn find_extra_outside(
    conn: &RedisConn,
    (kato, foreign): (bool, bool),
    archived: &KeyFingerprints,
    options: &DiffOptions,
    report: &mut DiffReport,
) -> Result<(), RedisIoError> {
    let census = conn.clone().census(&[]).await?;
    let wanted = Wanted {
        kbs: Some(BTreeSet::new()),
        kato,
        foreign,
    };
    let mut attributor = Attributor::knowing(census.kb_ids()).want(wanted).complete();
    let mut seen = KeyFingerprints::default();
    let mut scan = conn.scan(b"*".to_vec(), 1000);
    while let Some(page) = scan.next_page().await? {
        for a in page.into_iter().filter_map(|key| attributor.push(key)) {
            let selected = options.selection.selects(&a.kb_id, a.category, &a.key);
            if !selected || archived.contains(&a.key) || !seen.insert(&a.key) {
                continue;
            }
            report.note(
                &a.kb_id,
                a.category,
                a.key,
                Kind::Extra,
                "not in the archive".into(),
            );
        }
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

    #[test]
    fn kept_holds_the_first_keys_of_each_group_in_any_arrival_order() {
        let mut kept = Kept::new(2);
        let group = (b"kb".to_vec(), Category::Emotives, Kind::Missing);
        let mut made = Vec::new();
        for key in ["d", "b", "c", "a", "e"] {
            kept.offer(group.clone(), key.as_bytes(), || {
                made.push(key);
                Payloads {
                    archived: Some(key.as_bytes().to_vec()),
                    live: None,
                }
            });
        }
        let keys: Vec<&[u8]> = kept.groups[&group].keys().map(Vec::as_slice).collect();
        assert_eq!(keys, [b"a", b"b"]);
        // Payloads of keys that were never among the first are not made.
        assert_eq!(made, ["d", "b", "c", "a"]);
        let other = (b"kb".to_vec(), Category::Emotives, Kind::Changed);
        kept.offer(other.clone(), b"z", Payloads::default);
        assert_eq!(kept.groups[&other].len(), 1, "groups are bounded apart");

        let mut none = Kept::new(0);
        none.offer(group.clone(), b"a", || panic!("nothing is kept"));
        assert!(none.take(&group, b"a").is_none());
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
