//! Pure codecs: bytes in, values out. Nothing here opens a socket or a
//! file; readers take `impl Read`, writers `impl Write`.
//!
//! - [`aof`]: append-only files (RESP commands, multi-part manifests, replay);
//! - [`archive`]: the `.kbd` archive format;
//! - [`dump`]: Redis DUMP payloads;
//! - [`encryption`]: the age layer around an encrypted archive;
//! - [`rdb`]: RDB files and streams, read into DUMP payloads;
//! - [`mirror`]: the layout of the ClickHouse mirror table;
//! - [`summary`]: the plaintext summary beside an encrypted backup.

pub mod aof;
pub mod archive;
pub mod dump;
pub mod encryption;
pub mod mirror;
pub mod rdb;
pub mod summary;
