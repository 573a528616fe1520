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
//!
//! Merge mode puts archived values together with live ones per category
//! policy; it lives in `merge` and joins at one point of `write`.
//!
//! [`restore`] reads the source into batches and keeps a few in flight
//! (`run`); each batch saves its undo, then is written (`write`), with the
//! logical path in `logical`; [`Target`] is the server and what it accepts.

mod logical;
mod merge;
mod run;
mod target;
mod write;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clock::Clock;
use crate::kato::{display_bytes, Category};
use crate::net::redis::RedisIoError;
use crate::plan::merge::Policies;
pub use crate::plan::{estimated_memory, renamed, Method};
pub use crate::records::{Failure, SourceItem};
use crate::stop::Stop;
pub use merge::{Plan, PlanEntry, Planned, MAX_ROUNDS, PLAN_LIMIT};
pub use run::restore;
pub use target::Target;
use target::DEFAULT_MAX_BULK;

/// What happens to keys that already exist on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Never touch an existing key (RESTORE without REPLACE).
    #[default]
    Missing,
    /// Overwrite existing keys.
    Replace,
    /// Put archived and live values together per category policy
    /// ([`RestoreOptions::policies`]); missing keys are restored.
    Merge,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Missing => "missing",
            Mode::Replace => "replace",
            Mode::Merge => "merge",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
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
    /// Merge mode: the live key now holds its merge with the archived value.
    Merged,
    /// Merge mode: the live or the archived value does not fit the
    /// category's policy (the reason says how); the live value stays.
    Conflict(String),
    /// A merge-mode dry run: what would happen, with the values.
    Planned(Box<Planned>),
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
    /// Merge mode: live keys changed by their merge with the archive.
    pub merged: u64,
    /// Merge mode: keys whose values do not fit their policy (kept live).
    pub conflicts: u64,
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
            Outcome::Merged => self.merged += 1,
            Outcome::Conflict(_) => self.conflicts += 1,
            Outcome::Planned(planned) => self.add(&planned.outcome),
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
        self.merged += other.merged;
        self.conflicts += other.conflicts;
    }
}

/// What a restore did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoreSummary {
    pub tallies: BTreeMap<(Vec<u8>, Category), Counts>,
    pub failures: Vec<Failure>,
    /// Keys restored with a loss of detail (see [`Outcome::Lossy`]).
    pub warnings: Vec<Failure>,
    /// Parts of the source that could not be read (damaged blocks, bad
    /// rows): their keys are not restored, so they count as failed.
    pub damaged: u64,
    /// A stop was requested ([`RestoreOptions::stop`]): the source was not
    /// read to its end.
    pub interrupted: bool,
    /// Merge mode: keys left as they were because their values do not fit
    /// their policy.
    pub conflicts: Vec<Failure>,
    /// A merge-mode dry run: the keys it would change, with their values.
    pub plan: Plan,
    /// kb_ids that `--rename-kb` wrote into which already held keys before
    /// the run (filled by the caller's check before writing).
    pub rename_targets: Vec<KbOccupancy>,
    /// Onto a cluster: the keys written (restored, merged or deleted) on
    /// each master (`host:port`), by the slot map as it was when each
    /// batch was written.
    pub per_master: BTreeMap<String, u64>,
}

/// A kb_id on the target and the keys it held before a run wrote into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KbOccupancy {
    #[serde(serialize_with = "as_display")]
    pub kb_id: Vec<u8>,
    pub existing_keys: u64,
}

fn as_display<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&display_bytes(bytes))
}

impl RestoreSummary {
    /// The counts over every kb_id and category; damaged parts of the
    /// source count as failed.
    pub fn total(&self) -> Counts {
        let mut total = Counts::default();
        self.tallies.values().for_each(|c| total.merge(c));
        total.failed += self.damaged;
        total
    }

    pub fn has_failures(&self) -> bool {
        !self.failures.is_empty()
    }

    pub fn has_conflicts(&self) -> bool {
        !self.conflicts.is_empty()
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
    /// Once requested, no new batch starts; the batches in flight finish
    /// and the summary says [`RestoreSummary::interrupted`].
    pub stop: Stop,
    /// Merge mode: each category's policy.
    pub policies: Policies,
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
            stop: Stop::never(),
            policies: Policies::default(),
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
    #[error(
        "the target {address} is a read-only replica of {master}: it refuses every write; \
         restore into the master ({master}) instead, or promote this server first (REPLICAOF NO ONE)"
    )]
    ReadOnlyReplica { address: String, master: String },
    #[error("a restore task stopped unexpectedly")]
    TaskGone,
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
