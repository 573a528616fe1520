//! Command implementations: turn parsed arguments into library calls, draw
//! progress, print results. The only place that uses anyhow and stdout.

pub mod args;
pub mod cat;
pub mod check;
pub mod clickhouse_args;
pub mod copy;
pub mod diff;
pub mod export;
pub mod inspect;
pub mod kbs;
pub mod ls;
pub mod mirror;
pub mod progress;
pub mod rebuild;
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
    }
}

/// Per kb_id x category counters as JSON objects, each with its `kb_id`
/// and `category` (the `contents` list of restore's and diff's reports).
pub fn cells_json<T: serde::Serialize>(
    tallies: &std::collections::BTreeMap<(Vec<u8>, crate::kato::Category), T>,
) -> Vec<serde_json::Value> {
    tallies
        .iter()
        .map(|((kb, cat), counts)| {
            let mut v = serde_json::to_value(counts).unwrap_or_default();
            v["kb_id"] = serde_json::json!(crate::kato::display_bytes(kb));
            v["category"] = serde_json::json!(cat.to_string());
            v
        })
        .collect()
}

/// Prints a JSON value on stdout.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// True when an error chain ends in a broken pipe (stdout closed by `head`),
/// which is not a failure of ours.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let broken = |kind: Option<std::io::ErrorKind>| kind == Some(std::io::ErrorKind::BrokenPipe);
    err.chain().any(|cause| {
        // serde_json reports a failed write as its own error type.
        broken(cause.downcast_ref::<std::io::Error>().map(|e| e.kind()))
            || broken(
                cause
                    .downcast_ref::<serde_json::Error>()
                    .and_then(|e| e.io_error_kind()),
            )
    })
}
