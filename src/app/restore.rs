//! `kbdump restore`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tokio::sync::mpsc;

use super::common::{
    connect_clickhouse, open_file, restore_with_undo, source_outcome, ArchiveInput,
};
use super::options::{restore_options, selection};
use super::report::{report_restore, restore_exit_code, undo_stamp};
use super::GlobalOpts;
use crate::cli::RestoreArgs;
use crate::net::mirror::MirrorScope;
use crate::selection::Selection;
use crate::sink::redis::{SourceItem, Target};
use crate::source::archive::{selected_size, spawn_file_source, spawn_stream_source, SourceResult};
use crate::source::mirror::{spawn_mirror_source, MirrorSourceResult};

pub async fn run(args: RestoreArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let selection = selection(&args.select);
    let target = Target::connect(&args.redis.redis).await?;
    let guard = !args.write.force && !args.write.dry_run;
    let (rx, source, input) = match (&args.from_clickhouse, &args.file) {
        (Some(url), _) => {
            let (rx, task) = open_mirror(url, selection, guard.then_some(&target)).await?;
            (rx, Source::Mirror(task), ArchiveInput::Stdin)
        }
        (None, file) => {
            let input = ArchiveInput::parse(file.as_deref().unwrap_or("-"));
            let (rx, task) = match &input {
                ArchiveInput::Path(p) => {
                    match selected_size(open_file(p)?, &selection) {
                        Ok((_, size)) if guard => {
                            target.check_headroom(size.payload_bytes, size.keys)?
                        }
                        Ok(_) => {}
                        // No index to size the selection from: the running
                        // memory budget still applies.
                        Err(e @ crate::format::archive::Error::Truncated { .. }) => eprintln!(
                            "kbdump: warning: {}: {e}; restoring every intact block in a front-to-back read",
                            input.name()
                        ),
                        Err(e) => anyhow::bail!("{}: {e}", input.name()),
                    }
                    spawn_file_source(open_file(p)?, selection)
                }
                ArchiveInput::Stdin => spawn_stream_source(input.open_stream()?, selection),
            };
            (rx, Source::Archive(task), input)
        }
    };
    let options = restore_options(&args.write, &target);
    let undo = undo_path(&args, &input);
    let (summary, undo_file) = restore_with_undo(&target, rx, &options, &undo, global).await?;
    match source {
        Source::Archive(task) => drop(source_outcome(task, &input).await?),
        Source::Mirror(task) => mirror_outcome(task).await?,
    }
    report_restore(&summary, &options, &target, undo_file.as_deref(), global)?;
    Ok(restore_exit_code(&summary))
}

/// Where the records come from.
enum Source {
    Archive(tokio::task::JoinHandle<SourceResult>),
    Mirror(tokio::task::JoinHandle<MirrorSourceResult>),
}

/// Starts reading the ClickHouse mirror; with `guard`, first refuses a
/// restore the target has no memory headroom for, as for an archive.
async fn open_mirror(
    url: &str,
    selection: Selection,
    guard: Option<&Target>,
) -> anyhow::Result<(
    mpsc::Receiver<SourceItem>,
    tokio::task::JoinHandle<MirrorSourceResult>,
)> {
    let ch = connect_clickhouse(url).await?;
    if let Some(target) = guard {
        if let Some(scope) = MirrorScope::resolve(&ch, &selection).await? {
            let (bytes, keys) = scope.payload_bytes(&ch).await?;
            target.check_headroom(bytes, keys)?;
        }
    }
    Ok(spawn_mirror_source(ch, selection))
}

async fn mirror_outcome(task: tokio::task::JoinHandle<MirrorSourceResult>) -> anyhow::Result<()> {
    task.await
        .context("the ClickHouse mirror reader stopped unexpectedly")??;
    Ok(())
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
