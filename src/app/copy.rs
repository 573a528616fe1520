//! `kbdump copy`: server to server, no intermediate file.

use std::process::ExitCode;

use anyhow::Context;

use super::common::restore_with_undo;
use super::options::{restore_options, selection, selection_spec};
use super::report::{report_interrupted, report_restore, restore_exit_code, undo_stamp};
use super::GlobalOpts;
use crate::cli::CopyArgs;
use crate::clock::Clock;
use crate::net::redis::RedisConn;
use crate::sink::redis::Target;
use crate::source::live::{ExportOptions, LiveSource};

pub async fn run(args: CopyArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let from = RedisConn::connect(&args.from).await.context("source")?;
    let target = Target::connect(&args.to).await.context("target")?;
    let options = ExportOptions {
        selection: selection(&args.select),
        ..ExportOptions::default()
    };
    let clock = Clock::system();
    let source = LiveSource::open(from, options, selection_spec(&args.select), &clock).await?;
    let (items, task) = source.stream().split();
    // The selection's size is unknown before the copy ends, so the memory
    // guard is a running budget: the copy stops before the target evicts.
    let options = restore_options(&args.write, &target, global.interrupts.stop());
    let undo = args
        .undo
        .clone()
        .unwrap_or_else(|| format!("copy.undo-{}.kbd", undo_stamp()).into());
    let (summary, undo) = restore_with_undo(&target, items, &options, &undo, global).await?;
    if summary.interrupted {
        // The source stopped because the copy stopped reading it.
        return report_interrupted(&summary, &options, &target, undo.as_ref(), global, "copy");
    }
    task.finish().await.context("reading the source")?;
    report_restore(&summary, &options, &target, undo.as_ref(), global)?;
    Ok(restore_exit_code(&summary))
}
