//! `kbdump mirror`.

use std::process::ExitCode;

use serde_json::json;

use super::common::{connect_clickhouse, redis_endpoint};
use super::options::{kb_selection, pace};
use super::progress::key_progress;
use super::report::{iso_ms, print_json, print_report, warn};
use super::GlobalOpts;
use crate::cli::MirrorArgs;
use crate::clock::Clock;
use crate::sink::mirror::{mirror_paced, MirrorOptions, MirrorSummary};
use crate::source::live::resolve_kbs;

pub async fn run(args: MirrorArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    if args.prune {
        warn(
            "--prune is no longer needed: every mirror run records the keys that are gone \
             (guarded by --max-shrink); ignoring it",
        );
    }
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
    let options = MirrorOptions {
        create: args.create,
        max_shrink_percent: args.max_shrink,
        force: args.force,
        keep_ms: args.keep.map(|ms| ms as u64),
    };
    let summary = mirror_paced(
        &conn,
        &ch,
        &kb_ids,
        &clock,
        (&options, &pace),
        progress.as_ref(),
    )
    .await?;
    let code = if summary.shrank_too_much() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };
    if !summary.prepared.has_patterns {
        warn(&format!(
            "{} has no table patterns_data: this is not KATO's database (is ?database= right?)",
            ch.target()
        ));
    }
    if global.json {
        print_json(&json!({
            "redis": conn.address(),
            "clickhouse": ch.target().to_string(),
            "summary": summary,
        }))?;
        return Ok(code);
    }
    let out = text_report(&summary, &ch.target().to_string(), args.max_shrink);
    print_report(global, !summary.shrank_too_much(), &out)?;
    Ok(code)
}

fn text_report(summary: &MirrorSummary, clickhouse: &str, max_shrink: f64) -> String {
    let mut out = String::new();
    let prepared = &summary.prepared;
    if prepared.created_database || prepared.created_table {
        out += &format!("created the mirror in {clickhouse}\n");
    }
    if let Some(rows) = prepared.imported_legacy_rows {
        out += &format!("converted the older mirror table redis_mirror: {rows} versions\n");
    }
    for (kb, cats) in &summary.kbs {
        let line: Vec<String> = cats.iter().map(|(c, (n, _))| format!("{c} {n}")).collect();
        out += &format!("{kb}: {}\n", line.join(", "));
    }
    out += &format!(
        "mirrored {} keys into {clickhouse} as of {} ({} vanished during the scan)\n",
        summary.keys,
        iso_ms(summary.started_at_ms as i64),
        summary.vanished
    );
    for s in &summary.held_back {
        out += &format!(
            "SHRANK: {} {}: {} of {} keys ({:.1}%) gone since the last run, above --max-shrink {}%\n",
            s.kb_id,
            s.category,
            s.gone,
            s.before,
            s.percent(),
            max_shrink
        );
    }
    if summary.shrank_too_much() {
        out += "no deletion recorded: an eviction storm (INFO stats evicted_keys) or a flush \
                is an alarm, not a change; the last versions of the missing keys stay restorable. \
                Rerun with --force if the deletions are meant\n";
    } else {
        out += &format!("recorded {} keys as deleted\n", summary.deleted);
    }
    if let Some(kept) = summary.kept {
        out += &format!(
            "--keep: dropped {} versions older than {}\n",
            kept.dropped,
            iso_ms(kept.from_ms as i64)
        );
    }
    out
}
