//! A private `clickhouse-server` for the integration tests, and
//! helpers for the ClickHouse tests (KATO's `patterns_data`, seeding, the
//! Python reference rebuild). Redis servers come from [`super::redis`].
//!
//! Started once per binary (a `OnceLock`), on free loopback ports, with its
//! data in a fresh temp dir; each test works in its own database
//! ([`ClickHouse::database`]). The binary is `$KBDUMP_CLICKHOUSE_SERVER`,
//! else `clickhouse-server` on PATH or in /usr/sbin (Debian's package).
//!
//! Cleanup: statics are never dropped and the crate forbids `unsafe` (so no
//! `prctl(PR_SET_PDEATHSIG)` in `pre_exec`, no `atexit`). The server is
//! therefore started under a small `sh` watchdog that polls the test
//! binary's pid and, once it is gone (normal exit, panic or SIGKILL alike),
//! kills the server and removes the temp dir.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::redis::RedisServer;

/// A running server.
pub struct ClickHouse {
    http_port: u16,
    dir: PathBuf,
}

/// User with a password, for credential tests.
pub const SECURED_USER: &str = "secured";
/// Its password.
pub const SECURED_PASSWORD: &str = "s3cret";

static SERVER: OnceLock<ClickHouse> = OnceLock::new();

/// The binary's server, started on first use.
pub fn server() -> &'static ClickHouse {
    SERVER.get_or_init(ClickHouse::start)
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `script` under `sh` with a watchdog loop that kills `$child` and
/// removes `dir` when this test binary's pid disappears.
pub fn spawn_watched(start: &str, dir: &Path) {
    let script = format!(
        "{start} & child=$!\n\
         while kill -0 {parent} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done\n\
         kill $child 2>/dev/null; wait $child 2>/dev/null; rm -rf '{dir}'",
        parent = std::process::id(),
        dir = dir.display(),
    );
    // The watchdog outlives this call on purpose; it is reaped by init
    // once the test binary has exited.
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sh watchdog");
}

fn binary() -> String {
    if let Ok(bin) = std::env::var("KBDUMP_CLICKHOUSE_SERVER") {
        return bin;
    }
    for candidate in ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"] {
        if Path::new(candidate).exists() {
            return candidate.to_string();
        }
    }
    panic!(
        "clickhouse-server not found: run scripts/test.sh, or `apt-get install -y \
         clickhouse-server`, or set KBDUMP_CLICKHOUSE_SERVER"
    );
}

impl ClickHouse {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kbdump-ch-")
            .tempdir()
            .unwrap()
            .keep();
        let (http_port, tcp_port) = (free_port(), free_port());
        std::fs::write(dir.join("config.xml"), config(&dir, http_port, tcp_port)).unwrap();
        std::fs::write(dir.join("users.xml"), USERS).unwrap();
        let start = format!(
            "'{}' --config-file='{}' >'{}/stdout.log' 2>&1",
            binary(),
            dir.join("config.xml").display(),
            dir.display()
        );
        spawn_watched(&start, &dir);
        let server = ClickHouse { http_port, dir };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self
                .http_get("/ping")
                .is_some_and(|body| body.ends_with("Ok.\n"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.join("log/err.log")).unwrap_or_default();
        panic!("clickhouse-server did not start within 60 s; its error log:\n{log}");
    }

    fn http_get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// HTTP port.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// URL of the server for `database`, without credentials.
    pub fn url(&self, database: &str) -> String {
        format!("http://127.0.0.1:{}/?database={database}", self.http_port)
    }

    /// Creates (fresh) database `kato_<test>` and returns its name.
    pub async fn database(&self, test: &str) -> String {
        let name = format!("kato_{test}");
        let client = self.client();
        client
            .query(&format!("DROP DATABASE IF EXISTS `{name}`"))
            .execute()
            .await
            .unwrap();
        client
            .query(&format!("CREATE DATABASE `{name}`"))
            .execute()
            .await
            .unwrap();
        name
    }

    /// A raw client without a default database.
    pub fn client(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(format!("http://127.0.0.1:{}", self.http_port))
            .with_validation(false)
    }
}

/// KATO's table, as its schema creates it.
pub async fn create_patterns_table(client: &clickhouse::Client, db: &str) {
    let sql = format!(
        "CREATE TABLE `{db}`.patterns_data (kb_id String, name String, \
         pattern_data Array(Array(String)), length UInt32) ENGINE = MergeTree \
         PARTITION BY kb_id ORDER BY (kb_id, length, name)"
    );
    client.query(&sql).execute().await.unwrap();
}

/// One `patterns_data` row for seeding.
#[derive(Debug, Clone, clickhouse::Row, serde::Serialize)]
pub struct SeedRow {
    pub kb_id: String,
    pub name: String,
    pub pattern_data: Vec<Vec<String>>,
    pub length: u32,
}

impl SeedRow {
    pub fn new(kb_id: &str, name: &str, events: Vec<Vec<String>>) -> Self {
        let length = events.iter().map(Vec::len).sum::<usize>() as u32;
        SeedRow {
            kb_id: kb_id.into(),
            name: name.into(),
            pattern_data: events,
            length,
        }
    }
}

/// Inserts rows into `db.patterns_data`.
pub async fn insert_patterns(client: &clickhouse::Client, db: &str, rows: &[SeedRow]) {
    let client = client.clone().with_database(db);
    let mut insert = client.insert::<SeedRow>("patterns_data").await.unwrap();
    for row in rows {
        insert.write(row).await.unwrap();
    }
    insert.end().await.unwrap();
}

/// Symbols that trip naive escaping: unicode, quotes, backslashes, `:`,
/// spaces, glob characters.
pub const TRICKY: &[&str] = &[
    "VISION|cat",
    "é",
    "😀 grin",
    "quote\"d",
    "it's",
    "back\\slash",
    "a:b:c",
    "two words",
    "star*",
    "what?",
    "[br]",
    "tab\tnl\n",
    "ctrl\u{1}",
    "日本語",
    "{json}",
    "x",
];

/// Deterministic KATO-like patterns for `kb_id`: `n` patterns of 1-4
/// events of 1-4 symbols drawn from [`TRICKY`] and a numbered pool, plus
/// one pattern without symbols.
pub fn seed_rows(kb_id: &str, n: usize, seed: u64) -> Vec<SeedRow> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move |m: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % m
    };
    let mut rows = Vec::with_capacity(n + 1);
    for i in 0..n {
        let events = (0..1 + next(4))
            .map(|_| {
                (0..1 + next(4))
                    .map(|_| match next(3) {
                        0 => TRICKY[next(TRICKY.len() as u64) as usize].to_string(),
                        _ => format!("sym{}", next(60)),
                    })
                    .collect()
            })
            .collect();
        rows.push(SeedRow::new(kb_id, &pattern_name(kb_id, i), events));
    }
    rows.push(SeedRow::new(kb_id, &pattern_name(kb_id, n), vec![vec![]]));
    rows
}

/// A 40-hex-digit name like KATO's SHA1 pattern names.
pub fn pattern_name(kb_id: &str, i: usize) -> String {
    let h = kb_id.bytes().fold(i as u64 + 1, |h, b| {
        h.wrapping_mul(31).wrapping_add(b as u64)
    });
    format!(
        "{:016x}{:016x}{:08x}",
        h.wrapping_mul(0x9e3779b97f4a7c15),
        h,
        i
    )
}

fn config(dir: &Path, http: u16, tcp: u16) -> String {
    let d = dir.display();
    format!(
        r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/log/server.log</log><errorlog>{d}/log/err.log</errorlog><size>10M</size><count>1</count></logger>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size>
  <timezone>UTC</timezone>
</yandex>
"#
    )
}

const USERS: &str = r#"<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
    <secured><password>s3cret</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></secured>
  </users>
  <quotas><default></default></quotas>
</yandex>
"#;

/// An async connection to a test server, without a response timeout
/// (rebuild pipelines can be large).
pub async fn conn(server: &RedisServer) -> ::redis::aio::MultiplexedConnection {
    let config = ::redis::AsyncConnectionConfig::new().set_response_timeout(None);
    ::redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

/// A Redis value, logically (not its encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Str(Vec<u8>),
    Hash(std::collections::BTreeMap<Vec<u8>, Vec<u8>>),
    Set(std::collections::BTreeSet<Vec<u8>>),
    Other(String),
}

/// Every key of a (small, test) Redis with its value.
pub async fn snapshot(
    conn: &mut ::redis::aio::MultiplexedConnection,
) -> std::collections::BTreeMap<Vec<u8>, Val> {
    let keys: Vec<Vec<u8>> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(conn)
        .await
        .unwrap();
    let mut out = std::collections::BTreeMap::new();
    for key in keys {
        let kind: String = ::redis::cmd("TYPE")
            .arg(&key)
            .query_async(conn)
            .await
            .unwrap();
        let val = match kind.as_str() {
            "string" => Val::Str(
                ::redis::cmd("GET")
                    .arg(&key)
                    .query_async(conn)
                    .await
                    .unwrap(),
            ),
            "hash" => Val::Hash(
                ::redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(conn)
                    .await
                    .unwrap(),
            ),
            "set" => Val::Set(
                ::redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async(conn)
                    .await
                    .unwrap(),
            ),
            other => Val::Other(other.to_string()),
        };
        out.insert(key, val);
    }
    out
}

/// Runs the Python reference rebuild (benches/rebuild_baseline.py).
pub fn run_baseline(ch_url: &str, redis_url: &str, kb_ids: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/rebuild_baseline.py");
    let out = Command::new("python3")
        .args([
            script,
            "--clickhouse",
            ch_url,
            "--redis",
            redis_url,
            "--kb-ids",
            &kb_ids.join(","),
        ])
        .output()
        .expect("python3 is needed for the reference rebuild");
    assert!(
        out.status.success(),
        "baseline failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
