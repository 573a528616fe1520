//! `kbdump check`.

use std::process::ExitCode;

use serde_json::json;

use super::common::{connect_clickhouse, connect_redis, resolve_clickhouse_kbs};
use super::report::{print_json, print_report};
use super::{GlobalOpts, EXIT_CHECK_FAILED};
use crate::cli::CheckArgs;
use crate::flow::check::{check, KbReport};

pub async fn run(args: CheckArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let ch = connect_clickhouse(
        &args.clickhouse.clickhouse,
        args.clickhouse.clickhouse_password_file.as_deref(),
    )
    .await?;
    let conn = connect_redis(&args.redis).await?;
    let kb_ids = resolve_clickhouse_kbs(&ch, &args.kbs, args.allow_empty).await?;
    let reports = if kb_ids.is_empty() {
        Vec::new()
    } else {
        check(&ch, &conn, &kb_ids).await?
    };
    let findings: u64 = reports.iter().map(KbReport::total).sum();
    if global.json {
        print_json(&json!({"findings": findings, "kbs": reports}))?;
    } else {
        print_report(global, findings == 0, &text(&reports))?;
    }
    Ok(if findings > 0 {
        ExitCode::from(EXIT_CHECK_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn text(reports: &[KbReport]) -> String {
    let mut out = String::new();
    for r in reports {
        if r.total() == 0 {
            out += &format!("{}: ok ({} patterns)\n", r.kb_id, r.patterns);
            continue;
        }
        out += &format!(
            "{}: {} findings ({} patterns)\n",
            r.kb_id,
            r.total(),
            r.patterns
        );
        for (name, f) in r.findings() {
            if f.count == 0 {
                continue;
            }
            out += &format!("  {name}: {}\n", f.count);
            for example in &f.examples {
                out += &format!("    {example}\n");
            }
        }
    }
    out
}
