//! `kbdump cat`: arguments.

use clap::Args;

use super::args::{DbArg, SelectArgs};

const AFTER_HELP: &str = "\
Strings that hold JSON (emotives, metadata, tf_vector) print as JSON; bytes
that are not UTF-8 print as {\"base64\": \"...\"}, so nothing is lost. Keys are
shown as `ls` shows them (non-UTF-8 bytes as \\xNN), and --raw takes them the
same way.

--json prints one JSON object per key (JSON Lines): key, kb_id, category,
type, expire_at_ms and value, where value is {\"type\": ..., \"value\": ...} in
the lossless form documented in the dump module.

Exit status: 0 success; 2 an error (archive unreadable, --raw key not found
or not a string, or some payload did not decode: those keys are named on
stderr, the others are still printed).

Examples:
  # what were the emotives of pattern 3f78... in kb node2_kato?
  kbdump cat node2.kbd --kb node2_kato --category emotives --match '*:emotives:3f78*'
  kbdump cat node2.kbd --kb node2_kato --category metadata | less
  kbdump cat --json node2.kbd --category emotives | jq '.value.value'
  kbdump cat node2.kbd --raw 'node2_kato:metadata:3f78a9' > metadata.json
  kbdump export --kb node2_kato -o - | kbdump cat - --category symbols";

#[derive(Debug, Clone, Args)]
#[command(after_help = AFTER_HELP)]
pub struct CatArgs {
    /// Archive file or physical backup (a dump.rdb, an AOF file, or an AOF
    /// directory such as appendonlydir), or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: String,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub db: DbArg,
    /// Write the exact bytes of this one string key to stdout (as `ls`
    /// prints it: non-UTF-8 bytes as \xNN).
    #[arg(long, value_name = "KEY")]
    pub raw: Option<String>,
}
