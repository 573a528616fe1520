//! Reading a production server gently.
//!
//! - A [`Pacer`] keeps the readers (`export`, `copy`, `mirror`) within
//!   `--max-keys-per-sec` and `--max-bytes-per-sec`: one token bucket per
//!   limit ([`crate::plan::throttle`]), asked before each DUMP pipeline and
//!   charged with the bytes it returned.
//! - [`Patience`] waits for a server that answers `LOADING` (it is loading
//!   its data set after a restart) or `BUSY` (a script has run past
//!   `busy-reply-threshold`) instead of failing the read: such a reply means
//!   the command was not run, so reading again later is safe. It retries
//!   with backoff up to a stated limit (`--busy-timeout`), saying so once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::RedisError;
use tokio::time::Instant;

use super::redis::{Dumped, Endpoint, RedisConn, RedisIoError, Result, Scan, ServerInfo};
use crate::clock::Clock;
use crate::plan::throttle::TokenBucket;

/// `--max-keys-per-sec` and `--max-bytes-per-sec` (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub keys_per_sec: Option<u64>,
    pub bytes_per_sec: Option<u64>,
}

impl Limits {
    pub fn is_limited(&self) -> bool {
        self.keys_per_sec.is_some() || self.bytes_per_sec.is_some()
    }
}

/// How a reader treats the server it reads: its limits and its patience.
#[derive(Debug, Clone, Default)]
pub struct Pace {
    pub limits: Limits,
    pub patience: Patience,
}

impl Pace {
    /// A pacer for one read, its buckets full at the clock's "now".
    pub fn pacer(&self, clock: &Clock) -> Pacer {
        let now = clock.now_ms();
        Pacer {
            keys: self.limits.keys_per_sec.map(|r| TokenBucket::new(r, now)),
            bytes: self.limits.bytes_per_sec.map(|r| TokenBucket::new(r, now)),
            clock: clock.clone(),
            keys_read: 0,
            bytes_read: 0,
            estimate: 0,
        }
    }
}

/// The limits of one read in progress.
pub struct Pacer {
    keys: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
    clock: Clock,
    keys_read: u64,
    bytes_read: u64,
    /// Bytes taken ahead for the pipeline in flight, settled by
    /// [`Pacer::after_read`].
    estimate: u64,
}

impl Pacer {
    pub fn is_limited(&self) -> bool {
        self.keys.is_some() || self.bytes.is_some()
    }

    /// How many of `wanted` keys the next pipeline reads: no more than one
    /// burst of each limit, so that no pipeline overshoots a second's
    /// budget. Bytes are known only once read: the batch is sized by the
    /// payload size seen so far, and the very first holds one key.
    pub fn batch_keys(&self, wanted: usize) -> usize {
        let mut most = wanted.max(1) as u64;
        if let Some(keys) = &self.keys {
            most = most.min(keys.burst());
        }
        if let Some(bytes) = &self.bytes {
            let per_key = match self.keys_read {
                0 => u64::MAX,
                n => (self.bytes_read / n).max(1),
            };
            most = most.min(bytes.burst() / per_key);
        }
        most.max(1) as usize
    }

    /// Waits until `keys` keys may be read. Their bytes are taken ahead at
    /// the payload size seen so far, so that a pipeline does not first
    /// overshoot and then wait.
    pub async fn before_read(&mut self, keys: usize) {
        let now = self.clock.now_ms();
        self.estimate = match self.keys_read {
            0 => 0,
            n => self.bytes_read / n * keys as u64,
        };
        let keys_wait = self.keys.as_mut().map_or(0, |b| b.take(keys as u64, now));
        let estimate = self.estimate;
        let bytes_wait = self.bytes.as_mut().map_or(0, |b| b.take(estimate, now));
        let wait = keys_wait.max(bytes_wait);
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }

    /// Settles the bytes a pipeline returned against what was taken ahead.
    pub fn after_read(&mut self, keys: usize, bytes: u64) {
        self.keys_read += keys as u64;
        self.bytes_read += bytes;
        let now = self.clock.now_ms();
        let estimate = std::mem::take(&mut self.estimate);
        if let Some(bucket) = &mut self.bytes {
            match bytes.checked_sub(estimate) {
                Some(more) => bucket.charge(more, now),
                None => bucket.refund(estimate - bytes, now),
            }
        }
    }
}

/// Waiting for a server that is loading its data or running a script.
#[derive(Clone)]
pub struct Patience {
    /// The longest one read waits before its error stands.
    pub limit: Duration,
    notify: Arc<dyn Fn(&str) + Send + Sync>,
}

/// The default `--busy-timeout`.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(60);

impl Default for Patience {
    fn default() -> Self {
        Patience::new(DEFAULT_PATIENCE)
    }
}

impl fmt::Debug for Patience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Patience(limit = {:?})", self.limit)
    }
}

/// Why a server cannot answer now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unready {
    /// `LOADING`: the server is loading its data set into memory.
    Loading,
    /// `BUSY`: a script or function is running past its time limit.
    Busy,
}

impl Unready {
    fn describe(self) -> &'static str {
        match self {
            Unready::Loading => "loading its data set into memory (LOADING)",
            Unready::Busy => "busy running a script (BUSY)",
        }
    }
}

impl Patience {
    /// Patience of `limit`, silent.
    pub fn new(limit: Duration) -> Patience {
        Patience {
            limit,
            notify: Arc::new(|_| {}),
        }
    }

    /// Says what it waits for (and when it stops waiting) through `notify`.
    pub fn with_notify(mut self, notify: impl Fn(&str) + Send + Sync + 'static) -> Patience {
        self.notify = Arc::new(notify);
        self
    }

    /// The wait of one read, started at its first failure.
    pub fn waiting(&self, what: &str) -> Waiting<'_> {
        Waiting {
            patience: self,
            what: what.to_string(),
            since: None,
            attempt: 0,
        }
    }

    /// [`RedisConn::open`], waiting while the server is not ready.
    pub async fn connect(&self, endpoint: &Endpoint) -> Result<RedisConn> {
        let mut waiting = self.waiting("PING");
        loop {
            match RedisConn::open(endpoint).await {
                Err(e) => waiting.pause(e).await?,
                Ok(conn) => return Ok(waiting.done(conn)),
            }
        }
    }

    /// [`RedisConn::server_info`], waiting while the server is not ready.
    pub async fn server_info(&self, conn: &mut RedisConn) -> Result<ServerInfo> {
        let mut waiting = self.waiting("INFO");
        loop {
            match conn.server_info().await {
                Err(e) => waiting.pause(e).await?,
                Ok(info) => return Ok(waiting.done(info)),
            }
        }
    }

    /// [`Scan::next_page`], waiting while the server is not ready.
    pub async fn next_page(&self, scan: &mut Scan) -> Result<Option<Vec<Vec<u8>>>> {
        let mut waiting = self.waiting("SCAN");
        loop {
            match scan.next_page().await {
                Err(e) => waiting.pause(e).await?,
                Ok(page) => return Ok(waiting.done(page)),
            }
        }
    }

    /// [`RedisConn::dump_keys`], waiting while the server is not ready.
    pub async fn dump_keys<K: AsRef<[u8]>>(
        &self,
        conn: &RedisConn,
        keys: &[K],
    ) -> Result<Vec<Dumped>> {
        let mut waiting = self.waiting("DUMP/PTTL");
        loop {
            match conn.clone().dump_keys(keys).await {
                Err(e) => waiting.pause(e).await?,
                Ok(dumped) => return Ok(waiting.done(dumped)),
            }
        }
    }
}

/// One read waiting for its server.
pub struct Waiting<'a> {
    patience: &'a Patience,
    what: String,
    since: Option<Instant>,
    attempt: u32,
}

impl Waiting<'_> {
    /// After a failed attempt: when the server is only not ready yet and
    /// the limit is not reached, sleeps and returns `Ok` (try again);
    /// otherwise returns the error.
    pub async fn pause(&mut self, error: RedisIoError) -> Result<()> {
        let Some(why) = unready(&error).filter(|_| !self.patience.limit.is_zero()) else {
            return Err(error);
        };
        let since = *self.since.get_or_insert_with(|| {
            (self.patience.notify)(&format!(
                "{} is {}: waiting up to {} s for it, retrying {} with backoff",
                address(&error),
                why.describe(),
                self.patience.limit.as_secs(),
                self.what
            ));
            Instant::now()
        });
        let left = self.patience.limit.saturating_sub(since.elapsed());
        if left.is_zero() {
            return Err(gave_up(error, self.patience.limit));
        }
        tokio::time::sleep(backoff(self.attempt).min(left)).await;
        self.attempt += 1;
        Ok(())
    }

    /// Passes a success through, saying so when it came after a wait.
    pub fn done<T>(&self, value: T) -> T {
        if let Some(since) = self.since {
            (self.patience.notify)(&format!(
                "the server answered {} again after {:.1} s",
                self.what,
                since.elapsed().as_secs_f64()
            ));
        }
        value
    }
}

/// The pause before retry `attempt` (0-based): 50 ms, doubling, at most 2 s.
pub fn backoff(attempt: u32) -> Duration {
    let ms = 50u64.saturating_mul(1 << attempt.min(6));
    Duration::from_millis(ms.min(2_000))
}

/// Whether an error only says that the server is not ready yet.
pub fn unready(error: &RedisIoError) -> Option<Unready> {
    let cause = match error {
        RedisIoError::Command { cause, .. } | RedisIoError::Connect { cause, .. } => cause,
        _ => return None,
    };
    unready_code(cause)
}

fn unready_code(cause: &RedisError) -> Option<Unready> {
    let of = |code: &str| match code {
        "LOADING" => Some(Unready::Loading),
        "BUSY" => Some(Unready::Busy),
        _ => None,
    };
    if let Some(why) = cause.code().and_then(of) {
        return Some(why);
    }
    // A failed pipeline carries the replies that failed.
    cause
        .clone()
        .into_server_errors()?
        .iter()
        .find_map(|(_, e)| of(e.code()))
}

fn address(error: &RedisIoError) -> String {
    match error {
        RedisIoError::Command { address, .. } | RedisIoError::Connect { address, .. } => {
            format!("Redis at {address}")
        }
        _ => "the server".to_string(),
    }
}

/// The error of the last attempt, saying how long kbdump waited. A
/// connection whose first command the server would not run yet failed on
/// that command, not on reaching the server.
fn gave_up(error: RedisIoError, limit: Duration) -> RedisIoError {
    let still = |what: &str| {
        format!(
            "{what} (still not ready after waiting {} s; wait longer with --busy-timeout)",
            limit.as_secs()
        )
    };
    match error {
        RedisIoError::Command {
            address,
            what,
            cause,
        } => RedisIoError::Command {
            address,
            what: still(&what),
            cause,
        },
        RedisIoError::Connect { address, cause } => RedisIoError::Command {
            address,
            what: still("PING"),
            cause,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_two_seconds() {
        let ms: Vec<u128> = (0..8).map(|a| backoff(a).as_millis()).collect();
        assert_eq!(ms, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff(u32::MAX).as_millis(), 2000);
    }

    fn server_error(line: &str) -> RedisError {
        let (code, detail) = line.split_once(' ').unwrap();
        redis::make_extension_error(code.to_string(), Some(detail.to_string()))
    }

    #[test]
    fn loading_and_busy_are_waited_for_nothing_else() {
        let command = |cause| RedisIoError::Command {
            address: "h:1".into(),
            what: "DUMP".into(),
            cause,
        };
        let busy = command(server_error("BUSY Redis is busy running a script."));
        assert_eq!(unready(&busy), Some(Unready::Busy));
        let busykey = command(server_error("BUSYKEY Target key name already exists."));
        assert_eq!(unready(&busykey), None);
        let oom = command(server_error("OOM command not allowed"));
        assert_eq!(unready(&oom), None);
    }

    #[test]
    fn pacer_batches_stay_within_one_burst() {
        let clock = Clock::fixed(0);
        let unlimited = Pace::default().pacer(&clock);
        assert_eq!(unlimited.batch_keys(1000), 1000);
        let pace = |keys, bytes| Pace {
            limits: Limits {
                keys_per_sec: keys,
                bytes_per_sec: bytes,
            },
            ..Pace::default()
        };
        assert_eq!(pace(Some(1000), None).pacer(&clock).batch_keys(1000), 100);
        let mut bytes = pace(None, Some(100_000)).pacer(&clock);
        assert_eq!(bytes.batch_keys(1000), 1, "one key to learn the size");
        bytes.after_read(1, 500);
        assert_eq!(bytes.batch_keys(1000), 20);
    }
}
