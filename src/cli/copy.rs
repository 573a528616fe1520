//! `kbdump copy`: arguments.

use clap::Args;

use super::args::{SelectArgs, WriteArgs};

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
