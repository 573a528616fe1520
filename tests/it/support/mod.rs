//! Shared support for the integration tests: real servers on free loopback
//! ports ([`redis`], [`cluster`], [`clickhouse`]), KATO-like data ([`seed`]), running
//! the kbdump binary ([`cli`]) and hand-built hostile archives ([`crafted`]).
//!
//! Servers come from `scripts/provision.sh`; run it (or `scripts/test.sh`)
//! once before `cargo test`.

pub mod cli;
pub mod clickhouse;
pub mod cluster;
pub mod crafted;
pub mod proxy;
pub mod redis;
pub mod seed;
