//! `kbdump verify`: full integrity check.

use std::process::ExitCode;

use serde_json::json;

use super::common::ArchiveInput;
use super::report::{print_json, print_report};
use super::{GlobalOpts, EXIT_CHECK_FAILED};
use crate::cli::VerifyArgs;
use crate::flow::verify::{check_payload_decodes, verify, VerifyReport};
use crate::format::archive::Record;

pub async fn run(args: VerifyArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let input = ArchiveInput::parse(&args.file).with_keys(global.keys.clone());
    let check = |r: &Record| check_payload_decodes(&r.payload);
    let report = verify(&input, &check)?;
    if global.json {
        let mut value = serde_json::to_value(&report)?;
        value["file"] = json!(input.name());
        value["ok"] = json!(report.is_clean());
        print_json(&value)?;
    } else {
        print_report(global, report.is_clean(), &text(&input.name(), &report))?;
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

fn text(name: &str, report: &VerifyReport) -> String {
    let mut out = String::new();
    if report.is_clean() {
        out += &format!(
            "{name}: OK ({} blocks, {} keys, every payload decodes; RDB versions {})\n",
            report.blocks_ok,
            report.records_ok,
            versions(report)
        );
        return out;
    }
    out += &format!(
        "{name}: DAMAGED ({} blocks ok, {} damaged; {} keys ok, {} damaged{})\n",
        report.blocks_ok,
        report.blocks_damaged,
        report.records_ok,
        report.records_damaged,
        if report.complete {
            ""
        } else {
            "; the archive does not end properly"
        }
    );
    for p in &report.problems {
        let at = p.offset.map_or(String::new(), |o| format!("byte {o}: "));
        let block = p.block.as_ref().map_or(String::new(), |b| format!("{b}: "));
        out += &format!("  {at}{block}{}\n", p.message);
    }
    if !report.rdb_versions.is_empty() {
        out += &format!("  RDB versions seen: {}\n", versions(report));
    }
    out
}

fn versions(report: &VerifyReport) -> String {
    if report.rdb_versions.is_empty() {
        return "none".to_string();
    }
    let list: Vec<_> = report.rdb_versions.iter().map(u16::to_string).collect();
    list.join(", ")
}
