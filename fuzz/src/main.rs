//! A mutation fuzzer for the DUMP decoder that runs on the stable toolchain.
//!
//! cargo-fuzz needs nightly (sanitizer flags), which this project does not
//! use, so this harness does the essential part itself: start from real
//! payloads (the committed fixtures and the reference vectors), mutate them
//! (bit flips, byte edits, length-field edits, splices, truncation), reseal
//! most of them with a valid CRC so the mutations reach the body parsers,
//! and check that decoding never panics, never takes long, and that every
//! value it returns survives the JSON round trip and command generation.
//! Crashing inputs are written to `fuzz/artifacts/<target>/` as hex.
//!
//! Usage: `kbdump-fuzz <target> [seconds] [seed]`, targets: `decode`,
//! `envelope`, `archive_read` (a slot: see `archive_read` below).

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kbdump::dump;

/// Inputs the checked function accepted, to show the mutations get deep.
static ACCEPTED: AtomicU64 = AtomicU64::new(0);

/// Inputs slower than this are reported as hangs.
const SLOW: Duration = Duration::from_secs(2);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: small, fast, good enough to pick mutations.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect()
}

/// Seed payloads: every fixture payload, small ones first.
fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let dir = root().join("fixtures/dump");
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        for k in doc["keys"].as_array().into_iter().flatten() {
            out.push(unhex(k["payload_hex"].as_str().unwrap_or("")));
        }
    }
    out.extend(corpus(&root().join("fuzz/corpus")));
    out.sort_by_key(Vec::len);
    assert!(!out.is_empty(), "no seeds: fixtures/dump is missing");
    out
}

/// Extra seeds (one hex payload per file), e.g. earlier crashes.
fn corpus(dir: &Path) -> Vec<Vec<u8>> {
    let files = std::fs::read_dir(dir).into_iter().flatten().flatten();
    files
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|t| unhex(t.trim()))
        .collect()
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => input[rng.below(len)] ^= 1 << rng.below(8),
            1 if len > 0 => input[rng.below(len)] = rng.next() as u8,
            2 => input.insert(rng.below(len + 1), rng.next() as u8),
            3 if len > 0 => drop(input.remove(rng.below(len))),
            4 => input.truncate(rng.below(len + 1)),
            5 if len > 0 => {
                // Interesting length/encoding bytes.
                const MAGIC: [u8; 12] = [
                    0x00, 0x3f, 0x40, 0x7f, 0x80, 0x81, 0xc0, 0xc3, 0xfe, 0xff, 0xf0, 0xf4,
                ];
                input[rng.below(len)] = MAGIC[rng.below(MAGIC.len())];
            }
            6 => {
                let other = &seeds[rng.below(seeds.len())];
                let (a, b) = (rng.below(other.len() + 1), rng.below(other.len() + 1));
                let at = rng.below(len + 1);
                input.splice(at..at, other[a.min(b)..a.max(b)].iter().copied());
            }
            7 if len > 4 => {
                let at = rng.below(len - 4);
                input[at..at + 4].copy_from_slice(&(rng.next() as u32).to_le_bytes());
            }
            _ if len > 1 => {
                let (a, b) = (rng.below(len), rng.below(len));
                input.swap(a, b);
            }
            _ => input.push(rng.next() as u8),
        }
    }
}

/// Most inputs get a valid trailer so the mutation reaches the decoder.
fn reseal(rng: &mut Rng, input: Vec<u8>) -> Vec<u8> {
    if input.len() < 11 || rng.below(10) == 0 {
        return input;
    }
    let body = &input[1..input.len() - 10];
    let version = u16::from_le_bytes([input[input.len() - 10], input[input.len() - 9]]);
    let version = if rng.below(8) == 0 {
        [9, 10, 11, 12, 80][rng.below(5)]
    } else {
        version
    };
    dump::seal(input[0], body, version)
}

fn check_decode(input: &[u8]) {
    let Ok(value) = dump::decode(input) else {
        return;
    };
    ACCEPTED.fetch_add(1, Ordering::Relaxed);
    let json = value.to_json();
    let text = json.to_string();
    let back = dump::Value::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(back, value, "JSON round trip changed the value");
    assert!(
        value.logically_eq(&value.canonical()),
        "canonical form is not equal"
    );
    let opts = dump::CommandOptions::default();
    let _ = value.to_commands(b"k", &opts);
    let _ = value.command_gaps(&opts);
}

fn check_envelope(input: &[u8]) {
    if let Ok(env) = dump::parse_envelope(input) {
        ACCEPTED.fetch_add(1, Ordering::Relaxed);
        let retagged = dump::retag(input, env.rdb_version.wrapping_add(1)).unwrap();
        assert_eq!(dump::parse_envelope(&retagged).unwrap().body, env.body);
        assert_eq!(dump::type_ids_in(input).unwrap(), vec![env.type_byte]);
        let _ = dump::redis_type(env.type_byte, env.rdb_version);
    }
}

/// Slot for `kbdump::archive::ArchiveReader`: once that module is on
/// main, feed `input` to `ArchiveReader::new(Cursor::new(input))` here and
/// iterate to the end.
fn check_archive_read(_input: &[u8]) {}

fn save(target: &str, input: &[u8], why: &str) {
    let dir = root().join("fuzz/artifacts").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("{why}-{:016x}", dump::crc64(input));
    std::fs::write(dir.join(&name), hex + "\n").unwrap();
    eprintln!("{target}: {why}, saved fuzz/artifacts/{target}/{name}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target = args.get(1).map(String::as_str).unwrap_or("decode");
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(60);
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    });
    let check: fn(&[u8]) = match target {
        "decode" => check_decode,
        "envelope" => check_envelope,
        "archive_read" => check_archive_read,
        other => panic!("unknown target {other}; use decode, envelope or archive_read"),
    };
    panic::set_hook(Box::new(|_| {}));
    let seeds = seeds();
    let mut rng = Rng(seed);
    let (deadline, mut runs, mut failures) =
        (Instant::now() + Duration::from_secs(secs), 0u64, 0u64);
    while Instant::now() < deadline {
        let mut input = seeds[rng.below(seeds.len()).min(rng.below(seeds.len()))].clone();
        mutate(&mut rng, &seeds, &mut input);
        let input = reseal(&mut rng, input);
        let start = Instant::now();
        if panic::catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            save(target, &input, "crash");
            failures += 1;
        } else if start.elapsed() > SLOW {
            save(target, &input, "slow");
            failures += 1;
        }
        runs += 1;
    }
    let ok = ACCEPTED.load(Ordering::Relaxed);
    println!(
        "{target}: {runs} inputs in {secs} s (seed {seed}), {ok} accepted, {failures} failures"
    );
    std::process::exit(i32::from(failures > 0));
}
