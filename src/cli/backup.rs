//! `kbdump backup`, `kbdump backups …`: arguments.

// Doc comments here are clap help text shown to users, where a URL shape
// like `redis://[user:password@]host` is meant literally, not as a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::args::{EncryptArgs, PaceArgs, RedisArgs, SelectArgs};

const BACKUP_EXAMPLES: &str = "\
Examples:
  kbdump backup --dir /var/lib/kbdump                      # everything, kept 30 days
  kbdump backup --dir /var/lib/kbdump --keep-daily 7 --keep-weekly 4 --keep-monthly 12
  kbdump backup --dir /mnt/offsite/kbdump --kb node0_kato --keep-last 10
  kbdump backup --dir /var/lib/kbdump/pre-training --keep-last 5   # before a training session
  kbdump backup --dir /var/lib/kbdump --encrypt-to age1…          # encrypted; the identity stays elsewhere
  kbdump backup --dir /var/lib/kbdump --recipients-file /etc/kbdump/recipients.txt

Writes DIR/kbdump-<UTC timestamp>.kbd (mode 0600), re-reads and verifies every
block, and only then applies retention to the good backups in DIR. A backup
that fails verification is renamed <name>.damaged and the run fails. A lock in
DIR (kbdump.lock) makes a second run fail at once while one is running.
A selection that matches no key fails (exit 2) unless --allow-empty.

With --encrypt-to/--recipients-file the backup is DIR/kbdump-<UTC timestamp>.kbd.age
(age), with a plaintext summary beside it, <name>.summary.json (0600: kb_ids and
key counts per category, the ciphertext's SHA-256 and length; no key, no value).
Without an identity on the host, the check after writing is of the bytes: the
SHA-256 computed while writing must match the file read back from disk. With
--identity (or KBDUMP_IDENTITY) the backup is also decrypted and every block
checked. backups list/check/verify judge encrypted backups by their summaries
when no identity opens them, and say that their contents were not checked;
backups test needs the identity.

Retention follows restic's `forget`: --keep-last N newest; --keep-daily,
--keep-weekly, --keep-monthly N: the newest backup of each of the last N
days/ISO weeks/months (UTC) that have one; --keep-within D: every backup made
within D of the newest backup (D like 30d, 2d12h, 1y6m: y m d h, m = months).
With no --keep-* option: --keep-within 30d. The newest good backup is always
kept; files not named like a backup are never touched.";

const BACKUPS_EXAMPLES: &str = "\
Examples:
  kbdump backups list --dir /var/lib/kbdump
  kbdump backups prune --dir /var/lib/kbdump --keep-daily 30 --dry-run
  kbdump backups verify --dir /var/lib/kbdump --sample 10
  kbdump backups check --dir /var/lib/kbdump --prometheus /var/lib/prometheus/node-exporter/kbdump.prom
  kbdump backups test --dir /var/lib/kbdump --scratch redis://127.0.0.1:6390
  kbdump backups verify --dir /var/lib/kbdump                      # encrypted ones: their ciphertext only
  kbdump backups verify --dir /var/lib/kbdump --identity key.txt   # encrypted ones decrypted, in full
  kbdump backups test --dir /var/lib/kbdump --identity key.txt --scratch redis://127.0.0.1:6390

Status of a backup: good (its contents read), sealed (encrypted and not opened:
its summary describes it and its size matches; contents not checked), damaged,
unknown (encrypted, not opened, and its summary is missing or unusable).";

/// `kbdump backup`.
#[derive(Debug, Clone, Args)]
#[command(after_help = BACKUP_EXAMPLES)]
pub struct BackupArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub dir: DirArg,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// zstd compression level (1-19).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// SCAN COUNT hint.
    #[arg(long, default_value_t = 1000)]
    pub scan_count: usize,
    #[command(flatten)]
    pub encrypt: EncryptArgs,
    #[command(flatten)]
    pub pace: PaceArgs,
}

/// The backup directory.
#[derive(Debug, Clone, Args)]
pub struct DirArg {
    /// Backup directory (must exist).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

/// restic's `--keep-*` rules.
#[derive(Debug, Clone, Default, Args)]
pub struct RetentionArgs {
    /// Keep the N newest backups.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N days that have one (UTC).
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks that have one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months that have one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep every backup made within DURATION of the newest backup
    /// (30d, 2d12h, 1y6m; y m d h, m = months). Default when no --keep-*
    /// is given: 30d.
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
}

/// `kbdump backups`.
#[derive(Debug, Clone, Args)]
#[command(after_help = BACKUPS_EXAMPLES)]
pub struct BackupsArgs {
    #[command(subcommand)]
    pub command: BackupsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum BackupsCommand {
    /// One row per backup, from headers and indexes only: time, age, size,
    /// method, kb_ids, keys, status.
    List(DirArg),
    /// Apply retention alone.
    Prune(PruneArgs),
    /// Re-read the good backups (all of each, or a sample of blocks);
    /// damaged ones are moved aside. Exit 1 on damage.
    Verify(BackupsVerifyArgs),
    /// Health check: exit 0 healthy, 1 an alarm, 2 could not check.
    Check(BackupsCheckArgs),
    /// Restore a backup into an empty scratch server, compare every key,
    /// empty the server again, and record the result. Exit 1 on a failed test.
    Test(BackupsTestArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub dir: DirArg,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Show what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BackupsVerifyArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// Read only PCT percent of each backup's blocks (at least one), chosen
    /// at random: repeated runs cover everything over time.
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    pub sample: Option<f64>,
}

const CHECK_HELP: &str = "\
Alarms (one line each, naming what and why; --json for all of them):
  backup_too_old        critical  newest good backup older than --max-age, or none
  backup_damaged        critical  the newest backup failed verification
  key_count_drop        warning   a kb_id x category lost more than --max-drop of its keys
                                  (two newest backups, or newest backup vs --redis)
  kb_gone               warning   a kb_id present before is gone
  persistence_error     warning   rdb_last_bgsave_status / aof_last_write_status /
                                  aof_last_bgrewrite_status not ok (--redis)
  last_save_too_old     warning   changes pending, AOF off, last RDB save older than
                                  --max-save-age (--redis)
  memory_high           critical  used_memory above --max-memory-pct of maxmemory (--redis)
  evictions             warning   evicted_keys rose since the previous check (--redis)
  restore_test_too_old  warning   no passed `backups test` within --max-test-age
  restore_test_failed   critical  the last `backups test` failed

Durations: 26h, 90min, 2d, 1w (s, min, h, d, w). The server is checked when
--redis or $REDIS_URL is set.

Examples:
  kbdump backups check --dir /var/lib/kbdump
  kbdump backups check --dir /var/lib/kbdump --max-age 8d --max-test-age off
  kbdump backups check --dir /var/lib/kbdump --quiet \\
      --prometheus /var/lib/prometheus/node-exporter/kbdump.prom";

#[derive(Debug, Clone, Args)]
#[command(after_help = CHECK_HELP)]
pub struct BackupsCheckArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// Also check this server: its INFO and its key counts against the
    /// newest backup (default: $REDIS_URL when set).
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_name = "URL")]
    pub redis: Option<String>,
    /// Alarm when the newest good backup is older than this.
    #[arg(long, default_value = "26h", value_parser = parse_age, value_name = "DURATION")]
    pub max_age: i64,
    /// Alarm when a kb_id x category lost more than this share of its keys.
    #[arg(long, default_value = "10%", value_parser = parse_percent, value_name = "PCT")]
    pub max_drop: f64,
    /// Alarm when used_memory is above this percentage of maxmemory.
    #[arg(long, default_value = "90", value_parser = parse_percent, value_name = "PCT")]
    pub max_memory_pct: f64,
    /// Alarm when the server's last RDB save is older than this while
    /// changes wait (and AOF is off).
    #[arg(long, default_value = "2h", value_parser = parse_age, value_name = "DURATION")]
    pub max_save_age: i64,
    /// Alarm when no restore test passed within this (`off`: do not check).
    #[arg(long, default_value = "35d", value_parser = parse_limit, value_name = "DURATION|off")]
    pub max_test_age: Limit,
    /// Write node-exporter textfile metrics here (atomically).
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct BackupsTestArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// The scratch server, which must be empty: redis://[user:password@]host:port[/db].
    #[arg(
        long,
        env = "KBDUMP_SCRATCH_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub scratch: String,
    /// Test this backup file instead of the newest good one.
    #[arg(long, value_name = "FILE")]
    pub backup: Option<PathBuf>,
}

/// A duration limit that can be turned off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<i64>);

fn parse_limit(s: &str) -> Result<Limit, String> {
    if s == "off" {
        return Ok(Limit(None));
    }
    parse_age(s).map(|ms| Limit(Some(ms)))
}

/// A duration in milliseconds: `26h`, `90min`, `1d12h`, `2w`, `30s`.
pub fn parse_age(s: &str) -> Result<i64, String> {
    let bad = || {
        format!("invalid duration {s:?}: expected numbers with units s, min, h, d, w (such as 26h, 90min, 1d12h)")
    };
    let mut total: i64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let ms = match &rest[..unit] {
            "s" => 1_000,
            "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "m" => return Err(format!("{}; write minutes as min", bad())),
            _ => return Err(bad()),
        };
        rest = &rest[unit..];
        total = n
            .checked_mul(ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// A percentage, `10` or `10%`, above 0 and at most 100.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 =
        s.trim().trim_end_matches('%').parse().map_err(|_| {
            format!("invalid percentage {s:?}: expected a number such as 10 or 10%")
        })?;
    if v > 0.0 && v <= 100.0 {
        Ok(v)
    } else {
        Err(format!(
            "percentage {s:?} out of range: expected more than 0 and at most 100"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_percentages_parse() {
        assert_eq!(parse_age("26h"), Ok(26 * 3_600_000));
        assert_eq!(parse_age("1d12h"), Ok(36 * 3_600_000));
        assert_eq!(parse_age("90min"), Ok(90 * 60_000));
        assert!(parse_age("90m").unwrap_err().contains("min"));
        for bad in ["", "26", "h", "1.5h", "-1h", "3y"] {
            assert!(parse_age(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_limit("off"), Ok(Limit(None)));
        assert_eq!(parse_percent("10%"), Ok(10.0));
        assert_eq!(parse_percent("90"), Ok(90.0));
        assert!(parse_percent("0").is_err() && parse_percent("101").is_err());
    }
}
