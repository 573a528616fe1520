//! Restore and diff against real servers: the partial-loss drill, cloning a
//! knowledge base, missing vs replace mode, dry runs, the undo archive,
//! expiry handling (also of keys that expire while a restore is writing
//! them) and archives read from a pipe. The CLI checks compare the whole
//! server key by key (type, value, expiry instant).

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::cli::*;
use crate::support::redis::RedisServer;
use crate::support::seed::{seed_kato, Category as SeedCategory, SeedSpec, Seeded, Snapshot};
use kbdump::clock::system_now_ms as now_ms;
use kbdump::format::archive::{ArchiveWriter, Header, Record, SourceInfo, FORMAT_VERSION};
use kbdump::kato::Category;
use kbdump::progress::NoProgress;
use kbdump::sink::redis::{restore, Mode, RestoreOptions, SourceItem, Target};
use serde_json::Value as Json;

const NODE0: &[u8] = b"node0_kato";
const NODE1: &[u8] = b"node1_kato";

fn seeded() -> (RedisServer, Seeded) {
    let server = RedisServer::start();
    let seeded = seed_kato(&mut server.client(), &SeedSpec::small());
    (server, seeded)
}

/// A deterministic "random" subset: about half, never none or all.
fn random_subset(keys: &BTreeSet<Vec<u8>>, seed: u64) -> BTreeSet<Vec<u8>> {
    let mut x = seed | 1;
    let picked: BTreeSet<Vec<u8>> = keys
        .iter()
        .filter(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.is_multiple_of(2)
        })
        .cloned()
        .collect();
    assert!(!picked.is_empty() && picked.len() < keys.len());
    picked
}

fn del(server: &RedisServer, keys: &BTreeSet<Vec<u8>>) {
    for key in keys {
        let n: i64 = run(server, redis::cmd("DEL").arg(key));
        assert_eq!(n, 1, "{} existed", show(key));
    }
}

fn kinds(pairs: &[(&BTreeSet<Vec<u8>>, &str)]) -> BTreeSet<(Vec<u8>, String)> {
    pairs
        .iter()
        .flat_map(|(keys, kind)| keys.iter().map(|k| (k.clone(), kind.to_string())))
        .collect()
}

#[test]
fn partial_loss_drill_puts_back_exactly_what_was_lost() {
    let (server, seeded) = seeded();
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&server, dir.path(), "all.kbd", &[]);
    let original = snap(&server);

    // The loss: some emotives of one kb_id, all metadata of another.
    let lost_emotives = random_subset(&seeded.of(NODE0, SeedCategory::Emotives), 7);
    let lost_metadata = seeded.of(NODE1, SeedCategory::Metadata);
    del(&server, &lost_emotives);
    del(&server, &lost_metadata);
    // Deliberate changes and additions that a restore must leave alone.
    let changed: BTreeSet<Vec<u8>> = seeded
        .of(NODE1, SeedCategory::Frequency)
        .into_iter()
        .take(3)
        .collect();
    for key in &changed {
        let _: i64 = run(&server, redis::cmd("INCRBY").arg(key).arg(1000));
    }
    let added: BTreeSet<Vec<u8>> = [
        b"node0_kato:emotives:feedfacefeedfacefeedfacefeedfacefeedface".to_vec(),
        b"kb*[1]?:x:frequency:0000000000000000000000000000000000000001".to_vec(),
    ]
    .into();
    for key in &added {
        let _: () = run(&server, redis::cmd("SET").arg(key).arg("new"));
    }
    // The archive holds every key of the db, foreign ones too: a new
    // foreign key is an extra key like any other.
    let added_foreign: BTreeSet<Vec<u8>> = [b"unrelated:new".to_vec()].into();
    let _: () = run(&server, redis::cmd("SET").arg("unrelated:new").arg("x"));
    let added: BTreeSet<Vec<u8>> = added.union(&added_foreign).cloned().collect();
    let damaged = snap(&server);

    let (code, report) = diff_json(&archive, &server, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    let lost: BTreeSet<Vec<u8>> = lost_emotives.union(&lost_metadata).cloned().collect();
    assert_eq!(
        diff_keys(&report),
        kinds(&[(&lost, "missing"), (&changed, "changed"), (&added, "extra")])
    );

    let report = restore_ok(&archive, &server, &[]);
    assert_eq!(total(&report, "restored"), lost.len() as u64);
    assert_eq!(
        total(&report, "kept"),
        (seeded.all().len() - lost.len()) as u64
    );
    assert_eq!(
        (total(&report, "failed"), total(&report, "expired")),
        (0, 0)
    );
    let cells = cells(&report);
    let cell = |kb: &str, cat: &str| cells[&(kb.to_string(), cat.to_string())]["restored"].clone();
    assert_eq!(cell("node0_kato", "emotives"), lost_emotives.len());
    assert_eq!(cell("node1_kato", "metadata"), lost_metadata.len());

    let mut expected = damaged.clone();
    for key in &lost {
        expected.insert(key.clone(), original[key].clone());
    }
    assert_same(&expected, &snap(&server));

    let (code, report) = diff_json(&archive, &server, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(
        diff_keys(&report),
        kinds(&[(&changed, "changed"), (&added, "extra")])
    );
}

/// `kb_id` `from`'s keys in `snapshot`, renamed to `to`: `{from}:…` and
/// its STM stream `stm:events:{from}`.
fn renamed(snapshot: &Snapshot, from: &[u8], to: &[u8]) -> Snapshot {
    let prefix = [from, b":"].concat();
    let stm = |kb: &[u8]| [&b"stm:events:"[..], kb].concat();
    snapshot
        .iter()
        .filter_map(|(k, v)| {
            let key = if k.starts_with(&prefix) {
                [to, &k[from.len()..]].concat()
            } else if *k == stm(from) {
                stm(to)
            } else {
                return None;
            };
            Some((key, v.clone()))
        })
        .collect()
}

#[test]
fn rename_clones_a_knowledge_base_key_by_key() {
    let (server, seeded) = seeded();
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&server, dir.path(), "node0.kbd", &["--kb", "node0_kato"]);
    let before = snap(&server);
    let report = restore_ok(&archive, &server, &["--rename-kb", "node0_kato=clone_kato"]);
    assert_eq!(total(&report, "restored"), seeded.of_kb(NODE0).len() as u64);
    assert!(cells(&report).keys().all(|(kb, _)| kb == "clone_kato"));
    let mut expected = before.clone();
    expected.extend(renamed(&before, NODE0, b"clone_kato"));
    assert_same(&expected, &snap(&server));
}

/// Changes every third archived key and deletes every fifth (of the rest),
/// returning (changed, deleted).
fn tamper(server: &RedisServer, keys: &BTreeSet<Vec<u8>>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut changed, mut deleted) = (Vec::new(), Vec::new());
    for (i, key) in keys.iter().enumerate() {
        if i % 3 == 0 {
            let _: () = run(server, redis::cmd("DEL").arg(key));
            let _: () = run(
                server,
                redis::cmd("SET").arg(key).arg(format!("tampered {i}")),
            );
            changed.push(key.clone());
        } else if i % 5 == 0 {
            let _: () = run(server, redis::cmd("DEL").arg(key));
            deleted.push(key.clone());
        }
    }
    (changed, deleted)
}

/// The parts of a restore report that must agree between a dry run and
/// the real run.
fn outcome(report: &Json) -> (Json, Json, Json) {
    (
        report["total"].clone(),
        report["contents"].clone(),
        report["failures"].clone(),
    )
}

#[test]
fn missing_mode_never_overwrites_replace_does_and_undo_reverts_it() {
    let (server, seeded) = seeded();
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&server, dir.path(), "all.kbd", &[]);
    let original = snap(&server);
    let (changed, deleted) = tamper(&server, &seeded.kato());

    // Missing mode: a dry run changes nothing and predicts the real run.
    let tampered = snap(&server);
    let dry = restore_ok(&archive, &server, &["--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_same(&tampered, &snap(&server));
    let real = restore_ok(&archive, &server, &[]);
    assert_eq!(outcome(&dry), outcome(&real));
    assert_eq!(total(&real, "restored"), deleted.len() as u64);
    assert_eq!(
        total(&real, "kept"),
        (seeded.all().len() - deleted.len()) as u64
    );
    let mut expected = tampered.clone();
    for key in &deleted {
        expected.insert(key.clone(), original[key].clone());
    }
    assert_same(&expected, &snap(&server));

    // Replace mode: same, and every changed key is overwritten.
    let before_replace = snap(&server);
    let dry = restore_ok(&archive, &server, &["--mode", "replace", "--dry-run"]);
    assert_same(&before_replace, &snap(&server));
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() == 1,
        "a dry run writes no undo archive"
    );
    let undo = dir.path().join("undo.kbd");
    let undo_arg = undo.to_str().unwrap();
    let real = restore_ok(
        &archive,
        &server,
        &["--mode", "replace", "--yes", "--undo", undo_arg],
    );
    assert_eq!(outcome(&dry), outcome(&real));
    // The archive holds every key of the db: all of them are written.
    assert_eq!(total(&real, "restored"), seeded.all().len() as u64);
    assert_eq!(real["saved_for_undo"], seeded.all().len());
    assert!(!changed.is_empty());
    assert_same(&original, &snap(&server));

    // The undo archive puts back the state before the replace.
    let undo2 = dir.path().join("undo2.kbd");
    restore_ok(
        &undo,
        &server,
        &[
            "--mode",
            "replace",
            "--yes",
            "--undo",
            undo2.to_str().unwrap(),
        ],
    );
    assert_same(&before_replace, &snap(&server));
}

/// Writes `records` as an archive.
fn write_archive(path: &Path, records: &[Record]) {
    let header = Header {
        format_version: FORMAT_VERSION,
        tool: "test".into(),
        created_at_ms: now_ms(),
        source: SourceInfo::default(),
        selection: Default::default(),
        snapshot_at_ms: None,
        shards: Vec::new(),
    };
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArchiveWriter::new(file, &header, Default::default()).unwrap();
    for record in records {
        writer.push(record).unwrap();
    }
    writer.finish().unwrap();
}

/// A string record of kb `exp_kato` with the given absolute expiry.
fn string_record(name: &str, payload: &[u8], expire_at_ms: Option<i64>) -> Record {
    Record {
        key: format!("exp_kato:emotives:{name}").into_bytes(),
        kb_id: b"exp_kato".to_vec(),
        category: Category::Emotives,
        redis_type: "string".into(),
        expire_at_ms,
        payload: payload.to_vec(),
    }
}

#[test]
fn expired_records_are_skipped_and_others_keep_their_expiry_instant() {
    let source = RedisServer::start();
    let _: () = run(&source, redis::cmd("SET").arg("v").arg("[{\"joy\": 1}]"));
    let payload: Vec<u8> = run(&source, redis::cmd("DUMP").arg("v"));
    let now = now_ms();
    let records = [
        string_record("past", &payload, Some(now - 60_000)),
        string_record("just-past", &payload, Some(now - 1)),
        string_record("soon", &payload, Some(now + 600_000)),
        string_record("later", &payload, Some(now + 86_400_000)),
        string_record("never", &payload, None),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exp.kbd");
    write_archive(&path, &records);
    for method in [&[][..], &["--logical"][..]] {
        let target = RedisServer::start();
        let report = restore_ok(&path, &target, method);
        assert_eq!(total(&report, "expired"), 2, "{method:?}");
        assert_eq!(total(&report, "restored"), 3, "{method:?}");
        let snapshot = snap(&target);
        assert_eq!(snapshot.len(), 3, "{method:?}");
        for record in &records[2..] {
            let key = &snapshot[&record.key];
            assert_eq!(key.kind, "string");
            match (key.pttl, record.expire_at_ms) {
                (None, None) => {}
                (Some(at), Some(want)) => assert!(
                    (at - want).abs() < EXPIRY_SLACK_MS,
                    "{method:?} {}: expires at {at}, archived {want}",
                    show(&record.key)
                ),
                other => panic!("{method:?} {}: {other:?}", show(&record.key)),
            }
        }
        let (code, diff) = diff_json(&path, &target, &[]);
        assert_eq!(code, Some(0), "{diff:#}");
        assert_eq!(diff["contents"][0]["expired_in_archive"], 2);
    }
}

#[test]
fn restore_from_a_pipe_equals_restore_from_the_file() {
    let (server, _) = seeded();
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&server, dir.path(), "all.kbd", &[]);
    let (from_file, from_pipe) = (RedisServer::start(), RedisServer::start());
    let file_report = restore_ok(&archive, &from_file, &["--kb", "node*"]);
    let url = from_pipe.url();
    let out = kbdump_stdin(
        &["restore", "-", "--redis", &url, "--json", "--kb", "node*"],
        &archive,
    );
    let pipe_report = json_with_code(&out, 0);
    assert_eq!(outcome(&file_report), outcome(&pipe_report));
    let file_snapshot = snap(&from_file);
    assert!(!file_snapshot.is_empty());
    assert_same(&file_snapshot, &snap(&from_pipe));
    // `--kb node*`: the keys of kb_ids node…, their STM streams included.
    assert_same(
        &only(&snap(&server), |k| {
            (k.starts_with(b"node") && k.contains(&b':')) || k.starts_with(b"stm:events:node")
        }),
        &file_snapshot,
    );
}

/// A record that expires `in_ms` from now, with a payload from `server`.
fn expiring_record(server: &RedisServer, key: &str, in_ms: i64) -> Record {
    let mut conn = server.client();
    let mut cmd = ::redis::cmd("SADD");
    cmd.arg(key);
    for i in 0..50 {
        cmd.arg(format!("member-{i}"));
    }
    let () = cmd.query(&mut conn).unwrap();
    let payload: Vec<u8> = ::redis::cmd("DUMP").arg(key).query(&mut conn).unwrap();
    let () = ::redis::cmd("DEL").arg(key).query(&mut conn).unwrap();
    Record {
        key: key.as_bytes().to_vec(),
        kb_id: b"kb".to_vec(),
        category: Category::Emotives,
        redis_type: "set".into(),
        expire_at_ms: Some(now_ms() + in_ms),
        payload,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_that_expires_while_waiting_to_be_written_is_expired_not_failed() {
    let server = RedisServer::start();
    for logical in [false, true] {
        for mode in [Mode::Missing, Mode::Replace] {
            let key = format!("kb:emotives:{logical}-{mode:?}");
            let record = expiring_record(&server, &key, 300);
            // A live key of the same name: replace mode must not delete it
            // for an archived value that has expired.
            run::<()>(&server, ::redis::cmd("SET").arg(&key).arg("live"));
            let target = Target::connect(&server.url()).await.unwrap();
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            tx.send(SourceItem::Record(record)).await.unwrap();
            let options = RestoreOptions {
                mode,
                force_logical: logical,
                ..RestoreOptions::default()
            };
            // The batch is written only when the source ends, after expiry.
            let closer = tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(600)).await;
                drop(tx);
            });
            let summary = restore(&target, rx, &options, None, &NoProgress)
                .await
                .unwrap();
            closer.await.unwrap();
            let total = summary.total();
            assert_eq!(
                (total.expired, total.failed, total.restored),
                (1, 0, 0),
                "logical {logical}, {mode:?}: {summary:?}"
            );
            let value: Option<String> = run(&server, ::redis::cmd("GET").arg(&key));
            assert_eq!(
                value.as_deref(),
                Some("live"),
                "logical {logical}, {mode:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_that_expires_while_being_re_created_is_expired_not_failed() {
    let server = RedisServer::start();
    // Big enough that re-creating it with commands takes a while.
    let key = "kb:emotives:big";
    let mut conn = server.client();
    for chunk in 0..100 {
        let mut cmd = ::redis::cmd("SADD");
        cmd.arg(key);
        for i in 0..2000 {
            cmd.arg(format!("member-{chunk}-{i}-{}", "x".repeat(40)));
        }
        let () = cmd.query(&mut conn).unwrap();
    }
    let payload: Vec<u8> = ::redis::cmd("DUMP").arg(key).query(&mut conn).unwrap();
    let () = ::redis::cmd("DEL").arg(key).query(&mut conn).unwrap();
    let target = Target::connect(&server.url()).await.unwrap();
    // Measure how long one logical restore of it takes here.
    let timed = |expire_at_ms| Record {
        key: key.as_bytes().to_vec(),
        kb_id: b"kb".to_vec(),
        category: Category::Emotives,
        redis_type: "set".into(),
        expire_at_ms,
        payload: payload.clone(),
    };
    let options = RestoreOptions {
        force_logical: true,
        max_elements: 100,
        ..RestoreOptions::default()
    };
    let started = now_ms();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(SourceItem::Record(timed(None))).await.unwrap();
    drop(tx);
    let summary = restore(&target, rx, &options, None, &NoProgress)
        .await
        .unwrap();
    assert_eq!(summary.total().restored, 1);
    let took = now_ms() - started;
    let () = ::redis::cmd("DEL").arg(key).query(&mut conn).unwrap();
    // Expires about halfway through the re-creation. How long that takes
    // varies on a loaded machine, so a run that finished first is tried
    // again with an earlier instant; no run may fail.
    let mut expired_midway = false;
    for attempt in 1..=5i64 {
        let at = now_ms() + took / (2 * attempt) + 5;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tx.send(SourceItem::Record(timed(Some(at)))).await.unwrap();
        drop(tx);
        let summary = restore(&target, rx, &options, None, &NoProgress)
            .await
            .unwrap();
        let total = summary.total();
        assert_eq!(total.failed, 0, "took {took} ms: {summary:?}");
        let wait = (at - now_ms()).max(0) as u64 + 20;
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        let exists: i64 = ::redis::cmd("EXISTS").arg(key).query(&mut conn).unwrap();
        assert_eq!(exists, 0, "the key outlived its archived expiry");
        if total.expired == 1 {
            expired_midway = true;
            break;
        }
    }
    assert!(
        expired_midway,
        "no run saw the key expire during its re-creation"
    );
}

/// The restore engine asks its clock, not the system, whether an archived
/// expiry has passed: a clock two hours ahead makes a key that expires in
/// one hour "expired" (not written, a live key of that name untouched in
/// replace mode), without any waiting.
#[tokio::test(flavor = "multi_thread")]
async fn the_restore_clock_decides_what_has_expired() {
    let server = RedisServer::start();
    let hour = 3_600_000;
    for (ahead, expect_written) in [(2 * hour, false), (0, true)] {
        let key = format!("kb:emotives:clock-{ahead}");
        let record = expiring_record(&server, &key, hour);
        run::<()>(&server, ::redis::cmd("SET").arg(&key).arg("live"));
        let target = Target::connect(&server.url()).await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tx.send(SourceItem::Record(record)).await.unwrap();
        drop(tx);
        let options = RestoreOptions {
            mode: Mode::Replace,
            clock: kbdump::clock::Clock::fixed(now_ms() + ahead),
            ..RestoreOptions::default()
        };
        let summary = restore(&target, rx, &options, None, &NoProgress)
            .await
            .unwrap();
        let total = summary.total();
        let kind: String = run(&server, ::redis::cmd("TYPE").arg(&key));
        if expect_written {
            assert_eq!((total.restored, total.expired), (1, 0), "{key}");
            assert_eq!(kind, "set", "{key} restored over the live string");
        } else {
            assert_eq!((total.restored, total.expired), (0, 1), "{key}");
            assert_eq!(kind, "string", "{key}: the live key must be untouched");
        }
    }
}
