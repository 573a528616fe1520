/*!
Rebuild of the derivable Redis data of KATO knowledge bases from
ClickHouse's `kato.patterns_data`, writing what KATO's own rehydration
(`scripts/rehydrate_redis.py`) writes, byte for byte.

Per kb_id the rows are read **twice**, each time as a stream:

1. pass one accumulates the symbol tables ([`crate::kato::derived::SymbolTable`]: one
   entry per distinct symbol) and, as it goes, writes `frequency:{p}` = 1
   with `SET NX` semantics (see [`apply`]) and the `symbol_to_patterns:{s}` sets, per
   batch of [`RebuildOptions::batch_patterns`] rows: a set first met in the
   batch is created whole from a DUMP payload (`RESTORE` without
   `REPLACE`, see [`apply::Sink::restore_new_set`]), and later batches add
   to it with `SADD` (a union, so writing the sets incrementally needs no
   per-set memory beyond one batch);
2. then `symbols:freq`, `symbols:pmf` and the three `global:*` counters
   are written from the finished table;
3. pass two computes each pattern's metrics against the finished table
   and writes them.

Memory is the symbol table plus one batch of rows, whatever the number of
patterns; the price is reading the kb's rows from ClickHouse twice (which
is cheap: the table is partitioned by kb_id). Rows are not ordered: nothing
KATO writes depends on row order. If KATO writes patterns between the two
passes, pass two may see rows pass one did not; the summary reports it
(`rows_changed`) and a rerun fixes it.

Differences from KATO, on purpose: `frequency:{p}` is written with NX, so
a surviving match count is never lowered (KATO overwrites it with 1); and
`global_normalized_entropy` is summed in a fixed order (see
[`crate::kato::derived::PatternMetrics`]).
*/

pub mod apply;

use crate::kato::derived::{pattern_metrics, symbol_counts, SymbolTable};
use crate::kato::pytext;
use crate::kato::{keys, Category};
use crate::net::clickhouse::{Ch, ChError};
use crate::progress::Progress;
use apply::{Counts, Sink};
use redis::aio::ConnectionLike;
use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;
use std::time::Instant;

/// Errors of a rebuild.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading ClickHouse failed.
    #[error(transparent)]
    ClickHouse(#[from] ChError),
    /// Writing Redis failed.
    #[error("redis: {0}")]
    Redis(redis::RedisError),
}

// Not `#[from]`: the message says the cause, so it is not also the source.
impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Error {
        Error::Redis(e)
    }
}

/// How to rebuild.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RebuildOptions {
    /// Count what would be written; write nothing.
    pub dry_run: bool,
    /// Write only entries that are absent; never change an existing one.
    pub only_missing: bool,
    /// Rows per batch of `symbol_to_patterns` writes.
    pub batch_patterns: usize,
    /// The target's RDB version, to seal the payloads of new
    /// `symbol_to_patterns` sets with; `None` writes every set with `SADD`
    /// only (same result, more server CPU).
    pub set_payload_rdb_version: Option<u16>,
    /// The target is a cluster: no write spans hash slots.
    pub cluster: bool,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        RebuildOptions {
            dry_run: false,
            only_missing: false,
            batch_patterns: 100_000,
            set_payload_rdb_version: None,
            cluster: false,
        }
    }
}

/// What a rebuild did for one kb_id.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KbSummary {
    /// The knowledge base.
    pub kb_id: String,
    /// Rows read in pass one.
    pub patterns: u64,
    /// Distinct symbols.
    pub symbols: u64,
    /// Patterns that got metrics (those with at least one symbol).
    pub metrics: u64,
    /// Whether pass two saw a different number of rows than pass one.
    pub rows_changed: bool,
    /// Written/skipped entries per category (`frequency`, `symbols`,
    /// `globals`, `metrics`).
    pub categories: BTreeMap<&'static str, Counts>,
    /// Totals over the categories.
    pub written: u64,
    /// Entries left alone because they existed.
    pub skipped: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Rebuilds each kb_id in turn; all kb_ids in ClickHouse when `kb_ids` is
/// empty.
pub async fn rebuild<C>(
    ch: &Ch,
    conn: C,
    kb_ids: &[String],
    opts: &RebuildOptions,
    progress: &dyn Progress,
) -> Result<Vec<KbSummary>, Error>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    ch.require_patterns().await?;
    let kb_ids = match kb_ids {
        [] => ch.kb_ids().await?,
        given => given.to_vec(),
    };
    let mut out = Vec::with_capacity(kb_ids.len());
    for kb in &kb_ids {
        out.push(rebuild_kb(ch, conn.clone(), kb, opts, progress).await?);
    }
    progress.finish();
    Ok(out)
}

/// Rebuilds one kb_id.
pub async fn rebuild_kb<C>(
    ch: &Ch,
    conn: C,
    kb: &str,
    opts: &RebuildOptions,
    progress: &dyn Progress,
) -> Result<KbSummary, Error>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    let started = Instant::now();
    let mut sink = Sink::new(conn, opts.dry_run).slot_bound(opts.cluster);
    progress.stage(&format!("{kb}: symbols"));
    let table = pass_symbols(ch, &mut sink, kb, opts, progress).await?;
    let mut metrics = 0;
    let mut rows_changed = false;
    if table.patterns() > 0 {
        write_tables(&mut sink, kb, &table, opts.only_missing).await?;
        progress.stage(&format!("{kb}: metrics"));
        let rows;
        (rows, metrics) = pass_metrics(ch, &mut sink, kb, &table, opts, progress).await?;
        rows_changed = rows != table.patterns();
    }
    let categories = sink.finish().await?;
    Ok(KbSummary {
        kb_id: kb.to_string(),
        patterns: table.patterns(),
        symbols: table.distinct() as u64,
        metrics,
        rows_changed,
        written: categories.values().map(|c| c.written).sum(),
        skipped: categories.values().map(|c| c.skipped).sum(),
        categories,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One batch of pass one: pattern names, and (symbol index, name index)
/// pairs for the `symbol_to_patterns` sets.
#[derive(Default)]
struct SetBatch {
    names: Vec<Vec<u8>>,
    pairs: Vec<(u32, u32)>,
    /// Hashes of the names, to learn whether a name repeats (a
    /// MergeTree keeps duplicate rows).
    name_hashes: HashSet<u64, foldhash::fast::FixedState>,
    /// Some name may occur twice: a set payload must then be made of
    /// distinct members explicitly (a server refuses duplicates in one).
    repeats: bool,
}

impl SetBatch {
    fn push_name(&mut self, name: &[u8]) -> u32 {
        let hash = self.name_hashes.hasher().hash_one(name);
        self.repeats |= !self.name_hashes.insert(hash);
        self.names.push(name.to_vec());
        self.names.len() as u32 - 1
    }

    fn clear(&mut self) {
        self.names.clear();
        self.pairs.clear();
        self.name_hashes.clear();
        self.repeats = false;
    }
}

/// Per symbol index: [`UNSEEN`], [`WRITE`], [`EXISTED`] or [`CREATE`].
#[derive(Default)]
struct SetStates(Vec<u8>);

/// Not seen by a batch yet.
const UNSEEN: u8 = 0;
/// Its set is being written: add this batch's members.
const WRITE: u8 = 1;
/// Its set existed before the rebuild (only-missing mode: leave it).
const EXISTED: u8 = 2;
/// First seen in this batch: create its set.
const CREATE: u8 = 3;

async fn pass_symbols<C>(
    ch: &Ch,
    sink: &mut Sink<C>,
    kb: &str,
    opts: &RebuildOptions,
    progress: &dyn Progress,
) -> Result<SymbolTable, Error>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    let mut table = SymbolTable::default();
    let mut kbuf = Vec::new();
    let mut batch = SetBatch::default();
    let mut sets = SetStates::default();
    let mut cursor = ch.patterns(kb)?;
    while let Some(row) = cursor
        .next()
        .await
        .map_err(|e| ch.error("reading patterns_data", e))?
    {
        sink.put(
            Category::Frequency.name(),
            keys::FREQUENCY.key_into(&mut kbuf, kb.as_bytes(), row.name),
            b"1",
            true,
        )
        .await?;
        let counts = symbol_counts(&row.pattern_data);
        table.add_counts(&counts);
        let name = batch.push_name(row.name);
        for symbol in counts.keys() {
            let index = table.index_of(symbol).expect("just added") as u32;
            batch.pairs.push((index, name));
        }
        if batch.names.len() >= opts.batch_patterns {
            progress.advance(batch.names.len() as u64, 0);
            write_sets(sink, kb, &table, &mut batch, &mut sets, opts).await?;
        }
    }
    progress.advance(batch.names.len() as u64, 0);
    write_sets(sink, kb, &table, &mut batch, &mut sets, opts).await?;
    Ok(table)
}

async fn write_sets<C>(
    sink: &mut Sink<C>,
    kb: &str,
    table: &SymbolTable,
    batch: &mut SetBatch,
    sets: &mut SetStates,
    opts: &RebuildOptions,
) -> Result<(), Error>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    let symbols = Category::Symbols.name();
    sets.0.resize(table.distinct(), UNSEEN);
    batch.pairs.sort_unstable();
    let mut new: Vec<usize> = batch
        .pairs
        .iter()
        .map(|p| p.0 as usize)
        .filter(|&i| sets.0[i] == UNSEEN)
        .collect();
    new.dedup();
    let keys: Vec<Vec<u8>> = new
        .iter()
        .map(|&i| keys::symbol_to_patterns(kb.as_bytes(), table.symbol_at(i)))
        .collect();
    let existed = if opts.only_missing {
        sink.exists(&keys).await?
    } else {
        vec![false; keys.len()]
    };
    for (&i, existed) in new.iter().zip(existed) {
        sink.count(symbols, u64::from(!existed), u64::from(existed));
        sets.0[i] = if existed { EXISTED } else { CREATE };
    }
    let mut members: Vec<&[u8]> = Vec::new();
    for group in batch.pairs.chunk_by(|a, b| a.0 == b.0) {
        let symbol = group[0].0 as usize;
        let state = sets.0[symbol];
        if state == EXISTED {
            continue;
        }
        sets.0[symbol] = WRITE;
        let set_key = keys::symbol_to_patterns(kb.as_bytes(), table.symbol_at(symbol));
        if let (CREATE, Some(version)) = (state, opts.set_payload_rdb_version) {
            members.clear();
            members.extend(group.iter().map(|p| batch.names[p.1 as usize].as_slice()));
            if batch.repeats {
                members.sort_unstable();
                members.dedup();
            }
            sink.restore_new_set(&set_key, &members, version).await?;
            continue;
        }
        for chunk in group.chunks(4096) {
            members.clear();
            members.extend(chunk.iter().map(|p| batch.names[p.1 as usize].as_slice()));
            sink.sadd(&set_key, &members).await?;
        }
    }
    batch.clear();
    Ok(())
}

async fn write_tables<C>(
    sink: &mut Sink<C>,
    kb: &str,
    table: &SymbolTable,
    only_missing: bool,
) -> Result<(), Error>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    let (symbols, kb) = (Category::Symbols.name(), kb.as_bytes());
    let freq_key = keys::symbols_freq(kb);
    let pmf_key = keys::symbols_pmf(kb);
    if only_missing {
        for (symbol, stat) in table.iter() {
            sink.hset_nx(symbols, &freq_key, symbol, stat.freq.to_string().as_bytes())
                .await?;
            sink.hset_nx(symbols, &pmf_key, symbol, stat.pmf.to_string().as_bytes())
                .await?;
        }
    } else {
        let entries: Vec<_> = table.iter().collect();
        for chunk in entries.chunks(512) {
            let freq: Vec<_> = chunk
                .iter()
                .map(|(s, st)| (*s, st.freq.to_string().into_bytes()))
                .collect();
            let pmf: Vec<_> = chunk
                .iter()
                .map(|(s, st)| (*s, st.pmf.to_string().into_bytes()))
                .collect();
            sink.hset_many(symbols, &freq_key, &freq).await?;
            sink.hset_many(symbols, &pmf_key, &pmf).await?;
        }
    }
    let globals = [
        (keys::TOTAL_UNIQUE_PATTERNS, table.patterns()),
        (keys::TOTAL_PATTERN_FREQUENCIES, table.patterns()),
        (
            keys::TOTAL_SYMBOLS_IN_PATTERNS_FREQUENCIES,
            table.occurrences(),
        ),
    ];
    for (shape, value) in globals {
        sink.set(
            Category::Globals.name(),
            &shape.key(kb, b""),
            value.to_string().as_bytes(),
            only_missing,
        )
        .await?;
    }
    Ok(())
}

async fn pass_metrics<C>(
    ch: &Ch,
    sink: &mut Sink<C>,
    kb: &str,
    table: &SymbolTable,
    opts: &RebuildOptions,
    progress: &dyn Progress,
) -> Result<(u64, u64), Error>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    let (mut rows, mut metrics) = (0u64, 0u64);
    let nx = opts.only_missing;
    let (mut kbuf, mut text) = (Vec::new(), String::new());
    let cat = Category::Metrics.name();
    let mut cursor = ch.patterns(kb)?;
    while let Some(row) = cursor
        .next()
        .await
        .map_err(|e| ch.error("reading patterns_data", e))?
    {
        rows += 1;
        if rows % 4096 == 0 {
            progress.advance(4096, 0);
        }
        let Some(m) = pattern_metrics(&row.pattern_data, table) else {
            continue;
        };
        metrics += 1;
        let name = row.name;
        let floats = [
            (keys::ENTROPY, m.entropy),
            (keys::NORMALIZED_ENTROPY, m.normalized_entropy),
            (keys::GLOBAL_NORMALIZED_ENTROPY, m.global_normalized_entropy),
        ];
        for (shape, value) in floats {
            text.clear();
            pytext::push_float_repr(&mut text, value);
            sink.put(
                cat,
                shape.key_into(&mut kbuf, kb.as_bytes(), name),
                text.as_bytes(),
                nx,
            )
            .await?;
        }
        sink.put(
            cat,
            keys::TF_VECTOR.key_into(&mut kbuf, kb.as_bytes(), name),
            m.tf_vector_json.as_bytes(),
            nx,
        )
        .await?;
    }
    progress.advance(rows % 4096, 0);
    Ok((rows, metrics))
}
