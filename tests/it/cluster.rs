//! Redis Cluster and Valkey cluster as source and target: three real
//! masters on loopback ports, created with `redis-cli --cluster create`.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::cli::*;
use crate::support::cluster::{cluster_snapshot, keys_per_master, seed_cluster, Cluster};
use crate::support::redis::{Flavor, RedisServer};
use crate::support::seed::SeedSpec;
use kbdump::format::archive::IndexedArchive;
use kbdump::kato::display_bytes;

/// The harness: a cluster starts, takes the seed on every master, and its
/// snapshot is exactly the seeded keys.
fn harness_seeds_every_master(flavor: Flavor) {
    let cluster = Cluster::start(flavor);
    let seeded = seed_cluster(&cluster, &SeedSpec::small());
    let per_master = keys_per_master(&cluster);
    assert_eq!(per_master.len(), 3, "{flavor:?}: {per_master:?}");
    assert!(
        per_master.iter().all(|&n| n > 0),
        "{flavor:?}: {per_master:?}"
    );
    let keys: BTreeSet<Vec<u8>> = cluster_snapshot(&cluster).keys().cloned().collect();
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

fn export_cluster(url: &str, path: &Path) {
    ok(&[
        "export",
        "--quiet",
        "--redis",
        url,
        "-o",
        path.to_str().unwrap(),
    ]);
}

/// Export of a cluster (every master), restore into one server, diff
/// against the cluster, and copy back into an empty cluster: every key
/// equal in type, value and expiry at each step.
fn round_trip(flavor: Flavor) {
    let source = Cluster::start(flavor);
    seed_cluster(&source, &SeedSpec::small());
    let expected = cluster_snapshot(&source);
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("cluster.kbd");
    export_cluster(&source.url_from_one_seed(), &archive);

    let header = IndexedArchive::open(std::fs::File::open(&archive).unwrap())
        .unwrap()
        .header()
        .clone();
    assert_eq!(header.source.mode, "cluster", "{flavor:?}");
    let masters: Vec<String> = source
        .masters()
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.port()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(header.source.masters, masters, "{flavor:?}");

    let standalone = RedisServer::start_flavor(flavor);
    restore_ok(&archive, &standalone, &[]);
    assert_same(&expected, &snap(&standalone));

    let out = kbdump(&[
        "diff",
        archive.to_str().unwrap(),
        "--redis",
        &source.url(),
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{flavor:?}: diff of the archive against its cluster: {}{}",
        stdout(&out),
        stderr(&out)
    );

    let target = Cluster::start(flavor);
    let to = target.url();
    ok(&["copy", "--from", &standalone.url(), "--to", &to, "--quiet"]);
    assert_same(&expected, &cluster_snapshot(&target));
    assert!(
        keys_per_master(&target).iter().all(|&n| n > 0),
        "{flavor:?}: every master of the target holds keys"
    );

    let back = RedisServer::start_flavor(flavor);
    ok(&["copy", "--from", &to, "--to", &back.url(), "--quiet"]);
    assert_same(&expected, &snap(&back));
}

#[test]
fn redis_7_0_cluster_round_trips_key_by_key() {
    round_trip(Flavor::Redis70);
}

#[test]
fn valkey_9_1_cluster_round_trips_key_by_key() {
    round_trip(Flavor::Valkey91);
}

#[test]
fn kbs_lists_the_kb_ids_of_every_master() {
    let cluster = Cluster::start(Flavor::Redis70);
    let seeded = seed_cluster(&cluster, &SeedSpec::small());
    let report = json_with_code(
        &kbdump(&["kbs", "--redis", &cluster.url_from_one_seed(), "--json"]),
        0,
    );
    let listed: BTreeSet<String> = report["kbs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kb| kb["kb_id"].as_str().unwrap().to_string())
        .collect();
    let seeded: BTreeSet<String> = seeded.kb_ids().iter().map(|kb| display_bytes(kb)).collect();
    assert_eq!(listed, seeded);
}

#[test]
fn a_plain_url_to_a_cluster_node_is_refused_with_the_cluster_scheme() {
    let cluster = Cluster::start(Flavor::Valkey91);
    seed_cluster(&cluster, &SeedSpec::small());
    let dir = tempfile::tempdir().unwrap();
    let node = cluster.masters()[0].url();
    let path = dir.path().join("third.kbd");
    let out = kbdump(&[
        "export",
        "--quiet",
        "--redis",
        &node,
        "-o",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("node of a Redis Cluster"), "{text}");
    let port = cluster.masters()[0].port();
    assert!(
        text.contains(&format!("redis+cluster://127.0.0.1:{port}")),
        "{text}"
    );
    assert!(!path.exists(), "no archive of a third of the data");
}
