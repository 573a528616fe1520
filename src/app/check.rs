//! `kbdump check`.

use std::process::ExitCode;

use serde_json::json;

use super::common::{connect_clickhouse, connect_redis, resolve_clickhouse_kbs};
use super::report::print_json;
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
    let kb_ids = resolve_clickhouse_kbs(&ch, &args.kbs).await?;
    let reports = if kb_ids.is_empty() {
        Vec::new()
    } else {
        check(&ch, &conn, &kb_ids).await?
    };
    let findings: u64 = reports.iter().map(KbReport::total).sum();
    if global.json {
        print_json(&json!({"findings": findings, "kbs": reports}))?;
    } else {
        print_text(&reports);
    }
    Ok(if findings > 0 {
        ExitCode::from(EXIT_CHECK_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_text(reports: &[KbReport]) {
    for r in reports {
        if r.total() == 0 {
            println!("{}: ok ({} patterns)", r.kb_id, r.patterns);
            continue;
        }
        println!(
            "{}: {} findings ({} patterns)",
            r.kb_id,
            r.total(),
            r.patterns
        );
        for (name, f) in r.findings() {
            if f.count == 0 {
                continue;
            }
            println!("  {name}: {}", f.count);
            for example in &f.examples {
                println!("    {example}");
            }
        }
    }
}
