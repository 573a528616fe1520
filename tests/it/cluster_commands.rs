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
