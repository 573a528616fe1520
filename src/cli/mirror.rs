//! `kbdump mirror`: arguments.

use clap::Args;

use super::args::{ClickHouseArgs, PaceArgs, RedisArgs};

const EXAMPLES: &str = "\
Examples:
  kbdump mirror --clickhouse 'http://127.0.0.1:8123/?database=kato' --create   # the first run
  kbdump mirror --kb node0_kato --kb 'node1*' --json
  kbdump mirror --keep 30d                  # nightly: history of the last 30 days
  kbdump mirror --force                     # record deletions above --max-shrink: they are meant
  kbdump mirror --follow --kb node0_kato    # continuous: every change within a second (a service:
                                            # contrib/systemd/kbdump-mirror-follow.service)
  kbdump mirror --max-keys-per-sec 2k --max-bytes-per-sec 10M   # gently, in production
  kbdump restore --from-clickhouse URL --kb node0_kato --as-of '2026-12-01 09:30:00'

Copies frequency, emotives, metadata and affinity keys (DUMP payload, type,
expiry) into the ClickHouse table redis_mirror_versions. Each run adds a
version of every key it finds and a tombstone for every key that is gone,
so restore --from-clickhouse --as-of TIME brings back the state at any
instant of the kept window, and a key deleted on purpose stays deleted.

An eviction storm is not a deletion: when more than --max-shrink of a
kb_id's keys of one category are gone since the last run, the run records
no deletion, names what shrank and exits 1 (the versions of the keys still
there are recorded). A database or table that does not exist is an error
unless --create (a ?database= typo must not start an empty mirror). A
mirror made by an older kbdump (table redis_mirror) is converted on the
first run.";

/// Record the unrecoverable categories of kb_ids in ClickHouse, with history.
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
    /// Create the database and the mirror table when they do not exist
    /// (without it, a missing one is an error).
    #[arg(long)]
    pub create: bool,
    /// Hold back the run's deletions, and exit 1, when more than this share
    /// of a kb_id's keys of one category are gone since the last run.
    #[arg(long, value_name = "PCT", default_value = "10%", value_parser = super::backup::parse_percent)]
    pub max_shrink: f64,
    /// Record the deletions whatever share of the keys is gone.
    #[arg(long)]
    pub force: bool,
    /// Drop versions older than DURATION (30d, 12h, 2w), never a state
    /// inside the window: each key keeps its version as of the window's start.
    #[arg(long, value_name = "DURATION", value_parser = super::backup::parse_age)]
    pub keep: Option<i64>,
    /// Keep following: after a full pass, record every change of the
    /// mirrored categories within a second (needs notify-keyspace-events
    /// KA on the server); runs until SIGTERM or SIGINT. Reconnects to
    /// Redis (with a full pass) and retries ClickHouse by itself.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: print a status line every SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60, requires = "follow")]
    pub status_every: u64,
    /// No longer needed: every run records the keys that are gone (as
    /// tombstones, guarded by --max-shrink). Accepted, with a warning.
    #[arg(long, hide = true)]
    pub prune: bool,
    #[command(flatten)]
    pub pace: PaceArgs,
}
