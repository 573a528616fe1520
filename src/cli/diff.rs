//! `kbdump diff`: arguments.

use clap::Args;

use super::args::{RedisArgs, SelectArgs};

const EXAMPLES: &str = "\
Exit status: 0 identical, 1 different, 2 error.

Examples:
  kbdump diff node0.kbd --redis redis://127.0.0.1:6379
  kbdump diff node0.kbd --kb node0_kato --category emotives
  kbdump diff node0.kbd --json | jq '.keys[] | select(.kind == \"missing\") | .key'";

#[derive(Debug, Clone, Args)]
#[command(after_help = EXAMPLES)]
pub struct DiffArgs {
    /// Archive file, or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: String,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Expiries closer than this many milliseconds count as equal.
    #[arg(long, default_value_t = 2000)]
    pub expiry_tolerance_ms: i64,
}
