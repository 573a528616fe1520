//! The integration tests of kbdump, one test binary: export, restore, diff,
//! copy between every pair of server flavours, the offline commands on
//! golden and damaged archives, the DUMP decoder against captured and live
//! payloads, restores under faults, and rebuild, mirror and check against
//! ClickHouse, besides a self-test of the harness. They run the library and
//! the `kbdump` binary against real `redis-server`, `valkey-server` and
//! `clickhouse-server` processes started on free loopback ports from the
//! binaries `scripts/provision.sh` installs (`source .cache/servers/env.sh`,
//! or run `scripts/test.sh`).

mod support;

mod acl;
mod aof;
mod architecture;
mod backups;
mod clickhouse_errors;
mod clickhouse_rebuild;
mod clickhouse_stores;
mod cluster;
mod cluster_commands;
mod cluster_snapshot;
mod diff;
mod dump_fixtures;
mod dump_live;
mod encryption;
mod export;
mod faults;
mod fuzz_regressions;
mod gentle;
mod harness_selftest;
mod hostile;
mod keyspace;
mod merge;
mod migration;
mod mirror_follow;
mod mirror_history;
mod offline;
mod output;
mod rails;
mod rdb_commands;
mod rdb_reader;
mod restore;
mod secrets;
mod signals;
mod snapshot;
mod tls;
mod undo;
