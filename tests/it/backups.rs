//! Backups into a directory and their care, through the binary against
//! real servers: `backup` (verified, private, several a day, a typo'd
//! selection refused, the directory lock against a live and a dead holder
//! and a concurrent run), retention across days, day boundaries, damaged
//! and foreign files, `backups list | verify | check | test`, the
//! Prometheus textfile read by promtool (the Prometheus project's own
//! exposition parser), and `contrib/` checked by the real tools.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::cli::{json_with_code, ok, run, stderr, stdout};
use crate::support::redis::RedisServer;
use crate::support::seed::{seed_kato, Category as SeedCategory, SeedSpec, Seeded};
use kbdump::flow::backups::catalog::{backup_name, parse_name};
use kbdump::format::archive::{
    ArchiveWriter, Header, IndexedArchive, Record, SelectionSpec, SourceInfo, WriterOptions,
};
use kbdump::format::dump;
use kbdump::kato::Category;
use kbdump::plan::retention::days_from_civil;
use serde_json::Value as Json;

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;

fn seeded() -> (RedisServer, Seeded) {
    let server = RedisServer::start();
    let seeded = seed_kato(&mut server.client(), &SeedSpec::small());
    (server, seeded)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs kbdump without `REDIS_URL` and `KBDUMP_SCRATCH_URL` from the
/// environment: `backups check` would check that server too.
fn kbdump(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(args)
        .env_remove("REDIS_URL")
        .env_remove("KBDUMP_SCRATCH_URL")
        .output()
        .expect("run kbdump")
}

/// Unix ms of a UTC date and time.
fn at(y: i64, m: u32, d: u32, h: i64, min: i64) -> i64 {
    days_from_civil(y, m, d) * DAY + h * HOUR + min * 60_000
}

/// `kbdump backup --dir DIR --redis URL EXTRA...`.
fn backup(server: &RedisServer, dir: &Path, extra: &[&str]) -> Output {
    let url = server.url();
    let mut args = vec!["backup", "--dir", s(dir), "--redis", &url];
    args.extend_from_slice(extra);
    kbdump(&args)
}

/// The backup files in `dir` (named like backups), sorted.
fn backup_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| parse_name(n).is_some())
        .collect();
    names.sort();
    names
}

/// Every file in `dir` but the lock file (which commands that change the
/// directory create).
fn all_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "kbdump.lock")
        .collect();
    names.sort();
    names
}

/// A string key's DUMP payload, made offline.
fn string_payload(value: &[u8]) -> Vec<u8> {
    let mut body = vec![value.len() as u8];
    body.extend_from_slice(value);
    dump::seal(0, &body, 10)
}

/// Writes a backup made "at" `created_ms` holding `keys` emotives of `kb`,
/// under the name `backup` would give it.
fn synthetic_backup(dir: &Path, created_ms: i64, kb: &str, keys: usize) -> PathBuf {
    let path = dir.join(backup_name(created_ms));
    let source = SourceInfo {
        kind: "redis-server".into(),
        address: "127.0.0.1:6379".into(),
        product: "redis".into(),
        version: "7.0.15".into(),
        rdb_version: Some(10),
        mode: "standalone".into(),
        db: 0,
        masters: Vec::new(),
    };
    let header = Header::new(source, SelectionSpec::default(), created_ms);
    let file = File::create(&path).unwrap();
    let mut writer = ArchiveWriter::new(file, &header, WriterOptions::default()).unwrap();
    for i in 0..keys {
        writer
            .push(&Record {
                key: format!("{kb}:emotives:p{i}").into_bytes(),
                kb_id: kb.as_bytes().to_vec(),
                category: Category::Emotives,
                redis_type: "string".into(),
                expire_at_ms: None,
                payload: string_payload(b"{\"joy\":1}"),
            })
            .unwrap();
    }
    writer.finish().unwrap();
    path
}

/// Flips one byte in the middle of the archive's first block.
fn damage_first_block(path: &Path) {
    let entry = IndexedArchive::open(File::open(path).unwrap())
        .unwrap()
        .index()
        .blocks[0]
        .clone();
    let mut bytes = fs::read(path).unwrap();
    bytes[(entry.offset + entry.len / 2) as usize] ^= 0x20;
    fs::write(path, bytes).unwrap();
}

fn backups_json(args: &[&str], code: i32) -> Json {
    let mut all = vec!["--json", "backups"];
    all.extend_from_slice(args);
    json_with_code(&kbdump(&all), code)
}

fn list_json(dir: &Path) -> Vec<Json> {
    backups_json(&["list", "--dir", s(dir)], 0)["backups"]
        .as_array()
        .unwrap()
        .clone()
}

/// The alarm names a `backups check --json` raised.
fn alarms(report: &Json) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["alarm"].as_str().unwrap().to_string())
        .collect()
}

fn check(dir: &Path, extra: &[&str], code: i32) -> Json {
    let mut args = vec!["check", "--dir", s(dir)];
    args.extend_from_slice(extra);
    backups_json(&args, code)
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

fn start_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

#[test]
fn backup_writes_a_private_verified_archive_silently_and_list_reads_it() {
    let (server, seeded) = seeded();
    let dir = tempfile::tempdir().unwrap();
    let out = backup(&server, dir.path(), &["--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!((stdout(&out), stderr(&out)), (String::new(), String::new()));
    let files = backup_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let path = dir.path().join(&files[0]);
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "archive mode {mode:o}");
    ok(&["verify", s(&path)]);
    let rows = list_json(dir.path());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "good");
    assert_eq!(rows[0]["method"], "scan");
    assert_eq!(rows[0]["keys"].as_u64().unwrap(), seeded.all().len() as u64);
    assert_eq!(
        rows[0]["kb_ids"].as_array().unwrap().len(),
        seeded.kb_ids().len()
    );
    // A second run on the same day gets its own name; --json tells what it did.
    let report = json_with_code(&backup(&server, dir.path(), &["--json"]), 0);
    assert_eq!(
        report["verified"]["records_ok"].as_u64().unwrap(),
        seeded.all().len() as u64
    );
    assert_eq!(report["retention"]["deleted"].as_array().unwrap().len(), 0);
    assert_eq!(backup_files(dir.path()).len(), 2);
}

#[test]
fn a_selection_that_matches_nothing_fails_and_writes_nothing_unless_allowed() {
    let (server, _) = seeded();
    let dir = tempfile::tempdir().unwrap();
    for selector in [&["--kb", "node0_kat0"][..], &["--kb", "nosuch*"][..]] {
        let out = backup(&server, dir.path(), selector);
        assert_eq!(out.status.code(), Some(2), "{selector:?}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("matches no kb_id"),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("--allow-empty"), "{}", stderr(&out));
    }
    assert_eq!(
        all_files(dir.path()),
        Vec::<String>::new(),
        "nothing but the lock"
    );
    let out = backup(
        &server,
        dir.path(),
        &["--kb", "nosuch", "--allow-empty", "--quiet"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(backup_files(dir.path()).len(), 1);
}

#[test]
fn a_missing_directory_is_an_error_naming_it() {
    let (server, _) = seeded();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-mounted");
    let out = backup(&server, &missing, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not-mounted") && stderr(&out).contains("does not exist"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn retention_keeps_exactly_the_right_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let times = [
        at(2024, 5, 1, 3, 0),
        at(2024, 5, 1, 12, 0),
        at(2024, 5, 2, 0, 0) - 1, // 23:59:59.999, the last instant of May 1st
        at(2024, 5, 2, 0, 0),     // the first instant of May 2nd
        at(2024, 5, 2, 3, 0),
        at(2024, 5, 3, 3, 0),
    ];
    let names: Vec<String> = times.iter().map(|t| backup_name(*t)).collect();
    for t in times {
        synthetic_backup(d, t, "kb1", 3);
    }
    // Newer than every good backup: one moved aside as damaged, one named
    // like a backup that is no archive at all; and foreign files.
    let aside = synthetic_backup(d, at(2024, 5, 3, 4, 0), "kb1", 3);
    fs::rename(&aside, format!("{}.damaged", aside.display())).unwrap();
    fs::write(d.join(backup_name(at(2024, 5, 3, 5, 0))), b"not an archive").unwrap();
    fs::write(d.join("notes.txt"), b"keep me").unwrap();
    fs::write(d.join("kbdump-2024-05-01.kbd"), b"an old-style name").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = synthetic_backup(elsewhere.path(), at(2024, 4, 1, 3, 0), "kb1", 1);
    std::os::unix::fs::symlink(&target, d.join(backup_name(at(2024, 4, 1, 3, 0)))).unwrap();
    let before = all_files(d);

    let dry = backups_json(
        &["prune", "--dir", s(d), "--keep-daily", "3", "--dry-run"],
        0,
    );
    assert_eq!(all_files(d), before, "a dry run deletes nothing");
    let would: Vec<&str> = dry["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(would, [&names[0], &names[1], &names[3]]);

    // The default (30 days of the newest) keeps all six.
    backups_json(&["prune", "--dir", s(d)], 0);
    assert_eq!(all_files(d), before);

    // Three days: the newest of May 3rd, of May 2nd and of May 1st (its
    // last millisecond); May 2nd's midnight is not the newest of its day.
    backups_json(&["prune", "--dir", s(d), "--keep-daily", "3"], 0);
    let mut expected = before.clone();
    expected.retain(|n| ![&names[0], &names[1], &names[3]].contains(&n));
    assert_eq!(all_files(d), expected);

    // Keep one: the newest good backup stays, whatever is newer but damaged.
    backups_json(&["prune", "--dir", s(d), "--keep-last", "1"], 0);
    expected.retain(|n| ![&names[2], &names[4]].contains(&n));
    assert_eq!(all_files(d), expected);
    assert!(expected.contains(&names[5]));
    assert!(target.exists(), "the symlink's target is untouched");
    assert_eq!(fs::read(d.join("notes.txt")).unwrap(), b"keep me");
    // The list shows the two damaged files for what they are.
    let rows = list_json(d);
    let status: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(status.len(), 3, "{status:?}");
    assert_eq!(
        status.iter().filter(|(_, s)| *s == "damaged").count(),
        2,
        "{status:?}"
    );
}

#[test]
fn a_lock_held_by_a_live_process_refuses_and_a_dead_ones_is_taken_over() {
    let (server, _) = seeded();
    let dir = tempfile::tempdir().unwrap();
    let lock_path = dir.path().join("kbdump.lock");
    let me = std::process::id();
    let holder = |pid: u32, ticks: Option<u64>| {
        serde_json::json!({"pid": pid, "start_ticks": ticks, "host": hostname(),
                           "command": "backup", "since_ms": 1_700_000_000_000i64})
        .to_string()
    };
    {
        // This test process holds the lock, as a running backup would.
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&lock_path)
            .unwrap();
        lock.try_lock().unwrap();
        lock.write_all(holder(me, Some(start_ticks(me))).as_bytes())
            .unwrap();
        let out = backup(&server, dir.path(), &["--quiet"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("another run holds the lock"),
            "{}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(&format!("pid {me} ")),
            "{}",
            stderr(&out)
        );
        assert!(backup_files(dir.path()).is_empty());
    }
    // Unlocked, but naming this process, which still runs: refused too.
    fs::write(&lock_path, holder(me, Some(start_ticks(me)))).unwrap();
    let out = backup(&server, dir.path(), &["--quiet"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(backup_files(dir.path()).is_empty());
    // A process that has exited.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    fs::write(&lock_path, holder(dead, Some(12345))).unwrap();
    // It died while writing: its temporary file is left behind.
    let temp = dir
        .path()
        .join(format!(".{}.tmp-{dead}", backup_name(1_700_000_000_000)));
    fs::write(&temp, b"half an archive").unwrap();
    let out = backup(&server, dir.path(), &["--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("took over the lock of kbdump backup (pid {dead} ")),
        "{}",
        stderr(&out)
    );
    assert_eq!(backup_files(dir.path()).len(), 1);
    assert!(!temp.exists(), "the dead run's temporary file is deleted");
    assert_eq!(fs::read_to_string(&lock_path).unwrap(), "", "released");
}

#[test]
fn two_concurrent_backups_one_runs_and_the_other_fails_at_once() {
    let (server, seeded) = seeded();
    let dir = tempfile::tempdir().unwrap();
    // The server holds every client for four seconds: the first run has its
    // lock and waits on the server while the second starts.
    run::<()>(
        &server,
        redis::cmd("CLIENT").arg("PAUSE").arg(4000).arg("ALL"),
    );
    let url = server.url();
    let first = Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(["backup", "--quiet", "--dir", s(dir.path()), "--redis", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock_path = dir.path().join("kbdump.lock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(&lock_path)
        .is_ok_and(|t| t.contains(&format!("\"pid\":{}", first.id())))
    {
        assert!(
            Instant::now() < deadline,
            "the first run never took the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = backup(&server, dir.path(), &["--quiet"]);
    let first_pid = first.id();
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
    assert!(
        stderr(&second).contains(&format!(
            "another run holds the lock {}: kbdump backup (pid {first_pid} ",
            lock_path.display()
        )),
        "{}",
        stderr(&second)
    );
    let files = backup_files(dir.path());
    assert_eq!(files.len(), 1);
    let rows = list_json(dir.path());
    assert_eq!(rows[0]["keys"].as_u64().unwrap(), seeded.all().len() as u64);
}

#[test]
fn backups_verify_moves_damaged_backups_aside_full_and_sampled() {
    let dir = tempfile::tempdir().unwrap();
    let good = synthetic_backup(dir.path(), at(2024, 5, 1, 3, 0), "kb1", 5);
    let bad = synthetic_backup(dir.path(), at(2024, 5, 2, 3, 0), "kb1", 5);
    let report = backups_json(&["verify", "--dir", s(dir.path())], 0);
    assert_eq!(report["ok"], true);
    damage_first_block(&bad);
    // Every file has one block, so a 1% sample reads it.
    let report = backups_json(&["verify", "--dir", s(dir.path()), "--sample", "1"], 1);
    assert_eq!(report["ok"], false);
    let moved = format!("{}.damaged", bad.display());
    assert!(Path::new(&moved).exists() && !bad.exists());
    assert!(good.exists());
    let report = backups_json(&["verify", "--dir", s(dir.path())], 0);
    assert_eq!(report["backups"].as_array().unwrap().len(), 1);
    // Full verification finds a damaged payload too.
    fs::rename(&moved, &bad).unwrap();
    let out = kbdump(&["backups", "verify", "--dir", s(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("DAMAGED, moved to"),
        "{}",
        stdout(&out)
    );
}

/// A scratch server, the source's twin, for restore tests.
fn scratch() -> RedisServer {
    RedisServer::start()
}

fn dbsize(server: &RedisServer) -> u64 {
    run(server, &mut redis::cmd("DBSIZE"))
}

#[test]
fn backups_test_passes_on_a_good_backup_and_leaves_the_scratch_empty() {
    let (server, seeded) = seeded();
    let dir = tempfile::tempdir().unwrap();
    ok(&[
        "backup",
        "--quiet",
        "--dir",
        s(dir.path()),
        "--redis",
        &server.url(),
    ]);
    let scratch = scratch();
    let out = kbdump(&[
        "--json",
        "backups",
        "test",
        "--dir",
        s(dir.path()),
        "--scratch",
        &scratch.url(),
    ]);
    let report = json_with_code(&out, 0);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["differences"], 0);
    assert!(report["restored"]["restored"].as_u64().unwrap() > 0);
    assert!(
        report["removed"].as_u64().unwrap() >= report["restored"]["restored"].as_u64().unwrap()
    );
    assert_eq!(dbsize(&scratch), 0, "the scratch server is empty again");
    let history: Json =
        serde_json::from_slice(&fs::read(dir.path().join("kbdump-tests.json")).unwrap()).unwrap();
    assert_eq!(history["last_ok"], true);
    // Healthy now: a fresh backup and a passed restore test.
    let report = check(dir.path(), &["--redis", &server.url()], 0);
    assert_eq!(alarms(&report), Vec::<String>::new(), "{report:#}");
    // A scratch server that holds anything is refused and keeps its keys.
    run::<()>(&scratch, redis::cmd("SET").arg("someone:else").arg("1"));
    let out = kbdump(&[
        "backups",
        "test",
        "--dir",
        s(dir.path()),
        "--scratch",
        &scratch.url(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("holds 1 keys"), "{}", stderr(&out));
    assert_eq!(dbsize(&scratch), 1);
    assert!(seeded.kato().len() > 10);
}

#[test]
fn backups_test_fails_on_a_damaged_backup_and_check_raises_it() {
    let (server, _) = seeded();
    let dir = tempfile::tempdir().unwrap();
    ok(&[
        "backup",
        "--quiet",
        "--dir",
        s(dir.path()),
        "--redis",
        &server.url(),
    ]);
    let file = dir.path().join(&backup_files(dir.path())[0]);
    damage_first_block(&file);
    let scratch = scratch();
    let out = kbdump(&[
        "--json",
        "backups",
        "test",
        "--dir",
        s(dir.path()),
        "--scratch",
        &scratch.url(),
    ]);
    let report = json_with_code(&out, 1);
    assert_eq!(report["ok"], false);
    assert!(
        !report["damaged"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert_eq!(dbsize(&scratch), 0, "emptied after a failed test too");
    let report = check(dir.path(), &[], 1);
    let raised = alarms(&report);
    assert!(
        raised.contains(&"restore_test_failed".to_string()),
        "{raised:?}"
    );
    assert!(
        raised.contains(&"restore_test_too_old".to_string()),
        "never passed: {raised:?}"
    );
}

#[test]
fn backups_check_raises_each_alarm_on_its_case_and_none_otherwise() {
    let (server, seeded) = seeded();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let no_tests = ["--max-test-age", "off"];
    // No backup at all.
    let report = check(d, &no_tests, 1);
    assert_eq!(alarms(&report), ["backup_too_old"]);
    // Too old, then fresh.
    synthetic_backup(d, kbdump::clock::system_now_ms() - 27 * HOUR, "kb1", 3);
    assert_eq!(alarms(&check(d, &no_tests, 1)), ["backup_too_old"]);
    assert_eq!(
        alarms(&check(d, &["--max-test-age", "off", "--max-age", "28h"], 0)),
        Vec::<String>::new()
    );
    for f in backup_files(d) {
        fs::remove_file(d.join(f)).unwrap();
    }
    ok(&["backup", "--quiet", "--dir", s(d), "--redis", &server.url()]);
    let url = server.url();
    let live = ["--max-test-age", "off", "--redis", url.as_str()];
    assert_eq!(alarms(&check(d, &live, 0)), Vec::<String>::new());
    // A kb_id loses 20% of its emotives on the server.
    let kb = seeded.kb_ids().into_iter().next().unwrap();
    let emotives: Vec<Vec<u8>> = seeded.of(&kb, SeedCategory::Emotives).into_iter().collect();
    let lost = &emotives[..emotives.len().div_ceil(5)];
    run::<()>(&server, redis::cmd("DEL").arg(lost));
    let report = check(d, &live, 1);
    assert_eq!(alarms(&report), ["key_count_drop"], "{report:#}");
    // ... and between the two newest backups once the next one is made
    // (the server now agrees with the newest backup).
    ok(&["backup", "--quiet", "--dir", s(d), "--redis", &server.url()]);
    assert_eq!(alarms(&check(d, &no_tests, 1)), ["key_count_drop"]);
    assert_eq!(alarms(&check(d, &live, 1)), ["key_count_drop"]);
    // A third backup with no change in between: healthy again.
    ok(&["backup", "--quiet", "--dir", s(d), "--redis", &server.url()]);
    assert_eq!(alarms(&check(d, &live, 0)), Vec::<String>::new());
    // A whole kb_id disappears from the server.
    let gone: Vec<Vec<u8>> = seeded.of_kb(&kb).into_iter().collect();
    run::<()>(&server, redis::cmd("DEL").arg(&gone));
    assert_eq!(alarms(&check(d, &live, 1)), ["kb_gone"]);
    ok(&["backup", "--quiet", "--dir", s(d), "--redis", &server.url()]);
    assert_eq!(alarms(&check(d, &no_tests, 1)), ["kb_gone"]);
    // The newest backup damaged (moved aside by verify).
    let newest = d.join(backup_files(d).last().unwrap());
    damage_first_block(&newest);
    json_with_code(&kbdump(&["--json", "backups", "verify", "--dir", s(d)]), 1);
    let raised = alarms(&check(d, &no_tests, 1));
    assert!(raised.contains(&"backup_damaged".to_string()), "{raised:?}");
    assert!(
        !raised.contains(&"backup_too_old".to_string()),
        "the previous one is fresh: {raised:?}"
    );
}

#[test]
fn backups_check_reads_the_servers_own_health() {
    // `dir` may be changed at run time (a save into a directory that is gone).
    let server = RedisServer::builder()
        .config("enable-protected-configs yes")
        .start();
    seed_kato(&mut server.client(), &SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&["backup", "--quiet", "--dir", s(d), "--redis", &server.url()]);
    let url = server.url();
    let live = ["--max-test-age", "off", "--redis", url.as_str()];
    assert_eq!(alarms(&check(d, &live, 0)), Vec::<String>::new());
    // Memory above 90% of maxmemory.
    let used: u64 = crate::support::redis::info_field(&server.info("memory"), "used_memory")
        .unwrap()
        .parse()
        .unwrap();
    run::<()>(
        &server,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(used * 105 / 100),
    );
    assert_eq!(alarms(&check(d, &live, 1)), ["memory_high"]);
    run::<()>(
        &server,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(used * 3),
    );
    assert_eq!(alarms(&check(d, &live, 0)), Vec::<String>::new());
    // Evictions: the counter rises between two checks.
    run::<()>(
        &server,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg("allkeys-lru"),
    );
    run::<()>(
        &server,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(used + 200_000),
    );
    let filler = "x".repeat(10_000);
    for i in 0..100 {
        run::<()>(
            &server,
            redis::cmd("SET").arg(format!("filler:{i}")).arg(&filler),
        );
    }
    let evicted: u64 = crate::support::redis::info_field(&server.info("stats"), "evicted_keys")
        .unwrap()
        .parse()
        .unwrap();
    assert!(evicted > 0, "the filler evicted nothing");
    let report = check(d, &live, 1);
    assert!(
        alarms(&report).contains(&"evictions".to_string()),
        "{report:#}"
    );
    run::<()>(
        &server,
        redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0),
    );
    for i in 0..100 {
        run::<()>(&server, redis::cmd("DEL").arg(format!("filler:{i}")));
    }
    // A failed background save: its directory is gone.
    let save_dir = tempfile::tempdir().unwrap();
    let gone = save_dir.path().join("rdb");
    fs::create_dir(&gone).unwrap();
    run::<()>(
        &server,
        redis::cmd("CONFIG").arg("SET").arg("dir").arg(s(&gone)),
    );
    fs::remove_dir(&gone).unwrap();
    run::<String>(&server, &mut redis::cmd("BGSAVE"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while crate::support::redis::info_field(&server.info("persistence"), "rdb_last_bgsave_status")
        .as_deref()
        != Some("err")
    {
        assert!(Instant::now() < deadline, "BGSAVE did not fail");
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = check(d, &live, 1);
    let raised = alarms(&report);
    assert!(
        raised.contains(&"persistence_error".to_string()),
        "{report:#}"
    );
    let finding = &report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["alarm"] == "persistence_error")
        .unwrap()["message"];
    assert!(
        finding
            .as_str()
            .unwrap()
            .contains("rdb_last_bgsave_status:err"),
        "{finding}"
    );
    // An unreachable server is "could not check".
    let out = kbdump(&[
        "backups",
        "check",
        "--dir",
        s(d),
        "--max-test-age",
        "off",
        "--redis",
        "redis://127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("could_not_check"), "{}", stdout(&out));
}

/// Runs promtool, the Prometheus project's own tool, on `args` with
/// `input` on stdin.
fn promtool(args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/provision.sh installs Debian's prometheus package)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.unwrap_or_default()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn the_prometheus_textfile_is_written_atomically_and_parses() {
    let (server, _) = seeded();
    // An awkward kb_id: quotes and backslashes must be escaped in labels.
    run::<()>(
        &server,
        redis::cmd("SET").arg("we\"ird\\kb:emotives:p1").arg("{}"),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&["backup", "--quiet", "--dir", s(d), "--redis", &server.url()]);
    let textfile_dir = tempfile::tempdir().unwrap();
    let prom = textfile_dir.path().join("kbdump.prom");
    fs::write(&prom, "old contents").unwrap();
    let out = kbdump(&[
        "backups",
        "check",
        "--quiet",
        "--dir",
        s(d),
        "--redis",
        &server.url(),
        "--prometheus",
        s(&prom),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "no restore test yet: {}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("restore_test_too_old"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        all_files(textfile_dir.path()),
        ["kbdump.prom"],
        "no temporary file left"
    );
    let text = fs::read(&prom).unwrap();
    let mode = fs::metadata(&prom).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "node-exporter must read it");
    let parsed = promtool(&["check", "metrics"], Some(&text));
    assert!(
        parsed.status.success(),
        "promtool rejects the textfile ({:?}): {}{}\n{}",
        parsed.status.code(),
        stdout(&parsed),
        stderr(&parsed),
        String::from_utf8_lossy(&text)
    );
    let text = String::from_utf8(text).unwrap();
    for alarm in [
        "backup_too_old",
        "key_count_drop",
        "memory_high",
        "persistence_error",
        "restore_test_too_old",
    ] {
        assert!(
            text.contains(&format!("alarm=\"{alarm}\"")),
            "{alarm} missing:\n{text}"
        );
    }
    assert!(
        text.contains("alarm=\"restore_test_too_old\",severity=\"warning\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("alarm=\"backup_too_old\",severity=\"critical\"} 0\n"),
        "{text}"
    );
    assert!(text.contains(r#"kb_id="we\"ird\\\\kb""#), "{text}");
    assert!(
        text.contains("kbdump_backup_last_success_timestamp_seconds{"),
        "{text}"
    );
    // A directory for the textfile that does not exist is an error.
    let out = kbdump(&[
        "backups",
        "check",
        "--dir",
        s(d),
        "--prometheus",
        s(&textfile_dir.path().join("no/such.prom")),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(path)
}

#[test]
fn the_alert_rules_pass_promtool_and_fire_on_the_runbooks_cases() {
    let rules = contrib("prometheus/kbdump-alerts.yml");
    let out = promtool(&["check", "rules", s(&rules)], None);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // promtool's rule unit tests: each alert fires on its series.
    let tests = contrib("prometheus/kbdump-alerts.test.yml");
    let out = Command::new("promtool")
        .args(["test", "rules", s(&tests)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn the_cron_file_parses_with_a_real_cron_parser_and_its_commands_run() {
    let text = fs::read_to_string(contrib("cron/kbdump")).unwrap();
    let mut jobs = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        assert!(
            !line.ends_with('\\'),
            "cron has no line continuation: {line}"
        );
        if line
            .split_whitespace()
            .next()
            .is_some_and(|w| w.contains('='))
        {
            continue; // an environment setting
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() > 6, "m h dom mon dow user command: {line}");
        let schedule = fields[..5].join(" ");
        schedule
            .parse::<croner::Cron>()
            .unwrap_or_else(|e| panic!("{schedule:?}: {e}"));
        let command = line[line.find(fields[6]).unwrap()..].to_string();
        assert!(
            !command.contains('%'),
            "cron turns % into newlines: {command}"
        );
        jobs.push((schedule, fields[5].to_string(), command));
    }
    assert_eq!(
        jobs.iter()
            .filter(|(_, _, c)| c.contains(" backup "))
            .count(),
        1,
        "{jobs:?}"
    );
    assert!(
        jobs.iter().any(|(_, _, c)| c.contains(" backups check ")),
        "{jobs:?}"
    );
    // Each command, as /bin/sh runs it for cron, with the paths moved into
    // a temporary directory: the backup job makes a verified backup and
    // the check job writes the metrics, with REDIS_URL from the env file.
    let (server, _) = seeded();
    let root = tempfile::tempdir().unwrap();
    let (env_file, backups, textfiles) = (
        root.path().join("kbdump.env"),
        root.path().join("backups"),
        root.path().join("textfile"),
    );
    fs::create_dir(&backups).unwrap();
    fs::create_dir(&textfiles).unwrap();
    fs::write(&env_file, format!("# test\nREDIS_URL={}\n", server.url())).unwrap();
    for (_, _, command) in &jobs {
        if command.contains(" backups test ") {
            continue; // needs a scratch server; tested on its own
        }
        let command = command
            .replace("/etc/kbdump/kbdump.env", s(&env_file))
            .replace("/var/lib/prometheus/node-exporter", s(&textfiles))
            .replace("/var/lib/kbdump", s(&backups))
            .replace("/usr/local/bin/kbdump", env!("CARGO_BIN_EXE_kbdump"));
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&command)
            .env_remove("REDIS_URL")
            .output()
            .unwrap();
        // The check job alarms (no restore test yet) and says so: cron mails it.
        if command.contains(" backups check ") {
            assert_eq!(
                out.status.code(),
                Some(1),
                "{command}: {}{}",
                stdout(&out),
                stderr(&out)
            );
            assert!(
                stdout(&out).contains("restore_test_too_old"),
                "{}",
                stdout(&out)
            );
        } else {
            assert!(
                out.status.success(),
                "{command}: {}{}",
                stdout(&out),
                stderr(&out)
            );
            assert_eq!(stdout(&out), "", "silent on success: {command}");
        }
    }
    let files = backup_files(&backups);
    assert_eq!(files.len(), 1);
    ok(&["verify", s(&backups.join(&files[0]))]);
    assert!(textfiles.join("kbdump.prom").exists());
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let root = tempfile::tempdir().unwrap();
    // verify checks that ExecStart's binary exists: point it at this build.
    for unit in [
        "kbdump-backup.service",
        "kbdump-backup.timer",
        "kbdump-check.service",
        "kbdump-check.timer",
        "kbdump-mirror-follow.service",
        "kbdump-restore-test.service",
        "kbdump-restore-test.timer",
    ] {
        let text = fs::read_to_string(contrib(&format!("systemd/{unit}"))).unwrap();
        assert!(
            text.contains("EnvironmentFile=") || unit.ends_with(".timer"),
            "{unit}"
        );
        assert!(
            !text.contains("redis://"),
            "{unit}: no URL (and so no password) in a unit"
        );
        let text = text.replace("/usr/local/bin/kbdump", env!("CARGO_BIN_EXE_kbdump"));
        fs::write(root.path().join(unit), text).unwrap();
    }
    let units: Vec<PathBuf> = fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stderr(&out), "", "no warnings either");
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_definitions() {
    let bash = stdout(&ok(&["completions", "bash"]));
    assert!(
        bash.contains("backups") && bash.contains("--keep-daily"),
        "{bash}"
    );
    let zsh = stdout(&ok(&["completions", "zsh"]));
    assert!(zsh.contains("#compdef kbdump"));
    let man = stdout(&ok(&["man"]));
    assert!(
        man.starts_with(".ie") || man.contains(".TH kbdump"),
        "{}",
        &man[..200.min(man.len())]
    );
    let dir = tempfile::tempdir().unwrap();
    ok(&["man", "--quiet", "--dir", s(dir.path())]);
    let pages = all_files(dir.path());
    for page in [
        "kbdump.1",
        "kbdump-backup.1",
        "kbdump-backups-check.1",
        "kbdump-backups-test.1",
    ] {
        assert!(
            pages.contains(&page.to_string()),
            "{page} missing: {pages:?}"
        );
    }
}
