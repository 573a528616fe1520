//! `rebuild` against a real ClickHouse and real Redis servers, checked key
//! for key against the Python reference (KATO's algorithm): seeded kbs,
//! surviving frequencies, dry runs, `--only-missing`, kb globs, and
//! degenerate kbs (a single symbol, empty events, tiny floats, duplicate
//! rows, kb_ids that need escaping).

use std::collections::BTreeMap;

use crate::support::cli::json_outcome;
use crate::support::clickhouse::{self as chs, snapshot, SeedRow, Val};
use crate::support::redis::RedisServer;
use kbdump::flow::rebuild::{rebuild, RebuildOptions};
use kbdump::net::clickhouse::Ch;
use kbdump::progress::NoProgress;
use redis::AsyncCommands;

async fn seeded(test: &str, kbs: &[(&str, usize)]) -> Ch {
    seeded_url(test, kbs).await.0
}

async fn seeded_url(test: &str, kbs: &[(&str, usize)]) -> (Ch, String) {
    let server = chs::server();
    let db = server.database(test).await;
    chs::create_patterns_table(&server.client(), &db).await;
    for (i, (kb, n)) in kbs.iter().enumerate() {
        chs::insert_patterns(&server.client(), &db, &chs::seed_rows(kb, *n, i as u64)).await;
    }
    let url = server.url(&db);
    (Ch::from_url(&url).unwrap(), url)
}

fn opts(dry_run: bool, only_missing: bool) -> RebuildOptions {
    let mut o = RebuildOptions::default();
    o.dry_run = dry_run;
    o.only_missing = only_missing;
    o.batch_patterns = 37; // many small batches: exercises incremental SADD
    o.set_payload_rdb_version = Some(REDIS_7_0_RDB); // and new sets as payloads
    o
}

/// The RDB version of the harness's default server (Redis 7.0).
const REDIS_7_0_RDB: u16 = 10;

/// Equal, except global_normalized_entropy floats within 1e-12 relative.
fn assert_same(
    ours: &std::collections::BTreeMap<Vec<u8>, Val>,
    reference: &std::collections::BTreeMap<Vec<u8>, Val>,
) {
    let ours_keys: Vec<_> = ours.keys().collect();
    let ref_keys: Vec<_> = reference.keys().collect();
    assert_eq!(ours_keys.len(), ref_keys.len(), "key counts differ");
    assert_eq!(ours_keys, ref_keys, "key sets differ");
    let mut floats = 0;
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
            floats += 1;
        } else {
            assert_eq!(got, want, "{name}");
        }
    }
    assert!(floats > 0);
}

#[tokio::test]
async fn rebuild_matches_python_reference_for_every_key() {
    let (ch, url) = seeded_url("rebuild_ref", &[("node0_kato", 400), ("kb:with*glob", 120)]).await;
    let (ours, reference) = (RedisServer::start(), RedisServer::start());
    let summaries = rebuild(
        &ch,
        chs::conn(&ours).await,
        &[],
        &opts(false, false),
        &NoProgress,
    )
    .await
    .unwrap();
    chs::run_baseline(&url, &reference.url(), &["kb:with*glob", "node0_kato"]);
    let (a, b) = (
        snapshot(&mut chs::conn(&ours).await).await,
        snapshot(&mut chs::conn(&reference).await).await,
    );
    assert_same(&a, &b);
    assert_eq!(summaries.len(), 2);
    let node0 = summaries.iter().find(|s| s.kb_id == "node0_kato").unwrap();
    assert_eq!((node0.patterns, node0.metrics), (401, 400));
    assert_eq!(node0.skipped, 0);
    assert!(a.contains_key("node0_kato:symbol_to_patterns:quote\"d".as_bytes()));
}

#[tokio::test]
async fn surviving_frequencies_are_not_lowered() {
    let ch = seeded("rebuild_freq", &[("kbf", 50)]).await;
    let redis = RedisServer::start();
    let mut conn = chs::conn(&redis).await;
    let name = chs::pattern_name("kbf", 3);
    let _: () = conn.set(format!("kbf:frequency:{name}"), 42).await.unwrap();
    let s = rebuild(
        &ch,
        conn.clone(),
        &["kbf".into()],
        &opts(false, false),
        &NoProgress,
    )
    .await
    .unwrap();
    let freq: i64 = conn.get(format!("kbf:frequency:{name}")).await.unwrap();
    assert_eq!(freq, 42);
    let other: i64 = conn
        .get(format!("kbf:frequency:{}", chs::pattern_name("kbf", 4)))
        .await
        .unwrap();
    assert_eq!(other, 1);
    assert_eq!(s[0].categories["frequency"].skipped, 1);
    assert_eq!(s[0].categories["frequency"].written, 50);
}

#[tokio::test]
async fn dry_run_writes_nothing_and_counts() {
    let ch = seeded("rebuild_dry", &[("kbd", 30)]).await;
    let redis = RedisServer::start();
    let mut conn = chs::conn(&redis).await;
    let s = rebuild(&ch, conn.clone(), &[], &opts(true, false), &NoProgress)
        .await
        .unwrap();
    assert!(snapshot(&mut conn).await.is_empty());
    // 31 frequencies, 30 patterns x 4 metrics, 3 globals, and symbols.
    assert_eq!(s[0].categories["frequency"].written, 31);
    assert_eq!(s[0].categories["metrics"].written, 120);
    assert_eq!(s[0].categories["globals"].written, 3);
    // A real run writes what the dry run counted.
    let real = rebuild(&ch, conn.clone(), &[], &opts(false, false), &NoProgress)
        .await
        .unwrap();
    assert_eq!(real[0].categories, s[0].categories);
}

#[tokio::test]
async fn only_missing_fills_gaps_and_changes_nothing_existing() {
    let ch = seeded("rebuild_missing", &[("kbm", 80)]).await;
    let (full, partial) = (RedisServer::start(), RedisServer::start());
    rebuild(
        &ch,
        chs::conn(&full).await,
        &[],
        &opts(false, false),
        &NoProgress,
    )
    .await
    .unwrap();
    let want = snapshot(&mut chs::conn(&full).await).await;
    // Partial loss: drop every third key, and tamper with survivors of each
    // type so that an overwrite would show.
    let mut conn = chs::conn(&partial).await;
    rebuild(&ch, conn.clone(), &[], &opts(false, false), &NoProgress)
        .await
        .unwrap();
    let keys: Vec<Vec<u8>> = want.keys().cloned().collect();
    for key in keys.iter().step_by(3) {
        let _: () = conn.del(key).await.unwrap();
    }
    let _: () = conn.hset("kbm:symbols:freq", "x", "999").await.unwrap();
    let _: () = conn.hdel("kbm:symbols:pmf", "é").await.unwrap();
    let _: () = conn
        .set("kbm:global:total_unique_patterns", "7")
        .await
        .unwrap();
    let tampered_set = keys
        .iter()
        .find(|k| k.starts_with(b"kbm:symbol_to_patterns:"))
        .unwrap()
        .clone();
    let _: () = conn.sadd(&tampered_set, "intruder").await.unwrap();
    let before = snapshot(&mut conn).await;
    let dry = rebuild(&ch, conn.clone(), &[], &opts(true, true), &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        snapshot(&mut conn).await,
        before,
        "dry run changed something"
    );
    let s = rebuild(&ch, conn.clone(), &[], &opts(false, true), &NoProgress)
        .await
        .unwrap();
    assert_eq!(dry[0].written, s[0].written);
    let after = snapshot(&mut conn).await;
    for (key, val) in &before {
        if let Val::Hash(h) = val {
            let Val::Hash(now) = &after[key] else {
                panic!()
            };
            for (f, v) in h {
                assert_eq!(&now[f], v, "hash field changed");
            }
        } else {
            assert_eq!(
                &after[key],
                val,
                "existing key changed: {}",
                String::from_utf8_lossy(key)
            );
        }
    }
    for key in want.keys() {
        assert!(
            after.contains_key(key),
            "still missing: {}",
            String::from_utf8_lossy(key)
        );
    }
    let Val::Hash(pmf) = &after["kbm:symbols:pmf".as_bytes()] else {
        panic!()
    };
    assert!(pmf.contains_key("é".as_bytes()));
    assert!(s[0].skipped > 0 && s[0].written > 0);
}

/// Runs kbdump with `--json`; asserts success and returns its output.
fn kbdump_json(args: &[&str]) -> (serde_json::Value, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "kbdump {args:?}: {stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

fn kb_ids_of(json: &serde_json::Value) -> Vec<String> {
    json["kbs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kb| kb["kb_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn kb_globs_select_kb_ids_for_rebuild_and_check() {
    let kbs = [
        ("node0_kato", 5),
        ("node1_kato", 5),
        ("other", 5),
        ("x*y", 3),
    ];
    let (_, url) = seeded_url("rebuild_globs", &kbs).await;
    let redis = RedisServer::start();
    let r = redis.url();
    let rebuild = |kb: &str| {
        kbdump_json(&[
            "rebuild",
            "--dry-run",
            "--clickhouse",
            &url,
            "--redis",
            &r,
            "--kb",
            kb,
        ])
    };
    let (json, _) = rebuild("node*");
    assert_eq!(kb_ids_of(&json), ["node0_kato", "node1_kato"]);
    // A literal id needs no discovery; an escaped glob character is literal.
    let (json, _) = rebuild("x\\*y");
    assert_eq!(kb_ids_of(&json), ["x*y"]);
    // A glob or a literal that matches no kb_id of ClickHouse is an error
    // that names it, the kb_ids there and the nearest one; nothing is
    // written. `--allow-empty` makes it an empty selection.
    for (kb, near) in [("nomatch*", None), ("node9_kato", Some("node0_kato"))] {
        for command in ["rebuild", "check"] {
            let (code, _, stderr) =
                json_outcome(&[command, "--clickhouse", &url, "--redis", &r, "--kb", kb]);
            assert_eq!(code, Some(2), "{command} --kb {kb}: {stderr}");
            assert!(
                stderr.contains(&format!("--kb {kb} matches no kb_id in ClickHouse"))
                    && stderr.contains("node0_kato, node1_kato, other, x*y"),
                "{stderr}"
            );
            if let Some(near) = near {
                assert!(stderr.contains(&format!("did you mean {near}")), "{stderr}");
            }
        }
        let (json, _) = kbdump_json(&[
            "rebuild",
            "--dry-run",
            "--clickhouse",
            &url,
            "--redis",
            &r,
            "--kb",
            kb,
            "--allow-empty",
        ]);
        assert!(kb_ids_of(&json).is_empty());
    }
    assert!(snapshot(&mut chs::conn(&redis).await).await.is_empty());

    // check: the same selection, on the kb_ids rebuilt for real.
    kbdump_json(&[
        "rebuild",
        "--clickhouse",
        &url,
        "--redis",
        &r,
        "--kb",
        "node?_kato",
    ]);
    let (json, _) = kbdump_json(&[
        "check",
        "--clickhouse",
        &url,
        "--redis",
        &r,
        "--kb",
        "node[01]*",
    ]);
    assert_eq!(kb_ids_of(&json), ["node0_kato", "node1_kato"]);
    assert_eq!(json["findings"], 0, "{json}");
    // mirror takes its kb_ids from Redis, by the same rule.
    let (code, _, stderr) = json_outcome(&[
        "mirror",
        "--clickhouse",
        &url,
        "--redis",
        &r,
        "--kb",
        "node9_kato",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--kb node9_kato matches no kb_id in Redis at")
            && stderr.contains("did you mean node0_kato"),
        "{stderr}"
    );
}

fn ev(events: &[&[&str]]) -> Vec<Vec<String>> {
    events
        .iter()
        .map(|e| e.iter().map(|s| s.to_string()).collect())
        .collect()
}

/// Like [`assert_same`], but without requiring an entropy float among the
/// keys (degenerate kbs may have none), and key sets compared as text.
fn assert_same_keys_and_values(ours: &BTreeMap<Vec<u8>, Val>, reference: &BTreeMap<Vec<u8>, Val>) {
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
    let db = server.database("rebuild_edges").await;
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
    opts.set_payload_rdb_version = Some(REDIS_7_0_RDB);
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
    assert_same_keys_and_values(&a, &b);
    let text = |key: &str| match &a[key.as_bytes()] {
        Val::Str(v) => String::from_utf8(v.clone()).unwrap(),
        other => panic!("{key}: {other:?}"),
    };
    assert!(text("tiny:tf_vector:big1").ends_with("\"t\": 1e-05}"));
    assert!(text("tiny:tf_vector:big2").ends_with("\"t\": 1.5e-05}"));
    assert_eq!(text("single:normalized_entropy:s1"), "0.0");
    assert_eq!(text("dup:global:total_unique_patterns"), "3");
}

/// The fast path (new sets restored whole from payloads sealed with the
/// target's RDB version) leaves every server flavor exactly as the SADD-only
/// path does, key by key: with duplicate rows (a payload must not repeat a
/// member), sets spread over several batches, and a set and a hash that
/// exist before the rebuild (RESTORE refuses them with BUSYKEY; their
/// members are added as by SADD).
#[tokio::test]
async fn set_payloads_write_what_sadd_writes_on_every_flavor() {
    use crate::support::redis::{info_field, Flavor};
    let server = chs::server();
    let db = server.database("rebuild_payloads").await;
    chs::create_patterns_table(&server.client(), &db).await;
    let rows = chs::seed_rows("kbp", 300, 7);
    chs::insert_patterns(&server.client(), &db, &rows).await;
    chs::insert_patterns(&server.client(), &db, &rows[..40]).await;
    let ch = Ch::from_url(&server.url(&db)).unwrap();
    for flavor in Flavor::ALL {
        let (fast, plain) = (
            RedisServer::start_flavor(flavor),
            RedisServer::start_flavor(flavor),
        );
        let product = match flavor {
            Flavor::Valkey81 | Flavor::Valkey91 => "valkey",
            _ => "redis",
        };
        let version = kbdump::net::redis::predicted_rdb_version(product, &fast.version());
        assert!(version.is_some(), "{flavor:?}: no RDB version");
        let mut snapshots = Vec::new();
        for (redis, rdb_version) in [(&fast, version), (&plain, None)] {
            let mut conn = chs::conn(redis).await;
            let set = format!("kbp:symbol_to_patterns:{}", first_symbol(&rows));
            let _: () = conn.sadd(&set, "survivor").await.unwrap();
            let _: () = conn.hset("kbp:symbols:freq", "old", "5").await.unwrap();
            let mut o = opts(false, false);
            o.batch_patterns = 120;
            o.set_payload_rdb_version = rdb_version;
            rebuild(&ch, conn.clone(), &[], &o, &NoProgress)
                .await
                .unwrap();
            snapshots.push(snapshot(&mut conn).await);
        }
        let restores = info_field(&fast.info("commandstats"), "cmdstat_restore");
        assert!(
            restores.is_some_and(|s| !s.starts_with("calls=0")),
            "{flavor:?}: no RESTORE"
        );
        assert!(snapshots[0].len() > 300, "{flavor:?}");
        assert_eq!(
            snapshots[0], snapshots[1],
            "{flavor:?}: fast and plain paths differ"
        );
    }
}

fn first_symbol(rows: &[SeedRow]) -> String {
    rows.iter()
        .flat_map(|r| r.pattern_data.iter().flatten())
        .next()
        .unwrap()
        .clone()
}
