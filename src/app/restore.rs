//! `kbdump restore`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::common::{
    check_write_permissions, connect_clickhouse, connect_target, open_archive, redis_endpoint,
    restore_with_undo, source_outcome, ArchiveInput,
};
use super::options::{restore_options, selection};
use super::progress::known_total;
use super::report::{report_interrupted, report_restore, restore_exit_code, undo_stamp};
use super::GlobalOpts;
use crate::cli::RestoreArgs;
use crate::flow::restore::is_undo_archive;
use crate::selection::Selection;
use crate::source::mirror::MirrorSource;
use crate::source::Source;

pub async fn run(args: RestoreArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let selection = selection(&args.select);
    let target = connect_target(&redis_endpoint(&args.redis)?).await?;
    let (source, input) = open_source(&args, &selection).await?;
    if !args.write.force && !args.write.dry_run {
        // Without an index (a pipe, a cut file) the selection's size is
        // unknown: the running memory budget still applies.
        if let Some(size) = source.selected_size(&selection) {
            target.check_headroom(size.payload_bytes, size.keys)?;
        }
    }
    let total = known_total(source.selected_size(&selection), &selection);
    let mut options = restore_options(&args.write, &target, global.interrupts.stop());
    options.expired_means_absent = source.header().is_some_and(is_undo_archive);
    let (items, task) = source.stream(selection).split();
    check_write_permissions(&target, &options).await?;
    let undo = undo_path(&args, &input);
    let (summary, undo) = restore_with_undo(&target, items, &options, &undo, total, global).await?;
    if summary.interrupted {
        // The source was not read to its end: its verdict does not count.
        return report_interrupted(
            &summary,
            &options,
            &target,
            undo.as_ref(),
            global,
            "restore",
        );
    }
    source_outcome(task, &input).await?;
    report_restore(&summary, &options, &target, undo.as_ref(), global)?;
    Ok(restore_exit_code(&summary))
}

/// The archive (a file, stdin) or the ClickHouse mirror the records come
/// from, and the input to name in messages.
async fn open_source(
    args: &RestoreArgs,
    selection: &Selection,
) -> anyhow::Result<(Source, ArchiveInput)> {
    if let Some(url) = &args.from_clickhouse {
        let ch = connect_clickhouse(url, args.clickhouse_password_file.as_deref()).await?;
        let mirror = MirrorSource::open(ch, selection.clone()).await?;
        return Ok((Source::Mirror(mirror), ArchiveInput::Stdin));
    }
    let input = ArchiveInput::parse(args.file.as_deref().unwrap_or("-"));
    let archive = open_archive(&input, args.db.db)?;
    Ok((Source::Archive(archive), input))
}

/// The default undo path: beside the input archive, or in the current
/// directory for stdin and ClickHouse.
fn undo_path(args: &RestoreArgs, input: &ArchiveInput) -> PathBuf {
    if let Some(path) = &args.undo {
        return path.clone();
    }
    let stamp = undo_stamp();
    match input {
        ArchiveInput::Path(p) => PathBuf::from(format!("{}.undo-{stamp}.kbd", p.display())),
        ArchiveInput::Stdin => PathBuf::from(format!("restore.undo-{stamp}.kbd")),
    }
}
