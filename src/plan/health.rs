//! The alarms of `backups check`, decided from facts with the instant
//! passed in: the backups in a directory (from their headers and indexes),
//! the last restore test, and optionally a live server's own INFO fields
//! and key counts. Nothing here reads a file or a socket.
//!
//! Every alarm of the runbook is one [`Alarm`]; a check yields one
//! [`Finding`] per thing at fault, naming what and why.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::kato::{display_bytes, Category};

/// Key counts per kb_id and category.
pub type Cells = BTreeMap<Vec<u8>, BTreeMap<Category, u64>>;

/// How bad an alarm is (the runbook's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Every alarm `backups check` raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Alarm {
    /// The newest good backup is older than `--max-age`, or there is none.
    BackupTooOld,
    /// The newest backup in the directory failed verification.
    BackupDamaged,
    /// A kb_id x category lost more than `--max-drop` of its keys.
    KeyCountDrop,
    /// A kb_id that was there before is gone.
    KbGone,
    /// The server reports a failed RDB save, AOF write or AOF rewrite.
    PersistenceError,
    /// Changes are waiting and the server's last RDB save is too old.
    LastSaveTooOld,
    /// `used_memory` above `--max-memory-pct` of `maxmemory`.
    MemoryHigh,
    /// `evicted_keys` rose since the previous check.
    Evictions,
    /// No successful restore test within `--max-test-age`.
    RestoreTestTooOld,
    /// The last restore test failed.
    RestoreTestFailed,
}

impl Alarm {
    pub const ALL: [Alarm; 10] = [
        Alarm::BackupTooOld,
        Alarm::BackupDamaged,
        Alarm::KeyCountDrop,
        Alarm::KbGone,
        Alarm::PersistenceError,
        Alarm::LastSaveTooOld,
        Alarm::MemoryHigh,
        Alarm::Evictions,
        Alarm::RestoreTestTooOld,
        Alarm::RestoreTestFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Alarm::BackupTooOld => "backup_too_old",
            Alarm::BackupDamaged => "backup_damaged",
            Alarm::KeyCountDrop => "key_count_drop",
            Alarm::KbGone => "kb_gone",
            Alarm::PersistenceError => "persistence_error",
            Alarm::LastSaveTooOld => "last_save_too_old",
            Alarm::MemoryHigh => "memory_high",
            Alarm::Evictions => "evictions",
            Alarm::RestoreTestTooOld => "restore_test_too_old",
            Alarm::RestoreTestFailed => "restore_test_failed",
        }
    }

    /// The runbook's severities: no backup and memory are critical, the
    /// rest warnings; a damaged newest backup or a failed restore test
    /// means the backup cannot be relied on, so they are critical too.
    pub fn severity(self) -> Severity {
        match self {
            Alarm::BackupTooOld
            | Alarm::BackupDamaged
            | Alarm::MemoryHigh
            | Alarm::RestoreTestFailed => Severity::Critical,
            _ => Severity::Warning,
        }
    }
}

/// One thing at fault.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub alarm: Alarm,
    pub severity: Severity,
    /// What is at fault (a file, a kb_id x category, a server field).
    pub subject: String,
    /// Why, with the numbers.
    pub message: String,
}

impl Finding {
    fn new(alarm: Alarm, subject: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding {
            alarm,
            severity: alarm.severity(),
            subject: subject.into(),
            message: message.into(),
        }
    }
}

/// What a check knows of one backup file.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupFacts {
    pub name: String,
    /// When the backup was made (unix ms).
    pub created_ms: i64,
    /// False for a file that failed verification or does not open, and
    /// for an encrypted one that nothing describes.
    pub good: bool,
    /// Encrypted and not opened: `good` rests on its summary and its
    /// size, its contents were not checked.
    pub sealed: bool,
    /// Why it is not good, when known.
    pub problem: Option<String>,
    /// The selection it was made with, so that only like is compared
    /// with like.
    pub selection: String,
    /// Whether the selection narrowed keys with `--match` (then the live
    /// server's counts are not comparable).
    pub matched: bool,
    pub cells: Cells,
}

/// A server's INFO fields that tell whether it keeps its data safe.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerHealth {
    pub rdb_last_bgsave_status: Option<String>,
    pub aof_enabled: bool,
    pub aof_last_write_status: Option<String>,
    pub aof_last_bgrewrite_status: Option<String>,
    /// Unix seconds of the last successful RDB save.
    pub rdb_last_save_time: Option<i64>,
    pub rdb_changes_since_last_save: u64,
    pub used_memory: u64,
    pub maxmemory: u64,
    pub evicted_keys: u64,
}

impl ServerHealth {
    /// Reads the fields from the text of `INFO` (any sections).
    pub fn from_info(text: &str) -> ServerHealth {
        let fields: BTreeMap<&str, &str> = text
            .lines()
            .filter_map(|line| line.trim_end().split_once(':'))
            .collect();
        let text = |name: &str| fields.get(name).map(|v| v.to_string());
        let number = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok());
        ServerHealth {
            rdb_last_bgsave_status: text("rdb_last_bgsave_status"),
            aof_enabled: fields.get("aof_enabled") == Some(&"1"),
            aof_last_write_status: text("aof_last_write_status"),
            aof_last_bgrewrite_status: text("aof_last_bgrewrite_status"),
            rdb_last_save_time: fields
                .get("rdb_last_save_time")
                .and_then(|v| v.parse().ok()),
            rdb_changes_since_last_save: number("rdb_changes_since_last_save").unwrap_or(0),
            used_memory: number("used_memory").unwrap_or(0),
            maxmemory: number("maxmemory").unwrap_or(0),
            evicted_keys: number("evicted_keys").unwrap_or(0),
        }
    }
}

/// What a check knows of the live server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerFacts {
    pub address: String,
    pub health: ServerHealth,
    /// Keys per kb_id and category now.
    pub census: Cells,
    /// `evicted_keys` at the previous check of this server, if any.
    pub previous_evicted_keys: Option<u64>,
}

/// The restore tests recorded in the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TestHistory {
    /// When the last test ran and whether it passed.
    pub last_at_ms: Option<i64>,
    pub last_ok: bool,
    /// The backup it restored and what went wrong, if anything.
    pub last_backup: String,
    pub last_detail: String,
    /// When a test last passed.
    pub last_success_ms: Option<i64>,
}

/// The limits of a check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub max_age_ms: i64,
    /// A drop by more than this fraction alarms (0.1 = 10%).
    pub max_drop: f64,
    pub max_memory_pct: f64,
    pub max_save_age_ms: i64,
    /// `None`: restore tests are not checked.
    pub max_test_age_ms: Option<i64>,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            max_age_ms: 26 * 3_600_000,
            max_drop: 0.10,
            max_memory_pct: 90.0,
            max_save_age_ms: 2 * 3_600_000,
            max_test_age_ms: Some(35 * 86_400_000),
        }
    }
}

/// Everything a check looks at.
#[derive(Debug, Clone, Copy)]
pub struct HealthInput<'a> {
    /// The backups, in any order.
    pub backups: &'a [BackupFacts],
    pub tests: &'a TestHistory,
    pub server: Option<&'a ServerFacts>,
}

/// Every finding, in a stable order (backups, then the server, then
/// restore tests).
pub fn evaluate(input: &HealthInput, limits: &Thresholds, now_ms: i64) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut backups: Vec<&BackupFacts> = input.backups.iter().collect();
    backups.sort_by_key(|b| (b.created_ms, b.name.clone()));
    let good: Vec<&BackupFacts> = backups.iter().copied().filter(|b| b.good).collect();
    backup_age(good.last().copied(), limits, now_ms, &mut findings);
    if let Some(newest) = backups.last().filter(|b| !b.good) {
        let why = newest
            .problem
            .as_ref()
            .map_or("it failed verification".to_string(), |p| p.clone());
        findings.push(Finding::new(
            Alarm::BackupDamaged,
            &newest.name,
            format!(
                "the newest backup cannot be relied on ({why}); the last good one is older \
                 (see kbdump backups list, and kbdump verify on the file)"
            ),
        ));
    }
    if let Some((newest, before)) = newest_pair(&good) {
        let what = format!("between {} and {}", before.name, newest.name);
        compare(&before.cells, &newest.cells, &what, limits, &mut findings);
    }
    if let Some(server) = input.server {
        if let Some(newest) = good.last().filter(|b| !b.matched) {
            let live = only_backed_up(&server.census, &newest.cells);
            let what = format!(
                "between {} and the live server {}",
                newest.name, server.address
            );
            compare(&newest.cells, &live, &what, limits, &mut findings);
        }
        server_health(server, limits, now_ms, &mut findings);
    }
    restore_tests(input.tests, limits, now_ms, &mut findings);
    findings
}

fn backup_age(
    newest: Option<&BackupFacts>,
    limits: &Thresholds,
    now_ms: i64,
    out: &mut Vec<Finding>,
) {
    let Some(newest) = newest else {
        out.push(Finding::new(
            Alarm::BackupTooOld,
            "backups",
            "no good backup in the directory; run kbdump backup --dir DIR",
        ));
        return;
    };
    let age = now_ms - newest.created_ms;
    if age > limits.max_age_ms {
        out.push(Finding::new(
            Alarm::BackupTooOld,
            &newest.name,
            format!(
                "the newest good backup is {} old, more than --max-age {}",
                human_duration(age),
                human_duration(limits.max_age_ms)
            ),
        ));
    }
}

/// The newest good backup and the newest before it made with the same
/// selection.
fn newest_pair<'a>(good: &[&'a BackupFacts]) -> Option<(&'a BackupFacts, &'a BackupFacts)> {
    let (newest, rest) = good.split_last()?;
    let before = rest
        .iter()
        .rev()
        .find(|b| b.selection == newest.selection)?;
    Some((newest, before))
}

/// The live counts of the kb_ids and categories a backup holds.
fn only_backed_up(census: &Cells, backup: &Cells) -> Cells {
    backup
        .iter()
        .filter_map(|(kb, cats)| {
            let live = census.get(kb)?;
            let kept = cats
                .keys()
                .map(|c| (*c, live.get(c).copied().unwrap_or(0)))
                .collect();
            Some((kb.clone(), kept))
        })
        .collect()
}

/// Alarms for kb_ids gone and cells that dropped from `before` to `after`.
fn compare(before: &Cells, after: &Cells, what: &str, limits: &Thresholds, out: &mut Vec<Finding>) {
    for (kb, cats) in before {
        let Some(now) = after.get(kb) else {
            out.push(Finding::new(
                Alarm::KbGone,
                format!("kb_id {}", display_bytes(kb)),
                format!(
                    "kb_id {} ({} keys) is gone {what}",
                    display_bytes(kb),
                    cats.values().sum::<u64>()
                ),
            ));
            continue;
        };
        for (cat, &was) in cats {
            let is = now.get(cat).copied().unwrap_or(0);
            if was == 0 || is >= was {
                continue;
            }
            let drop = (was - is) as f64 / was as f64;
            if drop > limits.max_drop {
                out.push(Finding::new(
                    Alarm::KeyCountDrop,
                    format!("{} {cat}", display_bytes(kb)),
                    format!(
                        "{} {cat} fell from {was} to {is} keys ({:.1}%, more than --max-drop {:.1}%) {what}",
                        display_bytes(kb),
                        drop * 100.0,
                        limits.max_drop * 100.0
                    ),
                ));
            }
        }
    }
}

fn server_health(server: &ServerFacts, limits: &Thresholds, now_ms: i64, out: &mut Vec<Finding>) {
    let h = &server.health;
    let at = &server.address;
    for (field, value) in [
        ("rdb_last_bgsave_status", &h.rdb_last_bgsave_status),
        ("aof_last_write_status", &h.aof_last_write_status),
        ("aof_last_bgrewrite_status", &h.aof_last_bgrewrite_status),
    ] {
        if let Some(v) = value.as_deref().filter(|v| *v != "ok") {
            out.push(Finding::new(
                Alarm::PersistenceError,
                format!("{at} {field}"),
                format!("{at} reports {field}:{v}; check its log and disk (the data on disk is not current)"),
            ));
        }
    }
    if let Some(saved) = h.rdb_last_save_time {
        let age = now_ms - saved * 1000;
        if !h.aof_enabled && h.rdb_changes_since_last_save > 0 && age > limits.max_save_age_ms {
            out.push(Finding::new(
                Alarm::LastSaveTooOld,
                format!("{at} rdb_last_save_time"),
                format!(
                    "{at} last saved to disk {} ago with {} changes since, more than --max-save-age {} (and AOF is off)",
                    human_duration(age),
                    h.rdb_changes_since_last_save,
                    human_duration(limits.max_save_age_ms)
                ),
            ));
        }
    }
    if h.maxmemory > 0 {
        let pct = h.used_memory as f64 * 100.0 / h.maxmemory as f64;
        if pct > limits.max_memory_pct {
            out.push(Finding::new(
                Alarm::MemoryHigh,
                format!("{at} used_memory"),
                format!(
                    "{at} uses {:.1}% of maxmemory ({} of {} bytes), more than --max-memory-pct {}%",
                    pct, h.used_memory, h.maxmemory, limits.max_memory_pct
                ),
            ));
        }
    }
    if let Some(before) = server.previous_evicted_keys.filter(|b| h.evicted_keys > *b) {
        out.push(Finding::new(
            Alarm::Evictions,
            format!("{at} evicted_keys"),
            format!(
                "{at} evicted {} keys since the previous check ({before} -> {}): memory is full and keys are being lost",
                h.evicted_keys - before,
                h.evicted_keys
            ),
        ));
    }
}

fn restore_tests(tests: &TestHistory, limits: &Thresholds, now_ms: i64, out: &mut Vec<Finding>) {
    let Some(max_age) = limits.max_test_age_ms else {
        return;
    };
    if tests.last_at_ms.is_some() && !tests.last_ok {
        out.push(Finding::new(
            Alarm::RestoreTestFailed,
            &tests.last_backup,
            format!("the last restore test failed: {}", tests.last_detail),
        ));
    }
    match tests.last_success_ms {
        None => out.push(Finding::new(
            Alarm::RestoreTestTooOld,
            "restore tests",
            "no successful restore test recorded; run kbdump backups test --dir DIR --scratch URL",
        )),
        Some(at) if now_ms - at > max_age => out.push(Finding::new(
            Alarm::RestoreTestTooOld,
            "restore tests",
            format!(
                "the last successful restore test was {} ago, more than --max-test-age {}",
                human_duration(now_ms - at),
                human_duration(max_age)
            ),
        )),
        Some(_) => {}
    }
}

/// A duration for people: `3d 4h`, `26h 0m`, `12m 5s`.
pub fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m {sec}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;
    const NOW: i64 = 1_717_200_000_000;

    fn cells(rows: &[(&str, Category, u64)]) -> Cells {
        let mut c = Cells::new();
        for (kb, cat, n) in rows {
            c.entry(kb.as_bytes().to_vec())
                .or_default()
                .insert(*cat, *n);
        }
        c
    }

    fn backup(name: &str, created_ms: i64, good: bool, c: Cells) -> BackupFacts {
        BackupFacts {
            name: name.into(),
            created_ms,
            good,
            sealed: false,
            problem: None,
            selection: "all".into(),
            matched: false,
            cells: c,
        }
    }

    fn healthy_cells() -> Cells {
        cells(&[
            ("kb1", Category::Emotives, 100),
            ("kb1", Category::Metadata, 50),
            ("kb2", Category::Frequency, 10),
        ])
    }

    fn tested() -> TestHistory {
        TestHistory {
            last_at_ms: Some(NOW - 2 * DAY),
            last_ok: true,
            last_backup: "b".into(),
            last_detail: String::new(),
            last_success_ms: Some(NOW - 2 * DAY),
        }
    }

    fn healthy_server() -> ServerFacts {
        ServerFacts {
            address: "127.0.0.1:6379".into(),
            health: ServerHealth::from_info(
                "rdb_last_bgsave_status:ok\r\naof_enabled:0\r\naof_last_write_status:ok\r\n\
                 aof_last_bgrewrite_status:ok\r\nrdb_changes_since_last_save:5\r\n\
                 rdb_last_save_time:1717199000\r\nused_memory:800\r\nmaxmemory:1000\r\nevicted_keys:7\r\n",
            ),
            census: healthy_cells(),
            previous_evicted_keys: Some(7),
        }
    }

    fn healthy_backups() -> Vec<BackupFacts> {
        vec![
            backup("b1", NOW - 25 * HOUR, true, healthy_cells()),
            backup("b2", NOW - HOUR, true, healthy_cells()),
        ]
    }

    fn alarms(
        backups: &[BackupFacts],
        tests: &TestHistory,
        server: Option<&ServerFacts>,
    ) -> Vec<Alarm> {
        let input = HealthInput {
            backups,
            tests,
            server,
        };
        evaluate(&input, &Thresholds::default(), NOW)
            .into_iter()
            .map(|f| f.alarm)
            .collect()
    }

    #[test]
    fn a_healthy_setup_raises_nothing() {
        let server = healthy_server();
        assert_eq!(alarms(&healthy_backups(), &tested(), Some(&server)), []);
        assert_eq!(alarms(&healthy_backups(), &tested(), None), []);
    }

    #[test]
    fn backup_age_fires_past_max_age_only() {
        let mut b = healthy_backups();
        b[1].created_ms = NOW - 26 * HOUR; // exactly the limit: still fine
        b[0].created_ms = NOW - 50 * HOUR;
        assert_eq!(alarms(&b, &tested(), None), []);
        b[1].created_ms = NOW - 26 * HOUR - 1;
        assert_eq!(alarms(&b, &tested(), None), [Alarm::BackupTooOld]);
        assert_eq!(alarms(&[], &tested(), None), [Alarm::BackupTooOld]);
    }

    #[test]
    fn a_damaged_newest_backup_fires_and_the_good_one_still_counts() {
        let mut b = healthy_backups();
        b.push(backup("b3", NOW - 1000, false, Cells::new()));
        assert_eq!(alarms(&b, &tested(), None), [Alarm::BackupDamaged]);
        // An older damaged file is history, not an alarm.
        let mut b = healthy_backups();
        b.insert(0, backup("b0", NOW - 3 * DAY, false, Cells::new()));
        assert_eq!(alarms(&b, &tested(), None), []);
    }

    #[test]
    fn key_drops_between_backups_fire_above_max_drop() {
        let mut b = healthy_backups();
        // 100 -> 90 is exactly 10%: not more than 10%.
        b[1].cells = cells(&[
            ("kb1", Category::Emotives, 90),
            ("kb1", Category::Metadata, 50),
            ("kb2", Category::Frequency, 10),
        ]);
        assert_eq!(alarms(&b, &tested(), None), []);
        b[1].cells
            .get_mut(&b"kb1"[..])
            .unwrap()
            .insert(Category::Emotives, 89);
        assert_eq!(alarms(&b, &tested(), None), [Alarm::KeyCountDrop]);
        // A category that vanished entirely is a 100% drop.
        b[1].cells
            .get_mut(&b"kb1"[..])
            .unwrap()
            .remove(&Category::Metadata);
        assert_eq!(
            alarms(&b, &tested(), None),
            [Alarm::KeyCountDrop, Alarm::KeyCountDrop]
        );
        // Growth never alarms.
        b[1].cells = cells(&[
            ("kb1", Category::Emotives, 1000),
            ("kb1", Category::Metadata, 50),
            ("kb2", Category::Frequency, 10),
            ("kb3", Category::Frequency, 10),
        ]);
        assert_eq!(alarms(&b, &tested(), None), []);
    }

    #[test]
    fn a_kb_id_gone_fires_once_and_different_selections_are_not_compared() {
        let mut b = healthy_backups();
        b[1].cells.remove(&b"kb2"[..]);
        let found = evaluate(
            &HealthInput {
                backups: &b,
                tests: &tested(),
                server: None,
            },
            &Thresholds::default(),
            NOW,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].alarm, Alarm::KbGone);
        assert!(found[0].message.contains("kb2"), "{}", found[0].message);
        b[1].selection = "kb1 only".into();
        assert_eq!(alarms(&b, &tested(), None), []);
    }

    #[test]
    fn the_live_server_is_compared_with_the_newest_backup() {
        let mut server = healthy_server();
        server
            .census
            .get_mut(&b"kb1"[..])
            .unwrap()
            .insert(Category::Metadata, 40);
        assert_eq!(
            alarms(&healthy_backups(), &tested(), Some(&server)),
            [Alarm::KeyCountDrop]
        );
        let mut server = healthy_server();
        server.census.remove(&b"kb2"[..]);
        assert_eq!(
            alarms(&healthy_backups(), &tested(), Some(&server)),
            [Alarm::KbGone]
        );
        // Live kb_ids or categories the backup does not hold are not compared.
        let mut server = healthy_server();
        server
            .census
            .entry(b"kb9".to_vec())
            .or_default()
            .insert(Category::Other, 1);
        server
            .census
            .get_mut(&b"kb1"[..])
            .unwrap()
            .insert(Category::Symbols, 0);
        assert_eq!(alarms(&healthy_backups(), &tested(), Some(&server)), []);
        // A --match backup holds part of each cell: no live comparison.
        let mut b = healthy_backups();
        b[1].matched = true;
        let mut server = healthy_server();
        server.census.clear();
        assert_eq!(alarms(&b, &tested(), Some(&server)), []);
    }

    #[test]
    fn persistence_errors_fire_per_field() {
        for field in [
            "rdb_last_bgsave_status",
            "aof_last_write_status",
            "aof_last_bgrewrite_status",
        ] {
            let mut server = healthy_server();
            let info = format!("{field}:err\r\nrdb_last_save_time:1717199000\r\n");
            server.health = ServerHealth::from_info(&info);
            let found = evaluate(
                &HealthInput {
                    backups: &healthy_backups(),
                    tests: &tested(),
                    server: Some(&server),
                },
                &Thresholds::default(),
                NOW,
            );
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].alarm, Alarm::PersistenceError);
            assert!(found[0].subject.contains(field), "{found:?}");
        }
    }

    #[test]
    fn an_old_last_save_fires_only_with_pending_changes_and_no_aof() {
        let mut server = healthy_server();
        server.health.rdb_last_save_time = Some((NOW - 2 * HOUR - 1000) / 1000);
        assert_eq!(
            alarms(&healthy_backups(), &tested(), Some(&server)),
            [Alarm::LastSaveTooOld]
        );
        server.health.rdb_changes_since_last_save = 0;
        assert_eq!(alarms(&healthy_backups(), &tested(), Some(&server)), []);
        server.health.rdb_changes_since_last_save = 3;
        server.health.aof_enabled = true;
        assert_eq!(alarms(&healthy_backups(), &tested(), Some(&server)), []);
    }

    #[test]
    fn memory_fires_above_the_percentage_of_maxmemory() {
        let mut server = healthy_server();
        server.health.used_memory = 900; // exactly 90%
        assert_eq!(alarms(&healthy_backups(), &tested(), Some(&server)), []);
        server.health.used_memory = 901;
        assert_eq!(
            alarms(&healthy_backups(), &tested(), Some(&server)),
            [Alarm::MemoryHigh]
        );
        server.health.maxmemory = 0; // no limit: nothing to compare with
        assert_eq!(alarms(&healthy_backups(), &tested(), Some(&server)), []);
    }

    #[test]
    fn evictions_fire_when_the_counter_rose() {
        let mut server = healthy_server();
        server.health.evicted_keys = 8;
        assert_eq!(
            alarms(&healthy_backups(), &tested(), Some(&server)),
            [Alarm::Evictions]
        );
        server.previous_evicted_keys = None; // first check: nothing to compare
        assert_eq!(alarms(&healthy_backups(), &tested(), Some(&server)), []);
        server.previous_evicted_keys = Some(100); // restarted: counter reset
        assert_eq!(alarms(&healthy_backups(), &tested(), Some(&server)), []);
    }

    #[test]
    fn restore_tests_fire_when_missing_old_or_failed() {
        let b = healthy_backups();
        assert_eq!(
            alarms(&b, &TestHistory::default(), None),
            [Alarm::RestoreTestTooOld]
        );
        let mut t = tested();
        t.last_success_ms = Some(NOW - 35 * DAY - 1);
        t.last_at_ms = t.last_success_ms;
        assert_eq!(alarms(&b, &t, None), [Alarm::RestoreTestTooOld]);
        let mut t = tested();
        t.last_ok = false;
        t.last_detail = "3 keys differ".into();
        assert_eq!(alarms(&b, &t, None), [Alarm::RestoreTestFailed]);
        let limits = Thresholds {
            max_test_age_ms: None,
            ..Thresholds::default()
        };
        let input = HealthInput {
            backups: &b,
            tests: &TestHistory::default(),
            server: None,
        };
        assert_eq!(evaluate(&input, &limits, NOW), []);
    }

    #[test]
    fn info_fields_parse() {
        let h = ServerHealth::from_info("# Persistence\r\nrdb_last_bgsave_status:err\r\naof_enabled:1\r\nrdb_last_save_time:12\r\n");
        assert_eq!(h.rdb_last_bgsave_status.as_deref(), Some("err"));
        assert!(h.aof_enabled);
        assert_eq!(h.rdb_last_save_time, Some(12));
        assert_eq!(h.aof_last_write_status, None);
        assert_eq!(human_duration(26 * HOUR), "1d 2h");
        assert_eq!(human_duration(90_000), "1m 30s");
    }
}
