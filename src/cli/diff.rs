//! `kbdump diff`: arguments.

use clap::{Args, ValueEnum};

use super::args::{DbArg, RedisArgs, SelectArgs};

const EXAMPLES: &str = "\
Exit status: 0 identical, or no difference of a --fail-on kind; 1 some key
differs in a --fail-on way (default: any difference); 2 an error, including
a damaged archive.

Examples:
  kbdump diff node0.kbd --redis redis://127.0.0.1:6379
  kbdump diff node0.kbd --kb node0_kato --category emotives --values
  kbdump diff node0.kbd --json | jq '.keys[] | select(.kind == \"missing\") | .key'
  kbdump diff node0.kbd --json | jq '.keys[] | select(.live) | {key, archived, live}'

  # A learning KATO changes values and adds keys all the time, so any
  # difference is no alarm; archived keys missing from the server are the
  # loss. Hourly, mail only on exit 1 (keys lost) or 2 (diff failed):
  0 * * * *  kato  kbdump diff --quiet --fail-on missing /backups/latest.kbd \\
      >/tmp/kbdump-diff.txt || mail -s 'kbdump: keys lost or diff failed' ops </tmp/kbdump-diff.txt

  # Lost or changed emotives and metadata, but new keys are fine:
  kbdump diff node0.kbd --category emotives --category metadata \\
      --fail-on missing --fail-on changed";

/// A kind of difference that `--fail-on` turns into exit status 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Archived keys not on the server (the loss).
    Missing,
    /// Keys whose type or value differs.
    Changed,
    /// Keys on the server that the archive lacks.
    Extra,
    /// Keys whose expiry differs (beyond --expiry-tolerance-ms).
    Expiry,
    /// Any of the above.
    Any,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = EXAMPLES)]
pub struct DiffArgs {
    /// Archive file or physical backup (a dump.rdb, an AOF file, or an AOF
    /// directory such as appendonlydir), or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: String,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub db: DbArg,
    /// Expiries closer than this many milliseconds count as equal.
    #[arg(long, default_value_t = 2000)]
    pub expiry_tolerance_ms: i64,
    /// Show the archived and the live value of each listed key (missing:
    /// archived; extra: live; changed: both), cut to one line each.
    #[arg(long)]
    pub values: bool,
    /// Keys shown per kb_id x category x kind: listed in the text, and
    /// carrying their values (`archived`, `live`) in --json, which still
    /// names every key. 0 leaves the values out.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub examples: usize,
    /// Which differences make the exit status 1 (repeatable): missing,
    /// changed, extra, expiry or any. Others are still reported.
    #[arg(long, value_enum, value_name = "KIND", default_values_t = [FailOn::Any])]
    pub fail_on: Vec<FailOn>,
}
