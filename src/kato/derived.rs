/*!
KATO's symbol statistics and per-pattern metrics, as pure functions.

The formulas are those of KATO's `scripts/rehydrate_redis.py`; each float
is computed with the same operations in the same order as the Python code,
so the results are bit-identical (both sides call the C library's `log`
and `log2`). The one exception is documented on [`PatternMetrics`].
*/

use indexmap::IndexMap;

/// A fast, non-cryptographic hasher: symbols are not attacker-chosen keys
/// of a long-lived service, and SipHash showed up in profiles.
type Fast = foldhash::fast::RandomState;

/// Per-pattern symbol counts in first-occurrence order.
pub type Counts<'a> = IndexMap<&'a [u8], u32, Fast>;

/// What a kb's patterns say about one symbol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SymbolStat {
    /// Total occurrences across all patterns, repeats counted.
    pub freq: u64,
    /// Number of patterns containing the symbol at least once.
    pub pmf: u64,
}

/// Pass-one accumulator: the symbol tables of one kb_id.
///
/// Symbols keep their first-seen order, which is the order KATO writes
/// the hash fields in.
#[derive(Debug, Default)]
pub struct SymbolTable {
    symbols: IndexMap<Vec<u8>, SymbolStat, Fast>,
    patterns: u64,
    occurrences: u64,
}

impl SymbolTable {
    /// Accounts for one pattern (one ClickHouse row).
    pub fn add_pattern<S: AsRef<[u8]>>(&mut self, events: &[Vec<S>]) {
        self.add_counts(&symbol_counts(events));
    }

    /// Accounts for one pattern given its [`symbol_counts`].
    pub fn add_counts(&mut self, counts: &Counts<'_>) {
        self.patterns += 1;
        for (&symbol, &count) in counts {
            self.occurrences += u64::from(count);
            let stat = match self.symbols.get_mut(symbol) {
                Some(stat) => stat,
                None => self.symbols.entry(symbol.to_vec()).or_default(),
            };
            stat.freq += u64::from(count);
            stat.pmf += 1;
        }
    }

    /// Number of patterns (rows) seen.
    pub fn patterns(&self) -> u64 {
        self.patterns
    }

    /// Total symbol occurrences.
    pub fn occurrences(&self) -> u64 {
        self.occurrences
    }

    /// Number of distinct symbols (KATO's `total_symbols`, the log base).
    pub fn distinct(&self) -> usize {
        self.symbols.len()
    }

    /// Position of a symbol in first-seen order.
    pub fn index_of(&self, symbol: &[u8]) -> Option<usize> {
        self.symbols.get_index_of(symbol)
    }

    /// The symbol at a position.
    pub fn symbol_at(&self, index: usize) -> &[u8] {
        self.symbols
            .get_index(index)
            .map_or(&[], |(k, _)| k.as_slice())
    }

    /// Statistics of one symbol.
    pub fn get(&self, symbol: &[u8]) -> Option<SymbolStat> {
        self.symbols.get(symbol).copied()
    }

    /// All symbols in first-seen order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], SymbolStat)> {
        self.symbols.iter().map(|(k, v)| (k.as_slice(), *v))
    }
}

/// Per-pattern symbol counts in first-occurrence order, like Python's
/// `Counter(s for event in pattern_data for s in event)`.
pub fn symbol_counts<S: AsRef<[u8]>>(events: &[Vec<S>]) -> Counts<'_> {
    let mut counts = Counts::default();
    for symbol in events.iter().flatten() {
        *counts.entry(symbol.as_ref()).or_insert(0) += 1;
    }
    counts
}

/// The four derived values KATO stores for a pattern.
///
/// `global_normalized_entropy` is summed over the pattern's distinct
/// symbols **sorted by their bytes**. KATO iterates a Python `set` there,
/// whose order follows the interpreter's hash seed, so KATO itself differs
/// from run to run in the last bits; any fixed order agrees with it within
/// a few ulps (checked to 1e-12 relative by the tests).
#[derive(Debug, Clone, PartialEq)]
pub struct PatternMetrics {
    /// Shannon entropy in bits.
    pub entropy: f64,
    /// Entropy with log base = number of distinct symbols in the kb.
    pub normalized_entropy: f64,
    /// Entropy of the symbols' corpus probabilities, same base.
    pub global_normalized_entropy: f64,
    /// `{symbol: count / n}` as Python's `json.dumps` writes it.
    pub tf_vector_json: String,
}

/// Computes a pattern's metrics against the kb's finished symbol table;
/// `None` for a pattern without symbols (KATO skips those).
pub fn pattern_metrics<S: AsRef<[u8]>>(
    events: &[Vec<S>],
    table: &SymbolTable,
) -> Option<PatternMetrics> {
    let counts = symbol_counts(events);
    let n: u32 = counts.values().sum();
    if n == 0 {
        return None;
    }
    let n = f64::from(n);
    let t = table.distinct();
    let ln_t = (t as f64).ln();
    let probs = || counts.values().map(|c| f64::from(*c) / n);
    let mut entropy = 0.0;
    for p in probs() {
        entropy -= p * p.log2();
    }
    let mut normalized_entropy = 0.0;
    let mut global_normalized_entropy = 0.0;
    if t > 1 {
        for p in probs() {
            normalized_entropy -= p * (p.ln() / ln_t);
        }
        global_normalized_entropy = global_entropy(&counts, table, ln_t);
    }
    let tf = counts.iter().map(|(s, c)| (*s, f64::from(*c) / n));
    Some(PatternMetrics {
        entropy,
        normalized_entropy,
        global_normalized_entropy,
        tf_vector_json: crate::kato::pytext::json_dumps_tf(tf),
    })
}

fn global_entropy(counts: &Counts<'_>, table: &SymbolTable, ln_t: f64) -> f64 {
    let mut symbols: Vec<&[u8]> = counts.keys().copied().collect();
    symbols.sort_unstable();
    let patterns = table.patterns() as f64;
    let mut sum = 0.0;
    for symbol in symbols {
        let pmf = table.get(symbol).map_or(0, |s| s.pmf);
        let prob = if patterns > 0.0 {
            pmf as f64 / patterns
        } else {
            0.0
        };
        if prob > 0.0 {
            sum -= prob * (prob.ln() / ln_t);
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(events: &[&[&str]]) -> Vec<Vec<Vec<u8>>> {
        events
            .iter()
            .map(|e| e.iter().map(|s| s.as_bytes().to_vec()).collect())
            .collect()
    }

    #[test]
    fn table_counts_repeats_and_patterns() {
        let mut t = SymbolTable::default();
        t.add_pattern(&pattern(&[&["a", "b"], &["a"]]));
        t.add_pattern(&pattern(&[&["b", "c"]]));
        t.add_pattern(&pattern(&[]));
        assert_eq!(t.patterns(), 3);
        assert_eq!(t.occurrences(), 5);
        assert_eq!(t.get(b"a"), Some(SymbolStat { freq: 2, pmf: 1 }));
        assert_eq!(t.get(b"b"), Some(SymbolStat { freq: 2, pmf: 2 }));
        let order: Vec<&[u8]> = t.iter().map(|(s, _)| s).collect();
        assert_eq!(order, vec![&b"a"[..], b"b", b"c"]);
    }

    #[test]
    fn metrics_match_python_values() {
        // Values printed by KATO's formulas in CPython 3.
        let mut t = SymbolTable::default();
        let p1 = pattern(&[&["a", "b"], &["a"]]);
        let p2 = pattern(&[&["b", "c"]]);
        t.add_pattern(&p1);
        t.add_pattern(&p2);
        let m = pattern_metrics(&p1, &t).unwrap();
        assert_eq!(m.entropy, 0.9182958340544896);
        assert_eq!(m.normalized_entropy, 0.579380164285695);
        assert_eq!(
            m.tf_vector_json,
            r#"{"a": 0.6666666666666666, "b": 0.3333333333333333}"#
        );
        assert_eq!(m.global_normalized_entropy, 0.3154648767857287);
    }

    #[test]
    fn empty_pattern_has_no_metrics_and_single_symbol_kb_is_zero() {
        let mut t = SymbolTable::default();
        let p = pattern(&[&["x", "x"]]);
        t.add_pattern(&p);
        assert!(pattern_metrics(&pattern(&[&[]]), &t).is_none());
        let m = pattern_metrics(&p, &t).unwrap();
        assert_eq!((m.entropy, m.normalized_entropy), (0.0, 0.0));
        assert_eq!(m.global_normalized_entropy, 0.0);
    }
}
