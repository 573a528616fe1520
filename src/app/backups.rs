//! `kbdump backups list | prune | verify | check | test`.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::options::retention_policy;
use super::progress::key_progress;
use super::report::{human_bytes, iso_ms, print_json, print_text};
use super::{GlobalOpts, EXIT_CHECK_FAILED, EXIT_ERROR};
use crate::cli::backup::{BackupsCheckArgs, BackupsTestArgs, BackupsVerifyArgs, PruneArgs};
use crate::cli::{BackupsArgs, BackupsCommand};
use crate::clock::Clock;
use crate::flow::backups::check::{check, write_metrics, CheckReport, ServerSide};
use crate::flow::backups::restore_test::{restore_test, TestOutcome};
use crate::flow::backups::verify::{verify_dir, Checked, Depth, FileVerdict};
use crate::flow::backups::{list, prune, DirLock, Entry, Status};
use crate::kato::display_bytes;
use crate::net::redis::RedisConn;
use crate::plan::health::{human_duration, Thresholds};
use crate::sink::redis::Target;

pub async fn run(args: BackupsArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    match args.command {
        BackupsCommand::List(dir) => list_cmd(&dir.dir, global),
        BackupsCommand::Prune(args) => prune_cmd(&args, global),
        BackupsCommand::Verify(args) => verify_cmd(&args, global),
        BackupsCommand::Check(args) => check_cmd(&args, global).await,
        BackupsCommand::Test(args) => test_cmd(&args, global).await,
    }
}

/// "scan" for a SCAN export of a live server, else the source kind.
fn method(entry: &Entry) -> String {
    match entry.source_kind() {
        Some("redis-server") => "scan".to_string(),
        Some(kind) => kind.to_string(),
        None => "?".to_string(),
    }
}

fn list_cmd(dir: &Path, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let entries = list(dir, &global.keys)?;
    let now = Clock::system().now_ms();
    if global.json {
        let rows: Vec<_> = entries.iter().map(|e| entry_json(e, now)).collect();
        print_json(&json!({"dir": dir.display().to_string(), "backups": rows}))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = format!(
        "{:<24} {:>8} {:>10} {:<6} {:>6} {:>10}  {:<8} name\n",
        "time", "age", "size", "method", "kb_ids", "keys", "status"
    );
    for e in &entries {
        text += &format!(
            "{:<24} {:>8} {:>10} {:<6} {:>6} {:>10}  {:<8} {}\n",
            iso_ms(e.created_ms()),
            human_duration(now - e.created_ms()),
            human_bytes(e.size),
            method(e),
            e.kb_ids().len(),
            e.keys(),
            e.status.name(),
            e.name
        );
        if let Some(problem) = e.problem.as_ref().filter(|_| e.status == Status::Unknown) {
            text += &format!("  {problem}\n");
        }
    }
    text += &status_counts(&entries);
    print_text(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// How many backups of each status, the sealed ones said for what they are.
fn status_counts(entries: &[Entry]) -> String {
    let count = |status| entries.iter().filter(|e| e.status == status).count();
    let mut out = format!("{} good", count(Status::Good));
    let sealed = count(Status::Sealed);
    if sealed > 0 {
        out += &format!(
            ", {sealed} sealed (encrypted, not opened: counts from their summaries, ciphertext \
             size as written, contents NOT checked; --identity FILE reads them)"
        );
    }
    out += &format!(", {} damaged", count(Status::Damaged));
    let unknown = count(Status::Unknown);
    if unknown > 0 {
        out += &format!(", {unknown} unknown (encrypted, no usable summary)");
    }
    out + "\n"
}

fn entry_json(e: &Entry, now: i64) -> serde_json::Value {
    let cells: Vec<_> = e
        .cells
        .iter()
        .map(|((kb, cat), c)| json!({"kb_id": display_bytes(kb), "category": cat.to_string(), "keys": c.keys, "bytes": c.bytes}))
        .collect();
    json!({
        "name": e.name,
        "path": e.path.display().to_string(),
        "created_ms": e.created_ms(),
        "created_at": iso_ms(e.created_ms()),
        "age_seconds": (now - e.created_ms()) / 1000,
        "size": e.size,
        "method": method(e),
        "kb_ids": e.kb_ids().iter().map(|k| display_bytes(k)).collect::<Vec<_>>(),
        "keys": e.keys(),
        "status": e.status,
        "encrypted": e.encrypted,
        "contents_checked": e.is_good(),
        "problem": e.problem,
        "note": e.note,
        "contents": cells,
    })
}

fn prune_cmd(args: &PruneArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let policy = retention_policy(&args.retention)?;
    let now = Clock::system().now_ms();
    let dir = &args.dir.dir;
    let _lock = DirLock::acquire(dir, "backups prune", now)?;
    let outcome = prune(dir, &policy, now, args.dry_run, &global.keys)?;
    if global.json {
        let mut value = serde_json::to_value(&outcome)?;
        value["dry_run"] = json!(args.dry_run);
        print_json(&value)?;
        return Ok(ExitCode::SUCCESS);
    }
    if global.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut text = format!(
        "{}: {} kept, {} {verb}\n",
        outcome.policy,
        outcome.kept.len(),
        outcome.deleted.len()
    );
    for (name, reasons) in &outcome.kept {
        text += &format!("  keep   {name} ({})\n", reasons.join(", "));
    }
    for name in &outcome.deleted {
        text += &format!("  {verb} {name}\n");
    }
    print_text(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn verify_cmd(args: &BackupsVerifyArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let clock = Clock::system();
    let depth = match args.sample {
        Some(pct) => Depth::Sample {
            pct,
            seed: clock.now_ms() as u64,
        },
        None => Depth::Full,
    };
    let verdicts = verify_dir(&args.dir.dir, depth, clock.now_ms(), &global.keys)?;
    let clean = verdicts.iter().all(FileVerdict::is_clean);
    if global.json {
        print_json(&json!({"ok": clean, "backups": verdicts}))?;
    } else {
        print_text(&verify_text(&verdicts, global.quiet))?;
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

fn clean_line(v: &FileVerdict) -> String {
    match v.checked {
        Checked::Contents => format!(
            "{}: OK ({} of {} blocks, {} keys)\n",
            v.name, v.blocks_checked, v.blocks_total, v.records_checked
        ),
        _ => format!(
            "{}: SEALED, ciphertext intact (SHA-256 and length as its summary recorded); \
             contents NOT checked: no identity given opens it (--identity FILE)\n",
            v.name
        ),
    }
}

fn verify_text(verdicts: &[FileVerdict], quiet: bool) -> String {
    let mut out = String::new();
    for v in verdicts {
        if v.is_clean() {
            if !quiet {
                out += &clean_line(v);
            }
            continue;
        }
        out += &match &v.moved_to {
            Some(to) => format!("{}: DAMAGED, moved to {to}\n", v.name),
            None => format!("{}: NOT CHECKED\n", v.name),
        };
        for p in &v.problems {
            let at = p.offset.map_or(String::new(), |o| format!("byte {o}: "));
            let block = p.block.as_ref().map_or(String::new(), |b| format!("{b}: "));
            out += &format!("  {at}{block}{}\n", p.message);
        }
    }
    if verdicts.is_empty() && !quiet {
        out += "no good backup to verify\n";
    }
    out
}

async fn check_cmd(args: &BackupsCheckArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let limits = Thresholds {
        max_age_ms: args.max_age,
        max_drop: args.max_drop / 100.0,
        max_memory_pct: args.max_memory_pct,
        max_save_age_ms: args.max_save_age,
        max_test_age_ms: args.max_test_age.0,
    };
    let server = match &args.redis {
        None => ServerSide::None,
        Some(url) => match RedisConn::connect(url).await {
            Ok(conn) => ServerSide::Conn(conn),
            Err(e) => ServerSide::Unreachable(e.to_string()),
        },
    };
    let now = Clock::system().now_ms();
    let report = check(&args.dir.dir, server, &limits, now, &global.keys).await?;
    // The findings are told even when the metrics cannot be written.
    if global.json {
        print_json(&check_json(&report))?;
    } else {
        print_text(&check_text(&report, now, global.quiet))?;
    }
    if let Some(path) = &args.prometheus {
        write_metrics(path, &report.metrics)?;
    }
    Ok(if report.incomplete.is_some() {
        ExitCode::from(EXIT_ERROR)
    } else if !report.findings.is_empty() {
        ExitCode::from(EXIT_CHECK_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn check_json(report: &CheckReport) -> serde_json::Value {
    let newest = report
        .entries
        .iter()
        .filter(|e| e.is_usable())
        .max_by_key(|e| e.created_ms());
    let count = |status| report.entries.iter().filter(|e| e.status == status).count();
    json!({
        "healthy": report.findings.is_empty() && report.incomplete.is_none(),
        "findings": report.findings,
        "could_not_check": report.incomplete,
        "backups": {
            "good": count(Status::Good),
            "sealed": count(Status::Sealed),
            "damaged": count(Status::Damaged),
            "unknown": count(Status::Unknown),
            "newest_good": newest.map(|e| e.name.clone()),
            "newest_good_created_ms": newest.map(Entry::created_ms),
            "newest_good_contents_checked": newest.map(Entry::is_good),
        },
        "restore_tests": report.tests,
        "server": report.server.as_ref().map(|s| json!({"address": s.address, "health": s.health})),
    })
}

fn check_text(report: &CheckReport, now: i64, quiet: bool) -> String {
    let mut out = String::new();
    for f in &report.findings {
        out += &format!(
            "{} {}: {}\n",
            f.severity.name().to_uppercase(),
            f.alarm.name(),
            f.message
        );
    }
    if let Some(why) = &report.incomplete {
        out += &format!("UNKNOWN could_not_check: {why}\n");
    }
    if out.is_empty() && !quiet {
        let usable: Vec<&Entry> = report.entries.iter().filter(|e| e.is_usable()).collect();
        let newest = usable.iter().max_by_key(|e| e.created_ms());
        let sealed = usable.iter().filter(|e| !e.is_good()).count();
        let what = if sealed == 0 {
            format!("{} good backups", usable.len())
        } else {
            format!(
                "{} backups: {} read in full, {sealed} sealed (encrypted, not opened here: \
                 judged by their summaries and sizes, contents NOT checked)",
                usable.len(),
                usable.len() - sealed
            )
        };
        out += &format!(
            "OK: {what}, newest {} ({} old){}\n",
            newest.map_or("none".to_string(), |e| e.name.clone()),
            newest.map_or("-".to_string(), |e| human_duration(now - e.created_ms())),
            report
                .server
                .as_ref()
                .map_or(String::new(), |s| format!("; {} healthy", s.address))
        );
    }
    out
}

async fn test_cmd(args: &BackupsTestArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let target = Target::connect(&args.scratch).await?;
    let clock = Clock::system();
    let progress = key_progress(global);
    let outcome = restore_test(
        &args.dir.dir,
        args.backup.as_deref(),
        &target,
        &clock,
        &global.keys,
        progress.as_ref(),
    )
    .await?;
    if global.json {
        print_json(&serde_json::to_value(&outcome)?)?;
    } else if !(global.quiet && outcome.ok) {
        print_text(&test_text(&outcome))?;
    }
    Ok(if outcome.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

fn test_text(o: &TestOutcome) -> String {
    let mut out = format!(
        "restore test of {}: {}: {}\n",
        o.backup.display(),
        if o.ok { "PASSED" } else { "FAILED" },
        o.detail
    );
    for d in &o.damaged {
        out += &format!("  damaged: {}: {}\n", d.what, d.reason);
    }
    for f in o.failures.iter().take(20) {
        out += &format!("  failed: {}: {}\n", f.what, f.reason);
    }
    for k in &o.examples {
        out += &format!("  {:?} {} ({})\n", k.kind, display_bytes(&k.key), k.detail);
    }
    out += &format!(
        "scratch server {} emptied: {} keys deleted{}\n",
        o.scratch,
        o.removed,
        if o.left_on_scratch > 0 {
            format!(
                "; {} keys that were not in the backup are still there (written during the test?)",
                o.left_on_scratch
            )
        } else {
            String::new()
        }
    );
    out
}
