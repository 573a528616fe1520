//! Append-only files as inputs: a Redis 7.0 AOF directory (base as RDB
//! preamble or as RESP commands, incremental parts) and a Redis 6.2 single
//! AOF file, written by real servers under KATO-like writes (MULTI/EXEC,
//! deletes, expiries, renames, counters); restored into a fresh server and
//! compared key by key with the live source. A cut last command is
//! reported and the rest used; a corrupt middle names its file and offset.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::cli::{assert_same, kbdump, ok, only, restore_json, snap, stderr, stdout};
use crate::support::redis::{info_field, Flavor, RedisServer};
use crate::support::seed::{seed_kato, Category, SeedSpec, Seeded};
use kbdump::kato::display_bytes;

/// A server that appends every write to its AOF, fsynced at once.
fn aof_server(flavor: Flavor, preamble: bool) -> RedisServer {
    RedisServer::builder()
        .flavor(flavor)
        .config("appendonly yes")
        .config("appendfsync always")
        .config(if preamble {
            "aof-use-rdb-preamble yes"
        } else {
            "aof-use-rdb-preamble no"
        })
        .start()
}

fn cmd(conn: &mut redis::Connection, args: &[&str]) {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    let _: redis::Value = c.query(conn).unwrap();
}

/// Rewrites the AOF (so that the seeded keys are its base) and waits.
fn rewrite(server: &RedisServer) {
    cmd(&mut server.client(), &["BGREWRITEAOF"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = server.info("persistence");
        let busy = |f: &str| info_field(&info, f).as_deref() != Some("0");
        if !busy("aof_rewrite_in_progress") && !busy("aof_rewrite_scheduled") {
            return;
        }
        assert!(Instant::now() < deadline, "the AOF rewrite did not finish");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A kb_id that `--kb` names literally.
fn plain_kb(seeded: &Seeded) -> Vec<u8> {
    seeded
        .kb_ids()
        .into_iter()
        .find(|k| k.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_'))
        .unwrap()
}

fn first(seeded: &Seeded, kb: &[u8], category: Category) -> String {
    let key = seeded.of(kb, category).into_iter().next().unwrap();
    String::from_utf8(key).unwrap()
}

/// KATO-like writes after the base: counters, JSON strings, hash
/// increments, set members, a transaction, deletes, expiries and renames.
fn kato_writes(server: &RedisServer, seeded: &Seeded, kb: &str) {
    let kbb = kb.as_bytes();
    let freq = first(seeded, kbb, Category::Frequency);
    let emotives = first(seeded, kbb, Category::Emotives);
    let affinity = first(seeded, kbb, Category::Affinity);
    let symbols: Vec<String> = seeded
        .of(kbb, Category::Symbols)
        .into_iter()
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .collect();
    let metadata = first(seeded, kbb, Category::Metadata);
    let p = format!("{kb}:frequency:aaaa");
    // One connection: MULTI and SELECT hold for the connection.
    let server = &mut server.client();
    cmd(server, &["SET", &p, "1", "NX"]);
    cmd(server, &["INCR", &p]);
    cmd(server, &["INCRBY", &freq, "41"]);
    cmd(server, &["MULTI"]);
    cmd(
        server,
        &["SET", &format!("{kb}:emotives:aaaa"), r#"[{"joy": 0.4}]"#],
    );
    cmd(server, &["HINCRBYFLOAT", &affinity, "joy", "0.25"]);
    cmd(server, &["HSET", &affinity, "fear", "-1.5"]);
    cmd(server, &["INCR", &p]);
    cmd(server, &["EXEC"]);
    cmd(
        server,
        &["SET", &emotives, r#"[{"utility": -1.2}]"#, "KEEPTTL"],
    );
    cmd(
        server,
        &[
            "SADD",
            &format!("{kb}:symbol_to_patterns:new"),
            "aaaa",
            "bbbb",
        ],
    );
    let set = symbols
        .iter()
        .find(|k| k.contains("symbol_to_patterns"))
        .unwrap();
    cmd(server, &["SADD", set, "zzzz"]);
    cmd(server, &["EXPIRE", &metadata, "3600"]);
    cmd(
        server,
        &["SET", &format!("{kb}:prediction:x"), "{}", "EX", "600"],
    );
    cmd(
        server,
        &["INCRBYFLOAT", &format!("{kb}:entropy:aaaa"), "0.5"],
    );
    cmd(
        server,
        &["RENAME", &freq, &format!("{kb}:frequency:renamed")],
    );
    cmd(server, &["DEL", &first(seeded, kbb, Category::Globals)]);
    cmd(server, &["RPUSH", &format!("{kb}:queue"), "a", "b", "c"]);
    cmd(server, &["LPOP", &format!("{kb}:queue")]);
    cmd(server, &["ZADD", &format!("{kb}:rank"), "1", "a", "2", "b"]);
    cmd(server, &["ZINCRBY", &format!("{kb}:rank"), "5", "a"]);
    cmd(server, &["SET", "foreign:counter", "10"]);
    cmd(server, &["DECRBY", "foreign:counter", "3"]);
    cmd(server, &["SELECT", "1"]);
    cmd(server, &["SET", "db1:key", "elsewhere"]);
}

/// The AOF copied out of the server's directory (as an operator copies a
/// backup), under a neutral name.
fn copy_aof(server: &RedisServer, out: &Path) -> PathBuf {
    let dir = server.dir().join("appendonlydir");
    if dir.is_dir() {
        let target = out.join("backup-aof");
        std::fs::create_dir(&target).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
        return target;
    }
    let target = out.join("backup.aof");
    std::fs::copy(server.dir().join("appendonly.aof"), &target).unwrap();
    target
}

/// The incremental part the server appends to now.
fn last_incr(dir: &Path) -> PathBuf {
    let mut incr: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".incr.aof"))
        .collect();
    incr.sort();
    incr.pop().unwrap()
}

fn is_stream(seeded: &Seeded, key: &[u8]) -> bool {
    seeded.keys.get(key).is_some_and(|k| k.kind == "stream")
}

/// Every key of db 0 restored from the AOF equals the live source's.
fn restores_like_the_source(flavor: Flavor, preamble: bool) {
    let source = aof_server(flavor, preamble);
    let seeded = seed_kato(&mut source.client(), &SeedSpec::small());
    rewrite(&source);
    let kb = display_bytes(&plain_kb(&seeded));
    kato_writes(&source, &seeded, &kb);
    let tmp = tempfile::tempdir().unwrap();
    let aof = copy_aof(&source, tmp.path());
    let target = RedisServer::start_flavor(flavor);
    let live = snap(&source);
    let (code, report) = restore_json(&aof, &target, &[]);
    let restored = snap(&target);
    if preamble {
        assert_eq!(code, Some(0), "{report:#}");
        assert_same(&live, &restored);
    } else {
        // A RESP base holds the streams as XADD/XGROUP commands, which
        // are not replayed: they are named as damaged, never dropped
        // silently; every other key is the source's.
        let failures: Vec<String> = report["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| format!("{} {}", f["what"].as_str().unwrap(), f["reason"]))
            .collect();
        let streams: Vec<_> = live.keys().filter(|k| is_stream(&seeded, k)).collect();
        assert!(!streams.is_empty());
        assert_eq!(failures.len(), streams.len(), "{failures:#?}");
        for key in &streams {
            let named = format!("key {} (db 0) ", display_bytes(key));
            let found = failures.iter().find(|f| f.starts_with(&named));
            assert!(
                found.is_some_and(|f| f.contains("stream")),
                "{key:?}: {failures:#?}"
            );
        }
        assert_ne!(code, Some(0));
        assert_same(&only(&live, |k| !is_stream(&seeded, k)), &restored);
    }
}

#[test]
fn a_redis_7_aof_directory_with_an_rdb_base_restores_every_key_as_the_source_holds_it() {
    restores_like_the_source(Flavor::Redis70, true);
}

#[test]
fn a_redis_7_aof_directory_with_a_resp_base_restores_every_key_but_its_streams() {
    restores_like_the_source(Flavor::Redis70, false);
}

#[test]
fn a_redis_6_2_single_aof_file_restores_every_key_as_the_source_holds_it() {
    restores_like_the_source(Flavor::Redis62, true);
}

#[test]
fn export_from_an_aof_directory_with_selectors_and_db() {
    let source = aof_server(Flavor::Redis70, true);
    let seeded = seed_kato(&mut source.client(), &SeedSpec::small());
    rewrite(&source);
    let kb = display_bytes(&plain_kb(&seeded));
    kato_writes(&source, &seeded, &kb);
    let tmp = tempfile::tempdir().unwrap();
    let aof = copy_aof(&source, tmp.path());
    let out = tmp.path().join("emotives.kbd");
    let (aof_s, out_s) = (aof.to_str().unwrap(), out.to_str().unwrap());
    ok(&[
        "export",
        "--from",
        aof_s,
        "-o",
        out_s,
        "--kb",
        &kb,
        "--category",
        "emotives",
    ]);
    let listed: Vec<String> = stdout(&ok(&["ls", out_s]))
        .lines()
        .map(str::to_string)
        .collect();
    let mut expected: Vec<String> = seeded
        .of(kb.as_bytes(), Category::Emotives)
        .iter()
        .map(|k| display_bytes(k))
        .collect();
    expected.push(format!("{kb}:emotives:aaaa"));
    expected.sort();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    assert_eq!(listed_sorted, expected);
    // The header says where it came from.
    assert!(stdout(&ok(&["inspect", out_s])).contains("aof"));
    // --db 1 reads the other database.
    let db1 = stdout(&ok(&["ls", aof_s, "--db", "1"]));
    assert_eq!(db1.trim(), "db1:key");
    // cat --json of the AOF itself: the new emotives key as written.
    let json = stdout(&ok(&[
        "cat",
        "--json",
        aof_s,
        "--kb",
        &kb,
        "--category",
        "emotives",
    ]));
    assert!(json.contains("utility"), "{json}");
    // verify reads every part and decodes every value.
    ok(&["verify", aof_s]);
    // diff against the live source: nothing differs.
    let url = source.url();
    let diff = kbdump(&["diff", aof_s, "--redis", &url, "--kb", &kb]);
    assert_eq!(
        diff.status.code(),
        Some(0),
        "{}{}",
        stdout(&diff),
        stderr(&diff)
    );
}

#[test]
fn a_cut_last_command_is_reported_and_every_command_before_it_used() {
    let source = aof_server(Flavor::Redis70, true);
    let seeded = seed_kato(&mut source.client(), &SeedSpec::small());
    rewrite(&source);
    let kb = display_bytes(&plain_kb(&seeded));
    cmd(
        &mut source.client(),
        &["SET", &format!("{kb}:emotives:kept"), "[]"],
    );
    cmd(
        &mut source.client(),
        &["SET", &format!("{kb}:emotives:cut"), "[1, 2, 3]"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let aof = copy_aof(&source, tmp.path());
    let incr = last_incr(&aof);
    let len = std::fs::metadata(&incr).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&incr).unwrap();
    file.set_len(len - 5).unwrap();
    let target = RedisServer::start();
    let (code, report) = restore_json(&aof, &target, &["--kb", &kb, "--category", "emotives"]);
    let text = report.to_string();
    assert!(text.contains("truncated command"), "{report:#}");
    assert!(text.contains("redis-check-aof --fix"), "{report:#}");
    assert_ne!(code, Some(0), "a cut file is damage, said in the exit code");
    let restored = snap(&target);
    assert!(restored.contains_key(format!("{kb}:emotives:kept").as_bytes()));
    assert!(!restored.contains_key(format!("{kb}:emotives:cut").as_bytes()));
    let wanted = seeded.of(kb.as_bytes(), Category::Emotives);
    let expected = only(&snap(&source), |k| {
        wanted.contains(k) || k.ends_with(b":kept")
    });
    assert_same(&expected, &restored);
}

#[test]
fn a_corrupt_middle_names_its_file_and_offset_and_salvage_keeps_what_precedes() {
    let source = aof_server(Flavor::Redis70, true);
    let seeded = seed_kato(&mut source.client(), &SeedSpec::small());
    rewrite(&source);
    let kb = display_bytes(&plain_kb(&seeded));
    cmd(
        &mut source.client(),
        &["SET", &format!("{kb}:emotives:before"), "[]"],
    );
    cmd(
        &mut source.client(),
        &["SET", &format!("{kb}:emotives:damaged"), "[]"],
    );
    cmd(
        &mut source.client(),
        &["SET", &format!("{kb}:emotives:after"), "[]"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let aof = copy_aof(&source, tmp.path());
    let incr = last_incr(&aof);
    let mut bytes = std::fs::read(&incr).unwrap();
    let needle = format!("{kb}:emotives:damaged");
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap();
    // The `$` of the damaged key's length line becomes garbage.
    let dollar = bytes[..at].iter().rposition(|&b| b == b'$').unwrap();
    bytes[dollar] = b'?';
    std::fs::write(&incr, &bytes).unwrap();
    let name = incr.file_name().unwrap().to_string_lossy().into_owned();
    let out = kbdump(&["ls", aof.to_str().unwrap(), "--kb", &kb]);
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains(&name), "{err}");
    assert!(err.contains(&format!("byte offset {dollar}")), "{err}");
    assert!(
        !stdout(&out).contains("emotives"),
        "nothing is listed without --salvage"
    );
    let out = kbdump(&["ls", aof.to_str().unwrap(), "--kb", &kb, "--salvage"]);
    let listed = stdout(&out);
    assert!(
        listed.contains(":emotives:before"),
        "{listed}{}",
        stderr(&out)
    );
    assert!(!listed.contains(":emotives:after"), "{listed}");
}
