//! The ClickHouse mirror table, `{db}.redis_mirror`: its name, its rows
//! and its DDL. Pure: the queries that use it live in `net::mirror`.
//!
//! The table is a `ReplacingMergeTree(mirrored_at_ms)` ordered by
//! `(kb_id, category, key)`: rerunning a mirror inserts new versions of the
//! same logical rows, and the newest version wins.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

use crate::kato::{Category, BACKUP_ONLY};

/// Name of the mirror table.
pub const MIRROR_TABLE: &str = "redis_mirror";

/// The categories a mirror copies: the ones ClickHouse cannot rebuild
/// (backup-only in the key catalogue).
pub const MIRRORED: [Category; BACKUP_ONLY.len()] = BACKUP_ONLY;

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

/// The statement that creates the table; `?` is the database.
pub const CREATE_TABLE_SQL: &str =
    "CREATE TABLE IF NOT EXISTS ?.redis_mirror (kb_id String, category String, \
     key String, type String, payload String, expire_at_ms Nullable(Int64), \
     mirrored_at_ms UInt64) ENGINE = ReplacingMergeTree(mirrored_at_ms) \
     ORDER BY (kb_id, category, key)";

/// What to do when the table is missing.
pub const MIRROR_HINT: &str = "run `kbdump mirror` first, or pass the right ?database=";
