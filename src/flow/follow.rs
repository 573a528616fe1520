/*!
`kbdump mirror --follow`: the mirror kept within seconds of Redis.

The change feed is Redis's keyspace notifications (`net::notify`, which
says why). The loop:

1. Subscribe, then make a full mirror pass (`sink::mirror`, shrink guard
   included) while collecting the notifications that arrive meanwhile.
   Notifications are lost while disconnected, so every (re)connection
   starts here: the pass covers whatever happened in the gap.
2. Collect the changed keys of the selected kb_ids and mirrored
   categories into a pending set (deduplicated; bounded: past
   [`FollowOptions::max_pending`] keys the set is dropped and a full pass
   takes its place), and every [`FollowOptions::flush_every`] read them
   again (DUMP + PTTL) and append what they are now: a version, or a
   tombstone for a key that is gone. A key whose last notification was
   `evicted` is never recorded as deleted: an eviction is a loss, not a
   change, and a restore must bring it back.
3. A Redis connection that drops goes back to 1 (with backoff). A
   ClickHouse that fails keeps the pending keys (read again, not the
   stale rows, once it answers) and retries with backoff; nothing is
   recorded as deleted on a failure, only on a DUMP that answered "no such
   key".
4. A stop request (SIGTERM) writes what is pending and ends.

Memory: the pending set (at most `max_pending` keys) and one batch of
payloads.
*/

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::Clock;
use crate::format::dump::payload_type_name;
use crate::format::mirror::{VersionRow, MIRRORED};
use crate::kato::{self, Category};
use crate::net::clickhouse::Ch;
use crate::net::mirror::{self as queries, MirrorError};
use crate::net::notify::{self, Change, Notifications, NotifyError};
use crate::net::pace::Pace;
use crate::net::redis::{Dumped, Endpoint, RedisConn, RedisIoError};
use crate::progress::NoProgress;
use crate::selection::Selection;
use crate::sink::mirror::{mirror_paced, MirrorOptions, MirrorSummary};
use crate::source::live::{resolve_kbs, LiveOpenError};
use crate::stop::Stop;

/// How a follower runs.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// How often pending changes are written.
    pub flush_every: Duration,
    /// Pending keys past which a full pass replaces them.
    pub max_pending: usize,
    /// Keys read per DUMP pipeline.
    pub batch: usize,
    /// The longest wait between two attempts to reconnect or to write.
    pub max_backoff: Duration,
    /// How often [`FollowReport::status`] is called.
    pub status_every: Duration,
    /// The options of the full passes (shrink guard; `create` applies to
    /// the first only).
    pub pass: MirrorOptions,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            flush_every: Duration::from_millis(250),
            max_pending: 100_000,
            batch: 1_000,
            max_backoff: Duration::from_secs(30),
            status_every: Duration::from_secs(60),
            pass: MirrorOptions::default(),
        }
    }
}

/// What a follower did so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FollowStats {
    /// Full passes made (the first, and one after each reconnection or
    /// overflow).
    pub passes: u64,
    /// Keys of the last full pass.
    pub pass_keys: u64,
    /// Versions recorded from notifications.
    pub versions: u64,
    /// Tombstones recorded from notifications (and by the passes).
    pub deleted: u64,
    /// Evicted keys, never recorded as deleted.
    pub evicted: u64,
    /// Groups whose deletions a pass held back (shrink guard).
    pub held_back: u64,
    /// Reconnections to Redis.
    pub reconnects: u64,
    /// Failed writes to ClickHouse (retried).
    pub clickhouse_failures: u64,
    /// Time from a change's notification to its row in ClickHouse, for
    /// the last write and the largest so far (ms).
    pub last_lag_ms: u64,
    pub max_lag_ms: u64,
}

/// Why following ended with an error (everything else is retried).
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Redis(#[from] RedisIoError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    #[error(transparent)]
    Live(#[from] LiveOpenError),
    /// Keyspace notifications are per node; a cluster is not followed.
    #[error(
        "{address} is a cluster: --follow reads the keyspace notifications of one server, and \
         a cluster publishes them on each master; run a plain `kbdump mirror` from a timer instead"
    )]
    Cluster { address: String },
}

/// What a follower reports as it goes (stderr lines in the CLI).
pub trait FollowReport: Send + Sync {
    /// A full pass ended.
    fn pass(&self, summary: &MirrorSummary);
    /// Something failed and is retried.
    fn retrying(&self, what: &str, wait: Duration);
    /// Every [`FollowOptions::status_every`]: how it goes.
    fn status(&self, stats: &FollowStats);
}

/// Follows the selected kb_ids until `stop`; see the module doc.
pub async fn follow(
    endpoint: &Endpoint,
    ch: &Ch,
    selection: &Selection,
    (options, pace): (&FollowOptions, &Pace),
    stop: &Stop,
    report: &dyn FollowReport,
) -> Result<FollowStats, FollowError> {
    let mut follower = Follower {
        endpoint,
        ch,
        selection: selection.clone(),
        options,
        pace,
        stop,
        report,
        stats: FollowStats::default(),
        pending: Pending::default(),
        last_stamp: 0,
        first: true,
    };
    follower.run().await?;
    Ok(follower.stats)
}

/// The changed keys not yet written, with their last notification and
/// the instant of the oldest.
#[derive(Default)]
struct Pending {
    keys: HashMap<Vec<u8>, (Vec<u8>, Category, Change)>,
    oldest: Option<Instant>,
}

impl Pending {
    fn add(&mut self, key: Vec<u8>, kb_id: Vec<u8>, category: Category, change: Change) {
        self.oldest.get_or_insert_with(Instant::now);
        self.keys.insert(key, (kb_id, category, change));
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.oldest = None;
    }
}

struct Follower<'a> {
    endpoint: &'a Endpoint,
    ch: &'a Ch,
    selection: Selection,
    options: &'a FollowOptions,
    pace: &'a Pace,
    stop: &'a Stop,
    report: &'a dyn FollowReport,
    stats: FollowStats,
    pending: Pending,
    last_stamp: u64,
    first: bool,
}

/// How a connected session ended.
enum Ended {
    Stopped,
    /// The Redis connection dropped, or the pending set overflowed: pass
    /// again.
    Resync,
}

impl Follower<'_> {
    async fn run(&mut self) -> Result<(), FollowError> {
        let mut backoff = Duration::from_millis(200);
        while !self.stop.is_requested() {
            match self.session().await {
                Ok(Ended::Stopped) => return Ok(()),
                Ok(Ended::Resync) => backoff = Duration::from_millis(200),
                Err(e) if self.first || !retryable(&e) => return Err(e),
                Err(e) => {
                    self.report.retrying(&e.to_string(), backoff);
                    self.sleep(backoff).await;
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
            }
            self.stats.reconnects += u64::from(!self.stop.is_requested());
        }
        Ok(())
    }

    /// One connection: subscribe, pass, then follow the notifications.
    async fn session(&mut self) -> Result<Ended, FollowError> {
        let mut conn = self.pace.patience.connect(self.endpoint).await?;
        if conn.is_cluster() {
            return Err(FollowError::Cluster {
                address: conn.address().to_string(),
            });
        }
        notify::check_config(&mut conn).await?;
        let literal = self.selection.literal_kbs();
        let mut feed = Notifications::subscribe(self.endpoint, conn.db(), literal.as_deref())
            .await
            .map_err(MirrorError::Redis)?;
        self.pending.clear();
        let known = self.full_pass(&mut conn, &mut feed).await?;
        let Some(known) = known else {
            return Ok(Ended::Stopped);
        };
        self.first = false;
        self.listen(&mut conn, &mut feed, known).await
    }

    /// A full mirror pass, collecting the notifications that arrive
    /// meanwhile. `None` when a stop came first. Returns the kb_ids the
    /// pass covered.
    async fn full_pass(
        &mut self,
        conn: &mut RedisConn,
        feed: &mut Notifications,
    ) -> Result<Option<Vec<Vec<u8>>>, FollowError> {
        if !self.first {
            // A kb_id gone since the first pass is not an error now: its
            // keys are simply not re-read (and so never recorded deleted).
            self.selection.allow_empty = true;
        }
        let kb_ids = resolve_kbs(conn, &self.selection).await?;
        let mut options = self.options.pass.clone();
        options.create &= self.first;
        let clock = Clock::system();
        let (ch, pace) = (self.ch, self.pace);
        let summary = {
            let pass = mirror_paced(conn, ch, &kb_ids, &clock, (&options, pace), &NoProgress);
            tokio::pin!(pass);
            loop {
                tokio::select! {
                    summary = &mut pass => break summary?,
                    event = feed.next() => match event {
                        Some((key, change)) => self.note(key, change, &kb_ids),
                        // The feed dropped during the pass: what changed
                        // since is unknown; the next session passes again.
                        None => {
                            let summary = pass.await?;
                            self.record_pass(&summary);
                            return Err(conn.dropped("the notification feed").into());
                        }
                    },
                    () = self.stop.requested() => return Ok(None),
                }
            }
        };
        self.record_pass(&summary);
        Ok(Some(kb_ids))
    }

    fn record_pass(&mut self, summary: &MirrorSummary) {
        self.stats.passes += 1;
        self.stats.pass_keys = summary.keys;
        self.stats.deleted += summary.deleted;
        self.stats.held_back += summary.held_back.len() as u64;
        self.last_stamp = self.last_stamp.max(summary.started_at_ms);
        self.report.pass(summary);
    }

    /// Remembers a notified key when it is one of the mirrored categories
    /// of a followed kb_id.
    fn note(&mut self, key: Vec<u8>, change: Change, kb_ids: &[Vec<u8>]) {
        let Some(found) = kato::classify_with(&key, kb_ids) else {
            return;
        };
        if !MIRRORED.contains(&found.category) || !self.follows(found.kb_id, kb_ids) {
            return;
        }
        let (kb_id, category) = (found.kb_id.to_vec(), found.category);
        self.pending.add(key, kb_id, category, change);
    }

    /// A kb_id of the pass, or one the selection takes (named by `--kb`,
    /// matched by a glob, or any without `--kb`): a kb_id that appears
    /// while following, or after a restart that emptied the server.
    fn follows(&self, kb_id: &[u8], kb_ids: &[Vec<u8>]) -> bool {
        kb_ids.iter().any(|k| k == kb_id)
            || self.selection.kbs.is_empty()
            || self.selection.kb_selected(kb_id)
    }

    /// Follows the notifications until a stop, a dropped feed or an
    /// overflow.
    async fn listen(
        &mut self,
        conn: &mut RedisConn,
        feed: &mut Notifications,
        kb_ids: Vec<Vec<u8>>,
    ) -> Result<Ended, FollowError> {
        let mut tick = tokio::time::interval(self.options.flush_every);
        let mut status = tokio::time::interval(self.options.status_every);
        status.tick().await;
        let mut ch_backoff = Duration::ZERO;
        let mut retry_at = Instant::now();
        loop {
            tokio::select! {
                event = feed.next() => match event {
                    Some((key, change)) => self.note(key, change, &kb_ids),
                    None => return Ok(Ended::Resync),
                },
                _ = tick.tick() => {
                    if Instant::now() >= retry_at {
                        match self.flush(conn).await {
                            Ok(()) => ch_backoff = Duration::ZERO,
                            Err(MirrorError::ClickHouse(e)) => {
                                self.stats.clickhouse_failures += 1;
                                ch_backoff = (ch_backoff * 2)
                                    .max(Duration::from_millis(500))
                                    .min(self.options.max_backoff);
                                retry_at = Instant::now() + ch_backoff;
                                self.report.retrying(&e.to_string(), ch_backoff);
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                _ = status.tick() => self.report.status(&self.stats),
                () = self.stop.requested() => {
                    self.flush(conn).await?;
                    return Ok(Ended::Stopped);
                }
            }
            if self.pending.keys.len() > self.options.max_pending {
                // Too much to hold: a full pass covers it instead.
                self.pending.clear();
                return Ok(Ended::Resync);
            }
        }
    }

    /// Reads the pending keys again and appends what they are now. On a
    /// ClickHouse failure the keys stay pending.
    async fn flush(&mut self, conn: &mut RedisConn) -> Result<(), MirrorError> {
        if self.pending.keys.is_empty() {
            return Ok(());
        }
        let oldest = self.pending.oldest;
        let keys: Vec<Vec<u8>> = self.pending.keys.keys().cloned().collect();
        let mut rows = Vec::with_capacity(keys.len());
        let clock = Clock::system();
        let stamp = (clock.now_ms() as u64).max(self.last_stamp + 1);
        let (mut versions, mut deleted, mut evicted) = (0, 0, 0);
        for chunk in keys.chunks(self.options.batch) {
            let dumped = self.pace.patience.dump_keys(conn, chunk).await?;
            let now = clock.now_ms();
            for (key, d) in chunk.iter().zip(dumped) {
                let (kb_id, category, change) = &self.pending.keys[key];
                let row = match d {
                    Dumped::Present { payload, pttl_ms } => {
                        versions += 1;
                        VersionRow {
                            kb_id: kb_id.clone(),
                            category: category.name().to_string(),
                            key: key.clone(),
                            redis_type: payload_type_name(&payload).to_string(),
                            expire_at_ms: pttl_ms.map(|ms| now + ms),
                            payload,
                            observed_at_ms: stamp,
                            deleted: 0,
                        }
                    }
                    Dumped::Vanished if *change == Change::Evicted => {
                        evicted += 1;
                        continue;
                    }
                    Dumped::Vanished => {
                        deleted += 1;
                        VersionRow {
                            kb_id: kb_id.clone(),
                            category: category.name().to_string(),
                            key: key.clone(),
                            redis_type: String::new(),
                            payload: Vec::new(),
                            expire_at_ms: None,
                            observed_at_ms: stamp,
                            deleted: 1,
                        }
                    }
                };
                rows.push(row);
            }
        }
        queries::insert_versions(self.ch, &rows).await?;
        self.last_stamp = stamp;
        self.pending.clear();
        self.stats.versions += versions;
        self.stats.deleted += deleted;
        self.stats.evicted += evicted;
        if let Some(oldest) = oldest {
            let lag = oldest.elapsed().as_millis() as u64;
            self.stats.last_lag_ms = lag;
            self.stats.max_lag_ms = self.stats.max_lag_ms.max(lag);
        }
        Ok(())
    }

    async fn sleep(&self, wait: Duration) {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.stop.requested() => {}
        }
    }
}

/// Failures a follower waits out: servers that are down or restarting.
/// A refused setting or permission is not one.
fn retryable(e: &FollowError) -> bool {
    match e {
        FollowError::Notify(NotifyError::Disabled { .. }) => false,
        FollowError::Redis(r) => r.is_connection_failure(),
        FollowError::Notify(NotifyError::Redis(r)) | FollowError::Mirror(MirrorError::Redis(r)) => {
            r.is_connection_failure()
        }
        FollowError::Mirror(MirrorError::ClickHouse(_)) => true,
        FollowError::Mirror(_) => false,
        FollowError::Live(LiveOpenError::Redis(r)) => r.is_connection_failure(),
        FollowError::Live(_) | FollowError::Cluster { .. } => false,
    }
}
