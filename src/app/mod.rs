//! Command implementations: turn parsed arguments into library calls, draw
//! progress, print results. The only place that uses anyhow and stdout.
//!
//! One file per command; a command file never imports another. What
//! several share lives in [`options`] (arguments to library options),
//! [`common`] (archive inputs, connections, restore with undo), [`report`]
//! (printing) and [`progress`] (drawing).

pub mod backup;
pub mod backups;
pub mod cat;
pub mod check;
pub mod common;
pub mod completions;
pub mod copy;
pub mod diff;
pub mod export;
pub mod inspect;
pub mod kbs;
pub mod ls;
pub mod mirror;
pub mod options;
pub mod progress;
pub mod rebuild;
pub mod report;
pub mod restore;
pub mod verify;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Flags every command shares.
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalOpts {
    pub json: bool,
    pub quiet: bool,
}

/// Exit status for "a check said no".
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit status for errors.
pub const EXIT_ERROR: u8 = 2;

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = GlobalOpts {
        json: cli.global.json,
        quiet: cli.global.quiet,
    };
    match cli.command {
        Command::Export(args) => export::run(args, &global).await,
        Command::Kbs(args) => kbs::run(args, &global).await,
        Command::Inspect(args) => inspect::run(args, &global).await,
        Command::Ls(args) => ls::run(args, &global).await,
        Command::Cat(args) => cat::run(args, &global).await,
        Command::Verify(args) => verify::run(args, &global).await,
        Command::Restore(args) => restore::run(args, &global).await,
        Command::Diff(args) => diff::run(args, &global).await,
        Command::Copy(args) => copy::run(args, &global).await,
        Command::Rebuild(args) => rebuild::run(args, &global).await,
        Command::Mirror(args) => mirror::run(args, &global).await,
        Command::Check(args) => check::run(args, &global).await,
        Command::Backup(args) => backup::run(args, &global).await,
        Command::Backups(args) => backups::run(args, &global).await,
        Command::Completions(args) => completions::completions(args, &global),
        Command::Man(args) => completions::man(args, &global),
    }
}
