//! mirror, restore-from-mirror, check and error reporting against real
//! ClickHouse and Redis servers.

#[path = "support/clickhouse.rs"]
mod chs;

use chs::{snapshot, MiniRedis, Val};
use kbdump::check::check;
use kbdump::clickhouse_io::{Ch, ChError};
use kbdump::kato::Category;
use kbdump::mirror::{mirror, restore_records, MirrorReader};
use kbdump::progress::NoProgress;
use kbdump::rebuild::{rebuild, RebuildOptions};
use kbdump::redis_io::RedisConn;
use redis::AsyncCommands;

async fn seeded(test: &str, kb: &str, n: usize) -> (Ch, String) {
    let server = chs::server();
    let db = server.database(test).await;
    chs::create_patterns_table(&server.client(), &db).await;
    chs::insert_patterns(&server.client(), &db, &chs::seed_rows(kb, n, 7)).await;
    let url = server.url(&db);
    (Ch::from_url(&url).unwrap(), url)
}

/// KATO's live state: rebuilt data plus true counts, emotives, metadata,
/// affinities (one with a TTL).
async fn live_state(ch: &Ch, conn: &mut redis::aio::MultiplexedConnection, kb: &str) {
    rebuild(
        ch,
        conn.clone(),
        &[],
        &RebuildOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    for i in 0..20 {
        let p = chs::pattern_name(kb, i);
        let _: () = conn
            .set(format!("{kb}:frequency:{p}"), 3 + i)
            .await
            .unwrap();
        let _: () = conn
            .set(
                format!("{kb}:emotives:{p}"),
                format!("[{{\"joy\": 0.{i}}}]"),
            )
            .await
            .unwrap();
        let _: () = conn
            .set(format!("{kb}:metadata:{p}"), "{\"tag\": \"é\"}")
            .await
            .unwrap();
    }
    let _: () = conn
        .hset_multiple("kb0:affinity:a:b:c", &[("joy", "1.5"), ("fear", "-0.25")])
        .await
        .unwrap();
    let _: () = conn
        .hset(format!("{kb}:affinity:😀 grin"), "utility", "25.0")
        .await
        .unwrap();
    let _: () = conn
        .pexpire(format!("{kb}:affinity:😀 grin"), 600_000)
        .await
        .unwrap();
}

#[tokio::test]
async fn wiped_redis_comes_back_exactly_from_clickhouse_alone() {
    let (ch, _) = seeded("mirror_roundtrip", "kb0", 150).await;
    let redis = MiniRedis::start();
    let mut conn = redis.conn().await;
    live_state(&ch, &mut conn, "kb0").await;
    let before = snapshot(&mut conn).await;
    let rc = RedisConn::connect(&redis.url()).await.unwrap();
    let first = mirror(&rc, &ch, &[b"kb0".to_vec()], &NoProgress)
        .await
        .unwrap();
    let second = mirror(&rc, &ch, &[b"kb0".to_vec()], &NoProgress)
        .await
        .unwrap();
    assert_eq!(first.keys, second.keys);
    assert_eq!(first.keys, 151 + 20 + 20 + 2); // frequencies, emotives, metadata, affinity

    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    // Unrecoverable part from the mirror, then the derivable part.
    let mut reader = MirrorReader::open(&ch, &[b"kb0".to_vec()], &[])
        .await
        .unwrap();
    let mut records = Vec::new();
    while let Some(r) = reader.next().await.unwrap() {
        records.push(r);
    }
    assert_eq!(records.len() as u64, first.keys, "FINAL dedupes the rerun");
    let mut rc = rc.clone();
    let tally = restore_records(&mut rc, &records, false).await.unwrap();
    assert_eq!(tally.restored, first.keys);
    rebuild(
        &ch,
        conn.clone(),
        &[],
        &RebuildOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();

    let after = snapshot(&mut conn).await;
    assert_eq!(after, before, "every key, byte for byte");
    let ttl: i64 = conn.pttl("kb0:affinity:😀 grin").await.unwrap();
    assert!(ttl > 500_000 && ttl <= 600_000, "expiry kept: {ttl}");
    let freq: i64 = conn
        .get(format!("kb0:frequency:{}", chs::pattern_name("kb0", 5)))
        .await
        .unwrap();
    assert_eq!(freq, 8, "true count back, not floored to 1");
    // A category filter reads only that category.
    let mut reader = MirrorReader::open(&ch, &[], &[Category::Emotives])
        .await
        .unwrap();
    let mut n = 0;
    while let Some(r) = reader.next().await.unwrap() {
        assert_eq!(r.category, Category::Emotives);
        assert_eq!(r.redis_type, "string");
        n += 1;
    }
    assert_eq!(n, 20);
    assert!(matches!(
        before.get("kb0:affinity:a:b:c".as_bytes()),
        Some(Val::Hash(_))
    ));
}

#[tokio::test]
async fn check_finds_each_seeded_inconsistency() {
    let (ch, url) = seeded("check_findings", "kbc", 60).await;
    let redis = MiniRedis::start();
    let mut conn = redis.conn().await;
    rebuild(
        &ch,
        conn.clone(),
        &[],
        &RebuildOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    let rc = RedisConn::connect(&redis.url()).await.unwrap();
    let clean = check(&ch, &rc, &[]).await.unwrap();
    assert_eq!(clean[0].total(), 0, "{:?}", clean[0]);

    let p = chs::pattern_name("kbc", 2);
    let _: () = conn.del(format!("kbc:frequency:{p}")).await.unwrap();
    let _: () = conn.set("kbc:emotives:deadbeef", "[]").await.unwrap();
    let _: () = conn.set("kbc:metadata:cafebabe", "{}").await.unwrap();
    let _: () = conn.set(format!("kbc:metadata:{p}"), "{}").await.unwrap(); // known pattern: fine
    let _: () = conn.hset("kbc:symbols:freq", "x", "12345").await.unwrap();
    let _: () = conn.hset("kbc:symbols:pmf", "ghost", "1").await.unwrap();
    let _: () = conn
        .set("kbc:global:total_unique_patterns", "1")
        .await
        .unwrap();
    let r = &check(&ch, &rc, &["kbc".to_string()]).await.unwrap()[0];
    assert_eq!(r.missing_frequency.count, 1);
    assert!(r.missing_frequency.examples[0].ends_with(&p));
    assert_eq!(r.orphan_emotives.count, 1);
    assert_eq!(r.orphan_emotives.examples, vec!["kbc:emotives:deadbeef"]);
    assert_eq!(r.orphan_metadata.count, 1);
    assert_eq!(r.symbol_freq.count, 1);
    assert!(r.symbol_freq.examples[0].starts_with("x: 12345"));
    assert_eq!(r.symbol_pmf.count, 1);
    assert!(r.symbol_pmf.examples[0].contains("not in ClickHouse"));
    assert_eq!(r.globals.count, 1);
    assert_eq!(r.total(), 6);

    // The command: exit 1 and JSON on stdout.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args([
            "check",
            "--json",
            "--clickhouse",
            &url,
            "--redis",
            &redis.url(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["findings"], 6);
}

#[tokio::test]
async fn clickhouse_errors_name_the_server_and_what_to_do() {
    let redis = MiniRedis::start();
    let conn = redis.conn().await;
    let opts = RebuildOptions::default();
    // Nothing listens there.
    let port = chs::free_port();
    let ch = Ch::from_url(&format!("http://127.0.0.1:{port}/")).unwrap();
    let err = rebuild(&ch, conn.clone(), &[], &opts, &NoProgress)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("cannot reach"),
        "{err}"
    );
    assert!(err.contains("CLICKHOUSE_URL"), "{err}");
    // The database exists but has no patterns_data.
    let server = chs::server();
    let db = server.database("errors_missing").await;
    let ch = Ch::from_url(&server.url(&db)).unwrap();
    let err = rebuild(&ch, conn.clone(), &[], &opts, &NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            kbdump::rebuild::Error::ClickHouse(ChError::MissingTable { .. })
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("{db}.patterns_data")) && text.contains("?database="),
        "{text}"
    );
    // Wrong password: an authentication error that does not echo it.
    let url = format!(
        "http://{}:wrong-pw@127.0.0.1:{}/",
        chs::SECURED_USER,
        server.http_port()
    );
    let err = Ch::from_url(&url).unwrap().ping().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ChError::Auth { .. }), "{text}");
    assert!(
        text.contains("credentials") && !text.contains("wrong-pw"),
        "{text}"
    );
    // The right password works.
    let url = format!(
        "http://{}:{}@127.0.0.1:{}/",
        chs::SECURED_USER,
        chs::SECURED_PASSWORD,
        server.http_port()
    );
    assert!(!Ch::from_url(&url).unwrap().ping().await.unwrap().is_empty());
    // The command line reports it with exit 2.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args([
            "rebuild",
            "--clickhouse",
            &server.url(&db),
            "--redis",
            &redis.url(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no table"));
}
