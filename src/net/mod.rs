//! Connections to the servers kbdump talks to: Redis (plain or TLS) with the
//! one SCAN loop every scanner uses, and ClickHouse over HTTP, including
//! the queries on the mirror table.

pub mod clickhouse;
pub mod mirror;
pub mod redis;
