//! `kbdump check`: arguments.

use clap::Args;

use super::args::{ClickHouseArgs, RedisArgs};

const EXAMPLES: &str = "\
Examples:
  kbdump check --clickhouse http://127.0.0.1:8123 --redis redis://127.0.0.1:6379
  kbdump check --kb node0_kato --json
  kbdump check --kb 'node*_kato'

Findings: missing_frequency and missing_derived (keys a rebuild would write
that are absent: symbol_to_patterns sets, entropy and tf_vector keys; run
`kbdump rebuild --only-missing`), orphan_emotives and orphan_metadata (keys
of patterns ClickHouse lacks), symbol_freq and symbol_pmf (fields that
differ), globals (counters that differ).

Exit status: 0 the stores agree; 1 findings; 2 an error.";

/// Compare ClickHouse's patterns with Redis; exit 1 on findings.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXAMPLES)]
pub struct CheckArgs {
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// kb_id or glob to check (repeatable; a --kb that matches no kb_id
    /// is an error; default: every kb_id in
    /// ClickHouse).
    #[arg(long = "kb", value_name = "ID|GLOB", value_parser = super::args::kb_value)]
    pub kbs: Vec<String>,
    /// Accept a --kb that matches no kb_id (for scripts that mean it)
    /// instead of failing.
    #[arg(long)]
    pub allow_empty: bool,
}
