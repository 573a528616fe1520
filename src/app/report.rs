//! Reporting helpers shared by the commands: JSON on stdout, the
//! kb_id x category cells, timestamps and sizes for people, and the restore
//! summary that restore and copy both print.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use indicatif::HumanBytes;
use serde_json::{json, Value as Json};

use super::{GlobalOpts, EXIT_CHECK_FAILED, EXIT_ERROR};
use crate::clock::system_now_ms as now_ms;
use crate::flow::export::ExportError;
use crate::kato::{display_bytes, place_label, Category, Group};
use crate::selection::LeftOut;
use crate::sink::archive::UndoSummary;
use crate::sink::redis::{Mode, RestoreOptions, RestoreSummary, Target};

/// Per kb_id x category counters as JSON objects, each with its `kb_id`
/// and `category` (the `contents` list of restore's and diff's reports).
pub fn cells_json<T: serde::Serialize>(
    tallies: &BTreeMap<(Vec<u8>, Category), T>,
) -> Vec<serde_json::Value> {
    tallies
        .iter()
        .map(|((kb, cat), counts)| {
            let mut v = serde_json::to_value(counts).unwrap_or_default();
            v["kb_id"] = json!(display_bytes(kb));
            v["group"] = json!(Group::of(kb, *cat).name());
            v["category"] = json!(cat.to_string());
            v
        })
        .collect()
}

/// Prints a JSON value on stdout (see [`print_text`]).
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    print_text(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// A warning on stderr, in kbdump's form.
pub fn warn(text: &str) {
    eprintln!("kbdump: warning: {text}");
}

/// Prints a report on stdout, flushed. A reader that closed the pipe
/// (`| head`) is no failure of the command, which keeps its verdict; any
/// other write error (a full disk) is one, naming stdout.
pub fn print_text(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(stdout_error(e)),
        Ok(()) => Ok(()),
    }
}

/// Prints a text report (see [`print_text`]) unless `--quiet` asked for
/// silence and the command succeeded: a quiet command says only what
/// went wrong. `--json` is printed either way (it was asked for).
pub fn print_report(global: &GlobalOpts, success: bool, text: &str) -> anyhow::Result<()> {
    if global.quiet && success {
        return Ok(());
    }
    print_text(text)
}

/// A write to stdout that failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to stdout")]
pub struct StdoutError(#[source] pub std::io::Error);

/// A failed write to stdout, for the error message.
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    StdoutError(e).into()
}

/// Names the archive in an error about it, not in one about stdout.
pub fn in_archive(e: anyhow::Error, name: &str) -> anyhow::Error {
    if e.is::<StdoutError>() {
        e
    } else {
        e.context(name.to_string())
    }
}

/// True when an error chain ends in a broken pipe (stdout closed by `head`),
/// which is not a failure of ours.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let broken = |kind: Option<std::io::ErrorKind>| kind == Some(std::io::ErrorKind::BrokenPipe);
    err.chain().any(|cause| {
        // serde_json reports a failed write as its own error type.
        broken(cause.downcast_ref::<std::io::Error>().map(|e| e.kind()))
            || broken(
                cause
                    .downcast_ref::<ExportError>()
                    .and_then(|e| e.io_kind()),
            )
            || broken(
                cause
                    .downcast_ref::<serde_json::Error>()
                    .and_then(|e| e.io_error_kind()),
            )
    })
}

/// Unix milliseconds as an ISO-8601 UTC timestamp.
pub fn iso_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A byte count for people, in binary units.
pub fn human_bytes(n: u64) -> String {
    HumanBytes(n).to_string()
}

/// A value's JSON form for people: drops the `json_spaced` marker, which
/// only exists so that `--json` can give back the exact bytes (for a
/// person, KATO's Python-written emotives and metadata are simply JSON).
/// `base64` stays: it says the bytes are not text.
pub fn for_people(j: &Json) -> Json {
    match j {
        Json::Object(o) if o.len() == 1 && o.contains_key("json_spaced") => {
            o["json_spaced"].clone()
        }
        Json::Object(o) => {
            Json::Object(o.iter().map(|(k, v)| (k.clone(), for_people(v))).collect())
        }
        Json::Array(a) => Json::Array(a.iter().map(for_people).collect()),
        other => other.clone(),
    }
}

/// One-line JSON with `, ` and `: ` separators, cut to `width` characters
/// with an ellipsis. Stops writing once past the width, so a huge value
/// costs no more than a small one.
pub fn one_line(j: &Json, width: usize) -> String {
    let mut out = String::new();
    // A character takes at most 4 bytes: past this many bytes the text is
    // surely wider than `width`.
    let budget = width.saturating_mul(4).saturating_add(4);
    if write_spaced(j, &mut out, budget) && out.chars().count() <= width {
        return out;
    }
    let cut: String = out.chars().take(width.saturating_sub(1)).collect();
    cut + "…"
}

/// Writes `j` into `out`; false once `out` has more than `budget` bytes
/// (and the rest was left out).
fn write_spaced(j: &Json, out: &mut String, budget: usize) -> bool {
    let (open, close) = match j {
        Json::Array(_) => ('[', ']'),
        Json::Object(_) => ('{', '}'),
        other => {
            out.push_str(&other.to_string());
            return out.len() <= budget;
        }
    };
    out.push(open);
    let items: Box<dyn Iterator<Item = (Option<&String>, &Json)>> = match j {
        Json::Array(a) => Box::new(a.iter().map(|v| (None, v))),
        Json::Object(o) => Box::new(o.iter().map(|(k, v)| (Some(k), v))),
        _ => Box::new(std::iter::empty()),
    };
    for (n, (k, v)) in items.enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        if let Some(k) = k {
            out.push_str(&Json::String(k.clone()).to_string());
            out.push_str(": ");
        }
        if !write_spaced(v, out, budget) {
            return false;
        }
    }
    out.push(close);
    out.len() <= budget
}

/// A timestamp usable in a file name.
pub fn undo_stamp() -> String {
    iso_ms(now_ms()).replace([':', '.'], "-")
}

/// The exit status of a restore (or copy): an error when any key failed;
/// 1 when a merge left keys as they were because their values do not fit
/// their policy (the run completed, but not everything was merged).
pub fn restore_exit_code(summary: &RestoreSummary) -> ExitCode {
    if summary.has_failures() {
        ExitCode::from(EXIT_ERROR)
    } else if summary.has_conflicts() {
        ExitCode::from(EXIT_CHECK_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints the summary of a restore (or copy), as text or `--json`.
pub fn report_restore(
    summary: &RestoreSummary,
    options: &RestoreOptions,
    target: &Target,
    undo: Option<&UndoSummary>,
    global: &GlobalOpts,
) -> anyhow::Result<()> {
    report_restore_selection(summary, options, target, undo, None, global)
}

/// The end of a restore (or copy) that a signal stopped: its JSON report
/// if asked for, and one line on stderr saying what was written and where
/// the undo archive is. Returns the signal's exit status.
pub fn report_interrupted(
    summary: &RestoreSummary,
    options: &RestoreOptions,
    target: &Target,
    undo: Option<&UndoSummary>,
    global: &GlobalOpts,
    command: &str,
) -> anyhow::Result<ExitCode> {
    if global.json {
        let mut value = summary_json(summary, options, target, undo);
        value["interrupted"] = json!(global.interrupts.received().map(|s| s.name()));
        print_json(&value)?;
    }
    let total = summary.total();
    let mut line = format!(
        "{command} stopped after the batches in flight: {} keys written, {}{} deleted, {} failed; ",
        total.restored,
        match options.mode {
            Mode::Merge => format!("{} merged, ", total.merged),
            _ => String::new(),
        },
        total.deleted,
        total.failed
    );
    line += &match (undo, options.mode) {
        (Some(undo), _) => undo_line(undo).trim_end().to_string(),
        (None, Mode::Replace | Mode::Merge) => "no key was overwritten".to_string(),
        (None, Mode::Missing) => {
            "run it again to complete it (missing mode skips what is back)".to_string()
        }
    };
    Ok(global.interrupts.report(&line))
}

/// [`report_restore`], also saying what the selection left out of the
/// source (`left_out` in JSON, a line of text), when that is known.
pub fn report_restore_selection(
    summary: &RestoreSummary,
    options: &RestoreOptions,
    target: &Target,
    undo: Option<&UndoSummary>,
    left_out: Option<&LeftOut>,
    global: &GlobalOpts,
) -> anyhow::Result<()> {
    if global.json {
        let mut value = summary_json(summary, options, target, undo);
        if left_out.is_some() {
            value["left_out"] = json!(left_out);
        }
        return print_json(&value);
    }
    let mut text = summary_text(summary, options, target, undo);
    for line in [
        left_out.and_then(LeftOut::describe),
        left_out.and_then(LeftOut::describe_temporary),
    ]
    .into_iter()
    .flatten()
    {
        text += &line;
        text.push('\n');
    }
    let success = !summary.has_failures() && !summary.has_conflicts();
    print_report(global, success, &text)
}

fn summary_json(
    summary: &RestoreSummary,
    options: &RestoreOptions,
    target: &Target,
    undo: Option<&UndoSummary>,
) -> serde_json::Value {
    let cells = cells_json(&summary.tallies);
    let mut report = json!({
        "target": target.conn.address(),
        "mode": options.mode,
        "dry_run": options.dry_run,
        "total": summary.total(),
        "contents": cells,
        "failures": summary.failures,
        "warnings": summary.warnings,
        "saved_for_undo": undo.map_or(0, |u| u.keys),
        "undo_absent": undo.map_or(0, |u| u.absent),
        "rename_targets": summary.rename_targets,
        "undo_archive": undo.map(|u| u.path.display().to_string()),
        // Onto a cluster: the keys written on each master.
        "per_master": summary.per_master,
    });
    if options.mode == Mode::Merge {
        report["policies"] = options
            .policies
            .iter()
            .map(|(c, p)| (c.name().to_string(), json!(p)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        report["conflicts"] = json!(summary.conflicts);
        report["plan"] = json!(summary.plan.keys);
        report["plan_omitted"] = json!(summary.plan.omitted);
    }
    report
}

/// At most this many keys of each kind are listed in text; `--json` has
/// them all.
const LISTED: usize = 20;

/// `failed: KEY: reason` lines, bounded, with a count of the rest.
fn listed(out: &mut String, label: &str, items: &[crate::records::Failure], rest: &str) {
    for item in items.iter().take(LISTED) {
        out.push_str(&format!("{label}: {}: {}\n", item.what, item.reason));
    }
    if items.len() > LISTED {
        out.push_str(&format!(
            "... and {} more {rest} (see --json)\n",
            items.len() - LISTED
        ));
    }
}

fn summary_text(
    summary: &RestoreSummary,
    options: &RestoreOptions,
    target: &Target,
    undo: Option<&UndoSummary>,
) -> String {
    let total = summary.total();
    let merge = options.mode == Mode::Merge;
    let would = if options.dry_run { "would " } else { "" };
    let mut out =
        format!(
        "{}{would}{} {} keys into {} ({} {}), mode {}: {}{} kept ({}), {}{} expired, {} failed\n",
        if options.dry_run { "dry run: " } else { "" },
        if options.dry_run { "restore" } else { "restored" },
        total.restored,
        target.conn.address(),
        target.info.product,
        target.info.version,
        options.mode.name(),
        if merge { format!("{} {would}merged, ", total.merged) } else { String::new() },
        total.kept,
        if merge { "live value stays" } else { "already present" },
        if merge { format!("{} conflicts, ", total.conflicts) } else { String::new() },
        total.expired,
        total.failed
    );
    if total.deleted > 0 {
        out += &format!(
            "{} keys deleted (the archive records them as absent)\n",
            total.deleted
        );
    }
    let written = if options.dry_run {
        "would be written"
    } else {
        "written"
    };
    for (master, keys) in &summary.per_master {
        out += &format!("  {master:<24} {keys} keys {written}\n");
    }
    if merge {
        let policies: Vec<String> = options
            .policies
            .iter()
            .map(|(c, p)| format!("{c}={p}"))
            .collect();
        out += &format!("policies: {}\n", policies.join(" "));
    }
    out += &table(summary, merge);
    if options.dry_run && merge {
        plan_text(&mut out, summary);
    }
    listed(
        &mut out,
        "restored with loss",
        &summary.warnings,
        "keys restored with loss",
    );
    listed(&mut out, "conflict", &summary.conflicts, "conflicts");
    listed(&mut out, "failed", &summary.failures, "failures");
    if let Some(undo) = undo {
        out += &undo_line(undo);
    }
    out
}

/// Where the undo archive is and what it holds, one line.
pub fn undo_line(undo: &UndoSummary) -> String {
    let path = undo.path.display();
    let absent = match undo.absent {
        0 => String::new(),
        n => format!(" ({n} did not exist: the undo deletes them)"),
    };
    format!(
        "undo archive {path} holds the previous state of {} keys{absent}; undo with: kbdump \
         restore --mode replace {path}\n",
        undo.keys
    )
}

/// Width of an old or new value in a dry run's planned changes.
const PLAN_VALUE_WIDTH: usize = 60;

/// The per kb_id x category counters; merge mode adds its two columns.
fn table(summary: &RestoreSummary, merge: bool) -> String {
    let row = |kb: &str, cat: &str, counts: [String; 8]| {
        let [restored, merged, kept, conflicts, expired, failed, raw, retagged] = counts;
        let (merged, conflicts) = if merge {
            (format!(" {merged:>9}"), format!(" {conflicts:>9}"))
        } else {
            (String::new(), String::new())
        };
        format!(
            "{kb:<24} {cat:<12} {restored:>9}{merged} {kept:>9}{conflicts} {expired:>9} {failed:>7}   {raw:>7} {retagged:>9}"
        )
    };
    let mut out = row(
        "kb_id",
        "category",
        [
            "restored",
            "merged",
            "kept",
            "conflicts",
            "expired",
            "failed",
            "raw",
            "retagged",
        ]
        .map(String::from),
    );
    out += &format!(" {:>8}\n", "logical");
    for ((kb, cat), c) in &summary.tallies {
        let counts = [
            c.restored,
            c.merged,
            c.kept,
            c.conflicts,
            c.expired,
            c.failed,
            c.raw,
            c.retagged,
        ]
        .map(|n| n.to_string());
        out += &row(&place_label(kb, *cat), cat.name(), counts);
        out += &format!(" {:>8}\n", c.logical);
    }
    out
}

/// A dry run's planned changes, old and new values shortened.
fn plan_text(out: &mut String, summary: &RestoreSummary) {
    let shown = |v: &Option<serde_json::Value>| match v {
        Some(v) => one_line(&for_people(&v["value"]), PLAN_VALUE_WIDTH),
        None => "(none)".to_string(),
    };
    for entry in summary.plan.keys.iter().take(LISTED) {
        out.push_str(&format!(
            "would {} {} ({}): {} -> {}\n",
            entry.action,
            entry.key,
            entry.policy,
            shown(&entry.old),
            shown(&entry.new)
        ));
    }
    let more = summary.plan.keys.len().saturating_sub(LISTED) as u64 + summary.plan.omitted;
    if more > 0 {
        out.push_str(&format!(
            "... and {more} more planned changes (--json lists the first {})\n",
            crate::sink::redis::PLAN_LIMIT
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn one_line_spaces_and_cuts_with_an_ellipsis() {
        let j = json!({"joy": [0.4, "a"], "fear": {}});
        assert_eq!(
            super::one_line(&j, 100),
            r#"{"joy": [0.4, "a"], "fear": {}}"#
        );
        let exact = r#"{"joy": [0.4, "a"], "fear": {}}"#.chars().count();
        assert_eq!(
            super::one_line(&j, exact),
            r#"{"joy": [0.4, "a"], "fear": {}}"#
        );
        assert_eq!(super::one_line(&j, 10), r#"{"joy": […"#);
        assert_eq!(super::one_line(&j, 10).chars().count(), 10);
        // Characters, not bytes: a cut never splits one.
        assert_eq!(super::one_line(&json!("ééééé"), 4), "\"éé…");
        let huge: Vec<u64> = (0..1_000_000).collect();
        assert_eq!(super::one_line(&json!(huge), 12), "[0, 1, 2, 3…");
    }

    #[test]
    fn iso_timestamps() {
        assert_eq!(super::iso_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::iso_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(super::iso_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
