//! Hostile archives, built frame by frame (`support::crafted`): an index
//! that lies about the blocks, records outside their block, duplicate keys,
//! decompression bombs and huge declared lengths, a damaged length field.
//! For each, every archive-reading command must say what is wrong (naming
//! the offset or block), exit non-zero, stay within a memory bound, never
//! panic, and never write a key outside the selection.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::cli::*;
use crate::support::crafted::{self, rec, record_prefix, zstd_bomb, BlockSpec, Crafted, End, Rec};
use crate::support::redis::RedisServer;

/// Peak resident memory any archive-reading command may reach on a
/// crafted archive (the largest block a writer makes is far smaller).
const RSS_BOUND_KB: u64 = 256 * 1024;

fn keys(kb: &str, category: &str, n: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            rec(
                &format!("{kb}:{category}:p{i:03}"),
                format!("v{i}").as_bytes(),
            )
        })
        .collect()
}

/// Three blocks (kb_a emotives, kb_b emotives, kb_b metadata), index and
/// end frame still open for a test to bend.
fn three_blocks() -> Crafted {
    let mut a = Crafted::new();
    a.block("kb_a", "emotives", &keys("kb_a", "emotives", 3));
    a.block("kb_b", "emotives", &keys("kb_b", "emotives", 4));
    a.block("kb_b", "metadata", &keys("kb_b", "metadata", 2));
    a
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Every crafted archive of this module, named: the regression corpus of
/// the fuzz targets too (`fuzz_regressions`).
pub fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = bad_indexes()
        .into_iter()
        .map(|(name, bytes)| (name.to_string(), bytes))
        .collect();
    all.push(("planted".into(), planted()));
    all.push(("duplicate key".into(), duplicate_keys()));
    all.push(("damaged length".into(), damaged_length(3).0));
    all.push(("damaged length, low byte".into(), damaged_length(0).0));
    for (name, bytes, _) in bombs() {
        all.push((name.to_string(), bytes));
    }
    all
}

/// The archives whose index disagrees with the blocks.
fn bad_indexes() -> Vec<(&'static str, Vec<u8>)> {
    let mut cases = Vec::new();
    let mut a = three_blocks();
    let first = a.entry(0).clone();
    a.index_mut().blocks[1] = first;
    cases.push(("duplicated entry", a.finish()));

    let mut a = three_blocks();
    a.index_mut().blocks[1].offset += 1 << 20;
    cases.push(("entry past the end", a.finish()));

    let mut a = three_blocks();
    a.index_mut().blocks[1].offset += 7;
    cases.push(("entry into the middle of a block", a.finish()));

    let mut a = three_blocks();
    a.index_mut().blocks[2].len += 20;
    cases.push(("overlapping entries", a.finish()));

    let a = three_blocks();
    let end = End {
        index_offset: a.len(),
        block_count: 3,
        record_count: a.records() + 5,
    };
    cases.push(("wrong record count", a.finish_with(end)));

    let mut a = three_blocks();
    a.index_mut().blocks[1].meta.kb_id = b"kb_c".to_vec();
    cases.push(("entry naming another kb", a.finish()));

    let mut a = three_blocks();
    a.index_mut().blocks.remove(1);
    let end = End {
        index_offset: a.len(),
        block_count: 2,
        record_count: a.records(),
    };
    cases.push(("block missing from the index", a.finish_with(end)));
    cases
}

#[test]
fn verify_cross_checks_the_index_against_the_blocks() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in bad_indexes() {
        let path = write(dir.path(), "bad.kbd", &bytes);
        let out = kbdump(&["verify", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stdout(&out));
        assert!(stdout(&out).contains("index"), "{name}: {}", stdout(&out));
    }
}

/// An index that lies is not trusted: restore reads such a file front to
/// back with a warning, so it puts back as much as the same file on stdin.
#[test]
fn an_inconsistent_index_never_restores_fewer_keys() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in bad_indexes() {
        let path = write(dir.path(), "bad.kbd", &bytes);
        let by_file = RedisServer::start();
        let out = kbdump(&[
            "restore",
            path.to_str().unwrap(),
            "--redis",
            &by_file.url(),
            "--kb",
            "kb_b",
            "--quiet",
        ]);
        assert!(stderr(&out).contains("index"), "{name}: {}", stderr(&out));
        let piped = RedisServer::start();
        let out_stdin = kbdump_stdin(
            &[
                "restore",
                "-",
                "--redis",
                &piped.url(),
                "--kb",
                "kb_b",
                "--quiet",
            ],
            &path,
        );
        assert_eq!(
            out.status.code(),
            out_stdin.status.code(),
            "{name}: {}\n{}",
            stderr(&out),
            stderr(&out_stdin)
        );
        let (file_keys, stdin_keys) = (snap(&by_file), snap(&piped));
        assert_eq!(
            file_keys.keys().collect::<Vec<_>>(),
            stdin_keys.keys().collect::<Vec<_>>(),
            "{name}"
        );
        assert_eq!(file_keys.len(), 6, "{name}: every kb_b key is back");
    }
}

/// A block of kb_a/emotives that also holds other keys.
fn planted() -> Vec<u8> {
    let mut a = Crafted::new();
    let mut records = keys("kb_a", "emotives", 2);
    records.push(rec("victim_kb:emotives:planted", b"evil"));
    records.push(rec("kb_a:metadata:wrong_category", b"evil"));
    a.block("kb_a", "emotives", &records);
    a.block("victim_kb", "emotives", &keys("victim_kb", "emotives", 1));
    a.finish()
}

#[test]
fn a_record_outside_its_block_is_damage_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "planted.kbd", &planted());
    let file = path.to_str().unwrap();
    let out = kbdump(&["verify", file]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    for key in ["victim_kb:emotives:planted", "kb_a:metadata:wrong_category"] {
        assert!(stdout(&out).contains(key), "{}", stdout(&out));
    }
    assert!(
        stdout(&out).contains("kb kb_a, emotives"),
        "{}",
        stdout(&out)
    );

    for command in ["ls", "cat"] {
        let out = kbdump(&[command, file, "--kb", "kb_a"]);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
        assert!(
            !stdout(&out).contains("planted"),
            "{command}: {}",
            stdout(&out)
        );
        assert!(
            stdout(&out).contains("kb_a:emotives:p001"),
            "{command} goes on"
        );
        assert!(
            stderr(&out).contains("victim_kb:emotives:planted"),
            "{command}"
        );
    }

    let target = RedisServer::start();
    let (code, report) = restore_json(&path, &target, &["--kb", "kb_a", "--category", "emotives"]);
    assert_eq!(code, Some(2), "{report:#}");
    let on_target: Vec<String> = snap(&target).keys().map(|k| show(k)).collect();
    assert_eq!(on_target, ["kb_a:emotives:p000", "kb_a:emotives:p001"]);
    assert!(
        report["failures"]
            .to_string()
            .contains("victim_kb:emotives:planted"),
        "{report:#}"
    );
    assert_eq!(total(&report, "failed"), 2, "{report:#}");

    let (code, report) = diff_json(&path, &target, &["--kb", "kb_a"]);
    assert_eq!(code, Some(2), "{report:#}");
    assert!(
        report["damaged"].to_string().contains("planted"),
        "{report:#}"
    );
}

fn duplicate_keys() -> Vec<u8> {
    let mut a = Crafted::new();
    a.block("kb_a", "emotives", &keys("kb_a", "emotives", 2));
    a.block("kb_a", "emotives", &[rec("kb_a:emotives:p001", b"second")]);
    a.finish()
}

#[test]
fn duplicate_keys_in_an_archive_are_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "dup.kbd", &duplicate_keys());
    let file = path.to_str().unwrap();
    let out = kbdump(&["verify", file]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("duplicate"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("kb_a:emotives:p001"),
        "{}",
        stdout(&out)
    );

    let out = kbdump(&["ls", file]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));
    assert!(stderr(&out).contains("duplicate"), "{}", stderr(&out));

    let target = RedisServer::start();
    let (code, report) = restore_json(
        &path,
        &target,
        &[
            "--mode",
            "replace",
            "--yes",
            "--undo",
            dir.path().join("u.kbd").to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(2), "{report:#}");
    assert!(
        report["failures"].to_string().contains("duplicate"),
        "{report:#}"
    );
    let value: Vec<u8> = redis::cmd("GET")
        .arg("kb_a:emotives:p001")
        .query(&mut target.client())
        .unwrap();
    assert_eq!(
        value, b"v1",
        "the first copy is restored, the repeat is not"
    );
}

/// 35 blocks; byte `at` of the third block's length field is damaged.
fn damaged_length(at: usize) -> (Vec<u8>, u64) {
    let mut a = Crafted::new();
    for n in 0..35 {
        a.block(
            "kb_a",
            "emotives",
            &keys("kb_a", &format!("emotives:b{n:02}"), 2),
        );
    }
    let damaged = a.entry(2).offset as usize;
    let mut bytes = a.finish();
    bytes[damaged + 1 + at] ^= 0x5a;
    (bytes, damaged as u64)
}

/// verify names the block whose length field is damaged as damaged and
/// checks the 32 blocks after it through the index: whether the length
/// now runs past the end of the file (a high byte) or lands inside the
/// blocks that follow (the low byte; the checksum catches it).
#[test]
fn verify_resynchronises_after_a_damaged_length_field() {
    let dir = tempfile::tempdir().unwrap();
    for at in [3, 0] {
        let (bytes, damaged) = damaged_length(at);
        let path = write(dir.path(), "len.kbd", &bytes);
        let out = kbdump(&["--json", "verify", path.to_str().unwrap()]);
        let report = json_with_code(&out, 1);
        assert_eq!(report["blocks_ok"], 34, "byte {at}: {report:#}");
        assert_eq!(report["blocks_damaged"], 1, "byte {at}: {report:#}");
        assert_eq!(report["records_ok"], 68, "byte {at}: {report:#}");
        let problems = report["problems"].to_string();
        assert!(!problems.contains("truncated"), "byte {at}: {report:#}");
        assert!(problems.contains("damaged"), "byte {at}: {report:#}");
        assert_eq!(report["problems"][0]["offset"], damaged, "{report:#}");
        // Restore through the index loses that one block only.
        let target = RedisServer::start();
        let (code, restored) = restore_json(&path, &target, &[]);
        assert_eq!(code, Some(2), "{restored:#}");
        assert_eq!(total(&restored, "restored"), 68, "byte {at}: {restored:#}");
    }
}

/// How a bomb is delivered.
enum Feed {
    File,
    /// On stdin, followed by this many zero bytes (a stream that goes on).
    Stdin(usize),
}

/// Runs kbdump under a wrapper that reports its peak RSS (kB).
fn measured(args: &[&str], input: &[u8], feed: &Feed) -> (Output, u64) {
    let dir = tempfile::tempdir().unwrap();
    let rss_file = dir.path().join("rss");
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(
            "import resource, subprocess, sys\n\
             r = subprocess.run(sys.argv[2:])\n\
             open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n\
             sys.exit(r.returncode if r.returncode >= 0 else 128 - r.returncode)",
        )
        .arg(&rss_file)
        .arg(env!("CARGO_BIN_EXE_kbdump"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = match feed {
        Feed::File => cmd.stdin(Stdio::null()).output().expect("python3 runs"),
        Feed::Stdin(tail) => {
            let mut child = cmd.stdin(Stdio::piped()).spawn().expect("python3 runs");
            let mut stdin = child.stdin.take().unwrap();
            let (input, tail) = (input.to_vec(), *tail);
            let feeder = std::thread::spawn(move || {
                if stdin.write_all(&input).is_err() {
                    return;
                }
                let zeros = vec![0u8; 1 << 20];
                for _ in 0..tail / zeros.len() {
                    if stdin.write_all(&zeros).is_err() {
                        return;
                    }
                }
            });
            let out = child.wait_with_output().unwrap();
            feeder.join().unwrap();
            out
        }
    };
    let rss = std::fs::read_to_string(&rss_file)
        .unwrap_or_else(|_| panic!("no RSS measured: {}", stderr(&out)))
        .trim()
        .parse()
        .unwrap();
    (out, rss)
}

/// The bombs: 4 GiB of records from ~128 KiB of archive, a block frame
/// and an index frame declaring 4 GiB on a stream that goes on.
fn bombs() -> Vec<(&'static str, Vec<u8>, Feed)> {
    let rle_blocks = 32 * 1024 - 1; // 4 GiB - 128 KiB of zeros
    let payload_len = rle_blocks * (128 << 10);
    let bomb_records = zstd_bomb(
        &record_prefix("kb_a:emotives:bomb", payload_len),
        rle_blocks,
        0,
    );
    let spec = |raw_len: u64| BlockSpec {
        meta: crafted::Meta {
            kb_id: b"kb_a".to_vec(),
            category: "emotives".into(),
            records: 1,
            payload_bytes: u64::from(payload_len),
            raw_len,
            rdb_versions: vec![crafted::RDB_VERSION],
            type_bytes: vec![0],
        },
        body: bomb_records.clone(),
    };
    let mut cases = Vec::new();
    for (name, raw_len) in [
        ("bomb declaring its 4 GiB", u64::from(payload_len) + 64),
        ("bomb declaring 200 KiB", 200 << 10),
    ] {
        let mut a = Crafted::new();
        a.block("kb_a", "emotives", &keys("kb_a", "emotives", 2));
        a.block_spec(spec(raw_len));
        let bytes = a.finish();
        cases.push((name, bytes.clone(), Feed::File));
        cases.push((name, bytes, Feed::Stdin(0)));
    }
    for (name, kind) in [
        ("block frame of 4 GiB", b'B'),
        ("index frame of 4 GiB", b'I'),
    ] {
        let mut a = Crafted::new();
        a.block("kb_a", "emotives", &keys("kb_a", "emotives", 2));
        a.frame_declaring(kind, u32::MAX, b"");
        cases.push((name, a.bytes().to_vec(), Feed::Stdin(1 << 30)));
    }
    cases
}

#[test]
fn bombs_and_huge_lengths_stay_within_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let target = RedisServer::start();
    let url = target.url();
    for (name, bytes, feed) in bombs() {
        let path = write(dir.path(), "bomb.kbd", &bytes);
        let file = match feed {
            Feed::File => path.to_str().unwrap().to_string(),
            Feed::Stdin(_) => "-".to_string(),
        };
        let commands: Vec<Vec<&str>> = vec![
            vec!["verify", &file],
            vec!["ls", &file],
            vec!["cat", &file],
            vec!["inspect", &file],
            vec!["restore", &file, "--redis", &url, "--quiet"],
            vec!["diff", &file, "--redis", &url],
        ];
        for args in commands {
            let (out, rss_kb) = measured(&args, &bytes, &feed);
            let what = format!("{name}, {args:?}");
            eprintln!("{what}: peak RSS {rss_kb} kB, exit {:?}", out.status.code());
            assert!(
                rss_kb < RSS_BOUND_KB,
                "{what}: peak RSS {rss_kb} kB\n{}",
                stderr(&out)
            );
            let code = out.status.code();
            assert!(
                !stderr(&out).contains("panicked"),
                "{what}: {}",
                stderr(&out)
            );
            if args[0] == "inspect" && name.starts_with("bomb") {
                // inspect reads the metadata only: the bomb is never
                // inflated, so there is nothing to say about it.
                continue;
            }
            let expected = if args[0] == "verify" { 1 } else { 2 };
            assert_eq!(
                code,
                Some(expected),
                "{what}: {}{}",
                stdout(&out),
                stderr(&out)
            );
            let said = format!("{}{}", stdout(&out), stderr(&out));
            assert!(said.contains("byte"), "{what}: names no offset: {said}");
        }
        let on_target: Vec<String> = snap(&target).keys().map(|k| show(k)).collect();
        assert!(
            on_target.iter().all(|k| !k.contains("bomb")),
            "{name}: {on_target:?}"
        );
    }
}

/// Every crafted case under every archive-reading command, from a file
/// and from stdin: never a panic, memory within the bound, a non-zero exit
/// with a message naming a byte offset, and never a key outside the
/// selection on the server.
#[test]
fn no_crafted_file_panics_or_writes_outside_the_selection() {
    every_command_on_every_case(false);
}

#[test]
fn no_crafted_stream_panics_or_writes_outside_the_selection() {
    every_command_on_every_case(true);
}

fn every_command_on_every_case(from_stdin: bool) {
    let dir = tempfile::tempdir().unwrap();
    let bomb_names: Vec<&str> = bombs().iter().map(|(n, _, _)| *n).collect();
    let cases: Vec<_> = corpus()
        .into_iter()
        .filter(|(name, _)| !bomb_names.contains(&name.as_str()))
        .collect();
    let target = RedisServer::start();
    let url = target.url();
    for (name, bytes) in cases {
        let path = write(dir.path(), "case.kbd", &bytes);
        // inspect reads metadata only: it cannot see a record out of
        // place, a repeated key, or (through a sound index) a damaged block.
        let record_level = name == "planted" || name == "duplicate key";
        let (file, feed) = if from_stdin {
            ("-", Feed::Stdin(0))
        } else {
            (path.to_str().unwrap(), Feed::File)
        };
        {
            // On a stream, inspect does read every frame header.
            let inspect_sees = !record_level
                && (matches!(feed, Feed::Stdin(_)) || !name.starts_with("damaged length"));
            let commands: Vec<Vec<&str>> = vec![
                vec!["verify", file],
                vec!["inspect", file],
                vec!["ls", file, "--kb", "kb_a"],
                vec!["cat", file, "--kb", "kb_a"],
                vec!["diff", file, "--redis", &url, "--kb", "kb_a"],
                vec![
                    "restore",
                    file,
                    "--redis",
                    &url,
                    "--quiet",
                    "--kb",
                    "kb_a",
                    "--category",
                    "emotives",
                ],
            ];
            for args in commands {
                let (out, rss_kb) = measured(&args, &bytes, &feed);
                let what = format!("{name}, {args:?}");
                let said = format!("{}{}", stdout(&out), stderr(&out));
                assert!(out.status.code().is_some(), "{what}: killed");
                assert_ne!(out.status.code(), Some(101), "{what}: {said}");
                assert!(!said.contains("panicked"), "{what}: {said}");
                assert!(rss_kb < RSS_BOUND_KB, "{what}: peak RSS {rss_kb} kB");
                if args[0] == "inspect" && !inspect_sees {
                    continue;
                }
                assert_ne!(out.status.code(), Some(0), "{what}: {said}");
                assert!(said.contains("byte"), "{what}: names no offset: {said}");
            }
            let outside: Vec<String> = snap(&target)
                .keys()
                .map(|k| show(k))
                .filter(|k| !k.starts_with("kb_a:emotives:"))
                .collect();
            assert!(outside.is_empty(), "{name} from {file}: wrote {outside:?}");
        }
    }
}
