//! Safety rails: replace mode over existing keys asks first (a terminal)
//! or needs `--yes`; `--rename-kb` onto a kb_id that has keys says so; a
//! replace into the server an archive came from warns; kbdump never sends
//! FLUSHALL, FLUSHDB or KEYS (and the commands it does send are the ones
//! docs/SAFETY.md lists). Also: diff compares only what the archive
//! covered, a missing-mode rerun after an out-of-memory run counts the
//! keys already there as kept, and error messages say their cause once.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support::cli::*;
use crate::support::redis::{info_field, RedisServer};
use crate::support::seed::{seed_kato, Category, SeedSpec, Seeded};
use tempfile::TempDir;

fn seeded(spec: &SeedSpec) -> (RedisServer, Seeded) {
    let server = RedisServer::start();
    let seeded = seed_kato(&mut server.client(), spec);
    (server, seeded)
}

fn restore_out(archive: &Path, server: &RedisServer, extra: &[&str]) -> Output {
    let url = server.url();
    let args = [
        "restore",
        archive.to_str().unwrap(),
        "--redis",
        &url,
        "--quiet",
    ];
    kbdump(&[&args[..], extra].concat())
}

/// Runs kbdump on a terminal (util-linux `script` gives it a pty) that
/// answers `answer`; returns the exit code and what the terminal showed.
fn on_terminal(args: &[&str], answer: &str) -> (Option<i32>, String) {
    let command = std::iter::once(env!("CARGO_BIN_EXE_kbdump").to_string())
        .chain(args.iter().map(|a| format!("'{a}'")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script(1)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), stdout(&out) + &stderr(&out))
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn replace_over_existing_keys_needs_yes_without_a_terminal() {
    let (server, seeded) = seeded(&SeedSpec::small());
    let dir = TempDir::new().unwrap();
    let archive = export(&server, dir.path(), "all.kbd", &[]);
    let before = snap(&server);
    let undo = dir.path().join("undo.kbd");
    let undo_arg = undo.to_str().unwrap();

    let out = restore_out(
        &archive,
        &server,
        &["--mode", "replace", "--undo", undo_arg],
    );
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{message}");
    let expected = format!(
        "overwrite {} existing keys on 127.0.0.1:{}?",
        seeded.keys.len(),
        server.port()
    );
    assert!(message.contains(&expected), "{message}");
    assert!(message.contains("--yes"), "{message}");
    assert!(message.contains("nothing was written"), "{message}");
    assert_same(&before, &snap(&server));
    assert!(!undo.exists(), "a refused run wrote an undo archive");

    // A dry run writes nothing, so it needs no confirmation.
    let out = restore_out(&archive, &server, &["--mode", "replace", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let undo = dir.path().join("undo-yes.kbd");
    let undo_arg = undo.to_str().unwrap();
    let out = restore_out(
        &archive,
        &server,
        &["--mode", "replace", "--undo", undo_arg, "--yes"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(undo.exists());
    assert_same(&before, &snap(&server));

    // Into a server that holds none of the selected keys, nothing to ask.
    let empty = RedisServer::start();
    let undo = dir.path().join("undo-empty.kbd");
    let undo_arg = undo.to_str().unwrap();
    let out = restore_out(&archive, &empty, &["--mode", "replace", "--undo", undo_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn replace_from_a_pipe_is_bounded_by_the_key_count_of_the_target() {
    let (server, _) = seeded(&SeedSpec::small());
    let dir = TempDir::new().unwrap();
    let archive = export(&server, dir.path(), "all.kbd", &[]);
    let before = snap(&server);
    let url = server.url();
    let undo = dir.path().join("undo.kbd");
    let args = ["restore", "-", "--redis", &url, "--mode", "replace"];
    let out = kbdump_stdin(
        &[&args[..], &["--undo", undo.to_str().unwrap()]].concat(),
        &archive,
    );
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{message}");
    assert!(
        message.contains(&format!("It holds {} keys", before.len())),
        "{message}"
    );
    assert!(message.contains("--yes"), "{message}");
    assert_same(&before, &snap(&server));
}

#[test]
fn replace_on_a_terminal_asks_and_no_writes_nothing() {
    let (server, seeded) = seeded(&SeedSpec::small().with_kbs(&[b"kb_t"]));
    let dir = TempDir::new().unwrap();
    let archive = export(&server, dir.path(), "all.kbd", &[]);
    let _: () = run(&server, redis::cmd("SET").arg("kb_t:emotives:new").arg("1"));
    let before = snap(&server);
    let (url, path) = (server.url(), archive.to_str().unwrap().to_string());
    let args = [
        "restore", &path, "--redis", &url, "--mode", "replace", "--quiet",
    ];
    let undo = dir.path().join("undo.kbd");
    let args = [&args[..], &["--undo", undo.to_str().unwrap()]].concat();
    let question = format!(
        "overwrite {} existing keys on 127.0.0.1:{}? [y/N]",
        seeded.keys.len(),
        server.port()
    );

    let (code, screen) = on_terminal(&args, "n\n");
    assert_eq!(code, Some(2), "{screen}");
    assert!(screen.contains(&question), "{screen}");
    assert!(
        screen.contains("not confirmed; nothing was written"),
        "{screen}"
    );
    assert_same(&before, &snap(&server));
    assert_eq!(files_in(dir.path()), 1, "no undo archive");

    let (code, screen) = on_terminal(&args, "y\n");
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains(&question), "{screen}");
    assert!(undo.exists());
}

#[test]
fn copy_in_replace_mode_onto_a_non_empty_target_needs_yes() {
    let (source, _) = seeded(&SeedSpec::small());
    let (target, _) = seeded(&SeedSpec::small().with_kbs(&[b"kb_other"]));
    let before = snap(&target);
    let dir = TempDir::new().unwrap();
    let undo = dir.path().join("undo.kbd");
    let (from, to) = (source.url(), target.url());
    let args = [
        "copy", "--quiet", "--from", &from, "--to", &to, "--mode", "replace", "--undo",
    ];
    let args = [&args[..], &[undo.to_str().unwrap()]].concat();
    let out = kbdump(&args);
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{message}");
    assert!(
        message.contains(&format!("It holds {} keys", before.len())),
        "{message}"
    );
    assert!(message.contains("--yes"), "{message}");
    assert_same(&before, &snap(&target));
    assert!(!undo.exists());
    let out = kbdump(&[&args[..], &["--yes"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn rename_onto_a_kb_that_has_keys_warns_and_replace_needs_yes() {
    let (server, seeded) = seeded(&SeedSpec::small().with_kbs(&[b"kb_a", b"kb_b"]));
    let dir = TempDir::new().unwrap();
    let archive = export(&server, dir.path(), "a.kbd", &["--kb", "kb_a"]);
    let b_keys = seeded.of_kb(b"kb_b").len();
    let warning = format!(
        "kb_id kb_b on 127.0.0.1:{}, which already holds {b_keys} keys",
        server.port()
    );

    // Missing mode: a warning before writing, and the count in --json.
    let out = restore_out(&archive, &server, &["--rename-kb", "kb_a=kb_b", "--json"]);
    let report = json_with_code(&out, 0);
    assert!(stderr(&out).contains(&warning), "{}", stderr(&out));
    assert_eq!(
        report["rename_targets"],
        serde_json::json!([{"kb_id": "kb_b", "existing_keys": b_keys}]),
        "{report:#}"
    );

    // Replace mode: refused without --yes, with nothing written.
    let before = snap(&server);
    // kb_b's keys: under its prefix, and its short-term-memory stream.
    let b_keys = before
        .keys()
        .filter(|k| k.starts_with(b"kb_b:") || k.as_slice() == b"stm:events:kb_b")
        .count();
    let warning = format!(
        "kb_id kb_b on 127.0.0.1:{}, which already holds {b_keys} keys",
        server.port()
    );
    let undo = dir.path().join("undo.kbd");
    let undo_arg = undo.to_str().unwrap();
    let replace = [
        "--rename-kb",
        "kb_a=kb_b",
        "--mode",
        "replace",
        "--undo",
        undo_arg,
    ];
    let out = restore_out(&archive, &server, &replace);
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{message}");
    assert!(message.contains(&warning), "{message}");
    assert!(message.contains("--yes"), "{message}");
    assert_same(&before, &snap(&server));
    let out = restore_out(&archive, &server, &[&replace[..], &["--yes"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Onto a kb_id that does not exist: no warning, an empty list.
    let out = restore_out(&archive, &server, &["--rename-kb", "kb_a=kb_new", "--json"]);
    let report = json_with_code(&out, 0);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    assert_eq!(report["rename_targets"], serde_json::json!([]));
}

#[test]
fn replace_into_the_server_the_archive_came_from_warns() {
    let (server, _) = seeded(&SeedSpec::small().with_kbs(&[b"kb_a", b"kb_b"]));
    let dir = TempDir::new().unwrap();
    let archive = export(&server, dir.path(), "a.kbd", &["--kb", "kb_a"]);
    let warning = format!("was exported from 127.0.0.1:{} db 0 at ", server.port());
    let undo = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let replace = |undo: &str, more: &[&str]| {
        let args = ["--mode", "replace", "--yes", "--undo", undo];
        [&args[..], more]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let restore = |file: &Path, server: &RedisServer, args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        restore_out(file, server, &args)
    };
    let first_undo = undo("undo.kbd");
    let out = restore(&archive, &server, replace(&first_undo, &[]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains(&warning), "{}", stderr(&out));

    // Renamed away, or into another server, or selecting nothing of it,
    // or putting an undo archive back: no warning.
    let quiet = |out: Output| {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(!stderr(&out).contains(&warning), "{}", stderr(&out));
    };
    let renamed = replace(&undo("u1.kbd"), &["--rename-kb", "kb_a=kb_c"]);
    quiet(restore(&archive, &server, renamed));
    quiet(restore(
        &archive,
        &RedisServer::start(),
        replace(&undo("u2.kbd"), &[]),
    ));
    let other_kb = replace(&undo("u3.kbd"), &["--kb", "kb_b", "--allow-empty"]);
    quiet(restore(&archive, &server, other_kb));
    let back = replace(&undo("u4.kbd"), &[]);
    quiet(restore(Path::new(&first_undo), &server, back));
}

#[test]
fn diff_compares_only_what_the_archive_selected() {
    let (server, seeded) = seeded(&SeedSpec::small());
    let dir = TempDir::new().unwrap();
    let archive = export(
        &server,
        dir.path(),
        "emotives.kbd",
        &["--category", "emotives"],
    );
    let (code, report) = diff_json(&archive, &server, &[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert!(diff_keys(&report).is_empty(), "{report:#}");

    // A real difference within the covered selection is still found.
    let lost = seeded
        .of_category(Category::Emotives)
        .into_iter()
        .next()
        .unwrap();
    let _: i64 = run(&server, redis::cmd("DEL").arg(&lost));
    let extra = b"node0_kato:emotives:added-later".to_vec();
    let _: () = run(&server, redis::cmd("SET").arg(&extra).arg("[]"));
    let (code, report) = diff_json(&archive, &server, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    let want: BTreeSet<_> = [(lost, "missing".to_string()), (extra, "extra".to_string())].into();
    assert_eq!(diff_keys(&report), want, "{report:#}");

    // The user's selection narrows it further; it never widens it.
    let (code, report) = diff_json(&archive, &server, &["--category", "metadata"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert!(diff_keys(&report).is_empty(), "{report:#}");

    // A --match export covers only its keys.
    let matched = export(&server, dir.path(), "m.kbd", &["--match", "*:metadata:*"]);
    let (code, report) = diff_json(&matched, &server, &[]);
    assert_eq!(code, Some(0), "{report:#}");
}

/// Segments of a message (split at ": " and "; ") that appear twice.
fn repeated_segments(message: &str) -> Vec<String> {
    let mut seen = BTreeMap::new();
    for segment in message
        .trim()
        .split([':', ';'])
        .map(str::trim)
        .filter(|s| s.len() > 8)
    {
        *seen.entry(segment.to_string()).or_insert(0) += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(s, _)| s)
        .collect()
}

#[test]
fn error_messages_say_their_cause_once() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("missing.kbd");
    let missing = missing.to_str().unwrap();
    let server = RedisServer::start();
    let url = server.url();
    let archive = export(&server, dir.path(), "x.kbd", &[]);
    let archive = archive.to_str().unwrap();
    let unreachable = format!(
        "redis://127.0.0.1:{}",
        crate::support::clickhouse::free_port()
    );
    let a_dir = dir.path().join("a-directory");
    std::fs::create_dir(&a_dir).unwrap();
    let a_dir = a_dir.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["inspect", missing],
        vec!["verify", missing],
        vec!["restore", missing, "--redis", &url],
        vec!["diff", missing, "--redis", &url],
        vec!["kbs", "--redis", &unreachable],
        vec!["export", "-o", a_dir, "--force", "--redis", &url],
        vec!["export", "-o", "/nonexistent-dir/x.kbd", "--redis", &url],
        vec![
            "restore", archive, "--redis", &url, "--mode", "replace", "--yes", "--undo", a_dir,
        ],
    ];
    for args in cases {
        let out = kbdump(&args);
        let message = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {message}");
        assert!(
            repeated_segments(&message).is_empty(),
            "{args:?} repeats {:?}: {message}",
            repeated_segments(&message)
        );
    }
}

/// `maxmemory` set to what the server uses now plus `extra` bytes.
fn cap_memory(server: &RedisServer, extra: u64) {
    let used: u64 = info_field(&server.info("memory"), "used_memory")
        .unwrap()
        .parse()
        .unwrap();
    let set = |name: &str, value: String| {
        let _: () = run(server, redis::cmd("CONFIG").arg("SET").arg(name).arg(value));
    };
    set("maxmemory-policy", "noeviction".into());
    set("maxmemory", (used + extra).to_string());
}

#[test]
fn a_missing_mode_rerun_after_running_out_of_memory_keeps_what_is_there() {
    let (source, _) = seeded(&SeedSpec::default());
    let dir = TempDir::new().unwrap();
    let archive = export(&source, dir.path(), "all.kbd", &[]);
    for extra in [&[][..], &["--logical"][..]] {
        let target = RedisServer::start();
        cap_memory(&target, 256 * 1024);
        let (code, first) = restore_json(&archive, &target, extra);
        assert_eq!(code, Some(2), "{first:#}");
        let present = snap(&target);
        assert!(
            !present.is_empty() && total(&first, "failed") > 0,
            "{first:#}"
        );

        // Still short of memory: what is there is kept; only keys that are
        // not there fail.
        let (code, again) = restore_json(&archive, &target, extra);
        assert_eq!(code, Some(2), "{again:#}");
        assert_eq!(
            total(&again, "kept"),
            present.len() as u64,
            "{extra:?}: {again:#}"
        );
        for failure in again["failures"].as_array().unwrap() {
            let key = kbdump::kato::parse_display_bytes(failure["what"].as_str().unwrap());
            assert!(
                !present.contains_key(&key),
                "{extra:?}: present key failed: {failure}"
            );
            assert!(
                failure["reason"].as_str().unwrap().contains("OOM"),
                "{failure}"
            );
        }

        // With memory: everything else comes back, nothing fails.
        let _: () = run(
            &target,
            redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0),
        );
        let (code, last) = restore_json(&archive, &target, extra);
        assert_eq!(code, Some(0), "{last:#}");
        assert_eq!(total(&last, "kept"), present.len() as u64, "{last:#}");
        assert_eq!(total(&last, "failed"), 0, "{last:#}");
    }
}

/// Every call of every command in `INFO commandstats`, by name
/// (`client|setinfo` for subcommands).
fn commandstats(conn: &mut redis::Connection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls=")?.parse().ok())?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// Commands the server counted, per kbdump command line (its label).
type Used = BTreeMap<String, BTreeSet<String>>;

/// Runs kbdump `args` (exit status one of `codes`), recording under
/// `label` the commands the server counted meanwhile (the INFO that read
/// the counters before counted out). The test sends nothing else to the
/// server while kbdump runs.
fn count_commands(
    stats: &mut redis::Connection,
    used: &mut Used,
    (label, args): (&str, &[&str]),
    codes: &[i32],
) {
    let before = commandstats(stats);
    let out = kbdump(args);
    let after = commandstats(stats);
    let code = out.status.code().unwrap_or(-1);
    assert!(
        codes.contains(&code),
        "{args:?} exited {code}: {}",
        stderr(&out)
    );
    let entry = used.entry(label.to_string()).or_default();
    for (name, calls) in after {
        let own = u64::from(name == "info");
        if calls - before.get(&name).copied().unwrap_or(0) > own {
            entry.insert(documented_name(&name));
        }
    }
}

/// `client|setinfo` as SAFETY.md writes it: `CLIENT SETINFO`.
fn documented_name(command: &str) -> String {
    command.replace('|', " ").to_uppercase()
}

#[test]
fn kbdump_never_flushes_or_lists_every_key_and_sends_what_safety_md_lists() {
    let clickhouse = crate::support::clickhouse::server();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(async {
        let db = clickhouse.database("rails_commands").await;
        let client = clickhouse.client();
        crate::support::clickhouse::create_patterns_table(&client, &db).await;
        let rows = crate::support::clickhouse::seed_rows("rb_kato", 12, 7);
        crate::support::clickhouse::insert_patterns(&client, &db, &rows).await;
        db
    });
    let ch = clickhouse.url(&db);
    let (server, seeded) = seeded(&SeedSpec::small());
    let dir = TempDir::new().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (all, url) = (path("all.kbd"), server.url());
    let mut stats = server.client();
    let mut used = Used::new();
    let mut kbdump_run = |label: &str, args: &[&str], codes: &[i32]| {
        let args = [&["--quiet"][..], args].concat();
        count_commands(&mut stats, &mut used, (label, &args), codes)
    };
    let lose_some = || {
        let victims: Vec<Vec<u8>> = seeded.kato().into_iter().step_by(7).collect();
        let _: i64 = run(&server, redis::cmd("DEL").arg(&victims));
    };
    let (undo, undo2, undo3, undo4) = (
        path("u1.kbd"),
        path("u2.kbd"),
        path("u3.kbd"),
        path("u4.kbd"),
    );
    let replace = ["--mode", "replace", "--yes"];
    let restore = ["restore", &all, "--redis", &url];
    let copy = ["copy", "--from", &url, "--to", &url, "--kb", "node0_kato"];
    let rename = ["--rename-kb", "node0_kato=node0_copy"];

    kbdump_run("kbs", &["kbs", "--redis", &url], &[0]);
    kbdump_run("export", &["export", "--redis", &url, "-o", &all], &[0]);
    let paced = ["--max-keys-per-sec", "100k", "--max-bytes-per-sec", "50MiB"];
    let export = ["export", "--redis", &url, "-o", &path("paced.kbd")];
    kbdump_run("export (paced)", &[&export[..], &paced].concat(), &[0]);
    lose_some();
    kbdump_run("diff", &["diff", &all, "--redis", &url], &[1]);
    kbdump_run(
        "restore --dry-run",
        &[&restore[..], &["--dry-run"]].concat(),
        &[0],
    );
    kbdump_run("restore", &restore, &[0]);
    let dry_replace = [&restore[..], &replace, &["--dry-run"]].concat();
    kbdump_run("restore --mode replace --dry-run", &dry_replace, &[0]);
    let refused = [&restore[..], &["--mode", "replace"]].concat();
    kbdump_run("restore --mode replace (refused: no --yes)", &refused, &[2]);
    let replacing = [&restore[..], &replace, &["--undo", &undo]].concat();
    kbdump_run("restore --mode replace", &replacing, &[0]);
    let back = ["restore", &undo, "--redis", &url, "--undo", &undo2];
    kbdump_run(
        "restore --mode replace UNDO",
        &[&back[..], &replace].concat(),
        &[0],
    );
    lose_some();
    kbdump_run(
        "restore --logical",
        &[&restore[..], &["--logical"]].concat(),
        &[0],
    );
    let logical = [&restore[..], &replace, &["--logical", "--undo", &undo3]].concat();
    kbdump_run("restore --logical --mode replace", &logical, &[0]);
    kbdump_run("copy --rename-kb", &[&copy[..], &rename].concat(), &[0]);
    let copy_replace = [
        &copy[..],
        &rename,
        &replace,
        &["--logical", "--undo", &undo4],
    ]
    .concat();
    kbdump_run(
        "copy --rename-kb --logical --mode replace",
        &copy_replace,
        &[0],
    );
    let mirror = [
        "mirror",
        "--create",
        "--redis",
        &url,
        "--clickhouse",
        &ch,
        "--kb",
        "node0_kato",
    ];
    kbdump_run("mirror", &mirror, &[0]);
    lose_some();
    let from_ch = [
        "restore",
        "--from-clickhouse",
        &ch,
        "--redis",
        &url,
        "--kb",
        "node0_kato",
    ];
    kbdump_run("restore --from-clickhouse", &from_ch, &[0]);
    let rebuild = [
        "rebuild",
        "--clickhouse",
        &ch,
        "--redis",
        &url,
        "--kb",
        "rb_kato",
    ];
    kbdump_run(
        "rebuild --dry-run",
        &[&rebuild[..], &["--dry-run"]].concat(),
        &[0],
    );
    kbdump_run(
        "rebuild --only-missing",
        &[&rebuild[..], &["--only-missing"]].concat(),
        &[0],
    );
    kbdump_run("rebuild", &rebuild, &[0]);
    let check = [
        "check",
        "--clickhouse",
        &ch,
        "--redis",
        &url,
        "--kb",
        "rb_kato",
    ];
    kbdump_run("check", &check, &[0, 1]);
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let backups = backups.to_str().unwrap();
    let backup = ["backup", "--dir", backups, "--redis", &url];
    kbdump_run("backup", &[&backup[..], &paced].concat(), &[0]);
    let health = ["backups", "check", "--dir", backups, "--redis", &url];
    kbdump_run("backups check --redis", &health, &[0, 1]);
    // `backups test` writes into its scratch server: counted there.
    let scratch = RedisServer::start();
    let scratch_url = scratch.url();
    let test = [
        "--quiet",
        "backups",
        "test",
        "--dir",
        backups,
        "--scratch",
        &scratch_url,
    ];
    let on_scratch = ("backups test (on the scratch server)", &test[..]);
    count_commands(&mut scratch.client(), &mut used, on_scratch, &[0]);

    for (label, commands) in &used {
        let list: Vec<&str> = commands.iter().map(String::as_str).collect();
        eprintln!("{label}: {}", list.join(", "));
    }
    let all_used: BTreeSet<&String> = used.values().flatten().collect();
    for forbidden in ["FLUSHALL", "FLUSHDB", "KEYS"] {
        assert!(
            !all_used.contains(&forbidden.to_string()),
            "kbdump sent {forbidden}: {used:?}"
        );
    }
    for expected in ["SCAN", "DUMP", "PTTL", "RESTORE", "EXISTS", "DBSIZE"] {
        assert!(
            all_used.contains(&expected.to_string()),
            "no {expected} counted: {used:?}"
        );
    }
    let safety =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/SAFETY.md"))
            .unwrap();
    let section = safety
        .split("## What each command reads and writes on the server")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/SAFETY.md has the section");
    let undocumented: Vec<&&String> = all_used
        .iter()
        .filter(|n| !section.contains(&format!("`{n}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "docs/SAFETY.md does not list {undocumented:?}"
    );
}

/// Every overwrite of a replace fails (the target is over `maxmemory`), so
/// nothing was overwritten: the run must not claim to have saved
/// overwritten keys, nor leave an undo archive that "undoes" nothing (its
/// values were saved before the writes, as a write-ahead log does, and
/// restoring them later would put stale values over newer ones).
#[test]
fn no_undo_archive_when_every_overwrite_failed() {
    let (server, _) = seeded(&SeedSpec::small());
    let dir = TempDir::new().unwrap();
    let archive = export(&server, dir.path(), "all.kbd", &[]);
    let used: u64 = info_field(&server.info("memory"), "used_memory")
        .unwrap()
        .parse()
        .unwrap();
    let set = |name: &str, value: String| {
        let _: () = run(
            &server,
            redis::cmd("CONFIG").arg("SET").arg(name).arg(value),
        );
    };
    set("maxmemory-policy", "noeviction".into());
    set("maxmemory", (used / 2).to_string());
    let undo = dir.path().join("undo.kbd");
    let args = [
        "--mode",
        "replace",
        "--yes",
        "--undo",
        undo.to_str().unwrap(),
    ];
    let (code, report) = restore_json(&archive, &server, &args);
    assert_eq!(code, Some(2), "{report:#}");
    assert_eq!(total(&report, "restored"), 0, "{report:#}");
    assert!(total(&report, "failed") > 0, "{report:#}");
    for failure in report["failures"].as_array().unwrap() {
        let reason = failure["reason"].as_str().unwrap();
        assert!(reason.contains("OOM"), "{failure}");
    }
    assert_eq!(report["saved_for_undo"], 0, "{report:#}");
    assert!(report["undo_archive"].is_null(), "{report:#}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "all.kbd")
        .collect();
    assert!(
        left.is_empty(),
        "an undo archive of keys that were never overwritten: {left:?}"
    );
}
