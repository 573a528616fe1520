//! Restore and copy: any source joined to the Redis sink, with the undo
//! archive of a replace.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc::Receiver;

use crate::clock::Clock;
use crate::format::archive::{Header, SelectionSpec};
use crate::progress::Progress;
use crate::records::SourceItem;
use crate::sink::archive::{UndoArchive, UndoError};
use crate::sink::redis::{restore, Mode, RestoreError, RestoreOptions, RestoreSummary, Target};

#[derive(Debug, thiserror::Error)]
pub enum RestoreFlowError {
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error(transparent)]
    Undo(#[from] UndoError),
}

/// Runs the Redis sink over `items`; in replace mode (not a dry run) the
/// keys about to be overwritten go to an undo archive at `undo`, which is
/// completed even when the restore fails midway. Returns the summary and
/// the undo archive's path when it holds any key.
pub async fn restore_with_undo(
    target: &Target,
    items: Receiver<SourceItem>,
    options: &RestoreOptions,
    undo: &Path,
    clock: &Clock,
    progress: &dyn Progress,
) -> Result<(RestoreSummary, Option<PathBuf>), RestoreFlowError> {
    if !options.dry_run {
        target.check_writable()?;
    }
    let undo = match (options.mode, options.dry_run) {
        (Mode::Replace, false) => Some(UndoArchive::start(undo, undo_header(target, clock))?),
        _ => None,
    };
    let result = restore(
        target,
        items,
        options,
        undo.as_ref().map(UndoArchive::sender),
        progress,
    )
    .await;
    let undo_file = match undo {
        Some(u) => u.finish().await?,
        None => None,
    };
    Ok((result?, undo_file))
}

/// The header of an undo archive: its records come from the target.
fn undo_header(target: &Target, clock: &Clock) -> Header {
    let mut source = target.conn.source_info(&target.info, "undo");
    source.rdb_version = Some(target.kind.rdb_version);
    Header::new(source, SelectionSpec::default(), clock.now_ms())
}
