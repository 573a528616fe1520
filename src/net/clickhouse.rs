/*!
ClickHouse access for `rebuild`, `mirror` and `check`.

Everything goes through the `clickhouse` crate over HTTP with row
validation **off**: validation needs the `RowBinaryWithNamesAndTypes`
format, which the Debian 18.16 server lacks, so rows travel as plain
`RowBinary` and the structs below must match the selected columns exactly.
SQL is kept plain (no server-side query parameters, which 18.16 lacks
too); values are bound client-side with `?` and escaped by the crate, and
the database name is bound as an escaped identifier.

A URL names the server, the credentials and the database:
`http://user:password@host:8123/?database=kato` (database `kato` when
absent); `https://` connects over TLS, verifying the server against the
system's roots (`SSL_CERT_FILE` names a private CA's bundle instead).
[`ChTarget`]'s `Display` never shows the credentials.
*/

use crate::pattern::Glob;
use clickhouse::{sql::Identifier, Client, Row};
use serde::Deserialize;
use std::fmt;

/// How long [`Ch::ping`] waits for the server.
pub const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Default database of KATO's ClickHouse tables.
pub const DEFAULT_DATABASE: &str = "kato";

/// Errors talking to ClickHouse; each names the server and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChError {
    /// The URL could not be used.
    #[error("invalid ClickHouse URL: {reason}; expected http[s]://[user:password@]host:port/?database=kato")]
    BadUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached.
    #[error("cannot reach ClickHouse at {server}: {detail}; check --clickhouse / CLICKHOUSE_URL and that the server is running")]
    Unreachable {
        /// Redacted server address.
        server: String,
        /// Transport error.
        detail: String,
    },
    /// The TLS handshake of an `https://` URL failed.
    #[error("TLS with ClickHouse at {server} failed: {detail}; the server's certificate must be signed by one of the system's roots, or by a CA in the bundle that the SSL_CERT_FILE environment variable names")]
    Tls {
        /// Redacted server address.
        server: String,
        /// Handshake error.
        detail: String,
    },
    /// The server refused the user or password.
    #[error("ClickHouse at {server} refused the credentials: {detail}; check the user and the password: it is taken from the URL (--clickhouse / CLICKHOUSE_URL), else --clickhouse-password-file FILE, else the CLICKHOUSE_PASSWORD environment variable")]
    Auth {
        /// Redacted server address.
        server: String,
        /// Server message.
        detail: String,
    },
    /// A table or database this command needs does not exist.
    #[error("ClickHouse at {server} has no table {table}; {hint}")]
    MissingTable {
        /// Redacted server address.
        server: String,
        /// `database.table`.
        table: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// The database of the URL does not exist.
    #[error("ClickHouse at {server} has no database {database:?} (it has: {existing}); {hint}")]
    MissingDatabase {
        /// Redacted server address.
        server: String,
        /// The database of the URL.
        database: String,
        /// The databases there are, comma-separated.
        existing: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// Any other failure of a query.
    #[error("ClickHouse at {server} failed while {doing}: {detail}")]
    Query {
        /// Redacted server address.
        server: String,
        /// What was being done.
        doing: String,
        /// Error detail.
        detail: String,
    },
}

/// Result alias for this module.
pub type Result<T, E = ChError> = std::result::Result<T, E>;

/// A parsed ClickHouse URL.
#[derive(Clone)]
pub struct ChTarget {
    base: String,
    user: Option<String>,
    password: Option<String>,
    database: String,
}

impl ChTarget {
    /// Parses `http[s]://[user[:password]@]host[:port][/][?database=NAME]`
    /// (port 8123 for http, 8443 for https, ClickHouse's defaults).
    pub fn parse(raw: &str) -> Result<Self> {
        let bad = |reason: String| ChError::BadUrl { reason };
        let url = url::Url::parse(raw).map_err(|e| bad(e.to_string()))?;
        let default_port = match url.scheme() {
            "http" => 8123,
            "https" => 8443,
            other => {
                return Err(bad(format!(
                    "scheme {other:?} is not supported (use http, or https for TLS)"
                )))
            }
        };
        let host = url.host_str().ok_or_else(|| bad("no host".into()))?;
        let port = url.port().unwrap_or(default_port);
        let user = decode(url.username());
        let password = url.password().and_then(decode);
        let database = url
            .query_pairs()
            .find(|(k, _)| k == "database")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        let base = format!("{}://{host}:{port}", url.scheme());
        Ok(ChTarget {
            base,
            user,
            password,
            database,
        })
    }

    /// Whether the URL carries a password.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// The same server and user with this password (one kept out of the
    /// URL: a file, the environment).
    pub fn with_password(mut self, password: String) -> Self {
        self.password = Some(password);
        self
    }

    /// The database holding KATO's tables.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The same server with another database.
    pub fn with_database(mut self, database: &str) -> Self {
        self.database = database.to_string();
        self
    }

    /// The server address without credentials.
    pub fn server(&self) -> &str {
        &self.base
    }
}

/// Percent-decodes a user or password (`+` and `&` are literal there,
/// unlike in a query string).
fn decode(s: &str) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    Some(
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

impl fmt::Display for ChTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (database {})", self.base, self.database)
    }
}

impl fmt::Debug for ChTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One row of `patterns_data` as a rebuild reads it (borrowed from the
/// receive buffer: no allocation per symbol).
#[derive(Debug, Row, Deserialize)]
pub struct PatternRow<'a> {
    /// Pattern name (SHA1 hex).
    #[serde(with = "serde_bytes")]
    pub name: &'a [u8],
    /// Events, each a list of symbols.
    #[serde(borrow)]
    pub pattern_data: Vec<Vec<&'a serde_bytes::Bytes>>,
}

/// Streaming cursor over [`PatternRow`]s.
pub type PatternCursor = clickhouse::query::RowCursor<PatternRow<'static>>;

/// A connected ClickHouse client bound to one database.
#[derive(Clone)]
pub struct Ch {
    client: Client,
    target: ChTarget,
}

impl Ch {
    /// Builds a client; nothing is sent until the first query.
    pub fn new(target: ChTarget) -> Self {
        let mut client = Client::default()
            .with_url(target.base.clone())
            .with_validation(false);
        if let Some(user) = &target.user {
            client = client.with_user(user.clone());
        }
        if let Some(password) = &target.password {
            client = client.with_password(password.clone());
        }
        Ch { client, target }
    }

    /// Parses a URL and builds a client.
    pub fn from_url(url: &str) -> Result<Self> {
        Ok(Self::new(ChTarget::parse(url)?))
    }

    /// The target this client talks to.
    pub fn target(&self) -> &ChTarget {
        &self.target
    }

    /// The underlying client, for callers that need raw queries.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Classifies a crate error into one that names the server.
    pub fn error(&self, doing: &str, err: clickhouse::error::Error) -> ChError {
        classify(&self.target, doing, err)
    }

    /// Checks that the server answers and returns its version, within
    /// [`PING_TIMEOUT`] (the HTTP client has no connect or read timeout of
    /// its own: a firewalled or silent port would hang the command).
    pub async fn ping(&self) -> Result<String> {
        let query = self.client.query("SELECT version()").fetch_one::<String>();
        match tokio::time::timeout(PING_TIMEOUT, query).await {
            Ok(answer) => answer.map_err(|e| self.error("checking the connection", e)),
            Err(_) => Err(ChError::Unreachable {
                server: self.target.base.clone(),
                detail: format!("no answer within {} s", PING_TIMEOUT.as_secs()),
            }),
        }
    }

    /// Fails with [`ChError::MissingDatabase`] unless the URL's database
    /// exists, or [`ChError::MissingTable`] unless `table` exists in it.
    pub async fn require_table(&self, table: &str, hint: &'static str) -> Result<()> {
        self.require_database(hint).await?;
        if !self.has_table(table).await? {
            return Err(self.missing(table, hint));
        }
        Ok(())
    }

    /// Whether `table` exists in the URL's database.
    pub async fn has_table(&self, table: &str) -> Result<bool> {
        let n: u64 = self
            .client
            .query("SELECT count() FROM system.tables WHERE database = ? AND name = ?")
            .bind(self.target.database.as_str())
            .bind(table)
            .fetch_one()
            .await
            .map_err(|e| self.error("looking up tables", e))?;
        Ok(n > 0)
    }

    /// Whether the URL's database exists.
    pub async fn has_database(&self) -> Result<bool> {
        let n: u64 = self
            .client
            .query("SELECT count() FROM system.databases WHERE name = ?")
            .bind(self.target.database.as_str())
            .fetch_one()
            .await
            .map_err(|e| self.error("looking up databases", e))?;
        Ok(n > 0)
    }

    /// Fails with [`ChError::MissingDatabase`], naming the databases there
    /// are, unless the URL's database exists: a `?database=` typo must not
    /// read as an empty database.
    pub async fn require_database(&self, hint: &'static str) -> Result<()> {
        if self.has_database().await? {
            return Ok(());
        }
        let names: Vec<String> = self
            .client
            .query("SELECT name FROM system.databases WHERE name != 'system' ORDER BY name")
            .fetch_all()
            .await
            .map_err(|e| self.error("listing databases", e))?;
        Err(ChError::MissingDatabase {
            server: self.target.base.clone(),
            database: self.target.database.clone(),
            existing: if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            },
            hint,
        })
    }

    fn missing(&self, table: &str, hint: &'static str) -> ChError {
        ChError::MissingTable {
            server: self.target.base.clone(),
            table: format!("{}.{table}", self.target.database),
            hint,
        }
    }

    /// Fails unless `patterns_data` exists.
    pub async fn require_patterns(&self) -> Result<()> {
        self.require_table("patterns_data", PATTERNS_HINT).await
    }

    /// All kb_ids with patterns, sorted.
    pub async fn kb_ids(&self) -> Result<Vec<String>> {
        self.client
            .query("SELECT DISTINCT kb_id FROM ?.patterns_data ORDER BY kb_id")
            .bind(self.db())
            .fetch_all::<String>()
            .await
            .map_err(|e| self.error("listing kb_ids in patterns_data", e))
    }

    /// The kb_ids that `--kb` ids or globs name, sorted: literal ids as
    /// given (no discovery), globs matched against `SELECT DISTINCT kb_id`,
    /// every kb_id when `globs` is empty. Fails unless `patterns_data`
    /// exists.
    pub async fn resolve_kbs(&self, globs: &[Glob]) -> Result<Vec<String>> {
        self.require_patterns().await?;
        if !globs.is_empty() && globs.iter().all(Glob::is_literal) {
            let mut ids: Vec<String> = globs
                .iter()
                .map(|g| String::from_utf8_lossy(g.as_bytes()).into_owned())
                .collect();
            ids.sort();
            ids.dedup();
            return Ok(ids);
        }
        let all = self.kb_ids().await?;
        if globs.is_empty() {
            return Ok(all);
        }
        Ok(all
            .into_iter()
            .filter(|kb| globs.iter().any(|g| g.is_match(kb.as_bytes())))
            .collect())
    }

    /// Streams `(name, pattern_data)` of one kb_id. The table is
    /// partitioned by kb_id, so the WHERE reads only that partition.
    pub fn patterns(&self, kb_id: &str) -> Result<PatternCursor> {
        self.client
            .query("SELECT name, pattern_data FROM ?.patterns_data WHERE kb_id = ?")
            .bind(self.db())
            .bind(kb_id)
            .fetch::<PatternRow<'static>>()
            .map_err(|e| self.error("reading patterns_data", e))
    }

    /// Number of rows of one kb_id (for progress bars).
    pub async fn pattern_count(&self, kb_id: &str) -> Result<u64> {
        self.client
            .query("SELECT count() FROM ?.patterns_data WHERE kb_id = ?")
            .bind(self.db())
            .bind(kb_id)
            .fetch_one::<u64>()
            .await
            .map_err(|e| self.error("counting patterns", e))
    }

    /// The database name as a bindable, escaped identifier.
    pub fn db(&self) -> Identifier<'_> {
        Identifier(&self.target.database)
    }
}

const PATTERNS_HINT: &str =
    "is this KATO's ClickHouse? pass the right database with ?database=NAME in --clickhouse";

fn classify(target: &ChTarget, doing: &str, err: clickhouse::error::Error) -> ChError {
    use clickhouse::error::Error as E;
    let server = target.base.clone();
    let detail = error_chain(&err);
    match err {
        E::Network(_) if detail.contains("certificate") || detail.contains("Certificate") => {
            ChError::Tls { server, detail }
        }
        E::Network(_) | E::TimedOut => ChError::Unreachable { server, detail },
        _ if is_auth_error(&detail) => ChError::Auth {
            server,
            detail: first_line(&detail),
        },
        _ => ChError::Query {
            server,
            doing: doing.to_string(),
            detail: first_line(&detail),
        },
    }
}

/// ClickHouse error codes for unknown user (192), wrong password (193),
/// required password (194) and the newer AUTHENTICATION_FAILED (516).
fn is_auth_error(detail: &str) -> bool {
    ["Code: 192", "Code: 193", "Code: 194", "Code: 516"]
        .iter()
        .any(|code| detail.contains(code))
}

/// The error and its sources, `: `-separated (hyper hides the useful part,
/// e.g. "Connection refused", in a source).
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

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_are_parsed_and_never_displayed() {
        let t = ChTarget::parse("http://alice:p%40ss@ch.local:9123/?database=kb_test").unwrap();
        assert_eq!(t.user.as_deref(), Some("alice"));
        assert_eq!(t.password.as_deref(), Some("p@ss"));
        assert_eq!(t.database(), "kb_test");
        let shown = format!("{t} {t:?}");
        assert_eq!(t.to_string(), "http://ch.local:9123 (database kb_test)");
        assert!(!shown.contains("p@ss") && !shown.contains("alice"));
    }

    #[test]
    fn url_credentials_keep_plus_and_ampersand() {
        // In a URL's userinfo `+` is a plus (not a space) and `&` is not a
        // separator; only %XX is decoded.
        let t = ChTarget::parse("http://a+b:p+q&r=s%2B@h/").unwrap();
        assert_eq!(t.user.as_deref(), Some("a+b"));
        assert_eq!(t.password.as_deref(), Some("p+q&r=s+"));
    }

    #[test]
    fn url_defaults() {
        let t = ChTarget::parse("http://127.0.0.1").unwrap();
        assert_eq!(t.server(), "http://127.0.0.1:8123");
        assert_eq!(t.database(), "kato");
        assert!(t.user.is_none() && t.password.is_none());
    }

    #[test]
    fn bad_urls_are_rejected() {
        assert!(matches!(
            ChTarget::parse("nonsense"),
            Err(ChError::BadUrl { .. })
        ));
        assert!(matches!(
            ChTarget::parse("ftp://h:8443"),
            Err(ChError::BadUrl { .. })
        ));
    }

    #[test]
    fn https_urls_keep_their_scheme() {
        let t = ChTarget::parse("https://u:pw@ch.example:9440/?database=k").unwrap();
        assert_eq!(t.server(), "https://ch.example:9440");
        assert_eq!(
            ChTarget::parse("https://ch.example").unwrap().server(),
            "https://ch.example:8443"
        );
        assert!(!t.to_string().contains("pw"));
    }
}
