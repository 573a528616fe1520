//! The commands beyond export, restore, diff and copy against a real
//! three-master cluster: `rebuild` (also `--only-missing`, whose grouped
//! writes must stay within one slot), `check`, `mirror` with `restore
//! --from-clickhouse`, `backup` with `backups verify` and `backups test`;
//! and `copy` between clusters of different sizes. Each compares the
//! cluster key by key with the same command on one server, or with the
//! data it came from.

use std::path::Path;

use crate::support::cli::*;
use crate::support::clickhouse as chs;
use crate::support::cluster::{cluster_snapshot, keys_per_master, seed_cluster, Cluster};
use crate::support::redis::{Flavor, RedisServer};
use crate::support::seed::{SeedSpec, Snapshot};

/// A ClickHouse database with the patterns of three kb_ids, and its URL.
async fn patterns(test: &str) -> String {
    let server = chs::server();
    let db = server.database(test).await;
    chs::create_patterns_table(&server.client(), &db).await;
    for (i, kb) in ["kbc0", "kbc1", "kbc2"].iter().enumerate() {
        chs::insert_patterns(&server.client(), &db, &chs::seed_rows(kb, 60, i as u64)).await;
    }
    server.url(&db)
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Deletes every third key of `snapshot` through `conn` (a single server's
/// or a cluster's connection).
fn lose_every_third(snapshot: &Snapshot, conn: &mut impl redis::ConnectionLike) {
    for key in snapshot.keys().step_by(3) {
        let _: () = redis::cmd("DEL").arg(key).query(conn).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuild_and_check_on_a_cluster_equal_one_server() {
    let url = patterns("cluster_rebuild").await;
    let single = RedisServer::start_flavor(Flavor::Redis70);
    let cluster = Cluster::start(Flavor::Redis70);
    let (one, many) = (single.url(), cluster.url());
    let rebuild = |redis: &str, extra: &[&str]| {
        let args = [
            &["rebuild", "--clickhouse", &url, "--redis", redis][..],
            extra,
        ]
        .concat();
        blocking(|| json_outcome(&args))
    };
    for target in [&one, &many] {
        let (code, _, err) = rebuild(target, &[]);
        assert_eq!(code, Some(0), "rebuild onto {target}: {err}");
    }
    let want = snap(&single);
    assert!(!want.is_empty());
    assert_same(&want, &cluster_snapshot(&cluster));
    assert!(keys_per_master(&cluster).iter().all(|&n| n > 0));

    // check agrees with ClickHouse on both.
    for target in [&one, &many] {
        let args = ["check", "--clickhouse", &url, "--redis", target];
        let (code, json, err) = blocking(|| json_outcome(&args));
        assert_eq!(code, Some(0), "check {target}: {err}");
        assert_eq!(json["findings"], 0, "{json:#}");
    }

    // A partial loss, the same on both, then --only-missing: the grouped
    // conditional writes (MSETNX) must not span slots on the cluster.
    lose_every_third(&want, &mut single.client());
    lose_every_third(&want, &mut cluster.client());
    let args = ["check", "--clickhouse", &url, "--redis", &many];
    let (code, json, _) = blocking(|| json_outcome(&args));
    assert_ne!(code, Some(0), "check sees the loss: {json:#}");
    assert!(json["findings"].as_u64() > Some(0), "{json:#}");
    let mut reports = Vec::new();
    for target in [&one, &many] {
        let (code, json, err) = rebuild(target, &["--only-missing"]);
        assert_eq!(code, Some(0), "rebuild --only-missing onto {target}: {err}");
        reports.push(json);
    }
    let counts = |report: &serde_json::Value| {
        let kbs = report["kbs"].as_array().unwrap().iter();
        kbs.map(|kb| (kb["kb_id"].clone(), kb["categories"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        counts(&reports[0]),
        counts(&reports[1]),
        "the same written and skipped counts"
    );
    assert_same(&want, &snap(&single));
    assert_same(&want, &cluster_snapshot(&cluster));
}

/// `mirror` of a cluster into ClickHouse, then `restore --from-clickhouse`
/// into one server: every key of the mirrored categories, equal to the
/// cluster's.
#[tokio::test(flavor = "multi_thread")]
async fn mirror_of_a_cluster_restores_into_one_server() {
    let server = chs::server();
    let db = server.database("cluster_mirror").await;
    let url = server.url(&db);
    let cluster = Cluster::start(Flavor::Redis70);
    seed_cluster(&cluster, &SeedSpec::small().with_kbs(&[b"kbm0", b"kbm1"]));
    let many = cluster.url();
    let args = ["mirror", "--create", "--clickhouse", &url, "--redis", &many];
    let (code, json, err) = blocking(|| json_outcome(&args));
    assert_eq!(code, Some(0), "mirror: {err}");
    let restored = RedisServer::start_flavor(Flavor::Redis70);
    let one = restored.url();
    let args = ["restore", "--from-clickhouse", &url, "--redis", &one];
    let (code, _, err) = blocking(|| json_outcome(&args));
    assert_eq!(code, Some(0), "restore --from-clickhouse: {err}");
    let got = snap(&restored);
    assert!(!got.is_empty(), "{json:#}");
    // The mirror holds the categories that exist only in Redis: every key
    // it restored is the cluster's, value and expiry alike.
    let want = cluster_snapshot(&cluster);
    let mirrored = only(&want, |k| got.contains_key(k));
    assert_same(&mirrored, &got);
    for category in [&b":emotives:"[..], b":metadata:"] {
        let of = |s: &Snapshot| {
            s.keys()
                .filter(|k| k.windows(category.len()).any(|w| w == category))
                .count()
        };
        assert!(of(&want) > 0);
        assert_eq!(of(&got), of(&want), "every {category:?} key mirrored");
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `backup` of a cluster: verified as it is written, listed, verified
/// again, checked against the cluster, and tested by a restore into a
/// scratch server that compares every key.
#[test]
fn backup_of_a_cluster_is_verified_checked_and_tested() {
    let cluster = Cluster::start(Flavor::Valkey91);
    seed_cluster(&cluster, &SeedSpec::small());
    let want = cluster_snapshot(&cluster);
    let dir = tempfile::tempdir().unwrap();
    let many = cluster.url();
    let (code, json, err) = json_outcome(&["backup", "--dir", s(dir.path()), "--redis", &many]);
    assert_eq!(code, Some(0), "backup: {err}");
    assert_eq!(json["keys"], want.len() as u64, "{json:#}");
    let (code, list, err) = json_outcome(&["backups", "list", "--dir", s(dir.path())]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(list["backups"].as_array().unwrap().len(), 1, "{list:#}");
    assert_eq!(list["backups"][0]["status"], "good", "{list:#}");
    let (code, _, err) = json_outcome(&["backups", "verify", "--dir", s(dir.path())]);
    assert_eq!(code, Some(0), "{err}");
    let scratch = RedisServer::start_flavor(Flavor::Valkey91);
    let args = ["backups", "test", "--dir", s(dir.path()), "--scratch"];
    let (code, test, err) = json_outcome(&[&args[..], &[&scratch.url()]].concat());
    assert_eq!(code, Some(0), "backups test: {err} {test:#}");
    // The health check reads the cluster's key counts against the backup.
    let args = ["backups", "check", "--dir", s(dir.path()), "--redis", &many];
    let (code, check, err) = json_outcome(&args);
    assert_eq!(
        code,
        Some(0),
        "backups check against the cluster: {err} {check:#}"
    );
    assert_eq!(check["healthy"], true, "{check:#}");
    // A kb_id lost on the cluster is an alarm.
    let mut conn = cluster.client();
    for key in want.keys().filter(|k| k.starts_with(b"node0_kato:")) {
        let _: () = redis::cmd("DEL").arg(key).query(&mut conn).unwrap();
    }
    let (code, check, _) = json_outcome(&args);
    assert_eq!(code, Some(1), "a lost kb_id is an alarm: {check:#}");
    let file = std::path::PathBuf::from(json["file"].as_str().expect("the backup's path"));
    let restored = RedisServer::start_flavor(Flavor::Valkey91);
    restore_ok(&file, &restored, &[]);
    assert_same(&want, &snap(&restored));
}

/// `copy` between clusters of different sizes, both ways: a three-master
/// cluster onto a four-master one and back into an empty three-master
/// one; every key lands on the master of its slot in each, equal in type,
/// value and expiry.
#[test]
fn copy_between_clusters_of_different_sizes() {
    let three = Cluster::start(Flavor::Redis70);
    seed_cluster(&three, &SeedSpec::small());
    let want = cluster_snapshot(&three);
    let four = Cluster::start_sized(Flavor::Redis70, 4, 0);
    ok(&[
        "copy",
        "--quiet",
        "--from",
        &three.url(),
        "--to",
        &four.url(),
    ]);
    assert_same(&want, &cluster_snapshot(&four));
    let per_master = keys_per_master(&four);
    assert_eq!(per_master.len(), 4);
    assert!(per_master.iter().all(|&n| n > 0), "{per_master:?}");
    let back = Cluster::start(Flavor::Redis70);
    ok(&[
        "copy",
        "--quiet",
        "--from",
        &four.url(),
        "--to",
        &back.url(),
    ]);
    assert_same(&want, &cluster_snapshot(&back));
}
