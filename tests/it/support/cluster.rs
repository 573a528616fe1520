//! Private Redis Cluster and Valkey cluster deployments for tests.
//!
//! A [`Cluster`] is three masters (or more, [`Cluster::start_sized`]; and,
//! when asked, replicas of each),
//! every node a real [`RedisServer`] with `cluster-enabled yes` on a free
//! loopback port in its own temporary directory. `redis-cli --cluster
//! create` joins them (redis-cli 7.0 from Debian's redis-tools, which
//! `scripts/provision.sh` installs, creates Valkey clusters too); the
//! cluster is ready when every node says `cluster_state:ok` and sees all
//! 16384 slots served. Every node stops when the cluster is dropped.

use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::cli::snap;
use super::redis::{info_field, Flavor, RedisServer};
use super::seed::{seed_kato, show_key, SeedSpec, Seeded, Snapshot};

/// How long the nodes may take to agree on the slot map after creation.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a replica may take to be promoted after its master dies.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// `cluster-node-timeout` of every node: short, so a failover test does
/// not wait long for the cluster to notice a dead master.
const NODE_TIMEOUT_MS: u32 = 2000;
/// Masters of a cluster unless said otherwise (`redis-cli --cluster
/// create` needs at least three).
pub const MASTERS: usize = 3;

/// How `redis-cli --cluster create` reaches the nodes: by default on
/// their plain ports; a TLS cluster (`tls-cluster yes`) on their TLS ports,
/// with redis-cli's `--tls --cacert … --cert … --key …`.
#[derive(Debug, Default)]
pub struct Creation {
    /// The port of node `i` to create it on (its plain port when absent).
    pub ports: Vec<u16>,
    /// redis-cli's options before `--cluster create`.
    pub cli_args: Vec<String>,
}

/// A running cluster; every node stopped on drop.
pub struct Cluster {
    flavor: Flavor,
    /// Masters first (in creation order), then the replicas.
    nodes: Vec<RedisServer>,
    masters: usize,
    replicas: usize,
}

impl Cluster {
    /// Three masters without replicas.
    pub fn start(flavor: Flavor) -> Cluster {
        Self::start_with_replicas(flavor, 0)
    }

    /// Three masters with `replicas` replicas each.
    pub fn start_with_replicas(flavor: Flavor, replicas: usize) -> Cluster {
        Self::start_sized(flavor, MASTERS, replicas)
    }

    /// `masters` masters (at least three) with `replicas` replicas each.
    pub fn start_sized(flavor: Flavor, masters: usize, replicas: usize) -> Cluster {
        Self::start_with_config(flavor, masters, replicas, &[])
    }

    /// [`Cluster::start_sized`], with `config` lines for every node
    /// (`cluster-databases 16`, say).
    pub fn start_with_config(
        flavor: Flavor,
        masters: usize,
        replicas: usize,
        config: &[&str],
    ) -> Cluster {
        let lines: Vec<String> = config.iter().map(|l| l.to_string()).collect();
        let create = Creation::default();
        Self::start_with(flavor, masters, replicas, |_| lines.clone(), &create)
    }

    /// [`Cluster::start_sized`], with the config lines `config(i)` for
    /// node `i` (a TLS port of its own, say), created as `create` says.
    pub fn start_with(
        flavor: Flavor,
        masters: usize,
        replicas: usize,
        config: impl Fn(usize) -> Vec<String>,
        create: &Creation,
    ) -> Cluster {
        let count = masters * (1 + replicas);
        let nodes: Vec<RedisServer> = (0..count)
            .map(|i| {
                let lines = config(i);
                let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
                start_node(flavor, &lines)
            })
            .collect();
        let cluster = Cluster {
            flavor,
            nodes,
            masters,
            replicas,
        };
        cluster.create(create);
        cluster.wait_ready(READY_TIMEOUT);
        cluster
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,…` with every master as
    /// a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .masters()
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// `redis+cluster://127.0.0.1:PORT` of one node only: the others are
    /// found from it.
    pub fn url_from_one_seed(&self) -> String {
        format!("redis+cluster://127.0.0.1:{}", self.nodes[0].port())
    }

    /// Every node, masters and replicas, as started (roles change after a
    /// failover; see [`Cluster::current_masters`]).
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// The nodes created as masters.
    pub fn masters(&self) -> &[RedisServer] {
        &self.nodes[..self.masters]
    }

    /// The running nodes that are masters now.
    pub fn current_masters(&self) -> Vec<&RedisServer> {
        self.nodes
            .iter()
            .filter(|n| {
                connects(n)
                    && info_field(&n.info("replication"), "role").as_deref() == Some("master")
            })
            .collect()
    }

    /// A synchronous cluster client that follows MOVED/ASK (for seeding and
    /// checks).
    pub fn client(&self) -> ::redis::cluster::ClusterConnection {
        let seeds: Vec<String> = self
            .masters()
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port()))
            .collect();
        ::redis::cluster::ClusterClient::new(seeds)
            .and_then(|c| c.get_connection())
            .unwrap_or_else(|e| panic!("cannot connect to the {:?} cluster: {e}", self.flavor))
    }

    fn create(&self, how: &Creation) {
        let mut cmd = Command::new(redis_cli());
        cmd.args(&how.cli_args).arg("--cluster").arg("create");
        for (i, node) in self.nodes.iter().enumerate() {
            let port = how.ports.get(i).copied().unwrap_or(node.port());
            cmd.arg(format!("127.0.0.1:{port}"));
        }
        cmd.arg("--cluster-replicas")
            .arg(self.replicas.to_string())
            .arg("--cluster-yes");
        let out = output_within(&mut cmd, READY_TIMEOUT, "redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until every running node says `cluster_state:ok`, knows every
    /// node, and sees all slots served.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let live: Vec<&RedisServer> = self.nodes.iter().filter(|n| connects(n)).collect();
            if live.iter().all(|n| is_ready(n, live.len())) {
                return;
            }
            if Instant::now() > deadline {
                let states: Vec<String> = live.iter().map(|n| n.info("cluster")).collect();
                panic!(
                    "the {:?} cluster was not ready within {timeout:?}:\n{}",
                    self.flavor,
                    states.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the cluster serves every slot again after a master died.
    pub fn wait_failover(&self) {
        let deadline = Instant::now() + FAILOVER_TIMEOUT;
        loop {
            let masters = self.current_masters();
            if masters.len() == self.masters
                && masters
                    .iter()
                    .all(|n| cluster_field(n, "cluster_state").as_deref() == Some("ok"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no failover within {FAILOVER_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Moves `slots` slots from master `from` to master `to` with
    /// `redis-cli --cluster reshard` (keys migrate with MIGRATE).
    pub fn reshard(&self, from: usize, to: usize, slots: u32) -> std::process::Output {
        let id = |i: usize| node_id(&self.nodes[i]);
        Command::new(redis_cli())
            .arg("--cluster")
            .arg("reshard")
            .arg(format!("127.0.0.1:{}", self.nodes[from].port()))
            .arg("--cluster-from")
            .arg(id(from))
            .arg("--cluster-to")
            .arg(id(to))
            .arg("--cluster-slots")
            .arg(slots.to_string())
            .arg("--cluster-yes")
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli --cluster reshard: {e}"))
    }
}

/// Runs `cmd`, killing it when it takes longer than `timeout` (a node
/// that cannot be reached leaves `redis-cli --cluster create` waiting for
/// the cluster to join forever).
fn output_within(cmd: &mut Command, timeout: Duration, what: &str) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let deadline = Instant::now() + timeout;
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} did not finish within {timeout:?}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The node's own id (`CLUSTER MYID`).
pub fn node_id(node: &RedisServer) -> String {
    ::redis::cmd("CLUSTER")
        .arg("MYID")
        .query(&mut node.client())
        .unwrap_or_else(|e| panic!("CLUSTER MYID failed: {e}"))
}

/// A node with its cluster bus on a port of its own: the default (port +
/// 10000) may be taken by another process, and a node whose bus cannot be
/// reached never joins.
fn start_node(flavor: Flavor, config: &[&str]) -> RedisServer {
    let bus = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot bind a probe socket on 127.0.0.1")
        .port();
    let mut builder = RedisServer::builder();
    for line in config {
        builder = builder.config(line);
    }
    builder
        .flavor(flavor)
        .config("cluster-enabled yes")
        .config(&format!("cluster-port {bus}"))
        .config("cluster-config-file nodes.conf")
        .config(&format!("cluster-node-timeout {NODE_TIMEOUT_MS}"))
        // A replica takes over however long ago it last heard from its
        // master (the default refuses one that never synced recently).
        .config("cluster-replica-validity-factor 0")
        .start()
}

fn connects(node: &RedisServer) -> bool {
    ::redis::Client::open(node.url())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(300)))
        .is_ok()
}

fn cluster_field(node: &RedisServer, name: &str) -> Option<String> {
    let text: String = ::redis::cmd("CLUSTER")
        .arg("INFO")
        .query(&mut node.client())
        .ok()?;
    info_field(&text, name)
}

/// A replica is ready once its link to its master is up.
fn replica_synced(node: &RedisServer) -> bool {
    let info = node.info("replication");
    info_field(&info, "role").as_deref() != Some("slave")
        || info_field(&info, "master_link_status").as_deref() == Some("up")
}

fn is_ready(node: &RedisServer, nodes: usize) -> bool {
    let number = |name| {
        cluster_field(node, name)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    cluster_field(node, "cluster_state").as_deref() == Some("ok")
        && number("cluster_known_nodes") >= nodes
        && number("cluster_slots_ok") == 16384
        && replica_synced(node)
}

/// `redis-cli`: `$KBDUMP_REDIS_CLI`, else the one on `PATH` (Debian's
/// redis-tools).
pub fn redis_cli() -> PathBuf {
    if let Some(path) = std::env::var_os("KBDUMP_REDIS_CLI") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-cli"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("no redis-cli on PATH: install redis-tools (scripts/provision.sh does)")
        })
}

/// Seeds `spec` into the cluster: written into a scratch standalone server
/// by [`seed_kato`], then moved key by key (DUMP, PTTL, RESTORE through a
/// client that routes each key to its slot's master).
pub fn seed_cluster(cluster: &Cluster, spec: &SeedSpec) -> Seeded {
    let scratch = RedisServer::start_flavor(cluster.flavor);
    let mut from = scratch.client();
    let seeded = seed_kato(&mut from, spec);
    let mut to = cluster.client();
    for key in seeded.all() {
        let (payload, pttl): (Vec<u8>, i64) = ::redis::pipe()
            .cmd("DUMP")
            .arg(&key)
            .cmd("PTTL")
            .arg(&key)
            .query(&mut from)
            .unwrap_or_else(|e| panic!("DUMP of {} failed: {e}", show_key(&key)));
        ::redis::cmd("RESTORE")
            .arg(&key)
            .arg(pttl.max(0))
            .arg(payload)
            .query::<()>(&mut to)
            .unwrap_or_else(|e| panic!("RESTORE of {} failed: {e}", show_key(&key)));
    }
    seeded
}

/// Every key of the cluster with its type, value and expiry (an absolute
/// instant, as [`snap`] gives it): the union of the snapshots of each
/// current master (a master's SCAN sees the keys of its own slots, and
/// reads them locally).
pub fn cluster_snapshot(cluster: &Cluster) -> Snapshot {
    let mut all = Snapshot::new();
    for master in cluster.current_masters() {
        for (key, value) in snap(master) {
            let previous = all.insert(key.clone(), value);
            assert!(previous.is_none(), "{} on two masters", show_key(&key));
        }
    }
    all
}

/// The slot ranges `node` serves, from its own line of `CLUSTER NODES`
/// (migration markers `[…]` left out).
pub fn served_slots(node: &RedisServer) -> Vec<(u64, u64)> {
    let text: String = ::redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut node.client())
        .unwrap_or_else(|e| panic!("CLUSTER NODES failed: {e}"));
    let me = text.lines().find(|l| l.contains("myself")).unwrap_or("");
    me.split_whitespace()
        .skip(8)
        .filter(|f| !f.starts_with('['))
        .filter_map(|range| match range.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => range.parse().ok().map(|n| (n, n)),
        })
        .collect()
}

/// The hash slot of `key`, as the cluster computes it.
pub fn key_slot(cluster: &Cluster, key: &str) -> u64 {
    ::redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut cluster.masters()[0].client())
        .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT failed: {e}"))
}

/// The index of the master (as created) that serves `slot`.
pub fn owner_of_slot(cluster: &Cluster, slot: u64) -> usize {
    cluster
        .masters()
        .iter()
        .position(|m| {
            served_slots(m)
                .iter()
                .any(|(a, b)| (*a..=*b).contains(&slot))
        })
        .unwrap_or_else(|| panic!("no master serves slot {slot}"))
}

/// How many keys each current master holds (`DBSIZE`).
pub fn keys_per_master(cluster: &Cluster) -> Vec<u64> {
    cluster
        .current_masters()
        .iter()
        .map(|m| {
            ::redis::cmd("DBSIZE")
                .query(&mut m.client())
                .unwrap_or_else(|e| panic!("DBSIZE failed: {e}"))
        })
        .collect()
}
