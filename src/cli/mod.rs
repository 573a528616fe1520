//! The command line, as clap derive types only. Doc comments are the help.

use clap::{Args, Parser, Subcommand};

use crate::app;

const AFTER_HELP: &str = "\
Exit status: 0 success; 1 a check said no (diff found differences, verify
found damage, a backup check failed); 2 an error.

Examples:
  kbdump kbs --redis redis://127.0.0.1:6379
  kbdump export --kb node0_kato -o node0.kbd
  kbdump inspect node0.kbd
  kbdump ls node0.kbd --category emotives --long
  kbdump cat node0.kbd --category emotives --match '*:emotives:3f78*'
  kbdump verify node0.kbd
  kbdump diff node0.kbd --kb node0_kato
  kbdump restore node0.kbd --kb node0_kato --category emotives
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
    /// No progress bars.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Export kb_ids from a live server into a .kbd archive (or stdout).
    Export(app::export::ExportArgs),
    /// Put archived keys back into a live server (by default only missing ones).
    Restore(app::restore::RestoreArgs),
    /// Compare an archive with a live server: missing, extra, changed keys.
    Diff(app::diff::DiffArgs),
    /// Copy kb_ids from one server to another, across versions.
    Copy(app::copy::CopyArgs),
    /// List the kb_ids on a server with per-category key counts.
    Kbs(app::kbs::KbsArgs),
    /// Summarise an archive: header, source, per kb_id x category counts.
    Inspect(app::inspect::InspectArgs),
    /// List the keys in an archive.
    Ls(app::ls::LsArgs),
    /// Print archived keys with their decoded values (text, JSON Lines or raw bytes).
    Cat(app::cat::CatArgs),
    /// Check every block, the index and every payload of an archive.
    Verify(app::verify::VerifyArgs),
    /// Rebuild the derivable data of kb_ids from ClickHouse into Redis.
    Rebuild(app::rebuild::RebuildArgs),
    /// Copy frequency, emotives, metadata and affinity into ClickHouse.
    Mirror(app::mirror::MirrorArgs),
    /// Compare ClickHouse's patterns with Redis; exit 1 on findings.
    Check(app::check::CheckArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn unknown_category_is_a_usage_error() {
        let err = Cli::try_parse_from(["kbdump", "export", "--category", "emotive", "-o", "x"])
            .unwrap_err();
        assert!(err.to_string().contains("emotives"), "{err}");
    }
}
