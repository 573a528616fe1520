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

Limits: a key deleted from Redis stays in the mirror (a mirror is an
upsert, not a sync); the payloads are in the source server's RDB format.
*/

use crate::archive::Record;
use crate::clickhouse_io::{Ch, ChError};
use crate::export::{now_ms, payload_type_name};
use crate::kato::{self, Category};
use crate::pattern::escape;
use crate::progress::Progress;
use crate::redis_io::{Dumped, RedisConn, RedisIoError};
use crate::restore::SourceItem;
use crate::selection::Selection;
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::sync::mpsc::{channel, Receiver};
use tokio::task::JoinHandle;

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
        Ok(MirrorReader { cursor, table })
    }

    /// The next record, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Record>, Error> {
        let row = match self.cursor.next().await {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(Error::ClickHouse(ChError::Query {
                    server: String::new(),
                    doing: format!("reading {}", self.table),
                    detail: e.to_string(),
                }))
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

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The kb_ids and categories of the mirror a selection reads.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorScope {
    /// kb_ids to read (empty: all).
    pub kb_ids: Vec<Vec<u8>>,
    /// Categories to read (empty: all mirrored).
    pub categories: Vec<Category>,
}

impl MirrorScope {
    /// Resolves `--kb` globs against the kb_ids in the mirror (literal ids
    /// need no discovery) and keeps the mirrored categories among
    /// `--category`. `None` when the selection cannot match any row.
    pub async fn resolve(ch: &Ch, selection: &Selection) -> Result<Option<Self>, ChError> {
        ch.require_table(MIRROR_TABLE, MIRROR_HINT).await?;
        let categories: Vec<Category> = MIRRORED
            .into_iter()
            .filter(|c| selection.category_selected(*c))
            .collect();
        if categories.is_empty() {
            return Ok(None);
        }
        let categories = if selection.categories.is_empty() {
            Vec::new()
        } else {
            categories
        };
        let kb_ids = match (selection.kbs.is_empty(), selection.literal_kbs()) {
            (true, _) => Vec::new(),
            (false, Some(literal)) => literal,
            (false, None) => {
                let found = mirrored_kb_ids(ch).await?;
                let chosen: Vec<_> = found
                    .into_iter()
                    .filter(|kb| selection.kb_selected(kb))
                    .collect();
                if chosen.is_empty() {
                    return Ok(None);
                }
                chosen
            }
        };
        Ok(Some(MirrorScope { kb_ids, categories }))
    }

    /// Payload bytes of the rows in scope (for restore's memory guard).
    /// Payload bytes and key count of the selection (for the memory guard).
    pub async fn payload_bytes(&self, ch: &Ch) -> Result<(u64, u64), ChError> {
        let sql = format!(
            "SELECT sum(length(payload)), count() FROM ?.redis_mirror FINAL WHERE {}",
            self.filter()
        );
        self.bind(ch.client().query(&sql).bind(ch.db()))
            .fetch_one::<(u64, u64)>()
            .await
            .map_err(|e| ch.error("sizing the mirror", e))
    }

    /// The WHERE condition; [`Self::bind`] binds its values in order.
    fn filter(&self) -> String {
        let mut sql = String::from("1 = 1");
        if !self.kb_ids.is_empty() {
            // Matched as hex: a kb_id is bytes, and a bound string would
            // have to be valid UTF-8.
            sql.push_str(" AND has(?, hex(kb_id))");
        }
        if !self.categories.is_empty() {
            sql.push_str(" AND has(?, category)");
        }
        sql
    }

    fn bind(&self, mut query: clickhouse::query::Query) -> clickhouse::query::Query {
        if !self.kb_ids.is_empty() {
            let kbs: Vec<String> = self.kb_ids.iter().map(|k| hex_upper(k)).collect();
            query = query.bind(kbs);
        }
        if !self.categories.is_empty() {
            let names: Vec<&str> = self.categories.iter().map(|c| c.name()).collect();
            query = query.bind(names);
        }
        query
    }
}

const MIRROR_HINT: &str = "run `kbdump mirror` first, or pass the right ?database=";

/// The distinct kb_ids in the mirror table, as bytes.
async fn mirrored_kb_ids(ch: &Ch) -> Result<Vec<Vec<u8>>, ChError> {
    #[derive(Row, Deserialize)]
    struct KbRow {
        #[serde(with = "serde_bytes")]
        kb_id: Vec<u8>,
    }
    let rows = ch
        .client()
        .query("SELECT DISTINCT kb_id FROM ?.redis_mirror ORDER BY kb_id")
        .bind(ch.db())
        .fetch_all::<KbRow>()
        .await
        .map_err(|e| ch.error("listing kb_ids in the mirror", e))?;
    Ok(rows.into_iter().map(|r| r.kb_id).collect())
}

/// What the mirror source task found once it is done: records sent.
pub type MirrorSourceResult = Result<u64, Error>;

/// Records in flight between the mirror reader and the consumer.
const SOURCE_CHANNEL: usize = 4096;

/// Feeds the restore engine from the mirror table, as an archive source
/// does: the selection's kb_ids (globs resolved against the mirror),
/// categories and key globs. A row with an unknown category is reported
/// as [`SourceItem::Damaged`]; a ClickHouse failure ends the stream and is
/// the task's error.
pub fn spawn_mirror_source(
    ch: Ch,
    selection: Selection,
) -> (Receiver<SourceItem>, JoinHandle<MirrorSourceResult>) {
    let (tx, rx) = channel(SOURCE_CHANNEL);
    let handle = tokio::spawn(async move {
        let Some(scope) = MirrorScope::resolve(&ch, &selection).await? else {
            return Ok(0);
        };
        let mut reader = MirrorReader::open(&ch, &scope.kb_ids, &scope.categories).await?;
        let mut sent = 0;
        loop {
            let item = match reader.next().await {
                Ok(None) => break,
                Ok(Some(r)) if !selection.selects(&r.kb_id, r.category, &r.key) => continue,
                Ok(Some(r)) => SourceItem::Record(r),
                Err(Error::BadRow { table, category }) => SourceItem::Damaged {
                    what: table,
                    reason: format!("row with unknown category {category:?}"),
                },
                Err(e) => return Err(e),
            };
            if tx.send(item).await.is_err() {
                break;
            }
            sent += 1;
        }
        Ok(sent)
    });
    (rx, handle)
}
