//! Append-only files (AOF): a pure, streaming RESP command reader, the
//! manifest of a Redis 7+ multi-part AOF directory, and the in-memory
//! replay of the commands for the selected keys.
//!
//! An AOF is a sequence of parts: Redis 7+ keeps a directory
//! (`appendonlydir/`) whose manifest lists a base (an RDB file, or RESP
//! commands when `aof-use-rdb-preamble no`) and incremental RESP files;
//! Redis before 7.0 keeps one file, RESP commands after an optional RDB
//! preamble. The RDB part is read by [`crate::format::rdb`]; this module
//! reads the commands ([`CommandReader`]), the manifest ([`manifest`]), and
//! replays the commands onto the base's keys ([`Replay`]).
//!
//! Everything here is pure: readers take `impl Read`, the replay takes
//! commands and the clock's instant as values.

mod error;
pub mod manifest;
mod replay;
mod resp;

pub use error::{AofError, Result};
pub use replay::{keys_of, FinalKey, Finished, Replay, Wants, PLAIN_RDB_VERSION};
pub use resp::{encode_command, looks_like_commands, Command, CommandReader, Limits, PrefixThen};
