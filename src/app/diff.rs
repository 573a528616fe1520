//! `kbdump diff`: what differs between an archive and a live server.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde_json::json;

use super::common::{open_archive, source_outcome, ArchiveInput};
use super::options::selection;
use super::report::{cells_json, print_json};
use super::{GlobalOpts, EXIT_CHECK_FAILED, EXIT_ERROR};
use crate::cli::DiffArgs;
use crate::flow::diff::{diff, DiffOptions, DiffReport, Kind};
use crate::kato::display_bytes;
use crate::net::redis::RedisConn;

/// Examples shown per group in the text output.
const EXAMPLES_PER_GROUP: usize = 5;

pub async fn run(args: DiffArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let input = ArchiveInput::parse(&args.file);
    let selection = selection(&args.select);
    let conn = RedisConn::connect(&args.redis.redis).await?;
    let (rx, source) = open_archive(&input)?.stream(selection.clone()).split();
    let options = DiffOptions {
        selection,
        expiry_tolerance_ms: args.expiry_tolerance_ms,
        ..DiffOptions::default()
    };
    let report = diff(&conn, rx, &options).await?;
    source_outcome(source, &input).await?;
    if global.json {
        print_json(&to_json(&report, conn.address()))?;
    } else {
        print!("{}", to_text(&report, conn.address()));
    }
    Ok(if !report.damaged.is_empty() {
        ExitCode::from(EXIT_ERROR)
    } else if report.is_identical() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

fn to_json(report: &DiffReport, server: &str) -> serde_json::Value {
    let cells = cells_json(&report.tallies);
    json!({
        "server": server,
        "identical": report.is_identical(),
        "contents": cells,
        "keys": report.keys,
        "damaged": report.damaged,
    })
}

fn to_text(report: &DiffReport, server: &str) -> String {
    let mut out = String::new();
    if report.is_identical() && report.damaged.is_empty() {
        let same: u64 = report.tallies.values().map(|c| c.same).sum();
        return format!("identical: all {same} archived keys match {server}\n");
    }
    out += &format!(
        "{:<24} {:<12} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        "kb_id", "category", "same", "missing", "extra", "changed", "expiry"
    );
    for ((kb, cat), c) in &report.tallies {
        out += &format!(
            "{:<24} {:<12} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            display_bytes(kb),
            cat,
            c.same,
            c.missing,
            c.extra,
            c.changed,
            c.expiry
        );
    }
    let mut groups: BTreeMap<(String, String, Kind), Vec<String>> = BTreeMap::new();
    for k in &report.keys {
        groups
            .entry((display_bytes(&k.kb_id), k.category.to_string(), k.kind))
            .or_default()
            .push(format!("{} ({})", display_bytes(&k.key), k.detail));
    }
    for ((kb, cat, kind), keys) in &groups {
        out += &format!("\n{kind:?} in {kb} {cat} ({}):\n", keys.len()).to_lowercase();
        for key in keys.iter().take(EXAMPLES_PER_GROUP) {
            out += &format!("  {key}\n");
        }
        if keys.len() > EXAMPLES_PER_GROUP {
            out += &format!(
                "  ... {} more; --json lists every key\n",
                keys.len() - EXAMPLES_PER_GROUP
            );
        }
    }
    for d in &report.damaged {
        out += &format!("damaged archive: {}: {}\n", d.what, d.reason);
    }
    out
}
