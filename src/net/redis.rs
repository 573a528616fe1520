//! Talking to a live Redis or Valkey server: connect, describe, SCAN,
//! pipelined DUMP + PTTL. Knows nothing about the command line.

use std::collections::BTreeMap;
use std::time::Duration;

use std::path::{Path, PathBuf};

use std::collections::VecDeque;
use std::sync::Arc;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo, ErrorKind,
    IntoConnectionInfo, RedisError, TlsCertificates, Value,
};

use super::cluster::{self, ClusterLink, SlotMap, Topology};
use crate::format::archive::SourceInfo;
use crate::format::dump::{Product, ServerKind};
use crate::kato::attribute::Census;
pub use crate::kato::attribute::KeyspaceCensus;

/// A server-side failure, naming the server (never its credentials).
///
/// Server error text in a message is cut to [`MAX_SERVER_TEXT`] characters:
/// a pipeline of a thousand refused commands is one line, not a page.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisIoError {
    #[error(
        "invalid Redis URL {url:?}: {reason}; expected redis://[user:password@]host:port[/db]"
    )]
    BadUrl { url: String, reason: String },
    #[error("cannot connect to Redis at {address}: {}; is the server running and reachable?", brief(.cause))]
    Connect { address: String, cause: RedisError },
    /// The server refused the user or password, or wants one.
    #[error("authentication failed at {address} as user {user} with {origin}: {}; {hint}", brief(.cause))]
    Auth {
        address: String,
        user: String,
        /// Where the password came from ("the password in the URL", "the
        /// password from --password-file FILE", "no password"); never the
        /// password itself.
        origin: String,
        hint: String,
        cause: Box<RedisError>,
    },
    /// The URL names an ACL user but no password came from anywhere.
    #[error(
        "the URL names user {user} but no password was given for {address}; give it with \
         --{flag_prefix}password-file FILE or the REDISCLI_AUTH environment variable \
         (a password in the URL works too, but shows in the process list)"
    )]
    MissingPassword {
        address: String,
        user: String,
        flag_prefix: &'static str,
    },
    /// TLS options with a URL that does not ask for TLS.
    #[error(
        "{flags}: TLS options need a rediss:// URL, but {url} is not one; write rediss://host:port"
    )]
    TlsNeedsRediss { url: String, flags: String },
    /// A certificate or key file that cannot be used.
    #[error("cannot use {path} as the {what}: {reason}")]
    TlsFile {
        path: String,
        what: String,
        reason: String,
    },
    /// The TLS handshake failed: the server's certificate was not trusted,
    /// or the server wanted a client certificate.
    #[error("TLS with Redis at {address} failed: {reason}; {hint}")]
    Tls {
        address: String,
        reason: String,
        hint: String,
    },
    /// The ACL user may not run a command kbdump needs.
    #[error(
        "user {user} lacks permission for {command} on {address} (ACL NOPERM): grant it with \
         ACL SETUSER {user} +{grant}"
    )]
    NoPermission {
        address: String,
        user: String,
        /// The refused command as the server names it, upper case
        /// (`DUMP`, `CONFIG GET`).
        command: String,
        /// The ACL rule that allows it, without the `+` (`dump`, `config|get`).
        grant: String,
    },
    /// The ACL user may run the command but not on these keys.
    #[error(
        "user {user} lacks permission for the keys of {what} on {address} (ACL NOPERM: {detail}): \
         grant them with ACL SETUSER {user} ~* (or a key pattern that covers the selection)"
    )]
    NoKeyPermission {
        address: String,
        user: String,
        what: String,
        detail: String,
    },
    /// A plain URL names a node of a cluster: reading it alone would see
    /// only the keys of its own slots.
    #[error(
        "{address} is a node of a Redis Cluster (INFO says cluster_enabled:1): alone it holds \
         only the keys of its own slots; name the cluster with {suggestion}"
    )]
    ClusterNode { address: String, suggestion: String },
    /// A cluster URL names a db its nodes do not serve.
    #[error(
        "{address} does not serve db {db} ({detail}): Redis Cluster has db 0 only, and a \
         Valkey 9 cluster as many as its cluster-databases setting; name db 0 (drop the /{db} \
         of the URL) or a db the cluster serves"
    )]
    ClusterDb {
        address: String,
        db: i64,
        detail: String,
    },
    /// The slot map changed while the masters were scanned.
    #[error(
        "the slot map of the cluster {address} changed while its keys were read (a resharding \
         or a failover: {detail}): a key that moved between masters may have been missed, so \
         the read is incomplete; rerun once the cluster is stable"
    )]
    TopologyChanged { address: String, detail: String },
    #[error("Redis at {address} failed on {what}: {}", brief(.cause))]
    Command {
        address: String,
        what: String,
        cause: RedisError,
    },
    #[error("Redis at {address} answered {what} with something unexpected: {}", cap(.detail))]
    Protocol {
        address: String,
        what: String,
        detail: String,
    },
}

impl RedisIoError {
    /// Whether the server could not be reached or the connection dropped
    /// (worth a retry once it is back), as opposed to a refusal.
    pub fn is_connection_failure(&self) -> bool {
        match self {
            RedisIoError::Connect { .. } => true,
            RedisIoError::Command { cause, .. } => {
                cause.is_io_error() || cause.is_timeout() || cause.is_connection_dropped()
            }
            _ => false,
        }
    }
}

/// Longest server error text quoted in a message, in characters.
pub const MAX_SERVER_TEXT: usize = 300;

/// `text` cut to [`MAX_SERVER_TEXT`] characters, with `…` when cut.
pub fn cap(text: &str) -> String {
    match text.char_indices().nth(MAX_SERVER_TEXT) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// A client error for a message: a pipeline's failures as the first one
/// and a count, capped.
fn brief(e: &RedisError) -> String {
    match e.clone().into_server_errors() {
        Some(errors) if errors.len() > 1 => {
            let (_, first) = &errors[0];
            cap(&format!(
                "{} {} (and {} more refused commands)",
                first.code(),
                first.details().unwrap_or(""),
                errors.len() - 1
            ))
        }
        _ => cap(&e.to_string()),
    }
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

/// A password given apart from the URL, and where it came from. Neither
/// `Debug` nor any message shows the password itself.
#[derive(Clone)]
pub struct Password {
    secret: String,
    origin: String,
}

impl Password {
    /// `origin` says where it came from, for messages: `--password-file
    /// /run/secrets/redis`, `REDISCLI_AUTH`.
    pub fn new(secret: impl Into<String>, origin: impl Into<String>) -> Password {
        Password {
            secret: secret.into(),
            origin: origin.into(),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Password(from {})", self.origin)
    }
}

/// PEM files for a `rediss://` connection.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// Trust only this CA (else the system's roots).
    pub ca: Option<PathBuf>,
    /// Client certificate, for servers with `tls-auth-clients yes`.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key.
    pub key: Option<PathBuf>,
    /// Do not verify the server's certificate at all.
    pub insecure: bool,
}

impl TlsFiles {
    /// Whether any TLS option was given.
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some() || self.insecure
    }
}

/// Everything needed to reach one server: the URL and what is kept out
/// of it.
#[derive(Clone, Debug, Default)]
pub struct Endpoint {
    /// `redis://[user[:password]@]host:port[/db]` or `rediss://…`.
    pub url: String,
    /// Used when the URL carries no password (a password in the URL wins).
    pub password: Option<Password>,
    pub tls: TlsFiles,
    /// Prefix of the command-line flags that set these options, for hints
    /// in messages: `""` (`--password-file`), `"from-"`, `"to-"`.
    pub flag_prefix: &'static str,
}

impl Endpoint {
    /// A URL alone.
    pub fn new(url: &str) -> Endpoint {
        Endpoint {
            url: url.to_string(),
            ..Endpoint::default()
        }
    }

    /// Whether the server's certificate goes unverified (`--tls-insecure`
    /// or a `#insecure` URL).
    pub fn insecure(&self) -> bool {
        self.tls.insecure || (self.url.starts_with("rediss://") && self.url.ends_with("#insecure"))
    }
}

/// The connection under a [`RedisConn`]: one server, or a whole cluster
/// (commands routed to the master of their keys' slot; see
/// [`crate::net::cluster`]). Code that builds its own pipelines (rebuild)
/// takes it as any `ConnectionLike`.
#[derive(Clone)]
pub enum Link {
    Single(MultiplexedConnection),
    Cluster(Arc<ClusterLink>, ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Link::Single(conn) => conn.req_packed_command(cmd),
            Link::Cluster(link, routed) => match link.one_master_for(cmd) {
                Some(mut master) => Box::pin(async move { master.req_packed_command(cmd).await }),
                None => routed.req_packed_command(cmd),
            },
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Link::Cluster(link, _) => {
                let link = link.clone();
                Box::pin(async move { link.pipeline(pipeline, offset, count).await })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(conn) => conn.get_db(),
            Link::Cluster(_, routed) => routed.get_db(),
        }
    }
}

/// A multiplexed async connection with its credential-free address.
#[derive(Clone)]
pub struct RedisConn {
    conn: Link,
    address: String,
    /// The ACL user, `default` when the URL names none.
    user: String,
    /// How an authentication error later in the session is explained
    /// (where the password came from, and the flags that set it).
    auth: std::sync::Arc<(String, String)>,
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
    /// Connects to a URL alone (see [`RedisConn::open`]).
    pub async fn connect(url: &str) -> Result<RedisConn> {
        Self::open(&Endpoint::new(url)).await
    }

    /// Connects and checks the server answers (and accepts the credentials).
    /// A `redis+cluster://` (or `rediss+cluster://`) URL connects to a
    /// whole cluster; a plain URL that reaches a node of one is refused
    /// ([`RedisIoError::ClusterNode`]).
    pub async fn open(endpoint: &Endpoint) -> Result<RedisConn> {
        if cluster::is_cluster_url(&endpoint.url) {
            return Self::open_cluster(endpoint).await;
        }
        let mut this = Self::open_single(endpoint).await?;
        this.refuse_cluster_node(endpoint).await?;
        Ok(this)
    }

    /// Fails when `INFO cluster` says this server is a node of a cluster;
    /// a server that refuses INFO (an ACL without it) is taken as it is.
    async fn refuse_cluster_node(&mut self, endpoint: &Endpoint) -> Result<()> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg("cluster");
        let Ok(text) = cmd.query_async::<String>(&mut self.conn).await else {
            return Ok(());
        };
        if !parse_info(&text).cluster {
            return Ok(());
        }
        let plain = redact_url(&endpoint.url);
        let suggestion = match plain.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}+cluster://{rest}"),
            None => format!("redis+cluster://{plain}"),
        };
        Err(RedisIoError::ClusterNode {
            address: self.address.clone(),
            suggestion,
        })
    }

    /// Connects to a cluster from its seeds: learns the slot map, connects
    /// to every master, and checks the cluster answers.
    async fn open_cluster(endpoint: &Endpoint) -> Result<RedisConn> {
        let seeds = cluster::seed_urls(&endpoint.url).unwrap_or_default();
        let bad = |reason: &str| RedisIoError::BadUrl {
            url: redact_url(&endpoint.url),
            reason: reason.to_string(),
        };
        let first = seeds.first().ok_or_else(|| bad("it names no host"))?;
        let mut infos = Vec::with_capacity(seeds.len());
        for seed in &seeds {
            infos.push(
                seed.as_str()
                    .into_connection_info()
                    .map_err(|e| bad(&e.to_string()))?,
            );
        }
        let addresses: Vec<String> = infos.iter().map(redacted_address).collect();
        let address = format!("cluster {}", addresses.join(","));
        let user = infos[0]
            .redis_settings()
            .username()
            .unwrap_or("default")
            .to_string();
        let seed_endpoint = Endpoint {
            url: first.clone(),
            ..endpoint.clone()
        };
        let (template, origin) = with_password(infos[0].clone(), &seed_endpoint, &address, &user)?;
        let fail = Failure {
            address: &address,
            user: &user,
            origin: &origin,
            endpoint,
        };
        let db = template.redis_settings().db();
        let routed = cluster_client(&infos, &template, endpoint)?
            .get_async_connection()
            .await
            .map_err(|e| match refused_db(db, &e) {
                Some(detail) => RedisIoError::ClusterDb {
                    address: address.clone(),
                    db,
                    detail,
                },
                None => fail.connect_error(e),
            })?;
        let seed_host = match infos[0].addr() {
            ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host.clone(),
            _ => "127.0.0.1".to_string(),
        };
        let connector = master_connector(template.clone(), endpoint.clone());
        let link = ClusterLink::new(routed.clone(), connector, seed_host)
            .await
            .map_err(|e| fail.connect_error(e))?;
        let mut this = RedisConn {
            conn: Link::Cluster(Arc::new(link), routed),
            address: address.clone(),
            user: user.clone(),
            auth: Arc::new((origin.clone(), fail.auth_hint())),
            db,
        };
        let pong: String = this.query(redis::cmd("PING"), "PING").await?;
        if pong != "PONG" {
            return Err(this.protocol("PING", format!("{pong:?}")));
        }
        Ok(this)
    }

    /// Connects to one server.
    async fn open_single(endpoint: &Endpoint) -> Result<RedisConn> {
        let Prepared {
            client,
            address,
            user,
            origin,
        } = Prepared::new(endpoint)?;
        let config = connection_config();
        let fail = Failure {
            address: &address,
            user: &user,
            origin: &origin,
            endpoint,
        };
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|source| fail.connect_error(source))?;
        let mut this = RedisConn {
            conn: Link::Single(conn),
            address: address.clone(),
            user: user.clone(),
            auth: std::sync::Arc::new((origin.clone(), fail.auth_hint())),
            db: client.get_connection_info().redis_settings().db(),
        };
        let pong: String = match redis::cmd("PING").query_async(&mut this.conn).await {
            Ok(pong) => pong,
            Err(e) => {
                return Err(no_permission(&address, &user, "PING", &e)
                    .unwrap_or_else(|| fail.connect_error(e)))
            }
        };
        if pong != "PONG" {
            return Err(this.protocol("PING", format!("{pong:?}")));
        }
        Ok(this)
    }

    /// A dedicated connection in subscriber mode to the endpoint's server,
    /// subscribed to the channel `patterns` (`PSUBSCRIBE`), with the same
    /// URL, password and TLS handling as [`RedisConn::open`].
    pub async fn psubscribe(
        endpoint: &Endpoint,
        patterns: &[Vec<u8>],
    ) -> Result<redis::aio::PubSub> {
        let Prepared {
            client,
            address,
            user,
            origin,
        } = Prepared::new(endpoint)?;
        let fail = Failure {
            address: &address,
            user: &user,
            origin: &origin,
            endpoint,
        };
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .map_err(|source| fail.connect_error(source))?;
        for pattern in patterns {
            if let Err(e) = pubsub.psubscribe(pattern.as_slice()).await {
                return Err(no_permission(&address, &user, "PSUBSCRIBE", &e)
                    .unwrap_or_else(|| fail.connect_error(e)));
            }
        }
        Ok(pubsub)
    }

    /// The underlying connection, for code that builds its own pipelines
    /// (rebuild). It shares this connection's socket and timeouts.
    pub fn multiplexed(&self) -> Link {
        self.conn.clone()
    }

    /// The slot map and the migrations in progress of a cluster, as it
    /// says them now; `None` for one server.
    pub async fn cluster_topology(&self) -> Result<Option<Topology>> {
        match &self.conn {
            Link::Cluster(link, _) => link
                .topology()
                .await
                .map(Some)
                .map_err(|e| self.command_error("CLUSTER SLOTS/NODES", e)),
            Link::Single(_) => Ok(None),
        }
    }

    /// The slot map of a cluster as last learnt; `None` for one server.
    pub fn slot_map(&self) -> Option<SlotMap> {
        match &self.conn {
            Link::Cluster(link, _) => Some(link.map()),
            Link::Single(_) => None,
        }
    }

    /// Whether this is a connection to a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Link::Cluster(..))
    }

    /// The masters of a cluster, as last learnt (`host:port`); empty for
    /// one server.
    pub fn masters(&self) -> Vec<String> {
        match &self.conn {
            Link::Cluster(link, _) => link.master_addresses(),
            Link::Single(_) => Vec::new(),
        }
    }

    /// A connection to each master of a cluster, as last learnt, with the
    /// credentials of this one.
    fn master_conns(&self, link: &ClusterLink) -> Vec<RedisConn> {
        link.masters()
            .into_iter()
            .map(|(address, conn)| RedisConn {
                conn: Link::Single(conn),
                address,
                user: self.user.clone(),
                auth: self.auth.clone(),
                db: self.db,
            })
            .collect()
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

    /// The ACL user this connection authenticated as (`default` when the
    /// URL names none).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Fails with [`RedisIoError::NoPermission`] when the user may not run
    /// `probe`'s command; any other answer, an error included, passes. The
    /// probe must do nothing when it is allowed to run (say, a RESTORE of
    /// a payload that is not one), so a run can check what it will need
    /// before it writes anything.
    pub async fn require_command(&mut self, what: &str, probe: &redis::Cmd) -> Result<()> {
        match probe.query_async::<Value>(&mut self.conn).await {
            Err(e) => match self.command_error(what, e) {
                denied @ RedisIoError::NoPermission { .. } => Err(denied),
                lost @ (RedisIoError::Connect { .. } | RedisIoError::Auth { .. }) => Err(lost),
                _ => Ok(()),
            },
            Ok(_) => Ok(()),
        }
    }

    pub(crate) fn command_error(&self, what: &str, source: RedisError) -> RedisIoError {
        if let Some(denied) = no_permission(&self.address, &self.user, what, &source) {
            return denied;
        }
        let lost = source.is_io_error()
            || source.is_connection_dropped()
            || source.is_connection_refusal();
        if is_auth_error(&source) {
            return RedisIoError::Auth {
                address: self.address.clone(),
                user: self.user.clone(),
                origin: self.auth.0.clone(),
                hint: self.auth.1.clone(),
                cause: Box::new(source),
            };
        }
        if lost {
            return RedisIoError::Connect {
                address: self.address.clone(),
                cause: source,
            };
        }
        RedisIoError::Command {
            address: self.address.clone(),
            what: what.to_string(),
            cause: source,
        }
    }

    /// The error of a connection to this server that dropped (`what`: the
    /// one that did, when not this one).
    pub fn dropped(&self, what: &str) -> RedisIoError {
        let cause = std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            format!("{what} was closed"),
        );
        RedisIoError::Connect {
            address: self.address.clone(),
            cause: cause.into(),
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
            mode: if info.cluster || self.is_cluster() {
                "cluster"
            } else {
                "standalone"
            }
            .into(),
            db: u32::try_from(self.db).unwrap_or(0),
            masters: self.masters(),
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
    ///
    /// On a cluster the SCAN walks every master side by side (a node's
    /// SCAN sees the keys of its own slots), and ends with a check that the
    /// slot map is the one it started with ([`Scan::next_page`]).
    pub fn scan(&self, pattern: impl Into<Vec<u8>>, count: usize) -> Scan {
        let cluster = match &self.conn {
            Link::Cluster(link, _) => Some(ClusterScan {
                link: link.clone(),
                parent: self.clone(),
                started: None,
                scanning: Vec::new(),
                ready: VecDeque::new(),
                slots: VecDeque::new(),
                rounds: 0,
            }),
            Link::Single(_) => None,
        };
        Scan {
            conn: self.clone(),
            pattern: pattern.into(),
            count,
            cursor: Some(0),
            cluster,
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
            Value::ServerError(e) => return Err(self.command_error("DUMP", e.clone().into())),
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

    /// Every key of the db counted by group: kb_ids with their per-category
    /// key counts, KATO's global keys, foreign keys, kbdump's temporary
    /// keys (one SCAN of every key name; nothing is read or held).
    /// `trusted` are kb_ids taken as such without a marker (named
    /// literally by the user).
    pub async fn census(&mut self, trusted: &[Vec<u8>]) -> Result<KeyspaceCensus> {
        let mut census = Census::knowing(trusted);
        let mut scan = self.scan(b"*".to_vec(), CENSUS_SCAN_COUNT);
        while let Some(keys) = scan.next_page().await? {
            keys.into_iter().for_each(|key| census.add(key));
        }
        Ok(census.finish())
    }

    /// The keys of `keys` that exist (one pipelined EXISTS each).
    pub async fn existing(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("EXISTS").arg(key);
        }
        let replies = self.pipeline(&pipe, "EXISTS").await?;
        Ok(keys
            .iter()
            .zip(replies)
            .filter(|(_, r)| *r == Value::Int(1))
            .map(|(k, _)| k.clone())
            .collect())
    }
}

/// SCAN COUNT of a census: only key names come back, so larger pages
/// mean fewer round trips at no cost in memory worth counting.
const CENSUS_SCAN_COUNT: usize = 10_000;

/// A SCAN in progress: pages of keys until the cursor returns to 0. A key
/// may come twice (SCAN repeats keys while the server rehashes).
pub struct Scan {
    conn: RedisConn,
    pattern: Vec<u8>,
    count: usize,
    /// `None` once the server answered cursor 0.
    cursor: Option<u64>,
    /// The masters of a cluster still to scan.
    cluster: Option<ClusterScan>,
}

/// A SCAN over every master of a cluster at once, then, while the
/// topology moves, rounds that re-read the slots it moved (see
/// [`Scan::next_page`]).
struct ClusterScan {
    link: Arc<ClusterLink>,
    /// The cluster connection, for messages.
    parent: RedisConn,
    /// The topology when the SCAN (or the current round) began; learnt at
    /// the first page.
    started: Option<Topology>,
    /// The masters still being scanned, each with its cursor.
    scanning: Vec<(RedisConn, u64)>,
    /// Pages read and not yet handed out.
    ready: VecDeque<Vec<Vec<u8>>>,
    /// Slots to re-read this round, each from one master, in order.
    slots: VecDeque<(String, u16)>,
    rounds: usize,
}

/// Masters scanned at once: each SCAN is one round trip to its master,
/// so a page of every master costs about as long as one.
pub const MASTERS_SCANNED_AT_ONCE: usize = 16;

/// How many rounds of re-reading moved slots a cluster's SCAN makes
/// before it gives up on a topology that keeps changing: with
/// [`TOPOLOGY_ROUND_PAUSE`] between two, a resharding of up to about five
/// minutes is waited out.
pub const MAX_TOPOLOGY_ROUNDS: usize = 3000;
/// The pause before a round that re-reads moved slots, so that rounds
/// follow a resharding at its pace instead of spinning.
pub const TOPOLOGY_ROUND_PAUSE: Duration = Duration::from_millis(100);

impl Scan {
    /// The next non-empty page of keys, `None` once the SCAN is complete.
    /// Empty pages (which SCAN may return before its end) are skipped.
    ///
    /// On a cluster: the masters' SCANs side by side, a page of up to
    /// [`MASTERS_SCANNED_AT_ONCE`] masters at a time, so that their pages
    /// alternate and the reads that follow them keep every master busy;
    /// then, if the topology changed meanwhile (a slot changed master, or
    /// was being migrated), the keys of every such slot are read again from
    /// the masters that held it, its source before its target (`CLUSTER
    /// GETKEYSINSLOT`), and so on until a round ends on the topology it
    /// began with, at most [`MAX_TOPOLOGY_ROUNDS`] rounds (then
    /// [`RedisIoError::TopologyChanged`]). Keys may come twice; the
    /// scanners drop repeats. An error (a busy master) leaves the SCAN
    /// where it was: calling again resumes it.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Vec<u8>>>> {
        self.start_cluster().await?;
        let Some(cluster) = &mut self.cluster else {
            return self.next_node_page().await;
        };
        loop {
            if let Some(page) = cluster.ready.pop_front() {
                return Ok(Some(page));
            }
            if !cluster.scanning.is_empty() {
                cluster.scan_masters(&self.pattern, self.count).await?;
                continue;
            }
            if let Some((address, slot)) = cluster.slots.front().cloned() {
                let page = cluster.keys_in_slot(&address, slot, &self.pattern).await?;
                cluster.slots.pop_front();
                if !page.is_empty() {
                    return Ok(Some(page));
                }
                continue;
            }
            if cluster.end_round().await? {
                self.cluster = None;
                return Ok(None);
            }
        }
    }

    /// At the first page of a cluster's SCAN: learns the topology and
    /// the masters to scan.
    async fn start_cluster(&mut self) -> Result<()> {
        let Some(cluster) = self.cluster.as_mut().filter(|c| c.started.is_none()) else {
            return Ok(());
        };
        let parent = cluster.parent.clone();
        cluster.started = Some(cluster.topology().await?);
        cluster.scanning = parent
            .master_conns(&cluster.link)
            .into_iter()
            .map(|conn| (conn, 0))
            .collect();
        self.cursor = None;
        Ok(())
    }

    /// The next non-empty page of the node being scanned.
    async fn next_node_page(&mut self) -> Result<Option<Vec<Vec<u8>>>> {
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

    /// Whether the server has answered cursor 0 (on a cluster: every
    /// master has, and the slot map was checked): no page is left.
    pub fn is_done(&self) -> bool {
        self.cursor.is_none() && self.cluster.is_none()
    }
}

/// Where, and as whom, to open a connection of our own beside the client
/// library's (the replication stream, which that library cannot carry).
#[derive(Clone)]
pub struct RawTarget {
    pub host: String,
    pub port: u16,
    /// The ACL user named in the URL (`AUTH user password`), if any.
    pub user: Option<String>,
    pub password: Option<String>,
    /// `host:port`, for messages.
    pub address: String,
    /// A server version to announce to the server (`REPLCONF version`):
    /// Valkey chooses the RDB version of a snapshot by it.
    pub announce_version: Option<String>,
    /// TLS (a `rediss://` URL), with the URL's TLS options.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for RawTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawTarget({}, user {:?})", self.address, self.user)
    }
}

/// The TCP (or TLS) target of `endpoint`, or why there is none
/// (`Ok(Err)`: a Unix socket, which only the client library speaks).
pub fn raw_target(endpoint: &Endpoint) -> Result<std::result::Result<RawTarget, String>> {
    if cluster::is_cluster_url(&endpoint.url) {
        return Ok(Err(
            "names a cluster (each master is a target of its own: see raw_targets_at)".into(),
        ));
    }
    let info = endpoint
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| bad_url(endpoint, e))?;
    let address = redacted_address(&info);
    let user = info.redis_settings().username().map(str::to_string);
    let shown = user.clone().unwrap_or_else(|| "default".into());
    let (info, _) = with_password(info, endpoint, &address, &shown)?;
    let (host, port, tls) = match info.addr() {
        ConnectionAddr::Tcp(host, port) if !endpoint.tls.is_set() => (host.clone(), *port, None),
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            ..
        } => {
            let config = snapshot_tls(endpoint, *insecure)?;
            (host.clone(), *port, Some(config))
        }
        ConnectionAddr::Unix(_) => return Ok(Err("names a Unix socket".into())),
        // TLS options on a plain URL: the client connection refuses them
        // first, naming them.
        _ => return Ok(Err("gives TLS options to a plain redis:// URL".into())),
    };
    Ok(Ok(RawTarget {
        host,
        port,
        user,
        password: info.redis_settings().password().map(str::to_string),
        address,
        announce_version: None,
        tls,
    }))
}

/// The TLS configuration of a snapshot connection to `endpoint`, from the
/// same files as its client connection.
fn snapshot_tls(endpoint: &Endpoint, insecure: bool) -> Result<Arc<rustls::ClientConfig>> {
    let certificates = tls_certificates(endpoint)?;
    let pems = super::tls::TlsPems {
        ca: certificates.as_ref().and_then(|c| c.root_cert.clone()),
        client: certificates
            .and_then(|c| c.client_tls)
            .map(|c| (c.client_cert, c.client_key)),
        insecure: insecure || endpoint.tls.insecure,
    };
    super::tls::client_config(&pems).map_err(|reason| RedisIoError::TlsFile {
        path: [&endpoint.tls.ca, &endpoint.tls.cert, &endpoint.tls.key]
            .iter()
            .filter_map(|p| p.as_ref().map(|p| p.display().to_string()))
            .collect::<Vec<_>>()
            .join(", "),
        what: "TLS files".into(),
        reason,
    })
}

/// The TCP (or TLS) target of each master of the cluster `endpoint` names,
/// `masters` as `host:port`, with the cluster URL's credentials (its first
/// seed's), or why there is none (see [`raw_target`]).
pub fn raw_targets_at(
    endpoint: &Endpoint,
    masters: &[String],
) -> Result<std::result::Result<Vec<RawTarget>, String>> {
    let Some(seed) = cluster::seed_urls(&endpoint.url).and_then(|s| s.into_iter().next()) else {
        return Ok(Err("names no seed".into()));
    };
    let seed = Endpoint {
        url: seed,
        ..endpoint.clone()
    };
    let template = match raw_target(&seed)? {
        Ok(target) => target,
        Err(reason) => return Ok(Err(reason)),
    };
    let mut targets = Vec::with_capacity(masters.len());
    for master in masters {
        let Some((host, port)) = master
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
        else {
            return Ok(Err(format!("has a master without a port ({master})")));
        };
        targets.push(RawTarget {
            host,
            port,
            address: master.clone(),
            ..template.clone()
        });
    }
    Ok(Ok(targets))
}

impl ClusterScan {
    async fn topology(&self) -> Result<Topology> {
        self.link
            .topology()
            .await
            .map_err(|e| self.parent.command_error("CLUSTER SLOTS/NODES", e))
    }

    /// One SCAN page of each of the first [`MASTERS_SCANNED_AT_ONCE`]
    /// masters still being scanned, at once: non-empty pages to `ready`,
    /// finished masters dropped, the others moved to the back (so every
    /// master gets its turn). A master that fails keeps its cursor; the
    /// first failure is returned after the pages of the others are kept.
    async fn scan_masters(&mut self, pattern: &[u8], count: usize) -> Result<()> {
        let n = self.scanning.len().min(MASTERS_SCANNED_AT_ONCE);
        let batch: Vec<(RedisConn, u64)> = self.scanning.drain(..n).collect();
        let pages = batch.into_iter().map(|(mut conn, at)| async move {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(at)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(count);
            let reply: Result<(u64, Vec<Vec<u8>>)> = conn.query(cmd, "SCAN").await;
            (conn, at, reply)
        });
        let mut failure = None;
        for (conn, at, reply) in futures::future::join_all(pages).await {
            match reply {
                Ok((next, keys)) => {
                    if !keys.is_empty() {
                        self.ready.push_back(keys);
                    }
                    if next != 0 {
                        self.scanning.push((conn, next));
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e);
                    self.scanning.push((conn, at));
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Ends a round: `true` when the topology is as the round found it and
    /// settled (the read is complete); else queues the slots to read again.
    async fn end_round(&mut self) -> Result<bool> {
        let now = self.topology().await?;
        let before = self.started.take().unwrap_or_default();
        // A round that re-read the slots (rounds > 0) read every slot that
        // was migrating as it began, source first: unchanged since, the
        // read is complete even while a migration goes on.
        if now == before && (before.migrating.is_empty() || self.rounds > 0) {
            return Ok(true);
        }
        self.rounds += 1;
        if self.rounds > 1 {
            tokio::time::sleep(TOPOLOGY_ROUND_PAUSE).await;
        }
        if self.rounds > MAX_TOPOLOGY_ROUNDS {
            return Err(RedisIoError::TopologyChanged {
                address: self.parent.address.clone(),
                detail: format!(
                    "{} after {MAX_TOPOLOGY_ROUNDS} rounds of re-reading the slots that moved",
                    map_change(&before.map, &now.map)
                ),
            });
        }
        self.slots = now
            .unsettled_slots(&before)
            .into_iter()
            .flat_map(|(slot, nodes)| nodes.into_iter().map(move |n| (n, slot)))
            .collect();
        self.started = Some(now);
        Ok(false)
    }

    /// The keys one master holds in `slot` that match `pattern`
    /// (`CLUSTER COUNTKEYSINSLOT`, then `GETKEYSINSLOT` of that many).
    async fn keys_in_slot(&self, address: &str, slot: u16, pattern: &[u8]) -> Result<Vec<Vec<u8>>> {
        let Some(conn) = self.link.master(address) else {
            return Ok(Vec::new());
        };
        let mut node = RedisConn {
            conn: Link::Single(conn),
            address: address.to_string(),
            ..self.parent.clone()
        };
        let mut count = redis::cmd("CLUSTER");
        count.arg("COUNTKEYSINSLOT").arg(slot);
        let n: u64 = node.query(count, "CLUSTER COUNTKEYSINSLOT").await?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut get = redis::cmd("CLUSTER");
        get.arg("GETKEYSINSLOT").arg(slot).arg(n);
        let keys: Vec<Vec<u8>> = node.query(get, "CLUSTER GETKEYSINSLOT").await?;
        Ok(keys
            .into_iter()
            .filter(|k| crate::pattern::glob_match(pattern, k))
            .collect())
    }
}

/// What changed between two slot maps, for a message.
fn map_change(before: &SlotMap, after: &SlotMap) -> String {
    let moved = (0..crate::plan::slot::SLOTS)
        .filter(|&s| before.owner(s) != after.owner(s))
        .count();
    format!(
        "{moved} slots changed master; masters before: {}, after: {}",
        before.masters().join(" "),
        after.masters().join(" ")
    )
}

/// Why the nodes refused to select db `db` (other than 0), if that is
/// what `e` says: `SELECT is not allowed in cluster mode` (Redis), `DB
/// index is out of range` (Valkey beyond its cluster-databases).
fn refused_db(db: i64, e: &RedisError) -> Option<String> {
    let text = e.to_string();
    let refused = ["SELECT is not allowed", "DB index is out of range"];
    let said = refused.iter().find(|r| text.contains(*r))?;
    (db != 0).then(|| (*said).to_string())
}

/// A client for a cluster: every seed, the credentials and TLS of the
/// first, and the retries that wait out a failover
/// ([`cluster::FAILOVER_RETRIES`]).
fn cluster_client(
    infos: &[ConnectionInfo],
    template: &ConnectionInfo,
    endpoint: &Endpoint,
) -> Result<redis::cluster::ClusterClient> {
    let settings = template.redis_settings();
    let mut builder = redis::cluster::ClusterClientBuilder::new(infos.to_vec())
        .connection_timeout(cluster::CONNECT_TIMEOUT)
        .response_timeout(Duration::from_secs(300))
        .retries(cluster::FAILOVER_RETRIES)
        .min_retry_wait(100)
        .max_retry_wait(cluster::FAILOVER_MAX_WAIT_MS)
        .database_id(settings.db());
    if let Some(user) = settings.username() {
        builder = builder.username(user);
    }
    if let Some(password) = settings.password() {
        builder = builder.password(password);
    }
    if let ConnectionAddr::TcpTls { insecure, .. } = template.addr() {
        let insecure = *insecure || endpoint.insecure();
        builder = builder.tls(match insecure {
            true => redis::TlsMode::Insecure,
            false => redis::TlsMode::Secure,
        });
        if let Some(certificates) = tls_certificates(endpoint)? {
            builder = builder.certs(certificates);
        }
    } else if endpoint.tls.is_set() {
        tls_client(template.clone(), endpoint)?;
    }
    builder.build().map_err(|e| bad_url(endpoint, e))
}

/// Connects to a master (`host:port`) with the template's credentials,
/// db and TLS.
fn master_connector(template: ConnectionInfo, endpoint: Endpoint) -> cluster::Connector {
    Arc::new(move |address: String| {
        let (template, endpoint) = (template.clone(), endpoint.clone());
        Box::pin(async move {
            let (host, port) = address
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
                .ok_or_else(|| {
                    RedisError::from((ErrorKind::Parse, "bad master address", address.clone()))
                })?;
            let addr = match template.addr() {
                ConnectionAddr::TcpTls { insecure, .. } => ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure: *insecure,
                    tls_params: None,
                },
                _ => ConnectionAddr::Tcp(host, port),
            };
            let client = tls_client(template.set_addr(addr), &endpoint).map_err(|e| {
                RedisError::from((ErrorKind::InvalidClientConfig, "TLS", e.to_string()))
            })?;
            client
                .get_multiplexed_async_connection_with_config(&connection_config())
                .await
        })
    })
}

/// Timeouts of every connection: connecting, and a reply (long enough for
/// large write pipelines).
fn connection_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(10)))
        .set_response_timeout(Some(Duration::from_secs(300)))
}

/// A client for one server with what messages about it need: its address
/// and user (never the password), and where the password came from.
struct Prepared {
    client: Client,
    address: String,
    user: String,
    origin: String,
}

impl Prepared {
    /// Parses the endpoint's URL and applies its password and TLS files.
    fn new(endpoint: &Endpoint) -> Result<Prepared> {
        let url = endpoint.url.as_str();
        let info = url
            .into_connection_info()
            .map_err(|e| RedisIoError::BadUrl {
                url: redact_url(url),
                reason: e.to_string(),
            })?;
        let address = redacted_address(&info);
        let user = info
            .redis_settings()
            .username()
            .unwrap_or("default")
            .to_string();
        let (info, origin) = with_password(info, endpoint, &address, &user)?;
        let client = tls_client(info, endpoint)?;
        Ok(Prepared {
            client,
            address,
            user,
            origin,
        })
    }
}

/// The password to send: the URL's, else the endpoint's; and where it came
/// from, for messages.
fn with_password(
    info: ConnectionInfo,
    endpoint: &Endpoint,
    address: &str,
    user: &str,
) -> Result<(ConnectionInfo, String)> {
    let settings = info.redis_settings().clone();
    if settings.password().is_some() {
        return Ok((info, "the password in the URL".into()));
    }
    match &endpoint.password {
        Some(password) => {
            let origin = format!("the password from {}", password.origin);
            let settings = settings.set_password(&password.secret);
            Ok((info.set_redis_settings(settings), origin))
        }
        None if settings.username().is_some() => Err(RedisIoError::MissingPassword {
            address: address.to_string(),
            user: user.to_string(),
            flag_prefix: endpoint.flag_prefix,
        }),
        None => Ok((info, "no password".into())),
    }
}

/// The client for `info`, with the endpoint's TLS files: a CA to trust, a
/// client certificate, or no verification at all.
fn tls_client(info: ConnectionInfo, endpoint: &Endpoint) -> Result<Client> {
    let tls = &endpoint.tls;
    let (host, port, insecure) = match info.addr() {
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            ..
        } => (host.clone(), *port, *insecure),
        _ if tls.is_set() => {
            let flag = |name: &str| format!("--{}{name}", endpoint.flag_prefix);
            let given: Vec<String> = [
                (tls.ca.is_some(), "tls-ca"),
                (tls.cert.is_some(), "tls-cert"),
                (tls.key.is_some(), "tls-key"),
                (tls.insecure, "tls-insecure"),
            ]
            .iter()
            .filter(|(set, _)| *set)
            .map(|(_, name)| flag(name))
            .collect();
            return Err(RedisIoError::TlsNeedsRediss {
                url: redact_url(&endpoint.url),
                flags: given.join(", "),
            });
        }
        _ => return Client::open(info).map_err(|e| bad_url(endpoint, e)),
    };
    let info = info.set_addr(ConnectionAddr::TcpTls {
        host,
        port,
        insecure: insecure || tls.insecure,
        tls_params: None,
    });
    let Some(certificates) = tls_certificates(endpoint)? else {
        return Client::open(info).map_err(|e| bad_url(endpoint, e));
    };
    Client::build_with_tls(info, certificates).map_err(|e| RedisIoError::TlsFile {
        path: [&tls.ca, &tls.cert, &tls.key]
            .iter()
            .filter_map(|p| p.as_ref().map(|p| p.display().to_string()))
            .collect::<Vec<_>>()
            .join(", "),
        what: "TLS files".into(),
        reason: cap(&e.to_string()),
    })
}

/// The CA and client certificate of the endpoint's TLS files, `None` when
/// neither is given.
fn tls_certificates(endpoint: &Endpoint) -> Result<Option<TlsCertificates>> {
    let tls = &endpoint.tls;
    if tls.ca.is_none() && tls.cert.is_none() {
        return Ok(None);
    }
    let flag = |name: &str| format!("--{}{name}", endpoint.flag_prefix);
    let root_cert = match &tls.ca {
        Some(path) => Some(read_pem(
            path,
            &format!("CA certificate ({})", flag("tls-ca")),
            CERT_PEM,
        )?),
        None => None,
    };
    let client_tls = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read_pem(
                cert,
                &format!("client certificate ({})", flag("tls-cert")),
                CERT_PEM,
            )?,
            client_key: read_pem(key, &format!("client key ({})", flag("tls-key")), KEY_PEM)?,
        }),
        _ => None,
    };
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

fn bad_url(endpoint: &Endpoint, e: RedisError) -> RedisIoError {
    RedisIoError::BadUrl {
        url: redact_url(&endpoint.url),
        reason: e.to_string(),
    }
}

/// What a PEM file must contain.
const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----";
const KEY_PEM: &str = "PRIVATE KEY-----";

/// A PEM file that holds at least one `marker` block.
fn read_pem(path: &Path, what: &str, marker: &str) -> Result<Vec<u8>> {
    let bad = |reason: String| RedisIoError::TlsFile {
        path: path.display().to_string(),
        what: what.to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    if !String::from_utf8_lossy(&bytes).contains(marker) {
        return Err(bad(format!("it holds no PEM block with {marker:?}")));
    }
    Ok(bytes)
}

/// What a failed connection attempt is reported with.
struct Failure<'a> {
    address: &'a str,
    user: &'a str,
    origin: &'a str,
    endpoint: &'a Endpoint,
}

impl Failure<'_> {
    fn connect_error(&self, source: RedisError) -> RedisIoError {
        let address = self.address.to_string();
        if let Some(denied) = no_permission(self.address, self.user, "connecting", &source) {
            return denied;
        }
        if is_auth_error(&source) {
            return RedisIoError::Auth {
                address,
                user: self.user.to_string(),
                origin: self.origin.to_string(),
                hint: self.auth_hint(),
                cause: Box::new(source),
            };
        }
        if let Some((reason, hint)) = self.tls_failure(&source) {
            return RedisIoError::Tls {
                address,
                reason,
                hint,
            };
        }
        RedisIoError::Connect {
            address,
            cause: source,
        }
    }

    fn auth_hint(&self) -> String {
        let p = self.endpoint.flag_prefix;
        format!(
            "check the user and the password: it is taken from the URL, else \
             --{p}password-file FILE, else the REDISCLI_AUTH environment variable"
        )
    }

    /// A handshake failure, explained: which certificate was not accepted
    /// and the flag that fixes it.
    fn tls_failure(&self, source: &RedisError) -> Option<(String, String)> {
        let text = error_chain(source);
        let p = self.endpoint.flag_prefix;
        let lower = text.to_lowercase();
        if lower.contains("certificaterequired")
            || lower.contains("certificate required")
            || lower.contains("handshakefailure") && self.endpoint.tls.cert.is_none()
        {
            return Some((
                format!("the server requires a client certificate ({})", cap(&text)),
                format!("pass one with --{p}tls-cert FILE --{p}tls-key FILE"),
            ));
        }
        if lower.contains("certificate") || lower.contains("unknownissuer") {
            let hint = if self.endpoint.tls.ca.is_some() {
                format!(
                    "the server's certificate is not signed by the CA in --{p}tls-ca; \
                     pass the CA that signed it"
                )
            } else {
                format!(
                    "the server's certificate is not trusted by the system's roots; pass \
                     the CA that signed it with --{p}tls-ca FILE (or, for a test server \
                     only, --{p}tls-insecure)"
                )
            };
            return Some((format!("certificate not accepted ({})", cap(&text)), hint));
        }
        None
    }
}

/// The error and its sources, `: `-separated (the TLS reason is often in
/// a source).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// An ACL refusal (`NOPERM`) as the error that names the command (or the
/// keys) and how to grant it; `None` for any other error.
fn no_permission(address: &str, user: &str, what: &str, e: &RedisError) -> Option<RedisIoError> {
    let errors = e.clone().into_server_errors()?;
    let (_, refusal) = errors.iter().find(|(_, err)| err.code() == "NOPERM")?;
    let detail = refusal.details().unwrap_or("");
    Some(match refused_command(detail) {
        Some(grant) => RedisIoError::NoPermission {
            address: address.to_string(),
            user: user.to_string(),
            command: grant.replace('|', " ").to_uppercase(),
            grant,
        },
        None => RedisIoError::NoKeyPermission {
            address: address.to_string(),
            user: user.to_string(),
            what: what.to_string(),
            detail: cap(detail),
        },
    })
}

/// The command a NOPERM text names, as an ACL rule takes it: `dump` from
/// "this user has no permissions to run the 'dump' command" (Redis 6.2,
/// 7.0) or "User u has no permissions to run the 'config|get' command"
/// (7.2+, Valkey); `None` when the refusal is about keys or channels.
fn refused_command(detail: &str) -> Option<String> {
    let rest = &detail[detail.find("to run the '")? + "to run the '".len()..];
    let name = &rest[..rest.find('\'')?];
    (!name.is_empty()).then(|| name.to_lowercase())
}

fn is_auth_error(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
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
    fn noperm_texts_name_the_command_to_grant() {
        assert_eq!(
            refused_command("this user has no permissions to run the 'dump' command").as_deref(),
            Some("dump")
        );
        assert_eq!(
            refused_command("User u has no permissions to run the 'config|get' command").as_deref(),
            Some("config|get")
        );
        assert_eq!(
            refused_command(
                "this user has no permissions to access one of the keys used as arguments"
            ),
            None
        );
    }

    #[test]
    fn pipeline_failures_are_one_capped_line() {
        let refusal = || {
            let e: RedisError = redis::make_extension_error(
                "NOPERM".into(),
                Some("this user has no permissions to run the 'dump' command".into()),
            );
            e
        };
        let denied = no_permission("h:1", "u", "DUMP/PTTL", &refusal()).unwrap();
        assert_eq!(
            denied.to_string(),
            "user u lacks permission for DUMP on h:1 (ACL NOPERM): grant it with ACL SETUSER u +dump"
        );
        let long = "x".repeat(5_000);
        let capped = cap(&long);
        assert_eq!(capped.chars().count(), MAX_SERVER_TEXT + 1);
        assert!(capped.ends_with('…'));
        assert_eq!(cap("short"), "short");
        assert_eq!(cap(&"é".repeat(400)).chars().count(), MAX_SERVER_TEXT + 1);
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
