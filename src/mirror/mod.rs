/*!
A second home in ClickHouse for the data a rebuild cannot bring back.

`mirror` copies the unrecoverable categories (frequency, emotives,
metadata, affinity) of chosen kb_ids from Redis into `{db}.redis_mirror`:
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
[`spawn_mirror_source`], which feeds the restore engine exactly as an
archive does.

Deleted keys: a plain mirror is an upsert, not a sync. A key deleted from
Redis keeps its last mirrored row, and `restore --from-clickhouse` would
bring it back. `mirror --prune` ([`prune`]) makes the run a sync for the
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

mod source;

use source::MIRROR_HINT;
pub use source::{spawn_mirror_source, MirrorScope, MirrorSourceResult};

use crate::archive::Record;
use crate::clickhouse_io::{Ch, ChError};
use crate::export::{now_ms, payload_type_name};
use crate::kato::{self, Category};
use crate::pattern::escape;
use crate::progress::Progress;
use crate::redis_io::{Dumped, RedisConn, RedisIoError};
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Name of the mirror table.
pub const MIRROR_TABLE: &str = "redis_mirror";

/// The categories a mirror copies: the ones ClickHouse cannot rebuild.
pub const MIRRORED: [Category; 4] = [
    Category::Frequency,
    Category::Emotives,
    Category::Metadata,
    Category::Affinity,
];

/// Errors of mirror and its reader.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// ClickHouse failed.
    #[error(transparent)]
    ClickHouse(#[from] ChError),
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] RedisIoError),
    /// A row of the mirror table holds a category this tool does not know.
    #[error("ClickHouse table {table} holds a row with unknown category {category:?}")]
    BadRow {
        /// `database.table`.
        table: String,
        /// The value found.
        category: String,
    },
}

/// One row of the mirror table.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct MirrorRow {
    /// The kb_id, as bytes.
    #[serde(with = "serde_bytes")]
    pub kb_id: Vec<u8>,
    /// Category name (`frequency`, ...).
    pub category: String,
    /// The key, as bytes.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// Redis type name.
    #[serde(rename = "type")]
    pub redis_type: String,
    /// DUMP payload.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Absolute expiry in unix ms, or none.
    pub expire_at_ms: Option<i64>,
    /// When it was mirrored (unix ms): the ReplacingMergeTree version.
    pub mirrored_at_ms: u64,
}

/// Creates the database and the mirror table when absent.
pub async fn ensure_table(ch: &Ch) -> Result<(), ChError> {
    let db = ch.db();
    ch.client()
        .query("CREATE DATABASE IF NOT EXISTS ?")
        .bind(db)
        .execute()
        .await
        .map_err(|e| ch.error("creating the database", e))?;
    ch.client()
        .query(
            "CREATE TABLE IF NOT EXISTS ?.redis_mirror (kb_id String, category String, \
             key String, type String, payload String, expire_at_ms Nullable(Int64), \
             mirrored_at_ms UInt64) ENGINE = ReplacingMergeTree(mirrored_at_ms) \
             ORDER BY (kb_id, category, key)",
        )
        .bind(ch.db())
        .execute()
        .await
        .map_err(|e| ch.error("creating the mirror table", e))
}

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
    progress: &dyn Progress,
) -> Result<MirrorSummary, Error> {
    ensure_table(ch).await?;
    let mut summary = MirrorSummary::default();
    let stamp = now_ms() as u64;
    summary.started_at_ms = stamp;
    for kb in kb_ids {
        for category in MIRRORED {
            progress.stage(&format!("{} {}", kato::display_bytes(kb), category.name()));
            mirror_one(
                conn,
                ch,
                kb,
                kb_ids,
                category,
                stamp,
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
    stamp: u64,
    summary: &mut MirrorSummary,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let mut conn = conn.clone();
    let pattern = [
        escape(kb).as_slice(),
        b":",
        category.name().as_bytes(),
        b":*",
    ]
    .concat();
    let client = ch.client().clone().with_database(ch.target().database());
    let mut insert = client
        .insert::<MirrorRow>(MIRROR_TABLE)
        .await
        .map_err(|e| ch.error("starting the mirror insert", e))?;
    let mut cursor = 0;
    loop {
        let (next, keys) = conn.scan_page(cursor, &pattern, 1000).await?;
        let keys: Vec<Vec<u8>> = keys
            .into_iter()
            .filter(|k| belongs(k, kb, known, category))
            .collect();
        // SCAN pages may be empty, and an empty pipeline is an error.
        let dumped = if keys.is_empty() {
            Vec::new()
        } else {
            conn.dump_keys(&keys).await?
        };
        let now = now_ms();
        let (mut n, mut bytes) = (0, 0);
        for (key, d) in keys.into_iter().zip(dumped) {
            let Dumped::Present { payload, pttl_ms } = d else {
                summary.vanished += 1;
                continue;
            };
            n += 1;
            bytes += payload.len() as u64;
            let row = MirrorRow {
                kb_id: kb.to_vec(),
                category: category.name().to_string(),
                key,
                redis_type: payload_type_name(&payload).to_string(),
                expire_at_ms: pttl_ms.map(|ms| now + ms),
                payload,
                mirrored_at_ms: stamp,
            };
            insert
                .write(&row)
                .await
                .map_err(|e| ch.error("inserting mirror rows", e))?;
        }
        let entry = summary.kbs.entry(kato::display_bytes(kb)).or_default();
        let slot = entry.entry(category.name().to_string()).or_default();
        slot.0 += n;
        slot.1 += bytes;
        summary.keys += n;
        progress.advance(n, bytes);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    insert
        .end()
        .await
        .map_err(|e| ch.error("inserting mirror rows", e))?;
    Ok(())
}

/// Deletes the mirror rows of `kb_ids` older than `before_ms` (the
/// `started_at_ms` of a complete mirror run of those kb_ids) and waits for
/// the deletion to finish. Returns the number of keys dropped: those whose
/// newest row was older.
pub async fn prune(ch: &Ch, kb_ids: &[Vec<u8>], before_ms: u64) -> Result<u64, ChError> {
    if kb_ids.is_empty() {
        return Ok(0);
    }
    let scope = MirrorScope {
        kb_ids: kb_ids.to_vec(),
        categories: Vec::new(),
    };
    let count_sql = format!(
        "SELECT count() FROM (SELECT kb_id, category, key FROM ?.redis_mirror WHERE {} \
         GROUP BY kb_id, category, key HAVING max(mirrored_at_ms) < ?)",
        scope.filter()
    );
    let gone: u64 = scope
        .bind(ch.client().query(&count_sql).bind(ch.db()))
        .bind(before_ms)
        .fetch_one()
        .await
        .map_err(|e| ch.error("counting keys to prune", e))?;
    let delete_sql = format!(
        "ALTER TABLE ?.redis_mirror DELETE WHERE {} AND mirrored_at_ms < ?",
        scope.filter()
    );
    scope
        .bind(ch.client().query(&delete_sql).bind(ch.db()))
        .bind(before_ms)
        .execute()
        .await
        .map_err(|e| ch.error("pruning the mirror", e))?;
    wait_for_mutations(ch).await?;
    Ok(gone)
}

/// Polls `system.mutations` until no mutation of the mirror table is
/// pending (18.16 has no `mutations_sync`).
async fn wait_for_mutations(ch: &Ch) -> Result<(), ChError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        let pending: u64 = ch
            .client()
            .query(
                "SELECT count() FROM system.mutations \
                 WHERE database = ? AND table = ? AND is_done = 0",
            )
            .bind(ch.target().database())
            .bind(MIRROR_TABLE)
            .fetch_one()
            .await
            .map_err(|e| ch.error("waiting for the prune to finish", e))?;
        if pending == 0 {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(ChError::Query {
                server: ch.target().server().to_string(),
                doing: "waiting for the prune to finish".into(),
                detail: format!("{pending} mutations still pending after 10 minutes"),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// SCAN MATCH may also return keys of another kb_id whose name extends
/// this one's; keep only keys that classify to `kb` and `category`.
fn belongs(key: &[u8], kb: &[u8], known: &[Vec<u8>], category: Category) -> bool {
    kato::classify_with(key, known).is_some_and(|c| c.kb_id == kb && c.category == category)
}

/// Streams archive-like [`Record`]s from the mirror table, deduplicated
/// with `FINAL`, ordered by (kb_id, category, key).
pub struct MirrorReader {
    cursor: clickhouse::query::RowCursor<MirrorRow>,
    table: String,
    ch: Ch,
}

impl MirrorReader {
    /// Opens a read of the mirror for the given kb_ids and categories
    /// (each empty = all).
    pub async fn open(
        ch: &Ch,
        kb_ids: &[Vec<u8>],
        categories: &[Category],
    ) -> Result<Self, ChError> {
        ch.require_table(MIRROR_TABLE, MIRROR_HINT).await?;
        let scope = MirrorScope {
            kb_ids: kb_ids.to_vec(),
            categories: categories.to_vec(),
        };
        let sql = format!(
            "SELECT kb_id, category, key, type, payload, expire_at_ms, mirrored_at_ms \
             FROM ?.redis_mirror FINAL WHERE {} ORDER BY kb_id, category, key",
            scope.filter()
        );
        let query = scope.bind(ch.client().query(&sql).bind(ch.db()));
        let cursor = query
            .fetch::<MirrorRow>()
            .map_err(|e| ch.error("reading the mirror", e))?;
        let table = format!("{}.{MIRROR_TABLE}", ch.target().database());
        Ok(MirrorReader {
            cursor,
            table,
            ch: ch.clone(),
        })
    }

    /// The next record, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Record>, Error> {
        let row = match self.cursor.next().await {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(None),
            Err(e) => {
                let doing = format!("reading {}", self.table);
                return Err(Error::ClickHouse(self.ch.error(&doing, e)));
            }
        };
        let category = row
            .category
            .parse::<Category>()
            .map_err(|_| Error::BadRow {
                table: self.table.clone(),
                category: row.category.clone(),
            })?;
        Ok(Some(Record {
            key: row.key,
            kb_id: row.kb_id,
            category,
            redis_type: row.redis_type,
            expire_at_ms: row.expire_at_ms,
            payload: row.payload,
        }))
    }
}
