//! Gentle on production: `--max-keys-per-sec` and `--max-bytes-per-sec`
//! measured on the server's own counters while kbdump reads it, and reads
//! that wait for a server answering `BUSY` (a long script) or `LOADING`
//! (a restart loading its data) instead of failing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cli::{json_with_code, stderr};
use crate::support::redis::{info_field, RedisServer};
use tempfile::TempDir;

/// `n` string keys of `kb0`'s emotives, each with a `len`-byte value that
/// does not compress (DUMP payloads of long strings are LZF-compressed).
fn fill(server: &RedisServer, n: usize, len: usize) {
    let mut conn = server.client();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    };
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            let value: Vec<u8> = (0..len).map(|_| noise()).collect();
            pipe.set(format!("kb0:emotives:p{i:05}"), value).ignore();
        }
        pipe.query::<()>(&mut conn).unwrap();
    }
}

/// `calls` of one command in `INFO commandstats` (0 before its first call).
fn calls(info: &str, command: &str) -> u64 {
    info_field(info, &format!("cmdstat_{command}"))
        .and_then(|v| {
            v.split(',')
                .find_map(|f| f.strip_prefix("calls=")?.parse().ok())
        })
        .unwrap_or(0)
}

/// One reading of a counter: the instants just before and just after it
/// was read, and its value.
type Sample = (Instant, Instant, u64);

/// A counter of the server read every `every` while `child` runs, first
/// and last readings included.
fn sample_while(child: &mut Child, every: Duration, mut read: impl FnMut() -> u64) -> Vec<Sample> {
    let mut sample = || {
        let before = Instant::now();
        let value = read();
        (before, Instant::now(), value)
    };
    let mut samples = vec![sample()];
    while child.try_wait().unwrap().is_none() {
        std::thread::sleep(every);
        samples.push(sample());
    }
    samples.push(sample());
    samples
}

/// The worst excess over `limit` per second: for every window of at least
/// one second between two readings, what was counted over what the limit
/// allows in that window (`limit × seconds`). The window runs from just
/// before the first reading to just after the second, so that a slow
/// reading (a loaded machine) can only make it longer, never denser.
fn worst_window(samples: &[Sample], limit: f64) -> (f64, String) {
    let mut worst = (0.0, String::new());
    for (i, &(t0, _, c0)) in samples.iter().enumerate() {
        let Some(&(_, t1, c1)) = samples[i..]
            .iter()
            .find(|(_, t, _)| t.duration_since(t0) >= Duration::from_secs(1))
        else {
            break;
        };
        let secs = t1.duration_since(t0).as_secs_f64();
        let ratio = (c1 - c0) as f64 / (limit * secs);
        if ratio > worst.0 {
            worst = (ratio, format!("{} in {secs:.2} s", c1 - c0));
        }
    }
    worst
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A paced run: kbdump with `args`, the DUMP calls of `server` (times
/// `per_call`: 1 counts keys, a payload size counts bytes) sampled every
/// 250 ms while it runs. Asserts that no window of a second or more read
/// over 1.2x `limit` per second, and that the run took at least 2.5 s (what
/// the limit implies for the seeded data). Returns the run's output and the
/// samples.
fn paced_run(
    args: &[&str],
    server: &RedisServer,
    limit: f64,
    per_call: u64,
    what: &str,
) -> (std::process::Output, Vec<Sample>) {
    let started = Instant::now();
    let mut child = spawn(args);
    let samples = sample_while(&mut child, Duration::from_millis(250), || {
        calls(&server.info("commandstats"), "dump") * per_call
    });
    let took = started.elapsed();
    let output = child.wait_with_output().unwrap();
    let (ratio, window) = worst_window(&samples, limit);
    eprintln!("{what}: busiest window {window} ({ratio:.2}x), {took:?} in all");
    assert!(
        ratio <= 1.2,
        "{what}: {window}: {ratio:.2}x the limit; samples {:?}",
        samples.iter().map(|s| s.2).collect::<Vec<_>>()
    );
    assert!(took >= Duration::from_millis(2500), "{what} in {took:?}");
    (output, samples)
}

fn archive_keys(path: &Path) -> u64 {
    let out = crate::support::cli::ok(&["inspect", "--json", path.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["keys"]
        .as_u64()
        .unwrap_or_else(|| panic!("no keys in {json}"))
}

#[test]
fn export_keeps_within_max_keys_per_sec() {
    let server = RedisServer::start();
    fill(&server, 3000, 16);
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("paced.kbd");
    let (url, path) = (server.url(), out.to_str().unwrap().to_string());
    // Sampled on DUMP calls: the SCAN read (a snapshot's pace is in
    // snapshot.rs).
    let args = ["export", "--quiet", "--redis", &url, "--method", "scan"];
    let args = [&args[..], &["-o", &path, "--max-keys-per-sec", "1000"]].concat();
    let (output, samples) = paced_run(&args, &server, 1000.0, 1, "export at 1000 keys/s");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(samples.last().unwrap().2, 3000, "every key dumped once");
    assert_eq!(archive_keys(&out), 3000);
}

#[test]
fn copy_keeps_within_max_keys_per_sec_on_the_source() {
    let (source, target) = (RedisServer::start(), RedisServer::start());
    fill(&source, 1500, 16);
    let (from, to) = (source.url(), target.url());
    let args = [
        "copy",
        "--quiet",
        "--json",
        "--from",
        &from,
        "--to",
        &to,
        "--max-keys-per-sec",
        "500",
    ];
    let (output, _) = paced_run(&args, &source, 500.0, 1, "copy at 500 keys/s");
    let report = json_with_code(&output, 0);
    assert_eq!(report["total"]["restored"], 1500, "{report}");
}

#[test]
fn backup_keeps_within_max_keys_per_sec() {
    let server = RedisServer::start();
    fill(&server, 1500, 16);
    let dir = TempDir::new().unwrap();
    let (url, into) = (server.url(), dir.path().to_str().unwrap().to_string());
    let args = [
        "backup",
        "--json",
        "--redis",
        &url,
        "--dir",
        &into,
        "--max-keys-per-sec",
        "500",
    ];
    let (output, samples) = paced_run(&args, &server, 500.0, 1, "backup at 500 keys/s");
    let report = json_with_code(&output, 0);
    assert_eq!(samples.last().unwrap().2, 1500, "every key dumped once");
    let file = report["file"]
        .as_str()
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(archive_keys(Path::new(file)), 1500);
}

#[test]
fn export_keeps_within_max_bytes_per_sec() {
    let server = RedisServer::start();
    // About 600 KB of payload at 200 kB/s: three seconds.
    fill(&server, 600, 1000);
    // Every payload has the same size: bytes read are DUMP calls times it.
    let payload: Vec<u8> = redis::cmd("DUMP")
        .arg("kb0:emotives:p00000")
        .query(&mut server.client())
        .unwrap();
    let size = payload.len() as u64;
    assert!(size > 1000, "the values compressed: {size} bytes");
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("paced.kbd");
    let (url, path) = (server.url(), out.to_str().unwrap().to_string());
    let args = [
        "export",
        "--quiet",
        "--redis",
        &url,
        "--method",
        "scan",
        "-o",
        &path,
        "--max-bytes-per-sec",
        "200k",
    ];
    let (output, _) = paced_run(&args, &server, 200_000.0, size, "export at 200 kB/s");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(archive_keys(&out), 600);
}

/// Runs a script on its own connection that keeps the server busy for
/// `busy`, and returns once the server answers others with BUSY.
fn keep_busy(server: &RedisServer, busy: Duration) -> std::thread::JoinHandle<()> {
    let mut conn = server.client();
    conn.set_read_timeout(Some(busy + Duration::from_secs(30)))
        .unwrap();
    let ms = busy.as_millis() as u64;
    let script = std::thread::spawn(move || {
        let spin = "local t = redis.call('TIME') \
                    local start = t[1] * 1000000 + t[2] \
                    repeat t = redis.call('TIME') \
                    until t[1] * 1000000 + t[2] - start > tonumber(ARGV[1]) * 1000 \
                    return 1";
        let _: i64 = redis::cmd("EVAL")
            .arg(spin)
            .arg(0)
            .arg(ms)
            .query(&mut conn)
            .unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ping: redis::RedisResult<String> = redis::cmd("PING").query(&mut server.client());
        match ping {
            Err(e) if e.code() == Some("BUSY") => return script,
            _ if Instant::now() > deadline => panic!("the server never became BUSY: {ping:?}"),
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[test]
fn export_waits_for_a_busy_server() {
    let server = RedisServer::builder().config("lua-time-limit 50").start();
    fill(&server, 200, 16);
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("busy.kbd");
    let script = keep_busy(&server, Duration::from_millis(1500));
    let (url, path) = (server.url(), out.to_str().unwrap().to_string());
    let output = Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(["export", "--quiet", "--redis", &url, "-o", &path])
        .output()
        .unwrap();
    script.join().unwrap();
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(err.contains("busy running a script (BUSY)"), "{err}");
    assert!(err.contains("waiting up to 60 s"), "{err}");
    assert_eq!(archive_keys(&out), 200);
}

#[test]
fn a_busy_server_past_busy_timeout_fails_the_read_naming_the_flag() {
    let server = RedisServer::builder().config("lua-time-limit 50").start();
    fill(&server, 10, 16);
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("busy.kbd");
    let script = keep_busy(&server, Duration::from_secs(4));
    let (url, path) = (server.url(), out.to_str().unwrap().to_string());
    let args = ["export", "--quiet", "--redis", &url, "-o", &path];
    let output = Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args([&args[..], &["--busy-timeout", "1"]].concat())
        .output()
        .unwrap();
    script.join().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("--busy-timeout"), "{err}");
    assert!(!out.exists(), "a failed export left {}", out.display());
}

#[test]
fn export_waits_for_a_server_loading_its_data() {
    // One millisecond per key while loading, and clients served between
    // every kilobyte read: the restart below answers LOADING for ~2 s.
    let mut server = RedisServer::builder()
        .config("key-load-delay 1000")
        .config("loading-process-events-interval-bytes 1024")
        .start();
    fill(&server, 2000, 16);
    redis::cmd("SAVE")
        .query::<()>(&mut server.client())
        .unwrap();
    server.restart();
    let ping: redis::RedisResult<String> = redis::cmd("PING").query(&mut server.client());
    assert!(
        ping.as_ref().is_err_and(|e| e.code() == Some("LOADING")),
        "the restarted server is not loading: {ping:?}"
    );
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("loading.kbd");
    let (url, path) = (server.url(), out.to_str().unwrap().to_string());
    let output = Command::new(env!("CARGO_BIN_EXE_kbdump"))
        .args(["export", "--quiet", "--redis", &url, "-o", &path])
        .output()
        .unwrap();
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(
        err.contains("loading its data set into memory (LOADING)"),
        "{err}"
    );
    assert!(err.contains("answered PING again"), "{err}");
    assert_eq!(archive_keys(&out), 2000);
}

#[test]
fn mirror_keeps_within_max_keys_per_sec() {
    let clickhouse = crate::support::clickhouse::server();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(clickhouse.database("gentle_mirror"));
    let url = clickhouse.url(&db);
    let server = RedisServer::start();
    fill(&server, 1500, 16);
    let redis_url = server.url();
    let args = [
        "mirror",
        "--create",
        "--quiet",
        "--json",
        "--redis",
        &redis_url,
        "--clickhouse",
        &url,
        "--max-keys-per-sec",
        "500",
    ];
    let (output, _) = paced_run(&args, &server, 500.0, 1, "mirror at 500 keys/s");
    let report = json_with_code(&output, 0);
    assert_eq!(report["summary"]["keys"], 1500, "{report}");
}
