//! The decoded, encoding-independent value of a key.
//!
//! Two servers can store one logical value in different encodings
//! (listpack vs hashtable, type 15 vs 21 streams), so everything here is
//! logical: element order only where the type has one, no encoding detail.

use std::cmp::Ordering;
use std::fmt;

/// The Redis data type of a value, as `TYPE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RedisType {
    String,
    List,
    Set,
    ZSet,
    Hash,
    Stream,
    Module,
}

impl RedisType {
    /// The name `TYPE` and `SCAN ... TYPE` use.
    pub fn name(&self) -> &'static str {
        match self {
            RedisType::String => "string",
            RedisType::List => "list",
            RedisType::Set => "set",
            RedisType::ZSet => "zset",
            RedisType::Hash => "hash",
            RedisType::Stream => "stream",
            RedisType::Module => "module",
        }
    }

    /// The inverse of [`RedisType::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "string" => RedisType::String,
            "list" => RedisType::List,
            "set" => RedisType::Set,
            "zset" => RedisType::ZSet,
            "hash" => RedisType::Hash,
            "stream" => RedisType::Stream,
            "module" => RedisType::Module,
            _ => return None,
        })
    }
}

impl fmt::Display for RedisType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A decoded value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(Vec<u8>),
    /// Elements in list order.
    List(Vec<Vec<u8>>),
    /// Members in payload order (meaningless; see [`Value::canonical`]).
    Set(Vec<Vec<u8>>),
    /// (member, score) in payload order.
    ZSet(Vec<(Vec<u8>, f64)>),
    Hash(Vec<HashField>),
    Stream(Stream),
    /// A module value: only the module can interpret `raw`, the opcode
    /// stream after the module id (§2.15), end marker included.
    Module {
        module_id: u64,
        name: String,
        raw: Vec<u8>,
    },
}

/// One hash field with its optional per-field expiry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HashField {
    pub field: Vec<u8>,
    pub value: Vec<u8>,
    /// Absolute unix time in ms; may lie in the past (servers save such
    /// fields; the consumer decides what to do with them).
    pub expire_at_ms: Option<i64>,
}

/// A stream id `ms-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    pub fn new(ms: u64, seq: u64) -> Self {
        StreamId { ms, seq }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl std::str::FromStr for StreamId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid stream id {s:?}");
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        Ok(StreamId {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// One stream entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: StreamId,
    /// Field/value pairs in entry order (field names may repeat).
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A stream with its metadata and consumer groups (§2.13).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stream {
    /// Live entries, ascending by id.
    pub entries: Vec<StreamEntry>,
    /// Number of live entries as the payload states it.
    pub length: u64,
    pub last_id: StreamId,
    /// Not stored by type 15 (Redis ≤ 6.2); `None` then.
    pub first_id: Option<StreamId>,
    /// Not stored by type 15.
    pub max_deleted_id: Option<StreamId>,
    /// Not stored by type 15.
    pub entries_added: Option<u64>,
    pub groups: Vec<StreamGroup>,
}

/// A consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamGroup {
    pub name: Vec<u8>,
    pub last_delivered: StreamId,
    /// `None` when unknown to the server or not stored (type 15).
    pub entries_read: Option<u64>,
    /// The group's pending entries list, ascending by id.
    pub pel: Vec<PendingEntry>,
    pub consumers: Vec<Consumer>,
}

/// One entry of a group's PEL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingEntry {
    pub id: StreamId,
    pub delivery_time_ms: u64,
    pub delivery_count: u64,
}

/// A consumer of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub name: Vec<u8>,
    pub seen_time_ms: u64,
    /// Only stored by type 21; `None` also when the consumer never
    /// read anything (stored as -1).
    pub active_time_ms: Option<u64>,
    /// Ids of the group PEL entries this consumer owns.
    pub pending: Vec<StreamId>,
}

impl Value {
    /// The Redis type of the value.
    pub fn redis_type(&self) -> RedisType {
        match self {
            Value::String(_) => RedisType::String,
            Value::List(_) => RedisType::List,
            Value::Set(_) => RedisType::Set,
            Value::ZSet(_) => RedisType::ZSet,
            Value::Hash(_) => RedisType::Hash,
            Value::Stream(_) => RedisType::Stream,
            Value::Module { .. } => RedisType::Module,
        }
    }

    /// The value in a normal form: sets and hashes sorted, zsets sorted by
    /// member, stream groups/consumers sorted by name, and type-15 stream
    /// metadata filled in the way a newer server derives it on load. Two
    /// encodings of one value have equal canonical forms.
    pub fn canonical(&self) -> Value {
        match self {
            Value::Set(m) => Value::Set(sorted(m.clone())),
            Value::Hash(f) => Value::Hash(sorted(f.clone())),
            Value::ZSet(z) => {
                let mut z = z.clone();
                z.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
                Value::ZSet(z)
            }
            Value::Stream(s) => Value::Stream(s.canonical()),
            other => other.clone(),
        }
    }

    /// Same type and same logical value. Consumer seen/active times are
    /// ignored: like a key's LRU idle time they record access, not data,
    /// and no command can set them.
    pub fn logically_eq(&self, other: &Value) -> bool {
        match (self.canonical(), other.canonical()) {
            (Value::ZSet(a), Value::ZSet(b)) => zsets_eq(&a, &b),
            (Value::Stream(a), Value::Stream(b)) => {
                a.without_access_times() == b.without_access_times()
            }
            (a, b) => a == b,
        }
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Scores compared bit-for-bit except that -0.0 == 0.0, as for Redis.
fn zsets_eq(a: &[(Vec<u8>, f64)], b: &[(Vec<u8>, f64)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.0 == y.0 && (x.1 == y.1 || x.1.total_cmp(&y.1) == Ordering::Equal))
}

impl Stream {
    /// See [`Value::canonical`].
    pub fn canonical(&self) -> Stream {
        let mut s = self.clone();
        if s.first_id.is_none() {
            s.fill_type15_metadata();
        }
        s.groups.sort_by(|a, b| a.name.cmp(&b.name));
        for g in &mut s.groups {
            g.consumers.sort_by(|a, b| a.name.cmp(&b.name));
        }
        s
    }

    /// What a Redis ≥ 7.0 server derives when it loads a type-15 stream.
    fn fill_type15_metadata(&mut self) {
        self.first_id = Some(self.entries.first().map_or(StreamId::ZERO, |e| e.id));
        self.max_deleted_id = Some(StreamId::ZERO);
        self.entries_added = Some(self.length);
        for i in 0..self.groups.len() {
            if self.groups[i].entries_read.is_none() {
                let id = self.groups[i].last_delivered;
                self.groups[i].entries_read = self.estimate_entries_read(id);
            }
        }
    }

    /// The server's estimate of a group's entries_read from its last
    /// delivered id (Redis `streamEstimateDistanceFromFirstEverEntry`).
    pub fn estimate_entries_read(&self, id: StreamId) -> Option<u64> {
        let added = self.entries_added.unwrap_or(self.length);
        let first = self.first_id.unwrap_or(StreamId::ZERO);
        let max_del = self.max_deleted_id.unwrap_or(StreamId::ZERO);
        if added == 0 {
            return Some(0);
        }
        if self.length == 0 && id <= self.last_id {
            return Some(added);
        }
        match id.cmp(&self.last_id) {
            Ordering::Equal => return Some(added),
            Ordering::Greater => return None,
            Ordering::Less => {}
        }
        if max_del == StreamId::ZERO || max_del < first {
            match id.cmp(&first) {
                Ordering::Less => return Some(added - self.length),
                Ordering::Equal => return Some(added - self.length + 1),
                Ordering::Greater => {}
            }
        }
        None
    }

    fn without_access_times(&self) -> Stream {
        let mut s = self.clone();
        for c in s.groups.iter_mut().flat_map(|g| g.consumers.iter_mut()) {
            c.seen_time_ms = 0;
            c.active_time_ms = None;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn type_names_round_trip() {
        for t in [
            RedisType::String,
            RedisType::List,
            RedisType::Set,
            RedisType::ZSet,
            RedisType::Hash,
            RedisType::Stream,
            RedisType::Module,
        ] {
            assert_eq!(RedisType::from_name(t.name()), Some(t));
        }
        assert_eq!(RedisType::ZSet.name(), "zset");
    }

    #[test]
    fn sets_equal_in_any_order_lists_not() {
        let a = Value::Set(vec![b("x"), b("y")]);
        let c = Value::Set(vec![b("y"), b("x")]);
        assert!(a.logically_eq(&c));
        assert!(!Value::List(vec![b("x"), b("y")]).logically_eq(&Value::List(vec![b("y"), b("x")])));
        assert!(!a.logically_eq(&Value::List(vec![b("x"), b("y")])));
    }

    #[test]
    fn zset_scores_compared() {
        let a = Value::ZSet(vec![(b("a"), 1.0), (b("b"), 0.0)]);
        let c = Value::ZSet(vec![(b("b"), -0.0), (b("a"), 1.0)]);
        assert!(a.logically_eq(&c));
        assert!(!a.logically_eq(&Value::ZSet(vec![(b("a"), 1.5), (b("b"), 0.0)])));
    }

    #[test]
    fn hash_field_ttl_matters() {
        let f = |t| {
            Value::Hash(vec![HashField {
                field: b("f"),
                value: b("v"),
                expire_at_ms: t,
            }])
        };
        assert!(f(Some(5)).logically_eq(&f(Some(5))));
        assert!(!f(Some(5)).logically_eq(&f(None)));
    }

    #[test]
    fn stream_ids_parse_and_print() {
        let id: StreamId = "12-3".parse().unwrap();
        assert_eq!(id, StreamId::new(12, 3));
        assert_eq!(id.to_string(), "12-3");
        assert!("12".parse::<StreamId>().is_err());
    }

    #[test]
    fn type15_stream_equals_its_type21_reload() {
        let entry = StreamEntry {
            id: StreamId::new(5, 0),
            fields: vec![(b("f"), b("v"))],
        };
        let group = |read| StreamGroup {
            name: b("g"),
            last_delivered: StreamId::new(5, 0),
            entries_read: read,
            pel: vec![],
            consumers: vec![],
        };
        let old = Stream {
            entries: vec![entry.clone()],
            length: 1,
            last_id: StreamId::new(5, 0),
            groups: vec![group(None)],
            ..Stream::default()
        };
        let new = Stream {
            first_id: Some(StreamId::new(5, 0)),
            max_deleted_id: Some(StreamId::ZERO),
            entries_added: Some(1),
            groups: vec![group(Some(1))],
            ..old.clone()
        };
        assert!(Value::Stream(old).logically_eq(&Value::Stream(new.clone())));
        let mut other = new.clone();
        other.entries_added = Some(2);
        assert!(!Value::Stream(other).logically_eq(&Value::Stream(new)));
    }
}
