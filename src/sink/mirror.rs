/*!
A second home in ClickHouse for the data a rebuild cannot bring back.

`mirror` copies the unrecoverable categories (the key catalogue's
backup-only ones: frequency, emotives, metadata, affinity) of chosen
kb_ids from Redis into `{db}.redis_mirror`:
one row per key with its DUMP payload, type and absolute expiry, exactly
what an archive record holds. The table (created if absent) is a
`ReplacingMergeTree(mirrored_at_ms)` ordered by `(kb_id, category, key)`:
rerunning a mirror inserts new versions of the same logical rows, and the
newest version wins.

Reads dedupe with `SELECT ... FINAL`, which merges versions at query time
(supported by ReplacingMergeTree since long before 18.16, and by current
servers). `argMax(col, mirrored_at_ms) ... GROUP BY key` would do the same
but holds every key of the selection in the server's memory at once, and
needs one argMax per column; FINAL streams in key order.

`kbdump restore --from-clickhouse` reads it back through
`source::mirror`, which feeds the restore engine exactly as an
archive does.

Deleted keys: a plain mirror is an upsert, not a sync. A key deleted from
Redis keeps its last mirrored row, and `restore --from-clickhouse` would
bring it back. `mirror --prune` (`net::mirror::prune`) makes the run a sync for the
kb_ids it mirrored: once every key is written, it deletes those kb_ids'
rows older than the run's start (`mirrored_at_ms < stamp`: the rows of
keys the run no longer found, and the superseded versions of the others)
with `ALTER TABLE ... DELETE`, a mutation (18.16 has them), and waits for
the mutation to finish. A mutation rather than tombstone rows: tombstones
would have to be filtered by every reader and would never shrink the
table. A kb_id that vanished from Redis entirely is only pruned when named
literally with `--kb` (a glob finds nothing to mirror for it).

The payloads are in the source server's RDB format; restore handles
other targets as it does for archives.
*/

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clock::Clock;
use crate::format::dump::payload_type_name;
use crate::format::mirror::{MirrorRow, MIRRORED, MIRROR_TABLE};
use crate::kato::attribute::Attributor;
use crate::kato::{self, keys, Category};
use crate::net::clickhouse::Ch;
use crate::net::mirror::{ensure_table, MirrorError as Error};
use crate::net::pace::{Pace, Pacer};
use crate::net::redis::{Dumped, RedisConn};
use crate::progress::Progress;

/// Keys and payload bytes mirrored per kb_id and category.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MirrorSummary {
    /// Per kb_id (as display text), per category: (keys, bytes).
    pub kbs: BTreeMap<String, BTreeMap<String, (u64, u64)>>,
    /// Keys mirrored.
    pub keys: u64,
    /// Keys that vanished between SCAN and DUMP.
    pub vanished: u64,
    /// When the run started (unix ms): the version of its rows.
    pub started_at_ms: u64,
}

/// Copies the unrecoverable categories of `kb_ids` into the mirror table.
pub async fn mirror(
    conn: &RedisConn,
    ch: &Ch,
    kb_ids: &[Vec<u8>],
    clock: &Clock,
    progress: &dyn Progress,
) -> Result<MirrorSummary, Error> {
    mirror_paced(conn, ch, kb_ids, clock, &Pace::default(), progress).await
}

/// [`mirror`], reading Redis at `pace` (`--max-keys-per-sec`, ...).
pub async fn mirror_paced(
    conn: &RedisConn,
    ch: &Ch,
    kb_ids: &[Vec<u8>],
    clock: &Clock,
    pace: &Pace,
    progress: &dyn Progress,
) -> Result<MirrorSummary, Error> {
    ensure_table(ch).await?;
    let mut summary = MirrorSummary::default();
    let stamp = clock.now_ms() as u64;
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
    Ok(summary)
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
        .insert::<MirrorRow>(MIRROR_TABLE)
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
        insert: &mut clickhouse::insert::Insert<MirrorRow>,
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
        insert: &mut clickhouse::insert::Insert<MirrorRow>,
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
            let row = MirrorRow {
                kb_id: self.kb.to_vec(),
                category: self.category.name().to_string(),
                key,
                redis_type: payload_type_name(&payload).to_string(),
                expire_at_ms: pttl_ms.map(|ms| now + ms),
                payload,
                mirrored_at_ms: self.stamp,
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
