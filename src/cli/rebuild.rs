//! `kbdump rebuild`: arguments.

use clap::Args;

use super::args::{ClickHouseArgs, RedisArgs};

const EXAMPLES: &str = "\
Examples:
  kbdump rebuild --clickhouse http://127.0.0.1:8123 --redis redis://127.0.0.1:6379
  kbdump rebuild --kb node0_kato --dry-run
  kbdump rebuild --kb 'node*_kato' --json
  kbdump rebuild --kb node0_kato --only-missing     # after a partial loss
  CLICKHOUSE_URL='http://user:pw@ch:8123/?database=kato' kbdump rebuild --json

Writes what KATO's rehydration writes (symbols:freq/pmf, symbol_to_patterns:*,
global:*, entropy, normalized_entropy, global_normalized_entropy, tf_vector),
and frequency:{p} = 1 only where it is missing: a surviving count is never
lowered. Emotives, metadata, affinity and true frequencies cannot be rebuilt:
restore them from a backup or from `kbdump mirror`.";

/// Rebuild the derivable data of kb_ids from ClickHouse into Redis.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXAMPLES)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// kb_id or glob to rebuild (repeatable; a --kb that matches no kb_id
    /// is an error; default: every kb_id in
    /// ClickHouse).
    #[arg(long = "kb", value_name = "ID|GLOB", value_parser = super::args::kb_value)]
    pub kbs: Vec<String>,
    /// Accept a --kb that matches no kb_id (for scripts that mean it)
    /// instead of failing.
    #[arg(long)]
    pub allow_empty: bool,
    /// Count what would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write only keys and hash fields that are absent; change nothing.
    #[arg(long)]
    pub only_missing: bool,
}
