//! `kbdump export`: arguments.

use clap::{Args, ValueEnum};

use super::args::{DbArg, EncryptArgs, PaceArgs, RedisArgs, SelectArgs};

const EXAMPLES: &str = "\
Examples:
  kbdump export -o all.kbd                      # every key of the db: kb_ids, KATO's global keys, foreign keys
  kbdump export --kb node0_kato -o node0.kbd    # one kb_id (its stm:events stream included)
  kbdump export --kb node0_kato --global -o node0-and-sessions.kbd
  kbdump export --global -o kato-global.kbd     # KATO's sessions, global STM and caches only
  kbdump export --kb 'node*' --category emotives --category metadata -o precious.kbd
  kbdump export --kb node0_kato -o - | ssh backup 'cat > node0.kbd'
  kbdump export --encrypt-to age1… -o offsite.kbd   # age-encrypted; read with --identity
  kbdump export -o all.kbd --max-keys-per-sec 5k --max-bytes-per-sec 20MiB   # gently, in production
  kbdump export --redis redis+cluster://10.0.0.1:7000,10.0.0.2:7000 -o all.kbd   # every master of a cluster
  kbdump export --from /var/lib/redis/dump.rdb --kb node0_kato -o node0.kbd   # offline, from a physical backup
  kbdump export --from /var/lib/redis/appendonlydir --kb node0_kato -o node0.kbd   # from an AOF, replayed

A --kb that matches no kb_id on the server is an error (exit 2, no archive),
unless --allow-empty. The summary says what the selection left out.

How the server is read (--method):
  auto  (the default) rdb, or scan when the server refuses a snapshot (an ACL
        without +sync, a managed service such as ElastiCache, MemoryDB, Azure
        or Memorystore, a renamed SYNC, a replica cut off from its master, a
        TLS or Unix-socket URL); one line on stderr says so. A snapshot that
        breaks off midway is an error, never a fallback.
  rdb   the server's snapshot from its replication stream, as redis-cli --rdb
        gets it (REPLCONF, SYNC): one instant of the whole db (the archive
        header records it), at the speed of the server's own save. The server
        forks; with diskless replication it first waits
        repl-diskless-sync-delay seconds (5 by default) for other replicas.
  scan  SCAN + DUMP + PTTL, key by key: no fork and no replication rights, but
        not point-in-time (each key is read at some moment inside its kb_id's
        SCAN window, which the archive records).

  kbdump export --method scan -o all.kbd        # no fork, no SYNC rights needed
  kbdump export --method rdb --kb node0_kato -o node0.kbd   # point-in-time or fail

--max-keys-per-sec and --max-bytes-per-sec cap the load the export puts on the
server. With a snapshot the server pushes and kbdump reads slower: the transfer
lasts longer, so the server's fork lives longer (its copy-on-write memory grows
with the writes meanwhile), and what the server queues for this replica grows
in its output buffer, up to client-output-buffer-limit replica (256 MB hard,
64 MB for 60 s by default), past which it drops the transfer (an error). A server that answers LOADING or BUSY is waited for (up to
--busy-timeout seconds, with a message) instead of failing the export.";

#[derive(Debug, Clone, Args)]
#[command(after_help = EXAMPLES)]
pub struct ExportArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Convert a physical backup (a dump.rdb, an AOF file or an AOF
    /// directory, recognised by their content) instead of reading a
    /// server: no connection is made, and the archive header names the
    /// file, its RDB version and its creation time. An AOF's commands are
    /// replayed in memory for the selected keys.
    #[arg(long, value_name = "FILE|DIR|-")]
    pub from: Option<String>,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub db: DbArg,
    /// How the server is read: its snapshot from the replication stream
    /// (rdb, point-in-time), SCAN + DUMP (scan), or rdb with scan when the
    /// server refuses a snapshot (auto). See below.
    #[arg(long, value_enum, default_value_t = Method::Auto)]
    pub method: Method,
    /// Archive to write, or `-` for stdout. A FIFO or a character device
    /// is written to as a stream; a directory is refused.
    #[arg(short = 'o', long = "output", value_name = "FILE|-")]
    pub output: String,
    /// Overwrite an existing regular file (never a directory or a device).
    #[arg(long)]
    pub force: bool,
    /// zstd compression level (1-19).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// SCAN COUNT hint: keys the server looks at per SCAN call (1-100000).
    #[arg(long, default_value_t = 1000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub scan_count: usize,
    #[command(flatten)]
    pub encrypt: EncryptArgs,
    #[command(flatten)]
    pub pace: PaceArgs,
}

/// How `export` reads a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// rdb, or scan (with a note) when the server refuses a snapshot.
    Auto,
    /// The server's snapshot, from its replication stream.
    Rdb,
    /// SCAN + DUMP + PTTL.
    Scan,
}
