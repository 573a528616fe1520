//! `export --method rdb` of a cluster: every master's snapshot, asked for
//! at once and read together. The archive holds what a SCAN export holds
//! (kb_id, category, type, payload, expiry), attributed across masters;
//! each record is its master's state at its snapshot (writes made after
//! the snapshots started are not in it); the header and the report name
//! each master's instant; a slot map that moves while the snapshots start
//! is refused, never read half. Reads and writes report the keys of each
//! master.

use std::collections::BTreeSet;

use serde_json::Value as Json;
use tempfile::TempDir;

use crate::snapshot::{assert_same_records, full_syncs, read_archive, spawn, wait_for};
use crate::support::cli::*;
use crate::support::cluster::{
    cluster_snapshot, key_slot, node_id, owner_of_slot, seed_cluster, Cluster,
};
use crate::support::redis::{Flavor, RedisServer};
use crate::support::seed::SeedSpec;

/// The masters' `127.0.0.1:port`, sorted.
fn master_addresses(cluster: &Cluster) -> Vec<String> {
    let set: BTreeSet<String> = cluster
        .masters()
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.port()))
        .collect();
    set.into_iter().collect()
}

/// The index of the master that holds `key`.
fn holder(cluster: &Cluster, key: &str) -> usize {
    owner_of_slot(cluster, key_slot(cluster, key))
}

/// A kb_id whose only key with a category marker is on one master, and
/// keys of it without a marker on the others: only a read that attributes
/// the masters' keys together files those under the kb_id.
fn seed_spread_kb(cluster: &Cluster) {
    let mut conn = cluster.client();
    let _: () = redis::cmd("SET")
        .arg("spread_kb:emotives:p1")
        .arg("{}")
        .query(&mut conn)
        .unwrap();
    for i in 0..30 {
        let _: () = redis::cmd("SET")
            .arg(format!("spread_kb:note:{i}"))
            .arg("unmarked")
            .query(&mut conn)
            .unwrap();
    }
    let marked = holder(cluster, "spread_kb:emotives:p1");
    assert!(
        (0..30).any(|i| holder(cluster, &format!("spread_kb:note:{i}")) != marked),
        "some unmarked key is on another master than the marked one"
    );
}

fn export_json(url: &str, path: &std::path::Path, method: &str) -> Json {
    let (code, report, err) = json_outcome(&[
        "export",
        "--redis",
        url,
        "--method",
        method,
        "-o",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "export --method {method}: {err}");
    report
}

fn shards_equal_scan_and_round_trip(flavor: Flavor) {
    let cluster = Cluster::start(flavor);
    seed_cluster(&cluster, &SeedSpec::small());
    seed_spread_kb(&cluster);
    let expected = cluster_snapshot(&cluster);
    let dir = TempDir::new().unwrap();
    let (rdb_path, scan_path) = (dir.path().join("rdb.kbd"), dir.path().join("scan.kbd"));
    let url = cluster.url_from_one_seed();
    let rdb = export_json(&url, &rdb_path, "rdb");
    let scan = export_json(&url, &scan_path, "scan");

    assert_eq!(rdb["method"], "rdb", "{flavor:?}: {rdb:#}");
    assert!(
        rdb["snapshot_at_ms"].is_null(),
        "no one instant across shards"
    );
    let shards = rdb["shards"].as_array().expect("one entry per master");
    let reported: BTreeSet<&str> = shards
        .iter()
        .map(|s| s["master"].as_str().unwrap())
        .collect();
    let masters = master_addresses(&cluster);
    assert_eq!(
        reported,
        masters.iter().map(String::as_str).collect(),
        "{flavor:?}"
    );
    let read: u64 = shards
        .iter()
        .map(|s| s["keys_read"].as_u64().unwrap())
        .sum();
    assert_eq!(
        read,
        expected.len() as u64,
        "{flavor:?}: every key read once"
    );
    assert!(shards.iter().all(|s| s["keys_read"].as_u64() > Some(0)));
    let per_master = scan["per_master"].as_object().expect("keys per master");
    assert_eq!(
        per_master
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        reported,
        "{flavor:?}: {scan:#}"
    );
    let scanned: u64 = per_master.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(scanned, expected.len() as u64, "{flavor:?}");
    assert_eq!(rdb["keys"], scan["keys"], "{flavor:?}");
    assert_eq!(rdb["groups"], scan["groups"], "{flavor:?}");
    assert_eq!(rdb["left_out"], scan["left_out"], "{flavor:?}");

    let (header, records) = read_archive(&rdb_path);
    let (_, scanned) = read_archive(&scan_path);
    assert_same_records(&records, &scanned);
    assert_eq!(records.len(), expected.len(), "{flavor:?}");
    let note = &records[b"spread_kb:note:0".as_slice()];
    assert_eq!(note.kb_id, b"spread_kb", "attributed across masters");
    assert!(header.snapshot_at_ms.is_none(), "{flavor:?}");
    let in_header: Vec<&str> = header.shards.iter().map(|s| s.master.as_str()).collect();
    assert_eq!(
        in_header.iter().copied().collect::<BTreeSet<_>>(),
        reported,
        "{flavor:?}"
    );
    assert_eq!(header.source.masters, masters, "{flavor:?}");
    let shown = stdout(&ok(&["inspect", rdb_path.to_str().unwrap()]));
    assert!(shown.contains("one per shard"), "{shown}");

    let standalone = RedisServer::start_flavor(flavor);
    restore_ok(&rdb_path, &standalone, &[]);
    assert_same(&expected, &snap(&standalone));
}

#[test]
fn redis_7_0_cluster_snapshots_equal_scan_and_round_trip() {
    shards_equal_scan_and_round_trip(Flavor::Redis70);
}

#[test]
fn valkey_9_1_cluster_snapshots_equal_scan_and_round_trip() {
    shards_equal_scan_and_round_trip(Flavor::Valkey91);
}

/// Writes made after every master has started its snapshot are in none
/// of them; the keys as they were are.
#[test]
fn writes_after_the_shards_snapshots_started_are_not_in_the_archive() {
    let cluster = Cluster::start(Flavor::Redis70);
    seed_cluster(&cluster, &SeedSpec::small());
    let mut conn = cluster.client();
    let bulk: Vec<String> = (0..1500)
        .map(|i| format!("bulk_kato:emotives:{i}"))
        .collect();
    for key in &bulk {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("x".repeat(2000))
            .query(&mut conn)
            .unwrap();
    }
    let before = cluster_snapshot(&cluster);
    let dir = TempDir::new().unwrap();
    let target = dir.path().join("pit.kbd");
    let url = cluster.url();
    let args = ["--json", "export", "--redis", &url, "--method", "rdb"];
    let paced = ["--max-keys-per-sec", "1000", "-o", target.to_str().unwrap()];
    let child = spawn(&[&args[..], &paced].concat());
    wait_for("every master's snapshot to start", || {
        cluster.masters().iter().all(|m| full_syncs(m) > 0)
    });
    let late: Vec<String> = (0..60)
        .map(|i| format!("node0_kato:emotives:late{i}"))
        .collect();
    for key in &late {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("late")
            .query(&mut conn)
            .unwrap();
    }
    for key in bulk.iter().take(300) {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("changed")
            .query(&mut conn)
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(cluster.masters().iter().all(|m| full_syncs(m) == 1));

    let (_, records) = read_archive(&target);
    for key in &late {
        assert!(!records.contains_key(key.as_bytes()), "{key} came later");
    }
    let restored = RedisServer::start_flavor(Flavor::Redis70);
    restore_ok(&target, &restored, &[]);
    assert_same(&before, &snap(&restored));
}

/// A slot being migrated when the snapshots start: `--method rdb` refuses
/// (exit 2, no archive) and says to rerun or to read with SCAN; once the
/// slot is stable again, the same export succeeds.
#[test]
fn a_slot_migrating_while_the_snapshots_start_is_refused_not_read_half() {
    let cluster = Cluster::start(Flavor::Redis70);
    seed_cluster(&cluster, &SeedSpec::small());
    let masters = cluster.masters();
    let slot = key_slot(&cluster, "x");
    let owner = owner_of_slot(&cluster, slot);
    let to = (owner + 1) % masters.len();
    let setslot = |node: &RedisServer, state: &str, id: Option<&str>| {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SETSLOT").arg(slot).arg(state);
        if let Some(id) = id {
            cmd.arg(id);
        }
        let _: () = run(node, &mut cmd);
    };
    setslot(&masters[to], "IMPORTING", Some(&node_id(&masters[owner])));
    setslot(&masters[owner], "MIGRATING", Some(&node_id(&masters[to])));

    let dir = TempDir::new().unwrap();
    let path = dir.path().join("half.kbd");
    let url = cluster.url();
    let args = ["export", "--redis", &url, "--method", "rdb", "-o"];
    let out = kbdump(&[&args[..], &[path.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("slot map") && err.contains("rerun") && err.contains("--method scan"),
        "{err}"
    );
    assert!(!path.exists(), "no archive from a refused snapshot");

    setslot(&masters[owner], "STABLE", None);
    setslot(&masters[to], "STABLE", None);
    let report = export_json(&url, &path, "rdb");
    assert_eq!(report["method"], "rdb");
    let restored = RedisServer::start_flavor(Flavor::Redis70);
    restore_ok(&path, &restored, &[]);
    assert_same(&cluster_snapshot(&cluster), &snap(&restored));
}

/// A restore onto a cluster reports the keys it wrote on each master, and
/// each figure is what that master then holds.
#[test]
fn a_restore_onto_a_cluster_reports_the_keys_written_on_each_master() {
    let source = RedisServer::start_flavor(Flavor::Redis70);
    crate::support::seed::seed_kato(&mut source.client(), &SeedSpec::small());
    let dir = TempDir::new().unwrap();
    let archive = export(&source, dir.path(), "all.kbd", &[]);
    let cluster = Cluster::start(Flavor::Redis70);
    let url = cluster.url();
    let (code, report, err) = json_outcome(&[
        "restore",
        archive.to_str().unwrap(),
        "--redis",
        &url,
        "--quiet",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let per_master = report["per_master"].as_object().expect("keys per master");
    let masters = master_addresses(&cluster);
    assert_eq!(
        per_master.keys().cloned().collect::<Vec<_>>(),
        masters,
        "{report:#}"
    );
    for (i, address) in masters.iter().enumerate() {
        let node = cluster
            .masters()
            .iter()
            .find(|m| format!("127.0.0.1:{}", m.port()) == *address)
            .unwrap();
        let held: u64 = run(node, &mut redis::cmd("DBSIZE"));
        assert_eq!(per_master[address].as_u64(), Some(held), "master {i}");
    }
    let written: u64 = per_master.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(written, total(&report, "restored"));
    assert_same(&snap(&source), &cluster_snapshot(&cluster));
}
