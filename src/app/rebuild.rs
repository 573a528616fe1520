//! `kbdump rebuild`.

use std::process::ExitCode;

use serde_json::json;

use super::common::{connect_clickhouse, resolve_clickhouse_kbs, write_connection};
use super::progress::key_progress;
use super::report::{print_json, print_report};
use super::GlobalOpts;
use crate::cli::RebuildArgs;
use crate::flow::rebuild::{rebuild, KbSummary, RebuildOptions};

pub async fn run(args: RebuildArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let ch = connect_clickhouse(
        &args.clickhouse.clickhouse,
        args.clickhouse.clickhouse_password_file.as_deref(),
    )
    .await?;
    let (mut checked, conn) = write_connection(&args.redis).await?;
    // New sets go out as payloads sealed with the target's own RDB
    // version (one it surely reads); a release kbdump does not know, or a
    // user who may not run INFO, keeps to SADD.
    let rdb_version = checked
        .server_info()
        .await
        .ok()
        .and_then(|info| info.rdb_version());
    let opts = RebuildOptions {
        dry_run: args.dry_run,
        only_missing: args.only_missing,
        set_payload_rdb_version: rdb_version,
        cluster: checked.is_cluster(),
        ..RebuildOptions::default()
    };
    let kb_ids = resolve_clickhouse_kbs(&ch, &args.kbs, args.allow_empty).await?;
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
        let from = format!(
            "from patterns_data of ClickHouse {} into Redis {}\n",
            ch.target(),
            checked.address()
        );
        print_report(global, true, &(from + &text(&summaries, args.dry_run)))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn text(summaries: &[KbSummary], dry_run: bool) -> String {
    let verb = if dry_run { "would write" } else { "written" };
    let mut out = String::new();
    for s in summaries {
        out += &format!(
            "{}: {} patterns, {} symbols, {} with metrics; {verb} {}, skipped {} (existing) in {:.1}s\n",
            s.kb_id, s.patterns, s.symbols, s.metrics, s.written, s.skipped, s.seconds
        );
        for (cat, c) in &s.categories {
            out += &format!(
                "  {cat:<10} {verb} {:>9}  skipped {:>9}\n",
                c.written, c.skipped
            );
        }
        if s.rows_changed {
            out += "  warning: patterns_data changed during the rebuild; run it again\n";
        }
    }
    if summaries.is_empty() {
        out += "no kb_id to rebuild\n";
    }
    out
}
