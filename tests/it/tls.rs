//! TLS with a private CA: `--tls-ca` verifies the server, `--tls-cert` and
//! `--tls-key` present a client certificate to a server with
//! `tls-auth-clients yes`, `--tls-insecure` skips the verification with a
//! warning, and each way of getting it wrong is a clear error. The same
//! options carry a snapshot's own connection, and reach every master of a
//! TLS cluster.
//!
//! The test server also keeps its plain port: the harness uses it to see
//! that the server is up and to seed it; kbdump only talks TLS to it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::cli::{kbdump, stderr, stdout};
use crate::support::redis::RedisServer;
use crate::support::seed::{seed_kato, SeedSpec, Seeded};

/// A CA and a certificate signed by it, in PEM files.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// A CA that signed nothing here.
    other_ca: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl {args:?} failed");
}

/// `openssl req -x509` for a self-signed CA `name`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=kbdump test {name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// A certificate for `name` signed by CA `ca`, with `ext` as its v3
/// extensions.
fn make_signed(dir: &Path, ca: &str, name: &str, subject: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

fn pki(dir: &Path) -> Pki {
    make_ca(dir, "ca");
    make_ca(dir, "other-ca");
    make_signed(
        dir,
        "ca",
        "server",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    make_signed(
        dir,
        "ca",
        "client",
        "/CN=kbdump",
        "extendedKeyUsage=clientAuth\n",
    );
    Pki {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
        other_ca: dir.join("other-ca.pem"),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server that takes TLS clients with a certificate signed by `pki.ca`
/// on the returned port.
fn tls_server(pki: &Pki) -> (RedisServer, u16, Seeded) {
    let tls_port = free_port();
    let server = RedisServer::builder()
        .config(&format!("tls-port {tls_port}"))
        .config(&format!("tls-cert-file {}", pki.server_cert.display()))
        .config(&format!("tls-key-file {}", pki.server_key.display()))
        .config(&format!("tls-ca-cert-file {}", pki.ca.display()))
        .config("tls-auth-clients yes")
        .start();
    let seeded = seed_kato(&mut server.client(), &SeedSpec::small());
    (server, tls_port, seeded)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[track_caller]
fn assert_fails(out: &Output, wanted: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {}\nstderr: {err}",
        stdout(out)
    );
    for w in wanted {
        assert!(err.contains(w), "wanted {w:?} in: {err}");
    }
    assert!(err.len() < 1_000, "{err}");
    err
}

#[test]
fn export_over_tls_with_a_private_ca_and_a_client_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let pki = pki(certs.path());
    let (_server, port, seeded) = tls_server(&pki);
    let url = format!("rediss://127.0.0.1:{port}/0");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tls.kbd");
    let client = [
        "--tls-cert",
        p(&pki.client_cert),
        "--tls-key",
        p(&pki.client_key),
    ];

    let mut args = vec![
        "--json",
        "export",
        "-q",
        "--kb",
        "node0_kato",
        "--redis",
        &url,
        "--tls-ca",
        p(&pki.ca),
        "-o",
        p(&out),
    ];
    args.extend_from_slice(&client);
    let done = kbdump(&args);
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    let report: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(
        report["keys"],
        seeded.of_kb(b"node0_kato").len() as u64,
        "{report:#}"
    );
    assert!(stderr(&done).is_empty(), "{}", stderr(&done));

    // The server asks for a client certificate and gets none.
    let refused = kbdump(&["kbs", "--redis", &url, "--tls-ca", p(&pki.ca)]);
    assert_fails(
        &refused,
        &[
            &format!("127.0.0.1:{port}"),
            "client certificate",
            "--tls-cert",
        ],
    );

    // The server's certificate is signed by a CA we were not told to trust.
    let mut args = vec!["kbs", "--redis", &url, "--tls-ca", p(&pki.other_ca)];
    args.extend_from_slice(&client);
    assert_fails(
        &kbdump(&args),
        &[&format!("127.0.0.1:{port}"), "certificate", "--tls-ca"],
    );
    // ...or by none of the system's roots.
    let mut args = vec!["kbs", "--redis", &url];
    args.extend_from_slice(&client);
    assert_fails(
        &kbdump(&args),
        &[&format!("127.0.0.1:{port}"), "certificate"],
    );

    // --tls-insecure skips the check and says so.
    let mut args = vec!["kbs", "--redis", &url, "--tls-insecure"];
    args.extend_from_slice(&client);
    let insecure = kbdump(&args);
    assert_eq!(insecure.status.code(), Some(0), "{}", stderr(&insecure));
    let warning = stderr(&insecure);
    assert!(
        warning.contains("warning") && warning.contains("not verified"),
        "{warning}"
    );
    assert!(stdout(&insecure).contains("node0_kato"));
}

#[test]
fn tls_options_that_cannot_work_are_usage_errors() {
    let certs = tempfile::tempdir().unwrap();
    let pki = pki(certs.path());
    // TLS files with a plain redis:// URL.
    let out = kbdump(&[
        "kbs",
        "--redis",
        "redis://127.0.0.1:1",
        "--tls-ca",
        p(&pki.ca),
    ]);
    assert_fails(&out, &["--tls-ca", "rediss://"]);
    // A certificate without its key, or the other way round.
    let out = kbdump(&[
        "kbs",
        "--redis",
        "rediss://127.0.0.1:1",
        "--tls-cert",
        p(&pki.client_cert),
    ]);
    assert_fails(&out, &["--tls-key"]);
    // Verifying against a CA and not verifying at all.
    let out = kbdump(&[
        "kbs",
        "--redis",
        "rediss://127.0.0.1:1",
        "--tls-ca",
        p(&pki.ca),
        "--tls-insecure",
    ]);
    assert_fails(&out, &["--tls-insecure", "--tls-ca"]);
    // Files that are missing or hold no certificate.
    let missing = certs.path().join("nope.pem");
    let out = kbdump(&[
        "kbs",
        "--redis",
        "rediss://127.0.0.1:1",
        "--tls-ca",
        p(&missing),
    ]);
    assert_fails(&out, &[p(&missing)]);
    let out = kbdump(&[
        "kbs",
        "--redis",
        "rediss://127.0.0.1:1",
        "--tls-ca",
        p(&pki.client_key),
    ]);
    assert_fails(&out, &[p(&pki.client_key), "certificate"]);
}

#[test]
fn copy_takes_tls_options_per_side() {
    let certs = tempfile::tempdir().unwrap();
    let pki = pki(certs.path());
    let (_source, port, seeded) = tls_server(&pki);
    let target = RedisServer::start();
    let out = kbdump(&[
        "copy",
        "-q",
        "--from",
        &format!("rediss://127.0.0.1:{port}/0"),
        "--from-tls-ca",
        p(&pki.ca),
        "--from-tls-cert",
        p(&pki.client_cert),
        "--from-tls-key",
        p(&pki.client_key),
        "--to",
        &target.url(),
        "--kb",
        "node0_kato",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The kb's keys and its STM stream, nothing else.
    let keys: Vec<Vec<u8>> = ::redis::cmd("KEYS")
        .arg("*")
        .query(&mut target.client())
        .unwrap();
    assert_eq!(keys.len(), seeded.of_kb(b"node0_kato").len());
}

/// `https://` ClickHouse URLs talk TLS: against a server whose certificate
/// no system root signed, the error names the server and the certificate.
#[test]
fn clickhouse_https_urls_verify_the_server_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let pki = pki(certs.path());
    // Any TLS listener will do for the handshake: the Redis one.
    let (redis, port, _) = tls_server(&pki);
    let out = kbdump(&[
        "check",
        "--clickhouse",
        &format!("https://127.0.0.1:{port}/?database=kato"),
        "--redis",
        &redis.url(),
    ]);
    assert_fails(&out, &[&format!("https://127.0.0.1:{port}"), "certificate"]);
}

/// `export --method rdb` over TLS: the snapshot's own connection takes the
/// URL's TLS options (CA, client certificate, `--tls-insecure`), and the
/// archive holds what a SCAN export over the same TLS holds.
#[test]
fn a_snapshot_is_read_over_tls_with_the_urls_tls_options() {
    let certs = tempfile::tempdir().unwrap();
    let pki = pki(certs.path());
    let (server, port, _) = tls_server(&pki);
    let url = format!("rediss://127.0.0.1:{port}/0");
    let dir = tempfile::tempdir().unwrap();
    let client = [
        "--tls-cert",
        p(&pki.client_cert),
        "--tls-key",
        p(&pki.client_key),
    ];
    let export = |name: &str, method: &str, trust: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec!["--json", "export", "--redis", &url, "--method", method];
        args.extend_from_slice(trust);
        args.extend_from_slice(&client);
        args.extend_from_slice(&["-o", p(&out)]);
        let done = kbdump(&args);
        assert_eq!(done.status.code(), Some(0), "{method}: {}", stderr(&done));
        let report: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
        assert_eq!(report["method"], method, "{report:#}");
        (out, report)
    };
    let before = crate::snapshot::full_syncs(&server);
    let (rdb, rdb_report) = export("rdb.kbd", "rdb", &["--tls-ca", p(&pki.ca)]);
    let (scan, scan_report) = export("scan.kbd", "scan", &["--tls-ca", p(&pki.ca)]);
    assert_eq!(rdb_report["keys"], scan_report["keys"]);
    assert_eq!(rdb_report["groups"], scan_report["groups"]);
    assert_eq!(
        crate::snapshot::full_syncs(&server),
        before + 1,
        "the snapshot came from the server"
    );
    let (_, rdb_records) = crate::snapshot::read_archive(&rdb);
    let (_, scan_records) = crate::snapshot::read_archive(&scan);
    crate::snapshot::assert_same_records(&rdb_records, &scan_records);

    let (_, insecure) = export("insecure.kbd", "rdb", &["--tls-insecure"]);
    assert_eq!(insecure["keys"], rdb_report["keys"]);

    // The CA we were told to trust did not sign the server's certificate:
    // no snapshot, no archive.
    let wrong = dir.path().join("wrong.kbd");
    let mut args = vec!["export", "--redis", &url, "--method", "rdb"];
    args.extend_from_slice(&["--tls-ca", p(&pki.other_ca)]);
    args.extend_from_slice(&client);
    args.extend_from_slice(&["-o", p(&wrong)]);
    assert_fails(&kbdump(&args), &["certificate"]);
    assert!(!wrong.exists());
}

/// A Redis 7.0 cluster that speaks TLS to clients and on its bus
/// (`tls-cluster yes`): `rediss+cluster://` seeds with the TLS options of
/// one server reach every master over TLS, by SCAN and by snapshots, and
/// the archive restores into one server equal key by key; a CA that did
/// not sign the nodes' certificate is refused, naming TLS.
#[test]
fn a_tls_cluster_is_read_over_tls_by_scan_and_by_snapshots() {
    use crate::support::cluster::{cluster_snapshot, seed_cluster, Cluster, Creation};
    use crate::support::redis::Flavor;
    let certs = tempfile::tempdir().unwrap();
    let pki = pki(certs.path());
    let tls_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let config = |i: usize| {
        vec![
            format!("tls-port {}", tls_ports[i]),
            format!("tls-cert-file {}", pki.server_cert.display()),
            format!("tls-key-file {}", pki.server_key.display()),
            format!("tls-ca-cert-file {}", pki.ca.display()),
            // On the bus each node is the client of the others: it shows a
            // certificate made for clients (the server's is for servers).
            format!("tls-client-cert-file {}", pki.client_cert.display()),
            format!("tls-client-key-file {}", pki.client_key.display()),
            "tls-cluster yes".into(),
            "tls-replication yes".into(),
            "tls-auth-clients yes".into(),
        ]
    };
    let create = Creation {
        ports: tls_ports.clone(),
        cli_args: [
            "--tls",
            "--cacert",
            p(&pki.ca),
            "--cert",
            p(&pki.client_cert),
            "--key",
            p(&pki.client_key),
        ]
        .map(String::from)
        .to_vec(),
    };
    let cluster = Cluster::start_with(Flavor::Redis70, 3, 0, config, &create);
    seed_cluster(&cluster, &SeedSpec::small());
    let want = cluster_snapshot(&cluster);
    let url = format!("rediss+cluster://127.0.0.1:{}", tls_ports[0]);
    let tls = [
        "--tls-ca",
        p(&pki.ca),
        "--tls-cert",
        p(&pki.client_cert),
        "--tls-key",
        p(&pki.client_key),
    ];
    let dir = tempfile::tempdir().unwrap();
    for method in ["scan", "rdb"] {
        let archive = dir.path().join(format!("{method}.kbd"));
        let mut args = vec!["--json", "export", "--redis", &url, "--method", method];
        args.extend_from_slice(&tls);
        args.extend_from_slice(&["-o", p(&archive)]);
        let out = kbdump(&args);
        assert_eq!(out.status.code(), Some(0), "{method}: {}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["method"], method, "{report:#}");
        assert_eq!(report["keys"], want.len() as u64, "{report:#}");
        let restored = RedisServer::start();
        crate::support::cli::restore_ok(&archive, &restored, &[]);
        crate::support::cli::assert_same(&want, &crate::support::cli::snap(&restored));
    }
    let mut args = vec!["kbs", "--redis", &url, "--tls-ca", p(&pki.other_ca)];
    args.extend_from_slice(&tls[2..]);
    let err = assert_fails(&kbdump(&args), &["certificate"]);
    assert!(err.to_lowercase().contains("tls"), "{err}");
}
