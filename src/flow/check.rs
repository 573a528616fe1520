/*!
Do ClickHouse and Redis agree about a knowledge base?

Per kb_id, [`check`] reports:

- `missing_frequency`: patterns in ClickHouse without a `frequency` key in
  Redis (lost or evicted; `rebuild --only-missing` floors them at 1, a
  backup or the mirror restores the true count);
- `missing_derived`: other keys a rebuild writes that are absent: a
  `symbol_to_patterns:{s}` set per symbol, and the `entropy`,
  `normalized_entropy`, `global_normalized_entropy` and `tf_vector` keys of
  each pattern with at least one symbol (`rebuild --only-missing` writes
  them back);
- `orphan_emotives`, `orphan_metadata`: emotives/metadata keys in Redis
  for patterns that ClickHouse does not have;
- `symbol_freq`, `symbol_pmf`: fields of `symbols:freq` / `symbols:pmf`
  that are missing, differ from, or are absent from what the ClickHouse
  rows give;
- `globals`: `total_unique_patterns` and
  `total_symbols_in_patterns_frequencies` that differ from ClickHouse, and
  a `total_pattern_frequencies` that is missing or below the number of
  patterns (it is a sum of match counts, so only a floor is known).

Memory: the kb's pattern names and symbol table.
*/

use crate::kato::derived::{symbol_counts, SymbolTable};
use crate::kato::display_bytes;
use crate::kato::keys::{self, Shape};
use crate::net::clickhouse::{Ch, ChError};
use crate::net::redis::{RedisConn, RedisIoError};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// Errors of a check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// ClickHouse failed.
    #[error(transparent)]
    ClickHouse(#[from] ChError),
    /// Redis failed.
    #[error(transparent)]
    Redis(#[from] RedisIoError),
}

/// Examples kept per finding kind.
pub const EXAMPLES: usize = 5;

/// A kind of disagreement: how often, and a few examples.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Finding {
    /// Occurrences.
    pub count: u64,
    /// Up to [`EXAMPLES`] descriptions.
    pub examples: Vec<String>,
}

impl Finding {
    fn add(&mut self, example: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(example());
        }
    }
}

/// The findings of one kb_id.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KbReport {
    /// The knowledge base.
    pub kb_id: String,
    /// Rows in ClickHouse.
    pub patterns: u64,
    /// See the module documentation.
    pub missing_frequency: Finding,
    /// See the module documentation.
    pub missing_derived: Finding,
    /// See the module documentation.
    pub orphan_emotives: Finding,
    /// See the module documentation.
    pub orphan_metadata: Finding,
    /// See the module documentation.
    pub symbol_freq: Finding,
    /// See the module documentation.
    pub symbol_pmf: Finding,
    /// See the module documentation.
    pub globals: Finding,
}

impl KbReport {
    /// All findings by name.
    pub fn findings(&self) -> [(&'static str, &Finding); 7] {
        [
            ("missing_frequency", &self.missing_frequency),
            ("missing_derived", &self.missing_derived),
            ("orphan_emotives", &self.orphan_emotives),
            ("orphan_metadata", &self.orphan_metadata),
            ("symbol_freq", &self.symbol_freq),
            ("symbol_pmf", &self.symbol_pmf),
            ("globals", &self.globals),
        ]
    }

    /// Total number of findings.
    pub fn total(&self) -> u64 {
        self.findings().iter().map(|(_, f)| f.count).sum()
    }
}

/// Checks each kb_id (all kb_ids in ClickHouse when empty).
pub async fn check(ch: &Ch, conn: &RedisConn, kb_ids: &[String]) -> Result<Vec<KbReport>, Error> {
    ch.require_patterns().await?;
    let kb_ids = match kb_ids {
        [] => ch.kb_ids().await?,
        given => given.to_vec(),
    };
    let mut out = Vec::new();
    for kb in &kb_ids {
        out.push(check_kb(ch, &mut conn.clone(), kb).await?);
    }
    Ok(out)
}

async fn check_kb(ch: &Ch, conn: &mut RedisConn, kb: &str) -> Result<KbReport, Error> {
    let mut report = KbReport {
        kb_id: kb.to_string(),
        ..KbReport::default()
    };
    let mut names = HashSet::new();
    // Patterns with at least one symbol: those a rebuild writes metrics for.
    let mut with_metrics = Vec::new();
    let mut table = SymbolTable::default();
    let mut cursor = ch.patterns(kb)?;
    while let Some(row) = cursor
        .next()
        .await
        .map_err(|e| ch.error("reading patterns_data", e))?
    {
        let counts = symbol_counts(&row.pattern_data);
        if !counts.is_empty() {
            with_metrics.push(row.name.to_vec());
        }
        names.insert(row.name.to_vec());
        table.add_counts(&counts);
    }
    report.patterns = table.patterns();
    let mut sorted: Vec<&Vec<u8>> = names.iter().collect();
    sorted.sort();
    let frequencies = sorted.iter().map(|n| keys::frequency(kb.as_bytes(), n));
    missing_keys(conn, frequencies, &mut report.missing_frequency).await?;
    with_metrics.sort();
    let derived = derived_keys(kb.as_bytes(), &table, &with_metrics);
    missing_keys(conn, derived, &mut report.missing_derived).await?;
    orphans(
        conn,
        kb,
        keys::EMOTIVES,
        &names,
        &mut report.orphan_emotives,
    )
    .await?;
    orphans(
        conn,
        kb,
        keys::METADATA,
        &names,
        &mut report.orphan_metadata,
    )
    .await?;
    let freq = hash(conn, &keys::symbols_freq(kb.as_bytes())).await?;
    compare_hash(
        &freq,
        table.iter().map(|(s, st)| (s, st.freq)),
        &mut report.symbol_freq,
    );
    let pmf = hash(conn, &keys::symbols_pmf(kb.as_bytes())).await?;
    compare_hash(
        &pmf,
        table.iter().map(|(s, st)| (s, st.pmf)),
        &mut report.symbol_pmf,
    );
    globals(conn, kb, &table, &mut report.globals).await?;
    Ok(report)
}

/// The keys besides `frequency:{p}` that a rebuild writes, one by one:
/// each symbol's set, then each pattern's metrics.
fn derived_keys<'a>(
    kb: &'a [u8],
    table: &'a SymbolTable,
    with_metrics: &'a [Vec<u8>],
) -> impl Iterator<Item = Vec<u8>> + 'a {
    let sets = (0..table.distinct()).map(move |i| keys::symbol_to_patterns(kb, table.symbol_at(i)));
    let metrics = with_metrics.iter().flat_map(move |name| {
        [
            keys::ENTROPY,
            keys::NORMALIZED_ENTROPY,
            keys::GLOBAL_NORMALIZED_ENTROPY,
            keys::TF_VECTOR,
        ]
        .map(|shape| shape.key(kb, name))
    });
    sets.chain(metrics)
}

/// Adds every absent key of `keys` to `finding` (EXISTS, pipelined).
async fn missing_keys(
    conn: &mut RedisConn,
    keys: impl Iterator<Item = Vec<u8>>,
    finding: &mut Finding,
) -> Result<(), Error> {
    let mut keys = keys.peekable();
    while keys.peek().is_some() {
        let chunk: Vec<Vec<u8>> = keys.by_ref().take(2000).collect();
        let mut pipe = redis::pipe();
        for key in &chunk {
            pipe.cmd("EXISTS").arg(key.as_slice());
        }
        let values = conn.pipeline(&pipe, "EXISTS").await?;
        for (key, value) in chunk.iter().zip(values) {
            if value == redis::Value::Int(0) {
                finding.add(|| display_bytes(key));
            }
        }
    }
    Ok(())
}

async fn orphans(
    conn: &RedisConn,
    kb: &str,
    shape: Shape,
    names: &HashSet<Vec<u8>>,
    finding: &mut Finding,
) -> Result<(), Error> {
    let prefix = shape.key(kb.as_bytes(), b"");
    let mut seen = HashSet::new();
    let mut scan = conn.scan(shape.scan_pattern(kb.as_bytes()), 1000);
    while let Some(page) = scan.next_page().await? {
        for k in page {
            let name = &k[prefix.len()..];
            if !names.contains(name) && seen.insert(k.clone()) {
                finding.add(|| display_bytes(&k));
            }
        }
    }
    Ok(())
}

async fn hash(conn: &mut RedisConn, key: &[u8]) -> Result<HashMap<Vec<u8>, Vec<u8>>, Error> {
    let mut cmd = redis::cmd("HGETALL");
    cmd.arg(key);
    Ok(conn.query(cmd, "HGETALL").await?)
}

fn compare_hash<'a>(
    redis: &HashMap<Vec<u8>, Vec<u8>>,
    expected: impl Iterator<Item = (&'a [u8], u64)>,
    finding: &mut Finding,
) {
    let mut known = HashSet::new();
    for (symbol, want) in expected {
        known.insert(symbol);
        let sym = || display_bytes(symbol);
        match redis.get(symbol) {
            None => finding.add(|| format!("{}: missing (ClickHouse: {want})", sym())),
            Some(got) if got.as_slice() != want.to_string().as_bytes() => {
                finding.add(|| format!("{}: {} (ClickHouse: {want})", sym(), display_bytes(got)))
            }
            Some(_) => {}
        }
    }
    let mut extra: Vec<&Vec<u8>> = redis
        .keys()
        .filter(|s| !known.contains(s.as_slice()))
        .collect();
    extra.sort();
    for symbol in extra {
        finding.add(|| format!("{}: not in ClickHouse", display_bytes(symbol)));
    }
}

async fn globals(
    conn: &mut RedisConn,
    kb: &str,
    table: &SymbolTable,
    finding: &mut Finding,
) -> Result<(), Error> {
    let exact = [
        (keys::TOTAL_UNIQUE_PATTERNS, table.patterns()),
        (
            keys::TOTAL_SYMBOLS_IN_PATTERNS_FREQUENCIES,
            table.occurrences(),
        ),
    ];
    for (shape, want) in exact {
        let name = shape.marker();
        match get_u64(conn, kb, shape).await? {
            Some(got) if got == want => {}
            got => finding.add(|| format!("{kb}{name}: {} (ClickHouse: {want})", shown(got))),
        }
    }
    let shape = keys::TOTAL_PATTERN_FREQUENCIES;
    let name = shape.marker();
    match get_u64(conn, kb, shape).await? {
        Some(got) if got >= table.patterns() => {}
        got => {
            finding.add(|| format!("{kb}{name}: {} (at least {})", shown(got), table.patterns()))
        }
    }
    Ok(())
}

fn shown(v: Option<u64>) -> String {
    v.map_or_else(|| "missing".to_string(), |v| v.to_string())
}

async fn get_u64(conn: &mut RedisConn, kb: &str, shape: Shape) -> Result<Option<u64>, Error> {
    let mut cmd = redis::cmd("GET");
    cmd.arg(shape.key(kb.as_bytes(), b""));
    let v: Option<String> = conn.query(cmd, "GET").await?;
    Ok(v.and_then(|s| s.parse().ok()))
}
