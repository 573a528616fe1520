//! Plain commands that re-create a key, for targets that refuse the DUMP
//! payload (older server, or a type id the target numbers differently).
//!
//! The commands assume the key does not exist yet (send `DEL` or use a
//! transaction as needed) and carry no key TTL (add `PEXPIREAT` yourself).
//! Aggregates are split so that no command carries more than
//! [`CommandOptions::max_elements`] members or roughly
//! [`CommandOptions::max_bytes`] bytes, except that one member is never
//! split (a string is, with `APPEND`).
//!
//! What commands cannot reproduce exactly (see [`Value::command_gaps`]):
//! stream consumers' seen/active times (set to the replay time by the
//! server), PEL entries whose message was deleted (`XCLAIM ... FORCE` skips
//! them), stream `entries_added` / `max_deleted_id` / group `entries_read`
//! on servers without `XSETID ... ENTRIESADDED` (Redis < 7.0), per-field
//! TTLs on servers without `HPEXPIREAT` (Redis < 7.4, Valkey < 9.0), and
//! module values (only RESTORE can bring those back).

use std::collections::BTreeMap;

use super::envelope::{Product, ServerKind, VALKEY_FIRST_OWN};
use super::value::{Stream, StreamGroup, StreamId, Value};

/// One command: its arguments, name first.
pub type Command = Vec<Vec<u8>>;

/// How [`Value::to_commands`] builds its commands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandOptions {
    /// Most members (list elements, set members, hash fields, zset pairs,
    /// PEL ids) per command.
    pub max_elements: usize,
    /// Most payload bytes per command, one member always allowed.
    pub max_bytes: usize,
    /// Use `XSETID ... ENTRIESADDED ... MAXDELETEDID` and `XGROUP CREATE ...
    /// ENTRIESREAD` (Redis ≥ 7.0, Valkey).
    pub stream_metadata: bool,
    /// Emit `HPEXPIREAT` for field TTLs (Redis ≥ 7.4, Valkey ≥ 9.0).
    pub field_ttls: bool,
}

impl Default for CommandOptions {
    fn default() -> Self {
        CommandOptions {
            max_elements: 1000,
            max_bytes: 1 << 20,
            stream_metadata: true,
            field_ttls: true,
        }
    }
}

impl CommandOptions {
    /// The options a given target supports.
    pub fn for_server(server: &ServerKind) -> Self {
        let v = server.rdb_version;
        let (stream_metadata, field_ttls) = match server.product {
            Product::Redis => (v >= 10, v >= 12),
            Product::Valkey => (v >= 11, v >= VALKEY_FIRST_OWN),
        };
        CommandOptions {
            stream_metadata,
            field_ttls,
            ..CommandOptions::default()
        }
    }
}

fn arg(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn num(n: impl ToString) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// Commands `prefix member...`, each member a group of arguments, split by
/// the limits.
fn chunked(prefix: &[Vec<u8>], members: Vec<Vec<Vec<u8>>>, opts: &CommandOptions) -> Vec<Command> {
    let mut out = Vec::new();
    let (mut cmd, mut count, mut size) = (prefix.to_vec(), 0, 0);
    for m in members {
        let m_size: usize = m.iter().map(Vec::len).sum();
        if count > 0 && (count + 1 > opts.max_elements.max(1) || size + m_size > opts.max_bytes) {
            out.push(std::mem::replace(&mut cmd, prefix.to_vec()));
            (count, size) = (0, 0);
        }
        cmd.extend(m);
        count += 1;
        size += m_size;
    }
    if count > 0 {
        out.push(cmd);
    }
    out
}

/// A score as text Redis parses back to the same double.
fn score(v: f64) -> Vec<u8> {
    match v {
        f64::INFINITY => arg("+inf"),
        f64::NEG_INFINITY => arg("-inf"),
        _ => num(format!("{v:?}")),
    }
}

impl Value {
    /// Commands that re-create this value under `key`; see the module docs.
    pub fn to_commands(&self, key: &[u8], opts: &CommandOptions) -> Vec<Command> {
        let k = key.to_vec();
        let one = |v: &Vec<u8>| vec![v.clone()];
        match self {
            Value::String(s) => string_commands(&k, s, opts),
            Value::List(l) => chunked(&[arg("RPUSH"), k], l.iter().map(one).collect(), opts),
            Value::Set(m) => chunked(&[arg("SADD"), k], m.iter().map(one).collect(), opts),
            Value::ZSet(z) => {
                let members = z.iter().map(|(m, s)| vec![score(*s), m.clone()]).collect();
                chunked(&[arg("ZADD"), k], members, opts)
            }
            Value::Hash(h) => hash_commands(&k, h, opts),
            Value::Stream(s) => stream_commands(&k, &s.canonical(), opts),
            Value::Module { .. } => Vec::new(),
        }
    }

    /// What [`Value::to_commands`] with `opts` cannot reproduce for this
    /// value, in words; empty when the commands re-create it exactly
    /// (up to consumer access times, which are always listed for streams
    /// that have consumers).
    pub fn command_gaps(&self, opts: &CommandOptions) -> Vec<String> {
        let mut gaps = Vec::new();
        match self {
            Value::Module { name, .. } => gaps.push(format!("module value ({name}) needs RESTORE")),
            Value::Hash(h) if !opts.field_ttls && h.iter().any(|f| f.expire_at_ms.is_some()) => {
                gaps.push("field TTLs need HPEXPIREAT, which the target lacks".into())
            }
            Value::Stream(s) => stream_gaps(&s.canonical(), opts, &mut gaps),
            _ => {}
        }
        gaps
    }
}

fn string_commands(k: &[u8], s: &[u8], opts: &CommandOptions) -> Vec<Command> {
    let mut parts = s.chunks(opts.max_bytes.max(1));
    let first = parts.next().unwrap_or_default();
    let mut out = vec![vec![arg("SET"), k.to_vec(), first.to_vec()]];
    out.extend(parts.map(|p| vec![arg("APPEND"), k.to_vec(), p.to_vec()]));
    out
}

fn hash_commands(k: &[u8], h: &[super::HashField], opts: &CommandOptions) -> Vec<Command> {
    let pairs = h
        .iter()
        .map(|f| vec![f.field.clone(), f.value.clone()])
        .collect();
    let mut out = chunked(&[arg("HSET"), k.to_vec()], pairs, opts);
    if !opts.field_ttls {
        return out;
    }
    let mut by_time: BTreeMap<i64, Vec<Vec<Vec<u8>>>> = BTreeMap::new();
    for f in h {
        if let Some(t) = f.expire_at_ms {
            by_time.entry(t).or_default().push(vec![f.field.clone()]);
        }
    }
    for (t, fields) in by_time {
        for mut cmd in chunked(&[], fields, opts) {
            let mut full = vec![
                arg("HPEXPIREAT"),
                k.to_vec(),
                num(t),
                arg("FIELDS"),
                num(cmd.len()),
            ];
            full.append(&mut cmd);
            out.push(full);
        }
    }
    out
}

fn stream_commands(k: &[u8], s: &Stream, opts: &CommandOptions) -> Vec<Command> {
    let key = || k.to_vec();
    let mut out = Vec::new();
    if s.entries.is_empty() {
        // Only a group can create an empty stream; use a throwaway one.
        let tmp = arg("kbdump-tmp-group");
        let create = [
            arg("XGROUP"),
            arg("CREATE"),
            key(),
            tmp.clone(),
            arg("$"),
            arg("MKSTREAM"),
        ];
        out.push(create.to_vec());
        out.push(vec![arg("XGROUP"), arg("DESTROY"), key(), tmp]);
    }
    for e in &s.entries {
        let mut cmd = vec![arg("XADD"), key(), num(e.id)];
        for (f, v) in &e.fields {
            cmd.extend([f.clone(), v.clone()]);
        }
        out.push(cmd);
    }
    let mut setid = vec![arg("XSETID"), key(), num(s.last_id)];
    if opts.stream_metadata {
        let added = s.entries_added.unwrap_or(s.length);
        let max_del = s.max_deleted_id.unwrap_or(StreamId::ZERO);
        setid.extend([
            arg("ENTRIESADDED"),
            num(added),
            arg("MAXDELETEDID"),
            num(max_del),
        ]);
    }
    out.push(setid);
    for g in &s.groups {
        group_commands(k, s, g, opts, &mut out);
    }
    out
}

fn group_commands(
    k: &[u8],
    s: &Stream,
    g: &StreamGroup,
    opts: &CommandOptions,
    out: &mut Vec<Command>,
) {
    let key = || k.to_vec();
    let mut create = vec![
        arg("XGROUP"),
        arg("CREATE"),
        key(),
        g.name.clone(),
        num(g.last_delivered),
    ];
    if let (true, Some(read)) = (opts.stream_metadata, g.entries_read) {
        create.extend([arg("ENTRIESREAD"), num(read)]);
    }
    out.push(create);
    for c in &g.consumers {
        out.push(vec![
            arg("XGROUP"),
            arg("CREATECONSUMER"),
            key(),
            g.name.clone(),
            c.name.clone(),
        ]);
        // One XCLAIM per run of entries sharing delivery time and count.
        let mut runs: BTreeMap<(u64, u64), Vec<Vec<Vec<u8>>>> = BTreeMap::new();
        for id in c.pending.iter().filter(|id| entry_exists(s, **id)) {
            let Some(p) = g.pel.iter().find(|p| p.id == *id) else {
                continue;
            };
            runs.entry((p.delivery_time_ms, p.delivery_count))
                .or_default()
                .push(vec![num(id)]);
        }
        for ((time, count), ids) in runs {
            let prefix = [
                arg("XCLAIM"),
                key(),
                g.name.clone(),
                c.name.clone(),
                arg("0"),
            ];
            for mut cmd in chunked(&prefix, ids, opts) {
                cmd.extend([arg("TIME"), num(time), arg("RETRYCOUNT"), num(count)]);
                cmd.extend([arg("FORCE"), arg("JUSTID")]);
                out.push(cmd);
            }
        }
    }
}

fn entry_exists(s: &Stream, id: StreamId) -> bool {
    s.entries.binary_search_by(|e| e.id.cmp(&id)).is_ok()
}

fn stream_gaps(s: &Stream, opts: &CommandOptions, gaps: &mut Vec<String>) {
    if s.groups.iter().any(|g| !g.consumers.is_empty()) {
        gaps.push("consumer seen/active times become the replay time".into());
    }
    let orphans = s
        .groups
        .iter()
        .flat_map(|g| &g.pel)
        .filter(|p| !entry_exists(s, p.id))
        .count();
    if orphans > 0 {
        gaps.push(format!(
            "{orphans} pending entries refer to deleted messages and are dropped"
        ));
    }
    if !opts.stream_metadata {
        gaps.push("entries_added, max_deleted_id and entries_read need Redis >= 7.0".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::dump::HashField;

    fn text(cmds: &[Command]) -> Vec<String> {
        cmds.iter()
            .map(|c| {
                c.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    fn opts(max_elements: usize, max_bytes: usize) -> CommandOptions {
        CommandOptions {
            max_elements,
            max_bytes,
            ..CommandOptions::default()
        }
    }

    #[test]
    fn lists_are_chunked_by_count() {
        let v = Value::List((0..5).map(num).collect());
        assert_eq!(
            text(&v.to_commands(b"k", &opts(2, 100))),
            ["RPUSH k 0 1", "RPUSH k 2 3", "RPUSH k 4"]
        );
    }

    #[test]
    fn chunks_respect_bytes_but_keep_big_members_whole() {
        let v = Value::Set(vec![arg("aaaa"), arg("b"), arg("cccccccc"), arg("d")]);
        assert_eq!(
            text(&v.to_commands(b"k", &opts(100, 5))),
            ["SADD k aaaa b", "SADD k cccccccc", "SADD k d"]
        );
    }

    #[test]
    fn long_strings_use_append() {
        let v = Value::String(arg("abcdefg"));
        assert_eq!(
            text(&v.to_commands(b"k", &opts(10, 3))),
            ["SET k abc", "APPEND k def", "APPEND k g"]
        );
        assert_eq!(
            text(&Value::String(vec![]).to_commands(b"k", &opts(10, 3))),
            ["SET k "]
        );
    }

    #[test]
    fn zset_scores_round_trip_as_text() {
        let v = Value::ZSet(vec![
            (arg("a"), 0.1),
            (arg("b"), f64::NEG_INFINITY),
            (arg("c"), 1e300),
        ]);
        assert_eq!(
            text(&v.to_commands(b"k", &CommandOptions::default())),
            ["ZADD k 0.1 a -inf b 1e300 c"]
        );
    }

    #[test]
    fn field_ttls_grouped_by_time() {
        let f = |n: &str, t| HashField {
            field: arg(n),
            value: arg("v"),
            expire_at_ms: t,
        };
        let v = Value::Hash(vec![
            f("a", Some(5)),
            f("b", None),
            f("c", Some(5)),
            f("d", Some(7)),
        ]);
        let cmds = text(&v.to_commands(b"k", &CommandOptions::default()));
        assert_eq!(
            cmds,
            [
                "HSET k a v b v c v d v",
                "HPEXPIREAT k 5 FIELDS 2 a c",
                "HPEXPIREAT k 7 FIELDS 1 d",
            ]
        );
        let no_ttl = CommandOptions {
            field_ttls: false,
            ..CommandOptions::default()
        };
        assert_eq!(v.to_commands(b"k", &no_ttl).len(), 1);
        assert_eq!(v.command_gaps(&no_ttl).len(), 1);
    }

    #[test]
    fn options_follow_the_server() {
        let s = |product, rdb_version| ServerKind {
            product,
            rdb_version,
            relaxed: false,
        };
        let o = CommandOptions::for_server(&s(Product::Redis, 9));
        assert!(!o.stream_metadata && !o.field_ttls);
        let o = CommandOptions::for_server(&s(Product::Redis, 12));
        assert!(o.stream_metadata && o.field_ttls);
        let o = CommandOptions::for_server(&s(Product::Valkey, 11));
        assert!(o.stream_metadata && !o.field_ttls);
        assert!(CommandOptions::for_server(&s(Product::Valkey, 80)).field_ttls);
    }
}
