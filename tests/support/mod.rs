//! Shared support for the integration tests: real servers on free loopback
//! ports and KATO-like data. Each test file includes it with `mod support;`.
//!
//! Servers come from `scripts/provision.sh`; run it (or `scripts/test.sh`)
//! once before `cargo test`.

// Each test binary uses only part of this module; the rest would otherwise
// be reported as dead code under `clippy -D warnings`.
#![allow(dead_code)]

pub mod clickhouse;
pub mod redis;
pub mod seed;
