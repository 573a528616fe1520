//! `kbdump mirror`.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::args::RedisArgs;
use super::clickhouse_args::ClickHouseArgs;
use super::progress::key_progress;
use super::{print_json, GlobalOpts};
use crate::kato::parse_display_bytes;
use crate::net::mirror::prune;
use crate::net::redis::RedisConn;
use crate::pattern::Glob;
use crate::selection::Selection;
use crate::sink::mirror::mirror;
use crate::source::live::resolve_kbs;

const EXAMPLES: &str = "\
Examples:
  kbdump mirror --redis redis://127.0.0.1:6379 --clickhouse http://127.0.0.1:8123
  kbdump mirror --kb node0_kato --kb 'node1*' --json
  kbdump mirror --kb node0_kato --prune     # also forget keys deleted from Redis

Copies frequency, emotives, metadata and affinity keys (DUMP payload, type,
expiry) into the ClickHouse table redis_mirror (created if absent). Reruns
replace rows of the same key (ReplacingMergeTree, read with FINAL). A key
deleted from Redis keeps its last row, and restore --from-clickhouse would
bring it back, unless the run has --prune: then the mirrored kb_ids' rows
older than the run are deleted once it is complete.";

/// Copy the unrecoverable categories of kb_ids from Redis into ClickHouse.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXAMPLES)]
pub struct MirrorArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    /// kb_id or glob (repeatable; default: every kb_id on the Redis server).
    #[arg(long = "kb", value_name = "ID|GLOB")]
    pub kbs: Vec<String>,
    /// After mirroring, delete the mirrored kb_ids' rows of keys that are
    /// no longer in Redis (and superseded versions): makes the run a sync.
    #[arg(long)]
    pub prune: bool,
}

pub async fn run(args: MirrorArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let ch = args.clickhouse.connect().await?;
    let mut conn = RedisConn::connect(&args.redis.redis).await?;
    let selection = Selection {
        kbs: args
            .kbs
            .iter()
            .map(|k| Glob::new(parse_display_bytes(k)))
            .collect(),
        ..Selection::default()
    };
    let kb_ids = resolve_kbs(&mut conn, &selection).await?;
    let progress = key_progress(global);
    let summary = mirror(&conn, &ch, &kb_ids, progress.as_ref()).await?;
    let pruned = if args.prune {
        Some(prune(&ch, &kb_ids, summary.started_at_ms).await?)
    } else {
        None
    };
    if global.json {
        print_json(&json!({
            "redis": conn.address(),
            "clickhouse": ch.target().to_string(),
            "summary": summary,
            "pruned": pruned,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    for (kb, cats) in &summary.kbs {
        let line: Vec<String> = cats.iter().map(|(c, (n, _))| format!("{c} {n}")).collect();
        println!("{kb}: {}", line.join(", "));
    }
    println!(
        "mirrored {} keys into {} ({} vanished during the scan)",
        summary.keys,
        ch.target(),
        summary.vanished
    );
    if let Some(n) = pruned {
        println!("pruned {n} keys no longer in Redis");
    }
    Ok(ExitCode::SUCCESS)
}
