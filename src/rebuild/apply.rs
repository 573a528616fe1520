/*!
Pipelined Redis writes for a rebuild, with write/skip accounting.

Commands are queued into pipelines of [`Sink::BATCH`] commands; up to
[`Sink::IN_FLIGHT`] pipelines are on the wire at once so that computing the
next batch overlaps the server's work on the previous one.

Each write is either *plain* (SET, HSET, SADD: always counted as written)
or *conditional* (SET NX, HSETNX: the reply says written or skipped). In a
dry run nothing is written: plain writes are only counted, and each
conditional write becomes the matching read (EXISTS, HEXISTS) whose reply
tells whether it would have been written.
*/

use futures::stream::{FuturesUnordered, StreamExt};
use redis::{aio::ConnectionLike, Pipeline, RedisResult, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

/// Written and skipped entries of one category. An entry is a key, or one
/// field of a `symbols:*` hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Entries written (or that a dry run would write).
    pub written: u64,
    /// Entries left alone because they already existed.
    pub skipped: u64,
}

#[derive(Clone, Copy)]
enum Reply {
    /// Counted when queued; the reply is not interesting.
    Ignore,
    /// SET NX / HSETNX: OK or 1 means written.
    Conditional(&'static str),
    /// Dry-run EXISTS / HEXISTS: 1 means it would be skipped.
    Probe(&'static str),
}

type Flight = Pin<Box<dyn Future<Output = RedisResult<(Vec<Value>, Vec<Reply>)>> + Send>>;

/// Queues and sends rebuild writes.
pub struct Sink<C> {
    conn: C,
    dry_run: bool,
    pipe: Pipeline,
    replies: Vec<Reply>,
    in_flight: FuturesUnordered<Flight>,
    counts: BTreeMap<&'static str, Counts>,
}

impl<C> Sink<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// Commands per pipeline.
    pub const BATCH: usize = 4096;
    /// Pipelines awaiting replies at once.
    pub const IN_FLIGHT: usize = 4;

    /// A sink writing through `conn`, or only counting when `dry_run`.
    pub fn new(conn: C, dry_run: bool) -> Self {
        Sink {
            conn,
            dry_run,
            pipe: redis::pipe(),
            replies: Vec::with_capacity(Self::BATCH),
            in_flight: FuturesUnordered::new(),
            counts: BTreeMap::new(),
        }
    }

    /// Whether this is a dry run.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// A connection for reads outside the write pipeline.
    pub fn conn(&self) -> C {
        self.conn.clone()
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
        self.queued(Reply::Ignore).await
    }

    /// `SADD key members...`, not counted (the caller counts set keys).
    pub async fn sadd(&mut self, key: &[u8], members: &[&[u8]]) -> RedisResult<()> {
        if self.dry_run || members.is_empty() {
            return Ok(());
        }
        self.pipe.cmd("SADD").arg(key).arg(members);
        self.queued(Reply::Ignore).await
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
        if self.replies.len() >= Self::BATCH {
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
        let pipe = std::mem::replace(&mut self.pipe, redis::pipe());
        let replies = std::mem::replace(&mut self.replies, Vec::with_capacity(Self::BATCH));
        let mut conn = self.conn.clone();
        self.in_flight.push(Box::pin(async move {
            let values: Vec<Value> = pipe.query_async(&mut conn).await?;
            Ok((values, replies))
        }));
        Ok(())
    }

    async fn settle_one(&mut self) -> RedisResult<()> {
        if let Some(result) = self.in_flight.next().await {
            let (values, replies) = result?;
            for (value, reply) in values.iter().zip(replies) {
                self.tally(value, reply);
            }
        }
        Ok(())
    }

    fn tally(&mut self, value: &Value, reply: Reply) {
        let yes = matches!(value, Value::Okay | Value::Int(1))
            || matches!(value, Value::SimpleString(s) if s == "OK");
        match reply {
            Reply::Ignore => {}
            Reply::Conditional(cat) if yes => self.count(cat, 1, 0),
            Reply::Conditional(cat) => self.count(cat, 0, 1),
            Reply::Probe(cat) if yes => self.count(cat, 0, 1),
            Reply::Probe(cat) => self.count(cat, 1, 0),
        }
    }

    /// Sends what is queued and waits for every reply.
    pub async fn flush(&mut self) -> RedisResult<()> {
        self.send().await?;
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }

    /// Flushes and returns the counters per category.
    pub async fn finish(mut self) -> RedisResult<BTreeMap<&'static str, Counts>> {
        self.flush().await?;
        Ok(self.counts)
    }
}
