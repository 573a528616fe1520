/*!
Rebuild of the derivable Redis data of KATO knowledge bases from
ClickHouse's `patterns_data`.
*/

pub mod pytext;
pub mod stats;
