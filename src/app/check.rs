//! `kbdump check`.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::args::RedisArgs;
use super::clickhouse_args::{resolve_kbs, ClickHouseArgs};
use super::{print_json, GlobalOpts, EXIT_CHECK_FAILED};
use crate::flow::check::{check, KbReport};
use crate::net::redis::RedisConn;

const EXAMPLES: &str = "\
Examples:
  kbdump check --clickhouse http://127.0.0.1:8123 --redis redis://127.0.0.1:6379
  kbdump check --kb node0_kato --json
  kbdump check --kb 'node*_kato'

Exit status: 0 the stores agree; 1 findings; 2 an error.";

/// Compare ClickHouse's patterns with Redis; exit 1 on findings.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXAMPLES)]
pub struct CheckArgs {
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// kb_id or glob to check (repeatable; default: every kb_id in
    /// ClickHouse).
    #[arg(long = "kb", value_name = "ID|GLOB")]
    pub kbs: Vec<String>,
}

pub async fn run(args: CheckArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let ch = args.clickhouse.connect().await?;
    let conn = RedisConn::connect(&args.redis.redis).await?;
    let kb_ids = resolve_kbs(&ch, &args.kbs).await?;
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
