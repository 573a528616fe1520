//! Connections to the servers kbdump talks to: Redis (plain or TLS) with the
//! one SCAN loop every scanner uses, and its snapshot as a replica gets it
//! ([`replication`]), and ClickHouse over HTTP, including
//! the queries on the mirror table; and the pace and patience of reads
//! from a production server ([`pace`]).

pub mod clickhouse;
pub mod cluster;
pub mod mirror;
pub mod notify;
pub mod pace;
pub mod redis;
pub mod replication;
pub mod tls;
