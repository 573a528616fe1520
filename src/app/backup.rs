//! `kbdump backup`.

use std::process::ExitCode;

use serde_json::json;

use super::common::redis_endpoint;
use super::options::{pace, recipients, retention_policy, selection, selection_spec};
use super::progress::key_progress;
use super::report::{human_bytes, iso_ms, print_json, print_text};
use super::GlobalOpts;
use crate::cli::BackupArgs;
use crate::flow::backups::run::{backup, BackupOptions, BackupOutcome};
use crate::flow::backups::Holder;
use crate::format::archive::WriterOptions;
use crate::source::live::ExportOptions;

pub async fn run(args: BackupArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let policy = retention_policy(&args.retention)?;
    // A bad recipient is refused before the server is contacted.
    let recipients = recipients(&args.encrypt)?;
    let options = BackupOptions {
        dir: args.dir.dir.clone(),
        export: ExportOptions {
            selection: selection(&args.select),
            scan_count: args.scan_count,
            pace: pace(&args.pace),
            ..ExportOptions::default()
        },
        spec: selection_spec(&args.select),
        writer: WriterOptions {
            level: args.level,
            ..WriterOptions::default()
        },
        policy,
        allow_empty: args.select.allow_empty,
        recipients,
        keys: global.keys.clone(),
    };
    let progress = key_progress(global);
    let outcome = backup(&redis_endpoint(&args.redis)?, &options, progress.as_ref()).await?;
    if let Some(stale) = &outcome.took_over {
        eprintln!("kbdump: {}", took_over(stale));
    }
    if global.json {
        print_json(&to_json(&outcome))?;
    } else if !global.quiet {
        print_text(&to_text(&outcome))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The message for a stale lock taken over.
fn took_over(stale: &Holder) -> String {
    format!(
        "took over the lock of kbdump {} (pid {} on {}, since {}), which is no longer running",
        stale.command,
        stale.pid,
        stale.host,
        iso_ms(stale.since_ms)
    )
}

fn to_json(o: &BackupOutcome) -> serde_json::Value {
    let mut value = serde_json::to_value(o).unwrap_or_default();
    value["created_at"] = json!(iso_ms(o.created_ms));
    value["keys"] = json!(o.summary.keys);
    value["payload_bytes"] = json!(o.summary.payload_bytes);
    value["vanished"] = json!(o.summary.vanished);
    value["source"] =
        json!({"address": o.address, "product": o.server.product, "version": o.server.version});
    value["took_over_lock"] = json!(o.took_over.as_ref().map(took_over));
    value
}

/// What the run checked of the file it wrote.
fn verified_text(o: &BackupOutcome) -> String {
    let contents = o
        .verified
        .as_ref()
        .map(|v| format!("verified {} blocks, {} keys", v.blocks_ok, v.records_ok));
    match (&o.encrypted, contents) {
        (None, contents) => contents.unwrap_or_default(),
        (Some(_), Some(contents)) => format!("encrypted; decrypted with --identity and {contents}"),
        (Some(sealed), None) => format!(
            "encrypted; ciphertext read back from disk intact (SHA-256 {}), contents not \
             decrypted (no --identity)",
            sealed.sha256
        ),
    }
}

fn to_text(o: &BackupOutcome) -> String {
    let mut out = format!(
        "backup {}: {} keys ({} of payload, {} on disk) from {} ({} {}); {}\n",
        o.file.display(),
        o.summary.keys,
        human_bytes(o.summary.payload_bytes),
        human_bytes(o.archive_bytes),
        o.address,
        o.server.product,
        o.server.version,
        verified_text(o),
    );
    if let Some(sealed) = &o.encrypted {
        out += &format!(
            "summary {} (kb_ids and counts, in clear)\n",
            sealed.summary.display()
        );
    }
    let r = &o.retention;
    out += &format!(
        "retention ({}): {} kept, {} deleted\n",
        r.policy,
        r.kept.len(),
        r.deleted.len()
    );
    for name in &r.deleted {
        out += &format!("  deleted {name}\n");
    }
    for name in &o.stale_temporaries {
        out += &format!("deleted {name}, left by a run that did not finish\n");
    }
    out
}
