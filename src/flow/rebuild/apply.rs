/*!
Pipelined Redis writes for a rebuild, with write/skip accounting.

Commands are queued into pipelines of about [`Sink::BATCH`] entries; up to
[`Sink::IN_FLIGHT`] pipelines are on the wire at once so that computing the
next batch overlaps the server's work on the previous one.

Each write is either *plain* (SET, HSET, SADD: always counted as written)
or *conditional* (SET NX, HSETNX: the reply says written or skipped). In a
dry run nothing is written: plain writes are only counted, and each
conditional write becomes the matching read (EXISTS, HEXISTS) whose reply
tells whether it would have been written.

Most keys go through [`Sink::put`], which groups consecutive string
writes of one category (on a cluster, of one hash slot too:
[`Sink::slot_bound`]) into one variadic command of up to
[`Sink::GROUP_KEYS`] keys: `MSET` for plain writes, `EXISTS k1 k2 ...` for
dry-run probes (the reply counts the existing ones), and `MSETNX` for
conditional writes. `MSETNX` is all-or-nothing: when it answers 0 (some
key existed, so nothing was written) its keys are retried one by one with
`SET NX`, and the sink switches to `SET NX` for the rest of the run, so the
NX semantics stay exact per key. One command per group instead of one per
key is what makes the difference, on both sides of the connection: fewer
allocations here, and fewer command dispatches and replies in Redis.

A set the rebuild creates can go out whole as a DUMP payload
([`Sink::restore_new_set`]): `RESTORE key 0 payload` without `REPLACE`,
which loads the members from one buffer instead of parsing them as
arguments (measured on Redis 7.0: about 35 % less server CPU than `SADD`
of the same members). Without `REPLACE` it only ever creates the key: when
the key exists (`BUSYKEY`), the members are sent again as `SADD`, so an
existing set gets the union, as with `SADD` alone.

Each pipeline is spawned as its own task when it is queued, so the server
already works on it while the next one is built.
*/

use crate::format::dump;
use crate::plan::slot::hash_slot;
use futures::stream::{FuturesUnordered, StreamExt};
use redis::{aio::ConnectionLike, Arg, Cmd, ErrorKind, Pipeline, RedisError, RedisResult, Value};
use std::collections::BTreeMap;
use tokio::task::JoinHandle;

/// Written and skipped entries of one category. An entry is a key, or one
/// field of a `symbols:*` hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Entries written (or that a dry run would write).
    pub written: u64,
    /// Entries left alone because they already existed.
    pub skipped: u64,
}

enum Reply {
    /// Counted when queued; the reply is not interesting.
    Ignore,
    /// SET NX / HSETNX: OK or 1 means written.
    Conditional(&'static str),
    /// Dry-run EXISTS / HEXISTS: 1 means it would be skipped.
    Probe(&'static str),
    /// Dry-run `EXISTS k1 .. kn` of `n` keys: the reply counts the skips.
    ProbeMany(&'static str, u64),
    /// `MSETNX` of the command's pairs: 1 means all written; 0 means none
    /// was, and they are retried one by one.
    AllOrNothing(&'static str, Cmd),
    /// `RESTORE key 0 payload` of a new set: `BUSYKEY` means the key
    /// exists, and the members are added with `SADD` instead.
    NewSet(Cmd),
}

/// An open variadic command (see [`Sink::put`]).
struct Group {
    cat: &'static str,
    nx: bool,
    cmd: Cmd,
    keys: u64,
    /// The hash slot of its keys, when they must share one (a cluster).
    slot: Option<u16>,
}

type Flight = JoinHandle<RedisResult<(Vec<Value>, Vec<Reply>)>>;

/// Members per `SADD`.
const SADD_CHUNK: usize = 4096;

/// Queues and sends rebuild writes.
pub struct Sink<C> {
    conn: C,
    dry_run: bool,
    pipe: Pipeline,
    replies: Vec<Reply>,
    /// Entries (keys or fields) in `pipe`.
    weight: usize,
    group: Option<Group>,
    /// An `MSETNX` found existing keys: use `SET NX` from now on.
    per_key_nx: bool,
    /// The target is a cluster: a variadic command holds keys of one hash
    /// slot only, as a cluster refuses one that spans slots (`CROSSSLOT`).
    slot_bound: bool,
    in_flight: FuturesUnordered<Flight>,
    counts: BTreeMap<&'static str, Counts>,
}

impl<C> Sink<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// Entries per pipeline.
    pub const BATCH: usize = 16384;
    /// Pipelines awaiting replies at once.
    pub const IN_FLIGHT: usize = 4;
    /// Keys per variadic command of [`Sink::put`].
    pub const GROUP_KEYS: u64 = 512;

    /// A sink writing through `conn`, or only counting when `dry_run`.
    pub fn new(conn: C, dry_run: bool) -> Self {
        Sink {
            conn,
            dry_run,
            pipe: new_pipe(),
            replies: Vec::new(),
            weight: 0,
            group: None,
            per_key_nx: false,
            slot_bound: false,
            in_flight: FuturesUnordered::new(),
            counts: BTreeMap::new(),
        }
    }

    /// Keeps each variadic command within one hash slot (for a cluster).
    pub fn slot_bound(mut self, bound: bool) -> Self {
        self.slot_bound = bound;
        self
    }

    /// Whether this is a dry run.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// A connection for reads outside the write pipeline.
    pub fn conn(&self) -> C {
        self.conn.clone()
    }

    /// Like [`Sink::set`], grouped with neighbouring writes of the same
    /// category and kind into one variadic command.
    pub async fn put(
        &mut self,
        cat: &'static str,
        key: &[u8],
        value: &[u8],
        nx: bool,
    ) -> RedisResult<()> {
        if (nx && self.per_key_nx && !self.dry_run) || (!nx && self.dry_run) {
            return self.set(cat, key, value, nx).await;
        }
        let slot = self.slot_bound.then(|| hash_slot(key));
        if self
            .group
            .as_ref()
            .is_some_and(|g| g.cat != cat || g.nx != nx || g.slot != slot)
        {
            self.close_group().await?;
        }
        let dry_run = self.dry_run;
        let group = self.group.get_or_insert_with(|| {
            let name = match (dry_run, nx) {
                (true, _) => "EXISTS",
                (false, true) => "MSETNX",
                (false, false) => "MSET",
            };
            let mut cmd = Cmd::with_capacity(1 + 2 * Self::GROUP_KEYS as usize, 64 * 1024);
            cmd.arg(name);
            Group {
                cat,
                nx,
                cmd,
                keys: 0,
                slot,
            }
        });
        group.cmd.arg(key);
        if !dry_run {
            group.cmd.arg(value);
        }
        group.keys += 1;
        if group.keys >= Self::GROUP_KEYS {
            self.close_group().await?;
        }
        Ok(())
    }

    /// Queues the open group, if any.
    async fn close_group(&mut self) -> RedisResult<()> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let reply = match (self.dry_run, group.nx) {
            (true, _) => Reply::ProbeMany(group.cat, group.keys),
            (false, true) => Reply::AllOrNothing(group.cat, group.cmd.clone()),
            (false, false) => {
                self.count(group.cat, group.keys, 0);
                Reply::Ignore
            }
        };
        self.pipe.add_command(group.cmd);
        self.weight += group.keys as usize - 1;
        self.queued(reply).await
    }

    /// `SET key value`, or `SET key value NX` when `nx`.
    pub async fn set(
        &mut self,
        cat: &'static str,
        key: &[u8],
        value: &[u8],
        nx: bool,
    ) -> RedisResult<()> {
        if nx {
            if self.dry_run {
                self.pipe.cmd("EXISTS").arg(key);
                return self.queued(Reply::Probe(cat)).await;
            }
            self.pipe.cmd("SET").arg(key).arg(value).arg("NX");
            return self.queued(Reply::Conditional(cat)).await;
        }
        self.count(cat, 1, 0);
        if self.dry_run {
            return Ok(());
        }
        self.pipe.cmd("SET").arg(key).arg(value);
        self.queued(Reply::Ignore).await
    }

    /// `HSETNX key field value`.
    pub async fn hset_nx(
        &mut self,
        cat: &'static str,
        key: &[u8],
        field: &[u8],
        value: &[u8],
    ) -> RedisResult<()> {
        if self.dry_run {
            self.pipe.cmd("HEXISTS").arg(key).arg(field);
            return self.queued(Reply::Probe(cat)).await;
        }
        self.pipe.cmd("HSETNX").arg(key).arg(field).arg(value);
        self.queued(Reply::Conditional(cat)).await
    }

    /// `HSET key f1 v1 f2 v2 ...`; each field counts as one entry.
    pub async fn hset_many(
        &mut self,
        cat: &'static str,
        key: &[u8],
        pairs: &[(&[u8], Vec<u8>)],
    ) -> RedisResult<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        self.count(cat, pairs.len() as u64, 0);
        if self.dry_run {
            return Ok(());
        }
        let cmd = self.pipe.cmd("HSET").arg(key);
        for (field, value) in pairs {
            cmd.arg(*field).arg(value.as_slice());
        }
        self.weight += pairs.len() - 1;
        self.queued(Reply::Ignore).await
    }

    /// `SADD key members...`, not counted (the caller counts set keys).
    pub async fn sadd(&mut self, key: &[u8], members: &[&[u8]]) -> RedisResult<()> {
        if self.dry_run || members.is_empty() {
            return Ok(());
        }
        self.pipe.cmd("SADD").arg(key).arg(members);
        self.weight += members.len() - 1;
        self.queued(Reply::Ignore).await
    }

    /// Creates the set `key` of `members` (distinct, at least one) from a
    /// plain-set payload sealed with `rdb_version`, or adds them with
    /// `SADD` if the key exists by then; not counted (the caller counts
    /// set keys).
    pub async fn restore_new_set(
        &mut self,
        key: &[u8],
        members: &[&[u8]],
        rdb_version: u16,
    ) -> RedisResult<()> {
        if self.dry_run || members.is_empty() {
            return Ok(());
        }
        let payload = dump::encode_set(members.iter().copied(), rdb_version);
        let mut cmd = redis::cmd("RESTORE");
        cmd.arg(key).arg(0).arg(payload);
        self.pipe.add_command(cmd.clone());
        self.weight += members.len() - 1;
        self.queued(Reply::NewSet(cmd)).await
    }

    /// Adds to a category's counters directly.
    pub fn count(&mut self, cat: &'static str, written: u64, skipped: u64) {
        let c = self.counts.entry(cat).or_default();
        c.written += written;
        c.skipped += skipped;
    }

    /// `EXISTS` for each key, answered now (used before SADD in
    /// only-missing mode; works in dry runs too, being a read).
    pub async fn exists(&mut self, keys: &[Vec<u8>]) -> RedisResult<Vec<bool>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(Self::BATCH) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("EXISTS").arg(key.as_slice());
            }
            let replies: Vec<i64> = pipe.query_async(&mut self.conn).await?;
            out.extend(replies.into_iter().map(|n| n > 0));
        }
        Ok(out)
    }

    async fn queued(&mut self, reply: Reply) -> RedisResult<()> {
        self.replies.push(reply);
        self.weight += 1;
        if self.weight >= Self::BATCH {
            self.send().await?;
        }
        Ok(())
    }

    async fn send(&mut self) -> RedisResult<()> {
        if self.replies.is_empty() {
            return Ok(());
        }
        while self.in_flight.len() >= Self::IN_FLIGHT {
            self.settle_one().await?;
        }
        let pipe = std::mem::replace(&mut self.pipe, new_pipe());
        let replies = std::mem::take(&mut self.replies);
        self.weight = 0;
        let mut conn = self.conn.clone();
        self.in_flight.push(tokio::spawn(async move {
            let values: Vec<Value> = pipe.query_async(&mut conn).await?;
            Ok((values, replies))
        }));
        Ok(())
    }

    async fn settle_one(&mut self) -> RedisResult<()> {
        if let Some(joined) = self.in_flight.next().await {
            let (values, replies) = joined.map_err(|e| {
                RedisError::from((ErrorKind::Client, "a write pipeline failed", e.to_string()))
            })??;
            for (value, reply) in values.into_iter().zip(replies) {
                self.tally(value, reply)?;
            }
        }
        Ok(())
    }

    /// Counts one reply. Error replies fail the rebuild, except `BUSYKEY`
    /// for a new set, which falls back to `SADD`.
    fn tally(&mut self, value: Value, reply: Reply) -> RedisResult<()> {
        if let Value::ServerError(err) = value {
            if let Reply::NewSet(cmd) = &reply {
                if err.code() == "BUSYKEY" {
                    return self.retry_as_sadd(cmd);
                }
            }
            return Err(err.into());
        }
        self.count_reply(&value, reply);
        Ok(())
    }

    /// Requeues the members of a refused `RESTORE` as `SADD`s.
    fn retry_as_sadd(&mut self, cmd: &Cmd) -> RedisResult<()> {
        let args: Vec<&[u8]> = simple_args(cmd);
        let [_, key, _, payload] = args[..] else {
            return Err(RedisError::from((
                ErrorKind::Client,
                "malformed RESTORE of a set",
            )));
        };
        let Ok(dump::Value::Set(members)) = dump::decode(payload) else {
            return Err(RedisError::from((
                ErrorKind::Client,
                "a set payload does not decode",
            )));
        };
        for chunk in members.chunks(SADD_CHUNK) {
            self.pipe.cmd("SADD").arg(key).arg(chunk);
            self.replies.push(Reply::Ignore);
            self.weight += chunk.len();
        }
        Ok(())
    }

    fn count_reply(&mut self, value: &Value, reply: Reply) {
        let yes = matches!(value, Value::Okay | Value::Int(1))
            || matches!(value, Value::SimpleString(s) if s == "OK");
        match reply {
            Reply::Ignore => {}
            Reply::Conditional(cat) if yes => self.count(cat, 1, 0),
            Reply::Conditional(cat) => self.count(cat, 0, 1),
            Reply::Probe(cat) if yes => self.count(cat, 0, 1),
            Reply::Probe(cat) => self.count(cat, 1, 0),
            Reply::ProbeMany(cat, keys) => {
                let existing = match value {
                    Value::Int(n) => (*n).clamp(0, keys as i64) as u64,
                    _ => 0,
                };
                self.count(cat, keys - existing, existing);
            }
            Reply::AllOrNothing(cat, cmd) if yes => {
                self.count(cat, (cmd.args_iter().len() as u64 - 1) / 2, 0)
            }
            Reply::AllOrNothing(cat, cmd) => self.retry_per_key(cat, &cmd),
            Reply::NewSet(_) => {}
        }
    }

    /// Requeues the pairs of a refused `MSETNX` as `SET NX`, one per key;
    /// they go out with the next pipeline.
    fn retry_per_key(&mut self, cat: &'static str, cmd: &Cmd) {
        self.per_key_nx = true;
        let args = simple_args(cmd);
        for pair in args[1..].chunks_exact(2) {
            self.pipe.cmd("SET").arg(pair[0]).arg(pair[1]).arg("NX");
            self.replies.push(Reply::Conditional(cat));
            self.weight += 1;
        }
    }

    /// Sends what is queued and waits for every reply (and for the
    /// retries those replies cause).
    pub async fn flush(&mut self) -> RedisResult<()> {
        self.close_group().await?;
        loop {
            self.send().await?;
            if self.in_flight.is_empty() {
                return Ok(());
            }
            self.settle_one().await?;
        }
    }

    /// Flushes and returns the counters per category.
    pub async fn finish(mut self) -> RedisResult<BTreeMap<&'static str, Counts>> {
        self.flush().await?;
        Ok(self.counts)
    }
}

/// A pipeline whose error replies come back as values, so that one
/// `BUSYKEY` of a new set does not fail the others (see [`Sink::tally`]).
fn new_pipe() -> Pipeline {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    pipe
}

/// The arguments of a command built from byte strings, name included.
fn simple_args(cmd: &Cmd) -> Vec<&[u8]> {
    cmd.args_iter()
        .filter_map(|a| match a {
            Arg::Simple(bytes) => Some(bytes),
            _ => None,
        })
        .collect()
}
