//! Talking to a live Redis or Valkey server: connect, describe, SCAN,
//! pipelined DUMP + PTTL. Knows nothing about the command line.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, Value};

use crate::format::archive::SourceInfo;
use crate::format::dump::{Product, ServerKind};
use crate::kato::attribute::Census;
pub use crate::kato::attribute::KbCensus;

/// A server-side failure, naming the server (never its credentials).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisIoError {
    #[error(
        "invalid Redis URL {url:?}: {reason}; expected redis://[user:password@]host:port[/db]"
    )]
    BadUrl { url: String, reason: String },
    #[error("cannot connect to Redis at {address}: {cause}; is the server running and reachable?")]
    Connect { address: String, cause: RedisError },
    #[error("authentication failed at {address}: {cause}; check the user and password in the URL")]
    Auth { address: String, cause: RedisError },
    #[error("Redis at {address} failed on {what}: {cause}")]
    Command {
        address: String,
        what: String,
        cause: RedisError,
    },
    #[error("Redis at {address} answered {what} with something unexpected: {detail}")]
    Protocol {
        address: String,
        what: String,
        detail: String,
    },
}

pub type Result<T> = std::result::Result<T, RedisIoError>;

/// What a server says about itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerInfo {
    /// `redis` or `valkey`.
    pub product: String,
    pub version: String,
    pub cluster: bool,
    pub maxmemory: u64,
    pub maxmemory_policy: String,
    pub used_memory: u64,
    pub evicted_keys: u64,
    /// `host:port` of the master when this server is a read-only replica
    /// (`role:slave` with `slave_read_only:1`): writes would be refused.
    pub read_only_replica_of: Option<String>,
}

impl ServerInfo {
    /// The RDB version this server writes into DUMP trailers.
    pub fn rdb_version(&self) -> Option<u16> {
        predicted_rdb_version(&self.product, &self.version)
    }

    pub fn product(&self) -> Product {
        product_of(&self.product)
    }
}

/// RDB version of a release (`product` is `redis` or `valkey`).
pub fn predicted_rdb_version(product: &str, version: &str) -> Option<u16> {
    crate::format::dump::rdb_version_for(product_of(product), version)
}

fn product_of(name: &str) -> Product {
    if name == "valkey" {
        Product::Valkey
    } else {
        Product::Redis
    }
}

/// One key as read: payload and expiry, or gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dumped {
    Present {
        payload: Vec<u8>,
        /// Remaining milliseconds, `None` when the key has no expiry.
        pttl_ms: Option<i64>,
    },
    /// The key vanished between SCAN and DUMP (deleted, expired, evicted).
    Vanished,
}

/// A multiplexed async connection with its credential-free address.
#[derive(Clone)]
pub struct RedisConn {
    conn: MultiplexedConnection,
    address: String,
    db: i64,
}

/// `host:port` of a URL without user or password, for messages and headers.
pub fn redacted_address(info: &redis::ConnectionInfo) -> String {
    match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        redis::ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port} (tls)"),
        redis::ConnectionAddr::Unix(path) => format!("unix:{}", path.display()),
        other => format!("{other}"),
    }
}

/// Removes `user:password@` (and a query string, which may hold
/// `password=`) from a URL for display, also when the scheme is missing.
pub fn redact_url(url: &str) -> String {
    let creds_from = url.find("://").map_or(0, |i| i + 3);
    let (head, rest) = match url.rfind('@') {
        Some(at) if at >= creds_from => (format!("{}***@", &url[..creds_from]), &url[at + 1..]),
        _ => (String::new(), url),
    };
    match rest.find('?') {
        Some(q) => format!("{head}{}?***", &rest[..q]),
        None => format!("{head}{rest}"),
    }
}

impl RedisConn {
    /// Connects and checks the server answers (and accepts the credentials).
    pub async fn connect(url: &str) -> Result<RedisConn> {
        let client = Client::open(url).map_err(|e| RedisIoError::BadUrl {
            url: redact_url(url),
            reason: e.to_string(),
        })?;
        let info = client.get_connection_info().clone();
        let address = redacted_address(&info);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(10)))
            .set_response_timeout(Some(Duration::from_secs(300)));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|source| connect_error(&address, source))?;
        let mut this = RedisConn {
            conn,
            address,
            db: info.redis_settings().db(),
        };
        let pong: String = this.query(redis::cmd("PING"), "PING").await?;
        if pong != "PONG" {
            return Err(this.protocol("PING", format!("{pong:?}")));
        }
        Ok(this)
    }

    /// The underlying connection, for code that builds its own pipelines
    /// (rebuild). It shares this connection's socket and timeouts.
    pub fn multiplexed(&self) -> MultiplexedConnection {
        self.conn.clone()
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn db(&self) -> i64 {
        self.db
    }

    /// Runs one command, mapping errors to ones that name this server.
    pub async fn query<T: redis::FromRedisValue>(
        &mut self,
        cmd: redis::Cmd,
        what: &str,
    ) -> Result<T> {
        cmd.query_async(&mut self.conn)
            .await
            .map_err(|source| self.command_error(what, source))
    }

    /// Runs a pipeline; per-command errors are returned inside the values
    /// (`ignore_errors`) so one refused key does not fail the batch.
    pub async fn pipeline(&mut self, pipe: &redis::Pipeline, what: &str) -> Result<Vec<Value>> {
        pipe.query_async(&mut self.conn)
            .await
            .map_err(|source| self.command_error(what, source))
    }

    pub(crate) fn command_error(&self, what: &str, source: RedisError) -> RedisIoError {
        let lost = source.is_io_error()
            || source.is_connection_dropped()
            || source.is_connection_refusal();
        if lost || is_auth_error(&source) {
            return connect_error(&self.address, source);
        }
        RedisIoError::Command {
            address: self.address.clone(),
            what: what.to_string(),
            cause: source,
        }
    }

    pub(crate) fn protocol(&self, what: &str, detail: String) -> RedisIoError {
        RedisIoError::Protocol {
            address: self.address.clone(),
            what: what.to_string(),
            detail,
        }
    }

    /// Where records read from (or saved off) this server came from, for an
    /// archive header: address without credentials, product, version, db.
    pub fn source_info(&self, info: &ServerInfo, kind: &str) -> SourceInfo {
        SourceInfo {
            kind: kind.into(),
            address: self.address.clone(),
            product: info.product.clone(),
            version: info.version.clone(),
            rdb_version: info.rdb_version(),
            mode: if info.cluster {
                "cluster"
            } else {
                "standalone"
            }
            .into(),
            db: u32::try_from(self.db).unwrap_or(0),
        }
    }

    /// Product, version, cluster mode and memory settings from INFO.
    pub async fn server_info(&mut self) -> Result<ServerInfo> {
        let text: String = self.query(redis::cmd("INFO"), "INFO").await?;
        Ok(parse_info(&text))
    }

    /// What RESTORE on this server accepts: product, own RDB version, and
    /// Valkey's `rdb-version-check` setting (strict when it cannot be read).
    pub async fn server_kind(&mut self, info: &ServerInfo) -> Result<ServerKind> {
        let rdb_version = info.rdb_version().ok_or_else(|| {
            self.protocol(
                "INFO",
                format!("unknown server version {} {}", info.product, info.version),
            )
        })?;
        let mut relaxed = false;
        if info.product() == Product::Valkey {
            let mut cmd = redis::cmd("CONFIG");
            cmd.arg("GET").arg("rdb-version-check");
            let reply: Option<Vec<String>> = cmd.query_async(&mut self.conn).await.ok();
            relaxed = reply.is_some_and(|r| r.get(1).is_some_and(|v| v == "relaxed"));
        }
        Ok(ServerKind {
            product: info.product(),
            rdb_version,
            relaxed,
        })
    }

    /// A numeric CONFIG setting, `None` when CONFIG is unavailable (renamed
    /// or disabled on managed servers) or the value is not a number.
    pub async fn config_number(&mut self, name: &str) -> Option<u64> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg(name);
        let reply: Vec<String> = cmd.query_async(&mut self.conn).await.ok()?;
        reply.get(1)?.parse().ok()
    }

    /// A SCAN over the keys matching `pattern` (the one SCAN loop: every
    /// scanner uses it), on a clone of this connection.
    pub fn scan(&self, pattern: impl Into<Vec<u8>>, count: usize) -> Scan {
        Scan {
            conn: self.clone(),
            pattern: pattern.into(),
            count,
            cursor: Some(0),
        }
    }

    /// DUMP and PTTL of each key, pipelined in one round trip.
    pub async fn dump_keys<K: AsRef<[u8]>>(&mut self, keys: &[K]) -> Result<Vec<Dumped>> {
        let mut pipe = redis::pipe();
        for key in keys {
            let key = key.as_ref();
            pipe.cmd("DUMP").arg(key).cmd("PTTL").arg(key);
        }
        let values = self.pipeline(&pipe, "DUMP/PTTL").await?;
        if values.len() != keys.len() * 2 {
            return Err(self.protocol(
                "DUMP/PTTL",
                format!("{} replies for {} keys", values.len(), keys.len()),
            ));
        }
        values
            .chunks(2)
            .map(|pair| self.dumped_from(&pair[0], &pair[1]))
            .collect()
    }

    fn dumped_from(&self, dump: &Value, pttl: &Value) -> Result<Dumped> {
        let payload = match dump {
            Value::Nil => return Ok(Dumped::Vanished),
            Value::BulkString(bytes) => bytes.clone(),
            Value::ServerError(e) => return Err(self.protocol("DUMP", format!("{e:?}"))),
            other => return Err(self.protocol("DUMP", format!("{other:?}"))),
        };
        match pttl {
            Value::Int(-2) => Ok(Dumped::Vanished),
            Value::Int(-1) => Ok(Dumped::Present {
                payload,
                pttl_ms: None,
            }),
            Value::Int(ms) if *ms >= 0 => Ok(Dumped::Present {
                payload,
                pttl_ms: Some(*ms),
            }),
            other => Err(self.protocol("PTTL", format!("{other:?}"))),
        }
    }

    /// Every kb_id on the server with its per-category key counts (a full
    /// SCAN; `pattern` narrows it, e.g. `node*:*`).
    pub async fn discover_kbs(&mut self, pattern: &[u8]) -> Result<KbCensus> {
        let mut census = Census::new();
        let mut scan = self.scan(pattern, 1000);
        while let Some(keys) = scan.next_page().await? {
            keys.into_iter().for_each(|key| census.add(key));
        }
        Ok(census.finish())
    }
}

/// A SCAN in progress: pages of keys until the cursor returns to 0. A key
/// may come twice (SCAN repeats keys while the server rehashes).
pub struct Scan {
    conn: RedisConn,
    pattern: Vec<u8>,
    count: usize,
    /// `None` once the server answered cursor 0.
    cursor: Option<u64>,
}

impl Scan {
    /// The next non-empty page of keys, `None` once the SCAN is complete.
    /// Empty pages (which SCAN may return before its end) are skipped.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Vec<u8>>>> {
        while let Some(at) = self.cursor {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(at)
                .arg("MATCH")
                .arg(&self.pattern)
                .arg("COUNT")
                .arg(self.count);
            let (next, keys): (u64, Vec<Vec<u8>>) = self.conn.query(cmd, "SCAN").await?;
            self.cursor = (next != 0).then_some(next);
            if !keys.is_empty() {
                return Ok(Some(keys));
            }
        }
        Ok(None)
    }

    /// Whether the server has answered cursor 0: no page is left.
    pub fn is_done(&self) -> bool {
        self.cursor.is_none()
    }
}

fn connect_error(address: &str, source: RedisError) -> RedisIoError {
    if is_auth_error(&source) {
        RedisIoError::Auth {
            address: address.to_string(),
            cause: source,
        }
    } else {
        RedisIoError::Connect {
            address: address.to_string(),
            cause: source,
        }
    }
}

fn is_auth_error(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
        || e.to_string().contains("WRONGPASS")
        || e.to_string().contains("NOAUTH")
}

fn read_only_replica_of(fields: &BTreeMap<&str, &str>) -> Option<String> {
    let replica = fields.get("role") == Some(&"slave");
    let read_only = fields
        .get("slave_read_only")
        .or(fields.get("replica_read_only"));
    (replica && read_only != Some(&"0")).then(|| {
        let host = fields.get("master_host").unwrap_or(&"?");
        let port = fields.get("master_port").unwrap_or(&"?");
        format!("{host}:{port}")
    })
}

/// Parses the fields of INFO that kbdump uses.
pub fn parse_info(text: &str) -> ServerInfo {
    let fields: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.trim_end().split_once(':'))
        .collect();
    let number = |name: &str| fields.get(name).and_then(|v| v.parse().ok()).unwrap_or(0);
    let (product, version) = match fields.get("valkey_version") {
        Some(v) => ("valkey", *v),
        None => (
            fields.get("server_name").copied().unwrap_or("redis"),
            fields.get("redis_version").copied().unwrap_or(""),
        ),
    };
    ServerInfo {
        product: product.to_string(),
        version: version.to_string(),
        cluster: fields.get("cluster_enabled") == Some(&"1"),
        maxmemory: number("maxmemory"),
        maxmemory_policy: fields.get("maxmemory_policy").unwrap_or(&"").to_string(),
        used_memory: number("used_memory"),
        evicted_keys: number("evicted_keys"),
        read_only_replica_of: read_only_replica_of(&fields),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdb_versions_follow_the_release_table() {
        assert_eq!(predicted_rdb_version("redis", "6.2.14"), Some(9));
        assert_eq!(predicted_rdb_version("redis", "7.0.15"), Some(10));
        assert_eq!(predicted_rdb_version("redis", "7.2.4"), Some(11));
        assert_eq!(predicted_rdb_version("redis", "7.4.1"), Some(12));
        assert_eq!(predicted_rdb_version("redis", "8.2.3"), Some(12));

        assert_eq!(predicted_rdb_version("valkey", "8.1.8"), Some(11));
        assert_eq!(predicted_rdb_version("valkey", "9.1.2"), Some(80));
        assert_eq!(predicted_rdb_version("redis", "garbage"), None);
    }

    #[test]
    fn info_parsing_tells_valkey_from_redis() {
        let valkey = parse_info("# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.1.2\r\n# Memory\r\nmaxmemory:100\r\nmaxmemory_policy:allkeys-lru\r\n");
        assert_eq!(
            (valkey.product.as_str(), valkey.version.as_str()),
            ("valkey", "9.1.2")
        );
        assert_eq!(
            (valkey.maxmemory, valkey.maxmemory_policy.as_str()),
            (100, "allkeys-lru")
        );
        let redis = parse_info("redis_version:7.0.15\r\ncluster_enabled:0\r\nevicted_keys:3\r\n");
        assert_eq!(
            (redis.product.as_str(), redis.version.as_str()),
            ("redis", "7.0.15")
        );
        assert_eq!((redis.cluster, redis.evicted_keys), (false, 3));
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("redis://u:secret@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(redact_url("u:secret@h:1"), "***@h:1");
        assert_eq!(redact_url("redis://u:p@ss@h:1"), "redis://***@h:1");
        assert_eq!(redact_url("redis://u:p?ss@h:1"), "redis://***@h:1");
        assert_eq!(
            redact_url("redis+unix:///tmp/r.sock?db=1&pass=secret"),
            "redis+unix:///tmp/r.sock?***"
        );
    }
}
