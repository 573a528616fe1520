//! `kbdump export`: arguments.

use clap::Args;

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

A --kb that matches no kb_id on the server is an error (exit 2, no archive),
unless --allow-empty. The summary says what the selection left out.

A SCAN export is not a point-in-time snapshot: each key is read at some moment
inside its kb_id's SCAN window, which the archive records.

--max-keys-per-sec and --max-bytes-per-sec cap the load the export puts on the
server. A server that answers LOADING or BUSY is waited for (up to
--busy-timeout seconds, with a message) instead of failing the export.";

#[derive(Debug, Clone, Args)]
#[command(after_help = EXAMPLES)]
pub struct ExportArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Convert a physical backup (a dump.rdb, recognised by its content)
    /// instead of reading a server: no connection is made, and the archive
    /// header names the file, its RDB version and its creation time.
    #[arg(long, value_name = "FILE|-")]
    pub from: Option<String>,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub db: DbArg,
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
