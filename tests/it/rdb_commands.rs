//! The archive-reading commands on a physical backup: a `dump.rdb` saved
//! by a real server, recognised by its content (also under a name that
//! says nothing), read by `ls`, `cat`, `inspect`, `verify`, `diff`,
//! `restore` and converted by `export --from`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::support::cli::{
    assert_same, diff_json, kbdump, ok, only, restore_ok, snap, stderr, stdout, EXPIRY_SLACK_MS,
};
use crate::support::redis::RedisServer;
use crate::support::seed::{seed_kato, Category, SeedSpec, Seeded};
use kbdump::kato::display_bytes;

/// A server with the KATO dataset (and unrelated keys), saved; the
/// dump.rdb copied under a neutral name.
fn saved() -> (RedisServer, Seeded, tempfile::TempDir, PathBuf) {
    let server = RedisServer::start();
    let seeded = seed_kato(&mut server.client(), &SeedSpec::small());
    let _: () = redis::cmd("SAVE").query(&mut server.client()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("last-night.bin");
    std::fs::copy(server.dir().join("dump.rdb"), &file).unwrap();
    (server, seeded, dir, file)
}

fn lines(out: &std::process::Output) -> BTreeSet<String> {
    stdout(out).lines().map(str::to_string).collect()
}

/// JSON lines without their expiry, and the expiries by key: a live
/// export derives an expiry from PTTL (to within the slack), a file holds
/// the exact one.
fn split_expiry(lines: &BTreeSet<String>) -> (BTreeSet<String>, BTreeMap<String, i64>) {
    let mut rest = BTreeSet::new();
    let mut expiries = BTreeMap::new();
    for line in lines {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = v["key"].as_str().unwrap().to_string();
        if let Some(ms) = v["expire_at_ms"].as_i64() {
            expiries.insert(key, ms);
        }
        v["expire_at_ms"] = serde_json::Value::Null;
        rest.insert(v.to_string());
    }
    (rest, expiries)
}

#[test]
fn restore_puts_back_one_kbs_emotives_from_a_dump_rdb_and_nothing_else() {
    let (source, seeded, _dir, file) = saved();
    // A kb_id without glob characters, so that --kb names it literally.
    let kb = seeded
        .kb_ids()
        .into_iter()
        .find(|k| k.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_'))
        .unwrap();
    let wanted = seeded.of(&kb, Category::Emotives);
    assert!(!wanted.is_empty());
    let target = RedisServer::start();
    let kb_arg = display_bytes(&kb);
    restore_ok(&file, &target, &["--kb", &kb_arg, "--category", "emotives"]);
    let expected = only(&snap(&source), |k| wanted.contains(k));
    assert_same(&expected, &snap(&target));
}

#[test]
fn cat_and_ls_list_every_key_of_the_file_and_the_same_lines_as_an_archive() {
    let (source, seeded, dir, file) = saved();
    let path = file.to_str().unwrap();
    let listed = lines(&ok(&["ls", path]));
    let all: BTreeSet<String> = seeded.all().iter().map(|k| display_bytes(k)).collect();
    assert_eq!(listed, all, "every key of the file, unrelated ones too");

    let archive = crate::support::cli::export(&source, dir.path(), "live.kbd", &[]);
    let (from_archive, archive_expiries) =
        split_expiry(&lines(&ok(&["cat", "--json", archive.to_str().unwrap()])));
    let (from_rdb, rdb_expiries) = split_expiry(&lines(&ok(&["cat", "--json", path])));
    assert!(!from_archive.is_empty());
    assert!(!archive_expiries.is_empty());
    for (key, ms) in &archive_expiries {
        let exact = rdb_expiries[key];
        assert!(
            (exact - ms).abs() <= EXPIRY_SLACK_MS,
            "{key}: {exact} vs {ms}"
        );
    }
    assert!(
        from_archive.is_subset(&from_rdb),
        "each archive line is also an RDB line: {:?}",
        from_archive.difference(&from_rdb).next()
    );
    assert_eq!(from_rdb.len(), all.len());
}

#[test]
fn inspect_verify_and_diff_accept_a_dump_rdb() {
    let (source, _seeded, _dir, file) = saved();
    let path = file.to_str().unwrap();
    let inspected = stdout(&ok(&["inspect", path]));
    assert!(inspected.contains("rdb-file"), "{inspected}");
    assert!(inspected.contains("RDB version 10"), "{inspected}");
    let verified = stdout(&ok(&["verify", path]));
    assert!(verified.contains("OK"), "{verified}");
    let (code, report) = diff_json(&file, &source, &[]);
    assert_eq!(code, Some(0), "{report:#}");
}

#[test]
fn verify_reports_a_truncated_dump_rdb_with_its_offset() {
    let (_source, _seeded, dir, file) = saved();
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.path().join("cut.rdb");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = kbdump(&["verify", cut.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("byte offset {}", bytes.len() / 2)),
        "{text}{}",
        stderr(&out)
    );
}

#[test]
fn export_from_converts_a_dump_rdb_into_an_archive_that_restores_the_same() {
    let (source, seeded, dir, file) = saved();
    let out = dir.path().join("converted.kbd");
    ok(&[
        "export",
        "--quiet",
        "--from",
        file.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let header = stdout(&ok(&["inspect", out.to_str().unwrap()]));
    assert!(header.contains("rdb-file"), "{header}");
    assert!(header.contains("last-night.bin"), "{header}");
    let target = RedisServer::start();
    restore_ok(&out, &target, &[]);
    // Every key: those of no kb_id too (KATO's global keys, foreign keys).
    assert_eq!(snap(&target).len(), seeded.all().len());
    assert_same(&snap(&source), &snap(&target));
}
