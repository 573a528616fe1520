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
use crate::flow::follow::{self, FollowOptions, FollowReport, FollowStats};
use crate::sink::mirror::{mirror_paced, MirrorOptions, MirrorSummary};
use crate::source::live::resolve_kbs;

pub async fn run(args: MirrorArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    if args.follow {
        return follow(args, global).await;
    }
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
    let options = mirror_options(&args);
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

fn mirror_options(args: &MirrorArgs) -> MirrorOptions {
    MirrorOptions {
        create: args.create,
        max_shrink_percent: args.max_shrink,
        force: args.force,
        keep_ms: args.keep.map(|ms| ms as u64),
    }
}

/// `mirror --follow`: runs until a signal, then says what it did.
async fn follow(args: MirrorArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    if args.force || args.keep.is_some() {
        anyhow::bail!(
            "--follow takes neither --force nor --keep: run a plain `kbdump mirror --keep …` \
             (from a timer) beside it, and --force by hand when deletions above --max-shrink are meant"
        );
    }
    let ch = connect_clickhouse(
        &args.clickhouse.clickhouse,
        args.clickhouse.clickhouse_password_file.as_deref(),
    )
    .await?;
    let pace = pace(&args.pace);
    let endpoint = redis_endpoint(&args.redis)?;
    let selection = kb_selection(&args.kbs, args.allow_empty);
    let options = FollowOptions {
        status_every: std::time::Duration::from_secs(args.status_every.max(1)),
        pass: mirror_options(&args),
        ..FollowOptions::default()
    };
    let report = Lines {
        quiet: global.quiet,
        clickhouse: ch.target().to_string(),
    };
    let stop = global.interrupts.stop();
    let stats = follow::follow(
        &endpoint,
        &ch,
        &selection,
        (&options, &pace),
        &stop,
        &report,
    )
    .await?;
    if global.json {
        print_json(&json!({ "clickhouse": ch.target().to_string(), "follow": stats }))?;
    } else {
        print_report(
            global,
            true,
            &format!("{}\n", status_line("stopped", &stats)),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The follower's progress as lines on stderr.
struct Lines {
    quiet: bool,
    clickhouse: String,
}

impl FollowReport for Lines {
    fn pass(&self, summary: &MirrorSummary) {
        if !summary.held_back.is_empty() {
            for s in &summary.held_back {
                warn(&format!(
                    "{} {}: {} of {} keys gone since the last pass, above --max-shrink: no \
                     deletion recorded (an eviction storm or a flush?)",
                    s.kb_id, s.category, s.gone, s.before
                ));
            }
        }
        if !self.quiet {
            eprintln!(
                "kbdump: mirror --follow: full pass into {}: {} keys, {} recorded as deleted; following",
                self.clickhouse, summary.keys, summary.deleted
            );
        }
    }

    fn retrying(&self, what: &str, wait: std::time::Duration) {
        warn(&format!("{what}; retrying in {:.1} s", wait.as_secs_f64()));
    }

    fn status(&self, stats: &FollowStats) {
        if !self.quiet {
            eprintln!("kbdump: {}", status_line("following", stats));
        }
    }
}

fn status_line(state: &str, s: &FollowStats) -> String {
    format!(
        "mirror --follow {state}: {} versions, {} deleted, {} evicted (not recorded as deleted), \
         {} full passes, {} reconnects, {} ClickHouse failures; lag last {} ms, max {} ms",
        s.versions,
        s.deleted,
        s.evicted,
        s.passes,
        s.reconnects,
        s.clickhouse_failures,
        s.last_lag_ms,
        s.max_lag_ms
    )
}
