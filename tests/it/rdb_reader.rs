//! The RDB reader against real servers of all five flavours: every type
//! and encoding each server produces (strings int/embstr/raw/LZF, lists
//! listpack/quicklist/plain nodes/compressed nodes, sets intset/listpack/
//! hashtable, hashes listpack/hashtable, zsets listpack/skiplist, streams
//! with groups, consumers and pending entries, hash field TTLs where the
//! server has them, keys with TTLs, several dbs, functions, LRU/LFU
//! opcodes), saved with `SAVE`, read back from `dump.rdb`: for every key
//! the payload equals the server's `DUMP`, the expiry its `PEXPIRETIME`
//! and the db is right, and no key is missing or extra.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use kbdump::format::dump;
use kbdump::format::rdb::{Checksum, Item, Magic, RdbReader};
use redis::Connection;

use crate::support::redis::{Flavor, RedisServer};

/// What the server says of one key.
#[derive(Debug)]
struct Expected {
    payload: Vec<u8>,
    /// The absolute expiry: exact from PEXPIRETIME, else the range PTTL
    /// allows (`[before + pttl, after + pttl]` around the PTTL call).
    expire_at_ms: Option<(i64, i64)>,
}

type Keyspace = BTreeMap<(u64, Vec<u8>), Expected>;

fn cmd(con: &mut Connection, args: &[&[u8]]) -> redis::RedisResult<redis::Value> {
    let mut c = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con)
}

fn run(con: &mut Connection, line: &str) {
    let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
    cmd(con, &args).unwrap_or_else(|e| panic!("{line}: {e}"));
}

fn supports(con: &mut Connection, command: &str) -> bool {
    let reply: redis::Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg(command)
        .query(con)
        .unwrap();
    matches!(reply, redis::Value::Array(ref v) if !matches!(v.first(), Some(redis::Value::Nil) | None))
}

/// Seed db 0 with every type and encoding, and dbs 1 and 5 with a few keys.
fn seed(con: &mut Connection) {
    run(con, "FLUSHALL");
    for (k, v) in [
        ("str:int8", "100"),
        ("str:int16", "30000"),
        ("str:int32", "2000000000"),
        ("str:int64", "9000000000000000000"),
        ("str:embstr", "hello world"),
        ("12345", "an integer-encoded key"),
    ] {
        cmd(con, &[b"SET", k.as_bytes(), v.as_bytes()]).unwrap();
    }
    let raw: Vec<u8> = (0..100u32).map(|i| (i * 37 % 251) as u8).collect();
    cmd(con, &[b"SET", b"str:raw", &raw]).unwrap();
    cmd(
        con,
        &[b"SET", b"str:lzf", "abcdefgh".repeat(128).as_bytes()],
    )
    .unwrap();
    let long_key = "k".repeat(300);
    cmd(
        con,
        &[b"SET", long_key.as_bytes(), b"a key long enough for LZF"],
    )
    .unwrap();
    cmd(con, &[b"SET", b"str:big", &vec![b'z'; 300_000]]).unwrap();
    run(con, "SET str:ttl v PX 3600000");
    run(con, "SET str:ttl-far v EX 999999999");
    run(con, "RPUSH list:small a b 1 2 -7 300 70000");
    for i in 0..2000 {
        cmd(
            con,
            &[b"RPUSH", b"list:large", format!("element-{i}").as_bytes()],
        )
        .unwrap();
    }
    cmd(
        con,
        &[b"RPUSH", b"list:bigelem", &vec![b'x'; 20000], b"tail"],
    )
    .unwrap();
    run(con, "CONFIG SET list-compress-depth 1");
    for i in 0..3000 {
        cmd(
            con,
            &[
                b"RPUSH",
                b"list:compressed",
                format!("same-{}", i % 7).as_bytes(),
            ],
        )
        .unwrap();
    }
    run(con, "CONFIG SET list-compress-depth 0");
    run(con, "SADD set:intset 1 2 3 -40000 5000000000");
    run(con, "SADD set:small apple banana cherry");
    for i in 0..300 {
        cmd(
            con,
            &[b"SADD", b"set:large", format!("member-{i}").as_bytes()],
        )
        .unwrap();
    }
    for i in 0..1000 {
        cmd(con, &[b"SADD", b"set:manyints", i.to_string().as_bytes()]).unwrap();
    }
    run(con, "ZADD zset:small 1 a 2.5 b -3 c inf d");
    for i in 0..300 {
        let score = format!("{}", f64::from(i) / 3.0);
        cmd(
            con,
            &[
                b"ZADD",
                b"zset:large",
                score.as_bytes(),
                format!("m-{i}").as_bytes(),
            ],
        )
        .unwrap();
    }
    run(con, "HSET hash:small f1 v1 f2 2 f3 300000");
    for i in 0..600 {
        cmd(
            con,
            &[
                b"HSET",
                b"hash:large",
                format!("field-{i}").as_bytes(),
                format!("value-{i}").as_bytes(),
            ],
        )
        .unwrap();
    }
    cmd(con, &[b"HSET", b"hash:longval", b"f", &[b'y'; 100]]).unwrap();
    run(con, "PEXPIRE hash:small 7200000");
    if supports(con, "HEXPIRE") {
        run(con, "HSET hash:ttl:small a 1 b 2 c 3");
        run(con, "HEXPIRE hash:ttl:small 3600 FIELDS 1 a");
        for i in 0..600 {
            cmd(
                con,
                &[
                    b"HSET",
                    b"hash:ttl:large",
                    format!("field-{i}").as_bytes(),
                    b"v",
                ],
            )
            .unwrap();
        }
        run(con, "HEXPIRE hash:ttl:large 3600 FIELDS 2 field-1 field-2");
    }
    for i in 0..5 {
        cmd(
            con,
            &[
                b"XADD",
                b"stream:simple",
                b"*",
                b"temp",
                i.to_string().as_bytes(),
            ],
        )
        .unwrap();
    }
    run(con, "XADD stream:simple * other field");
    for i in 0..5 {
        cmd(
            con,
            &[
                b"XADD",
                b"stream:groups",
                b"*",
                b"n",
                i.to_string().as_bytes(),
            ],
        )
        .unwrap();
    }
    run(con, "XGROUP CREATE stream:groups g1 0");
    run(
        con,
        "XREADGROUP GROUP g1 alice COUNT 3 STREAMS stream:groups >",
    );
    run(
        con,
        "XREADGROUP GROUP g1 bob COUNT 1 STREAMS stream:groups >",
    );
    run(con, "XGROUP CREATE stream:groups g2 $");
    run(con, "XADD stream:groups 999999999999999-1 n del-me");
    run(con, "XDEL stream:groups 999999999999999-1");
    run(con, "XGROUP CREATE stream:empty g $ MKSTREAM");
    if supports(con, "FUNCTION") {
        let lib =
            "#!lua name=rdbtest\nredis.register_function('rdbtest_noop', function() return 1 end)";
        cmd(con, &[b"FUNCTION", b"LOAD", b"REPLACE", lib.as_bytes()]).unwrap();
    }
    run(con, "SELECT 1");
    run(con, "SET in-db-1 one");
    run(con, "RPUSH list:db1 x y");
    run(con, "SELECT 5");
    run(con, "SET in-db-5 five PX 5000000");
    run(con, "SELECT 0");
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Every key of every db with its DUMP and absolute expiry.
fn keyspace(con: &mut Connection, has_pexpiretime: bool) -> Keyspace {
    let mut out = Keyspace::new();
    for db in 0..16u64 {
        redis::cmd("SELECT").arg(db).query::<()>(con).unwrap();
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(con).unwrap();
        for key in keys {
            let payload: Vec<u8> = redis::cmd("DUMP").arg(&key).query(con).unwrap();
            let expire_at_ms = expiry(con, &key, has_pexpiretime);
            out.insert(
                (db, key),
                Expected {
                    payload,
                    expire_at_ms,
                },
            );
        }
    }
    redis::cmd("SELECT").arg(0).query::<()>(con).unwrap();
    out
}

fn expiry(con: &mut Connection, key: &[u8], has_pexpiretime: bool) -> Option<(i64, i64)> {
    if has_pexpiretime {
        let t: i64 = redis::cmd("PEXPIRETIME").arg(key).query(con).unwrap();
        return (t >= 0).then_some((t, t));
    }
    let before = now_ms();
    let pttl: i64 = redis::cmd("PTTL").arg(key).query(con).unwrap();
    let after = now_ms();
    (pttl >= 0).then_some((before + pttl, after + pttl))
}

struct Read {
    keys: BTreeMap<(u64, Vec<u8>), kbdump::format::rdb::KeyRecord>,
    checksum: Checksum,
    magic: Magic,
    version: u16,
    functions: usize,
    aux: BTreeMap<Vec<u8>, Vec<u8>>,
}

fn read_file(path: &std::path::Path) -> Read {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = RdbReader::new(file).unwrap();
    let header = reader.header();
    let mut keys = BTreeMap::new();
    let mut checksum = None;
    let mut functions = 0;
    let mut aux = BTreeMap::new();
    while let Some(item) = reader.next_item().unwrap() {
        match item {
            Item::Key(k) => {
                let prev = keys.insert((k.db, k.key.clone()), k);
                assert!(prev.is_none(), "a key read twice");
            }
            Item::End { checksum: c } => checksum = Some(c),
            Item::Function(_) => functions += 1,
            Item::Aux { key, value } => {
                aux.insert(key, value);
            }
            _ => {}
        }
    }
    Read {
        keys,
        checksum: checksum.expect("the file ends with EOF"),
        magic: header.magic,
        version: header.version,
        functions,
        aux,
    }
}

fn assert_file_matches_server(server: &RedisServer, flavor: Flavor, policy: &str) {
    let mut con = server.client();
    seed(&mut con);
    run(&mut con, &format!("CONFIG SET maxmemory-policy {policy}"));
    let has_pexpiretime = supports(&mut con, "PEXPIRETIME");
    let has_functions = supports(&mut con, "FUNCTION");
    assert_eq!(
        has_functions,
        flavor != Flavor::Redis62,
        "{flavor:?}: FUNCTION"
    );
    let field_ttls = matches!(flavor, Flavor::Redis82 | Flavor::Valkey91);
    assert_eq!(
        supports(&mut con, "HEXPIRE"),
        field_ttls,
        "{flavor:?}: HEXPIRE"
    );
    run(&mut con, "SAVE");
    let expected = keyspace(&mut con, has_pexpiretime);
    let read = read_file(&server.dir().join("dump.rdb"));

    let label = format!("{flavor:?}");
    assert!(
        matches!(read.checksum, Checksum::Verified(_)),
        "{label}: {:?}",
        read.checksum
    );
    let (_, trailer_version) =
        dump::peek_type_and_version(&expected.values().next().unwrap().payload).unwrap();
    assert_eq!(
        read.version, trailer_version,
        "{label}: file version = DUMP trailer version"
    );
    assert_eq!(read.magic == Magic::Valkey, read.version >= 80, "{label}");
    assert_eq!(
        read.functions,
        usize::from(has_functions),
        "{label}: function libraries"
    );
    assert!(read.aux.contains_key(&b"ctime"[..]), "{label}: aux ctime");
    let read_names: Vec<_> = read.keys.keys().collect();
    let server_names: Vec<_> = expected.keys().collect();
    assert_eq!(
        read_names, server_names,
        "{label}: the same keys in the same dbs"
    );
    for ((db, key), want) in &expected {
        let got = &read.keys[&(*db, key.clone())];
        let name = String::from_utf8_lossy(key);
        assert_eq!(
            got.payload, want.payload,
            "{label}: payload of {name} in db {db}"
        );
        dump::decode(&got.payload).unwrap_or_else(|e| panic!("{label}: {name}: {e}"));
        match (got.expire_at_ms, want.expire_at_ms) {
            (None, None) => {}
            (Some(g), Some((low, high))) => assert!(
                (low..=high).contains(&g),
                "{label}: expiry of {name}: file {g}, server {low}..={high}"
            ),
            (g, w) => panic!("{label}: expiry of {name}: file {g:?}, server {w:?}"),
        }
    }
    let lru_or_lfu = read
        .keys
        .values()
        .filter(|k| k.idle_seconds.is_some() || k.lfu_freq.is_some())
        .count();
    assert_eq!(
        lru_or_lfu,
        read.keys.len(),
        "{label}: every key carries its {policy} data"
    );
}

#[test]
fn every_key_of_every_flavour_reads_as_its_dump() {
    for (i, flavor) in Flavor::ALL.into_iter().enumerate() {
        let server = RedisServer::start_flavor(flavor);
        let policy = if i % 2 == 0 {
            "allkeys-lru"
        } else {
            "allkeys-lfu"
        };
        assert_file_matches_server(&server, flavor, policy);
    }
}

#[test]
fn a_file_saved_without_checksum_reads_with_checksum_disabled() {
    let server = RedisServer::builder().config("rdbchecksum no").start();
    let mut con = server.client();
    run(&mut con, "SET k v");
    run(&mut con, "SAVE");
    let read = read_file(&server.dir().join("dump.rdb"));
    assert_eq!(read.checksum, Checksum::Disabled);
    assert_eq!(read.keys.len(), 1);
}
