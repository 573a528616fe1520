//! kbdump: key-level backup, selective restore and migration of the Redis
//! data of KATO knowledge bases.
//!
//! The pure parts (`archive`, `dump`, `kato`, `pattern`) know nothing about
//! networks; `redis_io` knows nothing about the command line.

pub mod app;
pub mod archive;
pub mod check;
pub mod cli;
pub mod clickhouse_io;
pub mod diff;
pub mod dump;
pub mod export;
pub mod fingerprint;
pub mod kato;
pub mod mirror;
pub mod offline;
pub mod output;
pub mod pattern;
pub mod progress;
pub mod rebuild;
pub mod redis_io;
pub mod restore;
pub mod selection;
pub mod sources;
