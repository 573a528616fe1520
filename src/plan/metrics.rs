//! The node-exporter textfile metrics of `backups check`, in the
//! Prometheus text exposition format (version 0.0.4). Pure: the caller
//! writes the text atomically.
//!
//! Every series carries a `dir` label (several backup directories can be
//! exported side by side without colliding), and every alarm is always
//! present as a 0/1 gauge, so an alert rule never waits on a series that
//! does not exist yet.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::health::{Alarm, BackupFacts, Finding, ServerFacts, TestHistory};
use crate::kato::{display_bytes, Category};

/// Everything the metrics are made of.
#[derive(Debug, Clone, Copy)]
pub struct MetricsInput<'a> {
    pub dir: &'a str,
    pub now_ms: i64,
    pub backups: &'a [BackupFacts],
    /// Payload bytes per kb_id and category of the newest good backup.
    pub newest_bytes: &'a BTreeMap<(Vec<u8>, Category), u64>,
    /// Size of the newest good backup's file.
    pub newest_file_bytes: u64,
    pub findings: &'a [Finding],
    pub tests: &'a TestHistory,
    pub server: Option<&'a ServerFacts>,
    /// False when the check could not look at everything (a server that
    /// did not answer): the alarms then say only what was seen.
    pub complete: bool,
}

/// The metrics as exposition-format text.
pub fn render(input: &MetricsInput) -> String {
    let mut out = Text::new(input.dir);
    let secs = |ms: i64| ms as f64 / 1000.0;
    out.gauge(
        "kbdump_check_timestamp_seconds",
        "When kbdump backups check last ran (unix seconds).",
    );
    out.sample("kbdump_check_timestamp_seconds", &[], secs(input.now_ms));
    out.gauge("kbdump_check_complete", "1 when the last check could look at everything it was asked to, 0 when something could not be checked.");
    out.sample(
        "kbdump_check_complete",
        &[],
        f64::from(u8::from(input.complete)),
    );
    let good: Vec<&BackupFacts> = input.backups.iter().filter(|b| b.good).collect();
    out.gauge(
        "kbdump_backups",
        "Backups in the directory, by status (good: contents read; sealed: encrypted, not opened, its size as its summary says; damaged: anything else).",
    );
    let sealed = good.iter().filter(|b| b.sealed).count();
    out.sample(
        "kbdump_backups",
        &[("status", "good")],
        (good.len() - sealed) as f64,
    );
    out.sample("kbdump_backups", &[("status", "sealed")], sealed as f64);
    let damaged = input.backups.len() - good.len();
    out.sample("kbdump_backups", &[("status", "damaged")], damaged as f64);
    if let Some(newest) = good.iter().max_by_key(|b| b.created_ms) {
        newest_backup(&mut out, input, newest, secs);
    }
    if let Some(at) = input.tests.last_success_ms {
        out.gauge(
            "kbdump_restore_test_last_success_timestamp_seconds",
            "When a restore test last passed (unix seconds).",
        );
        out.sample(
            "kbdump_restore_test_last_success_timestamp_seconds",
            &[],
            secs(at),
        );
    }
    if let Some(server) = input.server {
        server_metrics(&mut out, server);
    }
    out.gauge(
        "kbdump_alarm",
        "1 when the alarm is raised by the last check, else 0.",
    );
    for alarm in Alarm::ALL {
        let raised = input.findings.iter().any(|f| f.alarm == alarm);
        let labels = [
            ("alarm", alarm.name()),
            ("severity", alarm.severity().name()),
        ];
        out.sample("kbdump_alarm", &labels, f64::from(u8::from(raised)));
    }
    out.text
}

fn newest_backup(
    out: &mut Text,
    input: &MetricsInput,
    newest: &BackupFacts,
    secs: impl Fn(i64) -> f64,
) {
    out.gauge(
        "kbdump_backup_last_success_timestamp_seconds",
        "When the newest good backup was made (unix seconds).",
    );
    out.sample(
        "kbdump_backup_last_success_timestamp_seconds",
        &[],
        secs(newest.created_ms),
    );
    out.gauge(
        "kbdump_backup_last_success_age_seconds",
        "Age of the newest good backup when the check ran.",
    );
    out.sample(
        "kbdump_backup_last_success_age_seconds",
        &[],
        secs(input.now_ms - newest.created_ms),
    );
    out.gauge(
        "kbdump_backup_size_bytes",
        "Size of the newest good backup's file.",
    );
    out.sample(
        "kbdump_backup_size_bytes",
        &[],
        input.newest_file_bytes as f64,
    );
    out.gauge(
        "kbdump_backup_keys",
        "Keys per kb_id and category in the newest good backup.",
    );
    for (kb, cats) in &newest.cells {
        let kb = display_bytes(kb);
        for (cat, n) in cats {
            out.sample(
                "kbdump_backup_keys",
                &[("kb_id", &kb), ("category", cat.name())],
                *n as f64,
            );
        }
    }
    out.gauge(
        "kbdump_backup_payload_bytes",
        "DUMP payload bytes per kb_id and category in the newest good backup.",
    );
    for ((kb, cat), n) in input.newest_bytes {
        let kb = display_bytes(kb);
        out.sample(
            "kbdump_backup_payload_bytes",
            &[("kb_id", &kb), ("category", cat.name())],
            *n as f64,
        );
    }
}

fn server_metrics(out: &mut Text, server: &ServerFacts) {
    let h = &server.health;
    let at = [("server", server.address.as_str())];
    out.gauge(
        "kbdump_redis_used_memory_bytes",
        "used_memory of the checked server.",
    );
    out.sample("kbdump_redis_used_memory_bytes", &at, h.used_memory as f64);
    out.gauge(
        "kbdump_redis_maxmemory_bytes",
        "maxmemory of the checked server (0: no limit).",
    );
    out.sample("kbdump_redis_maxmemory_bytes", &at, h.maxmemory as f64);
    out.counter(
        "kbdump_redis_evicted_keys_total",
        "evicted_keys of the checked server.",
    );
    out.sample(
        "kbdump_redis_evicted_keys_total",
        &at,
        h.evicted_keys as f64,
    );
    out.gauge(
        "kbdump_redis_persistence_ok",
        "1 when the server's INFO field reports ok.",
    );
    for (field, value) in [
        ("rdb_last_bgsave_status", &h.rdb_last_bgsave_status),
        ("aof_last_write_status", &h.aof_last_write_status),
        ("aof_last_bgrewrite_status", &h.aof_last_bgrewrite_status),
    ] {
        if let Some(v) = value {
            let labels = [at[0], ("field", field)];
            out.sample(
                "kbdump_redis_persistence_ok",
                &labels,
                f64::from(u8::from(v == "ok")),
            );
        }
    }
}

/// Exposition text under construction, every sample with the `dir` label.
struct Text {
    dir: String,
    text: String,
}

impl Text {
    fn new(dir: &str) -> Text {
        Text {
            dir: dir.to_string(),
            text: String::new(),
        }
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn gauge(&mut self, name: &str, help: &str) {
        self.family(name, "gauge", help);
    }

    fn counter(&mut self, name: &str, help: &str) {
        self.family(name, "counter", help);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let mut all = vec![format!("dir=\"{}\"", escape_label(&self.dir))];
        all.extend(
            labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))),
        );
        let _ = writeln!(self.text, "{name}{{{}}} {}", all.join(","), number(value));
    }
}

/// A sample value: integers without a fraction, others as Rust prints them.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Label values escape backslash, double quote and newline.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// HELP text escapes backslash and newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::health::{Cells, Severity};

    #[test]
    fn every_alarm_is_a_gauge_and_labels_are_escaped() {
        let mut cells = Cells::new();
        cells
            .entry(b"kb\"x\\\n".to_vec())
            .or_default()
            .insert(Category::Emotives, 3);
        let backups = [BackupFacts {
            name: "b".into(),
            created_ms: 1_000,
            good: true,
            sealed: false,
            problem: None,
            selection: String::new(),
            matched: false,
            cells,
        }];
        let findings = [Finding {
            alarm: Alarm::KbGone,
            severity: Severity::Warning,
            subject: "kb".into(),
            message: "gone".into(),
        }];
        let text = render(&MetricsInput {
            dir: "/var/lib/kbdump",
            now_ms: 3_500,
            backups: &backups,
            newest_bytes: &BTreeMap::new(),
            newest_file_bytes: 10,
            findings: &findings,
            tests: &TestHistory::default(),
            server: None,
            complete: true,
        });
        assert!(
            text.contains("kbdump_backup_last_success_age_seconds{dir=\"/var/lib/kbdump\"} 2.5\n"),
            "{text}"
        );
        assert!(text.contains(r#"kb_id="kb\"x\\\\\n""#), "{text}");
        assert!(
            text.contains("alarm=\"kb_gone\",severity=\"warning\"} 1\n"),
            "{text}"
        );
        assert_eq!(text.matches("kbdump_alarm{").count(), Alarm::ALL.len());
    }
}
