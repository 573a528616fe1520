//! Merge mode of the Redis sink (`--mode merge`): each archived key is put
//! together with its live counterpart by its category's policy
//! ([`crate::plan::merge`]), atomically per key against the server's other
//! clients, so a KATO `INCR` during the merge is never lost:
//!
//! - **max**: one script reads the live count and raises it only if the
//!   archived one is larger (`SET … KEEPTTL`), in a single step;
//! - **union** of hash fields or set members: one script checks the key's
//!   type, then `HSETNX` per field (a live field always wins) or `SADD`;
//! - **union** of KATO metadata: merged here from the live value read, then
//!   written by a compare-and-set script that writes only if the live
//!   value is still the one that was read;
//! - **replace**: `RESTORE … REPLACE`, as replace mode does;
//! - **keep**, and every key missing on the target: `RESTORE` without
//!   `REPLACE`, as missing mode does.
//!
//! A key that changed between the read and the write (it appeared, it
//! vanished, its metadata changed) is read and merged again in the next
//! round; after [`MAX_ROUNDS`] it is a conflict. Scripts are loaded once
//! per pipeline (`SCRIPT LOAD`) and run by hash (`EVALSHA`). A merged key
//! keeps its live expiry.
//!
//! A round is `plan` (read the live keys, decide), then the keys about to
//! change are saved for undo (their values, and, for the keys it restores,
//! that they did not exist), then `apply` (write). A key is saved once per
//! batch, in the state the merge first read, however many rounds it takes.
//! Records of absent keys (an undo archive's) are kept as missing mode
//! keeps them.

use std::collections::HashSet;
use std::sync::LazyLock;

use redis::Value as Reply;
use serde::Serialize;
use serde_json::Value as Json;

use super::logical::restore_logical;
use super::write::{predicted, restore_raw, save_for_undo, Saved};
use super::{Mode, Outcome, Pending, RestoreError, RestoreOptions, Results};
use crate::format::dump::{self, ServerKind, Value};
use crate::kato::{display_bytes, Category};
use crate::net::redis::{Dumped, RedisConn};
use crate::plan::merge::{decide, Decision, Merge, Policy};
use crate::plan::plan_sized;
use crate::sink::archive::UndoLog;

/// Rounds a key may take before a live value that keeps changing under
/// the merge is given up as a conflict.
pub const MAX_ROUNDS: u32 = 5;

/// Keys a dry run lists with their values; the rest are counted.
pub const PLAN_LIMIT: usize = 100;

/// A merge-mode dry run's view of one key: what would happen, and the
/// values before and after (in the JSON form of [`Value::to_json`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub outcome: Outcome,
    pub policy: Policy,
    pub old: Option<Json>,
    pub new: Option<Json>,
}

/// One key of a dry run's plan, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanEntry {
    pub kb_id: String,
    pub category: Category,
    pub key: String,
    /// `restore` (missing on the target), `merge`, `replace`, `conflict`
    /// or `fail`.
    pub action: &'static str,
    pub policy: Policy,
    /// The live value; `null` when the key is missing.
    pub old: Option<Json>,
    /// What the key would hold; `null` for a conflict (the live value stays).
    pub new: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A dry run's plan: the first [`PLAN_LIMIT`] keys that would change or
/// conflict, with their values, and how many more there are. Kept and
/// expired keys are only counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub keys: Vec<PlanEntry>,
    pub omitted: u64,
}

impl Plan {
    /// Notes a planned key and returns the outcome to count for it.
    pub(super) fn note(
        &mut self,
        kb_id: &[u8],
        category: Category,
        key: &[u8],
        outcome: Outcome,
    ) -> Outcome {
        let Outcome::Planned(planned) = outcome else {
            return outcome;
        };
        let Planned {
            outcome,
            policy,
            old,
            new,
        } = *planned;
        let (action, reason) = match &outcome {
            Outcome::Restored(_) | Outcome::Lossy(_) => ("restore", None),
            Outcome::Merged if policy == Policy::Replace => ("replace", None),
            Outcome::Merged => ("merge", None),
            Outcome::Conflict(why) => ("conflict", Some(why.clone())),
            Outcome::Failed(why) => ("fail", Some(why.clone())),
            _ => return outcome,
        };
        if self.keys.len() < PLAN_LIMIT {
            self.keys.push(PlanEntry {
                kb_id: display_bytes(kb_id),
                category,
                key: display_bytes(key),
                action,
                policy,
                old,
                new,
                reason,
            });
        } else {
            self.omitted += 1;
        }
        outcome
    }
}

/// Merge mode's batch: each round reads the live keys and decides, saves
/// the keys about to change for undo, then writes; the keys that changed
/// under it in between go round again.
pub(super) async fn write_merge(
    conn: &mut RedisConn,
    kind: &ServerKind,
    mut batch: Vec<Pending>,
    options: &RestoreOptions,
    undo: Option<&UndoLog>,
) -> Result<Results, RestoreError> {
    let mut results = Results::new();
    let mut saved = HashSet::new();
    for round in 0.. {
        let plan = plan(conn, kind, batch, options, round).await?;
        if let Some(undo) = undo {
            save_round(conn, &plan, undo, options, &mut saved).await?;
        }
        let (done, again) = apply(conn, kind, plan, options).await?;
        results.extend(done);
        if again.is_empty() {
            break;
        }
        batch = again;
    }
    Ok(results)
}

/// Saves for undo the keys of `round` not saved yet: the live keys it
/// changes, with their values, and the keys it restores that do not exist
/// (a restore leaves an existing key as it is).
async fn save_round(
    conn: &mut RedisConn,
    round: &Round,
    undo: &UndoLog,
    options: &RestoreOptions,
    saved: &mut HashSet<Vec<u8>>,
) -> Result<(), RestoreError> {
    let changing = not_saved_yet(&round.changing, saved);
    let missing = not_saved_yet(&round.missing, saved);
    let clock = &options.clock;
    save_for_undo(conn, &changing, undo, clock, Saved::Every).await?;
    save_for_undo(conn, &missing, undo, clock, Saved::Absent).await
}

/// The keys of `keys` not in `saved`, now noted there.
fn not_saved_yet<'a>(keys: &'a [Pending], saved: &mut HashSet<Vec<u8>>) -> Vec<&'a Pending> {
    keys.iter()
        .filter(|p| saved.insert(p.key.clone()))
        .collect()
}

/// One round over a batch: what is settled, and what [`apply`] writes.
#[derive(Default)]
struct Round {
    /// Settled without a write (kept, conflicts, expired) or, in a dry run,
    /// every key.
    settled: Results,
    /// Keys to `RESTORE` without `REPLACE`.
    missing: Vec<Pending>,
    /// Per missing key: merge it next round if it turns out to exist (it
    /// appeared meanwhile), rather than count it as kept.
    merge_if_present: Vec<bool>,
    /// Live keys this round changes; the sink saves them for undo first.
    changing: Vec<Pending>,
    /// The change of each of `changing`.
    merges: Vec<Merge>,
}

impl Round {
    fn settle(&mut self, pending: Pending, outcome: Outcome) {
        self.settled
            .push((pending.kb_id, pending.category, pending.key, outcome));
    }

    fn restore_if_missing(&mut self, pending: Pending, merge_if_present: bool) {
        self.missing.push(pending);
        self.merge_if_present.push(merge_if_present);
    }
}

/// Reads the live keys of `batch` and decides, per key, what its policy
/// makes of it. `round` counts the times these keys changed under the
/// merge already.
async fn plan(
    conn: &mut RedisConn,
    kind: &ServerKind,
    batch: Vec<Pending>,
    options: &RestoreOptions,
    round: u32,
) -> Result<Round, RestoreError> {
    let mut out = Round::default();
    let now = options.clock.now_ms();
    let (batch, expired): (Vec<Pending>, Vec<Pending>) = batch
        .into_iter()
        .partition(|p| p.expire_at_ms.is_none_or(|at| at > now));
    for pending in expired {
        out.settle(pending, Outcome::Expired);
    }
    // An absent record (an undo archive's) deletes nothing in merge mode,
    // as in missing mode: it counts as kept.
    let (absent, batch): (Vec<Pending>, Vec<Pending>) = batch.into_iter().partition(|p| p.absent);
    for pending in absent {
        out.settle(pending, Outcome::Kept);
    }
    if round >= MAX_ROUNDS {
        for pending in batch {
            out.settle(pending, Outcome::Conflict(changing_too_often()));
        }
        return Ok(out);
    }
    // Keys whose live value stays need no read: RESTORE without REPLACE
    // writes them only where missing. A dry run reads them to tell.
    let (to_read, unread): (Vec<Pending>, Vec<Pending>) = batch
        .into_iter()
        .partition(|p| options.dry_run || options.policies.of(p.category) != Policy::Keep);
    for pending in unread {
        out.restore_if_missing(pending, false);
    }
    if to_read.is_empty() {
        return Ok(out);
    }
    let keys: Vec<&[u8]> = to_read.iter().map(|p| p.key.as_slice()).collect();
    let live = conn.dump_keys(&keys).await?;
    for (pending, live) in to_read.into_iter().zip(live) {
        match live {
            Dumped::Present { payload, .. } => present(&mut out, kind, pending, &payload, options),
            Dumped::Vanished => missing(&mut out, kind, pending, options),
        }
    }
    Ok(out)
}

fn changing_too_often() -> String {
    format!(
        "the live value changed under the merge {MAX_ROUNDS} times in a row; it was kept \
         as it is: rerun the merge when the key is quieter"
    )
}

/// A key missing on the target: restored as in missing mode.
fn missing(out: &mut Round, kind: &ServerKind, pending: Pending, options: &RestoreOptions) {
    let policy = options.policies.of(pending.category);
    if !options.dry_run {
        return out.restore_if_missing(pending, policy != Policy::Keep);
    }
    let planned = Planned {
        outcome: predicted(kind, &pending.payload, options),
        policy,
        old: None,
        new: dump::decode(&pending.payload).ok().map(|v| v.to_json()),
    };
    out.settle(pending, Outcome::Planned(Box::new(planned)));
}

/// A key present on the target: its policy decides.
fn present(
    out: &mut Round,
    kind: &ServerKind,
    pending: Pending,
    live: &[u8],
    options: &RestoreOptions,
) {
    let policy = options.policies.of(pending.category);
    let archived = match dump::decode(&pending.payload) {
        Ok(v) => v,
        Err(e) => {
            let why = format!("cannot decode the payload: {e}");
            return out.settle(pending, Outcome::Failed(why));
        }
    };
    let live = match dump::decode(live) {
        Ok(v) => v,
        Err(e) => {
            let why = format!("cannot decode the live value: {e}; it was kept as it is");
            return out.settle(pending, Outcome::Conflict(why));
        }
    };
    let decision = decide(policy, &live, &archived);
    if options.dry_run {
        // A replace takes the restore path, which may fail on this target.
        let replace = decision == Decision::Write(Merge::Replace);
        let replaced = replace.then(|| match predicted(kind, &pending.payload, options) {
            Outcome::Restored(_) => Outcome::Merged,
            other => other,
        });
        let planned = planned(policy, decision, replaced, &live, &archived);
        return out.settle(pending, planned);
    }
    match decision {
        Decision::Unchanged => out.settle(pending, Outcome::Kept),
        Decision::Conflict(why) => out.settle(pending, Outcome::Conflict(why)),
        Decision::Write(merge) => {
            out.changing.push(pending);
            out.merges.push(merge);
        }
    }
}

/// A dry run's outcome for a live key, with the values.
/// `replaced`: what the restore path would do, for a replace.
fn planned(
    policy: Policy,
    decision: Decision,
    replaced: Option<Outcome>,
    live: &Value,
    archived: &Value,
) -> Outcome {
    let (outcome, new) = match decision {
        Decision::Unchanged => return Outcome::Kept,
        Decision::Conflict(why) => (Outcome::Conflict(why), None),
        Decision::Write(merge) => (
            replaced.unwrap_or(Outcome::Merged),
            Some(merge.result(live, archived).to_json()),
        ),
    };
    Outcome::Planned(Box::new(Planned {
        outcome,
        policy,
        old: Some(live.to_json()),
        new,
    }))
}

/// Writes a round: the settled outcomes, and the keys that changed under
/// it, for the next round.
async fn apply(
    conn: &mut RedisConn,
    kind: &ServerKind,
    round: Round,
    options: &RestoreOptions,
) -> Result<(Results, Vec<Pending>), RestoreError> {
    let Round {
        mut settled,
        missing,
        merge_if_present,
        changing,
        merges,
    } = round;
    let mut again = Vec::new();
    let outcomes = restore_keys(conn, kind, &missing, options, Mode::Missing).await?;
    for ((pending, merge), outcome) in missing.into_iter().zip(merge_if_present).zip(outcomes) {
        match outcome {
            // It appeared since it was read: merge it.
            Outcome::Kept if merge => again.push(pending),
            outcome => settled.push((pending.kb_id, pending.category, pending.key, outcome)),
        }
    }
    let (replaced, scripted): (Vec<_>, Vec<_>) = changing
        .into_iter()
        .zip(merges)
        .partition(|(_, m)| *m == Merge::Replace);
    let replaced: Vec<Pending> = replaced.into_iter().map(|(p, _)| p).collect();
    let outcomes = restore_keys(conn, kind, &replaced, options, Mode::Replace).await?;
    for (pending, outcome) in replaced.into_iter().zip(outcomes) {
        let outcome = match outcome {
            Outcome::Restored(_) => Outcome::Merged,
            other => other,
        };
        settled.push((pending.kb_id, pending.category, pending.key, outcome));
    }
    let written = run_scripts(conn, &scripted, options).await?;
    for ((pending, _), written) in scripted.into_iter().zip(written) {
        match written {
            Written::Done(outcome) => {
                settled.push((pending.kb_id, pending.category, pending.key, outcome))
            }
            Written::Again => again.push(pending),
        }
    }
    Ok((settled, again))
}

/// RESTOREs keys (`REPLACE` in replace mode) on the path each takes.
async fn restore_keys(
    conn: &mut RedisConn,
    kind: &ServerKind,
    keys: &[Pending],
    options: &RestoreOptions,
    mode: Mode,
) -> Result<Vec<Outcome>, RestoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let methods: Vec<_> = keys
        .iter()
        .map(|p| plan_sized(kind, &p.payload, options.force_logical, options.max_payload))
        .collect();
    let mut outcomes = restore_raw(conn, kind, keys, &methods, mode).await?;
    let logical_options = RestoreOptions {
        mode,
        ..options.clone()
    };
    let mut out = Vec::with_capacity(keys.len());
    for (pending, outcome) in keys.iter().zip(outcomes.iter_mut()) {
        out.push(match outcome.take() {
            Some(o) => o,
            None => restore_logical(conn, kind, pending, &logical_options).await?,
        });
    }
    Ok(out)
}

/// What a script did to one key.
enum Written {
    Done(Outcome),
    /// The key changed between the read and the write: read it again.
    Again,
}

/// `KEYS[1]`: a frequency; `ARGV[1]`: the archived count, an integer in
/// the form Redis writes. Raises the live count to it if it is lower, in
/// one step. Integers are compared as digit strings, byte by byte: Lua
/// numbers are doubles (exact only to 2^53), and Lua's string `<` follows
/// the server's locale. A live value that is no longer an integer (or no
/// longer there) is read and decided again.
const RAISE: &str = r#"
local live = redis.pcall('GET', KEYS[1])
if type(live) ~= 'string' then return {'again'} end
local function above(a, b)
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return false
end
local function int(s)
  if s == '0' then return true end
  local neg, digits = string.match(s, '^(%-?)([1-9]%d*)$')
  if not digits or #digits > 19 then return false end
  local limit = neg == '-' and '9223372036854775808' or '9223372036854775807'
  return #digits < 19 or not above(digits, limit)
end
if not int(live) then return {'again'} end
local function greater(a, b)
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then return nb end
  if na then a, b = string.sub(b, 2), string.sub(a, 2) end
  if #a ~= #b then return #a > #b end
  return above(a, b)
end
if greater(ARGV[1], live) then
  redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
  return {'merged'}
end
return {'kept'}
"#;

/// `KEYS[1]`: a string; `ARGV[1]`: its value as read; `ARGV[2]`: the new
/// value. Writes only if the live value is still the one read.
const SWAP: &str = r#"
local live = redis.pcall('GET', KEYS[1])
if type(live) ~= 'string' or live ~= ARGV[1] then return {'again'} end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return {'merged'}
"#;

/// `KEYS[1]`: a hash; `ARGV`: field, value, …. Adds each field the live
/// hash lacks; a live field always wins.
const ADD_FIELDS: &str = r#"
if redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' then return {'again'} end
local added = 0
for i = 1, #ARGV, 2 do
  added = added + redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
end
if added > 0 then return {'merged'} end
return {'kept'}
"#;

/// `KEYS[1]`: a set; `ARGV`: members. Adds those the live set lacks.
const ADD_MEMBERS: &str = r#"
if redis.call('TYPE', KEYS[1])['ok'] ~= 'set' then return {'again'} end
if redis.call('SADD', KEYS[1], unpack(ARGV)) > 0 then return {'merged'} end
return {'kept'}
"#;

static SCRIPTS: LazyLock<[(&str, redis::Script); 4]> = LazyLock::new(|| {
    [RAISE, SWAP, ADD_FIELDS, ADD_MEMBERS].map(|code| (code, redis::Script::new(code)))
});

/// The script of a change and its argument lists (more than one when a
/// long list of fields or members is split into bounded calls; each call
/// is atomic, and adding fields or members is the same in any order).
fn calls(merge: &Merge, options: &RestoreOptions) -> (usize, Vec<Vec<Vec<u8>>>) {
    match merge {
        Merge::Raise { to } => (0, vec![vec![to.to_string().into_bytes()]]),
        Merge::Swap { from, to } => (1, vec![vec![from.clone(), to.clone()]]),
        Merge::AddFields(fields) => {
            let pairs: Vec<Vec<Vec<u8>>> = fields
                .iter()
                .map(|(f, v)| vec![f.clone(), v.clone()])
                .collect();
            (2, chunked(pairs, options))
        }
        Merge::AddMembers(members) => {
            let singles: Vec<Vec<Vec<u8>>> = members.iter().map(|m| vec![m.clone()]).collect();
            (3, chunked(singles, options))
        }
        Merge::Replace => unreachable!("replaced keys are restored, not scripted"),
    }
}

/// Groups of arguments within the chunk limits of the logical path.
fn chunked(items: Vec<Vec<Vec<u8>>>, options: &RestoreOptions) -> Vec<Vec<Vec<u8>>> {
    let mut chunks: Vec<Vec<Vec<u8>>> = Vec::new();
    let (mut elements, mut bytes) = (0usize, 0usize);
    for item in items {
        let size: usize = item.iter().map(Vec::len).sum();
        let full = elements >= options.max_elements.max(1) || bytes + size > options.max_bytes;
        if chunks.is_empty() || (full && elements > 0) {
            chunks.push(Vec::new());
            (elements, bytes) = (0, 0);
        }
        elements += 1;
        bytes += size;
        chunks.last_mut().expect("a chunk").extend(item);
    }
    chunks
}

/// Runs the scripted changes in one pipeline: the scripts it needs are
/// loaded first, so `EVALSHA` finds them.
async fn run_scripts(
    conn: &mut RedisConn,
    changes: &[(Pending, Merge)],
    options: &RestoreOptions,
) -> Result<Vec<Written>, RestoreError> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for (code, _) in SCRIPTS.iter() {
        pipe.cmd("SCRIPT").arg("LOAD").arg(*code);
    }
    let mut owners = Vec::new();
    for (i, (pending, merge)) in changes.iter().enumerate() {
        let (script, chunks) = calls(merge, options);
        for args in chunks {
            let cmd = pipe
                .cmd("EVALSHA")
                .arg(SCRIPTS[script].1.get_hash())
                .arg(1)
                .arg(&pending.key);
            for arg in args {
                cmd.arg(arg);
            }
            owners.push(i);
        }
    }
    let replies = conn.pipeline(&pipe, "merge scripts").await?;
    let mut written: Vec<Option<Written>> = (0..changes.len()).map(|_| None).collect();
    for (owner, reply) in owners.into_iter().zip(replies.iter().skip(SCRIPTS.len())) {
        let next = read_reply(reply);
        written[owner] = Some(match written[owner].take() {
            Some(before) => combine(before, next),
            None => next,
        });
    }
    Ok(written
        .into_iter()
        .map(|w| w.unwrap_or(Written::Done(Outcome::Kept)))
        .collect())
}

/// One key's result over the calls a long change was split into: read it
/// again if any call found it changed, failed if any failed, merged if
/// any added something.
fn combine(a: Written, b: Written) -> Written {
    let rank = |w: &Written| match w {
        Written::Again => 3,
        Written::Done(Outcome::Failed(_)) => 2,
        Written::Done(Outcome::Merged) => 1,
        Written::Done(_) => 0,
    };
    if rank(&b) > rank(&a) {
        b
    } else {
        a
    }
}

/// What one script call's reply says.
fn read_reply(reply: &Reply) -> Written {
    let status = match reply {
        Reply::Array(items) => items.first(),
        _ => None,
    };
    match status {
        Some(Reply::BulkString(s)) if s == b"merged" => Written::Done(Outcome::Merged),
        Some(Reply::BulkString(s)) if s == b"kept" => Written::Done(Outcome::Kept),
        Some(Reply::BulkString(s)) if s == b"again" => Written::Again,
        _ => match reply {
            // The script cache was flushed between the load and the call.
            Reply::ServerError(e) if e.code() == "NOSCRIPT" => Written::Again,
            Reply::ServerError(e) => Written::Done(Outcome::Failed(format!(
                "the merge script failed: {} {}",
                e.code(),
                e.details().unwrap_or("")
            ))),
            other => Written::Done(Outcome::Failed(format!(
                "the merge script answered something unexpected: {other:?}"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize, size: usize) -> Vec<Vec<Vec<u8>>> {
        (0..n).map(|_| vec![vec![b'x'; size]]).collect()
    }

    fn pending(key: &[u8]) -> Pending {
        Pending {
            kb_id: b"kb".to_vec(),
            category: Category::Frequency,
            key: key.to_vec(),
            expire_at_ms: None,
            payload: Vec::new(),
            absent: false,
        }
    }

    /// A key that goes round again is not saved for undo a second time: an
    /// archive holds a key once, in the state the merge first read.
    #[test]
    fn a_key_is_saved_for_undo_once_per_batch() {
        let mut saved = HashSet::new();
        let first = [pending(b"kb:frequency:a"), pending(b"kb:frequency:b")];
        let keys = |v: Vec<&Pending>| v.iter().map(|p| p.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(not_saved_yet(&first, &mut saved)).len(), 2);
        let again = [pending(b"kb:frequency:b"), pending(b"kb:frequency:c")];
        assert_eq!(
            keys(not_saved_yet(&again, &mut saved)),
            vec![b"kb:frequency:c".to_vec()]
        );
    }

    #[test]
    fn long_lists_are_split_within_the_limits() {
        let options = RestoreOptions {
            max_elements: 3,
            max_bytes: 10,
            ..RestoreOptions::default()
        };
        let sizes = |c: Vec<Vec<Vec<u8>>>| c.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(sizes(chunked(items(7, 1), &options)), vec![3, 3, 1]);
        assert_eq!(sizes(chunked(items(3, 4), &options)), vec![2, 1]);
        // One item larger than the byte limit still goes, alone.
        assert_eq!(sizes(chunked(items(2, 20), &options)), vec![1, 1]);
    }

    #[test]
    fn merged_wins_over_kept_and_again_over_everything_per_key() {
        assert!(matches!(
            read_reply(&Reply::Array(vec![Reply::BulkString(b"again".to_vec())])),
            Written::Again
        ));
        assert!(matches!(
            read_reply(&Reply::Int(3)),
            Written::Done(Outcome::Failed(_))
        ));
    }
}
