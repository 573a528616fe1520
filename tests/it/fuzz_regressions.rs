//! The fuzz targets' checks (`fuzz/src/lib.rs`) as ordinary tests, so they
//! run in every `cargo test` whether or not libFuzzer can be built: over
//! the crafted hostile archives, the golden archives and the captured DUMP
//! payloads and AOF command sequences (the regression corpus), and over
//! seeded random mutations of
//! them (a fixed budget of inputs, the same every run).

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

use std::path::PathBuf;

/// Mutated inputs per seed and target.
const MUTATIONS: usize = 24;

fn fixtures(dir: &str, ext: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

/// Every archive the readers must survive: crafted and golden.
fn archive_corpus() -> Vec<(String, Vec<u8>)> {
    let mut all = crate::hostile::corpus();
    all.extend(fixtures("fixtures/archive", "kbd"));
    all
}

/// Every captured DUMP payload of `fixtures/dump/*.json`.
fn payload_corpus() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, bytes) in fixtures("fixtures/dump", "json") {
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for (n, key) in doc["keys"].as_array().unwrap().iter().enumerate() {
            let hex = key["payload_hex"].as_str().unwrap();
            let payload = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            out.push((format!("{name}#{n}"), payload));
        }
    }
    out
}

/// xorshift64*: reproducible mutations without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A few random edits of `seed`: flipped bits, overwritten bytes (often
/// with boundary values, which reach length fields), cut or repeated
/// ranges.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        if out.is_empty() {
            out.push(rng.next() as u8);
            continue;
        }
        let at = rng.below(out.len());
        match rng.below(5) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out[at] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)],
            2 => out[at] = rng.next() as u8,
            3 => out.truncate(at),
            _ => {
                let end = (at + 1 + rng.below(64)).min(out.len());
                let piece = out[at..end].to_vec();
                out.splice(at..at, piece);
            }
        }
    }
    out
}

#[test]
fn the_archive_check_holds_on_every_crafted_and_golden_archive() {
    for (name, bytes) in archive_corpus() {
        let run = std::panic::catch_unwind(|| checks::check_archive_read(&bytes));
        assert!(run.is_ok(), "check_archive_read panicked on {name}");
    }
}

#[test]
fn the_archive_check_holds_on_seeded_mutations() {
    let mut rng = Rng(0x6b62_6475_6d70_0001);
    // The large bombs are left out: their mutations would only repeat
    // the small cases at a high cost per input.
    let seeds: Vec<_> = archive_corpus()
        .into_iter()
        .filter(|(_, b)| b.len() < 64 << 10)
        .collect();
    for (name, seed) in &seeds {
        for n in 0..MUTATIONS {
            let input = mutate(seed, &mut rng);
            let run = std::panic::catch_unwind(|| checks::check_archive_read(&input));
            assert!(
                run.is_ok(),
                "check_archive_read panicked on mutation {n} of {name}"
            );
        }
    }
}

#[test]
fn the_decode_and_envelope_checks_hold_on_payloads_and_mutations() {
    let mut rng = Rng(0x6b62_6475_6d70_0002);
    for (name, seed) in payload_corpus() {
        checks::check_decode(&seed);
        checks::check_envelope(&seed);
        for n in 0..MUTATIONS {
            let input = mutate(&seed, &mut rng);
            let run = std::panic::catch_unwind(|| {
                checks::check_decode(&input);
                checks::check_envelope(&input);
            });
            assert!(
                run.is_ok(),
                "decode/envelope check panicked on mutation {n} of {name}"
            );
        }
    }
}

/// Writes the crafted archives as fuzz seeds into the directory named by
/// `KBDUMP_CRAFTED_CORPUS` (`scripts/fuzz.sh` runs it).
#[test]
#[ignore = "run by scripts/fuzz.sh to seed the archive_read target"]
fn write_crafted_corpus() {
    let dir = std::env::var_os("KBDUMP_CRAFTED_CORPUS").expect("KBDUMP_CRAFTED_CORPUS");
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (n, (name, bytes)) in crate::hostile::corpus().into_iter().enumerate() {
        let file: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        std::fs::write(dir.join(format!("crafted-{n:02}-{file}")), bytes).unwrap();
    }
}

/// A key name and its payload.
type Named = (Vec<u8>, Vec<u8>);

/// Every captured payload, each wrapped alone in an RDB file the way its
/// server writes one, and all of one server's payloads in one file.
fn rdb_corpus() -> Vec<(String, Vec<u8>, Vec<Vec<u8>>)> {
    let payloads = payload_corpus();
    let mut out = Vec::new();
    for (name, payload) in &payloads {
        if let Some(file) = checks::rdb_file_of(&[(b"k", payload)]) {
            out.push((name.clone(), file, vec![payload.clone()]));
        }
    }
    let mut by_fixture: std::collections::BTreeMap<String, Vec<Named>> = Default::default();
    for (name, payload) in payloads {
        let fixture = name.split('#').next().unwrap().to_string();
        by_fixture
            .entry(fixture)
            .or_default()
            .push((name.into_bytes(), payload));
    }
    for (fixture, keys) in by_fixture {
        let refs: Vec<(&[u8], &[u8])> = keys.iter().map(|(k, p)| (&k[..], &p[..])).collect();
        if let Some(file) = checks::rdb_file_of(&refs) {
            out.push((fixture, file, keys.into_iter().map(|(_, p)| p).collect()));
        }
    }
    out
}

#[test]
fn every_captured_payload_comes_back_unchanged_through_an_rdb_file() {
    use kbdump::format::rdb::{Item, RdbReader};
    let corpus = rdb_corpus();
    assert!(corpus.len() > 100, "the captured payloads of five servers");
    for (name, file, payloads) in corpus {
        let mut got = Vec::new();
        for item in RdbReader::new(&file[..]).unwrap() {
            match item {
                Ok(Item::Key(k)) => got.push(k.payload),
                Ok(_) => {}
                Err(e) => panic!("{name}: {e}"),
            }
        }
        assert_eq!(got, payloads, "{name}");
    }
}

#[test]
fn the_rdb_check_holds_on_rdb_files_and_their_mutations() {
    let mut rng = Rng(0x6b62_6475_6d70_0003);
    for (name, seed, _) in rdb_corpus() {
        checks::check_rdb_read(&seed);
        for n in 0..MUTATIONS {
            let input = mutate(&seed, &mut rng);
            let run = std::panic::catch_unwind(|| checks::check_rdb_read(&input));
            assert!(
                run.is_ok(),
                "check_rdb_read panicked on mutation {n} of {name}"
            );
        }
    }
}

#[test]
fn the_aof_check_holds_on_command_sequences_and_their_mutations() {
    let mut rng = Rng(0x6b62_6475_6d70_0004);
    for (n, seed) in checks::aof_seeds().into_iter().enumerate() {
        checks::check_aof_read(&seed);
        for m in 0..MUTATIONS * 4 {
            let input = mutate(&seed, &mut rng);
            let run = std::panic::catch_unwind(|| checks::check_aof_read(&input));
            assert!(
                run.is_ok(),
                "check_aof_read panicked on mutation {m} of seed {n}"
            );
        }
    }
}

/// The replay of every seed, whole: what each key becomes decodes, so a
/// re-encoded value is a valid payload and not only a valid trailer.
#[test]
fn every_value_the_aof_seeds_replay_to_decodes() {
    use kbdump::format::aof::{CommandReader, Replay};
    let all = checks::aof_seeds().pop().unwrap();
    let mut replay = Replay::new(Box::new(|_, _: &[u8]| true), 0, 11);
    for cmd in CommandReader::new(&all[..], 0) {
        replay.command(cmd.unwrap(), "seed");
    }
    let finished = replay.finish();
    assert!(finished.keys.is_empty(), "FLUSHDB ends the seed");
    let mut replay = Replay::new(Box::new(|_, _: &[u8]| true), 0, 11);
    let seeds = checks::aof_seeds();
    for seed in &seeds[..seeds.len() - 2] {
        for cmd in CommandReader::new(&seed[..], 0) {
            replay.command(cmd.unwrap(), "seed");
        }
    }
    let keys = replay.finish().keys;
    assert!(keys.len() >= 4);
    for key in keys {
        match key.outcome {
            Ok((payload, _)) => {
                kbdump::format::dump::decode(&payload).unwrap();
            }
            Err(why) => assert!(key.key.starts_with(b"stm:"), "{why}"),
        }
    }
}

/// Writes the AOF seeds into the directory named by `KBDUMP_AOF_CORPUS`
/// (`scripts/fuzz.sh` runs it).
#[test]
#[ignore = "run by scripts/fuzz.sh to seed the aof_read target"]
fn write_aof_corpus() {
    let dir = PathBuf::from(std::env::var_os("KBDUMP_AOF_CORPUS").expect("KBDUMP_AOF_CORPUS"));
    std::fs::create_dir_all(&dir).unwrap();
    for (n, seed) in checks::aof_seeds().into_iter().enumerate() {
        std::fs::write(dir.join(format!("aof-{n:02}")), seed).unwrap();
    }
}
