//! Backups into a directory, and the care of that directory: `backup`
//! (export, re-read and verify every block, then retention), and `backups
//! list | prune | verify | check | test`.
//!
//! A backup is a `.kbd` archive named `kbdump-<UTC timestamp>.kbd`
//! ([`catalog::backup_name`]), or `….kbd.age` when encrypted, with its
//! plaintext summary `….kbd.age.summary.json` beside it
//! ([`crate::format::summary`]): sortable, several a day, never reused. A
//! file that fails verification is renamed `<name>.damaged` and is never
//! counted as good nor deleted by retention. Files that are not named like
//! a backup are never touched. A lock file in the directory
//! ([`lock::DirLock`]) keeps two runs that change the directory apart.

pub mod catalog;
pub mod check;
pub mod lock;
pub mod restore_test;
pub mod run;
pub mod verify;

use std::io;
use std::path::PathBuf;

use crate::net::redis::RedisIoError;
use crate::sink::file::OutputError;
use crate::source::archive::OpenError;

pub use catalog::{list, prune, Entry, PruneOutcome, Status};
pub use lock::{DirLock, Holder, LockError};

/// Why a backup-directory command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup directory {} does not exist; create it first (mkdir -m 700 {})", .0.display(), .0.display())]
    MissingDir(PathBuf),
    #[error("cannot read backup directory {}: {cause}", path.display())]
    ReadDir { path: PathBuf, cause: io::Error },
    #[error("{what} {}: {cause}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Redis(#[from] RedisIoError),
    #[error(transparent)]
    Live(#[from] crate::source::live::LiveOpenError),
    #[error(transparent)]
    Export(#[from] crate::flow::export::ExportError),
    // Boxed: the restore error is large, and every result of this module
    // carries the enum.
    #[error(transparent)]
    Restore(Box<crate::flow::restore::RestoreFlowError>),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(
        "the selection matched no key on {address}{selection}: refusing to write an empty backup \
         (a typo in --kb or --category?); check with kbdump kbs, or pass --allow-empty if an empty backup is meant"
    )]
    Empty { address: String, selection: String },
    #[error(
        "the new backup {} failed verification and was moved aside to {}: {problem}; the previous \
         backups were left as they are (no retention ran)",
        file.display(),
        moved_to.display()
    )]
    Damaged {
        file: PathBuf,
        moved_to: PathBuf,
        problem: String,
    },
    #[error(
        "none of the identities given ({identities}) opens a file encrypted to the {recipients} \
         recipient(s) of --encrypt-to/--recipients-file, so the backup could not be verified \
         with them; pass the identity of one of those recipients, or no --identity to verify \
         the ciphertext only"
    )]
    IdentityCannotOpen {
        identities: String,
        recipients: usize,
    },
    #[error(transparent)]
    Crypt(#[from] crate::format::encryption::CryptError),
    #[error("no good backup in {}; run kbdump backup --dir {} first", .0.display(), .0.display())]
    NoGoodBackup(PathBuf),
    #[error(
        "the scratch server {address} holds {keys} keys; a restore test needs an empty server \
         (it deletes what it restored afterwards). Point --scratch at an empty server or database"
    )]
    ScratchNotEmpty { address: String, keys: u64 },
}

impl From<crate::flow::restore::RestoreFlowError> for BackupError {
    fn from(e: crate::flow::restore::RestoreFlowError) -> Self {
        BackupError::Restore(Box::new(e))
    }
}
