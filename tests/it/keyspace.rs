//! The whole keyspace, classified: every key of a db is a kb_id's, one of
//! KATO's global keys (sessions, global STM, caches) or foreign, and no
//! command drops a group silently. Seeded as KATO's Python client writes
//! (`stm:events:{kb}` streams with consumer groups and pending entries,
//! sessions with TTLs, caches whose names hold category markers) plus
//! foreign keys. Also: a `--kb` that names nothing is an error on every
//! command, with a suggestion, unless `--allow-empty`.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::cli::*;
use crate::support::redis::RedisServer;
use crate::support::seed::{seed_kato, SeedSpec, Seeded};
use kbdump::kato::display_bytes;
use serde_json::Value as Json;

fn seeded(spec: &SeedSpec) -> (RedisServer, Seeded) {
    let server = RedisServer::start();
    let seeded = seed_kato(&mut server.client(), spec);
    (server, seeded)
}

/// Keys listed by `kbdump ls --json`.
fn listed(args: &[&str]) -> BTreeSet<Vec<u8>> {
    let mut all = vec!["ls", "--json"];
    all.extend_from_slice(args);
    let out = ok(&all);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let key = serde_json::from_str::<Json>(l).unwrap()["key"].clone();
            kbdump::kato::parse_display_bytes(key.as_str().unwrap())
        })
        .collect()
}

fn archive_keys(path: &Path) -> BTreeSet<Vec<u8>> {
    listed(&[path.to_str().unwrap()])
}

/// `copy` with no selector is a migration of the whole db: KATO's
/// sessions, streams (with their consumer groups and pending entries),
/// caches and the foreign keys arrive with the knowledge bases, key by key.
#[test]
fn copy_with_no_selector_leaves_the_target_equal_to_the_source() {
    let (source, seeded) = seeded(&SeedSpec::default());
    let target = RedisServer::start();
    let out = kbdump(&[
        "copy",
        "--json",
        "--quiet",
        "--from",
        &source.url(),
        "--to",
        &target.url(),
    ]);
    let report = json_with_code(&out, 0);
    assert_eq!(total(&report, "restored"), seeded.all().len() as u64);
    assert_eq!(
        report["left_out"],
        serde_json::json!({"kb_ids": 0, "kb_keys": 0, "kato": 0, "foreign": 0, "temporary": 0})
    );
    assert_same(&snap(&source), &snap(&target));
    let text = kbdump(&["copy", "--from", &source.url(), "--to", &target.url()]);
    assert!(
        !stdout(&text).contains("left out"),
        "nothing is left out: {}",
        stdout(&text)
    );
}

/// `export` with no selector and `restore` of that archive into an empty
/// server give the source back, key by key; `diff` finds a lost session
/// and a lost STM stream, and a restore puts exactly them back.
#[test]
fn export_and_restore_round_trip_every_key() {
    let (source, seeded) = seeded(&SeedSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&source, dir.path(), "all.kbd", &[]);
    assert_eq!(archive_keys(&archive), seeded.all());
    let target = RedisServer::start();
    let report = restore_ok(&archive, &target, &[]);
    assert_eq!(total(&report, "restored"), seeded.all().len() as u64);
    let before = snap(&source);
    assert_same(&before, &snap(&target));

    let lost: BTreeSet<Vec<u8>> = [
        b"kato:session:session-77b0e1-1700000001000".to_vec(),
        b"stm:events:node1_kato".to_vec(),
        b"queue:jobs".to_vec(),
    ]
    .into();
    for key in &lost {
        let n: i64 = run(&target, redis::cmd("DEL").arg(key));
        assert_eq!(n, 1, "{}", show(key));
    }
    let (code, diff) = diff_json(&archive, &target, &[]);
    assert_eq!(code, Some(1), "{diff:#}");
    let missing: BTreeSet<(Vec<u8>, String)> =
        lost.iter().map(|k| (k.clone(), "missing".into())).collect();
    assert_eq!(diff_keys(&diff), missing);
    let report = restore_ok(&archive, &target, &[]);
    assert_eq!(total(&report, "restored"), lost.len() as u64);
    assert_same(&before, &snap(&target));
    let (code, diff) = diff_json(&archive, &target, &[]);
    assert_eq!(code, Some(0), "{diff:#}");
}

/// `kbs` counts every group and lists only real kb_ids: never `kato`,
/// `kato:metrics` (whose cache names hold category markers), `stm` or a
/// kbdump temporary key.
#[test]
fn kbs_shows_the_groups_and_never_a_kato_namespace_as_a_kb_id() {
    let (server, seeded) = seeded(&SeedSpec::small());
    let temp = b"__kbdump_tmp:{node0_kato:emotives:3f78}:4242:0".to_vec();
    let _: () = run(
        &server,
        redis::cmd("SET")
            .arg(&temp)
            .arg("half")
            .arg("PX")
            .arg(60_000),
    );
    let report = json_with_code(&kbdump(&["kbs", "--json", "--redis", &server.url()]), 0);
    let kb_ids: BTreeSet<String> = report["kbs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kb| kb["kb_id"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = seeded.kb_ids().iter().map(|k| display_bytes(k)).collect();
    assert_eq!(kb_ids, expected);
    for kb in &report["kbs"].as_array().unwrap()[..] {
        let id = kb["kb_id"].as_str().unwrap();
        let of_kb = seeded.of_kb(&kbdump::kato::parse_display_bytes(id));
        assert_eq!(kb["keys"], of_kb.len() as u64, "{id}");
        assert_eq!(kb["categories"]["stm"], 1, "{id}: its STM stream");
    }
    assert_eq!(report["kato"]["keys"], seeded.kato_global().len() as u64);
    assert_eq!(report["kato"]["categories"]["sessions"], 5);
    assert_eq!(report["kato"]["categories"]["caches"], 8);
    assert_eq!(report["kato"]["categories"]["stm"], 1);
    assert_eq!(report["foreign"]["keys"], seeded.foreign().len() as u64);
    assert_eq!(report["temporary"]["keys"], 1);
    assert_eq!(report["total_keys"], seeded.all().len() as u64 + 1);
    let text = stdout(&ok(&["kbs", "--redis", &server.url()]));
    assert!(
        text.contains("14 KATO global keys (never a kb_id): stm 1, sessions 5, caches 8"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} foreign keys", seeded.foreign().len())),
        "{text}"
    );
    assert!(text.contains("1 kbdump temporary keys"), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("kato") || l.starts_with("__kbdump")),
        "{text}"
    );

    // Never exported either.
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&server, dir.path(), "all.kbd", &[]);
    assert_eq!(archive_keys(&archive), seeded.all());
}

/// `--kb` narrows to kb_ids and says what it left out; `--global` and
/// `--foreign` add those groups, or alone take only them; offline commands
/// take the same selectors.
#[test]
fn a_selection_says_what_it_left_out_and_groups_can_be_added() {
    let (server, seeded) = seeded(&SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node0.kbd");
    let out = ok(&[
        "export",
        "--json",
        "--redis",
        &server.url(),
        "--kb",
        "node0_kato",
        "-o",
        path.to_str().unwrap(),
    ]);
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    let node0 = seeded.of_kb(b"node0_kato");
    assert_eq!(archive_keys(&path), node0);
    let other_kbs = seeded.kato().len() - node0.len();
    assert_eq!(
        report["left_out"],
        serde_json::json!({
            "kb_ids": 3, "kb_keys": other_kbs, "kato": seeded.kato_global().len(),
            "foreign": seeded.foreign().len(), "temporary": 0
        })
    );
    assert_eq!(report["groups"]["kb"]["keys"], node0.len() as u64);
    let text = stdout(&ok(&[
        "export",
        "--redis",
        &server.url(),
        "--kb",
        "node0_kato",
        "-o",
        path.to_str().unwrap(),
        "--force",
    ]));
    let line = format!(
        "left out: {other_kbs} keys of 3 other kb_ids or categories, {} KATO global keys, {} foreign keys; add --global/--foreign to take them",
        seeded.kato_global().len(),
        seeded.foreign().len()
    );
    assert!(text.contains(&line), "{text}");

    let plus = export(
        &server,
        dir.path(),
        "plus.kbd",
        &["--kb", "node0_kato", "--global", "--foreign"],
    );
    let want: BTreeSet<Vec<u8>> = node0.union(&seeded.unrelated()).cloned().collect();
    assert_eq!(archive_keys(&plus), want);
    let global = export(&server, dir.path(), "global.kbd", &["--global"]);
    assert_eq!(archive_keys(&global), seeded.kato_global());
    let foreign = export(&server, dir.path(), "foreign.kbd", &["--foreign"]);
    assert_eq!(archive_keys(&foreign), seeded.foreign());
    let sessions = export(
        &server,
        dir.path(),
        "sessions.kbd",
        &["--category", "sessions"],
    );
    assert_eq!(
        archive_keys(&sessions),
        seeded.select(|k| k.category == Some(crate::support::seed::Category::Sessions))
    );

    // Offline: the same selectors on a whole-db archive.
    let all = export(&server, dir.path(), "all.kbd", &[]);
    let a = all.to_str().unwrap();
    assert_eq!(listed(&[a, "--global"]), seeded.kato_global());
    assert_eq!(listed(&[a, "--foreign"]), seeded.foreign());
    assert_eq!(listed(&[a, "--kb", "*"]), seeded.kato());
    let target = RedisServer::start();
    let report = restore_ok(&all, &target, &["--global"]);
    assert_eq!(
        total(&report, "restored"),
        seeded.kato_global().len() as u64
    );
    assert_eq!(
        report["left_out"]["kb_keys"],
        seeded.kato().len() as u64,
        "{report:#}"
    );
    let keys: BTreeSet<Vec<u8>> = snap(&target).into_keys().collect();
    assert_eq!(keys, seeded.kato_global());
    let (code, diff) = diff_json(&all, &target, &["--global"]);
    assert_eq!(code, Some(0), "{diff:#}");

    // copy --kb says what it left behind.
    let copy_target = RedisServer::start();
    let out = kbdump(&[
        "copy",
        "--json",
        "--from",
        &server.url(),
        "--to",
        &copy_target.url(),
        "--kb",
        "node0_kato",
    ]);
    let report = json_with_code(&out, 0);
    assert_eq!(
        report["left_out"]["kato"],
        seeded.kato_global().len() as u64
    );
    assert_eq!(report["left_out"]["foreign"], seeded.foreign().len() as u64);
}

/// The recovery issue's first finding: a nightly `export --kb node9_kato`
/// (no such kb_id) wrote a 400-byte archive, exited 0 and the archive
/// verified. It must fail with exit 2, write no file, and name the server,
/// its kb_ids and the nearest one.
#[test]
fn an_export_of_a_kb_id_that_does_not_exist_fails_and_writes_nothing() {
    let (server, _) = seeded(&SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nightly.kbd");
    let out = kbdump(&[
        "export",
        "--redis",
        &server.url(),
        "--kb",
        "node9_kato",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!path.exists(), "no archive may be left");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temporary file either"
    );
    let message = stderr(&out);
    assert!(
        message.contains(&format!(
            "--kb node9_kato matches no kb_id in Redis at 127.0.0.1:{} (db 0)",
            server.port()
        )),
        "{message}"
    );
    assert!(message.contains("did you mean node0_kato"), "{message}");
    assert!(message.contains("node0_kato, node1_kato"), "{message}");
    assert!(message.contains("--allow-empty"), "{message}");
    // To stdout: nothing is written either.
    let out = kbdump(&[
        "export",
        "--redis",
        &server.url(),
        "--kb",
        "node9_kato",
        "-o",
        "-",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

/// The same rule on every command that takes `--kb`, live and offline, for
/// literal ids and globs; nothing is written on a target.
#[test]
fn a_kb_typo_fails_every_command_with_a_suggestion() {
    let (server, _) = seeded(&SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&server, dir.path(), "all.kbd", &[]);
    let a = archive.to_str().unwrap();
    let target = RedisServer::start();
    let (s, t) = (server.url(), target.url());
    let commands: Vec<Vec<&str>> = vec![
        vec!["copy", "--from", &s, "--to", &t],
        vec!["diff", a, "--redis", &t],
        vec!["restore", a, "--redis", &t],
        vec!["ls", a],
        vec!["cat", a],
    ];
    for command in &commands {
        for (kb, near) in [("node9_kato", Some("node0_kato")), ("nomatch*", None)] {
            let mut args = command.clone();
            args.extend(["--kb", kb]);
            let out = kbdump(&args);
            let message = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {message}");
            assert!(
                message.contains(&format!("--kb {kb} matches no kb_id in")),
                "{args:?}: {message}"
            );
            assert!(
                message.contains("node0_kato, node1_kato"),
                "{args:?}: {message}"
            );
            if let Some(near) = near {
                assert!(
                    message.contains(&format!("did you mean {near}")),
                    "{args:?}: {message}"
                );
            }
        }
    }
    assert!(snap(&target).is_empty(), "nothing written on the target");
    // One good --kb does not excuse a bad one.
    let out = kbdump(&[
        "restore",
        a,
        "--redis",
        &t,
        "--kb",
        "node0_kato",
        "--kb",
        "node9_kato",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(snap(&target).is_empty());

    // An archive read from a pipe has no index up front: the records read
    // are checked once read; still exit 2.
    let out = kbdump_stdin(
        &["restore", "-", "--redis", &t, "--kb", "node9_kato"],
        &archive,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--kb node9_kato matches no kb_id in the records read from <stdin>")
    );
    let out = kbdump_stdin(&["ls", "-", "--kb", "node9_kato"], &archive);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(snap(&target).is_empty());
}

/// `--allow-empty` is for scripts that mean an empty selection.
#[test]
fn allow_empty_accepts_a_selection_that_matches_nothing() {
    let (server, _) = seeded(&SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let archive = export(
        &server,
        dir.path(),
        "none.kbd",
        &["--kb", "node9_kato", "--allow-empty"],
    );
    assert!(archive_keys(&archive).is_empty());
    let target = RedisServer::start();
    let all = export(&server, dir.path(), "all.kbd", &[]);
    let report = restore_ok(&all, &target, &["--kb", "node9_kato", "--allow-empty"]);
    assert_eq!(total(&report, "restored"), 0);
    assert!(snap(&target).is_empty());
    let out = kbdump(&[
        "copy",
        "--from",
        &server.url(),
        "--to",
        &target.url(),
        "--kb",
        "nomatch*",
        "--allow-empty",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(snap(&target).is_empty());
    assert!(listed(&[all.to_str().unwrap(), "--kb", "node9_kato", "--allow-empty"]).is_empty());
}
