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
