//! Queries on the ClickHouse mirror table (layout in
//! [`crate::format::mirror`]): which rows a selection reads, reading them
//! back as records, creating the table, and pruning old versions.

use clickhouse::Row;
use serde::Deserialize;

use crate::format::archive::Record;
use crate::format::mirror::{MirrorRow, CREATE_TABLE_SQL, MIRRORED, MIRROR_HINT, MIRROR_TABLE};
use crate::kato::Category;
use crate::net::clickhouse::{Ch, ChError};
use crate::net::redis::RedisIoError;
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
        .query(CREATE_TABLE_SQL)
        .bind(ch.db())
        .execute()
        .await
        .map_err(|e| ch.error("creating the mirror table", e))
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

    /// Payload bytes and key count of the rows in scope (for restore's
    /// memory guard, which charges a per-key overhead too).
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

/// The distinct kb_ids in the mirror table, as bytes.
pub async fn mirrored_kb_ids(ch: &Ch) -> Result<Vec<Vec<u8>>, ChError> {
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
