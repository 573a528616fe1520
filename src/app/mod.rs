//! Command implementations: turn parsed arguments into library calls, draw
//! progress, print results. The only place that uses anyhow and stdout.
//!
//! One file per command; a command file never imports another. What
//! several share lives in [`options`] (arguments to library options),
//! [`common`] (archive inputs, connections, restore with undo), [`report`]
//! (printing) and [`progress`] (drawing).
//!
//! Nothing here uses `print!`: it panics when stdout is full or closed.
//! Reports go through [`report::print_text`], which turns a closed pipe
//! into a quiet end and any other failure into an error naming stdout.

// Keeps print!/println! out of the commands (see above).
#![deny(clippy::print_stdout)]

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
pub mod interrupt;
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
use interrupt::Interrupts;

/// Flags every command shares, and the signals it is told about.
#[derive(Debug, Clone, Default)]
pub struct GlobalOpts {
    pub json: bool,
    pub quiet: bool,
    pub interrupts: Interrupts,
    /// The identities that open encrypted archives (`--identity`).
    pub keys: crate::format::encryption::Keyring,
}

/// Exit status for "a check said no".
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit status for errors.
pub const EXIT_ERROR: u8 = 2;

/// Runs a parsed command line. On SIGINT or SIGTERM, export, restore and
/// copy stop by themselves (see [`interrupt`]); any other command is
/// dropped where it is.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = GlobalOpts {
        json: cli.global.json,
        quiet: cli.global.quiet,
        interrupts: Interrupts::listen(),
        keys: options::keyring(&cli.global.identity)?,
    };
    let stops_cleanly = match &cli.command {
        Command::Export(_) | Command::Restore(_) | Command::Copy(_) => true,
        Command::Mirror(args) => args.follow,
        _ => false,
    };
    let stop = global.interrupts.stop();
    let result = tokio::select! {
        result = dispatch(cli.command, &global) => result,
        () = stop.requested(), if !stops_cleanly => {
            return Ok(global.interrupts.report("stopped"));
        }
    };
    match (global.interrupts.received(), result) {
        // Interrupted, and failed: the error is the news, the signal the
        // status.
        (Some(signal), Err(err)) => {
            eprintln!("kbdump: error: {err:#}");
            Ok(ExitCode::from(signal.exit_code()))
        }
        (_, result) => result,
    }
}

async fn dispatch(command: Command, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    match command {
        Command::Export(args) => export::run(args, global).await,
        Command::Kbs(args) => kbs::run(args, global).await,
        Command::Inspect(args) => inspect::run(args, global).await,
        Command::Ls(args) => ls::run(args, global).await,
        Command::Cat(args) => cat::run(args, global).await,
        Command::Verify(args) => verify::run(args, global).await,
        Command::Restore(args) => restore::run(args, global).await,
        Command::Diff(args) => diff::run(args, global).await,
        Command::Copy(args) => copy::run(args, global).await,
        Command::Rebuild(args) => rebuild::run(args, global).await,
        Command::Mirror(args) => mirror::run(args, global).await,
        Command::Check(args) => check::run(args, global).await,
        Command::Backup(args) => backup::run(args, global).await,
        Command::Backups(args) => backups::run(args, global).await,
        Command::Completions(args) => completions::completions(args, global),
        Command::Man(args) => completions::man(args, global),
    }
}
