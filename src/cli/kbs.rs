//! `kbdump kbs`: arguments.

use clap::Args;

use super::args::RedisArgs;

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Examples:\n  kbdump kbs --redis redis://127.0.0.1:6379\n  kbdump kbs --json | jq '.kbs[].kb_id'"
)]
pub struct KbsArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
}
