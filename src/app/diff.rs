//! `kbdump diff`: what differs between an archive and a live server.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde_json::{json, Value as Json};

use super::common::{
    check_archive, check_read_kbs, connect_redis, open_archive, source_outcome, watch_kbs,
    ArchiveInput,
};
use super::options::{covered, selection};
use super::progress::{key_progress, known_total};
use super::report::{cells_json, for_people, one_line, print_json, print_report};
use super::{GlobalOpts, EXIT_CHECK_FAILED, EXIT_ERROR};
use crate::cli::diff::FailOn;
use crate::cli::DiffArgs;
use crate::flow::diff::{diff, DiffOptions, DiffReport, KeyDiff, Kind};
use crate::kato::{display_bytes, place_label};

/// Width of a `--values` line, its label included.
const VALUE_LINE_WIDTH: usize = 100;

pub async fn run(args: DiffArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let input = ArchiveInput::parse(&args.file)
        .with_keys(global.keys.clone())
        .salvaging(args.db.salvage);
    let selection = selection(&args.select);
    let conn = connect_redis(&args.redis).await?;
    let archive = open_archive(&input, args.db.db)?;
    let indexed = check_archive(&archive, &input, &selection)?.is_some();
    let covered = covered(&archive.header().selection);
    let progress = key_progress(global);
    if let Some(total) = known_total(archive.selected_size(&selection), &selection) {
        progress.total(total);
    }
    let (rx, source) = archive.stream(selection.clone()).split();
    let (rx, watcher) = watch_kbs(rx, &selection, indexed);
    let options = DiffOptions {
        selection,
        covered,
        expiry_tolerance_ms: args.expiry_tolerance_ms,
        values_per_group: args.examples,
        ..DiffOptions::default()
    };
    let report = diff(&conn, rx, &options, progress.as_ref()).await?;
    source_outcome(source, &input).await?;
    check_read_kbs(watcher, &input, &options.selection).await?;
    let fail_on = fail_kinds(&args.fail_on);
    let shown = Shown {
        server: conn.address(),
        examples: args.examples,
        values: args.values,
        fail_on: &fail_on,
    };
    if global.json {
        print_json(&to_json(&report, &shown))?;
    } else {
        let success = report.is_identical() && report.damaged.is_empty();
        print_report(global, success, &to_text(&report, &shown))?;
    }
    Ok(ExitCode::from(exit_status(&report, &fail_on)))
}

/// The kinds of difference that make the exit status 1.
fn fail_kinds(args: &[FailOn]) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = args
        .iter()
        .flat_map(|a| match a {
            FailOn::Missing => vec![Kind::Missing],
            FailOn::Changed => vec![Kind::Changed],
            FailOn::Extra => vec![Kind::Extra],
            FailOn::Expiry => vec![Kind::Expiry],
            FailOn::Any => Kind::ALL.to_vec(),
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// 2 when the archive is damaged (the comparison is incomplete, whatever
/// it found), 1 when a key differs in one of the `fail_on` ways, else 0.
fn exit_status(report: &DiffReport, fail_on: &[Kind]) -> u8 {
    if !report.damaged.is_empty() {
        EXIT_ERROR
    } else if report.has_any(fail_on) {
        EXIT_CHECK_FAILED
    } else {
        0
    }
}

/// How the report is shown.
struct Shown<'a> {
    server: &'a str,
    /// Keys listed per kb_id x category x kind.
    examples: usize,
    /// Whether the text shows their values.
    values: bool,
    fail_on: &'a [Kind],
}

fn to_json(report: &DiffReport, shown: &Shown) -> Json {
    let cells = cells_json(&report.tallies);
    json!({
        "server": shown.server,
        "identical": report.is_identical(),
        "failed": report.has_any(shown.fail_on),
        "fail_on": shown.fail_on,
        "examples": shown.examples,
        "contents": cells,
        "keys": report.keys,
        "damaged": report.damaged,
    })
}

fn to_text(report: &DiffReport, shown: &Shown) -> String {
    let mut out = String::new();
    if report.is_identical() && report.damaged.is_empty() {
        let same: u64 = report.tallies.values().map(|c| c.same).sum();
        return format!(
            "identical: all {same} archived keys match {}\n",
            shown.server
        );
    }
    out += &format!(
        "{:<24} {:<12} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        "kb_id", "category", "same", "missing", "extra", "changed", "expiry"
    );
    for ((kb, cat), c) in &report.tallies {
        out += &format!(
            "{:<24} {:<12} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            place_label(kb, *cat),
            cat,
            c.same,
            c.missing,
            c.extra,
            c.changed,
            c.expiry
        );
    }
    let mut groups: BTreeMap<(String, String, Kind), Vec<&KeyDiff>> = BTreeMap::new();
    for k in &report.keys {
        groups
            .entry((
                place_label(&k.kb_id, k.category),
                k.category.to_string(),
                k.kind,
            ))
            .or_default()
            .push(k);
    }
    for ((kb, cat, kind), keys) in &groups {
        out += &format!("\n{kind:?} in {kb} {cat} ({}):\n", keys.len()).to_lowercase();
        for key in keys.iter().take(shown.examples) {
            out += &format!("  {} ({})\n", display_bytes(&key.key), key.detail);
            if shown.values {
                out += &value_lines(key);
            }
        }
        if keys.len() > shown.examples {
            out += &format!(
                "  ... {} more; --json lists every key\n",
                keys.len() - shown.examples
            );
        }
    }
    for d in &report.damaged {
        out += &format!("damaged archive: {}: {}\n", d.what, d.reason);
    }
    if !report.is_identical() && !report.has_any(shown.fail_on) {
        out += &format!(
            "\nexit status 0: no key differs in a --fail-on way ({})\n",
            kind_names(shown.fail_on)
        );
    }
    out
}

/// `    archived: …` and `    live:     …` under a listed key, for the
/// values the report carries.
fn value_lines(key: &KeyDiff) -> String {
    let mut out = String::new();
    for (label, value) in [("archived:", &key.archived), ("live:", &key.live)] {
        if let Some(value) = value {
            let label = format!("    {label:<9} ");
            let width = VALUE_LINE_WIDTH.saturating_sub(label.chars().count());
            out += &format!("{label}{}\n", value_text(value, width));
        }
    }
    out
}

/// A value as `type value` on one line of at most `width` characters, or
/// why it cannot be shown.
fn value_text(value: &Json, width: usize) -> String {
    if let Some(error) = value["error"].as_str() {
        return format!("({error})");
    }
    let kind = value["type"].as_str().unwrap_or("?");
    let rest = width.saturating_sub(kind.len() + 1);
    format!("{kind} {}", one_line(&for_people(&value["value"]), rest))
}

fn kind_names(kinds: &[Kind]) -> String {
    let names: Vec<String> = kinds
        .iter()
        .map(|k| format!("{k:?}").to_lowercase())
        .collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::diff::DiffCounts;
    use crate::kato::Category;

    fn report(counts: DiffCounts) -> DiffReport {
        let mut report = DiffReport::default();
        report
            .tallies
            .insert((b"kb".to_vec(), Category::Emotives), counts);
        report
    }

    #[test]
    fn fail_on_picks_the_kinds_that_exit_1() {
        let changed_only = report(DiffCounts {
            changed: 3,
            extra: 1,
            ..DiffCounts::default()
        });
        let missing = fail_kinds(&[FailOn::Missing]);
        assert_eq!(exit_status(&changed_only, &missing), 0);
        assert_eq!(exit_status(&changed_only, &fail_kinds(&[FailOn::Any])), 1);
        let both = fail_kinds(&[FailOn::Missing, FailOn::Extra]);
        assert_eq!(exit_status(&changed_only, &both), 1);
        let lost = report(DiffCounts {
            missing: 1,
            ..DiffCounts::default()
        });
        assert_eq!(exit_status(&lost, &missing), 1);
        assert_eq!(exit_status(&lost, &fail_kinds(&[FailOn::Expiry])), 0);
        assert_eq!(
            fail_kinds(&[FailOn::Any, FailOn::Missing]),
            Kind::ALL.to_vec()
        );
    }

    #[test]
    fn damage_is_an_error_whatever_fail_on_says() {
        let mut damaged = report(DiffCounts::default());
        damaged.damaged.push(crate::records::Failure {
            what: "block 3".into(),
            reason: "bad checksum".into(),
        });
        assert_eq!(exit_status(&damaged, &fail_kinds(&[FailOn::Missing])), 2);
    }

    #[test]
    fn values_show_their_type_on_one_cut_line() {
        let value = json!({"type": "hash", "value": {"joy": {"json_spaced": {"a": 1}}}});
        assert_eq!(value_text(&value, 80), r#"hash {"joy": {"a": 1}}"#);
        let long = json!({"type": "string", "value": "x".repeat(500)});
        let text = value_text(&long, 40);
        assert_eq!(text.chars().count(), 40);
        assert!(
            text.starts_with("string \"xxx") && text.ends_with('…'),
            "{text}"
        );
        let bad = json!({"error": "cannot be decoded: bad trailer"});
        assert_eq!(value_text(&bad, 40), "(cannot be decoded: bad trailer)");
    }
}
