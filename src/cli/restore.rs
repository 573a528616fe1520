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

--mode merge puts archived values together with live ones, atomically per
key (a concurrent INCR is never lost), and restores what is missing.
Default policies (override with --policy CATEGORY=max|union|keep|replace):
  frequency  max    the larger of the live and the archived count
  affinity   union  archived fields the live hash lacks are added
  metadata   union  per field, the sorted union of both lists, as KATO writes it
  others     keep   the live value stays
A value that does not fit its policy is a conflict: the live value stays,
the key is listed, and the exit status is 1. The keys a merge changes are
saved to the undo archive first, and the missing keys it restores are
recorded there as absent, so the undo gives the server back as it was.

Examples:
  kbdump restore all.kbd --kb node0_kato --category emotives     # put back lost emotives
  kbdump restore all.kbd --global --category sessions            # put back KATO's sessions
  kbdump restore node0.kbd --dry-run                             # what would happen
  kbdump restore appendonlydir --kb node0_kato --category emotives   # from an AOF, no scratch server
  kbdump restore node0.kbd --rename-kb node0_kato=node9_kato     # clone a knowledge base
  kbdump restore node0.kbd --mode replace --undo before.kbd      # overwrite, keep an undo
  kbdump restore --mode replace before.kbd                       # ...and undo it
  kbdump restore node0.kbd --kb node0_kato --mode merge          # counts reset by a rebuild
  kbdump restore node0.kbd --mode merge --dry-run --json         # each change, old and new value
  kbdump restore node0.kbd --mode merge --policy emotives=replace --policy frequency=keep
  kbdump restore node0.kbd --mode replace --yes                  # in a script: no question
  ssh backup 'cat node0.kbd' | kbdump restore - --redis redis://new:6379
  kbdump restore --from-clickhouse http://ch:8123 --kb node0_kato   # from `kbdump mirror`
  kbdump restore --from-clickhouse http://ch:8123 --kb node0_kato --as-of '2026-12-01 09:30:00'
  kbdump restore --from-clickhouse http://ch:8123 --as-of '3h ago' --dry-run   # before the storm

--mode replace into a server that already holds some of the selected keys
asks 'overwrite N existing keys on HOST? [y/N]' on a terminal, and needs --yes
otherwise (exit 2 before anything is written). --rename-kb onto a kb_id that
already has keys says so before writing.";

#[derive(Debug, Clone, Args)]
#[command(after_help = EXAMPLES)]
pub struct RestoreArgs {
    /// Archive file or physical backup (a dump.rdb, an AOF file, or an AOF
    /// directory such as appendonlydir), or `-` for stdin.
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
    /// With --from-clickhouse: restore the state the mirror recorded at
    /// TIME instead of the latest: 2026-12-01T09:30:00Z, 2026-12-01 09:30:00
    /// (UTC), 2026-12-01 (midnight UTC), @SECONDS, or a duration before now
    /// (2h, 90min ago).
    #[arg(long, value_name = "TIME", requires = "from_clickhouse")]
    pub as_of: Option<String>,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub write: WriteArgs,
    /// Where replace and merge mode save the keys they change (default:
    /// beside the input, `<input>.undo-<time>.kbd`).
    #[arg(long, value_name = "FILE")]
    pub undo: Option<PathBuf>,
    /// Overwrite existing keys in replace mode without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
}
