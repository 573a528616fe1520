//! The two stores together, against real ClickHouse and Redis servers:
//! `mirror` (reruns, deletions, `--as-of`, binary keys, large values, expiries),
//! `restore --from-clickhouse` with the semantics of an archive restore, and
//! `check` finding each kind of inconsistency between them.

use crate::support;
use crate::support::cli::json_outcome;
use crate::support::clickhouse::{self as chs, snapshot};
use crate::support::redis::RedisServer;
use crate::support::seed;
use kbdump::clock::Clock;
use kbdump::flow::check::check;
use kbdump::flow::rebuild::{rebuild, RebuildOptions};
use kbdump::kato::Category;
use kbdump::net::clickhouse::Ch;
use kbdump::net::mirror::MirrorReader;
use kbdump::net::redis::RedisConn;
use kbdump::progress::NoProgress;
use kbdump::sink::mirror::mirror;
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
    let (ch, url) = seeded("mirror_roundtrip", "kb0", 150).await;
    let redis = RedisServer::start();
    let mut conn = chs::conn(&redis).await;
    live_state(&ch, &mut conn, "kb0").await;
    let before = seed::snapshot(&mut redis.client());
    let rc = RedisConn::connect(&redis.url()).await.unwrap();
    let first = mirror(&rc, &ch, &[b"kb0".to_vec()], &Clock::system(), &NoProgress)
        .await
        .unwrap();
    let second = mirror(&rc, &ch, &[b"kb0".to_vec()], &Clock::system(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(first.keys, second.keys);
    assert_eq!(first.keys, 151 + 20 + 20 + 2); // frequencies, emotives, metadata, affinity

    let mut reader = MirrorReader::open(&ch, &[b"kb0".to_vec()], &[])
        .await
        .unwrap();
    let mut records = 0;
    while reader.next().await.unwrap().is_some() {
        records += 1;
    }
    assert_eq!(records, first.keys, "FINAL dedupes the rerun");

    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    // Unrecoverable part from the mirror, then the derivable part.
    let json = kbdump_json(&[
        "restore",
        "--from-clickhouse",
        &url,
        "--redis",
        &redis.url(),
    ]);
    assert_eq!(json["total"]["restored"], first.keys, "{json}");
    assert_eq!(json["mode"], "missing");
    rebuild(
        &ch,
        conn.clone(),
        &[],
        &RebuildOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();

    let after = seed::snapshot(&mut redis.client());
    // Every key, value for value; remaining TTLs within the test's runtime.
    seed::assert_same_data(&before, &after, 30_000);
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
    assert_eq!(before["kb0:affinity:a:b:c".as_bytes()].kind, "hash");
}

/// Runs kbdump with `--json`; asserts success and returns its output.
fn kbdump_json<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kbdump {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn restore_from_clickhouse_has_the_semantics_of_an_archive_restore() {
    let (ch, url) = seeded("mirror_modes", "kbm", 30).await;
    let redis = RedisServer::start();
    let mut conn = chs::conn(&redis).await;
    live_state(&ch, &mut conn, "kbm").await;
    let _: () = conn.set("kbx:emotives:other", "[]").await.unwrap();
    let rc = RedisConn::connect(&redis.url()).await.unwrap();
    mirror(
        &rc,
        &ch,
        &[b"kbm".to_vec(), b"kbx".to_vec()],
        &Clock::system(),
        &NoProgress,
    )
    .await
    .unwrap();
    let before = snapshot(&mut conn).await;
    let p0 = chs::pattern_name("kbm", 0);
    let emotives = format!("kbm:emotives:{p0}");
    let frequency = format!("kbm:frequency:{p0}");
    let r = redis.url();
    let base = ["restore", "--from-clickhouse", &url, "--redis", &r];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };

    // Dry run on an emptied server: counts, writes nothing.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let dry = kbdump_json(&with(&["--dry-run"]));
    assert_eq!(dry["dry_run"], true);
    // 31 frequencies, 20 emotives, 20 metadata, 1 affinity; 1 of kbx.
    assert_eq!(dry["total"]["restored"], 31 + 20 + 20 + 1 + 1, "{dry}");
    assert!(snapshot(&mut conn).await.is_empty(), "dry run wrote");

    // Selectors: a kb glob and a category.
    let json = kbdump_json(&with(&["--kb", "kb[m]", "--category", "emotives"]));
    assert_eq!(json["total"]["restored"], 20, "{json}");
    let now = snapshot(&mut conn).await;
    assert!(now.keys().all(|k| k.starts_with(b"kbm:emotives:")));

    // Missing mode keeps keys changed since the mirror.
    let _: () = conn.set(&emotives, "[\"changed\"]").await.unwrap();
    let _: () = conn.set(&frequency, 99).await.unwrap();
    let json = kbdump_json(&base);
    assert_eq!(json["total"]["kept"], 21, "{json}");
    let kept: String = conn.get(&emotives).await.unwrap();
    assert_eq!(kept, "[\"changed\"]");
    let kept: i64 = conn.get(&frequency).await.unwrap();
    assert_eq!(kept, 99);

    // Replace mode puts the mirrored values back and saves an undo archive.
    let dir = tempfile::tempdir().unwrap();
    let undo = dir.path().join("undo.kbd");
    let undo_arg = undo.display().to_string();
    let json = kbdump_json(&with(&[
        "--mode",
        "replace",
        "--kb",
        "kbm",
        "--match",
        &format!("*{p0}"),
        "--undo",
        &undo_arg,
        "--yes",
    ]));
    assert_eq!(json["total"]["restored"], 3, "{json}"); // frequency, emotives, metadata
    assert_eq!(json["saved_for_undo"], 3, "{json}");
    assert_eq!(
        snapshot(&mut conn).await.get(emotives.as_bytes()),
        before.get(emotives.as_bytes())
    );
    let back: i64 = conn.get(&frequency).await.unwrap();
    assert_eq!(back, 3);
    let json = kbdump_json(&[
        "restore", "--mode", "replace", "--yes", &undo_arg, "--redis", &r,
    ]);
    assert_eq!(json["total"]["restored"], 3, "{json}");
    let undone: i64 = conn.get(&frequency).await.unwrap();
    assert_eq!(undone, 99, "undo brings back the overwritten value");

    // A file and --from-clickhouse together are a usage error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(["restore", "x.kbd", "--from-clickhouse", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A database without a mirror: a clear error.
    let server = chs::server();
    let empty = server.database("mirror_none").await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args([
            "restore",
            "--from-clickhouse",
            &server.url(&empty),
            "--redis",
            &r,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("redis_mirror") && err.contains("kbdump mirror"),
        "{err}"
    );
}

#[tokio::test]
async fn check_finds_each_seeded_inconsistency() {
    let (ch, url) = seeded("check_findings", "kbc", 60).await;
    let redis = RedisServer::start();
    let mut conn = chs::conn(&redis).await;
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
    // Derived keys that a rebuild writes, deleted: found as missing.
    let entropy = format!("kbc:entropy:{p}");
    let _: () = conn.del(&entropy).await.unwrap();
    let set: Vec<u8> = first_symbol_set(&mut conn, "kbc").await;
    let _: () = conn.del(&set).await.unwrap();
    let r = &check(&ch, &rc, &["kbc".to_string()]).await.unwrap()[0];
    assert_eq!(r.missing_derived.count, 2, "{:?}", r.missing_derived);
    assert!(r.missing_derived.examples.contains(&entropy));
    assert!(r
        .missing_derived
        .examples
        .contains(&kbdump::kato::display_bytes(&set)));
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
    assert_eq!(r.total(), 8);

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
    assert_eq!(json["findings"], 8);

    // A rebuild of what is missing brings the derived keys back.
    let mut only_missing = RebuildOptions::default();
    only_missing.only_missing = true;
    rebuild(&ch, conn.clone(), &[], &only_missing, &NoProgress)
        .await
        .unwrap();
    let r = &check(&ch, &rc, &["kbc".to_string()]).await.unwrap()[0];
    assert_eq!(r.missing_derived.count, 0, "{:?}", r.missing_derived);
    assert_eq!(r.missing_frequency.count, 0);
}

/// One `symbol_to_patterns:{s}` key of `kb`.
async fn first_symbol_set(conn: &mut redis::aio::MultiplexedConnection, kb: &str) -> Vec<u8> {
    let (_, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg(format!("{kb}:symbol_to_patterns:*"))
        .arg("COUNT")
        .arg(100_000)
        .query_async(conn)
        .await
        .unwrap();
    keys.into_iter().next().expect("a symbol set")
}

/// Unix ms as RFC 3339 with milliseconds, the form `--as-of` takes.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[tokio::test]
async fn a_deleted_key_stays_deleted_and_an_earlier_as_of_brings_it_back() {
    let (ch, url) = seeded("mirror_history", "kbp", 10).await;
    let redis = RedisServer::start();
    let mut conn = chs::conn(&redis).await;
    live_state(&ch, &mut conn, "kbp").await;
    let r = redis.url();
    let mirror_cli = |extra: &[&str]| {
        let mut args = vec!["mirror", "--clickhouse", &url, "--redis", &r, "--kb", "kbp"];
        args.extend_from_slice(extra);
        kbdump_json(&args)
    };
    let latest = || async {
        let mut reader = MirrorReader::open(&ch, &[b"kbp".to_vec()], &[])
            .await
            .unwrap();
        let mut keys = Vec::new();
        while let Some(record) = reader.next().await.unwrap() {
            keys.push(record.key);
        }
        keys
    };
    let mut at_first = seed::snapshot(&mut redis.client());
    // Not of kb_id kbp: not mirrored by this test.
    at_first.remove(b"kb0:affinity:a:b:c".as_slice());
    let first = mirror_cli(&["--create"]);
    assert_eq!(
        first["summary"]["prepared"]["created_table"], true,
        "{first}"
    );
    let all = latest().await;
    assert_eq!(all.len() as u64, first["summary"]["keys"].as_u64().unwrap());
    let gone = format!("kbp:emotives:{}", chs::pattern_name("kbp", 1));
    let _: () = conn.del(&gone).await.unwrap();
    let changed = format!("kbp:frequency:{}", chs::pattern_name("kbp", 2));
    let _: () = conn.set(&changed, 777).await.unwrap();

    // The next run records the deletion (1 of 20 emotives: under 10%) and
    // the new count, as new rows: nothing is overwritten.
    let second = mirror_cli(&[]);
    assert_eq!(second["summary"]["deleted"], 1, "{second}");
    assert_eq!(second["summary"]["held_back"], serde_json::json!([]));
    let left = latest().await;
    assert_eq!(left.len(), all.len() - 1);
    assert!(!left.contains(&gone.clone().into_bytes()));
    let rows: u64 = chs::server()
        .client()
        .query("SELECT count() FROM kato_mirror_history.redis_mirror_versions")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        rows,
        2 * all.len() as u64,
        "one version per key per run, one tombstone"
    );

    // Latest: the deleted key stays deleted, the count is the new one.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let json = kbdump_json(&["restore", "--from-clickhouse", &url, "--redis", &r]);
    assert_eq!(json["total"]["restored"], left.len() as u64, "{json}");
    let back: bool = conn.exists(&gone).await.unwrap();
    assert!(!back, "a deleted key came back on a latest restore");
    let count: i64 = conn.get(&changed).await.unwrap();
    assert_eq!(count, 777);

    // As of just before the second run: the key is back, the count old.
    let before_second = second["summary"]["started_at_ms"].as_u64().unwrap() - 1;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let as_of = rfc3339_ms(before_second);
    let json = kbdump_json(&[
        "restore",
        "--from-clickhouse",
        &url,
        "--redis",
        &r,
        "--as-of",
        &as_of,
    ]);
    assert_eq!(json["total"]["restored"], all.len() as u64, "{json}");
    let back: bool = conn.exists(&gone).await.unwrap();
    assert!(back, "--as-of before the deletion left the key out");
    let count: i64 = conn.get(&changed).await.unwrap();
    assert_eq!(count, 5, "the count as it was then");
    // ClickHouse alone brings the whole kb_id back as it was then: the
    // mirror at that instant, then a rebuild of the derivable data.
    rebuild(
        &ch,
        conn.clone(),
        &[],
        &RebuildOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    seed::assert_same_data(&at_first, &seed::snapshot(&mut redis.client()), 60_000);
    // Before the first run there was nothing.
    let json = kbdump_json(&[
        "restore",
        "--from-clickhouse",
        &url,
        "--redis",
        &r,
        "--dry-run",
        "--as-of",
        "2001-01-01",
    ]);
    assert_eq!(json["total"]["restored"], 0, "{json}");
    // --prune is accepted (every run records deletions now), with a warning.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(["mirror", "--prune", "--clickhouse", &url, "--redis", &r])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--prune is no longer needed"));
}

/// Binary keys and payloads, a large value, a key whose expiry passes
/// before the restore, reruns, and a prune limited to the mirrored kb_ids.
#[tokio::test]
async fn mirror_round_trips_binary_large_and_expiring_keys() {
    use redis::AsyncCommands;
    let server = chs::server();
    let db = server.database("mirror_binary").await;
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
    // Long enough to outlive the mirror runs below on a loaded machine,
    // short enough that the test waits for it to pass.
    let soon_ms = 8_000;
    let _: () = conn.pexpire("kbb:metadata:soon", soon_ms).await.unwrap();
    let soon_set = std::time::Instant::now();
    let _: () = conn.set("kbb:metadata:later", "{}").await.unwrap();
    let _: () = conn.pexpire("kbb:metadata:later", 600_000).await.unwrap();
    let _: () = conn.set("kbo:emotives:p", "[]").await.unwrap();
    let _: () = conn.set("kbo:emotives:q", "[]").await.unwrap();

    let mirror = |kb: &str, force: bool| {
        let mut args = vec!["mirror", "--create", "--clickhouse", &url, "--redis", &r];
        args.extend(["--kb", kb]);
        if force {
            args.push("--force");
        }
        let (code, json, err) = json_outcome(&args);
        assert_eq!(code, Some(0), "{err}");
        json
    };
    let first = mirror("kb?", false);
    assert_eq!(first["summary"]["keys"], 7, "{first}");
    mirror("kb?", false);
    let final_rows = |kb: &'static str| {
        let ch = Ch::from_url(&url).unwrap();
        async move {
            let mut reader = MirrorReader::open(&ch, &[kb.as_bytes().to_vec()], &[])
                .await
                .unwrap();
            let mut n = 0u64;
            while reader.next().await.unwrap().is_some() {
                n += 1;
            }
            n
        }
    };
    assert_eq!(final_rows("kbb").await, 5, "a rerun duplicates keys");
    assert_eq!(final_rows("kbo").await, 2);

    // Deletions are recorded for the mirrored kb_id only: kbo's rows stay,
    // even of a key deleted since. (1 of 2 metadata keys is above the
    // shrink guard, hence --force.)
    let _: () = conn.del("kbo:emotives:q").await.unwrap();
    let _: () = conn.del("kbb:metadata:later").await.unwrap();
    let json = mirror("kbb", true);
    assert_eq!(json["summary"]["deleted"], 1, "{json}");
    assert_eq!(final_rows("kbb").await, 4);
    assert_eq!(
        final_rows("kbo").await,
        2,
        "a deletion touched another kb_id"
    );

    // The short expiry passes; everything else comes back byte for byte.
    let before = support::seed::snapshot(&mut redis.client());
    let passed = std::time::Duration::from_millis(soon_ms as u64 + 200);
    tokio::time::sleep(passed.saturating_sub(soon_set.elapsed())).await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let (code, json, err) = json_outcome(&["restore", "--from-clickhouse", &url, "--redis", &r]);
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
