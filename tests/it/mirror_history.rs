//! The mirror as a history, against real ClickHouse and Redis servers: an
//! eviction storm is held back and every key comes back; a database or
//! table that does not exist needs `--create`; the first layout is read
//! and converted; `--keep` drops old versions without changing any state
//! inside the window.

use crate::clickhouse_stores::rfc3339_ms;
use crate::support::cli::json_outcome;
use crate::support::clickhouse as chs;
use crate::support::redis::RedisServer;
use crate::support::seed;
use kbdump::format::mirror::{Layout, VersionRow, VERSIONS_TABLE};
use kbdump::net::clickhouse::Ch;
use kbdump::net::mirror::{keep_since, prepare, MirrorReader, MirrorScope};
use redis::Commands;

/// Evicts under `allkeys-lru` until the server uses at most `limit` bytes
/// (one write with `maxmemory` at the limit), then lifts the limit.
pub fn evict_down_to(conn: &mut redis::Connection, limit: u64) {
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "allkeys-lru"][..])
        .query(conn)
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(limit)
        .query(conn)
        .unwrap();
    let _: () = conn.set("filler", "x").unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory", "0"][..])
        .query(conn)
        .unwrap();
}

/// A numeric field of one INFO section.
fn info_number(conn: &mut redis::Connection, section: &str, field: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg(section).query(conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in INFO {section}"))
}

pub fn used_memory(conn: &mut redis::Connection) -> u64 {
    info_number(conn, "memory", "used_memory")
}

fn evicted_keys(conn: &mut redis::Connection) -> u64 {
    info_number(conn, "stats", "evicted_keys")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_eviction_storm_is_held_back_and_every_key_comes_back() {
    let server = chs::server();
    let db = server.database("mirror_storm").await;
    let url = server.url(&db);
    let redis = RedisServer::start();
    let r = redis.url();
    let mut conn = redis.client();
    for i in 0..300 {
        let value = format!("[{{\"joy\": {i}, \"pad\": \"{}\"}}]", "x".repeat(1000));
        let _: () = conn.set(format!("kbs:emotives:p{i:03}"), value).unwrap();
    }
    for i in 0..50 {
        let _: () = conn.set(format!("kbs:frequency:p{i:03}"), i + 1).unwrap();
    }
    let _: () = conn.pexpire("kbs:emotives:p007", 3_600_000).unwrap();
    let before = seed::snapshot(&mut conn);
    let mirror = |extra: &[&str]| {
        let mut args = vec!["mirror", "--clickhouse", &url, "--redis", &r, "--kb", "kbs"];
        args.extend_from_slice(extra);
        tokio::task::block_in_place(|| json_outcome(&args))
    };
    let (code, first, err) = mirror(&["--create"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(first["summary"]["keys"], 350, "{first}");

    // allkeys-lru under memory pressure: a real eviction storm.
    let limit = used_memory(&mut conn) - 200_000;
    evict_down_to(&mut conn, limit);
    let evicted = evicted_keys(&mut conn);
    assert!(evicted > 30, "the storm evicted only {evicted} keys");

    let (code, storm, err) = mirror(&[]);
    assert_eq!(code, Some(1), "the storm was recorded: {storm} {err}");
    let held = storm["summary"]["held_back"].as_array().unwrap();
    assert!(
        held.iter()
            .any(|s| s["category"] == "emotives" && s["before"] == 300),
        "{storm}"
    );
    assert_eq!(storm["summary"]["deleted"], 0, "{storm}");
    let (_, text, _) = {
        let args = ["mirror", "--clickhouse", &url, "--redis", &r, "--kb", "kbs"];
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kbdump"))
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), text, ())
    };
    assert!(
        text.contains("SHRANK: kbs emotives") && text.contains("no deletion recorded"),
        "{text}"
    );

    // Redis lost: a latest restore brings every key back, exactly.
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    let restore = |extra: &[&str]| {
        let mut args = vec!["restore", "--from-clickhouse", &url, "--redis", &r];
        args.extend_from_slice(extra);
        let (code, json, err) = tokio::task::block_in_place(|| json_outcome(&args));
        assert_eq!(code, Some(0), "{err}");
        json
    };
    let json = restore(&[]);
    assert_eq!(json["total"]["restored"], 350, "{json}");
    seed::assert_same_data(&before, &seed::snapshot(&mut conn), 60_000);

    // Deletions that are meant: --force records them; a latest restore
    // leaves them out, an --as-of before them brings them back.
    for i in 0..100 {
        let _: () = conn.del(format!("kbs:emotives:p{i:03}")).unwrap();
    }
    let (code, forced, err) = mirror(&["--force", "--keep", "1h"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(forced["summary"]["deleted"], 100, "{forced}");
    assert_eq!(forced["summary"]["kept"]["dropped"], 0, "{forced}");
    let json = restore(&["--dry-run"]);
    // 200 emotives and 50 frequencies, all on the server still.
    assert_eq!(json["total"]["kept"], 250, "{json}");
    let forced_at = forced["summary"]["started_at_ms"].as_u64().unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    let json = restore(&["--as-of", &rfc3339_ms(forced_at - 1)]);
    assert_eq!(json["total"]["restored"], 350, "{json}");
    seed::assert_same_data(&before, &seed::snapshot(&mut conn), 60_000);
}

async fn database_exists(name: &str) -> bool {
    let n: u64 = chs::server()
        .client()
        .query("SELECT count() FROM system.databases WHERE name = ?")
        .bind(name)
        .fetch_one()
        .await
        .unwrap();
    n > 0
}

#[tokio::test(flavor = "multi_thread")]
async fn what_does_not_exist_needs_create_and_is_named() {
    let server = chs::server();
    let typo = "kato_mirror_typo";
    server
        .client()
        .query(&format!("DROP DATABASE IF EXISTS `{typo}`"))
        .execute()
        .await
        .unwrap();
    let redis = RedisServer::start();
    let r = redis.url();
    let _: () = redis.client().set("kbt:emotives:p", "[]").unwrap();
    let url = server.url(typo);
    let run = |args: &[&str]| tokio::task::block_in_place(|| json_outcome(args));

    let (code, _, err) = run(&["mirror", "--clickhouse", &url, "--redis", &r]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("has no database \"{typo}\""))
            && err.contains("it has: ")
            && err.contains("--create"),
        "{err}"
    );
    assert!(!database_exists(typo).await, "a typo created a database");
    let (code, _, err) = run(&["rebuild", "--clickhouse", &url, "--redis", &r]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("has no database") && err.contains("127.0.0.1"),
        "{err}"
    );

    let (code, json, err) = run(&["mirror", "--create", "--clickhouse", &url, "--redis", &r]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        json["summary"]["prepared"]["created_database"], true,
        "{json}"
    );
    assert!(err.contains("has no table patterns_data"), "{err}");
    assert!(database_exists(typo).await);

    // An existing database without the mirror table.
    let empty = server.database("mirror_notable").await;
    let url = server.url(&empty);
    let (code, _, err) = run(&["mirror", "--clickhouse", &url, "--redis", &r]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("has no table kato_mirror_notable.redis_mirror_versions")
            && err.contains("--create"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_layout_is_read_and_converted() {
    let server = chs::server();
    let db = server.database("mirror_legacy").await;
    let url = server.url(&db);
    let redis = RedisServer::start();
    let r = redis.url();
    let mut conn = redis.client();
    let _: () = conn.set("kbl:emotives:p", "[\"old\"]").unwrap();
    let old: Vec<u8> = redis::cmd("DUMP")
        .arg("kbl:emotives:p")
        .query(&mut conn)
        .unwrap();
    let client = server.client();
    client
        .query(&format!(
            "CREATE TABLE `{db}`.redis_mirror (kb_id String, category String, key String, \
             type String, payload String, expire_at_ms Nullable(Int64), mirrored_at_ms UInt64) \
             ENGINE = ReplacingMergeTree(mirrored_at_ms) ORDER BY (kb_id, category, key)"
        ))
        .execute()
        .await
        .unwrap();
    let hex: String = old.iter().map(|b| format!("{b:02X}")).collect();
    client
        .query(&format!(
            "INSERT INTO `{db}`.redis_mirror VALUES ('kbl', 'emotives', 'kbl:emotives:p', \
             'string', unhex('{hex}'), NULL, 1000)"
        ))
        .execute()
        .await
        .unwrap();
    let run = |args: &[&str]| {
        let (code, json, err) = tokio::task::block_in_place(|| json_outcome(args));
        assert_eq!(code, Some(0), "{args:?}: {err}");
        json
    };
    // Read as it is, before any conversion.
    let _: () = conn.del("kbl:emotives:p").unwrap();
    let json = run(&["restore", "--from-clickhouse", &url, "--redis", &r]);
    assert_eq!(json["total"]["restored"], 1, "{json}");
    let _: () = conn.set("kbl:emotives:p", "[\"new\"]").unwrap();
    // The first mirror run converts it (no --create needed).
    let json = run(&["mirror", "--clickhouse", &url, "--redis", &r, "--kb", "kbl"]);
    assert_eq!(
        json["summary"]["prepared"]["imported_legacy_rows"], 1,
        "{json}"
    );
    let rows: u64 = client
        .query(&format!("SELECT count() FROM `{db}`.{VERSIONS_TABLE}"))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(rows, 2);
    // The old version is reachable by time.
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    run(&[
        "restore",
        "--from-clickhouse",
        &url,
        "--redis",
        &r,
        "--as-of",
        "@1",
    ]);
    let value: String = conn.get("kbl:emotives:p").unwrap();
    assert_eq!(value, "[\"old\"]");
    // --as-of is for the mirror's history, and must be a time; both are
    // refused before anything is written.
    for (args, says) in [
        (
            vec!["restore", "x.kbd", "--as-of", "2h", "--redis", &r],
            "needs --from-clickhouse",
        ),
        (
            vec![
                "restore",
                "--from-clickhouse",
                &url,
                "--redis",
                &r,
                "--as-of",
                "soon",
            ],
            "invalid time \"soon\"",
        ),
    ] {
        let (code, _, err) = tokio::task::block_in_place(|| json_outcome(&args));
        assert_eq!(code, Some(2), "{args:?}");
        assert!(err.contains(says), "{err}");
    }
    let value: String = conn.get("kbl:emotives:p").unwrap();
    assert_eq!(value, "[\"old\"]");
}

fn version(kb: &str, key: &str, at: u64, value: Option<&str>) -> VersionRow {
    VersionRow {
        kb_id: kb.as_bytes().to_vec(),
        category: "emotives".into(),
        key: format!("{kb}:emotives:{key}").into_bytes(),
        redis_type: if value.is_some() { "string" } else { "" }.into(),
        payload: value.unwrap_or_default().as_bytes().to_vec(),
        expire_at_ms: None,
        observed_at_ms: at,
        deleted: u8::from(value.is_none()),
    }
}

async fn state_at(ch: &Ch, kb: &str, at: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let scope = MirrorScope::kb(kb.as_bytes());
    let mut reader = MirrorReader::open_at(ch, Layout::Versioned, &scope, at).unwrap();
    let mut out = Vec::new();
    while let Some(r) = reader.next().await.unwrap() {
        out.push((r.key, r.payload));
    }
    out
}

/// `--keep`: every state from the window's start on is the same before
/// and after old versions are dropped; the last live version of a key
/// untouched for longer than the window is carried into it.
#[tokio::test]
async fn keep_drops_old_versions_and_no_state_inside_the_window() {
    let server = chs::server();
    let db = server.database("mirror_keep").await;
    let ch = Ch::from_url(&server.url(&db)).unwrap();
    prepare(&ch, true).await.unwrap();
    let rows = [
        version("kbk", "a", 100, Some("a1")),
        version("kbk", "a", 200, Some("a2")),
        version("kbk", "a", 300, Some("a3")),
        version("kbk", "b", 100, Some("b1")),
        version("kbk", "c", 100, Some("c1")),
        version("kbk", "c", 150, None),
        version("kbk", "d", 260, Some("d1")),
        version("kbk", "e", 150, Some("e1")),
        version("kbk", "e", 280, None),
        version("other", "z", 100, Some("z1")),
    ];
    let client = ch.client().clone().with_database(&db);
    let mut insert = client.insert::<VersionRow>(VERSIONS_TABLE).await.unwrap();
    for row in &rows {
        insert.write(row).await.unwrap();
    }
    insert.end().await.unwrap();
    let instants = [200, 250, 260, 280, 300, u64::MAX];
    let mut before = Vec::new();
    for at in instants {
        before.push(state_at(&ch, "kbk", at).await);
    }
    let kept = keep_since(&ch, &[b"kbk".to_vec()], 250).await.unwrap();
    assert_eq!(
        kept.from_ms, 200,
        "the window starts at the version before it"
    );
    assert_eq!(kept.dropped, 5, "{kept:?}");
    assert_eq!(
        kept.carried, 2,
        "b and e were live, last seen before: {kept:?}"
    );
    for (at, want) in instants.iter().zip(&before) {
        assert_eq!(
            &state_at(&ch, "kbk", *at).await,
            want,
            "state at {at} changed"
        );
    }
    assert_eq!(state_at(&ch, "kbk", 250).await.len(), 3, "a, b, e");
    assert_eq!(
        state_at(&ch, "other", 100).await.len(),
        1,
        "another kb_id was touched"
    );
    // Again: nothing older than the window's start is left to drop.
    let again = keep_since(&ch, &[b"kbk".to_vec()], 250).await.unwrap();
    assert_eq!((again.dropped, again.carried), (0, 0));
}
