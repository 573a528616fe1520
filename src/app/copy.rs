//! `kbdump copy`: server to server, no intermediate file.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::args::SelectArgs;
use super::progress::key_progress;
use super::restore::{exit_code, report, restore_with_undo, undo_stamp, WriteArgs};
use super::GlobalOpts;
use crate::clock::Clock;
use crate::net::redis::RedisConn;
use crate::sink::redis::Target;
use crate::source::live::{ExportOptions, LiveSource};

const EXAMPLES: &str = "\
Export and restore joined by a bounded channel: constant memory, no file.
Across server versions keys are retagged or re-created with commands where
the target refuses the source's DUMP payloads.

Examples:
  kbdump copy --from redis://old:6379 --to redis://new:6379
  kbdump copy --from redis://prod:6379 --to redis://127.0.0.1:6380 --kb node0_kato
  kbdump copy --from redis://a:6379 --to redis://a:6379 --kb node0_kato --rename-kb node0_kato=node0_copy";

#[derive(Debug, Clone, Args)]
#[command(after_help = EXAMPLES)]
pub struct CopyArgs {
    /// Source Redis URL.
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub from: String,
    /// Target Redis URL.
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub to: String,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub write: WriteArgs,
    /// Where replace mode saves the target keys it overwrites (default:
    /// `copy.undo-<time>.kbd` in the current directory).
    #[arg(long, value_name = "FILE")]
    pub undo: Option<std::path::PathBuf>,
}

pub async fn run(args: CopyArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let from = RedisConn::connect(&args.from).await.context("source")?;
    let target = Target::connect(&args.to).await.context("target")?;
    let options = ExportOptions {
        selection: args.select.selection(),
        ..ExportOptions::default()
    };
    let clock = Clock::system();
    let source = LiveSource::open(from, options, args.select.spec(), &clock).await?;
    let (items, task) = source.stream().split();
    // The selection's size is unknown before the copy ends, so the memory
    // guard is a running budget: the copy stops before the target evicts.
    let options = args.write.options_for(&target);
    let undo = args
        .undo
        .clone()
        .unwrap_or_else(|| format!("copy.undo-{}.kbd", undo_stamp()).into());
    let progress = key_progress(global);
    let (summary, undo_file) =
        restore_with_undo(&target, items, &options, &undo, &clock, progress.as_ref()).await?;
    task.finish().await.context("reading the source")?;
    report(&summary, &options, &target, undo_file.as_deref(), global)?;
    Ok(exit_code(&summary))
}
