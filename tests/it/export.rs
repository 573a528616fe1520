//! Export, `kbs` and the offline commands (inspect, ls, verify) against
//! real servers and real archives: kb, category and match selection
//! (awkward kb_ids, kb_ids that prefix one another), keys deleted during an
//! export, stdout and file output, damaged archives, bad inputs and
//! credentials that must not be printed, TLS, and output into a pipe closed
//! early or onto a full disk.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::support::cli::{self, json_with_code, kbdump, ok, run, stderr, stdout};
use crate::support::redis::RedisServer;
use crate::support::seed::{seed_kato, Category as SeedCategory, SeedSpec, Seeded};
use kbdump::flow::export::export;
use kbdump::format::archive::{Header, IndexedArchive, Record, SourceInfo, FORMAT_VERSION};
use kbdump::kato::{display_bytes, parse_display_bytes};
use kbdump::net::redis::RedisConn;
use kbdump::progress::Progress;
use kbdump::selection::Selection;
use kbdump::source::live::{ExportOptions, LiveSource};
use kbdump::stop::Stop;
use serde_json::Value as Json;

fn seeded_server(spec: &SeedSpec) -> (RedisServer, Seeded) {
    let server = RedisServer::start();
    let seeded = seed_kato(&mut server.client(), spec);
    (server, seeded)
}

/// Every record of an archive, by key.
fn read_archive(path: &Path) -> BTreeMap<Vec<u8>, Record> {
    let file = std::fs::File::open(path).unwrap();
    let mut archive = IndexedArchive::open(file).unwrap();
    let mut out = BTreeMap::new();
    for entry in archive.index().blocks.clone() {
        for record in archive.read_block(&entry).unwrap().records().unwrap() {
            let record = record.unwrap();
            assert!(
                out.insert(record.key.clone(), record).is_none(),
                "duplicate record"
            );
        }
    }
    out
}

fn keys_of(records: &BTreeMap<Vec<u8>, Record>) -> BTreeSet<Vec<u8>> {
    records.keys().cloned().collect()
}

/// Each record must hold exactly what the server has for that key now: the
/// same DUMP payload, and an expiry that agrees with PTTL.
fn assert_records_match_server(server: &RedisServer, records: &BTreeMap<Vec<u8>, Record>) {
    let mut conn = server.client();
    let now = kbdump::clock::system_now_ms();
    for (key, record) in records {
        let dump: Vec<u8> = redis::cmd("DUMP").arg(key).query(&mut conn).unwrap();
        assert_eq!(dump, record.payload, "payload of {}", display_bytes(key));
        let pttl: i64 = redis::cmd("PTTL").arg(key).query(&mut conn).unwrap();
        let kind: String = redis::cmd("TYPE").arg(key).query(&mut conn).unwrap();
        assert_eq!(kind, record.redis_type, "type of {}", display_bytes(key));
        match record.expire_at_ms {
            None => assert_eq!(pttl, -1, "{} should not expire", display_bytes(key)),
            Some(at) => {
                let expected = at - now;
                assert!(
                    (pttl - expected).abs() < 2_000,
                    "expiry of {}: pttl {pttl}, archive says {expected}",
                    display_bytes(key)
                );
            }
        }
    }
}

fn category_name(c: SeedCategory) -> &'static str {
    c.name()
}

#[test]
fn export_of_one_kb_holds_exactly_its_keys() {
    let (server, seeded) = seeded_server(&SeedSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("node0.kbd");
    ok(&[
        "export",
        "--redis",
        &server.url(),
        "--kb",
        "node0_kato",
        "-o",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let records = read_archive(&out);
    assert_eq!(keys_of(&records), seeded.of_kb(b"node0_kato"));
    assert_records_match_server(&server, &records);
    for record in records.values() {
        assert_eq!(record.kb_id, b"node0_kato");
        let seeded_key = &seeded.keys[&record.key];
        assert_eq!(
            Some(record.category.name()),
            seeded_key.category.map(category_name),
            "category of {}",
            display_bytes(&record.key)
        );
    }
}

/// With no selector, an export takes every key of the db: every kb_id
/// (awkward ids too), KATO's global keys and foreign keys, each where it
/// belongs. (`--kb '*'` still takes the kb_ids' keys and nothing else.)
#[test]
fn every_key_including_awkward_kb_ids_is_exported_when_none_is_named() {
    let (server, seeded) = seeded_server(&SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("all.kbd");
    ok(&[
        "export",
        "--redis",
        &server.url(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let records = read_archive(&out);
    assert_eq!(keys_of(&records), seeded.all(), "every key of the db");
    assert_records_match_server(&server, &records);
    for (key, record) in &records {
        let seeded_key = &seeded.keys[key];
        let kb = seeded_key.kb_id.clone().unwrap_or_default();
        assert_eq!(record.kb_id, kb, "kb_id of {}", display_bytes(key));
        assert_eq!(
            Some(record.category.name()),
            seeded_key.category.map(category_name),
            "category of {}",
            display_bytes(key)
        );
    }
    let kb_only = dir.path().join("kbs.kbd");
    ok(&[
        "export",
        "--redis",
        &server.url(),
        "--kb",
        "*",
        "-o",
        kb_only.to_str().unwrap(),
    ]);
    assert_eq!(
        keys_of(&read_archive(&kb_only)),
        seeded.kato(),
        "all kb_ids' keys and nothing else"
    );
}

#[test]
fn awkward_kb_ids_are_selected_literally_when_escaped() {
    let (server, seeded) = seeded_server(&SeedSpec::small());
    let awkward: Vec<Vec<u8>> = seeded
        .kb_ids()
        .into_iter()
        .filter(|kb| kb.iter().any(|b| b"*?[]".contains(b) || !b.is_ascii()))
        .collect();
    assert!(!awkward.is_empty(), "the seeder writes awkward kb_ids");
    let dir = tempfile::tempdir().unwrap();
    for (i, kb) in awkward.iter().enumerate() {
        let escaped = display_bytes(&kbdump::pattern::escape(kb));
        assert_eq!(parse_display_bytes(&escaped), kbdump::pattern::escape(kb));
        let out = dir.path().join(format!("awkward{i}.kbd"));
        ok(&[
            "export",
            "--redis",
            &server.url(),
            "--kb",
            &escaped,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(
            keys_of(&read_archive(&out)),
            seeded.of_kb(kb),
            "kb {}",
            display_bytes(kb)
        );
    }
}

#[test]
fn category_and_match_filters_are_exact() {
    let (server, seeded) = seeded_server(&SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cats.kbd");
    ok(&[
        "export",
        "--redis",
        &server.url(),
        "--kb",
        "node*",
        "--category",
        "emotives",
        "--category",
        "affinity",
        "-o",
        out.to_str().unwrap(),
    ]);
    let want: BTreeSet<Vec<u8>> = seeded.select(|k| {
        k.kb_id.as_deref().is_some_and(|kb| kb.starts_with(b"node"))
            && matches!(
                k.category,
                Some(SeedCategory::Emotives | SeedCategory::Affinity)
            )
    });
    assert!(!want.is_empty());
    assert_eq!(keys_of(&read_archive(&out)), want);

    let out = dir.path().join("glob.kbd");
    ok(&[
        "export",
        "--redis",
        &server.url(),
        "--kb",
        "node1_kato",
        "--match",
        "*:metadata:[0-7]*",
        "-o",
        out.to_str().unwrap(),
    ]);
    let want: BTreeSet<Vec<u8>> = seeded
        .of(b"node1_kato", SeedCategory::Metadata)
        .into_iter()
        .filter(|k| (b'0'..=b'7').contains(&k[b"node1_kato:metadata:".len()]))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(keys_of(&read_archive(&out)), want);
}

/// Deletes keys from the server the moment SCAN has returned them, so they
/// vanish before DUMP reads them.
struct DeleteOnScan {
    conn: Mutex<redis::Connection>,
    victims: Vec<Vec<u8>>,
}

impl Progress for DeleteOnScan {
    fn scanned(&self, _keys: u64) {
        let mut conn = self.conn.lock().unwrap();
        for key in &self.victims {
            let _: i64 = redis::cmd("DEL").arg(key).query(&mut *conn).unwrap();
        }
    }
}

#[tokio::test]
async fn keys_deleted_during_export_are_counted_not_fatal() {
    let (server, seeded) = seeded_server(&SeedSpec::small());
    let all = seeded.of_kb(b"node0_kato");
    let victims: Vec<Vec<u8>> = all.iter().step_by(7).cloned().collect();
    let progress = DeleteOnScan {
        conn: Mutex::new(server.client()),
        victims: victims.clone(),
    };
    let conn = RedisConn::connect(&server.url()).await.unwrap();
    let options = ExportOptions {
        selection: Selection::default(),
        scan_count: 100_000,
        pipelines_in_flight: 1,
        ..ExportOptions::default()
    };
    let header = Header {
        format_version: FORMAT_VERSION,
        tool: "test".into(),
        created_at_ms: 0,
        source: SourceInfo::default(),
        selection: Default::default(),
        snapshot_at_ms: None,
        shards: Vec::new(),
    };
    let source = LiveSource::new(conn, vec![b"node0_kato".to_vec()], header, options);
    let (bytes, summary) = export(
        &source,
        Default::default(),
        Vec::new(),
        &progress,
        &Stop::never(),
    )
    .await
    .unwrap();
    assert_eq!(summary.vanished, victims.len() as u64);
    assert_eq!(summary.keys, (all.len() - victims.len()) as u64);
    let archive = IndexedArchive::open(std::io::Cursor::new(bytes)).unwrap();
    assert_eq!(archive.index().kbs[0].vanished, victims.len() as u64);
    assert_eq!(archive.end_info().record_count, summary.keys);
}

#[test]
fn archive_to_stdout_equals_archive_to_file() {
    let (server, _) = seeded_server(&SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.kbd");
    ok(&[
        "export",
        "--redis",
        &server.url(),
        "-o",
        file.to_str().unwrap(),
    ]);
    let piped = ok(&["export", "--redis", &server.url(), "-o", "-"]);
    let piped_path = dir.path().join("piped.kbd");
    std::fs::write(&piped_path, &piped.stdout).unwrap();
    let (a, b) = (read_archive(&file), read_archive(&piped_path));
    assert_eq!(keys_of(&a), keys_of(&b));
    for (key, ra) in &a {
        let rb = &b[key];
        assert_eq!(
            (&ra.payload, &ra.redis_type, ra.category),
            (&rb.payload, &rb.redis_type, rb.category)
        );
        match (ra.expire_at_ms, rb.expire_at_ms) {
            (None, None) => {}
            (Some(x), Some(y)) => {
                assert!((x - y).abs() < 5_000, "expiry of {}", display_bytes(key))
            }
            other => panic!("expiry differs for {}: {other:?}", display_bytes(key)),
        }
    }
    // The summary went to stderr, keeping stdout pure archive.
    assert!(stderr(&piped).contains("exported"));
}

#[test]
fn inspect_and_ls_match_the_server() {
    let (server, seeded) = seeded_server(&SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("all.kbd");
    ok(&[
        "export",
        "--redis",
        &server.url(),
        "-o",
        file.to_str().unwrap(),
    ]);
    let path = file.to_str().unwrap();

    let inspect: Json = serde_json::from_slice(&ok(&["inspect", "--json", path]).stdout).unwrap();
    assert_eq!(inspect["keys"], seeded.all().len());
    assert_eq!(inspect["source"]["version"], server.version());
    let mut counted: BTreeMap<(String, String), u64> = BTreeMap::new();
    for cell in inspect["contents"].as_array().unwrap() {
        let key = (
            cell["kb_id"].as_str().unwrap().to_string(),
            cell["category"].as_str().unwrap().to_string(),
        );
        counted.insert(key, cell["keys"].as_u64().unwrap());
    }
    // Keys outside kb_ids are cells with an empty kb_id.
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for k in seeded.keys.values() {
        let kb = k.kb_id.as_deref().map(display_bytes).unwrap_or_default();
        let cat = k.category.expect("every seeded key has a category");
        *expected.entry((kb, cat.name().to_string())).or_default() += 1;
    }
    assert_eq!(counted, expected);
    let text = String::from_utf8(ok(&["inspect", path]).stdout).unwrap();
    assert!(
        text.contains("backup only") && text.contains("SCAN windows"),
        "{text}"
    );

    let listed = ok(&["ls", "--json", path, "--category", "frequency"]).stdout;
    let listed: BTreeSet<Vec<u8>> = String::from_utf8(listed)
        .unwrap()
        .lines()
        .map(|l| {
            parse_display_bytes(
                serde_json::from_str::<Json>(l).unwrap()["key"]
                    .as_str()
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, seeded.of_category(SeedCategory::Frequency));

    let long = String::from_utf8(ok(&["ls", "--long", path, "--kb", "node0_kato"]).stdout).unwrap();
    assert_eq!(long.lines().count(), seeded.of_kb(b"node0_kato").len());
    let with_expiry = long
        .lines()
        .filter(|l| l.contains('T') && l.contains('Z'))
        .count();
    let ttl_keys = seeded
        .of_kb(b"node0_kato")
        .intersection(&seeded.with_ttl())
        .count();
    assert_eq!(with_expiry, ttl_keys, "{long}");

    let from_stdin = Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(["ls", "-", "--category", "frequency"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(from_stdin.stdout)
            .unwrap()
            .lines()
            .count(),
        listed.len()
    );
}

fn exported_archive() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let (server, _) = seeded_server(&SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.kbd");
    ok(&[
        "export",
        "--redis",
        &server.url(),
        "-o",
        file.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&file).unwrap();
    (dir, file, bytes)
}

#[test]
fn verify_passes_an_intact_archive_and_names_each_damaged_block() {
    let (dir, file, bytes) = exported_archive();
    let out = ok(&["verify", file.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    let index = IndexedArchive::open(std::fs::File::open(&file).unwrap())
        .unwrap()
        .index()
        .clone();
    let damaged = dir.path().join("damaged.kbd");
    for entry in &index.blocks {
        for at in [
            entry.offset,
            entry.offset + 5,
            entry.offset + entry.len / 2,
            entry.offset + entry.len - 1,
        ] {
            let mut bad = bytes.clone();
            bad[at as usize] ^= 0x20;
            std::fs::write(&damaged, &bad).unwrap();
            let out = kbdump(&["verify", "--json", damaged.to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(1), "flip at {at}: {}", stderr(&out));
            let report: Json = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(report["ok"], false);
            let offsets: Vec<u64> = report["problems"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p["offset"].as_u64())
                .collect();
            assert!(
                offsets.contains(&entry.offset),
                "flip at {at} not attributed to block {}: {report}",
                entry.offset
            );
        }
    }
}

#[test]
fn verify_tells_truncation_magic_and_version_apart() {
    let (dir, _, bytes) = exported_archive();
    let path = dir.path().join("bad.kbd");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (bytes[..bytes.len() / 2].to_vec(), "truncated"),
        (bytes[..bytes.len() - 3].to_vec(), "truncated"),
        // Not REDIS0011: that is an RDB file's magic, read as one.
        (
            [b"XEDIS0011".as_slice(), &bytes[9..]].concat(),
            "not a kbdump archive",
        ),
        (
            {
                let mut b = bytes.clone();
                b[8] = 9;
                b
            },
            "newer than this kbdump understands",
        ),
    ];
    let mut messages = BTreeSet::new();
    for (content, expect) in cases {
        std::fs::write(&path, &content).unwrap();
        let out = kbdump(&["verify", path.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(1), "{expect}: {text}");
        assert!(text.contains(expect), "expected {expect:?} in {text}");
        messages.insert(text.lines().nth(1).unwrap_or_default().to_string());
        let out = kbdump(&["inspect", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains(expect), "inspect: {}", stderr(&out));
    }
    assert_eq!(
        messages.len(),
        4,
        "each damage has its own message: {messages:?}"
    );
}

#[test]
fn bad_inputs_fail_clearly_and_leave_nothing_behind() {
    let server = RedisServer::builder().requirepass("s3cret").start();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("x.kbd");
    let target_s = target.to_str().unwrap();

    let unreachable = kbdump(&["export", "--redis", "redis://127.0.0.1:1", "-o", target_s]);
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(
        stderr(&unreachable).contains("cannot connect to Redis at 127.0.0.1:1"),
        "{}",
        stderr(&unreachable)
    );

    let url = format!("redis://:wrong@127.0.0.1:{}", server.port());
    let wrong = kbdump(&["export", "--redis", &url, "-o", target_s]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        stderr(&wrong).contains("authentication failed"),
        "{}",
        stderr(&wrong)
    );
    assert!(
        !stderr(&wrong).contains("wrong"),
        "password leaked: {}",
        stderr(&wrong)
    );

    let category = kbdump(&[
        "export",
        "--redis",
        &server.url(),
        "--category",
        "emotive",
        "-o",
        target_s,
    ]);
    assert_eq!(category.status.code(), Some(2));
    assert!(
        stderr(&category).contains("emotives"),
        "{}",
        stderr(&category)
    );

    let missing_dir = dir.path().join("nope/x.kbd");
    let out = kbdump(&[
        "export",
        "--redis",
        &server.url(),
        "-o",
        missing_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));

    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file left behind"
    );

    std::fs::write(&target, b"precious").unwrap();
    let exists = kbdump(&["export", "--redis", &server.url(), "-o", target_s]);
    assert_eq!(exists.status.code(), Some(2));
    assert!(stderr(&exists).contains("--force"), "{}", stderr(&exists));
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    ok(&[
        "export",
        "--redis",
        &server.url(),
        "-o",
        target_s,
        "--force",
    ]);
    assert_ne!(std::fs::read(&target).unwrap(), b"precious");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
}

#[test]
fn kbs_lists_every_kb_with_category_counts() {
    let (server, seeded) = seeded_server(&SeedSpec::small());
    let out: Json =
        serde_json::from_slice(&ok(&["kbs", "--json", "--redis", &server.url()]).stdout).unwrap();
    let listed: BTreeMap<String, u64> = out["kbs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kb| {
            (
                kb["kb_id"].as_str().unwrap().to_string(),
                kb["keys"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: BTreeMap<String, u64> = seeded
        .kb_ids()
        .iter()
        .map(|kb| (display_bytes(kb), seeded.of_kb(kb).len() as u64))
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(out["unclassified_keys"], seeded.unrelated().len() as u64);
}

/// A self-signed certificate and key for a TLS test server.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    (cert, key)
}

#[test]
fn rediss_urls_connect_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = RedisServer::builder()
        .config(&format!("tls-port {tls_port}"))
        .config(&format!("tls-cert-file {}", cert.display()))
        .config(&format!("tls-key-file {}", key.display()))
        .config(&format!("tls-ca-cert-file {}", cert.display()))
        .config("tls-auth-clients no")
        .start();
    let seeded = seed_kato(&mut server.client(), &SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tls.kbd");
    // `#insecure` skips certificate verification (the certificate is self-signed).
    let url = format!("rediss://127.0.0.1:{tls_port}/#insecure");
    ok(&[
        "export",
        "--redis",
        &url,
        "--kb",
        "node0_kato",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(keys_of(&read_archive(&out)), seeded.of_kb(b"node0_kato"));
    let unverified = kbdump(&["kbs", "--redis", &format!("rediss://127.0.0.1:{tls_port}")]);
    assert_eq!(
        unverified.status.code(),
        Some(2),
        "a self-signed certificate is refused by default"
    );
    assert!(
        stderr(&unverified).contains(&format!("127.0.0.1:{tls_port}")),
        "{}",
        stderr(&unverified)
    );
}

/// A server holding about `mib` MiB of incompressible values in kb `r`.
fn incompressible(mib: usize) -> RedisServer {
    let server = RedisServer::start();
    let mut conn = server.client();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut pipe = ::redis::pipe();
    for i in 0..mib * 1024 {
        let value: Vec<u8> = (0..1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        pipe.cmd("SET")
            .arg(format!("r:metadata:{i}"))
            .arg(value)
            .ignore();
        if i % 1000 == 999 {
            pipe.query::<()>(&mut conn).unwrap();
            pipe = ::redis::pipe();
        }
    }
    pipe.query::<()>(&mut conn).unwrap();
    server
}

/// `export -o - | head -c 100000`: the reader got a cut archive, so the
/// export failed, and says why.
#[test]
fn export_into_a_pipe_closed_early_fails_and_says_the_archive_is_cut() {
    let server = incompressible(24);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(["export", "--quiet", "--redis", &server.url(), "-o", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut head = vec![0u8; 100_000];
    stdout.read_exact(&mut head).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("closed the pipe"), "{err}");
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn export_onto_a_full_disk_says_so_and_leaves_no_file() {
    let server = incompressible(8);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("full.kbd");
    // `ulimit -f` makes writes past 1 MiB fail with EFBIG, like a full disk.
    let script = format!(
        "trap '' XFSZ; ulimit -f 1024; exec '{}' export --quiet --redis '{}' -o '{}'",
        env!("CARGO_BIN_EXE_kbdump"),
        server.url(),
        target.display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).contains("File too large"),
        "the error must say what went wrong: {}",
        stderr(&out)
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[test]
fn a_kb_export_leaves_unmarked_keys_of_a_longer_kb_to_that_kb() {
    let server = RedisServer::start();
    for key in ["a:emotives:1", "a:weird", "a:b:emotives:2", "a:b:weird"] {
        run::<()>(&server, ::redis::cmd("SET").arg(key).arg("v"));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = cli::export(&server, dir.path(), "a.kbd", &["--kb", "a"]);
    let listed = stdout(&ok(&["ls", file.to_str().unwrap()]));
    let keys: std::collections::BTreeSet<&str> = listed.lines().collect();
    assert_eq!(
        keys,
        ["a:emotives:1", "a:weird"].into_iter().collect(),
        "kb a:b's keys must not be exported as kb a's"
    );
    // Nor does diff count them as extra keys of kb a.
    let out = kbdump(&[
        "diff",
        file.to_str().unwrap(),
        "--redis",
        &server.url(),
        "--json",
    ]);
    let report = json_with_code(&out, 0);
    assert_eq!(report["identical"], true, "{report}");
    // Without a longer kb_id, an unmarked key with more colons stays with `a`.
    run::<()>(&server, ::redis::cmd("DEL").arg("a:b:emotives:2"));
    let file = cli::export(&server, dir.path(), "a2.kbd", &["--kb", "a"]);
    let listed = stdout(&ok(&["ls", file.to_str().unwrap()]));
    assert_eq!(listed.lines().count(), 3, "{listed}");
}

#[test]
fn credentials_in_a_url_without_scheme_are_not_printed() {
    let out = kbdump(&[
        "export",
        "--redis",
        "user:secret@127.0.0.1:1",
        "-o",
        "/nonexistent-dir/x.kbd",
    ]);
    let out2 = kbdump(&["kbs", "--redis", "user:secret@127.0.0.1:1"]);
    for out in [out, out2] {
        assert_eq!(out.status.code(), Some(2));
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!all.contains("secret"), "{all}");
    }
}

/// JSON printed into a pipe that the reader closes early (`| head`) is not
/// an error either.
#[test]
fn json_into_a_pipe_closed_early_is_not_an_error() {
    let server = RedisServer::start();
    let mut pipe = ::redis::pipe();
    for i in 0..3000 {
        pipe.cmd("SET")
            .arg(format!("kb{i}:frequency:p"))
            .arg(1)
            .ignore();
    }
    pipe.query::<()>(&mut server.client()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(["kbs", "--json", "--redis", &server.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut head = [0u8; 10];
    stdout.read_exact(&mut head).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}
