//! `kbdump rebuild`.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::args::RedisArgs;
use super::clickhouse_args::{resolve_kbs, write_connection, ClickHouseArgs};
use super::progress::key_progress;
use super::{print_json, GlobalOpts};
use crate::flow::rebuild::{rebuild, KbSummary, RebuildOptions};

const EXAMPLES: &str = "\
Examples:
  kbdump rebuild --clickhouse http://127.0.0.1:8123 --redis redis://127.0.0.1:6379
  kbdump rebuild --kb node0_kato --dry-run
  kbdump rebuild --kb 'node*_kato' --json
  kbdump rebuild --kb node0_kato --only-missing     # after a partial loss
  CLICKHOUSE_URL='http://user:pw@ch:8123/?database=kato' kbdump rebuild --json

Writes what KATO's rehydration writes (symbols:freq/pmf, symbol_to_patterns:*,
global:*, entropy, normalized_entropy, global_normalized_entropy, tf_vector),
and frequency:{p} = 1 only where it is missing: a surviving count is never
lowered. Emotives, metadata, affinity and true frequencies cannot be rebuilt:
restore them from a backup or from `kbdump mirror`.";

/// Rebuild the derivable data of kb_ids from ClickHouse into Redis.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXAMPLES)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// kb_id or glob to rebuild (repeatable; default: every kb_id in
    /// ClickHouse).
    #[arg(long = "kb", value_name = "ID|GLOB")]
    pub kbs: Vec<String>,
    /// Count what would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write only keys and hash fields that are absent; change nothing.
    #[arg(long)]
    pub only_missing: bool,
}

pub async fn run(args: RebuildArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let ch = args.clickhouse.connect().await?;
    let (checked, conn) = write_connection(&args.redis.redis).await?;
    let opts = RebuildOptions {
        dry_run: args.dry_run,
        only_missing: args.only_missing,
        ..RebuildOptions::default()
    };
    let kb_ids = resolve_kbs(&ch, &args.kbs).await?;
    let progress = key_progress(global);
    let summaries = if kb_ids.is_empty() {
        Vec::new()
    } else {
        rebuild(&ch, conn, &kb_ids, &opts, progress.as_ref()).await?
    };
    if global.json {
        print_json(&json!({
            "clickhouse": ch.target().to_string(),
            "redis": checked.address(),
            "dry_run": args.dry_run,
            "only_missing": args.only_missing,
            "kbs": summaries,
        }))?;
    } else {
        print_text(&summaries, args.dry_run);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(summaries: &[KbSummary], dry_run: bool) {
    let verb = if dry_run { "would write" } else { "written" };
    for s in summaries {
        println!(
            "{}: {} patterns, {} symbols, {} with metrics; {verb} {}, skipped {} (existing) in {:.1}s",
            s.kb_id, s.patterns, s.symbols, s.metrics, s.written, s.skipped, s.seconds
        );
        for (cat, c) in &s.categories {
            println!(
                "  {cat:<10} {verb} {:>9}  skipped {:>9}",
                c.written, c.skipped
            );
        }
        if s.rows_changed {
            println!("  warning: patterns_data changed during the rebuild; run it again");
        }
    }
    if summaries.is_empty() {
        println!("no kb_id to rebuild");
    }
}
