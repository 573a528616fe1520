//! Writing one batch: its undo first, then deletions for absent records,
//! raw or retagged RESTOREs, and the logical path for what the target
//! refuses; or, in a dry run, what would happen. Merge mode takes its own
//! way from here (`merge`).

use redis::Value as Reply;

use super::logical::restore_logical;
use super::merge::write_merge;
use super::{Mode, Outcome, Pending, RestoreError, RestoreOptions, Results, Target};
use crate::clock::Clock;
use crate::format::archive::Record;
use crate::format::dump::{self, CommandOptions, ServerKind};
use crate::net::redis::{Dumped, RedisConn, RedisIoError};
use crate::plan::{plan_sized, Method};
use crate::sink::archive::UndoLog;

pub(super) async fn write_batch(
    target: &Target,
    batch: Vec<Pending>,
    options: &RestoreOptions,
    undo: Option<&UndoLog>,
) -> Result<Results, RestoreError> {
    let mut conn = target.conn.clone();
    if options.mode == Mode::Merge {
        return write_merge(&mut conn, &target.kind, batch, options, undo).await;
    }
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
            let every: Vec<&Pending> = batch.iter().collect();
            save_for_undo(&mut conn, &every, undo, &options.clock, Saved::Every).await?;
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
    kept_despite_oom(conn, &batch, &mut outcomes, options.mode).await?;
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
pub(super) async fn restore_raw(
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

/// Under `maxmemory` the server refuses RESTORE (and the commands of the
/// logical path) with OOM before it looks at the key, so in missing mode a
/// key that is already there fails instead of answering BUSYKEY. Such keys
/// are checked with EXISTS (which is never refused for memory): a present
/// key was kept, as missing mode promises, and a rerun after an
/// out-of-memory run does not report the keys it already wrote as failed.
async fn kept_despite_oom(
    conn: &mut RedisConn,
    batch: &[Pending],
    outcomes: &mut [Option<Outcome>],
    mode: Mode,
) -> Result<(), RedisIoError> {
    let refused: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, Some(Outcome::Failed(reason)) if reason.contains("OOM")))
        .map(|(i, _)| i)
        .collect();
    if mode != Mode::Missing || refused.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for &i in &refused {
        pipe.cmd("EXISTS").arg(&batch[i].key);
    }
    let replies = conn.pipeline(&pipe, "EXISTS").await?;
    for (i, reply) in refused.into_iter().zip(replies) {
        if matches!(reply, Reply::Int(n) if n > 0) {
            outcomes[i] = Some(Outcome::Kept);
        }
    }
    Ok(())
}

/// Errors that the logical path would hit too, so there is no point in
/// falling back.
fn is_fatal_reply(code: &str, details: Option<&str>) -> bool {
    matches!(code, "OOM" | "NOPERM" | "READONLY" | "MISCONF" | "LOADING")
        || details.is_some_and(|d| d.contains("OOM command not allowed"))
}

/// Which states of the keys [`save_for_undo`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Saved {
    /// Every key: its value, or that it does not exist.
    Every,
    /// Only the keys that do not exist (a merge restores those; one that
    /// exists is left as it is).
    Absent,
}

/// Saves the current state of the keys (their value, or that they do not
/// exist: an absent record), and returns once the undo archive has them on
/// disk: only then may the batch overwrite or create them.
pub(super) async fn save_for_undo(
    conn: &mut RedisConn,
    batch: &[&Pending],
    undo: &UndoLog,
    clock: &Clock,
    saved: Saved,
) -> Result<(), RestoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let keys: Vec<Vec<u8>> = batch.iter().map(|p| p.key.clone()).collect();
    let dumped = conn.dump_keys(&keys).await?;
    let read_at = clock.now_ms();
    let records: Vec<Record> = batch
        .iter()
        .zip(dumped)
        .filter_map(|(pending, dumped)| match dumped {
            Dumped::Present { .. } if saved == Saved::Absent => None,
            Dumped::Present { payload, pttl_ms } => Some(Record {
                key: pending.key.clone(),
                kb_id: pending.kb_id.clone(),
                category: pending.category,
                redis_type: dump::payload_type_name(&payload).to_string(),
                expire_at_ms: pttl_ms.map(|ms| read_at + ms),
                payload,
            }),
            Dumped::Vanished => Some(Record::absent(
                pending.key.clone(),
                pending.kb_id.clone(),
                pending.category,
            )),
        })
        .collect();
    if records.is_empty() {
        return Ok(());
    }
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
pub(super) fn predicted(kind: &ServerKind, payload: &[u8], options: &RestoreOptions) -> Outcome {
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
