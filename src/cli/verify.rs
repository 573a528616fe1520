//! `kbdump verify`: arguments.

use clap::Args;

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Checks every block's checksum, the index, the end frame and every DUMP\npayload: its own CRC64, and a full decode of the value, so an archive that\nverifies can be read by `kbdump cat` and restored to any server. Also lists\nthe RDB versions of the payloads.\n\nExit 0 when intact, 1 on any damage (with the byte offset, block and key of\neach problem), 2 when the file cannot be opened.\n\nExamples:\n  kbdump verify node0.kbd\n  kbdump verify --json node0.kbd\n  kbdump export --kb node0_kato -o - | tee node0.kbd | kbdump verify -\n  kbdump verify /var/lib/redis/appendonlydir   # every part of an AOF, every value decodes"
)]
pub struct VerifyArgs {
    /// Archive file or physical backup (a dump.rdb: its checksum and every
    /// key of every database; an AOF file or directory: every command
    /// read and every value replayed), or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: String,
}
