//! The command line, as clap derive types only. Doc comments are the help.
//!
//! Nothing here does work: the `app` layer turns these into library options.
//! This module depends on the library only for plain value types that parse
//! from a string (such as [`crate::kato::Category`]).

pub mod args;
pub mod backup;
pub mod cat;
pub mod check;
pub mod completions;
pub mod copy;
pub mod diff;
pub mod export;
pub mod inspect;
pub mod kbs;
pub mod ls;
pub mod mirror;
pub mod rebuild;
pub mod restore;
pub mod verify;

use clap::{Args, Parser, Subcommand};

pub use args::{
    ClickHouseArgs, DbArg, EncryptArgs, ModeArg, PaceArgs, PolicyArg, RedisArgs, SelectArgs,
    TlsArgs, WriteArgs,
};
pub use backup::{BackupArgs, BackupsArgs, BackupsCommand};
pub use cat::CatArgs;
pub use check::CheckArgs;
pub use completions::{CompletionsArgs, ManArgs};
pub use copy::CopyArgs;
pub use diff::DiffArgs;
pub use export::ExportArgs;
pub use inspect::InspectArgs;
pub use kbs::KbsArgs;
pub use ls::LsArgs;
pub use mirror::MirrorArgs;
pub use rebuild::RebuildArgs;
pub use restore::RestoreArgs;
pub use verify::VerifyArgs;

const AFTER_HELP: &str = "\
Exit status: 0 success; 1 a check said no (diff found differences, verify
found damage, a backup check failed, a merge left conflicts); 2 an error.

Examples:
  kbdump kbs --redis redis://127.0.0.1:6379
  kbdump export --kb node0_kato -o node0.kbd
  kbdump inspect node0.kbd
  kbdump ls node0.kbd --category emotives --long
  kbdump cat node0.kbd --category emotives --match '*:emotives:3f78*'
  kbdump verify node0.kbd
  kbdump diff node0.kbd --kb node0_kato
  kbdump restore node0.kbd --kb node0_kato --category emotives
  kbdump restore node0.kbd --kb node0_kato --mode merge
  kbdump copy --from redis://old:6379 --to redis://new:6379";

/// Key-level backup, selective restore and migration of KATO knowledge bases
/// in Redis.
#[derive(Debug, Parser)]
#[command(name = "kbdump", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Print a machine-readable JSON result on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars, and no text summary when the command succeeds
    /// (errors, differences and damage are still reported; --json output
    /// is printed either way).
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// An age identity file (`AGE-SECRET-KEY-1…` lines, as `age-keygen`
    /// writes them) that opens encrypted archives. Repeatable; also read
    /// from KBDUMP_IDENTITY.
    #[arg(
        long = "identity",
        value_name = "FILE",
        global = true,
        env = "KBDUMP_IDENTITY"
    )]
    pub identity: Vec<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Export a live server's keys (all, or by kb_id and group) into a .kbd archive (or stdout).
    Export(ExportArgs),
    /// Put archived keys back into a live server (by default only missing ones).
    Restore(RestoreArgs),
    /// Compare an archive with a live server: missing, extra, changed keys.
    Diff(DiffArgs),
    /// Copy keys (all, or by kb_id and group) from one server to another, across versions.
    Copy(CopyArgs),
    /// List a server's kb_ids with per-category key counts, KATO's global keys and foreign keys.
    Kbs(KbsArgs),
    /// Summarise an archive: header, source, per kb_id x category counts.
    Inspect(InspectArgs),
    /// List the keys in an archive.
    Ls(LsArgs),
    /// Print archived keys with their decoded values (text, JSON Lines or raw bytes).
    Cat(CatArgs),
    /// Check every block, the index and every payload of an archive.
    Verify(VerifyArgs),
    /// Rebuild the derivable data of kb_ids from ClickHouse into Redis.
    Rebuild(RebuildArgs),
    /// Copy frequency, emotives, metadata and affinity into ClickHouse.
    Mirror(MirrorArgs),
    /// Compare ClickHouse's patterns with Redis; exit 1 on findings.
    Check(CheckArgs),
    /// Back up into a directory: timestamped, verified, with retention.
    Backup(BackupArgs),
    /// The backups in a directory: list, prune, verify, check, test.
    Backups(BackupsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the man page, or write one per subcommand into a directory.
    Man(ManArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;
    use std::sync::Mutex;

    /// Parsing reads `REDIS_URL` (and `CLICKHOUSE_URL`); the test that sets
    /// it holds this lock, and so does every parse here, so no parse sees
    /// another test's value.
    static ENV: Mutex<()> = Mutex::new(());

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        Cli::try_parse_from(std::iter::once("kbdump").chain(args.iter().copied()))
    }

    fn restore_args(args: &[&str]) -> RestoreArgs {
        match parse(args).expect("parses").command {
            Command::Restore(a) => a,
            other => panic!("not restore: {other:?}"),
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn unknown_category_is_a_usage_error() {
        let err = parse(&["export", "--category", "emotive", "-o", "x"]).unwrap_err();
        assert!(err.to_string().contains("emotives"), "{err}");
    }

    #[test]
    fn mode_parses_to_the_cli_value() {
        let args = restore_args(&["restore", "x.kbd", "--mode", "replace"]);
        assert_eq!(args.write.mode, ModeArg::Replace);
        let args = restore_args(&["restore", "x.kbd"]);
        assert_eq!(args.write.mode, ModeArg::Missing);
        let err = parse(&["restore", "x.kbd", "--mode", "overwrite"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
    }

    #[test]
    fn read_limits_and_yes_parse() {
        let args = ["export", "-o", "x", "--max-keys-per-sec", "5k"];
        let Command::Export(export) =
            parse(&[&args[..], &["--max-bytes-per-sec", "1MiB"]].concat())
                .expect("parses")
                .command
        else {
            panic!("not export");
        };
        assert_eq!(export.pace.max_keys_per_sec, Some(5_000));
        assert_eq!(export.pace.max_bytes_per_sec, Some(1 << 20));
        assert_eq!(export.pace.busy_timeout, 60);
        let err = parse(&["export", "-o", "x", "--max-keys-per-sec", "lots"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert!(restore_args(&["restore", "x.kbd", "--mode", "replace", "--yes"]).yes);
        assert!(!restore_args(&["restore", "x.kbd"]).yes);
    }

    #[test]
    fn restore_needs_a_file_or_the_clickhouse_mirror() {
        let err = parse(&["restore"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        let args = restore_args(&["restore", "--from-clickhouse", "http://ch:8123"]);
        assert_eq!(args.file, None);
        assert_eq!(args.from_clickhouse.as_deref(), Some("http://ch:8123"));
        let err = parse(&["restore", "x.kbd", "--from-clickhouse", "http://ch:8123"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn redis_falls_back_to_redis_url() {
        let redis = |cli: Cli| match cli.command {
            Command::Kbs(a) => a.redis.redis,
            other => panic!("not kbs: {other:?}"),
        };
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let saved = std::env::var_os("REDIS_URL");
        let kbs = |args: &[&str]| {
            Cli::try_parse_from(["kbdump", "kbs"].iter().chain(args).copied()).expect("parses")
        };
        std::env::set_var("REDIS_URL", "redis://kbdump-cli-test:6390/3");
        let from_env = redis(kbs(&[]));
        let explicit = redis(kbs(&["--redis", "redis://flag:6379"]));
        std::env::remove_var("REDIS_URL");
        let default = redis(kbs(&[]));
        if let Some(v) = saved {
            std::env::set_var("REDIS_URL", v);
        }
        assert_eq!(from_env, "redis://kbdump-cli-test:6390/3");
        assert_eq!(explicit, "redis://flag:6379");
        assert_eq!(default, "redis://127.0.0.1:6379");
    }

    #[test]
    fn scan_count_out_of_range_is_a_usage_error() {
        for bad in ["0", "100001"] {
            let err = parse(&["export", "-o", "x", "--scan-count", bad]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{err}");
            assert!(err.to_string().contains("1..=100000"), "{err}");
        }
        match parse(&["export", "-o", "x", "--scan-count", "100000"])
            .unwrap()
            .command
        {
            Command::Export(a) => assert_eq!(a.scan_count, 100_000),
            other => panic!("not export: {other:?}"),
        }
    }

    #[test]
    fn empty_selectors_are_usage_errors() {
        let cases: &[&[&str]] = &[
            &["export", "-o", "x", "--kb", ""],
            &["export", "-o", "x", "--match", ""],
            &["export", "-o", "x", "--category", ""],
            &["restore", "x.kbd", "--kb", ""],
            &["diff", "x.kbd", "--match", ""],
            &["ls", "x.kbd", "--kb", ""],
            &[
                "copy",
                "--from",
                "redis://a",
                "--to",
                "redis://b",
                "--kb",
                "",
            ],
            &["rebuild", "--kb", ""],
            &["mirror", "--kb", ""],
            &["check", "--kb", ""],
        ];
        for args in cases {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{args:?}: {err}");
            assert!(err.to_string().contains("empty"), "{args:?}: {err}");
        }
    }
}
