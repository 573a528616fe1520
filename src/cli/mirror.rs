//! `kbdump mirror`: arguments.

use clap::Args;

use super::args::{ClickHouseArgs, PaceArgs, RedisArgs};

const EXAMPLES: &str = "\
Examples:
  kbdump mirror --redis redis://127.0.0.1:6379 --clickhouse http://127.0.0.1:8123
  kbdump mirror --kb node0_kato --kb 'node1*' --json
  kbdump mirror --kb node0_kato --prune     # also forget keys deleted from Redis
  kbdump mirror --max-keys-per-sec 2k --max-bytes-per-sec 10M   # gently, in production

Copies frequency, emotives, metadata and affinity keys (DUMP payload, type,
expiry) into the ClickHouse table redis_mirror (created if absent). Reruns
replace rows of the same key (ReplacingMergeTree, read with FINAL). A key
deleted from Redis keeps its last row, and restore --from-clickhouse would
bring it back, unless the run has --prune: then the mirrored kb_ids' rows
older than the run are deleted once it is complete.";

/// Copy the unrecoverable categories of kb_ids from Redis into ClickHouse.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXAMPLES)]
pub struct MirrorArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    /// kb_id or glob (repeatable; a --kb that matches no kb_id
    /// is an error; default: every kb_id on the Redis server).
    #[arg(long = "kb", value_name = "ID|GLOB", value_parser = super::args::kb_value)]
    pub kbs: Vec<String>,
    /// Accept a --kb that matches no kb_id (for scripts that mean it)
    /// instead of failing.
    #[arg(long)]
    pub allow_empty: bool,
    /// After mirroring, delete the mirrored kb_ids' rows of keys that are
    /// no longer in Redis (and superseded versions): makes the run a sync.
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub pace: PaceArgs,
}
