//! kbdump: key-level backup, selective restore and migration of the Redis
//! data of KATO knowledge bases.
//!
//! The pure parts (`archive`, `dump`, `kato`, `pattern`) know nothing about
//! networks; `redis_io` knows nothing about the command line.

pub mod clickhouse_io;
pub mod dump;
pub mod rebuild;
