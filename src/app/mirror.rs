//! `kbdump mirror`.

use std::process::ExitCode;

use serde_json::json;

use super::common::{connect_clickhouse, redis_endpoint};
use super::options::{kb_selection, pace};
use super::progress::key_progress;
use super::report::{print_json, print_report};
use super::GlobalOpts;
use crate::cli::MirrorArgs;
use crate::clock::Clock;
use crate::net::mirror::prune;
use crate::sink::mirror::mirror_paced;
use crate::source::live::resolve_kbs;

pub async fn run(args: MirrorArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let ch = connect_clickhouse(
        &args.clickhouse.clickhouse,
        args.clickhouse.clickhouse_password_file.as_deref(),
    )
    .await?;
    let pace = pace(&args.pace);
    let mut conn = pace.patience.connect(&redis_endpoint(&args.redis)?).await?;
    let selection = kb_selection(&args.kbs, args.allow_empty);
    let kb_ids = resolve_kbs(&mut conn, &selection).await?;
    let progress = key_progress(global);
    let clock = Clock::system();
    let summary = mirror_paced(&conn, &ch, &kb_ids, &clock, &pace, progress.as_ref()).await?;
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
    let mut out = String::new();
    for (kb, cats) in &summary.kbs {
        let line: Vec<String> = cats.iter().map(|(c, (n, _))| format!("{c} {n}")).collect();
        out += &format!("{kb}: {}\n", line.join(", "));
    }
    out += &format!(
        "mirrored {} keys into {} ({} vanished during the scan)\n",
        summary.keys,
        ch.target(),
        summary.vanished
    );
    if let Some(n) = pruned {
        out += &format!("pruned {n} keys no longer in Redis\n");
    }
    print_report(global, true, &out)?;
    Ok(ExitCode::SUCCESS)
}
