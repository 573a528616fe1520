//! ClickHouse errors as the operator sees them, from the library and the
//! command line: each names the server it came from, and the table or what
//! to do where there is one. Nothing listening, a database without
//! `patterns_data`, wrong credentials (never echoed), a mirror table of
//! another layout, a server that accepts connections but never answers.

use crate::support::cli::json_outcome;
use crate::support::clickhouse as chs;
use crate::support::redis::RedisServer;
use kbdump::flow::rebuild::{rebuild, RebuildOptions};
use kbdump::net::clickhouse::{Ch, ChError};
use kbdump::progress::NoProgress;

#[tokio::test]
async fn clickhouse_errors_name_the_server_and_what_to_do() {
    let redis = RedisServer::start();
    let conn = chs::conn(&redis).await;
    let opts = RebuildOptions::default();
    // Nothing listens there.
    let port = chs::free_port();
    let ch = Ch::from_url(&format!("http://127.0.0.1:{port}/")).unwrap();
    let err = rebuild(&ch, conn.clone(), &[], &opts, &NoProgress)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("cannot reach"),
        "{err}"
    );
    assert!(err.contains("CLICKHOUSE_URL"), "{err}");
    // The database exists but has no patterns_data.
    let server = chs::server();
    let db = server.database("errors_missing").await;
    let ch = Ch::from_url(&server.url(&db)).unwrap();
    let err = rebuild(&ch, conn.clone(), &[], &opts, &NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            kbdump::flow::rebuild::Error::ClickHouse(ChError::MissingTable { .. })
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("{db}.patterns_data")) && text.contains("?database="),
        "{text}"
    );
    // Wrong password: an authentication error that does not echo it.
    let url = format!(
        "http://{}:wrong-pw@127.0.0.1:{}/",
        chs::SECURED_USER,
        server.http_port()
    );
    let err = Ch::from_url(&url).unwrap().ping().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ChError::Auth { .. }), "{text}");
    assert!(
        text.contains("credentials") && !text.contains("wrong-pw"),
        "{text}"
    );
    // The right password works.
    let url = format!(
        "http://{}:{}@127.0.0.1:{}/",
        chs::SECURED_USER,
        chs::SECURED_PASSWORD,
        server.http_port()
    );
    assert!(!Ch::from_url(&url).unwrap().ping().await.unwrap().is_empty());
    // The command line reports it with exit 2.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args([
            "rebuild",
            "--clickhouse",
            &server.url(&db),
            "--redis",
            &redis.url(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no table"));
}

/// A mirror table that cannot be read (here: an older, incompatible
/// layout): the error names the server and the table.
#[tokio::test]
async fn unreadable_mirror_error_names_the_server() {
    let server = chs::server();
    let db = server.database("mirror_bad_layout").await;
    let sql = format!(
        "CREATE TABLE `{db}`.redis_mirror (kb_id String, category String, key String, \
         payload String, expire_at_ms Nullable(Int64), mirrored_at_ms UInt64) \
         ENGINE = ReplacingMergeTree(mirrored_at_ms) ORDER BY (kb_id, category, key)"
    );
    server.client().query(&sql).execute().await.unwrap();
    let redis = RedisServer::start();
    let (code, _, err) = json_outcome(&[
        "restore",
        "--from-clickhouse",
        &server.url(&db),
        "--redis",
        &redis.url(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    let where_ = format!("127.0.0.1:{}", server.http_port());
    assert!(err.contains(&where_), "{err}");
    assert!(err.contains(&format!("{db}.redis_mirror")), "{err}");
}

/// A server that accepts connections but never answers (a wrong port, a
/// hung server): the connection check gives up with a clear error instead
/// of hanging.
#[tokio::test]
async fn silent_server_is_reported_not_waited_for_forever() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ch = Ch::from_url(&format!("http://127.0.0.1:{port}/")).unwrap();
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(std::time::Duration::from_secs(60), ch.ping()).await;
    let err = result.expect("ping hung for a minute").unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let text = err.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && text.contains("cannot reach"),
        "{text}"
    );
    drop(listener);
}
