//! `kbdump copy`: server to server, no intermediate file.

use std::process::ExitCode;

use anyhow::Context;

use super::common::{restore_channel, restore_with_undo};
use super::options::{restore_options, selection};
use super::report::{report_restore, restore_exit_code, undo_stamp};
use super::GlobalOpts;
use crate::cli::CopyArgs;
use crate::net::redis::RedisConn;
use crate::progress::NoProgress;
use crate::sink::redis::{SourceItem, Target};
use crate::source::live::{resolve_kbs, scan_all, ExportEvent, ExportOptions, ExportSummary};

pub async fn run(args: CopyArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let mut source = RedisConn::connect(&args.from).await.context("source")?;
    let target = Target::connect(&args.to).await.context("target")?;
    let selection = selection(&args.select);
    let kb_ids = resolve_kbs(&mut source, &selection).await?;
    let export_options = ExportOptions {
        selection,
        ..ExportOptions::default()
    };
    let (events_tx, mut events_rx) = tokio::sync::mpsc::channel::<ExportEvent>(4096);
    let (items_tx, items_rx) = restore_channel();
    let exporter = tokio::spawn(async move {
        let mut summary = ExportSummary::default();
        scan_all(
            &source,
            &kb_ids,
            &export_options,
            &events_tx,
            &mut summary,
            &NoProgress,
        )
        .await
    });
    let forwarder = tokio::spawn(async move {
        while let Some(event) = events_rx.recv().await {
            if let ExportEvent::Record(record) = event {
                if items_tx.send(SourceItem::Record(record)).await.is_err() {
                    break;
                }
            }
        }
    });
    // The selection's size is unknown before the copy ends, so the memory
    // guard is a running budget: the copy stops before the target evicts.
    let options = restore_options(&args.write, &target);
    let undo = args
        .undo
        .clone()
        .unwrap_or_else(|| format!("copy.undo-{}.kbd", undo_stamp()).into());
    let (summary, undo_file) =
        restore_with_undo(&target, items_rx, &options, &undo, global).await?;
    exporter
        .await
        .context("the export side stopped unexpectedly")??;
    forwarder
        .await
        .context("the copy channel stopped unexpectedly")?;
    report_restore(&summary, &options, &target, undo_file.as_deref(), global)?;
    Ok(restore_exit_code(&summary))
}
