/*!
A second home in ClickHouse for the data a rebuild cannot bring back, with
its history.

`mirror` copies the unrecoverable categories (the key catalogue's
backup-only ones: frequency, emotives, metadata, affinity) of chosen
kb_ids from Redis into `{db}.redis_mirror_versions`
(`format::mirror`): each run appends one row per key it finds, with its
DUMP payload, type and absolute expiry, stamped with the run's start, and
then a tombstone for every key of those kb_ids that was live in the mirror
and that the run did not find. Nothing is overwritten, so the state at any
instant of the kept window can be read back (`restore --from-clickhouse
--as-of`), and a key deleted on purpose stays deleted on a latest restore.

Tombstones are the dangerous part: under `allkeys-lru` an eviction storm
removes keys nobody meant to delete. Before recording them the run counts,
per kb_id and category, what vanished against what was live
(`plan::shrink`); above `--max-shrink` it records none, keeps the versions
of the keys it found, and reports what shrank, so the caller fails the
run. A tombstone is only ever written after a complete pass over the kb_id
(SCAN returns every key present for the whole scan), so a dropped
connection or a failed run never records a false deletion.

`--keep` drops versions older than a window without losing any state inside
it (`net::mirror::keep_since`).

The payloads are in the source server's RDB format; restore handles
other targets as it does for archives.
*/

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clock::Clock;
use crate::format::dump::payload_type_name;
use crate::format::mirror::{VersionRow, MIRRORED, VERSIONS_TABLE};
use crate::kato::attribute::Attributor;
use crate::kato::{self, keys, Category};
use crate::net::clickhouse::Ch;
use crate::net::mirror::{self as queries, Kept, MirrorError as Error, Prepared};
use crate::net::pace::{Pace, Pacer};
use crate::net::redis::{Dumped, RedisConn};
use crate::plan::shrink::{over_limit, Shrink};
use crate::progress::Progress;

/// How a mirror run treats the mirror.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorOptions {
    /// Create the database and table when absent.
    pub create: bool,
    /// The share (percent) of a kb_id x category that may vanish in one
    /// run before its deletions are held back.
    pub max_shrink_percent: f64,
    /// Record the deletions whatever the share.
    pub force: bool,
    /// Drop versions older than this many ms (never a state inside it).
    pub keep_ms: Option<u64>,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        MirrorOptions {
            create: true,
            max_shrink_percent: 10.0,
            force: false,
            keep_ms: None,
        }
    }
}

/// Keys and payload bytes mirrored per kb_id and category.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MirrorSummary {
    /// What opening the mirror found or did.
    pub prepared: Prepared,
    /// Per kb_id (as display text), per category: (keys, bytes).
    pub kbs: BTreeMap<String, BTreeMap<String, (u64, u64)>>,
    /// Keys mirrored.
    pub keys: u64,
    /// Keys that vanished between SCAN and DUMP.
    pub vanished: u64,
    /// When the run started (unix ms): the version of its rows.
    pub started_at_ms: u64,
    /// Keys gone since the previous state, per kb_id and category.
    pub shrinks: Vec<Shrink>,
    /// The groups that shrank by more than the limit; when not empty (and
    /// not forced) no tombstone was recorded.
    pub held_back: Vec<Shrink>,
    /// Tombstones recorded.
    pub deleted: u64,
    /// What `--keep` dropped.
    pub kept: Option<Kept>,
}

impl MirrorSummary {
    /// Whether the run held back deletions because a group shrank too much.
    pub fn shrank_too_much(&self) -> bool {
        !self.held_back.is_empty()
    }
}

/// Copies the unrecoverable categories of `kb_ids` into the mirror table,
/// with the default options.
pub async fn mirror(
    conn: &RedisConn,
    ch: &Ch,
    kb_ids: &[Vec<u8>],
    clock: &Clock,
    progress: &dyn Progress,
) -> Result<MirrorSummary, Error> {
    let options = MirrorOptions::default();
    mirror_paced(
        conn,
        ch,
        kb_ids,
        clock,
        (&options, &Pace::default()),
        progress,
    )
    .await
}

/// [`mirror`] with `options`, reading Redis at `pace` (`--max-keys-per-sec`,
/// ...).
pub async fn mirror_paced(
    conn: &RedisConn,
    ch: &Ch,
    kb_ids: &[Vec<u8>],
    clock: &Clock,
    (options, pace): (&MirrorOptions, &Pace),
    progress: &dyn Progress,
) -> Result<MirrorSummary, Error> {
    let mut summary = MirrorSummary {
        prepared: queries::prepare(ch, options.create).await?,
        ..MirrorSummary::default()
    };
    let stamp = queries::next_stamp(ch, clock.now_ms() as u64).await?;
    summary.started_at_ms = stamp;
    let mut pacer = pace.pacer(clock);
    for kb in kb_ids {
        for category in MIRRORED {
            progress.stage(&format!("{} {}", kato::display_bytes(kb), category.name()));
            let reading = Reading {
                pace,
                pacer: &mut pacer,
            };
            mirror_one(
                conn,
                ch,
                kb,
                kb_ids,
                category,
                (stamp, clock, reading),
                &mut summary,
                progress,
            )
            .await?;
        }
    }
    progress.finish();
    record_deletions(ch, kb_ids, options, &mut summary).await?;
    if let Some(keep) = options.keep_ms {
        let cutoff = stamp.saturating_sub(keep);
        summary.kept = Some(queries::keep_since(ch, kb_ids, cutoff).await?);
    }
    Ok(summary)
}

/// Counts what vanished per kb_id and category and records the tombstones,
/// unless a group shrank by more than the limit (and the run is not
/// forced).
async fn record_deletions(
    ch: &Ch,
    kb_ids: &[Vec<u8>],
    options: &MirrorOptions,
    summary: &mut MirrorSummary,
) -> Result<(), Error> {
    let stamp = summary.started_at_ms;
    for kb in kb_ids {
        let found = queries::shrinks(ch, kb, stamp).await?;
        summary
            .shrinks
            .extend(found.into_iter().filter(|s| s.gone > 0));
    }
    if !options.force {
        summary.held_back = over_limit(&summary.shrinks, options.max_shrink_percent);
        if summary.shrank_too_much() {
            return Ok(());
        }
    }
    summary.deleted = queries::record_tombstones(ch, kb_ids, stamp).await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn mirror_one(
    conn: &RedisConn,
    ch: &Ch,
    kb: &[u8],
    known: &[Vec<u8>],
    category: Category,
    (stamp, clock, reading): (u64, &Clock, Reading<'_>),
    summary: &mut MirrorSummary,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let client = ch.client().clone().with_database(ch.target().database());
    let mut insert = client
        .insert::<VersionRow>(VERSIONS_TABLE)
        .await
        .map_err(|e| ch.error("starting the mirror insert", e))?;
    let mut run = Run {
        conn: conn.clone(),
        kb,
        category,
        stamp,
        clock,
        reading,
        summary,
        progress,
    };
    run.summary
        .kbs
        .entry(kato::display_bytes(kb))
        .or_default()
        .entry(category.name().to_string())
        .or_default();
    // SCAN MATCH may also return keys that belong elsewhere (a kb_id that
    // holds a marker itself); the attributor keeps `kb`'s keys.
    let mut attributor = Attributor::knowing(known).wanting([kb]);
    for pattern in keys::category_scan_patterns(kb, category) {
        let mut scan = conn.scan(pattern, 1000);
        while let Some(page) = run.reading.pace.patience.next_page(&mut scan).await? {
            let keys = page
                .into_iter()
                .filter_map(|key| attributor.push(key))
                .filter(|a| a.category == category)
                .map(|a| a.key)
                .collect();
            run.write(ch, &mut insert, keys).await?;
        }
    }
    let late = attributor.finish().attributed;
    let keys = late
        .into_iter()
        .filter(|a| a.category == category)
        .map(|a| a.key)
        .collect();
    run.write(ch, &mut insert, keys).await?;
    insert
        .end()
        .await
        .map_err(|e| ch.error("inserting mirror rows", e))?;
    Ok(())
}

/// One (kb_id, category) being mirrored.
struct Run<'a> {
    conn: RedisConn,
    kb: &'a [u8],
    category: Category,
    stamp: u64,
    /// "Now", to turn each key's PTTL into an absolute expiry.
    clock: &'a Clock,
    reading: Reading<'a>,
    summary: &'a mut MirrorSummary,
    progress: &'a dyn Progress,
}

/// The pace of the Redis reads: limits and patience, and the pacer shared
/// by every (kb_id, category) of the run.
struct Reading<'a> {
    pace: &'a Pace,
    pacer: &'a mut Pacer,
}

impl Run<'_> {
    /// DUMPs `keys` in pipelines the pace lets through, and inserts a row
    /// for each key that is still there.
    async fn write(
        &mut self,
        ch: &Ch,
        insert: &mut clickhouse::insert::Insert<VersionRow>,
        mut keys: Vec<Vec<u8>>,
    ) -> Result<(), Error> {
        // An empty pipeline is an error.
        while !keys.is_empty() {
            let n = self.reading.pacer.batch_keys(keys.len());
            let rest = keys.split_off(n.min(keys.len()));
            self.reading.pacer.before_read(keys.len()).await;
            let dumped = self
                .reading
                .pace
                .patience
                .dump_keys(&self.conn, &keys)
                .await?;
            let bytes = dumped.iter().map(dumped_bytes).sum();
            self.reading.pacer.after_read(keys.len(), bytes);
            self.insert_rows(ch, insert, std::mem::replace(&mut keys, rest), dumped)
                .await?;
        }
        Ok(())
    }

    /// Inserts a row for each key that was still there when dumped.
    async fn insert_rows(
        &mut self,
        ch: &Ch,
        insert: &mut clickhouse::insert::Insert<VersionRow>,
        keys: Vec<Vec<u8>>,
        dumped: Vec<Dumped>,
    ) -> Result<(), Error> {
        let now = self.clock.now_ms();
        let (mut n, mut bytes) = (0, 0);
        for (key, d) in keys.into_iter().zip(dumped) {
            let Dumped::Present { payload, pttl_ms } = d else {
                self.summary.vanished += 1;
                continue;
            };
            n += 1;
            bytes += payload.len() as u64;
            let row = VersionRow {
                kb_id: self.kb.to_vec(),
                category: self.category.name().to_string(),
                key,
                redis_type: payload_type_name(&payload).to_string(),
                expire_at_ms: pttl_ms.map(|ms| now + ms),
                payload,
                observed_at_ms: self.stamp,
                deleted: 0,
            };
            insert
                .write(&row)
                .await
                .map_err(|e| ch.error("inserting mirror rows", e))?;
        }
        let entry = self
            .summary
            .kbs
            .entry(kato::display_bytes(self.kb))
            .or_default();
        let slot = entry.entry(self.category.name().to_string()).or_default();
        slot.0 += n;
        slot.1 += bytes;
        self.summary.keys += n;
        self.progress.advance(n, bytes);
        Ok(())
    }
}

fn dumped_bytes(dumped: &Dumped) -> u64 {
    match dumped {
        Dumped::Present { payload, .. } => payload.len() as u64,
        Dumped::Vanished => 0,
    }
}
