//! The commands beyond export, restore, diff and copy against a real
//! three-master cluster: `rebuild` (also `--only-missing`, whose grouped
//! writes must stay within one slot), `check`, `mirror` with `restore
//! --from-clickhouse`, `backup` with `backups verify` and `backups test`;
//! `copy` between clusters of different sizes; the documented cluster ACL
//! rules; and the logical path with awkward braces. Each compares the
//! cluster key by key with the same command on one server, or with the
//! data it came from.

use std::path::Path;

use crate::support::cli::*;
use crate::support::clickhouse as chs;
use crate::support::cluster::{
    cluster_snapshot, key_slot, keys_per_master, seed_cluster, served_slots, Cluster,
};
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

/// The rules docs/SAFETY.md adds for a cluster, read from it.
fn documented_cluster_rules() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/SAFETY.md"))
        .expect("docs/SAFETY.md");
    let section = doc.split("\n### On a cluster").nth(1).expect("the section");
    let plus = section
        .split("rules below\nplus ")
        .nth(1)
        .expect("the cluster's extra rules");
    let rules = plus.split(',').next().unwrap().replace('\n', " ");
    rules
        .split('`')
        .filter(|part| part.starts_with('+'))
        .flat_map(|part| {
            part.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The same ACL user on every node of `cluster`, and its cluster URL.
fn cluster_user(cluster: &Cluster, user: &str, rules: &[String]) -> String {
    for node in cluster.masters() {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER")
            .arg(user)
            .arg("reset")
            .arg("on")
            .arg(">pw-of-acl");
        for rule in rules {
            cmd.arg(rule);
        }
        let _: () = run(node, &mut cmd);
    }
    let seeds: Vec<String> = cluster
        .masters()
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.port()))
        .collect();
    format!("redis+cluster://{user}:pw-of-acl@{}", seeds.join(","))
}

/// The documented rules of each command plus the documented cluster rules
/// are enough on a cluster (export by SCAN, the snapshots, restore), and a
/// user without the cluster rules gets an error that names what it lacks.
#[test]
fn the_documented_cluster_acl_is_enough_and_a_missing_rule_is_named() {
    let source = Cluster::start(Flavor::Redis70);
    seed_cluster(&source, &SeedSpec::small());
    let want = cluster_snapshot(&source);
    let extra = documented_cluster_rules();
    assert!(extra.contains(&"+cluster|slots".to_string()), "{extra:?}");
    let with = |command: &str| {
        let mut rules = crate::acl::documented_rules(command);
        rules.extend(extra.iter().cloned());
        rules
    };
    let dir = tempfile::tempdir().unwrap();
    for (user, command, method) in [
        ("kbdump-scan", "export", "scan"),
        ("kbdump-rdb", "export --method rdb", "rdb"),
    ] {
        let url = cluster_user(&source, user, &with(command));
        let archive = dir.path().join(format!("{method}.kbd"));
        let args = [
            "export",
            "--redis",
            &url,
            "--method",
            method,
            "-o",
            s(&archive),
        ];
        let (code, report, err) = json_outcome(&args);
        assert_eq!(code, Some(0), "{command} as {user}: {err}");
        assert_eq!(report["keys"], want.len() as u64, "{report:#}");
        let target = Cluster::start(Flavor::Redis70);
        let url = cluster_user(&target, "kbdump-restore", &with("restore"));
        let args = ["restore", s(&archive), "--redis", &url];
        let (code, _, err) = json_outcome(&args);
        assert_eq!(code, Some(0), "restore as the documented user: {err}");
        assert_same(&want, &cluster_snapshot(&target));
    }

    // The rules of one server alone: the slot map cannot be read.
    let rules = crate::acl::documented_rules("export");
    let url = cluster_user(&source, "kbdump-no-cluster", &rules);
    let archive = dir.path().join("refused.kbd");
    let out = kbdump(&[
        "export",
        "--redis",
        &url,
        "--method",
        "scan",
        "-o",
        s(&archive),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("kbdump-no-cluster") && err.contains("+cluster|slots"),
        "{err}"
    );
    assert!(!err.contains("pw-of-acl"), "{err}");
    assert!(!archive.exists());
}

/// Keys with unbalanced or empty braces restored through the logical path
/// onto a cluster: each temporary key is built in its key's own slot, so
/// the move into place never spans slots; every key equal afterwards.
#[test]
fn the_logical_path_onto_a_cluster_keeps_awkward_keys_in_their_slots() {
    let source = RedisServer::start_flavor(Flavor::Redis70);
    let mut conn = source.client();
    let keys: [&[u8]; 7] = [
        b"kbb:emotives:a{b",
        b"kbb:metadata:}{x}",
        b"kbb:emotives:{}",
        b"kbb:metadata:{{a}}",
        b"kbb:{a:metadata:p",
        b"{kbb}:emotives:x",
        b"kbb:emotives:}",
    ];
    for (i, key) in keys.iter().enumerate() {
        let _: () = match i % 3 {
            0 => redis::cmd("RPUSH")
                .arg(key)
                .arg("a")
                .arg("b")
                .query(&mut conn),
            1 => redis::cmd("HSET")
                .arg(key)
                .arg("f")
                .arg("v")
                .query(&mut conn),
            _ => redis::cmd("SET").arg(key).arg("v").query(&mut conn),
        }
        .unwrap();
    }
    let _: () = redis::cmd("PEXPIRE")
        .arg(keys[0])
        .arg(600_000)
        .query(&mut conn)
        .unwrap();
    let want = snap(&source);
    let dir = tempfile::tempdir().unwrap();
    let archive = export(&source, dir.path(), "braces.kbd", &[]);
    let cluster = Cluster::start(Flavor::Redis70);
    let url = cluster.url();
    let args = ["restore", s(&archive), "--redis", &url, "--logical"];
    let (code, report, err) = json_outcome(&args);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(total(&report, "logical"), keys.len() as u64, "{report:#}");
    assert_same(&want, &cluster_snapshot(&cluster));
}

/// Writes `count` KATO-like string keys into db `db` of the cluster.
fn fill_db(cluster: &Cluster, db: i64, prefix: &str, count: usize) {
    for node in cluster.masters() {
        let mut conn = node.client();
        let _: () = redis::cmd("SELECT").arg(db).query(&mut conn).unwrap();
        for i in 0..count {
            let key = format!("{prefix}:emotives:p{i}");
            let slot = key_slot(cluster, &key);
            let owned = served_slots(node)
                .iter()
                .any(|(a, b)| (*a..=*b).contains(&slot));
            if owned {
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(format!("[{i}]"))
                    .query(&mut conn)
                    .unwrap();
            }
        }
    }
}

/// The keys of db `db` of every master.
fn db_snapshot(cluster: &Cluster, db: i64) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for node in cluster.masters() {
        let mut conn = node.client();
        let _: () = redis::cmd("SELECT").arg(db).query(&mut conn).unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
        for key in keys {
            let value: String = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
            all.push((key, value));
        }
    }
    all.sort();
    all
}

/// Valkey 9 serves numbered databases in cluster mode: a cluster URL's db
/// is read and written on every master, and the other dbs are left alone.
/// Redis Cluster has db 0 only: another db is refused before anything is
/// read.
#[test]
fn a_db_of_a_valkey_cluster_is_read_and_written_and_redis_refuses_one() {
    let config = ["cluster-databases 16"];
    let cluster = Cluster::start_with_config(Flavor::Valkey91, 3, 0, &config);
    fill_db(&cluster, 2, "kbdb2", 60);
    fill_db(&cluster, 0, "kbdb0", 20);
    let in_db2 = db_snapshot(&cluster, 2);
    let in_db0 = db_snapshot(&cluster, 0);
    assert_eq!(in_db2.len(), 60);
    let dir = tempfile::tempdir().unwrap();
    let seeds = cluster.url();
    for method in ["scan", "rdb"] {
        let archive = dir.path().join(format!("db2-{method}.kbd"));
        let from = format!("{seeds}/2");
        let args = [
            "export",
            "--redis",
            &from,
            "--method",
            method,
            "-o",
            s(&archive),
        ];
        let (code, report, err) = json_outcome(&args);
        assert_eq!(code, Some(0), "export of db 2 by {method}: {err}");
        assert_eq!(report["keys"], 60, "{method}: db 2 only: {report:#}");
        let to = format!("{seeds}/3");
        let (code, _, err) = json_outcome(&["restore", s(&archive), "--redis", &to]);
        assert_eq!(code, Some(0), "restore into db 3: {err}");
        assert_eq!(db_snapshot(&cluster, 3), in_db2, "{method}");
        for node in cluster.masters() {
            let mut conn = node.client();
            let _: () = redis::cmd("SELECT").arg(3).query(&mut conn).unwrap();
            let _: () = redis::cmd("FLUSHDB").query(&mut conn).unwrap();
        }
    }
    assert_eq!(db_snapshot(&cluster, 0), in_db0, "db 0 untouched");
    assert_eq!(db_snapshot(&cluster, 2), in_db2, "db 2 untouched");

    let redis = Cluster::start(Flavor::Redis70);
    let from = format!("{}/2", redis.url());
    let archive = dir.path().join("refused.kbd");
    let out = kbdump(&["export", "--redis", &from, "-o", s(&archive)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("db 2") && err.contains("db 0"), "{err}");
    assert!(!archive.exists());
}
