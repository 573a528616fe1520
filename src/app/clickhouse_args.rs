//! The `--clickhouse` flag shared by rebuild, mirror and check, and the
//! Redis write connection they use.

use clap::Args;

use crate::kato::parse_display_bytes;
use crate::net::clickhouse::Ch;
use crate::net::redis::RedisConn;
use crate::pattern::Glob;

/// Which ClickHouse to talk to.
#[derive(Debug, Clone, Args)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP URL: http://[user:password@]host:port/?database=NAME
    /// (database `kato` when not given).
    #[arg(
        long,
        env = "CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123",
        hide_env_values = true
    )]
    pub clickhouse: String,
}

impl ClickHouseArgs {
    /// A client for the URL, after checking the server answers.
    pub async fn connect(&self) -> anyhow::Result<Ch> {
        let ch = Ch::from_url(&self.clickhouse)?;
        ch.ping().await?;
        Ok(ch)
    }
}

/// The checked connection and its multiplexed connection for rebuild's
/// pipelines (both share one socket and the long response timeout that
/// large write pipelines need).
pub async fn write_connection(
    url: &str,
) -> anyhow::Result<(RedisConn, redis::aio::MultiplexedConnection)> {
    let checked = RedisConn::connect(url).await?;
    let conn = checked.multiplexed();
    Ok((checked, conn))
}

/// The kb_ids `--kb` names in ClickHouse (see [`Ch::resolve_kbs`]); warns
/// on stderr when globs were given and none matches.
pub async fn resolve_kbs(ch: &Ch, kbs: &[String]) -> anyhow::Result<Vec<String>> {
    let globs: Vec<Glob> = kbs
        .iter()
        .map(|k| Glob::new(parse_display_bytes(k)))
        .collect();
    let ids = ch.resolve_kbs(&globs).await?;
    if ids.is_empty() && !kbs.is_empty() {
        eprintln!(
            "kbdump: warning: no kb_id in {} matches --kb {}",
            ch.target(),
            kbs.join(" --kb ")
        );
    }
    Ok(ids)
}
