//! Redis Cluster and Valkey cluster: the seeds of a `redis+cluster://`
//! URL, the slot map (`CLUSTER SLOTS`), a direct connection to each master
//! (for SCAN, which a cluster answers per node, and for pipelines grouped
//! by the master that owns each key's slot), and a routing connection that
//! follows `MOVED` and `ASK` and waits out a failover (single commands,
//! transactions, and every command a master redirected).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use std::sync::{Mutex, MutexGuard};

use crate::plan::slot::hash_slot;

/// The URL schemes of a cluster: plain and TLS.
pub const CLUSTER_SCHEMES: [(&str, &str); 2] = [
    ("redis+cluster://", "redis://"),
    ("rediss+cluster://", "rediss://"),
];

/// How many times a command to a cluster is retried while a master fails
/// over (the routing connection refreshes the slot map between tries).
pub const FAILOVER_RETRIES: u32 = 40;
/// The longest wait between two of those tries, in milliseconds: with the
/// shorter first waits, a failover of up to about 30 seconds is waited out.
pub const FAILOVER_MAX_WAIT_MS: u64 = 1000;

/// Whether `url` names a cluster (`redis+cluster://`, `rediss+cluster://`).
pub fn is_cluster_url(url: &str) -> bool {
    CLUSTER_SCHEMES.iter().any(|(s, _)| url.starts_with(s))
}

/// The seeds of a cluster URL, each as a single-server URL with the same
/// credentials, db and options: `redis+cluster://u:p@a:1,b:2/0` gives
/// `redis://u:p@a:1/0` and `redis://u:p@b:2/0`. `None` when `url` is not a
/// cluster URL; an empty list when it names no host.
pub fn seed_urls(url: &str) -> Option<Vec<String>> {
    let (scheme, plain) = CLUSTER_SCHEMES.iter().find(|(s, _)| url.starts_with(s))?;
    let rest = &url[scheme.len()..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    Some(
        hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|host| format!("{plain}{userinfo}{host}{tail}"))
            .collect(),
    )
}

/// Which master serves which slots, as `CLUSTER SLOTS` says: ranges of
/// slots with the `host:port` of their master, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlotMap {
    ranges: Vec<(u16, u16, String)>,
}

impl SlotMap {
    /// Reads a `CLUSTER SLOTS` reply. A master announced without a host
    /// (an empty or `?` endpoint) is reached at `seed_host`, the host the
    /// map was asked from.
    pub fn parse(reply: &Value, seed_host: &str) -> Result<SlotMap, String> {
        let Value::Array(entries) = reply else {
            return Err(format!("not an array: {reply:?}"));
        };
        let mut ranges = Vec::with_capacity(entries.len());
        for entry in entries {
            let Value::Array(fields) = entry else {
                return Err(format!("not an array: {entry:?}"));
            };
            let (Some(start), Some(end), Some(Value::Array(master))) =
                (int(fields.first()), int(fields.get(1)), fields.get(2))
            else {
                return Err(format!("no slot range and master in {entry:?}"));
            };
            let host = match master.first() {
                Some(Value::BulkString(h)) if !h.is_empty() && h != b"?" => {
                    String::from_utf8_lossy(h).into_owned()
                }
                _ => seed_host.to_string(),
            };
            let port = int(master.get(1)).ok_or_else(|| format!("no port in {entry:?}"))?;
            let (Ok(start), Ok(end)) = (u16::try_from(start), u16::try_from(end)) else {
                return Err(format!("slots out of range in {entry:?}"));
            };
            ranges.push((start, end, format!("{host}:{port}")));
        }
        ranges.sort();
        Ok(SlotMap { ranges })
    }

    /// The masters, sorted, each once.
    pub fn masters(&self) -> Vec<String> {
        let mut masters: Vec<String> = self.ranges.iter().map(|(_, _, m)| m.clone()).collect();
        masters.sort();
        masters.dedup();
        masters
    }

    /// The master of `slot`, if any serves it.
    pub fn owner(&self, slot: u16) -> Option<&str> {
        self.ranges
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, m)| m.as_str())
    }

    /// Counts `key` for the master of its slot in `counts` (by
    /// `host:port`); a key of a slot no master serves is not counted.
    pub fn count_key(&self, key: &[u8], counts: &mut BTreeMap<String, u64>) {
        let Some(owner) = self.owner(hash_slot(key)) else {
            return;
        };
        match counts.get_mut(owner) {
            Some(n) => *n += 1,
            None => {
                counts.insert(owner.to_string(), 1);
            }
        }
    }

    /// How many of the 16384 slots some master serves.
    pub fn served(&self) -> u32 {
        self.ranges
            .iter()
            .map(|(s, e, _)| u32::from(*e) - u32::from(*s) + 1)
            .sum()
    }
}

/// The slot map and the slots being migrated (`CLUSTER NODES` of each
/// master: `[slot->-target]` on the source, `[slot-<-source]` on the
/// target), as `slot → (source, target)` by `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Topology {
    pub map: SlotMap,
    pub migrating: BTreeMap<u16, (String, String)>,
}

impl Topology {
    /// The slots whose keys a read that began at `before` and ends at
    /// `self` may have missed (their master changed, or they were being
    /// migrated at either end), each with the masters to read it from in
    /// order: where its keys come from first, where they go last. A key
    /// that MIGRATE moves is on its target before it leaves its source,
    /// so reading the source, then the target, misses none.
    pub fn unsettled_slots(&self, before: &Topology) -> Vec<(u16, Vec<String>)> {
        (0..crate::plan::slot::SLOTS)
            .filter_map(|slot| {
                let (was, is) = (before.map.owner(slot), self.map.owner(slot));
                let moving = [before.migrating.get(&slot), self.migrating.get(&slot)];
                if was == is && moving.iter().all(Option::is_none) {
                    return None;
                }
                let sources = moving.iter().flatten().map(|(from, _)| from.as_str());
                let targets = moving.iter().flatten().map(|(_, to)| to.as_str());
                let mut order: Vec<String> = Vec::new();
                for node in was.into_iter().chain(sources).chain(targets).chain(is) {
                    if !order.iter().any(|o| o == node) {
                        order.push(node.to_string());
                    }
                }
                Some((slot, order))
            })
            .collect()
    }
}

/// The migrations one node's `CLUSTER NODES` shows on its own line
/// (`myself`): `slot → (source, target)` by `host:port`.
pub fn parse_migrations(nodes: &str) -> BTreeMap<u16, (String, String)> {
    let address_of: BTreeMap<&str, String> = nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let id = fields.next()?;
            let address = fields.next()?.split('@').next()?.to_string();
            Some((id, address))
        })
        .collect();
    let mut moving = BTreeMap::new();
    for line in nodes.lines().filter(|l| l.contains("myself")) {
        let mut fields = line.split_whitespace();
        let (Some(_), Some(me)) = (fields.next(), fields.next()) else {
            continue;
        };
        let me = me.split('@').next().unwrap_or(me).to_string();
        for marker in fields.filter_map(|f| f.strip_prefix('[')?.strip_suffix(']')) {
            let entry = if let Some((slot, to)) = marker.split_once("->-") {
                slot.parse()
                    .ok()
                    .zip(address_of.get(to))
                    .map(|(s, to)| (s, (me.clone(), to.clone())))
            } else if let Some((slot, from)) = marker.split_once("-<-") {
                slot.parse()
                    .ok()
                    .zip(address_of.get(from))
                    .map(|(s, from)| (s, (from.clone(), me.clone())))
            } else {
                None
            };
            moving.extend(entry);
        }
    }
    moving
}

fn int(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

/// Connects to one master, given as `host:port`, with the cluster's
/// credentials and TLS settings.
pub type Connector =
    Arc<dyn Fn(String) -> RedisFuture<'static, MultiplexedConnection> + Send + Sync>;

/// The masters as last seen, and a connection to each.
struct Nodes {
    map: SlotMap,
    conns: BTreeMap<String, MultiplexedConnection>,
    /// A master redirected a command: the map is out of date.
    stale: bool,
}

/// A connection to a whole cluster (see the module documentation).
pub struct ClusterLink {
    routed: ClusterConnection,
    connector: Connector,
    seed_host: String,
    nodes: Mutex<Nodes>,
}

impl ClusterLink {
    /// Learns the slot map through `routed` and connects to every master.
    pub async fn new(
        routed: ClusterConnection,
        connector: Connector,
        seed_host: String,
    ) -> RedisResult<ClusterLink> {
        let link = ClusterLink {
            routed,
            connector,
            seed_host,
            nodes: Mutex::new(Nodes {
                map: SlotMap::default(),
                conns: BTreeMap::new(),
                stale: true,
            }),
        };
        link.refresh().await?;
        Ok(link)
    }

    /// The slot map as the cluster says it now (`CLUSTER SLOTS`).
    pub async fn fetch_map(&self) -> RedisResult<SlotMap> {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let mut reply = None;
        for (_, mut conn) in self.masters() {
            if let Ok(value) = conn.req_packed_command(&cmd).await {
                reply = Some(value);
                break;
            }
        }
        let reply = match reply {
            Some(reply) => reply,
            None => self.routed.clone().req_packed_command(&cmd).await?,
        };
        SlotMap::parse(&reply, &self.seed_host).map_err(|detail| {
            RedisError::from((
                redis::ErrorKind::Parse,
                "unexpected CLUSTER SLOTS reply",
                detail,
            ))
        })
    }

    /// The nodes; never held across an await.
    fn nodes(&self) -> MutexGuard<'_, Nodes> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The slot map and the migrations in progress, as the cluster says
    /// them now (`CLUSTER SLOTS`, then `CLUSTER NODES` of each master).
    pub async fn topology(&self) -> RedisResult<Topology> {
        self.refresh().await?;
        let mut topology = Topology {
            map: self.map(),
            migrating: BTreeMap::new(),
        };
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("NODES");
        for (_, mut conn) in self.masters() {
            let text: String = cmd.query_async(&mut conn).await?;
            topology.migrating.extend(parse_migrations(&text));
        }
        Ok(topology)
    }

    /// A direct connection to the master at `address`, if known.
    pub fn master(&self, address: &str) -> Option<MultiplexedConnection> {
        self.nodes().conns.get(address).cloned()
    }

    /// The slot map as last learnt.
    pub fn map(&self) -> SlotMap {
        self.nodes().map.clone()
    }

    /// Learns the slot map again and connects to masters not seen before.
    pub async fn refresh(&self) -> RedisResult<()> {
        let map = self.fetch_map().await?;
        let known: Vec<String> = self.nodes().conns.keys().cloned().collect();
        let mut fresh = Vec::new();
        for master in map.masters() {
            if !known.contains(&master) {
                fresh.push((master.clone(), (self.connector)(master).await?));
            }
        }
        let mut nodes = self.nodes();
        nodes.conns.extend(fresh);
        nodes.map = map;
        nodes.stale = false;
        Ok(())
    }

    /// The masters' addresses, as last learnt.
    pub fn master_addresses(&self) -> Vec<String> {
        self.nodes().map.masters()
    }

    /// The masters and a direct connection to each, as last learnt.
    pub fn masters(&self) -> Vec<(String, MultiplexedConnection)> {
        let nodes = self.nodes();
        nodes
            .map
            .masters()
            .into_iter()
            .filter_map(|m| nodes.conns.get(&m).map(|c| (m, c.clone())))
            .collect()
    }

    /// A master to ask for `INFO` and `CONFIG` (the routing connection
    /// would ask every node and answer with a map): they describe the
    /// product, version and settings, which the nodes of one cluster share.
    /// `None` for every other command.
    pub fn one_master_for(&self, cmd: &Cmd) -> Option<MultiplexedConnection> {
        let name = match cmd.args_iter().next()? {
            redis::Arg::Simple(name) => name.to_ascii_uppercase(),
            _ => return None,
        };
        if !matches!(name.as_slice(), b"INFO" | b"CONFIG") {
            return None;
        }
        let nodes = self.nodes();
        let first = nodes.map.masters().into_iter().next()?;
        nodes.conns.get(&first).cloned()
    }

    fn routed(&self) -> ClusterConnection {
        self.routed.clone()
    }

    /// Runs a pipeline: a transaction goes whole to its slot's master
    /// (`transaction`: retried whole when its slot moves); any other pipeline is
    /// split by the master of each command's slot and the parts run at once
    /// on the masters' own connections. A command whose keys span slots,
    /// that a master redirected (`MOVED`, `ASK`), or whose master could not
    /// be reached is sent again alone, following the cluster's answers.
    /// Keyless commands (`SCRIPT LOAD`) go to every master the pipeline
    /// touches; the first one's reply counts.
    pub async fn pipeline(
        &self,
        pipe: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        if pipe.is_transaction() {
            return self.transaction(pipe, offset, count).await;
        }
        let stale = self.nodes().stale;
        if stale {
            self.refresh().await?;
        }
        let cmds: Vec<&Cmd> = pipe.cmd_iter().collect();
        let plan = self.plan(&cmds);
        let mut replies: Vec<Option<Value>> = vec![None; cmds.len()];
        let parts = plan.groups.iter().map(|(conn, indices)| {
            let mut part = redis::pipe();
            part.ignore_errors();
            for &i in indices {
                part.add_command(cmds[i].clone());
            }
            let mut conn = conn.clone();
            async move { part.query_async::<Vec<Value>>(&mut conn).await }
        });
        let mut resend = plan.alone;
        for ((_, indices), result) in plan.groups.iter().zip(join_all(parts).await) {
            match result {
                Ok(values) if values.len() == indices.len() => {
                    for (&i, value) in indices.iter().zip(values) {
                        if is_redirect(&value) {
                            resend.push(i);
                        } else if replies[i].is_none() {
                            replies[i] = Some(value);
                        }
                    }
                }
                _ => resend.extend(indices.iter().copied()),
            }
        }
        resend.sort_unstable();
        resend.dedup();
        resend.retain(|&i| replies[i].is_none());
        if !resend.is_empty() {
            self.nodes().stale = true;
            self.send_alone(&cmds, &resend, &mut replies).await?;
        }
        Ok(replies
            .into_iter()
            .map(|r| r.unwrap_or(Value::Nil))
            .skip(offset)
            .take(count)
            .collect())
    }

    /// Sends the commands at `indices` one by one ([`Self::send_one`]); a
    /// server's refusal becomes that command's reply, and any other failure
    /// (a master still unreachable after [`FAILOVER_PATIENCE`]) fails the
    /// pipeline.
    async fn send_alone(
        &self,
        cmds: &[&Cmd],
        indices: &[usize],
        replies: &mut [Option<Value>],
    ) -> RedisResult<()> {
        for chunk in indices.chunks(RESEND_AT_ONCE) {
            let sent = chunk.iter().map(|&i| self.send_one(cmds[i]));
            for (&i, result) in chunk.iter().zip(join_all(sent).await) {
                replies[i] = Some(match result {
                    Ok(value) => value,
                    Err(e) => Value::ServerError(redis::ServerError::try_from(e)?),
                });
            }
        }
        Ok(())
    }

    /// Sends one command to the master of its slot and follows the
    /// cluster's answers: `MOVED` (to the master named, learning the map
    /// again before the next pipeline), `ASK` (to the node named, after
    /// `ASKING`), `TRYAGAIN` and `CLUSTERDOWN` (again after a pause), and a
    /// master that cannot be reached (the map learnt again after a pause,
    /// until a replica has taken over, for up to [`FAILOVER_PATIENCE`]).
    /// Keyless commands and commands whose keys span slots go through the
    /// routing connection.
    async fn send_one(&self, cmd: &Cmd) -> RedisResult<Value> {
        let Placement::Slot(slot) = command_slot(cmd) else {
            return self.routed().req_packed_command(cmd).await;
        };
        let deadline = tokio::time::Instant::now() + FAILOVER_PATIENCE;
        let mut target = self.nodes().map.owner(slot).map(str::to_string);
        let mut asking = false;
        let mut redirects = 0;
        loop {
            let result = match &target {
                Some(address) => self.send_to(address, cmd, asking).await,
                None => Err(RedisError::from((
                    redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown),
                    "no master serves the slot",
                ))),
            };
            let e = match result {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if let Some((address, _)) = e.redirect_node() {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(e);
                }
                asking = e.code() == Some("ASK");
                self.nodes().stale = !asking;
                target = Some(address.to_string());
                continue;
            }
            let waits = matches!(e.code(), Some("TRYAGAIN" | "CLUSTERDOWN"))
                || e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || target.is_none();
            if !waits || tokio::time::Instant::now() > deadline {
                return Err(e);
            }
            tokio::time::sleep(RETRY_PAUSE).await;
            let _ = self.refresh().await;
            target = self.nodes().map.owner(slot).map(str::to_string);
            asking = false;
        }
    }

    /// One command on the node at `address` (after `ASKING` when asked
    /// to), connecting to it first if it is new.
    async fn send_to(&self, address: &str, cmd: &Cmd, asking: bool) -> RedisResult<Value> {
        let mut conn = match self.master(address) {
            Some(conn) => conn,
            None => {
                let conn = (self.connector)(address.to_string()).await?;
                self.nodes().conns.insert(address.to_string(), conn.clone());
                conn
            }
        };
        if !asking {
            return match conn.req_packed_command(cmd).await? {
                Value::ServerError(e) => Err(e.into()),
                value => Ok(value),
            };
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors().cmd("ASKING").add_command(cmd.clone());
        let mut values: Vec<Value> = pipe.query_async(&mut conn).await?;
        match values.pop() {
            Some(Value::ServerError(e)) => Err(e.into()),
            Some(value) => Ok(value),
            None => Ok(Value::Nil),
        }
    }

    /// Runs a transaction on the master of its slot (kbdump's transactions
    /// never span slots). One refused because its slot moved or is moving
    /// (`MOVED`, `ASK`, `TRYAGAIN`: the server aborts it whole, so nothing
    /// of it was applied), or whose master cannot be reached, runs again
    /// on the slot's master as learnt again after a pause, for up to
    /// [`FAILOVER_PATIENCE`].
    async fn transaction(
        &self,
        pipe: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let slot = pipe.cmd_iter().find_map(|cmd| match command_slot(cmd) {
            Placement::Slot(slot) => Some(slot),
            _ => None,
        });
        let Some(slot) = slot else {
            return self.routed().req_packed_commands(pipe, offset, count).await;
        };
        let deadline = tokio::time::Instant::now() + FAILOVER_PATIENCE;
        loop {
            let owner = self.nodes().map.owner(slot).map(str::to_string);
            let conn = owner.as_deref().and_then(|o| self.master(o));
            let result = match conn {
                Some(mut conn) => conn.req_packed_commands(pipe, offset, count).await,
                None => Err(RedisError::from((
                    redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown),
                    "no master serves the slot",
                ))),
            };
            let e = match result {
                Ok(values) => return Ok(values),
                Err(e) => e,
            };
            let text = e.to_string().to_ascii_uppercase();
            let moved = ["MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "SLOT"]
                .iter()
                .any(|word| text.contains(word));
            let lost = e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal();
            if !(moved || lost) || tokio::time::Instant::now() > deadline {
                return Err(e);
            }
            tokio::time::sleep(RETRY_PAUSE).await;
            let _ = self.refresh().await;
        }
    }

    /// Which command goes where.
    fn plan(&self, cmds: &[&Cmd]) -> Plan {
        let nodes = self.nodes();
        let mut by_master: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut keyless = Vec::new();
        let mut alone = Vec::new();
        for (i, cmd) in cmds.iter().enumerate() {
            match command_slot(cmd) {
                Placement::Keyless => keyless.push(i),
                Placement::Slot(slot) => match nodes.map.owner(slot) {
                    Some(owner) if nodes.conns.contains_key(owner) => {
                        by_master.entry(owner).or_default().push(i)
                    }
                    _ => alone.push(i),
                },
                Placement::Spread => alone.push(i),
            }
        }
        if by_master.is_empty() && !keyless.is_empty() {
            alone.append(&mut keyless);
        }
        let groups = by_master
            .into_iter()
            .map(|(owner, mut indices)| {
                indices.extend(keyless.iter().copied());
                indices.sort_unstable();
                (nodes.conns[owner].clone(), indices)
            })
            .collect();
        Plan { groups, alone }
    }
}

/// Commands resent one by one at once.
const RESEND_AT_ONCE: usize = 64;
/// How long a command waits for its slot to be served again (a master
/// failing over, a cluster down): the cluster notices a dead master after
/// its `cluster-node-timeout` and promotes a replica soon after.
pub const FAILOVER_PATIENCE: Duration = Duration::from_secs(30);
/// The pause between two tries of a command whose slot is not served.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Redirections one command may follow (a resharding moves a slot once).
const MAX_REDIRECTS: usize = 16;

/// A pipeline split by master: each master's connection with the indices
/// of its commands, and the commands to send alone.
struct Plan {
    groups: Vec<(MultiplexedConnection, Vec<usize>)>,
    alone: Vec<usize>,
}

fn is_redirect(value: &Value) -> bool {
    matches!(value, Value::ServerError(e) if matches!(e.code(), "MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN"))
}

/// Where a command belongs in a cluster.
#[derive(Debug, PartialEq, Eq)]
enum Placement {
    /// It names no key (`PING`, `SCRIPT LOAD`, `INFO`).
    Keyless,
    /// Every key it names is in this slot.
    Slot(u16),
    /// Its keys are in several slots.
    Spread,
}

/// The slot of the keys a command names, for the commands kbdump sends:
/// the first argument is the key, but for `EVAL`/`EVALSHA`/`FCALL` (the
/// keys follow the key count) and the multi-key `DEL`, `UNLINK`, `EXISTS`,
/// `TOUCH`, `MGET`, `MSET` and `MSETNX` (every other argument).
fn command_slot(cmd: &Cmd) -> Placement {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|a| match a {
            redis::Arg::Simple(bytes) => Some(bytes),
            _ => None,
        })
        .collect();
    let name = args
        .first()
        .map(|n| n.to_ascii_uppercase())
        .unwrap_or_default();
    let keys: Vec<&[u8]> = match name.as_slice() {
        b"PING" | b"SCRIPT" | b"INFO" | b"CONFIG" | b"DBSIZE" | b"CLUSTER" | b"ECHO" => Vec::new(),
        b"EVAL" | b"EVALSHA" | b"FCALL" => {
            let n = args
                .get(2)
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
                .unwrap_or(0);
            args.iter().skip(3).take(n).copied().collect()
        }
        b"DEL" | b"UNLINK" | b"EXISTS" | b"TOUCH" | b"MGET" => args[1..].to_vec(),
        b"MSET" | b"MSETNX" => args[1..].iter().step_by(2).copied().collect(),
        _ => args.get(1).copied().into_iter().collect(),
    };
    let mut slots = keys.iter().map(|k| hash_slot(k));
    match slots.next() {
        None => Placement::Keyless,
        Some(first) if slots.all(|s| s == first) => Placement::Slot(first),
        Some(_) => Placement::Spread,
    }
}

/// How long a cluster connection waits for a node to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_give_one_plain_url_per_seed() {
        assert_eq!(
            seed_urls("redis+cluster://u:p@a:1,b:2/0"),
            Some(vec!["redis://u:p@a:1/0".into(), "redis://u:p@b:2/0".into()])
        );
        assert_eq!(
            seed_urls("rediss+cluster://h:7000#insecure"),
            Some(vec!["rediss://h:7000#insecure".into()])
        );
        assert_eq!(seed_urls("redis://h:1"), None);
        assert_eq!(seed_urls("redis+cluster://"), Some(vec![]));
        assert!(is_cluster_url("redis+cluster://h:1"));
        assert!(!is_cluster_url("redis://h:1"));
    }

    #[test]
    fn commands_are_placed_by_the_slot_of_their_keys() {
        let mut dump = redis::cmd("DUMP");
        dump.arg("kb:{x}");
        assert_eq!(command_slot(&dump), Placement::Slot(hash_slot(b"kb:{x}")));
        let mut script = redis::cmd("EVALSHA");
        script.arg("abc").arg(1).arg("k").arg("v");
        assert_eq!(command_slot(&script), Placement::Slot(hash_slot(b"k")));
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg("return 1");
        assert_eq!(command_slot(&load), Placement::Keyless);
        let mut spread = redis::cmd("DEL");
        spread.arg("a").arg("b");
        assert_eq!(command_slot(&spread), Placement::Spread);
        let mut mset = redis::cmd("MSET");
        mset.arg("{t}a").arg("1").arg("{t}b").arg("2");
        assert_eq!(command_slot(&mset), Placement::Slot(hash_slot(b"t")));
        let mut same = redis::cmd("DEL");
        same.arg("{t}a").arg("{t}b");
        assert_eq!(command_slot(&same), Placement::Slot(hash_slot(b"t")));
    }

    #[test]
    fn migrations_are_read_from_the_nodes_own_line() {
        let nodes = "a1 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-100 [101->-b2]\n\
                     b2 10.0.0.2:7001@17001 master - 0 0 2 connected 200-300 [5-<-a1]\n";
        let moving = parse_migrations(nodes);
        assert_eq!(
            moving.get(&101),
            Some(&("10.0.0.1:7000".to_string(), "10.0.0.2:7001".to_string()))
        );
        assert_eq!(moving.len(), 1, "only the myself line counts: {moving:?}");
    }

    #[test]
    fn unsettled_slots_are_read_from_their_source_first() {
        let map = |ranges: &[(u16, u16, &str)]| SlotMap {
            ranges: ranges
                .iter()
                .map(|(s, e, m)| (*s, *e, m.to_string()))
                .collect(),
        };
        let before = Topology {
            map: map(&[(0, 9, "a"), (10, 16383, "b")]),
            migrating: [(20, ("b".to_string(), "a".to_string()))].into(),
        };
        let after = Topology {
            map: map(&[(0, 4, "a"), (5, 16383, "b")]),
            migrating: BTreeMap::new(),
        };
        let slots = after.unsettled_slots(&before);
        let numbers: Vec<u16> = slots.iter().map(|(s, _)| *s).collect();
        assert_eq!(numbers, vec![5, 6, 7, 8, 9, 20]);
        assert_eq!(slots[0].1, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(slots[5].1, vec!["b".to_string(), "a".to_string()]);
    }

    #[test]
    fn a_slot_map_names_each_slots_master() {
        let master = |host: &str, port| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![Value::Int(5461), Value::Int(16383), master("", 2)]),
            Value::Array(vec![Value::Int(0), Value::Int(5460), master("h", 1)]),
        ]);
        let map = SlotMap::parse(&reply, "seed").unwrap();
        assert_eq!(map.owner(0), Some("h:1"));
        assert_eq!(map.owner(16383), Some("seed:2"));
        assert_eq!(map.masters(), vec!["h:1".to_string(), "seed:2".to_string()]);
        assert_eq!(map.served(), 16384);
        assert!(SlotMap::parse(&Value::Int(1), "s").is_err());
    }
}
