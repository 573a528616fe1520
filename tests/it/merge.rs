//! Merge mode against real servers: `restore --mode merge` (and `copy`)
//! puts archived values together with live ones per category policy —
//! frequencies take the larger count, affinity hashes gain the fields they
//! lack, KATO metadata is unioned exactly as KATO's Python writes it,
//! emotives and the derivable categories keep the live value — while keys
//! missing on the target are restored as in missing mode. Conflicts keep
//! the live value and are listed; a dry run writes nothing; a concurrent
//! `INCR` is never lost; the undo archive puts back what the merge changed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::support::cli::*;
use crate::support::redis::{Flavor, RedisServer};
use crate::support::seed::{KeySnapshot, Snapshot, Value as SnapValue};
use kbdump::format::dump::json::bytes_from_json;
use serde_json::Value as Json;

const KB: &str = "node0_kato";

fn key(category: &str, name: &str) -> Vec<u8> {
    format!("{KB}:{category}:{name}").into_bytes()
}

/// A pattern name (SHA1-hex shaped, as KATO's are).
fn pattern(n: u32) -> String {
    format!("{n:040x}")
}

fn set(server: &RedisServer, key: &[u8], value: &str) {
    let _: () = run(server, redis::cmd("SET").arg(key).arg(value));
}

fn get(server: &RedisServer, key: &[u8]) -> Option<Vec<u8>> {
    run(server, redis::cmd("GET").arg(key))
}

fn hset(server: &RedisServer, key: &[u8], fields: &[(&str, &str)]) {
    let _: i64 = run(server, redis::cmd("DEL").arg(key));
    for (f, v) in fields {
        let _: i64 = run(server, redis::cmd("HSET").arg(key).arg(f).arg(v));
    }
}

fn del(server: &RedisServer, key: &[u8]) {
    let n: i64 = run(server, redis::cmd("DEL").arg(key));
    assert_eq!(n, 1, "{} existed", show(key));
}

fn pttl(server: &RedisServer, key: &[u8]) -> i64 {
    run(server, redis::cmd("PTTL").arg(key))
}

/// `kbdump --json restore FILE --mode merge EXTRA...`: exit code and report.
fn merge(file: &Path, server: &RedisServer, extra: &[&str]) -> (Option<i32>, Json) {
    let mut args = vec!["--mode", "merge"];
    args.extend_from_slice(extra);
    restore_json(file, server, &args)
}

/// One counter of one (kb_id, category) cell of a report.
fn cell(report: &Json, category: &str, field: &str) -> u64 {
    let cells = cells(report);
    let cell = cells
        .get(&(KB.to_string(), category.to_string()))
        .unwrap_or_else(|| panic!("no {category} cell in {report:#}"));
    cell[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in the {category} cell: {report:#}"))
}

/// `(restored, merged, kept, conflicts)` of a category.
fn counts(report: &Json, category: &str) -> (u64, u64, u64, u64) {
    (
        cell(report, category, "restored"),
        cell(report, category, "merged"),
        cell(report, category, "kept"),
        cell(report, category, "conflicts"),
    )
}

/// The keys the report lists as conflicts.
fn conflict_keys(report: &Json) -> Vec<String> {
    let mut keys: Vec<String> = report["conflicts"]
        .as_array()
        .unwrap_or_else(|| panic!("no conflicts list: {report:#}"))
        .iter()
        .map(|c| c["what"].as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

// ---------------------------------------------------------------------------
// The scenario: one knowledge base, archived, then changed the way an
// eviction, a rebuild and KATO's own learning change it.

/// KATO-shaped metadata as archived, as live after a re-learn, and the
/// union KATO's Python writes. Computed with python3:
/// `live = json.loads(LIVE); arch = json.loads(ARCHIVED); m = {k:
/// sorted(set(v) | set(arch.get(k, []))) for k, v in live.items()};
/// m.update({k: sorted(v) for k, v in arch.items() if k not in m});
/// json.dumps(m)`.
const META_ARCHIVED: &str = r#"{"book": ["Alice"], "chapter": ["1", "2"]}"#;
const META_LIVE: &str = r#"{"chapter": ["3", "2"], "source": ["\u00fc\u2713 \"q\""]}"#;
const META_MERGED: &str =
    r#"{"chapter": ["1", "2", "3"], "source": ["\u00fc\u2713 \"q\""], "book": ["Alice"]}"#;

struct Scenario {
    server: RedisServer,
    dir: tempfile::TempDir,
    archive: std::path::PathBuf,
    /// The server when it was archived.
    archived: Snapshot,
    /// The server just before the merge.
    live: Snapshot,
}

impl Scenario {
    fn start(flavor: Flavor) -> Scenario {
        let server = RedisServer::start_flavor(flavor);
        let dir = tempfile::tempdir().unwrap();
        archive_state(&server);
        let archived = snap(&server);
        let archive = export(&server, dir.path(), "before.kbd", &["--kb", KB]);
        live_state(&server);
        let live = snap(&server);
        Scenario {
            server,
            dir,
            archive,
            archived,
            live,
        }
    }

    /// What a default merge leaves on the server.
    fn merged(&self) -> Snapshot {
        let mut expected = self.live.clone();
        let mut put = |k: Vec<u8>, v: KeySnapshot| {
            expected.insert(k, v);
        };
        let mut freq = self.live[&key("frequency", &pattern(1))].clone();
        freq.value = SnapValue::String(b"20".to_vec());
        put(key("frequency", &pattern(1)), freq);
        for restored in [
            key("frequency", &pattern(3)),
            key("affinity", "lost symbol"),
            key("metadata", &pattern(3)),
            key("emotives", &pattern(2)),
        ] {
            put(restored.clone(), self.archived[&restored].clone());
        }
        let mut affinity = self.live[&key("affinity", "joy symbol")].clone();
        affinity.value = SnapValue::Hash(pairs(&[
            ("fear", "0.1"),
            ("joy", "0.9"),
            ("utility", "-1.2"),
        ]));
        put(key("affinity", "joy symbol"), affinity);
        let mut meta = self.live[&key("metadata", &pattern(1))].clone();
        meta.value = SnapValue::String(META_MERGED.as_bytes().to_vec());
        put(key("metadata", &pattern(1)), meta);
        expected
    }
}

fn pairs(fields: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    fields
        .iter()
        .map(|(f, v)| (f.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

/// The knowledge base as it was when archived.
fn archive_state(server: &RedisServer) {
    for (n, count) in [(1, "20"), (2, "3"), (3, "7"), (4, "5"), (5, "4")] {
        set(server, &key("frequency", &pattern(n)), count);
    }
    let _: i64 = run(
        server,
        redis::cmd("PEXPIRE")
            .arg(key("frequency", &pattern(3)))
            .arg(7_200_000),
    );
    hset(
        server,
        &key("affinity", "joy symbol"),
        &[("joy", "0.4"), ("utility", "-1.2")],
    );
    hset(server, &key("affinity", "superset"), &[("a", "1")]);
    hset(server, &key("affinity", "lost symbol"), &[("joy", "0.2")]);
    hset(server, &key("affinity", "now a string"), &[("joy", "0.3")]);
    set(server, &key("metadata", &pattern(1)), META_ARCHIVED);
    set(server, &key("metadata", &pattern(2)), r#"{"tag": ["x"]}"#);
    set(
        server,
        &key("metadata", &pattern(3)),
        r#"{"tag": ["lost"]}"#,
    );
    set(server, &key("metadata", &pattern(4)), r#"{"tag": ["y"]}"#);
    set(server, &key("emotives", &pattern(1)), r#"[{"joy": 0.4}]"#);
    set(server, &key("emotives", &pattern(2)), r#"[{"fear": 0.7}]"#);
    hset(server, &key("symbols", "freq"), &[("a", "3")]);
}

/// The same knowledge base after an eviction, a rebuild (frequencies
/// floored at 1) and some learning.
fn live_state(server: &RedisServer) {
    set(server, &key("frequency", &pattern(1)), "1");
    let _: i64 = run(
        server,
        redis::cmd("EXPIRE")
            .arg(key("frequency", &pattern(1)))
            .arg(3600),
    );
    set(server, &key("frequency", &pattern(2)), "9");
    del(server, &key("frequency", &pattern(3)));
    set(server, &key("frequency", &pattern(5)), "not a number");
    hset(
        server,
        &key("affinity", "joy symbol"),
        &[("joy", "0.9"), ("fear", "0.1")],
    );
    hset(
        server,
        &key("affinity", "superset"),
        &[("a", "1"), ("b", "2")],
    );
    del(server, &key("affinity", "lost symbol"));
    del(server, &key("affinity", "now a string"));
    set(server, &key("affinity", "now a string"), "oops");
    set(server, &key("metadata", &pattern(1)), META_LIVE);
    del(server, &key("metadata", &pattern(3)));
    set(server, &key("metadata", &pattern(4)), "{not json");
    set(server, &key("emotives", &pattern(1)), r#"[{"joy": 0.9}]"#);
    del(server, &key("emotives", &pattern(2)));
    hset(server, &key("symbols", "freq"), &[("a", "1")]);
}

/// The keys a default merge of the scenario lists as conflicts.
fn scenario_conflicts() -> Vec<String> {
    let mut keys = vec![
        show(&key("frequency", &pattern(5))),
        show(&key("affinity", "now a string")),
        show(&key("metadata", &pattern(4))),
    ];
    keys.sort();
    keys
}

fn default_merge_puts_live_and_archived_together(flavor: Flavor) {
    let s = Scenario::start(flavor);
    let (code, report) = merge(&s.archive, &s.server, &[]);
    // Conflicts keep the live value: the run completes but does not say OK.
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["mode"], "merge");
    assert_eq!(counts(&report, "frequency"), (1, 1, 2, 1));
    assert_eq!(counts(&report, "affinity"), (1, 1, 1, 1));
    assert_eq!(counts(&report, "metadata"), (1, 1, 1, 1));
    assert_eq!(counts(&report, "emotives"), (1, 0, 1, 0));
    assert_eq!(counts(&report, "symbols"), (0, 0, 1, 0));
    assert_eq!(total(&report, "failed"), 0);
    assert_eq!(conflict_keys(&report), scenario_conflicts());
    assert_same(&s.merged(), &snap(&s.server));
    // Byte for byte what KATO writes, and the live expiry kept.
    assert_eq!(
        get(&s.server, &key("metadata", &pattern(1))).unwrap(),
        META_MERGED.as_bytes()
    );
    assert!(pttl(&s.server, &key("frequency", &pattern(1))) > 3_000_000);

    // A second run finds nothing left to merge.
    let before = snap(&s.server);
    let (code, again) = merge(&s.archive, &s.server, &[]);
    assert_eq!(code, Some(1), "{again:#}");
    assert_eq!((total(&again, "restored"), total(&again, "merged")), (0, 0));
    assert_eq!(total(&again, "conflicts"), 3);
    assert_same(&before, &snap(&s.server));
}

#[test]
fn default_merge_on_redis_7_0() {
    default_merge_puts_live_and_archived_together(Flavor::Redis70);
}

#[test]
fn default_merge_on_valkey_9_1() {
    default_merge_puts_live_and_archived_together(Flavor::Valkey91);
}

#[test]
fn default_merge_on_redis_6_2() {
    default_merge_puts_live_and_archived_together(Flavor::Redis62);
}

#[test]
fn text_report_has_merge_columns_and_lists_conflicts() {
    let s = Scenario::start(Flavor::Redis70);
    let url = s.server.url();
    let out = kbdump(&[
        "restore",
        s.archive.to_str().unwrap(),
        "--redis",
        &url,
        "--mode",
        "merge",
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("mode merge"), "{text}");
    assert!(
        text.contains("merged") && text.contains("conflicts"),
        "{text}"
    );
    for k in scenario_conflicts() {
        assert!(text.contains(&format!("conflict: {k}: ")), "{k}:\n{text}");
    }
    assert!(
        text.contains("frequency=max"),
        "the policies in effect: {text}"
    );
}

#[test]
fn dry_run_writes_nothing_and_shows_each_change() {
    let s = Scenario::start(Flavor::Redis70);
    let (code, dry) = merge(&s.archive, &s.server, &["--dry-run"]);
    assert_eq!(code, Some(1), "{dry:#}");
    assert_eq!(dry["dry_run"], true);
    assert_same(&s.live, &snap(&s.server));
    assert_eq!(
        std::fs::read_dir(s.dir.path()).unwrap().count(),
        1,
        "no undo"
    );

    let plan: BTreeMap<String, Json> = dry["plan"]
        .as_array()
        .unwrap_or_else(|| panic!("no plan: {dry:#}"))
        .iter()
        .map(|e| (e["key"].as_str().unwrap().to_string(), e.clone()))
        .collect();
    let entry = |k: Vec<u8>| {
        plan.get(&show(&k))
            .unwrap_or_else(|| panic!("{} not in the plan: {dry:#}", show(&k)))
            .clone()
    };
    let value = |j: &Json| bytes_from_json(&j["value"], "value").unwrap();
    let freq = entry(key("frequency", &pattern(1)));
    assert_eq!(freq["action"], "merge");
    assert_eq!(freq["policy"], "max");
    assert_eq!(value(&freq["old"]), b"1");
    assert_eq!(value(&freq["new"]), b"20");
    let meta = entry(key("metadata", &pattern(1)));
    assert_eq!(value(&meta["old"]), META_LIVE.as_bytes());
    assert_eq!(value(&meta["new"]), META_MERGED.as_bytes());
    let lost = entry(key("frequency", &pattern(3)));
    assert_eq!(lost["action"], "restore");
    assert!(lost["old"].is_null());
    assert_eq!(value(&lost["new"]), b"7");
    let conflict = entry(key("frequency", &pattern(5)));
    assert_eq!(conflict["action"], "conflict");
    assert!(conflict["reason"].as_str().unwrap().contains("integer"));
    // Kept keys are counted, not listed.
    assert!(!plan.contains_key(&show(&key("frequency", &pattern(2)))));
    assert_eq!(dry["plan_omitted"], 0);

    // The dry run predicts the real run.
    let (_, real) = merge(&s.archive, &s.server, &[]);
    assert_eq!(dry["total"], real["total"]);
    assert_eq!(dry["contents"], real["contents"]);
    assert_eq!(dry["conflicts"], real["conflicts"]);
}

#[test]
fn dry_run_lists_a_bounded_number_of_keys() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let n = 250;
    for i in 0..n {
        set(&server, &key("frequency", &pattern(i)), "10");
    }
    let archive = export(&server, dir.path(), "a.kbd", &[]);
    for i in 0..n {
        set(&server, &key("frequency", &pattern(i)), "1");
    }
    let (code, dry) = merge(&archive, &server, &["--dry-run"]);
    assert_eq!(code, Some(0), "{dry:#}");
    let listed = dry["plan"].as_array().unwrap().len() as u64;
    assert!(listed > 0 && listed < n as u64, "{listed} listed");
    assert_eq!(listed + dry["plan_omitted"].as_u64().unwrap(), n as u64);
    assert_eq!(total(&dry, "merged"), n as u64);
}

#[test]
fn policy_overrides_replace_emotives_and_keep_frequencies() {
    let s = Scenario::start(Flavor::Redis70);
    let policies = ["--policy", "emotives=replace", "--policy", "frequency=keep"];
    let (_, dry) = merge(
        &s.archive,
        &s.server,
        &[&policies[..], &["--dry-run"]].concat(),
    );
    assert_same(&s.live, &snap(&s.server));
    let (code, report) = merge(&s.archive, &s.server, &policies);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(dry["contents"], report["contents"]);
    assert_eq!(report["policies"]["emotives"], "replace");
    assert_eq!(report["policies"]["frequency"], "keep");
    assert_eq!(report["policies"]["metadata"], "union");
    assert_eq!(counts(&report, "emotives"), (1, 1, 0, 0));
    assert_eq!(counts(&report, "frequency"), (1, 0, 4, 0));
    let mut expected = s.merged();
    expected.insert(
        key("frequency", &pattern(1)),
        s.live[&key("frequency", &pattern(1))].clone(),
    );
    expected.insert(
        key("emotives", &pattern(1)),
        s.archived[&key("emotives", &pattern(1))].clone(),
    );
    assert_same(&expected, &snap(&s.server));
}

#[test]
fn a_policy_that_does_not_fit_the_values_is_a_conflict() {
    let s = Scenario::start(Flavor::Redis70);
    let (code, report) = merge(&s.archive, &s.server, &["--policy", "frequency=union"]);
    assert_eq!(code, Some(1), "{report:#}");
    // Integer strings are not hashes, sets or JSON objects of lists: every
    // frequency that differs is a conflict; the equal one and the lost one
    // are fine.
    assert_eq!(counts(&report, "frequency"), (1, 0, 1, 3));
    let reasons: Vec<&str> = report["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["what"].as_str().unwrap().contains(":frequency:"))
        .map(|c| c["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.iter().all(|r| r.contains("union")), "{reasons:?}");
    assert_eq!(
        get(&s.server, &key("frequency", &pattern(1))).unwrap(),
        b"1",
        "the live value is kept"
    );
}

#[test]
fn bad_policy_arguments_are_usage_errors() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    set(&server, &key("frequency", &pattern(1)), "1");
    let archive = export(&server, dir.path(), "a.kbd", &[]);
    let before = snap(&server);
    let file = archive.to_str().unwrap();
    let url = server.url();
    let attempt = |extra: &[&str]| {
        let mut args = vec!["restore", file, "--redis", &url];
        args.extend_from_slice(extra);
        let out = kbdump(&args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stdout(&out));
        stderr(&out)
    };
    let err = attempt(&["--mode", "merge", "--policy", "nosuch=max"]);
    assert!(err.contains("nosuch"), "{err}");
    assert!(
        err.contains("frequency, emotives, metadata, affinity"),
        "names the known categories: {err}"
    );
    let err = attempt(&["--mode", "merge", "--policy", "frequency=biggest"]);
    assert!(err.contains("max, union, keep, replace"), "{err}");
    let err = attempt(&["--mode", "merge", "--policy", "frequency"]);
    assert!(err.contains("CATEGORY=POLICY"), "{err}");
    let err = attempt(&["--policy", "frequency=max"]);
    assert!(err.contains("--mode merge"), "{err}");
    assert_same(&before, &snap(&server));
}

#[test]
fn undo_of_a_merge_puts_back_the_keys_it_changed() {
    let s = Scenario::start(Flavor::Redis70);
    let undo = s.dir.path().join("undo.kbd");
    let (code, report) = merge(&s.archive, &s.server, &["--undo", undo.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{report:#}");
    // Exactly the keys the merge changed were saved, and the keys it
    // restored as absent (they did not exist).
    let (merged, restored) = (total(&report, "merged"), total(&report, "restored"));
    assert_eq!(restored, 4, "{report:#}");
    assert_eq!(report["saved_for_undo"], merged + restored, "{report:#}");
    assert_eq!(report["undo_absent"], restored, "{report:#}");
    assert_eq!(report["undo_archive"], undo.to_str().unwrap());
    assert_same(&s.merged(), &snap(&s.server));

    let undo2 = s.dir.path().join("undo2.kbd");
    restore_ok(
        &undo,
        &s.server,
        &[
            "--mode",
            "replace",
            "--yes",
            "--undo",
            undo2.to_str().unwrap(),
        ],
    );
    // Back exactly as before the merge: the keys it restored because they
    // were missing are deleted again.
    assert_same(&s.live, &snap(&s.server));
}

#[test]
fn copy_merges_into_the_target() {
    let source = RedisServer::start();
    let target = RedisServer::start_flavor(Flavor::Valkey91);
    archive_state(&source);
    archive_state(&target);
    live_state(&target);
    let archived = snap(&source);
    let dir = tempfile::tempdir().unwrap();
    let undo = dir.path().join("u.kbd");
    let out = kbdump(&[
        "--json",
        "copy",
        "--quiet",
        "--from",
        &source.url(),
        "--to",
        &target.url(),
        "--kb",
        KB,
        "--mode",
        "merge",
        "--undo",
        undo.to_str().unwrap(),
    ]);
    let report = json_with_code(&out, 1);
    assert_eq!(counts(&report, "frequency"), (1, 1, 2, 1));
    assert_eq!(get(&target, &key("frequency", &pattern(1))).unwrap(), b"20");
    assert_eq!(
        get(&target, &key("metadata", &pattern(1))).unwrap(),
        META_MERGED.as_bytes()
    );
    assert_eq!(
        snap(&target)[&key("emotives", &pattern(2))].value,
        archived[&key("emotives", &pattern(2))].value
    );
}

// ---------------------------------------------------------------------------
// A writer that INCRs frequencies while the merge runs.

/// The archived counts of the keys the writer hammers, against a live
/// value of 1: some the writer overtakes during the run, some it never
/// reaches, some below the live value.
const HOT_ARCHIVED: [i64; 8] = [2, 5, 20, 60, 200, 1_000_000, 0, 1];
const HOT_KEYS: u32 = 40;
const COLD_KEYS: u32 = 3000;

#[test]
fn a_concurrent_incr_is_never_lost() {
    for flavor in [Flavor::Redis70, Flavor::Valkey91] {
        concurrent_incr_case(flavor);
    }
}

fn hot_archived(i: u32) -> i64 {
    HOT_ARCHIVED[i as usize % HOT_ARCHIVED.len()]
}

fn concurrent_incr_case(flavor: Flavor) {
    let server = RedisServer::start_flavor(flavor);
    let dir = tempfile::tempdir().unwrap();
    let hot: Vec<Vec<u8>> = (0..HOT_KEYS)
        .map(|i| key("frequency", &pattern(i)))
        .collect();
    let cold: Vec<Vec<u8>> = (0..COLD_KEYS)
        .map(|i| key("frequency", &pattern(HOT_KEYS + i)))
        .collect();
    let archived = hot
        .iter()
        .enumerate()
        .map(|(i, k)| (k, hot_archived(i as u32)))
        .chain(cold.iter().enumerate().map(|(i, k)| (k, 100 + i as i64)));
    set_many(&server, archived);
    let archive = export(&server, dir.path(), "a.kbd", &[]);
    // The rebuild: every count floored at 1.
    set_many(&server, hot.iter().chain(&cold).map(|k| (k, 1)));

    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let (returns, report) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| incr_until(&server, &hot, &stop, &done));
        // Stops the writer however this closure ends, so a failing merge
        // fails the test instead of hanging it.
        let _stop = StopOnDrop(&stop);
        // The writer is under way before the merge starts and still at it
        // after the merge ends (waiting on its progress, not on a clock).
        wait_for(&done, 2 * HOT_KEYS as u64, &writer);
        let (code, report) = merge(&archive, &server, &[]);
        let after = done.load(Ordering::SeqCst);
        wait_for(&done, after + 2 * HOT_KEYS as u64, &writer);
        stop.store(true, Ordering::SeqCst);
        assert_eq!(code, Some(0), "{report:#}");
        (writer.join().unwrap(), report)
    });

    let mut raised_between_incrs = 0;
    for (i, k) in hot.iter().enumerate() {
        let final_value: i64 = String::from_utf8(get(&server, k).unwrap())
            .unwrap()
            .parse()
            .unwrap();
        raised_between_incrs +=
            check_incr_sequence(k, 1, hot_archived(i as u32), &returns[i], final_value) as u32;
    }
    assert!(
        raised_between_incrs > 0,
        "the merge must land between INCRs of some key for this test to mean anything"
    );
    for (i, k) in cold.iter().enumerate() {
        assert_eq!(get(&server, k).unwrap(), (100 + i).to_string().as_bytes());
    }
    assert_eq!(total(&report, "failed"), 0);
}

/// SETs many counts in one pipeline.
fn set_many<K: AsRef<[u8]>>(server: &RedisServer, counts: impl IntoIterator<Item = (K, i64)>) {
    let mut pipe = redis::pipe();
    for (k, n) in counts {
        pipe.cmd("SET").arg(k.as_ref()).arg(n).ignore();
    }
    let _: () = pipe.query(&mut server.client()).unwrap();
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// INCRs the keys round-robin until `stop`, returning each key's replies.
fn incr_until(
    server: &RedisServer,
    keys: &[Vec<u8>],
    stop: &AtomicBool,
    done: &AtomicU64,
) -> Vec<Vec<i64>> {
    let mut conn = server.client();
    let mut returns = vec![Vec::new(); keys.len()];
    while !stop.load(Ordering::SeqCst) {
        for (i, k) in keys.iter().enumerate() {
            let n: i64 = redis::cmd("INCR").arg(k).query(&mut conn).unwrap();
            returns[i].push(n);
            done.fetch_add(1, Ordering::SeqCst);
        }
    }
    returns
}

fn wait_for<T>(counter: &AtomicU64, at_least: u64, writer: &std::thread::ScopedJoinHandle<T>) {
    while counter.load(Ordering::SeqCst) < at_least {
        assert!(!writer.is_finished(), "the writer stopped");
        std::thread::yield_now();
    }
}

/// Checks one key's history: the writer's INCR replies must climb by one,
/// except at most once, where the merge raised the value to
/// `max(archived, value then)`; the final value is the last reply (or the
/// merge's value, when it came after every INCR). So every INCR shows in
/// the final value and the merge never lowered a count. Returns whether
/// the merge raised the count between two INCRs.
fn check_incr_sequence(
    key: &[u8],
    before: i64,
    archived: i64,
    replies: &[i64],
    final_value: i64,
) -> bool {
    let k = show(key);
    let mut value = before;
    let mut merged_at: Option<usize> = None;
    for (i, &reply) in replies.iter().enumerate() {
        if reply != value + 1 {
            assert!(
                merged_at.is_none(),
                "{k}: a second jump at INCR {i}: {replies:?}"
            );
            assert!(archived > value, "{k}: raised above a larger live value");
            assert_eq!(reply, archived + 1, "{k}: INCR {i} after the merge");
            merged_at = Some(i);
        }
        value = reply;
    }
    let expected = if merged_at.is_none() && archived > value {
        // The merge came after the last INCR.
        archived
    } else {
        value
    };
    assert_eq!(final_value, expected, "{k}: replies {replies:?}");
    merged_at.is_some_and(|i| i > 0)
}

// ---------------------------------------------------------------------------
// The README's recipe, as pasted.

/// The command lines of the first `sh` block after `heading` in README.md.
fn readme_block(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = &readme[readme.find(heading).expect("the recipe's heading")..];
    let block = &section[section.find("```sh\n").expect("an sh block") + 6..];
    let block = &block[..block.find("```").expect("the block's end")];
    block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn readme_recipe_merges_the_real_counts_back() {
    let commands = readme_block("### A rebuild reset frequencies to 1");
    assert!(commands.iter().any(|c| c.contains("--mode merge")));
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let freq = |n: u32| key("frequency", &pattern(n));
    set_many(&server, (0..20).map(|n| (freq(n), 10 + i64::from(n))));
    set(
        &server,
        &key("metadata", &pattern(1)),
        r#"{"book": ["Alice"]}"#,
    );
    export(&server, dir.path(), "node0.kbd", &["--kb", KB]);
    // Evicted, rebuilt (floored at 1), counted on by KATO: one pattern
    // was seen often since, and its metadata grew.
    set_many(&server, (0..20).map(|n| (freq(n), 1)));
    set(&server, &freq(7), "500");
    set(
        &server,
        &key("metadata", &pattern(1)),
        r#"{"book": ["Dinah"]}"#,
    );

    let bin = Path::new(env!("CARGO_BIN_EXE_kbdump")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    for command in &commands {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(dir.path())
            .env("REDIS_URL", server.url())
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{command}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    for n in 0..20 {
        let want = if n == 7 { 500 } else { 10 + n };
        assert_eq!(get(&server, &freq(n)).unwrap(), want.to_string().as_bytes());
    }
    assert_eq!(
        get(&server, &key("metadata", &pattern(1))).unwrap(),
        br#"{"book": ["Alice", "Dinah"]}"#
    );
}

#[tokio::test]
async fn restore_from_the_clickhouse_mirror_merges_too() {
    let ch = crate::support::clickhouse::server();
    let url = ch.url(&ch.database("merge_from_mirror").await);
    let server = RedisServer::start();
    archive_state(&server);
    let redis_url = server.url();
    ok(&[
        "mirror",
        "--create",
        "--quiet",
        "--redis",
        &redis_url,
        "--clickhouse",
        &url,
        "--kb",
        KB,
    ]);
    live_state(&server);
    let dir = tempfile::tempdir().unwrap();
    let undo = dir.path().join("u.kbd");
    let (code, report, err) = json_outcome(&[
        "restore",
        "--quiet",
        "--from-clickhouse",
        &url,
        "--redis",
        &redis_url,
        "--kb",
        KB,
        "--mode",
        "merge",
        "--undo",
        undo.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{err}{report:#}");
    // The mirror holds the categories that exist only in Redis.
    assert_eq!(counts(&report, "frequency"), (1, 1, 2, 1));
    assert_eq!(counts(&report, "metadata"), (1, 1, 1, 1));
    assert_eq!(counts(&report, "affinity"), (1, 1, 1, 1));
    assert_eq!(counts(&report, "emotives"), (1, 0, 1, 0));
    assert_eq!(get(&server, &key("frequency", &pattern(1))).unwrap(), b"20");
}
