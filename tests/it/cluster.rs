//! Redis Cluster and Valkey cluster as source and target: three real
//! masters on loopback ports, created with `redis-cli --cluster create`.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::cli::*;
use crate::support::cluster::{
    cluster_snapshot, keys_per_master, seed_cluster, served_slots, Cluster,
};
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

/// Runs `during` on a thread while `reshard` moves `slots` slots from
/// master 0 to master 1, and checks the resharding worked.
fn while_resharding<T: Send>(
    cluster: &Cluster,
    slots: u32,
    during: impl FnOnce() -> T + Send,
) -> T {
    std::thread::scope(|scope| {
        let resharding = scope.spawn(|| cluster.reshard(0, 1, slots));
        let result = during();
        let out = resharding.join().unwrap();
        assert!(
            out.status.success(),
            "reshard failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        result
    })
}

/// How many slots master `index` serves.
fn slots_of_master(cluster: &Cluster, index: usize) -> u64 {
    served_slots(&cluster.masters()[index])
        .iter()
        .map(|(a, b)| b - a + 1)
        .sum()
}

/// A resharding while an export reads the masters (paced, so that slots
/// move during the read): the archive holds every key once, equal to the
/// cluster's data.
fn export_during_resharding(flavor: Flavor) {
    let cluster = Cluster::start(flavor);
    seed_cluster(&cluster, &SeedSpec::small());
    let expected = cluster_snapshot(&cluster);
    let before = slots_of_master(&cluster, 0);
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("moving.kbd");
    let url = cluster.url();
    let pace = format!("{}", (expected.len() as u64 / 4).max(20));
    let out = while_resharding(&cluster, 2000, || {
        kbdump(&[
            "export",
            "--quiet",
            "--redis",
            &url,
            // SCAN, which reads moved slots again (a snapshot would be
            // refused while slots move, or taken before they do).
            "--method",
            "scan",
            "--max-keys-per-sec",
            &pace,
            "-o",
            archive.to_str().unwrap(),
        ])
    });
    assert_eq!(out.status.code(), Some(0), "{flavor:?}: {}", stderr(&out));
    assert_eq!(
        slots_of_master(&cluster, 0),
        before - 2000,
        "the slots moved"
    );
    ok(&["verify", archive.to_str().unwrap()]);
    let standalone = RedisServer::start_flavor(flavor);
    let report = restore_ok(&archive, &standalone, &[]);
    assert_same(&expected, &snap(&standalone));
    assert_eq!(
        total(&report, "restored"),
        expected.len() as u64,
        "{flavor:?}: every key once: {report:#}"
    );
}

#[test]
fn redis_7_0_export_during_a_resharding_is_complete_and_duplicate_free() {
    export_during_resharding(Flavor::Redis70);
}

#[test]
fn valkey_9_1_export_during_a_resharding_is_complete_and_duplicate_free() {
    export_during_resharding(Flavor::Valkey91);
}

/// A restore, and a paced copy, into a cluster whose slots are moving:
/// both complete, and the cluster then holds exactly the data.
#[test]
fn writes_during_a_resharding_complete() {
    let flavor = Flavor::Redis70;
    let source = RedisServer::start_flavor(flavor);
    crate::support::seed::seed_kato(&mut source.client(), &SeedSpec::small());
    let expected = snap(&source);
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&source, dir.path(), "all.kbd", &[]);

    let target = Cluster::start(flavor);
    while_resharding(&target, 3000, || restore_ok_url(&archive, &target.url()));
    assert_same(&expected, &cluster_snapshot(&target));

    let paced = Cluster::start(flavor);
    let pace = format!("{}", (expected.len() as u64 / 4).max(20));
    let out = while_resharding(&paced, 2000, || {
        kbdump(&[
            "copy",
            "--from",
            &source.url(),
            "--to",
            &paced.url(),
            "--max-keys-per-sec",
            &pace,
            "--quiet",
        ])
    });
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_same(&expected, &cluster_snapshot(&paced));
}

fn restore_ok_url(archive: &Path, url: &str) {
    ok(&[
        "restore",
        archive.to_str().unwrap(),
        "--redis",
        url,
        "--quiet",
    ]);
}

/// A master killed (SIGKILL) during a paced copy onto a cluster with a
/// replica per master: the copy either waits out the failover and
/// completes, or stops with an error naming the cluster; either way a rerun
/// once the replica has taken over completes, and the cluster then holds
/// exactly the data (writes the dead master had not yet passed to its
/// replica are written again by the rerun).
#[test]
fn a_master_killed_during_a_copy_is_survived_or_reported_and_a_rerun_completes() {
    let flavor = Flavor::Redis70;
    let source = RedisServer::start_flavor(flavor);
    crate::support::seed::seed_kato(&mut source.client(), &SeedSpec::small());
    let expected = snap(&source);
    let mut target = Cluster::start_with_replicas(flavor, 1);
    let to = target.url();
    let pace = format!("{}", (expected.len() as u64 / 6).max(20));
    let copy = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_kbdump"))
            .args(["copy", "--from", &source.url(), "--to", &to, "--quiet"])
            .args(["--max-keys-per-sec", &pace])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let running = copy();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    target.nodes_mut()[0].kill();
    let first = running.wait_with_output().unwrap();
    let said = stderr(&first);
    eprintln!(
        "the copy a master died under exited {:?}: {said}",
        first.status.code()
    );
    match first.status.code() {
        Some(0) => {}
        Some(2) => assert!(
            said.contains("cluster"),
            "the error names the cluster: {said}"
        ),
        other => panic!("copy during a failover exited {other:?}: {said}"),
    }
    target.wait_failover();
    let rerun = copy().wait_with_output().unwrap();
    assert_eq!(rerun.status.code(), Some(0), "rerun: {}", stderr(&rerun));
    assert_same(&expected, &cluster_snapshot(&target));
}
