//! Restore: put archived records back into a live server, by default only
//! the keys that are missing.
//!
//! Each key takes one of three paths, chosen from the target's version gate,
//! learned once per run:
//! - **raw**: `RESTORE key ttl payload` — the payload as archived;
//! - **retagged**: the payload's trailer rewritten to the target's RDB version
//!   (only when the target knows every type id in it: the encodings of the
//!   older types never changed);
//! - **logical**: the payload decoded and re-created with plain commands on a
//!   temporary key, in bounded chunks, then moved into place with
//!   `RENAMENX` (missing mode) or `RENAME` (replace mode), so the key appears
//!   whole and atomically, and an existing key is never touched in missing
//!   mode.
//!
//! A key the target refuses raw falls back to the logical path. One failing
//! key is reported and the run goes on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use redis::Value as Reply;
use serde::Serialize;
use tokio::sync::mpsc::Receiver;
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::format::archive::Record;
use crate::format::dump::{self, CommandOptions, ServerKind};
use crate::kato::{display_bytes, Category};
use crate::net::redis::{Dumped, RedisConn, RedisIoError, ServerInfo};
use crate::plan::plan_sized;
pub use crate::plan::{estimated_memory, renamed, Method};
use crate::progress::Progress;
pub use crate::records::{Failure, SourceItem};
use crate::sink::archive::UndoLog;

/// What happens to keys that already exist on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Never touch an existing key (RESTORE without REPLACE).
    #[default]
    Missing,
    /// Overwrite existing keys.
    Replace,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Restored(Method),
    /// Re-created with commands, but the commands could not reproduce every
    /// detail (the reason says what): restored, with a warning.
    Lossy(String),
    /// Already present on the target (missing mode).
    Kept,
    /// Its archived expiry has passed.
    Expired,
    /// Deleted: the archive records the key as absent (replace mode).
    Deleted,
    Failed(String),
}

/// Per kb_id x category counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub restored: u64,
    pub kept: u64,
    pub expired: u64,
    pub failed: u64,
    pub raw: u64,
    pub retagged: u64,
    pub logical: u64,
    /// Logical restores that could not reproduce every detail.
    pub lossy: u64,
    /// Keys deleted because the archive records them as absent (the undo
    /// of a replace that created them).
    pub deleted: u64,
}

impl Counts {
    fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Restored(method) => {
                self.restored += 1;
                match method {
                    Method::Raw => self.raw += 1,
                    Method::Retagged => self.retagged += 1,
                    Method::Logical => self.logical += 1,
                }
            }
            Outcome::Lossy(_) => {
                self.restored += 1;
                self.logical += 1;
                self.lossy += 1;
            }
            Outcome::Kept => self.kept += 1,
            Outcome::Expired => self.expired += 1,
            Outcome::Deleted => self.deleted += 1,
            Outcome::Failed(_) => self.failed += 1,
        }
    }

    pub fn merge(&mut self, other: &Counts) {
        self.restored += other.restored;
        self.kept += other.kept;
        self.expired += other.expired;
        self.failed += other.failed;
        self.raw += other.raw;
        self.retagged += other.retagged;
        self.logical += other.logical;
        self.lossy += other.lossy;
        self.deleted += other.deleted;
    }
}

/// What a restore did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoreSummary {
    pub tallies: BTreeMap<(Vec<u8>, Category), Counts>,
    pub failures: Vec<Failure>,
    /// Keys restored with a loss of detail (see [`Outcome::Lossy`]).
    pub warnings: Vec<Failure>,
}

impl RestoreSummary {
    pub fn total(&self) -> Counts {
        let mut total = Counts::default();
        self.tallies.values().for_each(|c| total.merge(c));
        total
    }

    pub fn has_failures(&self) -> bool {
        !self.failures.is_empty()
    }
}

/// How a restore runs.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub mode: Mode,
    /// `(from, to)`: keys of kb_id `from` are written under kb_id `to`.
    pub renames: Vec<(Vec<u8>, Vec<u8>)>,
    pub dry_run: bool,
    /// Always re-create keys with plain commands.
    pub force_logical: bool,
    /// Keys per pipeline.
    pub batch_keys: usize,
    /// Pipelines in flight.
    pub in_flight: usize,
    /// Chunking of the logical path.
    pub max_elements: usize,
    pub max_bytes: usize,
    /// Estimated memory (see [`estimated_memory`]) the run may add to the
    /// target before it stops: the memory guard for sources whose size is
    /// not known up front (a pipe, a copy).
    pub memory_budget: Option<u64>,
    /// Payloads this large or larger take the logical path in chunks: the
    /// server would refuse them as one RESTORE argument.
    pub max_payload: u64,
    /// "Now", for archived expiries: a key whose instant has passed is not
    /// written.
    pub clock: Clock,
    /// In replace mode, a record whose expiry has passed deletes its key
    /// instead of being skipped: set for an undo archive, whose key would
    /// have expired by now had the replace not overwritten it.
    pub expired_means_absent: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            mode: Mode::Missing,
            renames: Vec::new(),
            dry_run: false,
            force_logical: false,
            batch_keys: 1000,
            in_flight: 4,
            max_elements: 1000,
            max_bytes: 1 << 20,
            max_payload: DEFAULT_MAX_BULK,
            memory_budget: None,
            clock: Clock::system(),
            expired_means_absent: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Redis(#[from] RedisIoError),
    #[error(
        "the target {address} evicted {evicted} keys during the restore (maxmemory-policy {policy}): \
         restoring more would silently delete other data, so the restore stopped. Free memory or raise \
         maxmemory, then rerun (missing mode skips what is already back)"
    )]
    Evicting {
        address: String,
        evicted: u64,
        policy: String,
    },
    #[error(
        "the selection holds about {needed} bytes but the target {address} has only {headroom} bytes \
         below maxmemory (less a 5% reserve), and its policy {policy} would evict other keys to make room; free memory or \
         raise maxmemory, or pass --force to restore anyway"
    )]
    NoHeadroom {
        address: String,
        needed: u64,
        headroom: u64,
        policy: String,
    },
    #[error(
        "stopped before writing more: the keys read so far need about {needed} bytes but the \
         target {address} had only {headroom} bytes below maxmemory (less a 5% reserve), and its policy {policy} would \
         evict other keys to make room; {written} keys were written. Free memory or raise maxmemory \
         and rerun (missing mode skips what is already back), or pass --force"
    )]
    BudgetExceeded {
        address: String,
        needed: u64,
        headroom: u64,
        policy: String,
        written: u64,
    },
    /// The undo archive could not take the previous values of a batch, so
    /// the batch was not written (the undo archive says why).
    #[error("the previous values of a batch could not be saved to the undo archive")]
    UndoNotSaved,
    #[error("a restore task stopped unexpectedly")]
    TaskGone,
}

/// The target server and what it accepts, learned once per run.
#[derive(Clone)]
pub struct Target {
    pub conn: RedisConn,
    pub info: ServerInfo,
    pub kind: ServerKind,
    /// The largest single argument the server accepts
    /// (`proto-max-bulk-len`); a bigger payload cannot be sent with RESTORE.
    pub max_bulk: u64,
}

/// Redis' default `proto-max-bulk-len`, assumed when CONFIG is disabled.
const DEFAULT_MAX_BULK: u64 = 512 << 20;

impl Target {
    pub async fn connect(url: &str) -> Result<Target, RedisIoError> {
        let mut conn = RedisConn::connect(url).await?;
        let info = conn.server_info().await?;
        let kind = conn.server_kind(&info).await?;
        let max_bulk = conn
            .config_number("proto-max-bulk-len")
            .await
            .unwrap_or(DEFAULT_MAX_BULK);
        Ok(Target {
            conn,
            info,
            kind,
            max_bulk,
        })
    }

    fn evicts(&self) -> bool {
        self.info.maxmemory > 0 && self.info.maxmemory_policy != "noeviction"
    }

    /// Free memory below `maxmemory`, less a reserve of 5% of it: client
    /// buffers and the server's own bookkeeping grow during a run too, and
    /// filling memory to the last byte makes the next command evict.
    fn headroom(&self) -> u64 {
        let usable = self.info.maxmemory - self.info.maxmemory / 20;
        usable.saturating_sub(self.info.used_memory)
    }

    /// The memory a run may add when the target evicts, else `None`.
    pub fn memory_budget(&self) -> Option<u64> {
        self.evicts().then(|| self.headroom())
    }

    /// Refuses a restore that would push the target over `maxmemory` when
    /// its policy evicts keys to make room. `payload_bytes` and `keys` are
    /// the size of the selection (see [`estimated_memory`]).
    pub fn check_headroom(&self, payload_bytes: u64, keys: u64) -> Result<(), RestoreError> {
        if !self.evicts() {
            return Ok(());
        }
        let needed = estimated_memory(payload_bytes, keys);
        let headroom = self.headroom();
        if needed > headroom {
            return Err(RestoreError::NoHeadroom {
                address: self.conn.address().to_string(),
                needed,
                headroom,
                policy: self.info.maxmemory_policy.clone(),
            });
        }
        Ok(())
    }
}

/// A key ready to be written.
struct Pending {
    kb_id: Vec<u8>,
    category: Category,
    key: Vec<u8>,
    /// Absolute (unix ms), so that a key written late in the run still
    /// expires at its original instant.
    expire_at_ms: Option<i64>,
    payload: Vec<u8>,
    /// The archive records the key as absent: replace mode deletes it.
    absent: bool,
}

impl Pending {
    fn expired(&self, now: i64) -> bool {
        self.expire_at_ms.is_some_and(|at| at <= now)
    }

    /// An expired record becomes a deletion where the options say so.
    fn settle_expiry(mut self, options: &RestoreOptions, now: i64) -> Pending {
        if self.expired(now) && options.deletes_expired() {
            self.absent = true;
            self.expire_at_ms = None;
            self.payload.clear();
        }
        self
    }
}

impl RestoreOptions {
    fn deletes_expired(&self) -> bool {
        self.expired_means_absent && self.mode == Mode::Replace
    }
}

type Results = Vec<(Vec<u8>, Category, Vec<u8>, Outcome)>;

/// Restores every record that arrives on `source` into `target`.
/// In replace mode, `undo` gets the previous value of every key of a batch,
/// and the batch is written only once the undo says they are on disk.
pub async fn restore(
    target: &Target,
    mut source: Receiver<SourceItem>,
    options: &RestoreOptions,
    undo: Option<UndoLog>,
    progress: &dyn Progress,
) -> Result<RestoreSummary, RestoreError> {
    let mut run = Run::new(target, options, undo);
    let fed = run.feed(&mut source, progress).await;
    // Batches in flight finish even when the run failed: their previous
    // values are saved already, and a batch cut off midway could leave
    // temporary keys behind.
    let drained = run.drain(progress).await;
    fed.and(drained)?;
    progress.finish();
    Ok(run.summary)
}

/// One restore run: the batch being filled, the batches in flight, and
/// what is known so far.
struct Run<'a> {
    target: &'a Target,
    options: &'a RestoreOptions,
    undo: Option<UndoLog>,
    summary: RestoreSummary,
    running: JoinSet<Result<Results, RestoreError>>,
    batch: Vec<Pending>,
    /// Size of what was handed to the target so far (the memory budget).
    payload_bytes: u64,
    keys: u64,
}

impl<'a> Run<'a> {
    fn new(target: &'a Target, options: &'a RestoreOptions, undo: Option<UndoLog>) -> Self {
        Run {
            target,
            options,
            undo,
            summary: RestoreSummary::default(),
            running: JoinSet::new(),
            batch: Vec::with_capacity(options.batch_keys),
            payload_bytes: 0,
            keys: 0,
        }
    }

    fn max_in_flight(&self) -> usize {
        self.options.in_flight.max(1)
    }

    /// Reads the source to its end, writing full batches as they form.
    async fn feed(
        &mut self,
        source: &mut Receiver<SourceItem>,
        progress: &dyn Progress,
    ) -> Result<(), RestoreError> {
        while let Some(item) = source.recv().await {
            match item {
                SourceItem::Record(record) => {
                    if let Some(pending) = prepare(record, self.options, &mut self.summary) {
                        self.batch.push(pending);
                    }
                }
                SourceItem::Damaged { what, reason } => {
                    self.summary.failures.push(Failure { what, reason })
                }
                SourceItem::KbDone(_) => {}
            }
            if self.batch.len() >= self.options.batch_keys {
                self.send_batch(progress).await?;
            }
        }
        if !self.batch.is_empty() {
            self.send_batch(progress).await?;
        }
        Ok(())
    }

    /// Starts writing the current batch, once a slot is free.
    async fn send_batch(&mut self, progress: &dyn Progress) -> Result<(), RestoreError> {
        while self.running.len() >= self.max_in_flight() {
            self.collect_one(progress).await?;
        }
        let work = std::mem::replace(&mut self.batch, Vec::with_capacity(self.options.batch_keys));
        self.payload_bytes += work.iter().map(|p| p.payload.len() as u64).sum::<u64>();
        self.keys += work.len() as u64;
        let needed = estimated_memory(self.payload_bytes, self.keys);
        check_budget(self.target, self.options, needed, &self.summary)?;
        let (target, options, undo) =
            (self.target.clone(), self.options.clone(), self.undo.clone());
        self.running
            .spawn(async move { write_batch(&target, work, &options, undo.as_ref()).await });
        Ok(())
    }

    /// Waits for one batch in flight and counts its outcomes.
    async fn collect_one(&mut self, progress: &dyn Progress) -> Result<(), RestoreError> {
        let Some(done) = self.running.join_next().await else {
            return Ok(());
        };
        let results = done.map_err(|_| RestoreError::TaskGone)??;
        record_results(&mut self.summary, results, progress);
        watch_evictions(self.target, self.target.info.evicted_keys).await
    }

    /// Waits for every batch in flight; the first error wins.
    async fn drain(&mut self, progress: &dyn Progress) -> Result<(), RestoreError> {
        let mut first = Ok(());
        while !self.running.is_empty() {
            let result = self.collect_one(progress).await;
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

/// Stops the run before a batch that would take the target past the
/// memory budget (a dry run writes nothing, so it is never stopped).
fn check_budget(
    target: &Target,
    options: &RestoreOptions,
    needed: u64,
    summary: &RestoreSummary,
) -> Result<(), RestoreError> {
    match options.memory_budget {
        Some(budget) if !options.dry_run && needed > budget => Err(RestoreError::BudgetExceeded {
            address: target.conn.address().to_string(),
            needed,
            headroom: target.headroom(),
            policy: target.info.maxmemory_policy.clone(),
            written: summary.total().restored,
        }),
        _ => Ok(()),
    }
}

fn record_results(summary: &mut RestoreSummary, results: Results, progress: &dyn Progress) {
    let mut done = 0;
    for (kb_id, category, key, outcome) in results {
        summary
            .tallies
            .entry((kb_id, category))
            .or_default()
            .add(&outcome);
        match outcome {
            Outcome::Failed(reason) => summary.failures.push(Failure {
                what: display_bytes(&key),
                reason,
            }),
            Outcome::Lossy(reason) => summary.warnings.push(Failure {
                what: display_bytes(&key),
                reason,
            }),
            _ => {}
        }
        done += 1;
    }
    progress.advance(done, 0);
}

async fn watch_evictions(target: &Target, evicted_at_start: u64) -> Result<(), RestoreError> {
    if !target.evicts() {
        return Ok(());
    }
    let info = target.conn.clone().server_info().await?;
    if info.evicted_keys > evicted_at_start {
        return Err(RestoreError::Evicting {
            address: target.conn.address().to_string(),
            evicted: info.evicted_keys - evicted_at_start,
            policy: info.maxmemory_policy,
        });
    }
    Ok(())
}

/// Renames and expiry: turns a record into a pending write, or counts it as
/// expired.
fn prepare(
    record: Record,
    options: &RestoreOptions,
    summary: &mut RestoreSummary,
) -> Option<Pending> {
    let (kb_id, key) = renamed(&record.kb_id, &record.key, &options.renames);
    let pending = Pending {
        kb_id,
        category: record.category,
        key,
        absent: record.is_absent(),
        expire_at_ms: record.expire_at_ms,
        payload: record.payload,
    };
    let now = options.clock.now_ms();
    let pending = pending.settle_expiry(options, now);
    if pending.expired(now) {
        summary
            .tallies
            .entry((pending.kb_id, pending.category))
            .or_default()
            .add(&Outcome::Expired);
        return None;
    }
    Some(pending)
}

async fn write_batch(
    target: &Target,
    batch: Vec<Pending>,
    options: &RestoreOptions,
    undo: Option<&UndoLog>,
) -> Result<Results, RestoreError> {
    let mut conn = target.conn.clone();
    if options.dry_run {
        return dry_run(&mut conn, &target.kind, batch, options).await;
    }
    // A batch may wait behind others: a key whose expiry passed meanwhile is
    // not written (RESTORE with a past ABSTTL would only delete the live key
    // in replace mode).
    let now = options.clock.now_ms();
    let (batch, expired): (Vec<Pending>, Vec<Pending>) = batch
        .into_iter()
        .map(|p| p.settle_expiry(options, now))
        .partition(|p| !p.expired(now));
    let expired = expired
        .into_iter()
        .map(|p| (p.kb_id, p.category, p.key, Outcome::Expired));
    if options.mode == Mode::Replace {
        if let Some(undo) = undo {
            save_for_undo(&mut conn, &batch, undo, &options.clock).await?;
        }
    }
    let (absent, batch): (Vec<Pending>, Vec<Pending>) = batch.into_iter().partition(|p| p.absent);
    let mut results = apply_absent(&mut conn, absent, options.mode).await?;
    results.extend(write_present(&mut conn, &target.kind, batch, options).await?);
    results.extend(expired);
    Ok(results)
}

/// Absent records: replace mode deletes the keys; missing mode never
/// touches an existing key, so it leaves them as they are (kept).
async fn apply_absent(
    conn: &mut RedisConn,
    absent: Vec<Pending>,
    mode: Mode,
) -> Result<Results, RedisIoError> {
    if absent.is_empty() || mode == Mode::Missing {
        return Ok(absent
            .into_iter()
            .map(|p| (p.kb_id, p.category, p.key, Outcome::Kept))
            .collect());
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for pending in &absent {
        pipe.cmd("DEL").arg(&pending.key);
    }
    let replies = conn.pipeline(&pipe, "DEL").await?;
    Ok(absent
        .into_iter()
        .zip(replies)
        .map(|(p, reply)| {
            let outcome = match reply {
                Reply::ServerError(e) => Outcome::Failed(format!(
                    "deleting the key failed: {} {}",
                    e.code(),
                    e.details().unwrap_or("")
                )),
                _ => Outcome::Deleted,
            };
            (p.kb_id, p.category, p.key, outcome)
        })
        .collect())
}

/// Raw or retagged RESTOREs in one pipeline, then the logical path for
/// the keys that need it.
async fn write_present(
    conn: &mut RedisConn,
    kind: &ServerKind,
    batch: Vec<Pending>,
    options: &RestoreOptions,
) -> Result<Results, RestoreError> {
    let methods: Vec<Method> = batch
        .iter()
        .map(|p| plan_sized(kind, &p.payload, options.force_logical, options.max_payload))
        .collect();
    let mut outcomes = restore_raw(conn, kind, &batch, &methods, options.mode).await?;
    for (i, pending) in batch.iter().enumerate() {
        if outcomes[i].is_none() {
            outcomes[i] = Some(restore_logical(conn, kind, pending, options).await?);
        }
    }
    Ok(batch
        .into_iter()
        .zip(outcomes)
        .map(|(p, o)| {
            (
                p.kb_id,
                p.category,
                p.key,
                o.expect("every key has an outcome"),
            )
        })
        .collect())
}

/// RESTOREs the raw and retagged keys in one pipeline. `None` marks keys for
/// the logical path (planned so, or refused raw).
async fn restore_raw(
    conn: &mut RedisConn,
    kind: &ServerKind,
    batch: &[Pending],
    methods: &[Method],
    mode: Mode,
) -> Result<Vec<Option<Outcome>>, RedisIoError> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let mut sent = Vec::new();
    for (i, (pending, method)) in batch.iter().zip(methods).enumerate() {
        // Borrowed for raw keys: the pipeline copies arguments into its own
        // buffer anyway.
        let payload: std::borrow::Cow<[u8]> = match method {
            Method::Raw => (&pending.payload[..]).into(),
            Method::Retagged => match dump::retag(&pending.payload, kind.rdb_version) {
                Ok(p) => p.into(),
                Err(_) => continue,
            },
            Method::Logical => continue,
        };
        let payload = &payload[..];
        let cmd = pipe.cmd("RESTORE").arg(&pending.key);
        match pending.expire_at_ms {
            // ABSTTL (Redis >= 5.0): the instant, not a TTL measured earlier.
            Some(at) => cmd.arg(at).arg(payload).arg("ABSTTL"),
            None => cmd.arg(0).arg(payload),
        };
        if mode == Mode::Replace {
            cmd.arg("REPLACE");
        }
        sent.push((i, *method));
    }
    let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.len()];
    if sent.is_empty() {
        return Ok(outcomes);
    }
    let replies = conn.pipeline(&pipe, "RESTORE").await?;
    for ((i, method), reply) in sent.into_iter().zip(replies) {
        outcomes[i] = match reply {
            Reply::Okay | Reply::SimpleString(_) => Some(Outcome::Restored(method)),
            Reply::ServerError(e) if e.code() == "BUSYKEY" => Some(Outcome::Kept),
            Reply::ServerError(e) if is_fatal_reply(e.code(), e.details()) => Some(
                Outcome::Failed(format!("{} {}", e.code(), e.details().unwrap_or(""))),
            ),
            // Refused payload: take the logical path.
            _ => None,
        };
    }
    Ok(outcomes)
}

/// Errors that the logical path would hit too, so there is no point in
/// falling back.
fn is_fatal_reply(code: &str, details: Option<&str>) -> bool {
    matches!(code, "OOM" | "NOPERM" | "READONLY" | "MISCONF" | "LOADING")
        || details.is_some_and(|d| d.contains("OOM command not allowed"))
}

/// How long a temporary key of the logical path lives if the run dies
/// before moving it into place, so interrupted runs leave no garbage.
const TEMP_KEY_TTL_MS: i64 = 3_600_000;

/// Re-creates one key with plain commands on a temporary key, then moves it
/// into place atomically. The key is moved only when every command
/// succeeded: a value half-built (OOM midway, say) never replaces or
/// creates the real key.
async fn restore_logical(
    conn: &mut RedisConn,
    kind: &ServerKind,
    pending: &Pending,
    options: &RestoreOptions,
) -> Result<Outcome, RedisIoError> {
    let value = match dump::decode(&pending.payload) {
        Ok(v) => v,
        Err(e) => return Ok(Outcome::Failed(format!("cannot decode the payload: {e}"))),
    };
    let mut command_options = CommandOptions::for_server(kind);
    command_options.max_elements = options.max_elements;
    command_options.max_bytes = options.max_bytes;
    let temp = temp_key(&pending.key);
    let commands = value.to_commands(&temp, &command_options);
    if commands.is_empty() {
        return Ok(Outcome::Failed(format!(
            "the target refused the payload and a {} value cannot be re-created with commands",
            value.redis_type().name()
        )));
    }
    let outcome = match first_error(
        &conn
            .pipeline(&build(&temp, &commands), "logical restore")
            .await?,
    ) {
        Some(reason) => Outcome::Failed(format!("re-creating with commands failed: {reason}")),
        None => move_into_place(conn, &temp, pending, options).await?,
    };
    if outcome == Outcome::Restored(Method::Logical) {
        let gaps = value.command_gaps(&command_options);
        if !gaps.is_empty() {
            return Ok(Outcome::Lossy(gaps.join("; ")));
        }
    } else {
        let _: Result<i64, _> = conn
            .query(redis::cmd("DEL").arg(&temp).clone(), "DEL")
            .await;
    }
    Ok(outcome)
}

/// The commands that build the temporary key, with a safety TTL set right
/// after the first one created it.
fn build(temp: &[u8], commands: &[Vec<Vec<u8>>]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    pipe.cmd("DEL").arg(temp);
    for (i, command) in commands.iter().enumerate() {
        let mut cmd = redis::cmd(&String::from_utf8_lossy(&command[0]));
        for arg in &command[1..] {
            cmd.arg(arg);
        }
        pipe.add_command(cmd);
        if i == 0 {
            pipe.cmd("PEXPIRE").arg(temp).arg(TEMP_KEY_TTL_MS);
        }
    }
    pipe
}

fn first_error(replies: &[Reply]) -> Option<String> {
    replies.iter().find_map(|r| match r {
        Reply::ServerError(e) => Some(format!("{} {}", e.code(), e.details().unwrap_or(""))),
        _ => None,
    })
}

/// Sets the real expiry and renames, in one transaction: an interruption
/// leaves either the temporary key (which expires) or the finished key.
async fn move_into_place(
    conn: &mut RedisConn,
    temp: &[u8],
    pending: &Pending,
    options: &RestoreOptions,
) -> Result<Outcome, RedisIoError> {
    let mut pipe = redis::pipe();
    pipe.atomic().ignore_errors();
    match pending.expire_at_ms {
        Some(at) => pipe.cmd("PEXPIREAT").arg(temp).arg(at),
        None => pipe.cmd("PERSIST").arg(temp),
    };
    let rename = match options.mode {
        Mode::Missing => "RENAMENX",
        Mode::Replace => "RENAME",
    };
    pipe.cmd(rename).arg(temp).arg(&pending.key);
    let replies = match conn.pipeline(&pipe, "logical restore").await {
        Ok(replies) => replies,
        // A refused command aborts the whole transaction (EXECABORT, e.g.
        // OOM): a failure of this key, not of the connection.
        Err(RedisIoError::Command { cause, .. }) => {
            return Ok(Outcome::Failed(format!(
                "moving the re-created key into place failed: {cause}"
            )))
        }
        Err(e) => return Err(e),
    };
    Ok(match (first_error(&replies), replies.last()) {
        // PEXPIREAT with an instant that passed while the key was being
        // re-created deletes it: the key expired, nothing failed.
        (Some(_), _)
            if pending
                .expire_at_ms
                .is_some_and(|at| at <= options.clock.now_ms()) =>
        {
            Outcome::Expired
        }
        (Some(reason), _) => Outcome::Failed(format!(
            "moving the re-created key into place failed: {reason}"
        )),
        (None, Some(Reply::Int(0))) => Outcome::Kept,
        (None, _) => Outcome::Restored(Method::Logical),
    })
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary key name next to `key`. The `{…}` hash tag keeps it in the
/// key's own cluster slot (when the key has no tag of its own), and the
/// prefix makes leftovers of an interrupted run easy to find.
fn temp_key(key: &[u8]) -> Vec<u8> {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tag = hash_tag(key);
    [
        b"__kbdump_tmp:{".as_slice(),
        tag,
        format!("}}:{}:{n}", std::process::id()).as_bytes(),
    ]
    .concat()
}

/// The part of a key that Redis Cluster hashes (the text inside the first
/// non-empty `{…}`, or the whole key).
fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// Saves the current state of every key in the batch (its value, or that
/// it does not exist: an absent record), and returns once the undo archive
/// has them on disk: only then may the batch overwrite or create them.
async fn save_for_undo(
    conn: &mut RedisConn,
    batch: &[Pending],
    undo: &UndoLog,
    clock: &Clock,
) -> Result<(), RestoreError> {
    let keys: Vec<Vec<u8>> = batch.iter().map(|p| p.key.clone()).collect();
    let dumped = conn.dump_keys(&keys).await?;
    let read_at = clock.now_ms();
    let records = batch
        .iter()
        .zip(dumped)
        .map(|(pending, dumped)| match dumped {
            Dumped::Present { payload, pttl_ms } => Record {
                key: pending.key.clone(),
                kb_id: pending.kb_id.clone(),
                category: pending.category,
                redis_type: dump::payload_type_name(&payload).to_string(),
                expire_at_ms: pttl_ms.map(|ms| read_at + ms),
                payload,
            },
            Dumped::Vanished => {
                Record::absent(pending.key.clone(), pending.kb_id.clone(), pending.category)
            }
        })
        .collect();
    undo.save(records)
        .await
        .map_err(|_| RestoreError::UndoNotSaved)
}

/// Reports what a real run would do, writing nothing.
async fn dry_run(
    conn: &mut RedisConn,
    kind: &ServerKind,
    batch: Vec<Pending>,
    options: &RestoreOptions,
) -> Result<Results, RestoreError> {
    let mut pipe = redis::pipe();
    for pending in &batch {
        pipe.cmd("EXISTS").arg(&pending.key);
    }
    let exists: Vec<i64> = conn
        .pipeline(&pipe, "EXISTS")
        .await?
        .into_iter()
        .map(|r| if let Reply::Int(n) = r { n } else { 0 })
        .collect();
    Ok(batch
        .into_iter()
        .zip(exists)
        .map(|(p, exists)| {
            let outcome = if options.mode == Mode::Missing && (exists > 0 || p.absent) {
                Outcome::Kept
            } else if p.absent {
                Outcome::Deleted
            } else {
                predicted(kind, &p.payload, options)
            };
            (p.kb_id, p.category, p.key, outcome)
        })
        .collect())
}

/// What writing a payload would do on this target, short of writing it.
fn predicted(kind: &ServerKind, payload: &[u8], options: &RestoreOptions) -> Outcome {
    let value = match dump::decode(payload) {
        Ok(v) => v,
        Err(e) => return Outcome::Failed(format!("cannot decode the payload: {e}")),
    };
    match plan_sized(kind, payload, options.force_logical, options.max_payload) {
        // Only module values have no command form (see `Value::to_commands`);
        // building the commands just to count them would copy the value.
        Method::Logical if value.redis_type() == dump::RedisType::Module => {
            Outcome::Failed(format!(
                "the target refused the payload and a {} value cannot be re-created with commands",
                value.redis_type().name()
            ))
        }
        Method::Logical => {
            let gaps = value.command_gaps(&CommandOptions::for_server(kind));
            if gaps.is_empty() {
                Outcome::Restored(Method::Logical)
            } else {
                Outcome::Lossy(gaps.join("; "))
            }
        }
        method => Outcome::Restored(method),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_keys_share_the_hash_slot_of_their_key() {
        assert!(temp_key(b"user:{42}:x").starts_with(b"__kbdump_tmp:{42}:"));
        assert!(temp_key(b"kb:emotives:p").starts_with(b"__kbdump_tmp:{kb:emotives:p}:"));
        assert_ne!(temp_key(b"k"), temp_key(b"k"));
    }
}
