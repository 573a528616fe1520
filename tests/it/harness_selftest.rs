//! Proves the test harness itself: every server flavor starts and is the
//! version it claims, servers are isolated and cleaned up, the seeder writes
//! every category, and snapshots compare what they should.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::redis::{Flavor, RedisServer};
use crate::support::seed::{
    seed_kato, show_key, snapshot, snapshot_diff, Category, SeedSpec, Seeded, Value, HOT_SYMBOL,
    LARGE_PATTERNS,
};

fn ping(conn: &mut redis::Connection) -> String {
    redis::cmd("PING").query(conn).unwrap()
}

/// Starts a flavor, checks its version, and seeds and snapshots it, so the
/// seeder's commands are known to work on every server of the matrix.
fn check_flavor(flavor: Flavor) {
    let server = RedisServer::start_flavor(flavor);
    let version = server.version();
    assert!(
        version.starts_with(flavor.version_prefix()),
        "{flavor:?} reports version {version}"
    );
    let mut conn = server.client();
    let seeded = seed_kato(&mut conn, &SeedSpec::small());
    let snap = snapshot(&mut conn);
    let found: BTreeSet<Vec<u8>> = snap.keys().cloned().collect();
    assert_eq!(
        found,
        seeded.all(),
        "{flavor:?}: snapshot keys differ from seeded keys"
    );
}

#[test]
fn redis_6_2_starts() {
    check_flavor(Flavor::Redis62);
}

#[test]
fn redis_7_0_starts() {
    check_flavor(Flavor::Redis70);
}

#[test]
fn redis_8_2_starts() {
    check_flavor(Flavor::Redis82);
}

#[test]
fn valkey_8_1_starts() {
    check_flavor(Flavor::Valkey81);
}

#[test]
fn valkey_9_1_starts() {
    check_flavor(Flavor::Valkey91);
}

#[test]
fn two_servers_run_side_by_side() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    assert_ne!(a.port(), b.port());
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("a")
        .query(&mut a.client())
        .unwrap();
    let in_b: Option<String> = redis::cmd("GET").arg("k").query(&mut b.client()).unwrap();
    assert_eq!(in_b, None, "servers share data");
}

/// By process, not by port: a parallel test may get the freed port at once.
fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn dropped_server_is_gone() {
    let server = RedisServer::start();
    let (pid, dir) = (server.pid().unwrap(), server.dir().to_path_buf());
    assert!(process_exists(pid));
    drop(server);
    assert!(!process_exists(pid), "server {pid} still runs after drop");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn server_is_stopped_when_a_test_panics() {
    let pid = std::thread::spawn(|| {
        let server = RedisServer::start();
        std::panic::panic_any(server.pid().unwrap())
    })
    .join()
    .expect_err("thread should panic");
    let pid = *pid.downcast::<u32>().unwrap();
    assert!(!process_exists(pid), "server {pid} survived the panic");
}

#[test]
fn kill_and_restart_keep_the_port_and_lose_the_data() {
    let mut server = RedisServer::start();
    let port = server.port();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut server.client())
        .unwrap();
    let pid = server.pid().unwrap();
    server.kill();
    assert!(!server.is_running());
    assert!(!process_exists(pid));
    server.restart();
    assert_eq!(server.port(), port);
    let mut conn = server.client();
    assert_eq!(ping(&mut conn), "PONG");
    let k: Option<String> = redis::cmd("GET").arg("k").query(&mut conn).unwrap();
    assert_eq!(k, None, "no persistence: a restart loses everything");
    server.restart();
    assert!(server.log_tail().contains("Ready to accept connections"));
}

#[test]
fn builder_options_are_applied() {
    let server = RedisServer::builder()
        .flavor(Flavor::Valkey91)
        .requirepass("p@ss word")
        .maxmemory("8mb", "allkeys-lru")
        .config("hz 20")
        .start();
    assert!(server.url().contains(":p%40ss%20word@"));
    let mut conn = server.client();
    let policy: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query(&mut conn)
        .unwrap();
    assert_eq!(policy[1], "allkeys-lru");
    let hz: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("hz")
        .query(&mut conn)
        .unwrap();
    assert_eq!(hz[1], "20");
    let url = format!("redis://127.0.0.1:{}/0", server.port());
    let mut anonymous = redis::Client::open(url).unwrap().get_connection().unwrap();
    let denied: redis::RedisResult<String> = redis::cmd("PING").query(&mut anonymous);
    assert!(denied.is_err(), "PING without AUTH was accepted");
}

fn seeded_server() -> (RedisServer, Seeded) {
    let server = RedisServer::start();
    let seeded = seed_kato(&mut server.client(), &SeedSpec::default());
    (server, seeded)
}

#[test]
fn seeder_writes_every_category_of_every_kb() {
    let (server, seeded) = seeded_server();
    let spec = SeedSpec::default();
    assert_eq!(seeded.kb_ids(), spec.kb_ids.iter().cloned().collect());
    for kb in &spec.kb_ids {
        for cat in Category::KB {
            assert!(
                !seeded.of(kb, cat).is_empty(),
                "no {} keys for {}",
                cat.name(),
                show_key(kb)
            );
        }
    }
    for cat in Category::GLOBAL {
        let global = seeded.select(|k| k.kb_id.is_none() && k.category == Some(cat));
        assert!(!global.is_empty(), "no global {} keys", cat.name());
    }
    assert!(!seeded.foreign().is_empty());
    assert_eq!(
        seeded.unrelated().len(),
        seeded.kato_global().len() + seeded.foreign().len()
    );
    let snap = snapshot(&mut server.client());
    for (key, meta) in &seeded.keys {
        let got = &snap[key];
        assert_eq!(got.kind, meta.kind, "type of {}", show_key(key));
        assert_eq!(
            got.pttl.is_some(),
            meta.ttl_ms.is_some(),
            "ttl of {}",
            show_key(key)
        );
    }
    assert!(snap.values().any(|k| k.value == Value::String(Vec::new())));
}

#[test]
fn seeded_keys_carry_their_kb_prefix_and_awkward_bytes() {
    let (_server, seeded) = seeded_server();
    for key in seeded.kato() {
        let kb = seeded.keys[&key].kb_id.clone().unwrap();
        // KATO's STM stream names its kb_id at the end.
        let stm = [&b"stm:events:"[..], &kb].concat();
        assert!(
            (key.starts_with(&kb) && key[kb.len()] == b':') || key == stm,
            "{}",
            show_key(&key)
        );
    }
    let all = seeded.all();
    let has = |needle: &[u8]| {
        all.iter()
            .any(|k| k.windows(needle.len()).any(|w| w == needle))
    };
    for needle in [&b"*"[..], b"?", b"[", b"]", b" ", b"\xff", b"\x00"] {
        assert!(has(needle), "no key contains {}", show_key(needle));
    }
}

#[test]
fn large_collections_are_not_listpack_encoded() {
    let (server, _) = seeded_server();
    let mut conn = server.client();
    let encoding = |conn: &mut redis::Connection, key: &[u8]| -> String {
        redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(key)
            .query(conn)
            .unwrap()
    };
    let mut set_key = b"node0_kato:symbol_to_patterns:".to_vec();
    set_key.extend_from_slice(HOT_SYMBOL);
    let members: usize = redis::cmd("SCARD").arg(&set_key).query(&mut conn).unwrap();
    assert_eq!(members, LARGE_PATTERNS);
    assert_eq!(encoding(&mut conn, &set_key), "hashtable");
    assert_eq!(encoding(&mut conn, b"node0_kato:symbols:freq"), "hashtable");
}

#[test]
fn derived_keys_agree_with_the_patterns() {
    let (server, seeded) = seeded_server();
    let mut conn = server.client();
    for kb in seeded.kb_ids() {
        let patterns = seeded.patterns.iter().filter(|p| p.kb_id == kb);
        let (count, symbols) = patterns.fold((0, 0), |(n, s), p| (n + 1, s + p.length()));
        let mut global = |name: &str| -> usize {
            let mut key = kb.clone();
            key.extend_from_slice(format!(":global:{name}").as_bytes());
            redis::cmd("GET").arg(key).query(&mut conn).unwrap()
        };
        assert_eq!(global("total_unique_patterns"), count);
        assert_eq!(global("total_symbols_in_patterns_frequencies"), symbols);
    }
}

#[test]
fn unescaped_glob_of_the_awkward_kb_catches_the_trap_key() {
    let (server, seeded) = seeded_server();
    let matched: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("kb*[1]?:x:*")
        .query(&mut server.client())
        .unwrap();
    let trap = b"kb_wild1Q:x:note".to_vec();
    assert!(matched.contains(&trap), "the trap key does not trap");
    assert!(seeded.unrelated().contains(&trap));
}

#[test]
fn seeding_is_deterministic() {
    let (a, _) = seeded_server();
    let (b, _) = seeded_server();
    let diff = snapshot_diff(
        &snapshot(&mut a.client()),
        &snapshot(&mut b.client()),
        5_000,
    );
    assert!(diff.is_empty(), "{diff:#?}");
}

/// DUMP + RESTORE every key into a second server of the same version:
/// the snapshots must match, and a change to one field must show.
#[test]
fn snapshot_round_trips_through_dump_and_restore() {
    let (source, _) = seeded_server();
    let target = RedisServer::start();
    let started = std::time::Instant::now();
    let before = snapshot(&mut source.client());
    copy_all(&mut source.client(), &mut target.client(), before.keys());
    let mut target_conn = target.client();
    let after = snapshot(&mut target_conn);
    // Snapshots hold remaining TTLs, which drift by at most the time the
    // copy took (seconds on a loaded machine, one key at a time).
    let slack = 5_000 + started.elapsed().as_millis() as i64;
    let diff = snapshot_diff(&before, &after, slack);
    assert!(diff.is_empty(), "{diff:#?}");
    let _: () = redis::cmd("HSET")
        .arg("node0_kato:symbols:freq")
        .arg("sym000")
        .arg(999_999)
        .query(&mut target_conn)
        .unwrap();
    let slack = 5_000 + started.elapsed().as_millis() as i64;
    let changed = snapshot_diff(&before, &snapshot(&mut target_conn), slack);
    assert_eq!(changed.len(), 1, "{changed:#?}");
}

fn copy_all<'a>(
    from: &mut redis::Connection,
    to: &mut redis::Connection,
    keys: impl Iterator<Item = &'a Vec<u8>>,
) {
    for key in keys {
        let (payload, pttl): (Vec<u8>, i64) = redis::pipe()
            .cmd("DUMP")
            .arg(key)
            .cmd("PTTL")
            .arg(key)
            .query(from)
            .unwrap();
        let ttl = pttl.max(0);
        let _: () = redis::cmd("RESTORE")
            .arg(key)
            .arg(ttl)
            .arg(payload)
            .query(to)
            .unwrap();
    }
}

/// Snapshots compare consumer groups down to their pending entries: an
/// XACK, which changes neither entries nor last-delivered-id, is a
/// difference.
#[test]
fn snapshots_see_stream_groups_and_pending_entries() {
    let (server, _) = seeded_server();
    let mut conn = server.client();
    let before = snapshot(&mut conn);
    let key = b"stm:events:node0_kato".to_vec();
    let Value::Stream { entries, groups } = &before[&key].value else {
        panic!("not a stream: {:?}", before[&key]);
    };
    assert_eq!(entries.len(), 4);
    assert_eq!(groups.len(), 1);
    let group = &groups[0];
    assert_eq!(group.name, b"stm_group_node0_kato");
    assert_eq!(
        group.consumers,
        [b"worker-1".to_vec(), b"worker-2".to_vec()]
    );
    let pending: Vec<(&str, &[u8], i64, i64)> = group
        .pending
        .iter()
        .map(|(id, c, t, n)| (id.as_str(), &c[..], *t, *n))
        .collect();
    let since = crate::support::seed::PENDING_SINCE_MS;
    assert_eq!(
        pending,
        [
            ("1700000000000-0", &b"worker-1"[..], since + 3, 3),
            ("1700000000001-0", b"worker-1", since + 1, 1),
            ("1700000000002-0", b"worker-2", since + 2, 2),
        ]
    );
    let _: i64 = redis::cmd("XACK")
        .arg(&key)
        .arg("stm_group_node0_kato")
        .arg("1700000000001-0")
        .query(&mut conn)
        .unwrap();
    let diff = snapshot_diff(&before, &snapshot(&mut conn), 5_000);
    assert_eq!(diff.len(), 1, "{diff:?}");
}
