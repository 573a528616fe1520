//! Restore under faults: the target dies midway, the archive is damaged,
//! single keys fail, and the target is short of memory. Each test checks
//! what the operator sees (message, exit status) and what the server holds.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::cli::*;
use crate::support::redis::{info_field, RedisServer};
use crate::support::seed::{seed_kato, SeedSpec, Snapshot};
use kbdump::format::archive::{
    ArchiveWriter, Header, IndexedArchive, Record, SourceInfo, FORMAT_VERSION,
};
use kbdump::kato::Category;

const TEMP_PREFIX: &[u8] = b"__kbdump_tmp:";

/// A source with `n` list keys of kb `big_kato` (plus the seeded kb_ids),
/// exported to `dir/big.kbd`.
fn big_archive(dir: &Path, n: usize) -> (RedisServer, PathBuf) {
    let source = RedisServer::start();
    let mut c = source.client();
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        let mut p = redis::pipe();
        for i in chunk {
            p.cmd("RPUSH")
                .arg(format!("big_kato:session_log:{i:06}"))
                .arg(&["a", "b", "c", "d"][..]);
        }
        p.query::<()>(&mut c).unwrap();
    }
    let path = export(&source, dir, "big.kbd", &["--kb", "big_kato"]);
    (source, path)
}

fn dbsize(server: &RedisServer) -> i64 {
    run(server, &mut redis::cmd("DBSIZE"))
}

/// Keys of the logical path's temporary namespace left after a crash must
/// expire by themselves; the rest is returned.
fn without_temp_keys(snapshot: Snapshot) -> Snapshot {
    for (key, value) in &snapshot {
        if key.starts_with(TEMP_PREFIX) {
            assert!(value.pttl.is_some(), "{} never expires", show(key));
        }
    }
    only(&snapshot, |k| !k.starts_with(TEMP_PREFIX))
}

#[test]
fn target_killed_mid_restore_fails_clearly_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (source, archive) = big_archive(dir.path(), 10_000);
    let expected = only(&snap(&source), |k| k.starts_with(b"big_kato:"));
    // AOF without fsync: SIGKILL ends the process, not the machine, so every
    // write the server acknowledged is in the page cache and comes back.
    let mut target = RedisServer::builder()
        .config("appendonly yes")
        .config("appendfsync no")
        .start();
    let url = target.url();
    // --logical: lists rebuilt with RPUSH would show duplicates if a rerun
    // touched a key twice, and half-built keys if a crash exposed one.
    let args = |extra: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kbdump"));
        cmd.args(["restore", archive.to_str().unwrap(), "--redis", &url])
            .args(["--logical", "--quiet", extra]);
        cmd
    };
    let child = args("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while dbsize(&target) < 1_000 {
        assert!(Instant::now() < deadline, "restore made no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    target.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let port = format!("127.0.0.1:{}", target.port());
    assert!(stderr(&out).contains(&port), "{}", stderr(&out));

    target.restart();
    wait_loaded(&target);
    let partial = without_temp_keys(snap(&target));
    assert!(partial.len() < expected.len(), "the crash came too late");
    for (key, value) in &partial {
        assert_eq!(
            Some(value),
            expected.get(key),
            "{} after the crash",
            show(key)
        );
    }
    let out = args("--json").output().unwrap();
    let report = json_with_code(&out, 0);
    assert_eq!(total(&report, "kept"), partial.len() as u64);
    assert_same(&expected, &without_temp_keys(snap(&target)));
}

/// Waits until a restarted server has loaded its AOF.
fn wait_loaded(server: &RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while info_field(&server.info("persistence"), "loading").as_deref() != Some("0") {
        assert!(Instant::now() < deadline, "the AOF did not load");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn block_of(path: &Path, kb: &[u8], category: Category) -> (u64, u64) {
    let archive = IndexedArchive::open(std::fs::File::open(path).unwrap()).unwrap();
    let entry = archive
        .index()
        .blocks
        .iter()
        .find(|e| e.meta.kb_id == kb && e.meta.category == category)
        .expect("block exists")
        .clone();
    (entry.offset, entry.len)
}

#[test]
fn a_corrupt_block_fails_its_selection_only_and_is_named() {
    let source = RedisServer::start();
    let seeded = seed_kato(&mut source.client(), &SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let good = export(&source, dir.path(), "all.kbd", &[]);
    let (offset, len) = block_of(&good, b"node1_kato", Category::Emotives);
    let mut bytes = std::fs::read(&good).unwrap();
    bytes[(offset + len / 2) as usize] ^= 0x40;
    let bad = dir.path().join("bad.kbd");
    std::fs::write(&bad, &bytes).unwrap();
    let block = format!("block at byte {offset}");
    let lost = seeded.of(b"node1_kato", support::seed::Category::Emotives);
    let source_snapshot = snap(&source);

    // Other kb_ids restore cleanly.
    let target = RedisServer::start();
    restore_ok(&bad, &target, &["--kb", "node0_kato"]);
    let node0 = |k: &[u8]| seeded.of_kb(b"node0_kato").contains(k);
    assert_same(&only(&source_snapshot, node0), &snap(&target));

    // The whole archive: everything but the damaged block, exit 2.
    for from_pipe in [false, true] {
        let target = RedisServer::start();
        let out = if from_pipe {
            let url = target.url();
            kbdump_stdin(&["restore", "-", "--redis", &url, "--json"], &bad)
        } else {
            kbdump(&[
                "restore",
                bad.to_str().unwrap(),
                "--redis",
                &target.url(),
                "--json",
            ])
        };
        let report = json_with_code(&out, 2);
        let failures = report["failures"].to_string();
        assert!(failures.contains(&block), "pipe {from_pipe}: {failures}");
        // The archive holds every key of the db (KATO's global keys and
        // foreign keys too): all come back but the damaged block's.
        let want = |k: &[u8]| seeded.keys.contains_key(k) && !lost.contains(k);
        assert_same(&only(&source_snapshot, want), &snap(&target));
    }

    // diff names it too and exits 2.
    let (code, report) = diff_json(&bad, &source, &[]);
    assert_eq!(code, Some(2));
    assert!(report["damaged"].to_string().contains(&block), "{report}");
}

fn write_archive(path: &Path, records: &[Record]) {
    let header = Header {
        format_version: FORMAT_VERSION,
        tool: "test".into(),
        created_at_ms: kbdump::clock::system_now_ms(),
        source: SourceInfo::default(),
        selection: Default::default(),
        snapshot_at_ms: None,
        shards: Vec::new(),
    };
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArchiveWriter::new(file, &header, Default::default()).unwrap();
    records.iter().for_each(|r| writer.push(r).unwrap());
    writer.finish().unwrap();
}

#[test]
fn an_undecodable_refused_payload_fails_alone() {
    let source = RedisServer::start();
    let _: () = run(&source, redis::cmd("SET").arg("v").arg("1.5"));
    let good: Vec<u8> = run(&source, redis::cmd("DUMP").arg("v"));
    // Type byte 200 with a valid checksum: RESTORE says "Bad data format"
    // and the decoder cannot read it either.
    let junk = kbdump::format::dump::seal(200, b"\x03abc", 10);
    let record = |name: &str, payload: &[u8]| Record {
        key: format!("kb_x:frequency:{name}").into_bytes(),
        kb_id: b"kb_x".to_vec(),
        category: Category::Frequency,
        redis_type: "string".into(),
        expire_at_ms: None,
        payload: payload.to_vec(),
    };
    let records = [
        record("a", &good),
        record("broken", &junk),
        record("c", &good),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.kbd");
    write_archive(&path, &records);
    let target = RedisServer::start();
    let (code, report) = restore_json(&path, &target, &[]);
    assert_eq!(code, Some(2), "{report:#}");
    assert_eq!(
        (total(&report, "restored"), total(&report, "failed")),
        (2, 1)
    );
    let failure = &report["failures"][0];
    assert_eq!(failure["what"], "kb_x:frequency:broken");
    assert!(
        failure["reason"].as_str().unwrap().contains("decode"),
        "{failure}"
    );
    let keys: BTreeSet<Vec<u8>> = snap(&target).into_keys().collect();
    assert_eq!(
        keys,
        [b"kb_x:frequency:a".to_vec(), b"kb_x:frequency:c".to_vec()].into()
    );
}

/// Sets `maxmemory` to what the server uses now plus `extra` bytes.
fn cap_memory(server: &RedisServer, extra: u64, policy: &str) {
    let used: u64 = info_field(&server.info("memory"), "used_memory")
        .unwrap()
        .parse()
        .unwrap();
    let _: () = run(
        server,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(used + extra),
    );
    let _: () = run(
        server,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg(policy),
    );
}

fn evicted(server: &RedisServer) -> u64 {
    info_field(&server.info("stats"), "evicted_keys")
        .unwrap()
        .parse()
        .unwrap()
}

fn seeded_archive(dir: &Path) -> (RedisServer, PathBuf) {
    let source = RedisServer::start();
    seed_kato(&mut source.client(), &SeedSpec::default());
    let path = export(&source, dir, "all.kbd", &[]);
    (source, path)
}

#[test]
fn out_of_memory_keys_fail_one_by_one_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (source, archive) = seeded_archive(dir.path());
    let source = snap(&source);
    let records = IndexedArchive::open(std::fs::File::open(&archive).unwrap())
        .unwrap()
        .end_info()
        .record_count;
    // --logical: a key built in chunks that hits OOM midway must not
    // appear half-built.
    for extra in [&[][..], &["--logical"][..]] {
        let target = RedisServer::start();
        cap_memory(&target, 256 * 1024, "noeviction");
        let (code, report) = restore_json(&archive, &target, extra);
        assert_eq!(code, Some(2), "{report:#}");
        let (restored, failed) = (total(&report, "restored"), total(&report, "failed"));
        assert!(restored > 0 && failed > 0, "{report:#}");
        assert_eq!(restored + failed + total(&report, "expired"), records);
        let failures = report["failures"].as_array().unwrap();
        assert_eq!(failures.len() as u64, failed);
        assert!(failures
            .iter()
            .all(|f| f["reason"].as_str().unwrap().contains("OOM")));
        let written = snap(&target);
        assert_eq!(written.len() as u64, restored, "{extra:?}: no leftovers");
        let whole = |k: &[u8]| written.contains_key(k);
        assert_same(&only(&source, whole), &written);
    }
}

fn filler(server: &RedisServer) -> Snapshot {
    let mut p = redis::pipe();
    for i in 0..200 {
        p.cmd("SET").arg(format!("live:{i}")).arg("precious");
    }
    p.query::<()>(&mut server.client()).unwrap();
    snap(server)
}

#[test]
fn memory_guard_refuses_before_writing_and_stops_on_evictions() {
    let dir = tempfile::tempdir().unwrap();
    let (source, archive) = seeded_archive(dir.path());
    let target = RedisServer::start();
    let before = filler(&target);
    cap_memory(&target, 1 << 20, "allkeys-lru");

    let out = kbdump(&[
        "restore",
        archive.to_str().unwrap(),
        "--redis",
        &target.url(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let message = stderr(&out);
    assert!(
        message.contains("maxmemory") && message.contains("--force"),
        "{message}"
    );
    assert_same(&before, &snap(&target));

    // A pipe and a copy have no size up front: they stop before evicting.
    let url = target.url();
    let piped = kbdump_stdin(&["restore", "-", "--redis", &url], &archive);
    let from = source.url();
    let copied = kbdump(&["copy", "--from", &from, "--to", &url]);
    for out in [piped, copied] {
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
        assert_eq!(evicted(&target), 0);
    }
    // (MGET, not a snapshot: a whole-server read near maxmemory needs
    // reply buffers that would themselves make the server evict.)
    let live: Vec<String> = run(
        &target,
        redis::cmd("MGET").arg(before.keys().collect::<Vec<_>>()),
    );
    assert!(live.iter().all(|v| v == "precious"));
    assert_eq!(evicted(&target), 0);

    // --force writes anyway; the evictions it causes stop the run.
    let out = kbdump(&[
        "restore",
        archive.to_str().unwrap(),
        "--redis",
        &url,
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(evicted(&target) > 0);
    assert!(stderr(&out).contains("evicted"), "{}", stderr(&out));
}

/// A backup cut short (interrupted copy) has no index; restore still puts
/// back every intact block, then names the truncation and exits 2.
#[test]
fn a_truncated_archive_restores_its_intact_blocks() {
    let source = RedisServer::start();
    support::seed::seed_kato(&mut source.client(), &support::seed::SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let full = export(&source, dir.path(), "full.kbd", &["--kb", "node0_kato"]);
    let bytes = std::fs::read(&full).unwrap();
    let cut = dir.path().join("cut.kbd");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let out = kbdump(&["verify", cut.to_str().unwrap()]);
    assert!(stdout(&out).contains("truncated"), "{}", stdout(&out));

    let target = RedisServer::start();
    let (code, report) = restore_json(&cut, &target, &[]);
    assert_eq!(code, Some(2), "{report}");
    let failures = report["failures"].to_string();
    assert!(failures.contains("truncated"), "{report}");
    let restored = total(&report, "restored");
    assert!(restored > 0, "intact blocks come back: {report}");
    let on_target: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut target.client())
        .unwrap();
    assert_eq!(on_target.len() as u64, restored);
    let mut source_conn = source.client();
    for key in on_target {
        let a: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query(&mut source_conn)
            .unwrap();
        let b: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query(&mut target.client())
            .unwrap();
        let (a, b) = (
            kbdump::format::dump::decode(&a).unwrap(),
            kbdump::format::dump::decode(&b).unwrap(),
        );
        assert!(a.logically_eq(&b), "{}", show(&key));
    }
}

/// A run the memory budget stops says how many keys it wrote, and that is
/// what the server holds: batches already sent are awaited and counted.
#[test]
fn a_budget_stop_reports_exactly_the_keys_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (_source, archive) = seeded_archive(dir.path());
    let target = RedisServer::start();
    let before = filler(&target);
    cap_memory(&target, 1 << 20, "allkeys-lru");
    let url = target.url();
    let out = kbdump_stdin(&["restore", "-", "--redis", &url], &archive);
    assert_eq!(out.status.code(), Some(2));
    let message = stderr(&out);
    let written: u64 = message
        .split(" keys were written")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in: {message}"));
    assert_eq!(evicted(&target), 0);
    let on_server = dbsize(&target) as u64 - before.len() as u64;
    assert_eq!(written, on_server, "{message}");
}

/// A replace that fails midway (here the memory budget stops it) keeps its
/// undo archive, since writes were applied, and its message names the file,
/// how many keys it holds and the command that puts them back; that command
/// gives the target back as it was.
#[test]
fn a_replace_that_fails_midway_names_its_undo_archive() {
    let dir = tempfile::tempdir().unwrap();
    let (_source, archive) = seeded_archive(dir.path());
    let target = RedisServer::start();
    let before = filler(&target);
    cap_memory(&target, 1 << 20, "allkeys-lru");
    let undo = dir.path().join("undo.kbd");
    let (url, undo_arg) = (target.url(), undo.to_str().unwrap().to_string());
    let args = [
        "restore", "-", "--redis", &url, "--mode", "replace", "--yes",
    ];
    let out = kbdump_stdin(&[&args[..], &["--undo", &undo_arg]].concat(), &archive);
    assert_eq!(out.status.code(), Some(2));
    let message = stderr(&out);
    assert!(message.contains("keys were written"), "{message}");
    let written = dbsize(&target) as u64 - before.len() as u64;
    assert!(written > 0, "the budget stopped the run before any write");
    let holds = format!("{undo_arg} holds the previous values of the {written} keys");
    assert!(message.contains(&holds), "{message}");
    assert!(
        message.contains(&format!("kbdump restore --mode replace {undo_arg}")),
        "{message}"
    );
    let _: () = run(
        &target,
        redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0),
    );
    let back = [
        "restore", &undo_arg, "--redis", &url, "--mode", "replace", "--yes",
    ];
    let undo2 = dir.path().join("undo2.kbd");
    let out = kbdump(&[&back[..], &["--undo", undo2.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_same(&before, &snap(&target));
}

/// A block the restore could not read counts as failed in the totals, not
/// only in the list of failures.
#[test]
fn a_damaged_block_counts_as_failed() {
    let source = RedisServer::start();
    seed_kato(&mut source.client(), &SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let good = export(&source, dir.path(), "all.kbd", &[]);
    let (offset, len) = block_of(&good, b"node1_kato", Category::Emotives);
    let mut bytes = std::fs::read(&good).unwrap();
    bytes[(offset + len / 2) as usize] ^= 0x40;
    let bad = dir.path().join("bad.kbd");
    std::fs::write(&bad, &bytes).unwrap();
    let target = RedisServer::start();
    let (code, report) = restore_json(&bad, &target, &[]);
    assert_eq!(code, Some(2));
    assert!(total(&report, "failed") >= 1, "{report:#}");
    let out = kbdump(&["restore", bad.to_str().unwrap(), "--redis", &target.url()]);
    let text = stdout(&out);
    assert!(!text.contains(", 0 failed"), "{text}");
}

/// A read-only replica refuses every write: the restore says so once,
/// before writing, instead of one READONLY failure per key.
#[test]
fn restoring_into_a_read_only_replica_is_refused_up_front() {
    let source = RedisServer::start();
    seed_kato(&mut source.client(), &SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&source, dir.path(), "all.kbd", &[]);
    let master = RedisServer::start();
    let replica = RedisServer::builder()
        .config(&format!("replicaof 127.0.0.1 {}", master.port()))
        .start();
    for mode in ["missing", "replace"] {
        let out = kbdump(&[
            "restore",
            archive.to_str().unwrap(),
            "--redis",
            &replica.url(),
            "--mode",
            mode,
        ]);
        assert_eq!(out.status.code(), Some(2));
        let message = stderr(&out);
        assert!(message.contains("read-only replica"), "{message}");
        assert!(message.contains(&master.port().to_string()), "{message}");
        assert!(
            !message.contains("READONLY"),
            "one refusal, not per key: {message}"
        );
        assert_eq!(message.lines().count(), 1, "{message}");
    }
    // A dry run writes nothing, so it may look at a replica.
    let out = kbdump(&[
        "restore",
        archive.to_str().unwrap(),
        "--redis",
        &replica.url(),
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// XCLAIM's error replies name the key and group; when those are not
/// UTF-8 the client cannot read the reply and drops the connection. A
/// stream with pending entries under a binary kb_id, re-created by
/// commands on a server that is out of memory, must fail as one key, and
/// the run must go on.
#[test]
fn a_binary_stream_that_fails_to_re_create_fails_alone() {
    let source = RedisServer::start();
    let key = b"kb\xff\xfe-bin:events".to_vec();
    let group = b"readers\xff".to_vec();
    for i in 1..=3 {
        let _: String = run(
            &source,
            redis::cmd("XADD")
                .arg(&key)
                .arg(format!("{i}-0"))
                .arg("e")
                .arg(i),
        );
    }
    let _: () = run(
        &source,
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg(&group)
            .arg("0"),
    );
    let _: redis::Value = run(
        &source,
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&group)
            .arg("w")
            .arg("STREAMS")
            .arg(&key)
            .arg(">"),
    );
    let _: () = run(
        &source,
        redis::cmd("SET").arg(b"kb\xff\xfe-bin:frequency:p").arg(1),
    );
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&source, dir.path(), "all.kbd", &[]);
    let target = RedisServer::start();
    cap_memory(&target, 0, "noeviction");
    let (code, report) = restore_json(&archive, &target, &["--logical"]);
    assert_eq!(code, Some(2), "{report:#}");
    assert_eq!(total(&report, "failed"), 2, "{report:#}");
    let failed: Vec<&str> = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["what"].as_str().unwrap())
        .collect();
    assert!(failed.contains(&"kb\\xff\\xfe-bin:events"), "{failed:?}");
    assert!(snap(&target).is_empty());
}
