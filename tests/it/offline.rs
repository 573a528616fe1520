//! The offline commands (cat, verify, inspect, ls) on the committed golden
//! archive, its damaged copies, hand-made archives, a real export and a
//! path that is no archive at all (a directory).
//!
//! The golden archive under `fixtures/archive/` must decode to the records
//! in `golden.records.jsonl` forever (docs/FORMAT.md, versioning rules).
//! Both are written by `archive_fixtures::write` below, which
//! `scripts/gen-archive-fixtures.sh` runs; the generator is deterministic
//! (fixed clock, header and payloads), and a test checks that it still
//! reproduces the committed bytes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::cli::{kbdump, ok, stderr, stdout};
use crate::support::redis::RedisServer;
use crate::support::seed::{seed_kato, SeedSpec};
use kbdump::format::archive::{
    ArchiveReader, ArchiveWriter, Header, IndexedArchive, KbWindow, Record, SelectionSpec,
    SourceInfo, WriterOptions, FORMAT_VERSION,
};
use kbdump::format::dump::{self, Value};
use kbdump::kato::{display_bytes, parse_display_bytes, Category};
use serde_json::{json, Value as Json};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/archive")
        .join(name)
}

fn golden() -> String {
    fixture("golden.kbd").to_str().unwrap().to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Every record of a seekable archive, in index order.
fn records_of(path: &Path) -> Vec<Record> {
    let mut archive = IndexedArchive::open(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for entry in archive.index().blocks.clone() {
        for record in archive.read_block(&entry).unwrap().records().unwrap() {
            out.push(record.unwrap());
        }
    }
    out
}

/// Writes `records` as an archive with a fixed header.
fn write_archive(path: &Path, records: &[Record]) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer =
        ArchiveWriter::new(file, &archive_fixtures::header(), WriterOptions::default()).unwrap();
    for r in records {
        writer.push(r).unwrap();
    }
    writer.finish().unwrap();
}

fn record(key: &[u8], category: Category, payload: Vec<u8>) -> Record {
    let kb_id = key.split(|&b| b == b':').next().unwrap().to_vec();
    let redis_type = dump::parse_envelope(&payload)
        .ok()
        .and_then(|e| dump::redis_type(e.type_byte, e.rdb_version))
        .map_or("string", |t| t.name())
        .to_string();
    Record {
        key: key.to_vec(),
        kb_id,
        category,
        redis_type,
        expire_at_ms: None,
        payload,
    }
}

/// The golden archive and its damaged copies.
mod archive_fixtures {
    use super::*;

    /// Where each golden record's payload comes from: a captured Redis 7.0
    /// payload (`fixtures/dump/redis-7.0.json`) under a KATO-like key.
    pub const GOLDEN: &[(&str, Category, &str, Option<i64>)] = &[
        (
            "node0_kato:frequency:00ff",
            Category::Frequency,
            "str:raw",
            None,
        ),
        (
            "node0_kato:metadata:00ff",
            Category::Metadata,
            "str:lzf",
            None,
        ),
        (
            "node0_kato:tf_vector:00ff",
            Category::Metrics,
            "kb:emotives:1",
            None,
        ),
        (
            "node0_kato:entropy:00ff",
            Category::Metrics,
            "zset:small",
            None,
        ),
        (
            "node0_kato:global:total_unique_patterns",
            Category::Globals,
            "str:int16",
            None,
        ),
        ("node0_kato:events", Category::Other, "stream:groups", None),
        (
            "node2_kato:emotives:3f78a9c1",
            Category::Emotives,
            "kb:emotives:1",
            None,
        ),
        (
            "node2_kato:emotives:9b2e4410",
            Category::Emotives,
            "str:unicode",
            None,
        ),
        (
            "node2_kato:metadata:3f78a9c1",
            Category::Metadata,
            "kb:metadata:1",
            None,
        ),
        (
            "node2_kato:frequency:3f78a9c1",
            Category::Frequency,
            "str:int8",
            None,
        ),
        (
            "node2_kato:symbols:freq",
            Category::Symbols,
            "hash:small",
            None,
        ),
        (
            "node2_kato:symbol_to_patterns:\\xff\\xfesym",
            Category::Symbols,
            "set:binary",
            None,
        ),
        (
            "node2_kato:prediction:q1",
            Category::Predictions,
            "list:small",
            Some(1_800_000_000_000),
        ),
    ];

    pub fn header() -> Header {
        Header {
            format_version: FORMAT_VERSION,
            tool: "kbdump 0.1.0".into(),
            created_at_ms: 1_700_000_000_000,
            source: SourceInfo {
                kind: "redis-server".into(),
                address: "127.0.0.1:6379".into(),
                product: "redis".into(),
                version: "7.0.15".into(),
                rdb_version: Some(10),
                mode: "standalone".into(),
                db: 0,
                masters: Vec::new(),
            },
            selection: SelectionSpec {
                kbs: vec![b"node0_kato".to_vec(), b"node2_kato".to_vec()],
                categories: vec![],
                matches: vec![],
                ..SelectionSpec::default()
            },
            snapshot_at_ms: None,
            shards: Vec::new(),
        }
    }

    fn captured_payloads() -> BTreeMap<String, Vec<u8>> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/dump/redis-7.0.json");
        let doc: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        doc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|k| Some((k["key"].as_str()?.to_string(), k["payload_hex"].as_str()?)))
            .map(|(k, h)| (k, unhex(h)))
            .collect()
    }

    pub fn golden_records() -> Vec<Record> {
        let payloads = captured_payloads();
        GOLDEN
            .iter()
            .map(|&(key, category, source, expire_at_ms)| Record {
                expire_at_ms,
                ..record(
                    &parse_display_bytes(key),
                    category,
                    payloads[source].clone(),
                )
            })
            .collect()
    }

    /// The golden archive: kb_ids one after the other, each with its SCAN
    /// window, as an export writes them.
    pub fn golden_bytes() -> Vec<u8> {
        let mut writer =
            ArchiveWriter::new(Vec::new(), &header(), WriterOptions::default()).unwrap();
        let records = golden_records();
        for (n, kb) in [&b"node0_kato"[..], b"node2_kato"].into_iter().enumerate() {
            let mine: Vec<_> = records.iter().filter(|r| r.kb_id == kb).collect();
            for r in &mine {
                writer.push(r).unwrap();
            }
            let start = 1_700_000_000_000 + 1_000 * n as i64;
            writer
                .finish_kb(KbWindow {
                    kb_id: kb.to_vec(),
                    scan_started_ms: start,
                    scan_finished_ms: start + 250,
                    keys: mine.len() as u64,
                    vanished: 0,
                    duplicates: 0,
                })
                .unwrap();
        }
        writer.finish().unwrap().0
    }

    /// `golden.records.jsonl`: what each golden record must decode to.
    pub fn expectations(records: &[Record]) -> String {
        let lines: Vec<String> = records
            .iter()
            .map(|r| {
                json!({
                    "key": display_bytes(&r.key),
                    "kb_id": display_bytes(&r.kb_id),
                    "category": r.category.name(),
                    "type": r.redis_type,
                    "expire_at_ms": r.expire_at_ms,
                    "payload_hex": hex(&r.payload),
                    "value": dump::decode(&r.payload).unwrap().to_json(),
                })
                .to_string()
            })
            .collect();
        lines.join("\n") + "\n"
    }

    /// Every fixture file name with its content.
    pub fn all() -> Vec<(&'static str, Vec<u8>)> {
        let golden = golden_bytes();
        let blocks = IndexedArchive::open(std::io::Cursor::new(&golden))
            .unwrap()
            .index()
            .blocks
            .clone();
        let emotives = blocks
            .iter()
            .find(|e| e.meta.kb_id == b"node2_kato" && e.meta.category == Category::Emotives)
            .unwrap();
        let mut bad_checksum = golden.clone();
        // A byte inside the block's zstd data: the frame CRC catches it.
        bad_checksum[(emotives.offset + emotives.len - 3) as usize] ^= 0x20;
        // A text-mode transfer turned the magic's CR LF into LF.
        let bad_magic = [&golden[..4], &golden[5..]].concat();
        let mut future = golden.clone();
        future[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        vec![
            (
                "golden.records.jsonl",
                expectations(&golden_records()).into_bytes(),
            ),
            ("golden-truncated.kbd", golden[..golden.len() / 2].to_vec()),
            ("golden-bad-checksum.kbd", bad_checksum),
            ("golden-bad-magic.kbd", bad_magic),
            ("golden-future-version.kbd", future),
            ("golden.kbd", golden),
        ]
    }
}

/// Writes the fixtures when `KBDUMP_WRITE_ARCHIVE_FIXTURES=1` (see
/// `scripts/gen-archive-fixtures.sh`); otherwise checks that the generator
/// still reproduces the committed files byte for byte.
#[test]
fn archive_fixtures_are_reproducible() {
    let write = std::env::var("KBDUMP_WRITE_ARCHIVE_FIXTURES").is_ok_and(|v| v == "1");
    for (name, bytes) in archive_fixtures::all() {
        if write {
            std::fs::create_dir_all(fixture("")).unwrap();
            std::fs::write(fixture(name), &bytes).unwrap();
        }
        let committed = std::fs::read(fixture(name)).unwrap();
        assert!(
            committed == bytes,
            "fixtures/archive/{name} differs from what the generator writes now \
             (a new zstd or new dump fixtures?). Never regenerate golden.kbd to \
             make a reader change pass: it must stay readable as it is."
        );
    }
}

/// The golden archive decodes, through both readers, to exactly the
/// recorded records and values.
#[test]
fn golden_archive_decodes_to_the_expected_records() {
    let expected: Vec<Json> = std::fs::read_to_string(fixture("golden.records.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(expected.len(), archive_fixtures::GOLDEN.len());
    let indexed = records_of(&fixture("golden.kbd"));
    let mut streamed = Vec::new();
    let mut reader =
        ArchiveReader::new(std::fs::File::open(fixture("golden.kbd")).unwrap()).unwrap();
    assert_eq!(reader.header(), &archive_fixtures::header());
    while let Some(block) = reader.next_block().unwrap() {
        streamed.extend(block.records().unwrap().map(Result::unwrap));
    }
    assert_eq!(indexed, streamed);
    let by_key: BTreeMap<String, &Json> = expected
        .iter()
        .map(|e| (e["key"].as_str().unwrap().to_string(), e))
        .collect();
    assert_eq!(by_key.len(), indexed.len());
    for r in &indexed {
        let e = by_key[&display_bytes(&r.key)];
        assert_eq!(e["kb_id"], display_bytes(&r.kb_id));
        assert_eq!(e["category"], r.category.name());
        assert_eq!(e["type"], r.redis_type);
        assert_eq!(e["expire_at_ms"], json!(r.expire_at_ms));
        assert_eq!(e["payload_hex"], hex(&r.payload));
        let value = dump::decode(&r.payload).unwrap();
        assert_eq!(Value::from_json(&e["value"]).unwrap(), value);
    }
    let window = &reader.index().unwrap().kbs;
    assert_eq!(window.len(), 2);
    assert_eq!(window[1].kb_id, b"node2_kato");
    assert_eq!(window[1].keys, 7);
}

#[test]
fn verify_passes_the_golden_archive_and_lists_its_rdb_version() {
    let out = ok(&["verify", &golden()]);
    let text = stdout(&out);
    assert!(text.contains("OK (10 blocks, 13 keys"), "{text}");
    assert!(text.contains("RDB versions 10"), "{text}");
    let out = ok(&["verify", "--json", &golden()]);
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["rdb_versions"], json!([10]));
}

/// Each damaged copy fails with its own message under every command, with
/// verify exiting 1 (damage) and the others 2 (error), never a panic.
#[test]
fn each_damaged_copy_gives_its_own_error_everywhere() {
    let cases = [
        ("golden-truncated.kbd", "truncated"),
        (
            "golden-bad-checksum.kbd",
            "checksum mismatch in block at byte",
        ),
        ("golden-bad-magic.kbd", "not a kbdump archive"),
        (
            "golden-future-version.kbd",
            "newer than this kbdump understands",
        ),
    ];
    for (name, expect) in cases {
        let path = fixture(name);
        let path = path.to_str().unwrap();
        let out = kbdump(&["verify", path]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "verify {name}: {}",
            stdout(&out)
        );
        assert!(
            stdout(&out).contains(expect),
            "verify {name}: {}",
            stdout(&out)
        );
        for command in ["ls", "cat"] {
            let out = kbdump(&[command, path]);
            assert_eq!(out.status.code(), Some(2), "{command} {name}");
            assert!(
                stderr(&out).contains(expect),
                "{command} {name}: {}",
                stderr(&out)
            );
            assert!(!stderr(&out).contains("panicked"), "{command} {name}");
        }
        // Streams read the same file front to back and must agree.
        let out = kbdump_stdin(&["cat", "-"], &std::fs::read(fixture(name)).unwrap());
        assert_eq!(out.status.code(), Some(2), "cat - {name}");
        let inspect = kbdump(&["inspect", path]);
        if name == "golden-bad-checksum.kbd" {
            // inspect reads the header and index only, which are intact.
            assert!(inspect.status.success(), "{}", stderr(&inspect));
        } else {
            assert_eq!(inspect.status.code(), Some(2), "inspect {name}");
            assert!(
                stderr(&inspect).contains(expect),
                "inspect {name}: {}",
                stderr(&inspect)
            );
        }
    }
}

#[test]
fn a_damaged_block_does_not_stop_cat_of_other_blocks() {
    let path = fixture("golden-bad-checksum.kbd");
    let out = ok(&["cat", path.to_str().unwrap(), "--category", "metadata"]);
    assert!(stdout(&out).contains("node2_kato:metadata:3f78a9c1"));
    let out = kbdump(&["cat", path.to_str().unwrap(), "--category", "emotives"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("node2_kato, emotives") || stderr(&out).contains("checksum"));
}

fn kbdump_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

#[test]
fn cat_answers_the_emotives_question_as_readable_json() {
    let out = ok(&[
        "cat",
        &golden(),
        "--kb",
        "node2_kato",
        "--category",
        "emotives",
        "--match",
        "*:emotives:3f78*",
    ]);
    let text = stdout(&out);
    let expected =
        "node2_kato:emotives:3f78a9c1  (string)\n    [{\"joy\": 0.4, \"utility\": -1.2}]\n";
    assert_eq!(text, expected);
}

#[test]
fn cat_text_shows_expiry_binary_and_every_selected_key() {
    let out = ok(&["cat", &golden(), "--kb", "node*"]);
    let text = stdout(&out);
    for (key, ..) in archive_fixtures::GOLDEN {
        assert!(
            text.contains(&format!("{key}  (")),
            "{key} missing in\n{text}"
        );
    }
    assert!(
        text.contains("node2_kato:prediction:q1  (list, expires 2027-01-15T08:00:00.000Z)"),
        "{text}"
    );
    // Non-UTF-8 bytes keep a lossless marker; Python-spaced JSON (KATO's
    // own emotives and metadata) shows as plain JSON, without the marker
    // that only --json needs.
    assert!(text.contains("\"base64\": "), "{text}");
    assert!(!text.contains("json_spaced"), "{text}");
    let metrics = stdout(&ok(&["cat", &golden(), "--category", "metrics"]));
    let keys: Vec<_> = metrics.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(
        keys,
        [
            "node0_kato:tf_vector:00ff  (string)",
            "node0_kato:entropy:00ff  (zset)"
        ]
    );
}

/// `--json` lines read back into exactly the decoded values.
#[test]
fn cat_json_lines_read_back_to_the_decoded_values() {
    let records = records_of(&fixture("golden.kbd"));
    let out = ok(&["cat", "--json", &golden()]);
    let lines: Vec<Json> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), records.len());
    for (line, r) in lines.iter().zip(&records) {
        assert_eq!(parse_display_bytes(line["key"].as_str().unwrap()), r.key);
        assert_eq!(
            parse_display_bytes(line["kb_id"].as_str().unwrap()),
            r.kb_id
        );
        assert_eq!(line["category"], r.category.name());
        assert_eq!(line["type"], r.redis_type);
        assert_eq!(line["expire_at_ms"], json!(r.expire_at_ms));
        let value = Value::from_json(&line["value"]).unwrap();
        assert_eq!(value, dump::decode(&r.payload).unwrap());
    }
    // Emotives are JSON inside the JSON, not an escaped string.
    let emotives = &lines
        .iter()
        .find(|l| l["key"] == "node2_kato:emotives:3f78a9c1")
        .unwrap();
    assert_eq!(emotives["value"]["value"][0]["joy"], json!(0.4));
}

#[test]
fn cat_json_from_stdin_equals_cat_json_from_the_file() {
    let from_file = ok(&["cat", "--json", &golden(), "--kb", "node2_kato"]).stdout;
    let bytes = std::fs::read(fixture("golden.kbd")).unwrap();
    let from_stdin = kbdump_stdin(&["cat", "--json", "-", "--kb", "node2_kato"], &bytes);
    assert!(from_stdin.status.success(), "{}", stderr(&from_stdin));
    assert_eq!(from_stdin.stdout, from_file);
}

#[test]
fn cat_raw_writes_exactly_one_strings_bytes() {
    let out = ok(&["cat", &golden(), "--raw", "node2_kato:metadata:3f78a9c1"]);
    assert_eq!(out.stdout, br#"{"tags": ["a", "b"]}"#);
    let records = records_of(&fixture("golden.kbd"));
    let raw = records
        .iter()
        .find(|r| r.key == b"node0_kato:frequency:00ff")
        .unwrap();
    let Value::String(bytes) = dump::decode(&raw.payload).unwrap() else {
        panic!("not a string")
    };
    let out = ok(&["cat", &golden(), "--raw", "node0_kato:frequency:00ff"]);
    assert_eq!(out.stdout, bytes);
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the fixture is binary"
    );
    // Int-encoded strings come out as their decimal text.
    let out = ok(&["cat", &golden(), "--raw", "node2_kato:frequency:3f78a9c1"]);
    assert_eq!(out.stdout, b"100");
}

#[test]
fn cat_raw_refuses_other_types_and_missing_keys_clearly() {
    let out = kbdump(&["cat", &golden(), "--raw", "node2_kato:symbols:freq"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is a hash"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--json"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    // Binary keys are given as `ls` prints them.
    let out = kbdump(&[
        "cat",
        &golden(),
        "--raw",
        "node2_kato:symbol_to_patterns:\\xff\\xfesym",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is a set"), "{}", stderr(&out));
    let out = kbdump(&["cat", &golden(), "--raw", "node2_kato:emotives:nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("key node2_kato:emotives:nope is not in"),
        "{}",
        stderr(&out)
    );
    // A selection that excludes the key is "not found" too.
    let out = kbdump(&[
        "cat",
        &golden(),
        "--kb",
        "node0_kato",
        "--raw",
        "node2_kato:frequency:3f78a9c1",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// An archive whose payloads have valid CRCs but bodies the decoder
/// refuses: an unknown type id and a damaged listpack.
fn undecodable_archive(dir: &Path) -> PathBuf {
    let good = dump::seal(0, b"\x05hello", 10);
    let unknown = dump::seal(200, b"\x01\x02", 10);
    let broken = dump::seal(16, b"\x07\x08\x00\x00\x00\x02\x00\xff", 10);
    let path = dir.join("undecodable.kbd");
    write_archive(
        &path,
        &[
            record(b"kb:emotives:good", Category::Emotives, good),
            record(b"kb:emotives:unknown", Category::Emotives, unknown),
            record(b"kb:emotives:broken", Category::Emotives, broken),
        ],
    );
    path
}

#[test]
fn cat_reports_undecodable_payloads_and_prints_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = undecodable_archive(dir.path());
    for json in [false, true] {
        let mut args = vec!["cat", path.to_str().unwrap()];
        if json {
            args.push("--json");
        }
        let out = kbdump(&args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stdout(&out).contains("kb:emotives:good"));
        assert!(!stdout(&out).contains("unknown"));
        let err = stderr(&out);
        assert!(
            err.contains("key kb:emotives:unknown: payload with type byte 200"),
            "{err}"
        );
        assert!(err.contains("unknown type byte 200"), "{err}");
        assert!(
            err.contains("key kb:emotives:broken: payload with type byte 16 (HASH_LISTPACK)"),
            "{err}"
        );
        assert!(err.contains("2 key(s) could not be decoded"), "{err}");
    }
}

#[test]
fn verify_reports_undecodable_payloads_with_block_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = undecodable_archive(dir.path());
    let offset = IndexedArchive::open(std::fs::File::open(&path).unwrap())
        .unwrap()
        .index()
        .blocks[0]
        .offset;
    let out = kbdump(&["verify", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("1 keys ok, 2 damaged"), "{text}");
    let block = format!("byte {offset}: block at byte {offset} (kb kb, emotives): ");
    assert!(
        text.contains(&format!(
            "{block}key kb:emotives:unknown: payload with type byte 200"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{block}key kb:emotives:broken: payload with type byte 16"
        )),
        "{text}"
    );
    let out = kbdump(&["verify", "--json", path.to_str().unwrap()]);
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records_damaged"], 2);
    assert_eq!(report["problems"][0]["offset"], offset);
}

#[test]
fn inspect_reports_the_version_gate_of_a_redis_7_0_archive() {
    let text = stdout(&ok(&["inspect", &golden()]));
    assert!(text.contains("payloads  RDB versions 10\n"), "{text}");
    let line = |target: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(target))
            .unwrap_or_else(|| panic!("no {target} line in\n{text}"))
            .to_string()
    };
    let r62 = line("Redis 6.2");
    assert!(r62.contains("retag for 0 STRING, 2 SET"), "{r62}");
    assert!(
        r62.contains("logical path for 16 HASH_LISTPACK, 17 ZSET_LISTPACK, 18 LIST_QUICKLIST_2, 19 STREAM_LISTPACKS_2"),
        "{r62}"
    );
    for target in [
        "Redis 7.0",
        "Redis 7.2",
        "Redis 7.4/8.x",
        "Valkey 8.1",
        "Valkey 9.x",
    ] {
        assert!(
            line(target).contains("raw: every payload as it is"),
            "{}",
            line(target)
        );
    }
    let out = ok(&["inspect", "--json", &golden()]);
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    let targets = report["restore_targets"].as_array().unwrap();
    assert_eq!(targets.len(), 6);
    let r62 = &targets[0];
    assert_eq!(r62["target"], "Redis 6.2");
    assert_eq!(r62["method"], "logical");
    assert_eq!(r62["retag_type_ids"], json!([0, 2]));
    assert_eq!(r62["logical_type_ids"], json!([16, 17, 18, 19]));
    assert_eq!(targets[1]["method"], "raw");
}

#[test]
fn inspect_says_retag_when_only_the_trailer_is_too_new() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strings.kbd");
    // Redis 7.2 / Valkey 8.1 strings (RDB 11): Redis 7.0 knows type 0.
    write_archive(
        &path,
        &[record(
            b"kb:frequency:1",
            Category::Frequency,
            dump::seal(0, b"\x01x", 11),
        )],
    );
    let text = stdout(&ok(&["inspect", path.to_str().unwrap()]));
    let r70 = text.lines().find(|l| l.contains("Redis 7.0")).unwrap();
    assert!(r70.contains("retag: trailer retagged to RDB 10"), "{text}");
}

/// `kbdump cat ... | head` ends quietly with exit 0.
#[test]
fn cat_into_a_closed_pipe_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.kbd");
    let records: Vec<_> = (0..3000)
        .map(|i| {
            let key = format!("kb:metadata:{i:05}");
            let body = [&[60u8][..], &[b'x'; 60]].concat();
            record(key.as_bytes(), Category::Metadata, dump::seal(0, &body, 10))
        })
        .collect();
    write_archive(&path, &records);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(["cat", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn cat_help_has_examples() {
    let text = stdout(&ok(&["cat", "--help"]));
    assert!(text.contains("--match '*:emotives:3f78*'"), "{text}");
    assert!(text.contains("--raw"), "{text}");
}

/// A real export from Redis 7.0: cat shows each emotives key's JSON as the
/// server holds it, and inspect's gate matches the measured matrix.
#[test]
fn cat_of_a_real_export_matches_the_server() {
    let server = RedisServer::start();
    let seeded = seed_kato(&mut server.client(), &SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("live.kbd");
    let file = file.to_str().unwrap();
    ok(&["export", "--redis", &server.url(), "-o", file, "--quiet"]);
    let out = ok(&["cat", "--json", file, "--category", "emotives"]);
    let mut conn = server.client();
    let mut seen = 0;
    for line in stdout(&out).lines() {
        let line: Json = serde_json::from_str(line).unwrap();
        let key = parse_display_bytes(line["key"].as_str().unwrap());
        assert!(seeded.keys.contains_key(&key));
        let value = Value::from_json(&line["value"]).unwrap();
        let on_server: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
        assert_eq!(value, Value::String(on_server.clone()));
        let doc: Json = serde_json::from_slice(&on_server).unwrap();
        assert_eq!(line["value"]["value"], doc, "emotives print as JSON");
        seen += 1;
    }
    assert!(seen > 0, "the seed has emotives");
    let text = stdout(&ok(&["inspect", file]));
    let r62 = text.lines().find(|l| l.contains("Redis 6.2")).unwrap();
    assert!(r62.contains("retag for 0 STRING"), "{text}");
    let r70 = text.lines().find(|l| l.contains("Redis 7.0")).unwrap();
    assert!(r70.contains("raw: every payload as it is"), "{text}");
}

#[test]
fn verify_of_a_directory_is_an_input_error_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let out = kbdump(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stderr(&out).contains("directory"), "{}", stderr(&out));
}
