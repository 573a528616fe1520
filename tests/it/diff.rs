//! Diff against real servers: the archived and live values of what differs
//! (text with `--values`, and always in `--json`), the bound on how many
//! keys carry them, and which differences `--fail-on` turns into exit
//! status 1 while damage stays 2.

use std::path::{Path, PathBuf};

use crate::support::cli::*;
use crate::support::redis::RedisServer;
use kbdump::format::archive::IndexedArchive;
use kbdump::kato::Category;
use serde_json::{json, Value as Json};

const FREQUENCY: &str = "node0_kato:frequency:1111111111111111111111111111111111111111";
const EMOTIVES: &str = "node0_kato:emotives:2222222222222222222222222222222222222222";
const METADATA: &str = "node0_kato:metadata:3333333333333333333333333333333333333333";
/// Added after the export.
const EXTRA: &str = "node0_kato:emotives:9999999999999999999999999999999999999999";
/// KATO's emotives as Python's `json.dumps` writes them.
const EMOTIVES_VALUE: &str = r#"[{"joy": 0.4, "utility": -1.2}]"#;

/// A server with three keys of one kb_id, exported to `dir/kb.kbd`.
fn exported(dir: &Path) -> (RedisServer, PathBuf) {
    let server = RedisServer::start();
    set(&server, FREQUENCY, "7");
    set(&server, EMOTIVES, EMOTIVES_VALUE);
    set(&server, METADATA, r#"{"source":"sensor-1"}"#);
    let archive = export(&server, dir, "kb.kbd", &[]);
    (server, archive)
}

fn set(server: &RedisServer, key: &str, value: &str) {
    let _: () = run(server, redis::cmd("SET").arg(key).arg(value));
}

/// After the export: the frequency counted on, an emotives key learned.
fn change_and_add(server: &RedisServer) {
    let _: i64 = run(server, redis::cmd("INCRBY").arg(FREQUENCY).arg(1000));
    set(server, EXTRA, r#"[{"fear": 0.1}]"#);
}

/// ... and an emotives key lost.
fn lose(server: &RedisServer) {
    let _: i64 = run(server, redis::cmd("DEL").arg(EMOTIVES));
}

fn diff_text(archive: &Path, server: &RedisServer, extra: &[&str]) -> (Option<i32>, String) {
    let url = server.url();
    let mut args = vec!["diff", archive.to_str().unwrap(), "--redis", &url];
    args.extend_from_slice(extra);
    let out = kbdump(&args);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    (out.status.code(), stdout(&out))
}

/// The `--json` report's entry for `key`.
fn entry<'a>(report: &'a Json, key: &str) -> &'a Json {
    report["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["key"] == key)
        .unwrap_or_else(|| panic!("{key} not listed: {report:#}"))
}

#[test]
fn changed_missing_and_extra_keys_show_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let (server, archive) = exported(dir.path());
    change_and_add(&server);
    lose(&server);

    let (code, report) = diff_json(&archive, &server, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    let changed = entry(&report, FREQUENCY);
    assert_eq!(changed["kind"], "changed");
    assert_eq!(changed["archived"], json!({"type": "string", "value": "7"}));
    assert_eq!(changed["live"], json!({"type": "string", "value": "1007"}));
    let missing = entry(&report, EMOTIVES);
    assert_eq!(missing["kind"], "missing");
    // The same form as `cat --json`, which reads back byte for byte.
    let emotives =
        json!({"type": "string", "value": {"json_spaced": [{"joy": 0.4, "utility": -1.2}]}});
    assert_eq!(missing["archived"], emotives);
    assert_eq!(missing.get("live"), None, "{missing}");
    let extra = entry(&report, EXTRA);
    assert_eq!(extra["kind"], "extra");
    assert_eq!(extra.get("archived"), None, "{extra}");
    assert_eq!(
        extra["live"],
        json!({"type": "string", "value": {"json_spaced": [{"fear": 0.1}]}})
    );

    let (code, text) = diff_text(&archive, &server, &["--values"]);
    assert_eq!(code, Some(1), "{text}");
    let expected = [
        format!("  {EMOTIVES} (not on the server)\n    archived: string {EMOTIVES_VALUE}\n"),
        format!("  {EXTRA} (not in the archive)\n    live:     string [{{\"fear\": 0.1}}]\n"),
        format!(
            "  {FREQUENCY} (string value differs)\n    archived: string \"7\"\n    live:     string \"1007\"\n"
        ),
    ];
    for lines in expected {
        assert!(text.contains(&lines), "{lines:?} not in:\n{text}");
    }
    // Without --values the text only names the keys, as before.
    let (_, plain) = diff_text(&archive, &server, &[]);
    assert!(plain.contains(&format!("  {FREQUENCY} (string value differs)\n")));
    assert!(!plain.contains("archived:"), "{plain}");
}

#[test]
fn long_values_are_cut_in_the_text_and_whole_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let (server, archive) = exported(dir.path());
    let long = "x".repeat(5000);
    set(&server, METADATA, &long);

    let (_, text) = diff_text(&archive, &server, &["--values"]);
    let live = text
        .lines()
        .find(|l| l.starts_with("    live:"))
        .unwrap_or_else(|| panic!("no live line in:\n{text}"));
    assert_eq!(live.chars().count(), 100, "{live}");
    assert!(live.starts_with("    live:     string \"xxx") && live.ends_with('…'));
    let (_, report) = diff_json(&archive, &server, &[]);
    assert_eq!(entry(&report, METADATA)["live"]["value"], json!(long));
}

#[test]
fn only_the_first_keys_of_each_group_carry_values() {
    let dir = tempfile::tempdir().unwrap();
    let server = RedisServer::start();
    let key = |i: usize| format!("node0_kato:frequency:{i:040}");
    for i in 0..8 {
        set(&server, &key(i), "1");
    }
    set(&server, EMOTIVES, EMOTIVES_VALUE);
    let archive = export(&server, dir.path(), "kb.kbd", &[]);
    // Changed in reverse key order, so the first keys compared are the
    // last ones listed.
    for i in (0..8).rev() {
        set(&server, &key(i), "2");
    }
    set(&server, EMOTIVES, "[]");

    let (code, report) = diff_json(&archive, &server, &["--examples", "3"]);
    assert_eq!(code, Some(1));
    assert_eq!(report["examples"], 3);
    for i in 0..8 {
        let e = entry(&report, &key(i));
        assert_eq!(e.get("live").is_some(), i < 3, "{e}");
        assert_eq!(e.get("archived").is_some(), i < 3, "{e}");
    }
    // Another group gets its own first keys.
    assert!(entry(&report, EMOTIVES).get("live").is_some());

    let (_, text) = diff_text(&archive, &server, &["--values", "--examples", "3"]);
    assert_eq!(
        text.matches("    archived: string \"1\"\n").count(),
        3,
        "{text}"
    );
    assert!(
        text.contains("  ... 5 more; --json lists every key\n"),
        "{text}"
    );

    let (_, none) = diff_json(&archive, &server, &["--examples", "0"]);
    assert_eq!(none["keys"].as_array().unwrap().len(), 9);
    assert!(!none["keys"].to_string().contains("\"live\""), "{none:#}");
}

/// `diff --fail-on ...`'s exit status.
fn exit_on(archive: &Path, server: &RedisServer, kinds: &[&str]) -> Option<i32> {
    let mut extra = Vec::new();
    for kind in kinds {
        extra.extend(["--fail-on", kind]);
    }
    diff_json(archive, server, &extra).0
}

#[test]
fn fail_on_missing_alarms_only_on_lost_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (server, archive) = exported(dir.path());
    assert_eq!(exit_on(&archive, &server, &["missing"]), Some(0));
    assert_eq!(exit_on(&archive, &server, &[]), Some(0));

    // A learning KATO: values change, keys appear. Not a loss.
    change_and_add(&server);
    let cases: [(&[&str], i32); 8] = [
        (&[], 1),
        (&["any"], 1),
        (&["missing"], 0),
        (&["changed"], 1),
        (&["extra"], 1),
        (&["expiry"], 0),
        (&["missing", "extra"], 1),
        (&["missing", "expiry"], 0),
    ];
    for (kinds, code) in cases {
        assert_eq!(exit_on(&archive, &server, kinds), Some(code), "{kinds:?}");
    }
    let (code, report) = diff_json(&archive, &server, &["--fail-on", "missing"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        (&report["identical"], &report["failed"]),
        (&json!(false), &json!(false))
    );
    assert_eq!(report["fail_on"], json!(["missing"]));
    let (code, text) = diff_text(&archive, &server, &["--fail-on", "missing"]);
    assert_eq!(code, Some(0));
    assert!(
        text.contains("exit status 0: no key differs in a --fail-on way (missing)"),
        "{text}"
    );

    // The loss.
    lose(&server);
    let cases: [(&[&str], i32); 6] = [
        (&[], 1),
        (&["missing"], 1),
        (&["changed"], 1),
        (&["extra"], 1),
        (&["expiry"], 0),
        (&["expiry", "missing"], 1),
    ];
    for (kinds, code) in cases {
        assert_eq!(exit_on(&archive, &server, kinds), Some(code), "{kinds:?}");
    }
    let (_, report) = diff_json(&archive, &server, &["--fail-on", "missing"]);
    assert_eq!(report["failed"], true);

    let err = kbdump(&["diff", archive.to_str().unwrap(), "--fail-on", "lost"]);
    assert_eq!(err.status.code(), Some(2));
    assert!(stderr(&err).contains("missing"), "{}", stderr(&err));
}

#[test]
fn damage_exits_2_whatever_fail_on_says() {
    let dir = tempfile::tempdir().unwrap();
    let (server, archive) = exported(dir.path());
    let index = IndexedArchive::open(std::fs::File::open(&archive).unwrap()).unwrap();
    let block = index
        .index()
        .blocks
        .iter()
        .find(|e| e.meta.category == Category::Metadata)
        .expect("a metadata block")
        .clone();
    let mut bytes = std::fs::read(&archive).unwrap();
    bytes[(block.offset + block.len / 2) as usize] ^= 0x40;
    let bad = dir.path().join("bad.kbd");
    std::fs::write(&bad, &bytes).unwrap();

    for kinds in [&["missing"][..], &["expiry"], &[]] {
        assert_eq!(exit_on(&bad, &server, kinds), Some(2), "{kinds:?}");
    }
}
