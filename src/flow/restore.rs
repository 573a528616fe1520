//! Restore and copy: any source joined to the Redis sink, with the undo
//! archive of a replace.

use std::fmt;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc::Receiver;

use crate::clock::Clock;
use crate::format::archive::{Header, SelectionSpec};
use crate::progress::Progress;
use crate::records::SourceItem;
use crate::sink::archive::{UndoArchive, UndoError, UndoOutcome, UndoSummary};
use crate::sink::redis::{restore, Mode, RestoreError, RestoreOptions, RestoreSummary, Target};

#[derive(Debug, thiserror::Error)]
pub enum RestoreFlowError {
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// The undo archive could not be created: nothing was written.
    #[error(transparent)]
    UndoStart(UndoError),
    /// Writing the undo archive failed: the restore stopped.
    #[error("{0}")]
    Undo(UndoFailure),
    /// The restore failed after its undo archive took a batch: which of the
    /// writes in flight were applied is unknown, so the undo is kept and
    /// named (the cause is in the message, so it is not also the source).
    #[error(
        "{cause}; {} holds the previous values of the {} keys the run may have overwritten: \
         put them back with `kbdump restore --mode replace {}`",
        undo.path.display(),
        undo.keys,
        undo.path.display()
    )]
    AfterWrites {
        cause: RestoreError,
        undo: UndoSummary,
    },
}

/// An undo archive that failed midway, and what it holds.
#[derive(Debug)]
pub struct UndoFailure {
    /// Where the undo archive was to be written.
    pub path: PathBuf,
    /// What is on disk, if anything.
    pub saved: Option<UndoSummary>,
    pub cause: UndoError,
}

impl fmt::Display for UndoFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        write!(
            f,
            "cannot write the undo archive {path}: {}; ",
            self.cause.root_cause()
        )?;
        match &self.saved {
            Some(saved) => write!(
                f,
                "the restore stopped before overwriting any key whose previous value is not saved. \
                 {path} holds the previous values of the {} keys it may have overwritten{}: put \
                 them back with `kbdump restore --mode replace {path}`, or free space (or pass \
                 --undo on another disk) and rerun",
                saved.keys,
                if saved.complete {
                    ""
                } else {
                    " (it is cut short after its last complete batch; restore reads every batch in it)"
                },
            ),
            None => write!(
                f,
                "nothing was overwritten. Free space (or pass --undo on another disk) and rerun"
            ),
        }
    }
}

/// Runs the Redis sink over `items`; in replace and merge mode (not a dry
/// run) the previous values of the keys are saved to an undo archive at
/// `undo` before they are changed (see [`UndoArchive`]). Returns the
/// summary and what the undo archive holds, when there is one: it is
/// removed when the run changed nothing.
pub async fn restore_with_undo(
    target: &Target,
    items: Receiver<SourceItem>,
    options: &RestoreOptions,
    undo: &Path,
    clock: &Clock,
    progress: &dyn Progress,
) -> Result<(RestoreSummary, Option<UndoSummary>), RestoreFlowError> {
    if !options.dry_run {
        target.check_writable()?;
    }
    let archive = match (options.mode, options.dry_run) {
        (Mode::Replace | Mode::Merge, false) => Some(
            UndoArchive::start(undo, undo_header(target, clock))
                .map_err(RestoreFlowError::UndoStart)?,
        ),
        _ => None,
    };
    let result = restore(
        target,
        items,
        options,
        archive.as_ref().map(UndoArchive::log),
        progress,
    )
    .await;
    let Some(archive) = archive else {
        return Ok((result?, None));
    };
    let keep = keep_undo(&result);
    let UndoOutcome { summary, failure } = archive.finish(keep).await;
    if let Some(cause) = failure {
        return Err(RestoreFlowError::Undo(UndoFailure {
            path: undo.to_path_buf(),
            saved: summary,
            cause,
        }));
    }
    match (result, summary) {
        (Err(cause), Some(undo)) => Err(RestoreFlowError::AfterWrites { cause, undo }),
        (result, summary) => Ok((result?, summary)),
    }
}

/// Whether the undo archive of a finished run is kept. Its previous values
/// were saved before the writes (write-ahead), so they are on disk whether
/// the writes then succeeded or not. A run that ended normally knows every
/// key's outcome: if none was written (every write refused, say for lack
/// of memory), nothing changed, and an undo would only put stale values
/// over later changes, so it is removed. A run that failed may have had
/// writes in flight whose outcome is unknown: its undo is kept.
fn keep_undo(result: &Result<RestoreSummary, RestoreError>) -> bool {
    result.as_ref().map_or(true, |summary| {
        let total = summary.total();
        total.restored + total.deleted + total.merged > 0
    })
}

/// The `source.kind` of an undo archive's header.
pub const UNDO_SOURCE_KIND: &str = "undo";

/// Whether `header` is an undo archive's: restoring it in replace mode
/// puts back the state before a replace, so a saved key whose expiry has
/// passed since is deleted (see [`RestoreOptions::expired_means_absent`]).
pub fn is_undo_archive(header: &Header) -> bool {
    header.source.kind == UNDO_SOURCE_KIND
}

/// The header of an undo archive: its records come from the target.
fn undo_header(target: &Target, clock: &Clock) -> Header {
    let mut source = target.conn.source_info(&target.info, UNDO_SOURCE_KIND);
    source.rdb_version = Some(target.kind.rdb_version);
    Header::new(source, SelectionSpec::default(), clock.now_ms())
}
