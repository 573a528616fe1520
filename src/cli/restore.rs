//! `kbdump restore`: arguments.

// Doc comments here are clap help text shown to users, where a URL shape
// like `redis://[user:password@]host` is meant literally, not as a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::Args;

use super::args::{DbArg, RedisArgs, SelectArgs, WriteArgs};

const EXAMPLES: &str = "\
By default only keys that are missing on the server are written; existing
keys are never touched. Keys whose archived expiry has passed are skipped.

Examples:
  kbdump restore node0.kbd --kb node0_kato --category emotives   # put back lost emotives
  kbdump restore node0.kbd --dry-run                             # what would happen
  kbdump restore node0.kbd --rename-kb node0_kato=node9_kato     # clone a knowledge base
  kbdump restore node0.kbd --mode replace --undo before.kbd      # overwrite, keep an undo
  kbdump restore --mode replace before.kbd                       # ...and undo it
  ssh backup 'cat node0.kbd' | kbdump restore - --redis redis://new:6379
  kbdump restore --from-clickhouse http://ch:8123 --kb node0_kato   # from `kbdump mirror`";

#[derive(Debug, Clone, Args)]
#[command(after_help = EXAMPLES)]
pub struct RestoreArgs {
    /// Archive file or physical backup (a dump.rdb), or `-` for stdin.
    #[arg(
        value_name = "FILE|-",
        required_unless_present = "from_clickhouse",
        conflicts_with = "from_clickhouse"
    )]
    pub file: Option<String>,
    /// Read the records from the ClickHouse mirror table (written by `kbdump
    /// mirror`) instead of an archive: http://[user:password@]host:port/?database=NAME
    #[arg(long, value_name = "URL")]
    pub from_clickhouse: Option<String>,
    /// File whose first line is the password of --from-clickhouse. Order: a
    /// password in the URL, then this file, then CLICKHOUSE_PASSWORD.
    #[arg(long, value_name = "FILE", requires = "from_clickhouse")]
    pub clickhouse_password_file: Option<PathBuf>,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub write: WriteArgs,
    /// Where replace mode saves the keys it overwrites (default: beside the
    /// input, `<input>.undo-<time>.kbd`).
    #[arg(long, value_name = "FILE")]
    pub undo: Option<PathBuf>,
}
