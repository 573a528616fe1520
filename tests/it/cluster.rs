//! Redis Cluster and Valkey cluster as source and target: three real
//! masters on loopback ports, created with `redis-cli --cluster create`.

use crate::support::cluster::{cluster_snapshot, keys_per_master, seed_cluster, Cluster};
use crate::support::redis::Flavor;
use crate::support::seed::SeedSpec;

/// The harness: a cluster starts, takes the seed on every master, and its
/// snapshot is exactly the seeded keys.
fn harness_seeds_every_master(flavor: Flavor) {
    let cluster = Cluster::start(flavor);
    let seeded = seed_cluster(&cluster, &SeedSpec::small());
    let per_master = keys_per_master(&cluster);
    assert_eq!(per_master.len(), 3, "{flavor:?}: {per_master:?}");
    assert!(per_master.iter().all(|&n| n > 0), "{flavor:?}: {per_master:?}");
    let keys: std::collections::BTreeSet<Vec<u8>> =
        cluster_snapshot(&cluster).keys().cloned().collect();
    assert_eq!(keys, seeded.all(), "{flavor:?}");
}

#[test]
fn harness_redis_7_0_cluster_takes_the_seed_on_every_master() {
    harness_seeds_every_master(Flavor::Redis70);
}

#[test]
fn harness_valkey_9_1_cluster_takes_the_seed_on_every_master() {
    harness_seeds_every_master(Flavor::Valkey91);
}
