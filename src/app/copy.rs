//! `kbdump copy`: server to server, no intermediate file.

use std::process::ExitCode;

use anyhow::Context;

use super::common::{
    check_before_writing, check_write_permissions, connect_target, endpoint, restore_with_undo,
    Existing,
};
use super::options::{check_write_args, pace, restore_options, selection, selection_spec};
use super::report::{report_interrupted, report_restore_selection, restore_exit_code, undo_stamp};
use super::GlobalOpts;
use crate::cli::CopyArgs;
use crate::flow::preflight::dbsize;
use crate::source::live::{ExportOptions, LiveSource};

pub async fn run(args: CopyArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    check_write_args(&args.write)?;
    let from = endpoint(
        &args.from,
        args.from_password_file.as_deref(),
        &args.from_tls(),
        "from-",
    )
    .context("source")?;
    let to = endpoint(
        &args.to,
        args.to_password_file.as_deref(),
        &args.to_tls(),
        "to-",
    )
    .context("target")?;
    let pace = pace(&args.pace);
    let from = pace.patience.connect(&from).await.context("source")?;
    let target = connect_target(&to).await.context("target")?;
    // The selection's size is unknown before the copy ends, so the memory
    // guard is a running budget: the copy stops before the target evicts.
    let write = restore_options(&args.write, &target, global.interrupts.stop());
    check_write_permissions(&target, &write)
        .await
        .context("target")?;
    let options = ExportOptions {
        selection: selection(&args.select),
        pace,
        ..ExportOptions::default()
    };
    // A `--kb` that names nothing fails here, before anything is written.
    let mut source = LiveSource::open(from, options, selection_spec(&args.select)).await?;
    let total = source.estimated_total();
    let left_out = source.take_left_out();
    let options = write;
    // Reading a live source twice to count would load it twice: the
    // target's key count is the conservative bound.
    let occupied = check_before_writing(&target, &options, args.yes, async || {
        Ok(Existing::AtMost(dbsize(&target.conn).await?))
    })
    .await?;
    let (items, task) = source.stream().split();
    let undo = args
        .undo
        .clone()
        .unwrap_or_else(|| format!("copy.undo-{}.kbd", undo_stamp()).into());
    let (mut summary, undo) =
        restore_with_undo(&target, items, &options, &undo, total, global).await?;
    summary.rename_targets = occupied;
    if summary.interrupted {
        // The source stopped because the copy stopped reading it.
        return report_interrupted(&summary, &options, &target, undo.as_ref(), global, "copy");
    }
    task.finish().await.context("reading the source")?;
    let left_out = match left_out {
        Some(task) => Some(task.await.context("counting the source")??),
        None => None,
    };
    report_restore_selection(
        &summary,
        &options,
        &target,
        undo.as_ref(),
        left_out.as_ref(),
        global,
    )?;
    Ok(restore_exit_code(&summary))
}
