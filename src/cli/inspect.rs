//! `kbdump inspect`: arguments.

use clap::Args;

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Reads only the header and the index (the whole stream for `-`). The\n`restore` table says, per server release in its default configuration,\nwhether RESTORE takes every payload as it is (raw), only after the payload\ntrailer is retagged to the target's RDB version (retag; `kbdump restore`\ndoes this by itself), or needs the logical path (plain commands) for the\ntype ids listed, because that release does not know them.\n\nExamples:\n  kbdump inspect node0.kbd\n  kbdump inspect --json node0.kbd\n  cat node0.kbd | kbdump inspect -"
)]
pub struct InspectArgs {
    /// Archive file or physical backup (a dump.rdb, an AOF file, or an AOF
    /// directory such as appendonlydir), or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: String,
    #[command(flatten)]
    pub db: super::args::DbArg,
}
