//! A deterministic KATO-like dataset, and a whole-server snapshot to compare
//! servers with.
//!
//! [`seed_kato`] writes, for each kb_id of a [`SeedSpec`], every category of
//! `kato-keys.md` (docs/shared), derived values consistent with the patterns
//! it made up (so rebuild tests can compare), awkward keys (glob
//! metacharacters, `:`, spaces, NUL and non-UTF-8 bytes), TTLs, an empty
//! value, collections too large for listpack encoding; the keys KATO
//! writes outside the `{kb}:` prefix, as its Python client writes them (a
//! short-term memory stream per kb_id with its consumer group and pending
//! entries, the global STM stream, sessions with TTLs and their index, node
//! liveness, the metrics, pattern and probability caches); and foreign keys
//! that belong to no kb_id. [`Seeded`] records every key it wrote.
//!
//! [`snapshot`] reads every key of a server with ordinary commands (never
//! DUMP), so two servers of different versions and encodings compare equal
//! exactly when their logical contents are equal.

use std::collections::{BTreeMap, BTreeSet};

use ::redis::{Connection, Pipeline, Value as Reply};
use serde_json::json;

/// The default kb_ids: two ordinary ones, one with glob metacharacters and
/// `:` in it, one that is not UTF-8.
pub const DEFAULT_KB_IDS: [&[u8]; 4] = [
    b"node0_kato",
    b"node1_kato",
    b"kb*[1]?:x",
    b"kb\xff\xfe-bin",
];

/// With [`SeedSpec::large`], the first kb_id gets this many patterns, all
/// containing [`HOT_SYMBOL`], so its `symbol_to_patterns` set exceeds the
/// 512 entries that still fit a listpack/intset.
pub const LARGE_PATTERNS: usize = 600;
/// ... and this many plain symbols, so `symbols:freq`/`symbols:pmf` exceed
/// the 512 fields that still fit a listpack (`hash-max-listpack-entries`).
/// Kept below [`LARGE_PATTERNS`] so that every symbol is used.
pub const LARGE_SYMBOLS: usize = 560;
pub const HOT_SYMBOL: &[u8] = b"hot symbol";
/// TTL of `prediction:*` keys and of the other keys that get one.
pub const TTL_MS: u64 = 3_600_000;

/// Symbols every kb_id has, chosen to break code that treats keys as text
/// or globs carelessly.
const AWKWARD_SYMBOLS: [&[u8]; 8] = [
    b"a:b",
    b"two words",
    b"star*",
    b"what?",
    b"[set]",
    b"x]y[z",
    b"\xff\xfe\x00raw",
    b"ns:colon:deep",
];
const EMOTIVES: [&str; 4] = ["joy", "utility", "fear", "surprise"];

/// The categories of `kato-keys.md`, as kbdump names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Frequency,
    Emotives,
    Metadata,
    Affinity,
    Symbols,
    Globals,
    Metrics,
    Predictions,
    Stm,
    Sessions,
    Caches,
    Other,
    Foreign,
}

impl Category {
    /// The categories every seeded kb_id has.
    pub const KB: [Category; 10] = [
        Category::Frequency,
        Category::Emotives,
        Category::Metadata,
        Category::Affinity,
        Category::Symbols,
        Category::Globals,
        Category::Metrics,
        Category::Predictions,
        Category::Stm,
        Category::Other,
    ];
    /// The categories of the KATO keys seeded outside any kb_id.
    pub const GLOBAL: [Category; 3] = [Category::Stm, Category::Sessions, Category::Caches];

    pub fn name(self) -> &'static str {
        match self {
            Category::Frequency => "frequency",
            Category::Emotives => "emotives",
            Category::Metadata => "metadata",
            Category::Affinity => "affinity",
            Category::Symbols => "symbols",
            Category::Globals => "globals",
            Category::Metrics => "metrics",
            Category::Predictions => "predictions",
            Category::Stm => "stm",
            Category::Sessions => "sessions",
            Category::Caches => "caches",
            Category::Other => "other",
            Category::Foreign => "foreign",
        }
    }
}

/// What to seed. `SeedSpec::default()` is the full dataset (about 6,000
/// keys); [`SeedSpec::small`] skips the large collections (about 600).
#[derive(Clone, Debug)]
pub struct SeedSpec {
    pub kb_ids: Vec<Vec<u8>>,
    pub patterns_per_kb: usize,
    /// Plain symbols (`sym000`...) besides the awkward ones.
    pub symbols_per_kb: usize,
    /// First kb_id gets [`LARGE_PATTERNS`] and [`LARGE_SYMBOLS`].
    pub large: bool,
    /// Some keys get a TTL (predictions always do).
    pub ttls: bool,
    /// Foreign keys (that belong to no kb_id) are written too.
    pub unrelated: bool,
    /// KATO's keys outside the `{kb}:` prefix are written too: a
    /// `stm:events:{kb}` stream per kb_id and the global keys.
    pub kato_outside: bool,
    pub seed: u64,
}

impl Default for SeedSpec {
    fn default() -> Self {
        SeedSpec {
            kb_ids: DEFAULT_KB_IDS.iter().map(|k| k.to_vec()).collect(),
            patterns_per_kb: 24,
            symbols_per_kb: 12,
            large: true,
            ttls: true,
            unrelated: true,
            kato_outside: true,
            seed: 0x6b62_6475_6d70,
        }
    }
}

impl SeedSpec {
    pub fn small() -> Self {
        SeedSpec {
            large: false,
            ..SeedSpec::default()
        }
    }

    pub fn with_kbs(mut self, kb_ids: &[&[u8]]) -> Self {
        self.kb_ids = kb_ids.iter().map(|k| k.to_vec()).collect();
        self
    }
}

/// One key written by the seeder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeededKey {
    /// `None` for keys that belong to no kb_id.
    pub kb_id: Option<Vec<u8>>,
    /// kbdump's category; KATO's global keys have theirs, foreign keys
    /// [`Category::Foreign`].
    pub category: Option<Category>,
    /// The Redis type: `string`, `hash`, `set`, `list`, `zset`, `stream`.
    pub kind: &'static str,
    pub ttl_ms: Option<u64>,
}

/// A pattern the seeder made up; the derived keys were computed from these,
/// so they are also the rows a ClickHouse `patterns_data` table would hold.
#[derive(Clone, Debug, PartialEq)]
pub struct SeededPattern {
    pub kb_id: Vec<u8>,
    pub name: String,
    pub events: Vec<Vec<Vec<u8>>>,
    pub frequency: i64,
}

impl SeededPattern {
    pub fn length(&self) -> usize {
        self.events.iter().map(Vec::len).sum()
    }
}

/// Everything [`seed_kato`] wrote.
#[derive(Clone, Debug, Default)]
pub struct Seeded {
    pub keys: BTreeMap<Vec<u8>, SeededKey>,
    pub patterns: Vec<SeededPattern>,
}

impl Seeded {
    pub fn select(&self, pred: impl Fn(&SeededKey) -> bool) -> BTreeSet<Vec<u8>> {
        let keys = self.keys.iter().filter(|(_, k)| pred(k));
        keys.map(|(key, _)| key.clone()).collect()
    }

    pub fn all(&self) -> BTreeSet<Vec<u8>> {
        self.select(|_| true)
    }

    /// Keys of any kb_id.
    pub fn kato(&self) -> BTreeSet<Vec<u8>> {
        self.select(|k| k.kb_id.is_some())
    }

    /// Keys of no kb_id: KATO's global keys and foreign keys.
    pub fn unrelated(&self) -> BTreeSet<Vec<u8>> {
        self.select(|k| k.kb_id.is_none())
    }

    /// KATO's keys outside any kb_id (sessions, global STM, caches).
    pub fn kato_global(&self) -> BTreeSet<Vec<u8>> {
        self.select(|k| k.kb_id.is_none() && k.category != Some(Category::Foreign))
    }

    /// Keys that are not KATO's.
    pub fn foreign(&self) -> BTreeSet<Vec<u8>> {
        self.select(|k| k.kb_id.is_none() && k.category == Some(Category::Foreign))
    }

    pub fn of_kb(&self, kb_id: &[u8]) -> BTreeSet<Vec<u8>> {
        self.select(|k| k.kb_id.as_deref() == Some(kb_id))
    }

    pub fn of_category(&self, category: Category) -> BTreeSet<Vec<u8>> {
        self.select(|k| k.category == Some(category))
    }

    pub fn of(&self, kb_id: &[u8], category: Category) -> BTreeSet<Vec<u8>> {
        self.select(|k| k.kb_id.as_deref() == Some(kb_id) && k.category == Some(category))
    }

    pub fn with_ttl(&self) -> BTreeSet<Vec<u8>> {
        self.select(|k| k.ttl_ms.is_some())
    }

    pub fn kb_ids(&self) -> BTreeSet<Vec<u8>> {
        self.keys.values().filter_map(|k| k.kb_id.clone()).collect()
    }
}

/// Writes the dataset described by `spec` through `conn` (pipelined).
pub fn seed_kato(conn: &mut Connection, spec: &SeedSpec) -> Seeded {
    let mut w = Writer::new(conn);
    let mut rng = Rng::new(spec.seed);
    for (i, kb) in spec.kb_ids.iter().enumerate() {
        let large = spec.large && i == 0;
        seed_kb(&mut w, &mut rng, kb, large, spec);
    }
    if spec.unrelated {
        seed_unrelated(&mut w, spec.ttls);
    }
    if spec.kato_outside {
        seed_kato_global(&mut w);
    }
    w.finish()
}

fn seed_kb(w: &mut Writer, rng: &mut Rng, kb: &[u8], large: bool, spec: &SeedSpec) {
    let plain = if large {
        LARGE_SYMBOLS
    } else {
        spec.symbols_per_kb
    };
    let count = if large {
        LARGE_PATTERNS
    } else {
        spec.patterns_per_kb
    };
    let pool = symbol_pool(plain);
    let hot = large.then_some(HOT_SYMBOL);
    let patterns: Vec<SeededPattern> = (0..count)
        .map(|i| make_pattern(rng, kb, &pool, i, hot))
        .collect();
    let stats = KbStats::new(&patterns);
    write_pattern_keys(w, rng, kb, &patterns, &stats, spec.ttls);
    write_symbol_keys(w, rng, kb, &stats);
    write_globals(w, kb, &patterns, &stats);
    write_predictions(w, rng, kb, &patterns);
    write_other(w, kb, spec.ttls);
    if spec.kato_outside {
        write_stm(w, kb);
    }
    w.seeded.patterns.extend(patterns);
}

fn symbol_pool(plain: usize) -> Vec<Vec<u8>> {
    let awkward = AWKWARD_SYMBOLS.iter().map(|s| s.to_vec());
    awkward
        .chain((0..plain).map(|i| format!("sym{i:03}").into_bytes()))
        .collect()
}

/// 1-3 events of 1-4 distinct symbols each, sorted within an event as KATO
/// does. Pattern `i` always holds symbol `i % pool.len()`, so every symbol
/// of the pool is used when there are enough patterns.
fn make_pattern(
    rng: &mut Rng,
    kb: &[u8],
    pool: &[Vec<u8>],
    i: usize,
    hot: Option<&[u8]>,
) -> SeededPattern {
    let mut events: Vec<Vec<Vec<u8>>> = (0..rng.range(1, 3))
        .map(|_| {
            let picked: BTreeSet<Vec<u8>> = (0..rng.range(1, 4))
                .map(|_| pool[rng.below(pool.len())].clone())
                .collect();
            picked.into_iter().collect()
        })
        .collect();
    let first = &mut events[0];
    first.push(pool[i % pool.len()].clone());
    first.extend(hot.map(<[u8]>::to_vec));
    first.sort();
    first.dedup();
    SeededPattern {
        kb_id: kb.to_vec(),
        name: rng.hex40(),
        events,
        frequency: rng.range(1, 50) as i64,
    }
}

/// Per-kb aggregates, computed the way `kato-keys.md` says KATO does.
struct KbStats {
    /// symbol -> total occurrences.
    freq: BTreeMap<Vec<u8>, i64>,
    /// symbol -> number of patterns containing it.
    pmf: BTreeMap<Vec<u8>, i64>,
    /// symbol -> names of patterns containing it.
    patterns_of: BTreeMap<Vec<u8>, BTreeSet<String>>,
    pattern_count: usize,
}

impl KbStats {
    fn new(patterns: &[SeededPattern]) -> Self {
        let mut stats = KbStats {
            freq: BTreeMap::new(),
            pmf: BTreeMap::new(),
            patterns_of: BTreeMap::new(),
            pattern_count: patterns.len(),
        };
        for p in patterns {
            for (sym, n) in symbol_counts(p) {
                *stats.freq.entry(sym.clone()).or_default() += n;
                *stats.pmf.entry(sym.clone()).or_default() += 1;
                let names = stats.patterns_of.entry(sym).or_default();
                names.insert(p.name.clone());
            }
        }
        stats
    }

    /// The number of distinct symbols, the base of the normalized entropies.
    fn distinct(&self) -> f64 {
        self.freq.len() as f64
    }
}

fn symbol_counts(p: &SeededPattern) -> BTreeMap<Vec<u8>, i64> {
    let mut counts = BTreeMap::new();
    for sym in p.events.iter().flatten() {
        *counts.entry(sym.clone()).or_default() += 1;
    }
    counts
}

fn kb_key(kb: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut key = kb.to_vec();
    for part in parts {
        key.push(b':');
        key.extend_from_slice(part);
    }
    key
}

fn write_pattern_keys(
    w: &mut Writer,
    rng: &mut Rng,
    kb: &[u8],
    patterns: &[SeededPattern],
    stats: &KbStats,
    ttls: bool,
) {
    for (i, p) in patterns.iter().enumerate() {
        let name = p.name.as_bytes();
        let ttl = (ttls && i % 5 == 0).then_some(TTL_MS);
        let key = kb_key(kb, &[b"frequency", name]);
        w.cmd(kb, Category::Frequency, "string", &key, ttl, |pipe| {
            pipe.cmd("INCRBY").arg(&key).arg(p.frequency);
        });
        if i % 2 == 0 {
            let ttl = (ttls && i % 7 == 0).then_some(TTL_MS);
            let value = emotives_json(rng);
            w.set(
                kb,
                Category::Emotives,
                &kb_key(kb, &[b"emotives", name]),
                &value,
                ttl,
            );
        }
        if i % 3 == 0 {
            let value = metadata_json(i);
            w.set(
                kb,
                Category::Metadata,
                &kb_key(kb, &[b"metadata", name]),
                &value,
                None,
            );
        }
        write_metrics(w, kb, p, stats);
    }
}

fn emotives_json(rng: &mut Rng) -> Vec<u8> {
    let list: Vec<serde_json::Value> = (0..rng.range(1, 3))
        .map(|_| {
            let mut obj = serde_json::Map::new();
            for _ in 0..rng.range(1, 2) {
                obj.insert(EMOTIVES[rng.below(4)].into(), json!(rng.score()));
            }
            serde_json::Value::Object(obj)
        })
        .collect();
    serde_json::to_vec(&list).unwrap()
}

fn metadata_json(i: usize) -> Vec<u8> {
    let value = json!({
        "tags": [format!("t{}", i % 4), "seeded"],
        "source": "kbdump-seed",
        "note": if i == 0 { "ünïcödé ✓ \"quoted\"" } else { "plain" },
    });
    serde_json::to_vec(&value).unwrap()
}

/// `entropy`, `normalized_entropy`, `global_normalized_entropy` as float
/// text and `tf_vector` as JSON, computed as `kato-keys.md` defines them.
fn write_metrics(w: &mut Writer, kb: &[u8], p: &SeededPattern, stats: &KbStats) {
    let counts = symbol_counts(p);
    let n = p.length() as f64;
    let t = stats.distinct();
    let log_t = |x: f64| if t <= 1.0 { 0.0 } else { x.ln() / t.ln() };
    let probs = counts.values().map(|&c| c as f64 / n);
    let entropy: f64 = -probs.clone().map(|q| q * q.log2()).sum::<f64>();
    let normalized: f64 = -probs.map(|q| q * log_t(q)).sum::<f64>();
    let global: f64 = -counts
        .keys()
        .map(|s| stats.pmf[s] as f64 / stats.pattern_count as f64)
        .map(|q| q * log_t(q))
        .sum::<f64>();
    let tf: serde_json::Map<String, serde_json::Value> = counts
        .iter()
        .map(|(s, &c)| (String::from_utf8_lossy(s).into_owned(), json!(c as f64 / n)))
        .collect();
    let name = p.name.as_bytes();
    let metrics: [(&[u8], Vec<u8>); 4] = [
        (b"entropy", entropy.to_string().into_bytes()),
        (b"normalized_entropy", normalized.to_string().into_bytes()),
        (
            b"global_normalized_entropy",
            global.to_string().into_bytes(),
        ),
        (b"tf_vector", serde_json::to_vec(&tf).unwrap()),
    ];
    for (metric, value) in metrics {
        w.set(
            kb,
            Category::Metrics,
            &kb_key(kb, &[metric, name]),
            &value,
            None,
        );
    }
}

/// The `symbols` category in both KATO layouts, plus `affinity` hashes.
fn write_symbol_keys(w: &mut Writer, rng: &mut Rng, kb: &[u8], stats: &KbStats) {
    write_hash(
        w,
        kb,
        Category::Symbols,
        &kb_key(kb, &[b"symbols", b"freq"]),
        &stats.freq,
    );
    write_hash(
        w,
        kb,
        Category::Symbols,
        &kb_key(kb, &[b"symbols", b"pmf"]),
        &stats.pmf,
    );
    for (i, (sym, names)) in stats.patterns_of.iter().enumerate() {
        let key = kb_key(kb, &[b"symbol_to_patterns", sym]);
        w.cmd(kb, Category::Symbols, "set", &key, None, |pipe| {
            pipe.cmd("SADD")
                .arg(&key)
                .arg(names.iter().collect::<Vec<_>>());
        });
        let freq = stats.freq[sym].to_string().into_bytes();
        let pmf = stats.pmf[sym].to_string().into_bytes();
        w.set(
            kb,
            Category::Symbols,
            &kb_key(kb, &[b"symbol", b"freq", sym]),
            &freq,
            None,
        );
        w.set(
            kb,
            Category::Symbols,
            &kb_key(kb, &[b"symbol", b"pmf", sym]),
            &pmf,
            None,
        );
        if i % 3 == 0 {
            write_affinity(w, rng, kb, sym);
        }
    }
}

fn write_hash(w: &mut Writer, kb: &[u8], cat: Category, key: &[u8], map: &BTreeMap<Vec<u8>, i64>) {
    let fields: Vec<(&Vec<u8>, i64)> = map.iter().map(|(k, &v)| (k, v)).collect();
    w.cmd(kb, cat, "hash", key, None, |pipe| {
        pipe.cmd("HSET").arg(key).arg(fields);
    });
}

fn write_affinity(w: &mut Writer, rng: &mut Rng, kb: &[u8], sym: &[u8]) {
    let key = kb_key(kb, &[b"affinity", sym]);
    let fields: Vec<(&str, String)> = EMOTIVES[..rng.range(1, 4)]
        .iter()
        .map(|e| (*e, rng.score().to_string()))
        .collect();
    w.cmd(kb, Category::Affinity, "hash", &key, None, |pipe| {
        pipe.cmd("HSET").arg(&key).arg(fields);
    });
}

fn write_globals(w: &mut Writer, kb: &[u8], patterns: &[SeededPattern], stats: &KbStats) {
    let symbols: i64 = stats.freq.values().sum();
    let frequencies: i64 = patterns.iter().map(|p| p.frequency).sum();
    let globals: [(&[u8], i64); 3] = [
        (b"total_symbols_in_patterns_frequencies", symbols),
        (b"total_pattern_frequencies", frequencies),
        (b"total_unique_patterns", patterns.len() as i64),
    ];
    for (name, value) in globals {
        let key = kb_key(kb, &[b"global", name]);
        w.cmd(kb, Category::Globals, "string", &key, None, |pipe| {
            pipe.cmd("INCRBY").arg(&key).arg(value);
        });
    }
}

fn write_predictions(w: &mut Writer, rng: &mut Rng, kb: &[u8], patterns: &[SeededPattern]) {
    for p in patterns.iter().take(3) {
        let value = json!({"name": p.name, "confidence": rng.score().abs() / 2.0});
        let key = kb_key(kb, &[b"prediction", &rng.hex40().as_bytes()[..16]]);
        let value = serde_json::to_vec(&value).unwrap();
        w.set(kb, Category::Predictions, &key, &value, Some(TTL_MS));
    }
}

/// Keys KATO does not define (category `other`): every other Redis type,
/// an empty string, an empty hash field value, binary list items, and two
/// traps for sloppy category matching: a bare `{kb}:frequency` (no pattern
/// part, so not `frequency`) and `{kb}:metadata_old:...`.
fn write_other(w: &mut Writer, kb: &[u8], ttls: bool) {
    let cat = Category::Other;
    let list = kb_key(kb, &[b"session_log"]);
    let ttl = ttls.then_some(TTL_MS);
    w.cmd(kb, cat, "list", &list, ttl, |pipe| {
        let items: [&[u8]; 4] = [b"first", b"", b"\x00\xff bin", b"last"];
        pipe.cmd("RPUSH").arg(&list).arg(&items[..]);
    });
    let zset = kb_key(kb, &[b"leaderboard"]);
    w.cmd(kb, cat, "zset", &zset, None, |pipe| {
        let scores = [("1.5", "a"), ("-2.25", "b"), ("3", "c:d"), ("+inf", "top")];
        pipe.cmd("ZADD").arg(&zset).arg(&scores[..]);
    });
    write_stream(w, kb);
    w.set(kb, cat, &kb_key(kb, &[b"empty"]), b"", None);
    let hash = kb_key(kb, &[b"config"]);
    w.cmd(kb, cat, "hash", &hash, None, |pipe| {
        pipe.cmd("HSET")
            .arg(&hash)
            .arg(&[("empty", ""), ("k", "v")][..]);
    });
    let ints = kb_key(kb, &[b"ids"]);
    w.cmd(kb, cat, "set", &ints, None, |pipe| {
        pipe.cmd("SADD").arg(&ints).arg(&[1, 2, 3, -7][..]);
    });
    w.set(kb, cat, &kb_key(kb, &[b"frequency"]), b"7", None);
    let old = kb_key(
        kb,
        &[b"metadata_old", b"0123456789abcdef0123456789abcdef01234567"],
    );
    w.set(kb, cat, &old, b"{}", None);
}

/// Explicit entry ids so that the stream is the same on every run; one
/// consumer group so that stream metadata is exercised too.
fn write_stream(w: &mut Writer, kb: &[u8]) {
    let key = kb_key(kb, &[b"events"]);
    w.cmd(kb, Category::Other, "stream", &key, None, |pipe| {
        for (id, event) in [("1-1", "start"), ("1-2", "step"), ("2-0", "stop")] {
            pipe.cmd("XADD")
                .arg(&key)
                .arg(id)
                .arg("event")
                .arg(event)
                .arg("n")
                .arg(id);
        }
        pipe.cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg("readers")
            .arg("1-2");
    });
}

/// Delivery time given to the seeded pending entries (XCLAIM ... TIME), so
/// that two seeded servers are equal.
pub const PENDING_SINCE_MS: i64 = 1_700_000_000_000;

/// `stm:events:{kb}` as KATO's `redis_streams.py` leaves it: events added
/// with XADD, consumer group `stm_group_{kb}` created with XGROUP CREATE,
/// entries read with XREADGROUP and not yet acknowledged (pending, with
/// fixed delivery times and counts), no TTL.
fn write_stm(w: &mut Writer, kb: &[u8]) {
    let key = [&b"stm:events:"[..], kb].concat();
    let group = [&b"stm_group_"[..], kb].concat();
    w.cmd(kb, Category::Stm, "stream", &key, None, |pipe| {
        for (i, event) in ["observe", "observe", "learn", "predict"]
            .iter()
            .enumerate()
        {
            pipe.cmd("XADD")
                .arg(&key)
                .arg(format!("{}-0", 1_700_000_000_000u64 + i as u64))
                .arg("event")
                .arg(event)
                .arg("payload")
                .arg(format!("{{\"strings\": [\"s{i}\"]}}"));
        }
        pipe.cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg(&group)
            .arg("0");
        for (consumer, count) in [("worker-1", 2), ("worker-2", 1)] {
            pipe.cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&group)
                .arg(consumer)
                .arg("COUNT")
                .arg(count)
                .arg("STREAMS")
                .arg(&key)
                .arg(">");
        }
        for (consumer, id, retries) in [
            ("worker-1", "1700000000000-0", 3),
            ("worker-1", "1700000000001-0", 1),
            ("worker-2", "1700000000002-0", 2),
        ] {
            pipe.cmd("XCLAIM")
                .arg(&key)
                .arg(&group)
                .arg(consumer)
                .arg(0)
                .arg(id)
                .arg("TIME")
                .arg(PENDING_SINCE_MS + retries)
                .arg("RETRYCOUNT")
                .arg(retries)
                .arg("JUSTID");
        }
    });
}

/// KATO's global keys, none under a kb_id: the global STM stream, sessions
/// (JSON and pickled) with TTLs and their index, node liveness with a
/// `:` in the node id, and the caches, two of whose names hold a kb
/// category marker (`kato:metrics:frequency:…`), the trap that once made
/// `kato:metrics` look like a knowledge base with precious keys.
fn seed_kato_global(w: &mut Writer) {
    let stm = b"stm:global";
    w.outside(Category::Stm, "stream", stm, None, |pipe| {
        for id in ["5-0", "6-0"] {
            pipe.cmd("XADD").arg(stm).arg(id).arg("event").arg("global");
        }
    });
    let sessions: [(&[u8], &[u8]); 3] = [
        (
            b"kato:session:session-3f2a9c-1700000000000",
            br#"{"kb_id": "node0_kato", "stm": []}"#,
        ),
        (
            b"kato:session:session-77b0e1-1700000001000",
            br#"{"kb_id": "node1_kato", "stm": [["a"]]}"#,
        ),
        (
            b"kato:session:session-c0ffee-1700000002000",
            b"\x80\x04\x95\x10\x00pickled\xff",
        ),
    ];
    for (key, value) in sessions {
        w.outside(Category::Sessions, "string", key, Some(TTL_MS), |pipe| {
            pipe.cmd("SET").arg(key).arg(value);
        });
    }
    let index = b"kato:session:_active_index";
    w.outside(Category::Sessions, "set", index, None, |pipe| {
        let ids = [
            "session-3f2a9c-1700000000000",
            "session-77b0e1-1700000001000",
        ];
        pipe.cmd("SADD").arg(index).arg(&ids[..]);
    });
    let node = b"kato:session:node:host-a:8000:active";
    w.outside(Category::Sessions, "string", node, Some(TTL_MS), |pipe| {
        pipe.cmd("SET").arg(node).arg("1700000002000");
    });
    let caches: [&[u8]; 6] = [
        b"kato:metrics:normalized_entropy:0cc175b9c0f1b6a831c399e269772661",
        b"kato:metrics:frequency:92eb5ffee6ae2fec3ad71c777531578f",
        b"patterns:top:session-3f2a9c-1700000000000:10",
        b"patterns:name:3f786850e387550fdab836ed7e6dc881de23001b",
        b"patterns:name:3f786850e387550fdab836ed7e6dc881de23001b:session-3f2a9c-1700000000000",
        b"symbols:probabilities:session-3f2a9c-1700000000000",
    ];
    for key in caches {
        w.outside(Category::Caches, "string", key, Some(TTL_MS), |pipe| {
            pipe.cmd("SET").arg(key).arg(r#"{"cached": true}"#);
        });
    }
    let metrics_index = b"kato:metrics:_index";
    w.outside(
        Category::Caches,
        "set",
        metrics_index,
        Some(TTL_MS),
        |pipe| {
            pipe.cmd("SADD").arg(metrics_index).arg(&caches[..2]);
        },
    );
    let probabilities = b"symbols:probabilities";
    w.outside(
        Category::Caches,
        "hash",
        probabilities,
        Some(TTL_MS / 2),
        |pipe| {
            pipe.cmd("HSET")
                .arg(probabilities)
                .arg(&[("a", "0.5"), ("b", "0.25")][..]);
        },
    );
}

/// Keys of no kb_id. Some are traps: the bare kb_id without `:`, a longer
/// name with a kb_id as prefix, and a key that `kb*[1]?:x:*` would match if
/// used as an unescaped SCAN pattern. None contains a category segment, so
/// kb_id discovery should not report them either.
fn seed_unrelated(w: &mut Writer, ttls: bool) {
    let strings: [&[u8]; 5] = [
        b"node0_kato",
        b"node0_kato_backup",
        b"kb_wild1Q:x:note",
        b"\xffunrelated binary",
        b"cache:user:42",
    ];
    for key in strings {
        let ttl = (ttls && key == b"cache:user:42").then_some(TTL_MS);
        w.plain(key, "string", ttl, |pipe| {
            pipe.cmd("SET").arg(key).arg("unrelated");
        });
    }
    w.plain(b"sessions", "hash", None, |pipe| {
        pipe.cmd("HSET").arg("sessions").arg("s1").arg("alice");
    });
    w.plain(b"queue:jobs", "list", None, |pipe| {
        pipe.cmd("RPUSH").arg("queue:jobs").arg("job1").arg("job2");
    });
}

/// Batches commands into pipelines and records every key written.
struct Writer<'a> {
    conn: &'a mut Connection,
    pipe: Pipeline,
    queued: usize,
    seeded: Seeded,
}

impl<'a> Writer<'a> {
    const BATCH: usize = 2000;

    fn new(conn: &'a mut Connection) -> Self {
        Writer {
            conn,
            pipe: ::redis::pipe(),
            queued: 0,
            seeded: Seeded::default(),
        }
    }

    /// Queues the commands that write one kb key, plus its TTL.
    fn cmd(
        &mut self,
        kb: &[u8],
        category: Category,
        kind: &'static str,
        key: &[u8],
        ttl_ms: Option<u64>,
        write: impl FnOnce(&mut Pipeline),
    ) {
        let meta = SeededKey {
            kb_id: Some(kb.to_vec()),
            category: Some(category),
            kind,
            ttl_ms,
        };
        self.record(key, meta, write);
    }

    fn set(&mut self, kb: &[u8], cat: Category, key: &[u8], value: &[u8], ttl: Option<u64>) {
        self.cmd(kb, cat, "string", key, ttl, |pipe| {
            pipe.cmd("SET").arg(key).arg(value);
        });
    }

    /// Queues a foreign key (of no kb_id, not KATO's).
    fn plain(
        &mut self,
        key: &[u8],
        kind: &'static str,
        ttl_ms: Option<u64>,
        write: impl FnOnce(&mut Pipeline),
    ) {
        self.outside(Category::Foreign, kind, key, ttl_ms, write);
    }

    /// Queues a key of no kb_id, of this category.
    fn outside(
        &mut self,
        category: Category,
        kind: &'static str,
        key: &[u8],
        ttl_ms: Option<u64>,
        write: impl FnOnce(&mut Pipeline),
    ) {
        let meta = SeededKey {
            kb_id: None,
            category: Some(category),
            kind,
            ttl_ms,
        };
        self.record(key, meta, write);
    }

    fn record(&mut self, key: &[u8], meta: SeededKey, write: impl FnOnce(&mut Pipeline)) {
        write(&mut self.pipe);
        if let Some(ttl) = meta.ttl_ms {
            self.pipe.cmd("PEXPIRE").arg(key).arg(ttl);
        }
        let previous = self.seeded.keys.insert(key.to_vec(), meta);
        assert!(previous.is_none(), "seeder wrote {} twice", show_key(key));
        self.queued += 1;
        if self.queued >= Self::BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.queued > 0 {
            self.pipe
                .exec(self.conn)
                .unwrap_or_else(|e| panic!("seeding failed: {e}"));
            self.pipe.clear();
            self.queued = 0;
        }
    }

    fn finish(mut self) -> Seeded {
        self.flush();
        std::mem::take(&mut self.seeded)
    }
}

/// xorshift64*: deterministic, and no extra crate.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// A float in -2.00..=2.00 with two decimals, like KATO's emotives.
    fn score(&mut self) -> f64 {
        (self.below(401) as f64 - 200.0) / 100.0
    }

    /// 40 hex digits, the shape of a SHA1 pattern name.
    fn hex40(&mut self) -> String {
        (0..3)
            .map(|_| format!("{:016x}", self.next()))
            .collect::<String>()[..40]
            .to_string()
    }
}

// ---------------------------------------------------------------------------
// Snapshots

/// Every key of a server, by key bytes.
pub type Snapshot = BTreeMap<Vec<u8>, KeySnapshot>;

/// One key as ordinary commands show it.
#[derive(Clone, Debug, PartialEq)]
pub struct KeySnapshot {
    /// The answer of TYPE: `string`, `list`, `set`, `zset`, `hash`, `stream`.
    pub kind: String,
    pub value: Value,
    /// PTTL in milliseconds, `None` when the key does not expire.
    pub pttl: Option<i64>,
}

/// Field/value pairs of a hash or a stream entry.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;
/// A stream entry: its id and its field/value pairs.
pub type StreamEntry = (String, Pairs);

/// A stream's consumer group: what a copy must carry over for KATO to go
/// on reading where it was (consumers' seen/active times are left out:
/// a logical re-creation sets them to its own time).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupSnapshot {
    pub name: Vec<u8>,
    pub last_delivered_id: String,
    /// Pending entries in id order: (id, consumer, delivery time in unix
    /// ms, delivery count).
    pub pending: Vec<(String, Vec<u8>, i64, i64)>,
    /// Consumer names, sorted.
    pub consumers: Vec<Vec<u8>>,
}

/// A logical value, in an order that does not depend on the encoding.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    /// Sorted members.
    Set(Vec<Vec<u8>>),
    /// (member, score), in ZRANGE order.
    ZSet(Vec<(Vec<u8>, f64)>),
    /// (field, value), sorted by field.
    Hash(Pairs),
    Stream {
        /// (entry id, field/value pairs), in id order.
        entries: Vec<StreamEntry>,
        /// Consumer groups, sorted by name.
        groups: Vec<GroupSnapshot>,
    },
    /// A type this helper does not read (a module type, say).
    Unsupported(String),
}

/// Reads the whole server: SCAN, then pipelined TYPE + PTTL and one value
/// read per key. Keys that vanish in between are left out.
pub fn snapshot(conn: &mut Connection) -> Snapshot {
    let mut snap = Snapshot::new();
    let mut cursor = "0".to_string();
    loop {
        let (next, keys): (String, Vec<Vec<u8>>) = ::redis::cmd("SCAN")
            .arg(&cursor)
            .arg("COUNT")
            .arg(1000)
            .query(conn)
            .unwrap_or_else(|e| panic!("SCAN failed: {e}"));
        let fresh: Vec<Vec<u8>> = keys.into_iter().filter(|k| !snap.contains_key(k)).collect();
        snap.extend(read_keys(conn, fresh));
        if next == "0" {
            return snap;
        }
        cursor = next;
    }
}

fn read_keys(conn: &mut Connection, keys: Vec<Vec<u8>>) -> Vec<(Vec<u8>, KeySnapshot)> {
    if keys.is_empty() {
        return Vec::new(); // SCAN may return an empty batch mid-way
    }
    let mut pipe = ::redis::pipe();
    for key in &keys {
        pipe.cmd("TYPE").arg(key).cmd("PTTL").arg(key);
    }
    let meta: Vec<(String, i64)> = query_pairs(&pipe, conn);
    let mut pipe = ::redis::pipe();
    for (key, (kind, _)) in keys.iter().zip(&meta) {
        queue_value_read(&mut pipe, key, kind);
    }
    let replies: Vec<Vec<Reply>> = query_grouped(&pipe, conn, &meta);
    let entries = keys.into_iter().zip(meta).zip(replies);
    entries
        .filter(|((_, (kind, _)), _)| kind != "none")
        .map(|((key, (kind, pttl)), replies)| {
            let value = decode_value(&kind, replies);
            let pttl = (pttl >= 0).then_some(pttl);
            (key, KeySnapshot { kind, value, pttl })
        })
        .collect()
}

fn query_pairs(pipe: &Pipeline, conn: &mut Connection) -> Vec<(String, i64)> {
    let flat: Vec<Reply> = pipe
        .query(conn)
        .unwrap_or_else(|e| panic!("TYPE/PTTL failed: {e}"));
    flat.chunks(2)
        .map(|pair| {
            (
                as_text(&pair[0]),
                ::redis::from_redis_value_ref(&pair[1]).unwrap(),
            )
        })
        .collect()
}

/// How many replies [`queue_value_read`] queues for a type.
fn reads_for(kind: &str) -> usize {
    match kind {
        "stream" => 2,
        "string" | "list" | "set" | "zset" | "hash" => 1,
        _ => 0,
    }
}

fn queue_value_read(pipe: &mut Pipeline, key: &[u8], kind: &str) {
    match kind {
        "string" => pipe.cmd("GET").arg(key),
        "list" => pipe.cmd("LRANGE").arg(key).arg(0).arg(-1),
        "set" => pipe.cmd("SMEMBERS").arg(key),
        "zset" => pipe.cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES"),
        "hash" => pipe.cmd("HGETALL").arg(key),
        "stream" => pipe
            .cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .cmd("XINFO")
            .arg("STREAM")
            .arg(key)
            .arg("FULL")
            .arg("COUNT")
            .arg(0),
        _ => pipe,
    };
}

/// Runs the value pipeline and splits its replies per key. A key that
/// vanished after TYPE gives nil or an error reply; errors are kept in
/// place (`ignore_errors`) so the split stays aligned.
fn query_grouped(
    pipe: &Pipeline,
    conn: &mut Connection,
    meta: &[(String, i64)],
) -> Vec<Vec<Reply>> {
    let mut pipe = pipe.clone();
    let mut flat: std::vec::IntoIter<Reply> = pipe
        .ignore_errors()
        .query::<Vec<Reply>>(conn)
        .unwrap_or_else(|e| panic!("reading values failed: {e}"))
        .into_iter();
    meta.iter()
        .map(|(kind, _)| flat.by_ref().take(reads_for(kind)).collect())
        .collect()
}

fn decode_value(kind: &str, replies: Vec<Reply>) -> Value {
    let mut replies = replies.into_iter();
    let mut next = || replies.next().unwrap_or(Reply::Nil);
    match kind {
        "string" => Value::String(bytes(next())),
        "list" => Value::List(list(next())),
        "set" => Value::Set(sorted(list(next()))),
        "zset" => Value::ZSet(zset_pairs(list(next()))),
        "hash" => Value::Hash(sorted(pairs(list(next())))),
        "stream" => decode_stream(next(), next()),
        other => Value::Unsupported(other.to_string()),
    }
}

fn decode_stream(range: Reply, full: Reply) -> Value {
    let entries = items(range)
        .into_iter()
        .map(|entry| {
            let mut parts = items(entry).into_iter();
            let id = as_text(&parts.next().unwrap_or(Reply::Nil));
            (id, pairs(list(parts.next().unwrap_or(Reply::Nil))))
        })
        .collect();
    let full = field_map(full);
    let groups = full
        .get("groups")
        .cloned()
        .map(items)
        .unwrap_or_default()
        .into_iter()
        .map(decode_group)
        .collect();
    Value::Stream {
        entries,
        groups: sorted(groups),
    }
}

/// One group of `XINFO STREAM key FULL`.
fn decode_group(group: Reply) -> GroupSnapshot {
    let info = field_map(group);
    let get = |name: &str| info.get(name).cloned().unwrap_or(Reply::Nil);
    let pending = items(get("pending"))
        .into_iter()
        .map(|p| {
            let p = items(p);
            let at = |i: usize| p.get(i).cloned().unwrap_or(Reply::Nil);
            let int = |i: usize| as_text(&at(i)).parse::<i64>().unwrap_or(-1);
            (as_text(&at(0)), bytes(at(1)), int(2), int(3))
        })
        .collect();
    let consumers = items(get("consumers"))
        .into_iter()
        .map(|c| {
            field_map(c)
                .get("name")
                .cloned()
                .map(bytes)
                .unwrap_or_default()
        })
        .collect();
    GroupSnapshot {
        name: bytes(get("name")),
        last_delivered_id: as_text(&get("last-delivered-id")),
        pending: sorted(pending),
        consumers: sorted(consumers),
    }
}

/// An XINFO record: a flat field/value array (RESP2) or a map (RESP3).
fn field_map(reply: Reply) -> BTreeMap<String, Reply> {
    match reply {
        Reply::Map(kv) => kv.into_iter().map(|(k, v)| (as_text(&k), v)).collect(),
        other => {
            let flat = items(other);
            flat.chunks(2)
                .filter(|kv| kv.len() == 2)
                .map(|kv| (as_text(&kv[0]), kv[1].clone()))
                .collect()
        }
    }
}

fn items(reply: Reply) -> Vec<Reply> {
    match reply {
        Reply::Array(v) | Reply::Set(v) => v,
        _ => Vec::new(),
    }
}

fn list(reply: Reply) -> Vec<Vec<u8>> {
    items(reply).into_iter().map(bytes).collect()
}

fn bytes(reply: Reply) -> Vec<u8> {
    match reply {
        Reply::BulkString(b) => b,
        Reply::SimpleString(s) => s.into_bytes(),
        Reply::Int(i) => i.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

fn as_text(reply: &Reply) -> String {
    String::from_utf8_lossy(&bytes(reply.clone())).into_owned()
}

fn pairs(flat: Vec<Vec<u8>>) -> Pairs {
    flat.chunks(2)
        .filter(|kv| kv.len() == 2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect()
}

fn zset_pairs(flat: Vec<Vec<u8>>) -> Vec<(Vec<u8>, f64)> {
    let score = |s: &[u8]| {
        String::from_utf8_lossy(s)
            .parse::<f64>()
            .unwrap_or(f64::NAN)
    };
    pairs(flat)
        .into_iter()
        .map(|(m, s)| (m, score(&s)))
        .collect()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Differences between two snapshots, one line each; empty when equal.
/// Remaining TTLs may differ by `ttl_slack_ms` (time passes between reads).
pub fn snapshot_diff(a: &Snapshot, b: &Snapshot, ttl_slack_ms: i64) -> Vec<String> {
    let keys: BTreeSet<&Vec<u8>> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter_map(|key| key_diff(key, a.get(key), b.get(key), ttl_slack_ms))
        .collect()
}

fn key_diff(
    key: &[u8],
    a: Option<&KeySnapshot>,
    b: Option<&KeySnapshot>,
    slack: i64,
) -> Option<String> {
    let k = show_key(key);
    match (a, b) {
        (Some(_), None) => Some(format!("{k}: only in the first")),
        (None, Some(_)) => Some(format!("{k}: only in the second")),
        (Some(x), Some(y)) if x.kind != y.kind => {
            Some(format!("{k}: type {} vs {}", x.kind, y.kind))
        }
        (Some(x), Some(y)) if x.value != y.value => {
            Some(format!("{k}: value {:?} vs {:?}", x.value, y.value))
        }
        (Some(x), Some(y)) if !ttl_close(x.pttl, y.pttl, slack) => {
            Some(format!("{k}: pttl {:?} vs {:?}", x.pttl, y.pttl))
        }
        _ => None,
    }
}

fn ttl_close(a: Option<i64>, b: Option<i64>, slack: i64) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => (x - y).abs() <= slack,
        _ => false,
    }
}

/// Panics listing (up to 20) differences when the snapshots differ.
#[track_caller]
pub fn assert_same_data(a: &Snapshot, b: &Snapshot, ttl_slack_ms: i64) {
    let diff = snapshot_diff(a, b, ttl_slack_ms);
    if !diff.is_empty() {
        let shown: Vec<&str> = diff.iter().take(20).map(String::as_str).collect();
        panic!("{} keys differ:\n{}", diff.len(), shown.join("\n"));
    }
}

/// A key for messages: printable ASCII as is, other bytes as `\xNN`.
pub fn show_key(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}
