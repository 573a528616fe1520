//! `kbdump ls`: arguments.

use clap::Args;

use super::args::{DbArg, SelectArgs};

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Examples:\n  kbdump ls node0.kbd --category emotives\n  kbdump ls node0.kbd --long --match '*:metadata:3f7*'\n  kbdump ls --json all.kbd --kb 'node*'   # JSON Lines, one key per line\n  kbdump ls all.kbd --global              # KATO's global keys (sessions, STM, caches)\n  kbdump ls all.kbd --foreign             # keys that are not KATO's\n  kbdump ls appendonlydir --kb node0_kato --salvage   # an AOF damaged in the middle: what precedes"
)]
pub struct LsArgs {
    /// Archive file or physical backup (a dump.rdb, an AOF file, or an AOF
    /// directory such as appendonlydir), or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: String,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub db: DbArg,
    /// Also show type, expiry and payload size.
    #[arg(long, short = 'l')]
    pub long: bool,
}
