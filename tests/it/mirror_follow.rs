//! `mirror --follow` against real servers: writes, deletes and expiries
//! reach ClickHouse within seconds; evictions are not recorded as
//! deletions; a ClickHouse outage (through a proxy the test takes down) and
//! a Redis restart are survived without a false deletion; SIGTERM stops it
//! cleanly.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::mirror_history::{evict_down_to, used_memory};
use crate::support::clickhouse as chs;
use crate::support::proxy::Proxy;
use crate::support::redis::RedisServer;
use kbdump::net::clickhouse::Ch;
use kbdump::net::mirror::MirrorReader;
use redis::Commands;

/// The latest state of kb_id `kbf` in the mirror: key → payload.
async fn latest(ch: &Ch) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(mut reader) = MirrorReader::open(ch, &[b"kbf".to_vec()], &[]).await else {
        return out;
    };
    while let Ok(Some(r)) = reader.next().await {
        out.insert(r.key, r.payload);
    }
    out
}

/// Polls the mirror until `done` holds; returns how long it took.
async fn until(
    ch: &Ch,
    what: &str,
    limit: Duration,
    done: impl Fn(&std::collections::BTreeMap<Vec<u8>, Vec<u8>>) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if done(&latest(ch).await) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "not in ClickHouse after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn follower(ch_url: &str, redis_url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args([
            "--json",
            "mirror",
            "--follow",
            "--create",
            "--status-every",
            "1",
        ])
        .args(["--clickhouse", ch_url, "--redis", redis_url, "--kb", "kbf"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn key(name: &str) -> Vec<u8> {
    format!("kbf:{name}").into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_records_changes_within_seconds_and_survives_outages() {
    let server = chs::server();
    let db = server.database("mirror_follow").await;
    let mut proxy = Proxy::start(server.http_port());
    let ch_url = format!("http://127.0.0.1:{}/?database={db}", proxy.port());
    let ch = Ch::from_url(&server.url(&db)).unwrap();
    let mut redis = RedisServer::builder()
        .config("notify-keyspace-events KA")
        .start();
    let mut conn = redis.client();
    for i in 0..20 {
        let _: () = conn
            .set(format!("kbf:emotives:p{i}"), format!("[{i}]"))
            .unwrap();
        let _: () = conn.set(format!("kbf:frequency:p{i}"), i + 1).unwrap();
    }
    let _: () = conn.set("kbf:metadata:soon", "{}").unwrap();
    let _: () = conn.set("kbf:symbols:freq", "not mirrored").unwrap();
    let child = follower(&ch_url, &redis.url());
    until(&ch, "the first pass", Duration::from_secs(60), |m| {
        m.len() == 41
    })
    .await;

    // A write, an update, a delete and an expiry, each within 5 s.
    let _: () = conn.set("kbf:emotives:new", "[\"new\"]").unwrap();
    let lag = until(&ch, "a new key", Duration::from_secs(5), |m| {
        m.contains_key(&key("emotives:new"))
    })
    .await;
    let _: () = conn.incr("kbf:frequency:p3", 10).unwrap();
    let dumped: Vec<u8> = redis::cmd("DUMP")
        .arg("kbf:frequency:p3")
        .query(&mut conn)
        .unwrap();
    until(&ch, "an update", Duration::from_secs(5), |m| {
        m.get(&key("frequency:p3")) == Some(&dumped)
    })
    .await;
    let _: () = conn.del("kbf:emotives:p1").unwrap();
    until(&ch, "a deletion", Duration::from_secs(5), |m| {
        !m.contains_key(&key("emotives:p1"))
    })
    .await;
    let _: () = conn.pexpire("kbf:metadata:soon", 200).unwrap();
    until(&ch, "an expiry", Duration::from_secs(5), |m| {
        !m.contains_key(&key("metadata:soon"))
    })
    .await;
    assert!(lag < Duration::from_secs(5));

    // Evictions are losses: the mirror keeps the keys.
    let used = used_memory(&mut conn);
    let big = "x".repeat(200_000);
    let _: () = conn.set("kbf:emotives:big", &big).unwrap();
    until(&ch, "a large value", Duration::from_secs(5), |m| {
        m.contains_key(&key("emotives:big"))
    })
    .await;
    evict_down_to(&mut conn, used + 50_000);
    let remaining: Vec<Vec<u8>> = redis::cmd("KEYS").arg("kbf:*").query(&mut conn).unwrap();
    assert!(remaining.len() < 41, "nothing was evicted");

    // ClickHouse down: changes wait, then arrive.
    proxy.down();
    let _: () = conn.set("kbf:emotives:during", "[\"outage\"]").unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.up();
    until(
        &ch,
        "a write during an outage",
        Duration::from_secs(30),
        |m| m.contains_key(&key("emotives:during")),
    )
    .await;

    // Redis restarts empty: the pass after it records no deletion (a kb_id
    // that is not there is not read, so none of its keys is recorded as
    // deleted), and following goes on.
    let before_restart = latest(&ch).await;
    redis.restart();
    let mut conn = redis.client();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _: () = conn.set("kbf:emotives:after", "[\"restart\"]").unwrap();
    until(
        &ch,
        "a write after a Redis restart",
        Duration::from_secs(30),
        |m| m.contains_key(&key("emotives:after")),
    )
    .await;
    let now = latest(&ch).await;
    for k in before_restart.keys() {
        assert!(
            now.contains_key(k),
            "{} recorded as deleted",
            String::from_utf8_lossy(k)
        );
    }

    // SIGTERM: stops cleanly, exit 0, with what it did.
    let pid = child.id() as i32;
    unsafe_free_kill(pid);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stats = &json["follow"];
    assert!(stats["evicted"].as_u64().unwrap() > 0, "{json}");
    assert!(stats["reconnects"].as_u64().unwrap() >= 1, "{json}");
    assert!(
        stats["clickhouse_failures"].as_u64().unwrap() >= 1,
        "{json}"
    );
    assert!(stats["passes"].as_u64().unwrap() >= 2, "{json}");
    assert!(stderr.contains("mirror --follow following:"), "{stderr}");
}

/// SIGTERM through the kill command (the crate forbids unsafe code).
fn unsafe_free_kill(pid: i32) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_refuses_a_server_without_keyspace_events() {
    let server = chs::server();
    let db = server.database("mirror_follow_off").await;
    let redis = RedisServer::start();
    let out = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_kbdump"))
            .args([
                "mirror",
                "--follow",
                "--create",
                "--clickhouse",
                &server.url(&db),
            ])
            .args(["--redis", &redis.url()])
            .output()
            .unwrap()
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("notify-keyspace-events is \"\"")
            && stderr.contains("CONFIG SET notify-keyspace-events KA"),
        "{stderr}"
    );
}
