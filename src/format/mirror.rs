//! The ClickHouse mirror tables: their names, rows, DDL, and the SQL that
//! reads the state of keys at an instant. Pure: the queries that run it
//! live in `net::mirror`.
//!
//! The mirror is a history, not a copy: `{db}.redis_mirror_versions` is a
//! plain `MergeTree` ordered by `(kb_id, category, key, observed_at_ms)`
//! with one row per observed version of a key and a tombstone row
//! (`deleted = 1`) when a key disappeared. Nothing is ever replaced; the
//! state of a key at instant T is its newest row observed at or before T,
//! and the key is absent at T when that row is a tombstone (or there is
//! none). docs/FORMAT.md, "The ClickHouse mirror", has the layout and the
//! query for readers other than kbdump.
//!
//! The first layout, `{db}.redis_mirror` (a `ReplacingMergeTree` holding
//! the last version only), is still read, and `kbdump mirror` copies it
//! into the versioned table once.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

use crate::kato::{Category, BACKUP_ONLY};

/// Name of the versioned mirror table.
pub const VERSIONS_TABLE: &str = "redis_mirror_versions";

/// Name of the first, unversioned mirror table (read, never written).
pub const LEGACY_TABLE: &str = "redis_mirror";

/// The categories a mirror copies: the ones ClickHouse cannot rebuild
/// (backup-only in the key catalogue).
pub const MIRRORED: [Category; BACKUP_ONLY.len()] = BACKUP_ONLY;

/// One row of the versioned mirror table: a version of a key, or its
/// tombstone.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct VersionRow {
    /// The kb_id, as bytes.
    #[serde(with = "serde_bytes")]
    pub kb_id: Vec<u8>,
    /// Category name (`frequency`, ...).
    pub category: String,
    /// The key, as bytes.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// Redis type name (empty in a tombstone).
    #[serde(rename = "type")]
    pub redis_type: String,
    /// DUMP payload (empty in a tombstone).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Absolute expiry in unix ms, or none.
    pub expire_at_ms: Option<i64>,
    /// When this version was observed in Redis (unix ms).
    pub observed_at_ms: u64,
    /// 1: the key was gone at `observed_at_ms`.
    pub deleted: u8,
}

/// The statement that creates the versioned table; `?` is the database.
pub const CREATE_VERSIONS_SQL: &str =
    "CREATE TABLE IF NOT EXISTS ?.redis_mirror_versions (kb_id String, category String, \
     key String, type String, payload String, expire_at_ms Nullable(Int64), \
     observed_at_ms UInt64, deleted UInt8) ENGINE = MergeTree \
     ORDER BY (kb_id, category, key, observed_at_ms)";

/// Copies the first layout's rows into the versioned table, each as the
/// version observed when it was mirrored; `?` is the database, twice.
pub const IMPORT_LEGACY_SQL: &str =
    "INSERT INTO ?.redis_mirror_versions SELECT kb_id, category, key, type, payload, \
     expire_at_ms, mirrored_at_ms, toUInt8(0) FROM ?.redis_mirror";

/// Which table holds the mirror of a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `redis_mirror_versions`: the history.
    Versioned,
    /// Only `redis_mirror`, the first layout: the last mirrored version of
    /// each key, no tombstones.
    Legacy,
}

impl Layout {
    /// A table expression with the versioned columns, to put after `FROM`;
    /// it binds the database once (`?`).
    pub fn source(self) -> &'static str {
        match self {
            Layout::Versioned => "?.redis_mirror_versions",
            Layout::Legacy => {
                "(SELECT kb_id, category, key, type, payload, expire_at_ms, \
                 mirrored_at_ms AS observed_at_ms, toUInt8(0) AS deleted FROM ?.redis_mirror)"
            }
        }
    }

    /// `database.table` for messages.
    pub fn table(self, database: &str) -> String {
        let name = match self {
            Layout::Versioned => VERSIONS_TABLE,
            Layout::Legacy => LEGACY_TABLE,
        };
        format!("{database}.{name}")
    }
}

/// The state of the selected keys at an instant: for each key, its newest
/// row observed at or before the instant, tombstones left out, ordered by
/// (kb_id, category, key). Columns in [`VersionRow`] order (`deleted` is
/// always 0). `filter` is a WHERE condition whose values are bound after
/// the database; the instant is bound last.
///
/// `argMax ... GROUP BY` (every ClickHouse since long before 18.16) holds
/// one row per selected key in the server's memory; the versions of a key
/// never all travel to the client. Aliases differ from the column names
/// because ClickHouse resolves an alias before a column of the same name.
pub fn state_at_sql(layout: Layout, filter: &str) -> String {
    format!(
        "SELECT kb_id, category, key, v_type, v_payload, v_expire, v_at, toUInt8(0) \
         FROM (SELECT kb_id, category, key, argMax(type, observed_at_ms) AS v_type, \
         argMax(payload, observed_at_ms) AS v_payload, \
         argMax(expire_at_ms, observed_at_ms) AS v_expire, \
         max(observed_at_ms) AS v_at, argMax(deleted, observed_at_ms) AS v_deleted \
         FROM {} WHERE ({filter}) AND observed_at_ms <= ? \
         GROUP BY kb_id, category, key) WHERE v_deleted = 0 \
         ORDER BY kb_id, category, key",
        layout.source()
    )
}

/// What to do when the mirror table is missing.
pub const MIRROR_HINT: &str = "run `kbdump mirror --create` first, or pass the right ?database=";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_at_binds_database_filter_then_instant() {
        let sql = state_at_sql(Layout::Versioned, "has(?, category)");
        assert_eq!(sql.matches('?').count(), 3, "{sql}");
        let (db, filter, at) = (
            sql.find("FROM ?").unwrap(),
            sql.find("has(?").unwrap(),
            sql.find("observed_at_ms <= ?").unwrap(),
        );
        assert!(db < filter && filter < at, "{sql}");
        let legacy = state_at_sql(Layout::Legacy, "1 = 1");
        assert!(legacy.contains("mirrored_at_ms AS observed_at_ms"));
        assert_eq!(legacy.matches('?').count(), 2);
    }
}
