//! Edge cases of rebuild, mirror and check against real ClickHouse and
//! Redis servers: degenerate knowledge bases, float and JSON text, duplicate
//! rows, kb_ids that need escaping, binary payloads, expiries.

mod support;

use std::collections::BTreeMap;

use kbdump::clickhouse_io::Ch;
use kbdump::progress::NoProgress;
use kbdump::rebuild::{rebuild, RebuildOptions};
use support::clickhouse::{self as chs, snapshot, SeedRow, Val};
use support::redis::RedisServer;

fn ev(events: &[&[&str]]) -> Vec<Vec<String>> {
    events
        .iter()
        .map(|e| e.iter().map(|s| s.to_string()).collect())
        .collect()
}

/// Equal, except global_normalized_entropy floats within 1e-12 relative.
fn assert_same(ours: &BTreeMap<Vec<u8>, Val>, reference: &BTreeMap<Vec<u8>, Val>) {
    let ours_keys: Vec<_> = ours.keys().map(|k| String::from_utf8_lossy(k)).collect();
    let ref_keys: Vec<_> = reference
        .keys()
        .map(|k| String::from_utf8_lossy(k))
        .collect();
    assert_eq!(ours_keys, ref_keys, "key sets differ");
    for (key, want) in reference {
        let got = &ours[key];
        let name = String::from_utf8_lossy(key);
        if name.contains(":global_normalized_entropy:") {
            let (Val::Str(a), Val::Str(b)) = (got, want) else {
                panic!("{name}: not strings")
            };
            let a: f64 = std::str::from_utf8(a).unwrap().parse().unwrap();
            let b: f64 = std::str::from_utf8(b).unwrap().parse().unwrap();
            assert!((a - b).abs() <= 1e-12 * b.abs(), "{name}: {a} vs {b}");
        } else {
            assert_eq!(got, want, "{name}");
        }
    }
}

/// Degenerate and tricky kbs, each rebuilt by kbdump and by the Python
/// reference (KATO's algorithm) into two servers, compared key for key.
#[tokio::test]
async fn rebuild_edge_cases_match_python_reference() {
    let server = chs::server();
    let db = server.database("review_edges").await;
    chs::create_patterns_table(&server.client(), &db).await;
    let mut rows = vec![
        // One distinct symbol in the whole kb: T = 1.
        SeedRow::new("single", "s1", ev(&[&["x", "x"], &["x"]])),
        SeedRow::new("single", "s2", ev(&[&["x"]])),
        // Repeated symbols, empty events, a pattern with no events at all.
        SeedRow::new("rep", "r1", ev(&[&[], &["a", "a", "b"], &[], &["a"]])),
        SeedRow::new("rep", "r2", ev(&[&[]])),
        SeedRow::new("rep", "r3", vec![]),
        SeedRow::new(
            "rep",
            "r4",
            ev(&[&["b"], &["c", "c", "c", "c", "c", "c", "c"]]),
        ),
        // A symbol in every pattern: P(s) = 1, log 0.
        SeedRow::new("every", "e1", ev(&[&["common", "u"]])),
        SeedRow::new("every", "e2", ev(&[&["common"], &["v", "w"]])),
        SeedRow::new("every", "e3", ev(&[&["common", "common"]])),
        // Unicode and control characters in symbols.
        SeedRow::new(
            "uni",
            "u1",
            ev(&[&[
                "\u{7f}",
                "\u{0}",
                "\u{1f}",
                "\u{2028}",
                "\u{feff}",
                "𝄞",
                "é",
                "\"",
                "\\",
                "/",
                "\u{8}\u{c}",
            ]]),
        ),
        SeedRow::new("uni", "u2", ev(&[&["é", "plain"]])),
        // A kb_id that needs escaping in SQL and in SCAN patterns.
        SeedRow::new("it's \\ \"q\" *?", "q1", ev(&[&["a", "b"]])),
        SeedRow::new("it's \\ \"q\" *?", "q2", ev(&[&["b", "c"]])),
    ];
    // Tiny floats in text: tf 1e-05 and 1.5e-05, and tiny entropies.
    let long = |filler: &str, n: usize, rare: &str, k: usize| {
        let mut symbols = vec![filler.to_string(); n - k];
        symbols.extend(std::iter::repeat_n(rare.to_string(), k));
        vec![symbols]
    };
    rows.push(SeedRow::new("tiny", "big1", long("y", 100_000, "t", 1)));
    rows.push(SeedRow::new("tiny", "big2", long("z", 200_000, "t", 3)));
    rows.push(SeedRow::new("tiny", "big3", ev(&[&["y", "w"]])));
    chs::insert_patterns(&server.client(), &db, &rows).await;
    // Duplicate rows (a MergeTree keeps both): KATO counts each row.
    let dup = vec![
        SeedRow::new("dup", "d1", ev(&[&["a", "b"]])),
        SeedRow::new("dup", "d2", ev(&[&["b", "c", "c"]])),
    ];
    chs::insert_patterns(&server.client(), &db, &dup).await;
    chs::insert_patterns(&server.client(), &db, &dup[..1]).await;

    let url = server.url(&db);
    let ch = Ch::from_url(&url).unwrap();
    let (ours, reference) = (RedisServer::start(), RedisServer::start());
    let mut opts = RebuildOptions::default();
    opts.batch_patterns = 2;
    rebuild(&ch, chs::conn(&ours).await, &[], &opts, &NoProgress)
        .await
        .unwrap();
    let kbs = [
        "single",
        "rep",
        "every",
        "uni",
        "it's \\ \"q\" *?",
        "tiny",
        "dup",
    ];
    chs::run_baseline(&url, &reference.url(), &kbs);
    let (a, b) = (
        snapshot(&mut chs::conn(&ours).await).await,
        snapshot(&mut chs::conn(&reference).await).await,
    );
    assert_same(&a, &b);
    let text = |key: &str| match &a[key.as_bytes()] {
        Val::Str(v) => String::from_utf8(v.clone()).unwrap(),
        other => panic!("{key}: {other:?}"),
    };
    assert!(text("tiny:tf_vector:big1").ends_with("\"t\": 1e-05}"));
    assert!(text("tiny:tf_vector:big2").ends_with("\"t\": 1.5e-05}"));
    assert_eq!(text("single:normalized_entropy:s1"), "0.0");
    assert_eq!(text("dup:global:total_unique_patterns"), "3");
}

fn kbdump(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), json, stderr)
}

/// Binary keys and payloads, a large value, a key whose expiry passes
/// before the restore, reruns, and a prune limited to the mirrored kb_ids.
#[tokio::test]
async fn mirror_round_trips_binary_large_and_expiring_keys() {
    use redis::AsyncCommands;
    let server = chs::server();
    let db = server.database("review_mirror").await;
    let url = server.url(&db);
    let redis = RedisServer::start();
    let r = redis.url();
    let mut conn = chs::conn(&redis).await;
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let mut big = Vec::with_capacity(8 << 20);
    let mut x: u64 = 1;
    while big.len() < 8 << 20 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        big.extend_from_slice(&x.to_le_bytes());
    }
    let bin_key = b"kbb:emotives:\x00\xff\r\n\xfe".to_vec();
    let _: () = conn.set(&bin_key, &all_bytes).await.unwrap();
    let _: () = conn.set("kbb:frequency:big", &big).await.unwrap();
    let _: () = conn
        .hset(
            b"kbb:affinity:\xff\x00".as_slice(),
            b"\x80".as_slice(),
            b"\x00\x01".as_slice(),
        )
        .await
        .unwrap();
    let _: () = conn.set("kbb:metadata:soon", "{}").await.unwrap();
    let _: () = conn.pexpire("kbb:metadata:soon", 3000).await.unwrap();
    let _: () = conn.set("kbb:metadata:later", "{}").await.unwrap();
    let _: () = conn.pexpire("kbb:metadata:later", 600_000).await.unwrap();
    let _: () = conn.set("kbo:emotives:p", "[]").await.unwrap();
    let _: () = conn.set("kbo:emotives:q", "[]").await.unwrap();

    let mirror = |kb: &str, prune: bool| {
        let mut args = vec!["mirror", "--clickhouse", &url, "--redis", &r, "--kb", kb];
        if prune {
            args.push("--prune");
        }
        let (code, json, err) = kbdump(&args);
        assert_eq!(code, Some(0), "{err}");
        json
    };
    let first = mirror("kb?", false);
    assert_eq!(first["summary"]["keys"], 7, "{first}");
    mirror("kb?", false);
    let final_rows = |kb: &'static str| {
        let client = server.client();
        let sql = format!("SELECT count() FROM `{db}`.redis_mirror FINAL WHERE kb_id = '{kb}'");
        async move { client.query(&sql).fetch_one::<u64>().await.unwrap() }
    };
    assert_eq!(final_rows("kbb").await, 5, "rerun duplicates rows");
    assert_eq!(final_rows("kbo").await, 2);

    // Prune of kbb only: kbo's rows stay, even of a key deleted since.
    let _: () = conn.del("kbo:emotives:q").await.unwrap();
    let _: () = conn.del("kbb:metadata:later").await.unwrap();
    let json = mirror("kbb", true);
    assert_eq!(json["pruned"], 1, "{json}");
    assert_eq!(final_rows("kbb").await, 4);
    assert_eq!(final_rows("kbo").await, 2, "prune touched another kb_id");

    // The short expiry passes; everything else comes back byte for byte.
    let before = support::seed::snapshot(&mut redis.client());
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let (code, json, err) = kbdump(&["restore", "--from-clickhouse", &url, "--redis", &r]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(json["total"]["restored"], 5, "{json}");
    let after = support::seed::snapshot(&mut redis.client());
    let soon = b"kbb:metadata:soon".as_slice();
    assert!(!after.contains_key(soon), "expired key restored");
    let mut want = before.clone();
    want.remove(soon);
    want.insert(
        b"kbo:emotives:q".to_vec(),
        before[b"kbo:emotives:p".as_slice()].clone(),
    );
    support::seed::assert_same_data(&want, &after, 30_000);
    let got: Vec<u8> = conn.get(&bin_key).await.unwrap();
    assert_eq!(got, all_bytes);
    let got: Vec<u8> = conn.get("kbb:frequency:big").await.unwrap();
    assert!(got == big, "large value differs");
}

/// A mirror table that cannot be read (here: an older, incompatible
/// layout): the error names the server and the table.
#[tokio::test]
async fn unreadable_mirror_error_names_the_server() {
    let server = chs::server();
    let db = server.database("review_bad_mirror").await;
    let sql = format!(
        "CREATE TABLE `{db}`.redis_mirror (kb_id String, category String, key String, \
         payload String, expire_at_ms Nullable(Int64), mirrored_at_ms UInt64) \
         ENGINE = ReplacingMergeTree(mirrored_at_ms) ORDER BY (kb_id, category, key)"
    );
    server.client().query(&sql).execute().await.unwrap();
    let redis = RedisServer::start();
    let (code, _, err) = kbdump(&[
        "restore",
        "--from-clickhouse",
        &server.url(&db),
        "--redis",
        &redis.url(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    let where_ = format!("127.0.0.1:{}", server.http_port());
    assert!(err.contains(&where_), "{err}");
    assert!(err.contains(&format!("{db}.redis_mirror")), "{err}");
}

/// A server that accepts connections but never answers (a wrong port, a
/// hung server): the connection check gives up with a clear error instead
/// of hanging.
#[tokio::test]
async fn silent_server_is_reported_not_waited_for_forever() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ch = Ch::from_url(&format!("http://127.0.0.1:{port}/")).unwrap();
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(std::time::Duration::from_secs(60), ch.ping()).await;
    let err = result.expect("ping hung for a minute").unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let text = err.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && text.contains("cannot reach"),
        "{text}"
    );
    drop(listener);
}
