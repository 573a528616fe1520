//! kbdump: key-level backup, selective restore and migration of the Redis
//! data of KATO knowledge bases.
//!
//! Every command joins a record **source** to a record **sink**. The
//! modules form floors, and a module imports only from floors below it
//! (`docs/ARCHITECTURE.md` has the map and the rules):
//!
//! 1. pure: [`kato`] (key catalogue), [`format`](mod@format) (archive, DUMP, mirror
//!    table layout), [`plan`] (restore-path and memory decisions),
//!    [`selection`], [`pattern`], [`fingerprint`], [`clock`],
//!    [`progress`], [`stop`] (a request to stop, from signals),
//!    [`records`] (what sources yield and sinks take);
//! 2. [`net`]: Redis and ClickHouse connections, the one SCAN loop;
//! 3. [`source`] and [`sink`]: everything that yields or consumes records;
//! 4. [`flow`]: the joins (export, restore, copy, diff, verify, mirror,
//!    rebuild, check);
//! 5. [`cli`] (clap types only) and [`app`] (one file per command).

pub mod app;
pub mod cli;
pub mod clock;
pub mod fingerprint;
pub mod flow;
pub mod format;
pub mod kato;
pub mod net;
pub mod pattern;
pub mod plan;
pub mod progress;
pub mod records;
pub mod selection;
pub mod sink;
pub mod source;
pub mod stop;
