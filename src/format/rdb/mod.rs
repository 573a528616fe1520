//! RDB files and streams (`dump.rdb`, an AOF's RDB preamble, a replication
//! snapshot): a pure, streaming reader that turns every key into the DUMP
//! payload its server would return, byte for byte.
//!
//! A DUMP payload is `type byte | body | RDB version u16 LE | CRC-64 LE`
//! and the body is the value exactly as the RDB file stores it, so the
//! reader only *delimits* each value (it never builds it) and seals the
//! bytes with [`crate::format::dump::seal_into`]. Memory stays constant
//! apart from the largest single value; the input is read in large chunks
//! from any [`std::io::Read`].
//!
//! # Driving it
//!
//! ```no_run
//! use kbdump::format::rdb::{Checksum, Item, RdbReader};
//! # fn main() -> Result<(), kbdump::format::rdb::RdbError> {
//! let file = std::fs::File::open("dump.rdb").unwrap();
//! let mut reader = RdbReader::new(file)?; // reads and checks the header
//! while let Some(item) = reader.next_item()? {
//!     match item {
//!         Item::Key(k) => println!("db {} {:?}: {} bytes", k.db, k.key, k.payload.len()),
//!         Item::Aux { key, value } => println!("aux {key:?} = {value:?}"),
//!         Item::End { checksum: Checksum::Disabled } => println!("saved without checksum"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! [`RdbReader`] is also an `Iterator<Item = Result<Item, RdbError>>`. The
//! first error ends the reading; every key handed out before it is
//! complete and valid, so a caller keeps them (a truncated file yields all
//! keys before the cut, then [`RdbError::Truncated`] naming the offset).
//! [`RdbReader::into_parts`] gives back what was read past the checksum
//! (an AOF tail, a replication end mark) and the inner reader.
//!
//! # What it understands
//!
//! * magic `REDIS` with versions 1-14 and `VALKEY` with 80-81 (Valkey 9
//!   writes `VALKEY080`);
//! * opcodes AUX, SELECTDB, RESIZEDB, EXPIRETIME (seconds), EXPIRETIME_MS,
//!   IDLE, FREQ, MODULE_AUX (skipped), FUNCTION2 and the Redis 7.0 RC
//!   function opcode, SLOT_INFO, EOF with the CRC-64 (0 means the server
//!   had checksums off, and is accepted);
//! * opcode 243 by magic and version: Valkey's SLOT_IMPORT under the
//!   `VALKEY` magic, Redis' KEY_META (RDB ≥ 13, Redis 8.6), whose bytes go
//!   in front of the next key's payload as DUMP puts them, and unknown
//!   under older `REDIS` versions;
//! * every value type the DUMP decoder knows ([`crate::format::dump`]),
//!   with type 22 read by version (≥ 80: Valkey's HASH_2).
//!
//! An unknown type or opcode is [`RdbError::UnknownType`] with the byte
//! and its offset: its length cannot be known, so the rest of the file is
//! unreadable. Declared lengths are checked against
//! [`ReaderOptions::max_value_bytes`] before anything is allocated or
//! collected for them.

mod encoding;
mod error;
mod input;
mod reader;
mod value;

pub use error::{RdbError, Result};
pub use reader::{looks_like_rdb, RdbReader};

/// The magic string at the start of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magic {
    /// `REDIS` + 4 digits: Redis, and Valkey before 9.0.
    Redis,
    /// `VALKEY` + 3 digits: Valkey ≥ 9.0.
    Valkey,
}

impl Magic {
    /// `REDIS` or `VALKEY`.
    pub fn name(self) -> &'static str {
        match self {
            Magic::Redis => "REDIS",
            Magic::Valkey => "VALKEY",
        }
    }
}

/// The file header: magic and RDB version. The version is also the
/// trailer version of every payload the reader produces, as it is of
/// every DUMP on the server that wrote the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub magic: Magic,
    pub version: u16,
}

/// Limits on what the reader allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderOptions {
    /// The largest key, aux field, function library or value payload the
    /// reader accepts (default 4 GiB). A declared length above it is
    /// [`RdbError::TooLarge`], refused before anything is allocated.
    pub max_value_bytes: u64,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            max_value_bytes: 4 << 30,
        }
    }
}

/// One thing read from the file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Item {
    /// An AUX field (`redis-ver`, `ctime`, `used-mem`, `aof-base`, ...).
    /// Integer-encoded values come out as decimal text.
    Aux { key: Vec<u8>, value: Vec<u8> },
    /// SELECTDB: the keys that follow belong to this database.
    SelectDb(u64),
    /// RESIZEDB: the server's size hint for the current database.
    ResizeDb { keys: u64, expires: u64 },
    /// A key with its DUMP payload.
    Key(KeyRecord),
    /// A function library (FUNCTION2, or the 7.0 RC opcode): its code.
    Function(Vec<u8>),
    /// Module auxiliary data, skipped (only the module can read it).
    ModuleAux { module_id: u64 },
    /// SLOT_INFO: a cluster slot's size hint.
    SlotInfo { slot: u64, keys: u64, expires: u64 },
    /// Valkey's SLOT_IMPORT: an ongoing slot import job and its ranges.
    SlotImport {
        job: Vec<u8>,
        ranges: Vec<(u64, u64)>,
    },
    /// The EOF opcode and the checksum after it: the file is complete.
    End { checksum: Checksum },
}

/// One key as the server that wrote the file holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The database (SELECTDB) the key belongs to.
    pub db: u64,
    pub key: Vec<u8>,
    /// Exactly what `DUMP key` returns on the server that wrote the file.
    pub payload: Vec<u8>,
    /// Absolute expiry in unix milliseconds (EXPIRETIME(_MS)), as
    /// `PEXPIRETIME` gives it; `None` for a persistent key. Keys already
    /// expired when the file was read are kept: the caller decides.
    pub expire_at_ms: Option<i64>,
    /// LRU idle time in seconds (IDLE), when the server wrote it.
    pub idle_seconds: Option<u64>,
    /// LFU counter (FREQ), when the server wrote it.
    pub lfu_freq: Option<u8>,
    /// File offset of the key's type byte.
    pub offset: u64,
}

/// The CRC-64 after the EOF opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// It matches the file (the value).
    Verified(u64),
    /// It is 0: the server had `rdbchecksum no`; nothing was checked.
    Disabled,
    /// RDB versions before 5 have none.
    Absent,
}

#[cfg(test)]
mod tests;
