//! `kbdump kbs`: arguments.

use clap::Args;

use super::args::RedisArgs;

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Every key of the db in its group: kb_ids with keys per category, KATO's\nglobal keys (sessions, global STM, caches), foreign keys, and kbdump's own\ntemporary keys.\n\nExamples:\n  kbdump kbs --redis redis://127.0.0.1:6379\n  kbdump kbs --json | jq '.kbs[].kb_id'\n  kbdump kbs --json | jq '.kato, .foreign'"
)]
pub struct KbsArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
}
