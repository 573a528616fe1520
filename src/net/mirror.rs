//! Queries on the ClickHouse mirror (layout in [`crate::format::mirror`]):
//! opening it for a run or a read, the scope a selection reads, the state
//! of keys at an instant, tombstones and the shrink guard's counts, and
//! dropping versions older than a window.

use clickhouse::Row;
use serde::Deserialize;

use crate::format::archive::Record;
use crate::format::mirror::{
    state_at_sql, Layout, VersionRow, CREATE_VERSIONS_SQL, IMPORT_LEGACY_SQL, LEGACY_TABLE,
    MIRRORED, MIRROR_HINT, VERSIONS_TABLE,
};
use crate::kato::{self, Category};
use crate::net::clickhouse::{Ch, ChError};
use crate::net::redis::RedisIoError;
use crate::plan::shrink::Shrink;
use crate::selection::Selection;

/// Errors of mirror and its reader.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
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

/// What opening the mirror for a run found or did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Prepared {
    /// The database was created (`--create`).
    pub created_database: bool,
    /// The versioned table was created.
    pub created_table: bool,
    /// Rows copied from the first layout's table, when it was converted.
    pub imported_legacy_rows: Option<u64>,
    /// The database holds KATO's `patterns_data`.
    pub has_patterns: bool,
}

const CREATE_HINT: &str = "pass the right ?database= in --clickhouse, or --create for the first \
                           mirror run into a new database";

/// Opens the mirror of the URL's database for writing. A database or a
/// table that does not exist is an error unless `create` (a `?database=`
/// typo must not start a new, empty mirror); a database that holds only
/// the first layout's table is converted (its rows become versions).
pub async fn prepare(ch: &Ch, create: bool) -> Result<Prepared, ChError> {
    let mut prepared = Prepared::default();
    if !ch.has_database().await? {
        if !create {
            ch.require_database(CREATE_HINT).await?;
        }
        execute(
            ch,
            "CREATE DATABASE IF NOT EXISTS ?",
            "creating the database",
        )
        .await?;
        prepared.created_database = true;
    }
    if !ch.has_table(VERSIONS_TABLE).await? {
        let legacy = ch.has_table(LEGACY_TABLE).await?;
        if !legacy && !create {
            ch.require_table(VERSIONS_TABLE, CREATE_HINT).await?;
        }
        execute(ch, CREATE_VERSIONS_SQL, "creating the mirror table").await?;
        prepared.created_table = true;
        if legacy {
            prepared.imported_legacy_rows = Some(import_legacy(ch).await?);
        }
    }
    prepared.has_patterns = ch.has_table("patterns_data").await?;
    Ok(prepared)
}

async fn execute(ch: &Ch, sql: &str, doing: &str) -> Result<(), ChError> {
    ch.client()
        .query(sql)
        .bind(ch.db())
        .execute()
        .await
        .map_err(|e| ch.error(doing, e))
}

async fn import_legacy(ch: &Ch) -> Result<u64, ChError> {
    ch.client()
        .query(IMPORT_LEGACY_SQL)
        .bind(ch.db())
        .bind(ch.db())
        .execute()
        .await
        .map_err(|e| ch.error("copying redis_mirror into the versioned table", e))?;
    count(
        ch,
        "SELECT count() FROM ?.redis_mirror_versions",
        "counting copied rows",
    )
    .await
}

async fn count(ch: &Ch, sql: &str, doing: &str) -> Result<u64, ChError> {
    ch.client()
        .query(sql)
        .bind(ch.db())
        .fetch_one()
        .await
        .map_err(|e| ch.error(doing, e))
}

/// The layout of an existing mirror, for reading: the versioned table, or
/// else the first layout's. Neither is [`ChError::MissingTable`] (or
/// [`ChError::MissingDatabase`]).
pub async fn layout(ch: &Ch) -> Result<Layout, ChError> {
    ch.require_database(MIRROR_HINT).await?;
    if ch.has_table(VERSIONS_TABLE).await? {
        return Ok(Layout::Versioned);
    }
    if ch.has_table(LEGACY_TABLE).await? {
        return Ok(Layout::Legacy);
    }
    ch.require_table(VERSIONS_TABLE, MIRROR_HINT).await?;
    Ok(Layout::Versioned)
}

/// The stamp of a new run: now, or one past the newest row when the clock
/// is behind it (a clock that stepped back must not make a new version
/// older than the one it replaces).
pub async fn next_stamp(ch: &Ch, now_ms: u64) -> Result<u64, ChError> {
    let newest = count(
        ch,
        "SELECT max(observed_at_ms) FROM ?.redis_mirror_versions",
        "reading the newest version",
    )
    .await?;
    Ok(now_ms.max(newest + 1))
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
    /// The scope of one kb_id, every category.
    pub fn kb(kb_id: &[u8]) -> Self {
        MirrorScope {
            kb_ids: vec![kb_id.to_vec()],
            categories: Vec::new(),
        }
    }

    /// Resolves `--kb` globs against the kb_ids in the mirror (literal ids
    /// need no discovery) and keeps the mirrored categories among
    /// `--category`. `None` when the selection cannot match any row.
    pub async fn resolve(
        ch: &Ch,
        layout: Layout,
        selection: &Selection,
    ) -> Result<Option<Self>, ChError> {
        // The mirror holds kb_ids' keys only (`--global`, `--foreign`
        // without `--kb` select none of them).
        if !selection.group_selected(crate::kato::Group::Kb) {
            return Ok(None);
        }
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
                let found = mirrored_kb_ids(ch, layout).await?;
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

    /// Payload bytes and key count of the keys in scope as they were at
    /// `at_ms` (for restore's memory guard, which charges a per-key
    /// overhead too).
    pub async fn payload_bytes(
        &self,
        ch: &Ch,
        layout: Layout,
        at_ms: u64,
    ) -> Result<(u64, u64), ChError> {
        let sql = format!(
            "SELECT sum(length(v_payload)), count() FROM ({})",
            state_at_sql(layout, &self.filter())
        );
        self.bind(ch.client().query(&sql).bind(ch.db()))
            .bind(at_ms)
            .fetch_one::<(u64, u64)>()
            .await
            .map_err(|e| {
                let doing = format!("sizing the mirror {}", layout.table(ch.target().database()));
                ch.error(&doing, e)
            })
    }

    /// The WHERE condition; [`Self::bind`] binds its values in order.
    pub fn filter(&self) -> String {
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

    pub fn bind(&self, mut query: clickhouse::query::Query) -> clickhouse::query::Query {
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

/// The distinct kb_ids in the mirror, as bytes (tombstoned kb_ids
/// included: an `--as-of` may reach them).
pub async fn mirrored_kb_ids(ch: &Ch, layout: Layout) -> Result<Vec<Vec<u8>>, ChError> {
    #[derive(Row, Deserialize)]
    struct KbRow {
        #[serde(with = "serde_bytes")]
        kb_id: Vec<u8>,
    }
    let sql = format!(
        "SELECT DISTINCT kb_id FROM {} ORDER BY kb_id",
        layout.source()
    );
    let rows = ch
        .client()
        .query(&sql)
        .bind(ch.db())
        .fetch_all::<KbRow>()
        .await
        .map_err(|e| ch.error("listing kb_ids in the mirror", e))?;
    Ok(rows.into_iter().map(|r| r.kb_id).collect())
}

/// Appends `rows` to the versioned table in one insert.
pub async fn insert_versions(ch: &Ch, rows: &[VersionRow]) -> Result<(), ChError> {
    let client = ch.client().clone().with_database(ch.target().database());
    let mut insert = client
        .insert::<VersionRow>(VERSIONS_TABLE)
        .await
        .map_err(|e| ch.error("starting the mirror insert", e))?;
    for row in rows {
        insert
            .write(row)
            .await
            .map_err(|e| ch.error("inserting mirror rows", e))?;
    }
    insert
        .end()
        .await
        .map_err(|e| ch.error("inserting mirror rows", e))
}

/// Per category of `kb_id`: the keys live in the mirror before the run
/// stamped `stamp`, and how many of them the run did not see (the
/// tombstones it would record).
pub async fn shrinks(ch: &Ch, kb_id: &[u8], stamp: u64) -> Result<Vec<Shrink>, ChError> {
    let scope = MirrorScope::kb(kb_id);
    let sql = format!(
        "SELECT category, countIf(prev_at > 0 AND prev_deleted = 0), \
         countIf(prev_at > 0 AND prev_deleted = 0 AND last_at < ?) \
         FROM (SELECT category, key, maxIf(observed_at_ms, observed_at_ms < ?) AS prev_at, \
         argMaxIf(deleted, observed_at_ms, observed_at_ms < ?) AS prev_deleted, \
         max(observed_at_ms) AS last_at FROM ?.redis_mirror_versions WHERE {} \
         GROUP BY category, key) GROUP BY category ORDER BY category",
        scope.filter()
    );
    let query = ch.client().query(&sql).bind(stamp).bind(stamp).bind(stamp);
    let rows: Vec<(String, u64, u64)> = scope
        .bind(query.bind(ch.db()))
        .fetch_all()
        .await
        .map_err(|e| ch.error("counting keys gone since the last mirror run", e))?;
    Ok(rows
        .into_iter()
        .map(|(category, before, gone)| Shrink {
            kb_id: kato::display_bytes(kb_id),
            category,
            before,
            gone,
        })
        .collect())
}

/// Records a tombstone, stamped `stamp`, for every key of `kb_ids` that
/// is live in the mirror but was not seen by the run stamped `stamp`.
/// Returns the number recorded.
pub async fn record_tombstones(ch: &Ch, kb_ids: &[Vec<u8>], stamp: u64) -> Result<u64, ChError> {
    if kb_ids.is_empty() {
        return Ok(0);
    }
    let scope = MirrorScope {
        kb_ids: kb_ids.to_vec(),
        categories: Vec::new(),
    };
    let insert = format!(
        "INSERT INTO ?.redis_mirror_versions SELECT kb_id, category, key, '', '', \
         CAST(NULL AS Nullable(Int64)), toUInt64(?), toUInt8(1) \
         FROM ?.redis_mirror_versions WHERE {} GROUP BY kb_id, category, key \
         HAVING max(observed_at_ms) < ? AND argMax(deleted, observed_at_ms) = 0",
        scope.filter()
    );
    let query = ch
        .client()
        .query(&insert)
        .bind(ch.db())
        .bind(stamp)
        .bind(ch.db());
    scope
        .bind(query)
        .bind(stamp)
        .execute()
        .await
        .map_err(|e| ch.error("recording deleted keys", e))?;
    let sql = format!(
        "SELECT count() FROM ?.redis_mirror_versions WHERE {} AND deleted = 1 \
         AND observed_at_ms = ?",
        scope.filter()
    );
    scope
        .bind(ch.client().query(&sql).bind(ch.db()))
        .bind(stamp)
        .fetch_one()
        .await
        .map_err(|e| ch.error("counting deleted keys", e))
}

/// What dropping versions older than the window did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Kept {
    /// The instant from which every state is still there (unix ms): the
    /// newest version at or before the window's start.
    pub from_ms: u64,
    /// Versions dropped.
    pub dropped: u64,
    /// Keys whose state at `from_ms` was written again at `from_ms`,
    /// because their version was older.
    pub carried: u64,
}

/// Drops the versions of `kb_ids` older than `cutoff_ms`, keeping the state
/// of every key at every instant from the cutoff on: the cutoff moves back
/// to the newest version at or before it, and a key live then whose
/// version is older gets it written again at that instant (its last live
/// version is never dropped). Waits for the deletion to finish.
pub async fn keep_since(ch: &Ch, kb_ids: &[Vec<u8>], cutoff_ms: u64) -> Result<Kept, ChError> {
    let mut kept = Kept::default();
    for kb in kb_ids {
        let one = keep_one(ch, &MirrorScope::kb(kb), cutoff_ms).await?;
        kept.dropped += one.dropped;
        kept.carried += one.carried;
        kept.from_ms = kept.from_ms.max(one.from_ms);
    }
    if kept.dropped > 0 {
        wait_for_mutations(ch).await?;
    }
    Ok(kept)
}

async fn keep_one(ch: &Ch, scope: &MirrorScope, cutoff_ms: u64) -> Result<Kept, ChError> {
    let table = "?.redis_mirror_versions";
    let sql = format!(
        "SELECT max(observed_at_ms) FROM {table} WHERE {} AND observed_at_ms <= ?",
        scope.filter()
    );
    let from: u64 = scope
        .bind(ch.client().query(&sql).bind(ch.db()))
        .bind(cutoff_ms)
        .fetch_one()
        .await
        .map_err(|e| ch.error("finding the start of the kept window", e))?;
    let sql = format!(
        "SELECT count() FROM {table} WHERE {} AND observed_at_ms < ?",
        scope.filter()
    );
    let dropped: u64 = scope
        .bind(ch.client().query(&sql).bind(ch.db()))
        .bind(from)
        .fetch_one()
        .await
        .map_err(|e| ch.error("counting versions to drop", e))?;
    if dropped == 0 {
        return Ok(Kept {
            from_ms: from,
            ..Kept::default()
        });
    }
    let carried = carry_state(ch, scope, from).await?;
    let sql = format!(
        "ALTER TABLE {table} DELETE WHERE {} AND observed_at_ms < ?",
        scope.filter()
    );
    scope
        .bind(ch.client().query(&sql).bind(ch.db()))
        .bind(from)
        .execute()
        .await
        .map_err(|e| ch.error("dropping old versions", e))?;
    Ok(Kept {
        from_ms: from,
        dropped,
        carried,
    })
}

/// Writes, at `at_ms`, the state at `at_ms` of each key live then whose
/// newest version is older; returns how many.
async fn carry_state(ch: &Ch, scope: &MirrorScope, at_ms: u64) -> Result<u64, ChError> {
    let before = count_at(ch, scope, at_ms).await?;
    let sql = format!(
        "INSERT INTO ?.redis_mirror_versions SELECT kb_id, category, key, \
         argMax(type, observed_at_ms), argMax(payload, observed_at_ms), \
         argMax(expire_at_ms, observed_at_ms), toUInt64(?), toUInt8(0) \
         FROM ?.redis_mirror_versions WHERE {} AND observed_at_ms <= ? \
         GROUP BY kb_id, category, key \
         HAVING max(observed_at_ms) < ? AND argMax(deleted, observed_at_ms) = 0",
        scope.filter()
    );
    let query = ch
        .client()
        .query(&sql)
        .bind(ch.db())
        .bind(at_ms)
        .bind(ch.db());
    scope
        .bind(query)
        .bind(at_ms)
        .bind(at_ms)
        .execute()
        .await
        .map_err(|e| ch.error("carrying versions into the kept window", e))?;
    Ok(count_at(ch, scope, at_ms).await? - before)
}

async fn count_at(ch: &Ch, scope: &MirrorScope, at_ms: u64) -> Result<u64, ChError> {
    let sql = format!(
        "SELECT count() FROM ?.redis_mirror_versions WHERE {} AND observed_at_ms = ?",
        scope.filter()
    );
    scope
        .bind(ch.client().query(&sql).bind(ch.db()))
        .bind(at_ms)
        .fetch_one()
        .await
        .map_err(|e| ch.error("counting versions", e))
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
            .bind(VERSIONS_TABLE)
            .fetch_one()
            .await
            .map_err(|e| ch.error("waiting for old versions to be dropped", e))?;
        if pending == 0 {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(ChError::Query {
                server: ch.target().server().to_string(),
                doing: "waiting for old versions to be dropped".into(),
                detail: format!("{pending} mutations still pending after 10 minutes"),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Streams archive-like [`Record`]s of the mirror's state at an instant,
/// ordered by (kb_id, category, key).
pub struct MirrorReader {
    cursor: clickhouse::query::RowCursor<VersionRow>,
    table: String,
    ch: Ch,
}

impl MirrorReader {
    /// Opens a read of the latest state of the given kb_ids and categories
    /// (each empty = all).
    pub async fn open(
        ch: &Ch,
        kb_ids: &[Vec<u8>],
        categories: &[Category],
    ) -> Result<Self, ChError> {
        let layout = layout(ch).await?;
        let scope = MirrorScope {
            kb_ids: kb_ids.to_vec(),
            categories: categories.to_vec(),
        };
        Self::open_at(ch, layout, &scope, u64::MAX)
    }

    /// Opens a read of the state of `scope` at `at_ms`: each key's newest
    /// version observed at or before it, keys deleted by then left out.
    pub fn open_at(
        ch: &Ch,
        layout: Layout,
        scope: &MirrorScope,
        at_ms: u64,
    ) -> Result<Self, ChError> {
        let sql = state_at_sql(layout, &scope.filter());
        let query = scope
            .bind(ch.client().query(&sql).bind(ch.db()))
            .bind(at_ms);
        let cursor = query
            .fetch::<VersionRow>()
            .map_err(|e| ch.error("reading the mirror", e))?;
        Ok(MirrorReader {
            cursor,
            table: layout.table(ch.target().database()),
            ch: ch.clone(),
        })
    }

    /// The next record, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Record>, MirrorError> {
        let row = match self.cursor.next().await {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(None),
            Err(e) => {
                let doing = format!("reading {}", self.table);
                return Err(MirrorError::ClickHouse(self.ch.error(&doing, e)));
            }
        };
        let category = row
            .category
            .parse::<Category>()
            .map_err(|_| MirrorError::BadRow {
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
