//! `backups check`: the facts of a backup directory (headers and indexes,
//! the restore-test record) and optionally of a live server (INFO and a
//! key census), judged by [`crate::plan::health`], and the textfile
//! metrics of the result.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::catalog::{list, read_record, write_atomic, Entry};
use super::BackupError;
use crate::format::encryption::Keyring;
use crate::kato::Category;
use crate::net::redis::RedisConn;
use crate::plan::health::{
    evaluate, BackupFacts, Cells, Finding, HealthInput, ServerFacts, ServerHealth, TestHistory,
    Thresholds,
};
use crate::plan::metrics::{render, MetricsInput};

/// The record of restore tests, beside the backups.
pub const TESTS_FILE: &str = "kbdump-tests.json";
/// What a check remembers between runs (the servers' `evicted_keys`).
pub const STATE_FILE: &str = "kbdump-check.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CheckState {
    /// `evicted_keys` per server address at the previous check.
    evicted_keys: BTreeMap<String, u64>,
}

/// The server side of a check.
pub enum ServerSide {
    /// No `--redis`: backups only.
    None,
    /// `--redis` given but the server could not be reached (why).
    Unreachable(String),
    Conn(RedisConn),
}

/// Everything a check found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub entries: Vec<Entry>,
    pub findings: Vec<Finding>,
    pub server: Option<ServerFacts>,
    pub tests: TestHistory,
    /// What could not be checked, if anything.
    pub incomplete: Option<String>,
    /// The textfile metrics of this check.
    pub metrics: String,
}

/// Checks `dir` (and the server) against `limits` at `now_ms`; encrypted
/// backups are opened with `keys`, or judged by their summaries.
pub async fn check(
    dir: &Path,
    server: ServerSide,
    limits: &Thresholds,
    now_ms: i64,
    keys: &Keyring,
) -> Result<CheckReport, BackupError> {
    let entries = list(dir, keys)?;
    let tests: TestHistory = read_record(&dir.join(TESTS_FILE))?;
    let facts: Vec<BackupFacts> = entries.iter().map(backup_facts).collect();
    let (server, incomplete) = match server {
        ServerSide::None => (None, None),
        ServerSide::Unreachable(why) => (None, Some(why)),
        ServerSide::Conn(conn) => match server_facts(dir, conn).await {
            Ok(facts) => (Some(facts), None),
            Err(e) => (None, Some(e.to_string())),
        },
    };
    let input = HealthInput {
        backups: &facts,
        tests: &tests,
        server: server.as_ref(),
    };
    let findings = evaluate(&input, limits, now_ms);
    let newest = entries
        .iter()
        .filter(|e| e.is_usable())
        .max_by_key(|e| e.created_ms());
    let newest_bytes: BTreeMap<(Vec<u8>, Category), u64> = newest
        .map(|e| e.cells.iter().map(|(k, c)| (k.clone(), c.bytes)).collect())
        .unwrap_or_default();
    let dir_label = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let metrics = render(&MetricsInput {
        dir: &dir_label.display().to_string(),
        now_ms,
        backups: &facts,
        newest_bytes: &newest_bytes,
        newest_file_bytes: newest.map_or(0, |e| e.size),
        findings: &findings,
        tests: &tests,
        server: server.as_ref(),
        complete: incomplete.is_none(),
    });
    Ok(CheckReport {
        entries,
        findings,
        server,
        tests,
        incomplete,
        metrics,
    })
}

/// Writes the metrics for node-exporter's textfile collector: a temporary
/// file in the same directory, renamed over the old one, so the collector
/// never reads half a file. World-readable: the collector runs as
/// another user.
pub fn write_metrics(path: &Path, text: &str) -> Result<(), BackupError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(BackupError::MissingDir(dir.to_path_buf()));
    }
    write_atomic(path, text.as_bytes(), 0o644)
}

fn backup_facts(entry: &Entry) -> BackupFacts {
    let mut cells = Cells::new();
    for ((kb, cat), c) in &entry.cells {
        cells.entry(kb.clone()).or_default().insert(*cat, c.keys);
    }
    let selection = entry.selection();
    BackupFacts {
        name: entry.name.clone(),
        created_ms: entry.created_ms(),
        good: entry.is_usable(),
        sealed: entry.status == super::catalog::Status::Sealed,
        problem: (!entry.is_usable())
            .then(|| entry.problem.clone())
            .flatten(),
        selection: format!("{:?}", selection.as_ref()),
        matched: selection.is_some_and(|s| !s.matches.is_empty()),
        cells,
    }
}

/// INFO and a key census of the server; remembers its `evicted_keys` for
/// the next check (a directory that cannot be written only loses that).
async fn server_facts(dir: &Path, mut conn: RedisConn) -> Result<ServerFacts, BackupError> {
    let info: String = conn.query(redis::cmd("INFO"), "INFO").await?;
    let health = ServerHealth::from_info(&info);
    // Keys outside kb_ids count under the empty kb_id, as in the backups.
    let mut census = Cells::new();
    for (kb, category, keys) in conn.census(&[]).await?.cells() {
        *census
            .entry(kb.to_vec())
            .or_default()
            .entry(category)
            .or_default() += keys;
    }
    let state_path = dir.join(STATE_FILE);
    let mut state: CheckState = read_record(&state_path).unwrap_or_default();
    let address = conn.address().to_string();
    let previous = state
        .evicted_keys
        .insert(address.clone(), health.evicted_keys);
    if let Ok(text) = serde_json::to_vec_pretty(&state) {
        let _ = write_atomic(&state_path, &text, 0o600);
    }
    Ok(ServerFacts {
        address,
        health,
        census,
        previous_evicted_keys: previous,
    })
}
