//! Helper binary of `scripts/bench.sh` (a `harness = false` bench target, so
//! it is built by `cargo bench --no-run` and never run by `cargo test`).
//!
//! - `seed --patterns N [--kbs K] [--seed S]`: writes to stdout the RESP
//!   stream of a KATO-like dataset, for `redis-cli --pipe`.
//! - `restore-commands [--replace] ARCHIVE`: writes to stdout one `RESTORE
//!   key ttl payload [REPLACE]` per record of a `.kbd` archive, the
//!   reference workload that `kbdump restore` (and, with `--replace`, the
//!   physical limit of `kbdump rebuild` in `scripts/bench-rebuild.sh`) is
//!   compared against.
//!
//! The dataset, per kb_id (`bench{i}_kato`), with P patterns:
//! - per pattern (7 keys): `frequency` (integer), `emotives` (JSON list of
//!   objects), `metadata` (JSON object), `entropy`, `normalized_entropy`,
//!   `global_normalized_entropy` (floats as text), `tf_vector` (JSON object);
//! - about P/6 symbols (the ratio of the incident in `kato-keys.md`), drawn
//!   with a strong skew so a few `symbol_to_patterns` sets are large;
//! - `symbols:freq` and `symbols:pmf` hashes, one `symbol_to_patterns:{s}`
//!   set per symbol, `affinity:{s}` hashes for a third of the symbols, and
//!   the three `global:*` strings.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use kbdump::format::archive::IndexedArchive;

fn main() -> ExitCode {
    // `cargo bench` appends `--bench`; ignore it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let result = match args.first().map(String::as_str) {
        Some("seed") => seed(&args[1..]),
        Some("restore-commands") if args.len() == 2 => restore_commands(&args[1], false),
        Some("restore-commands") if args.len() == 3 && args[1] == "--replace" => {
            restore_commands(&args[2], true)
        }
        _ => Err(io::Error::other(
            "usage: bench_tool seed --patterns N [--kbs K] [--seed S] | restore-commands [--replace] ARCHIVE",
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_tool: {e}");
            ExitCode::from(2)
        }
    }
}

/// RESP encoder over a buffered writer.
struct Resp<W: Write> {
    out: W,
    commands: u64,
}

impl<W: Write> Resp<W> {
    fn command(&mut self, args: &[&[u8]]) -> io::Result<()> {
        write!(self.out, "*{}\r\n", args.len())?;
        for arg in args {
            write!(self.out, "${}\r\n", arg.len())?;
            self.out.write_all(arg)?;
            self.out.write_all(b"\r\n")?;
        }
        self.commands += 1;
        Ok(())
    }

    /// `CMD key a b c ...` with the variadic part in chunks of `chunk`.
    fn chunked(
        &mut self,
        cmd: &[u8],
        key: &[u8],
        items: &[Vec<u8>],
        chunk: usize,
    ) -> io::Result<()> {
        for part in items.chunks(chunk) {
            let mut args: Vec<&[u8]> = Vec::with_capacity(part.len() + 2);
            args.push(cmd);
            args.push(key);
            args.extend(part.iter().map(Vec::as_slice));
            self.command(&args)?;
        }
        Ok(())
    }
}

/// SplitMix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const EMOTIVES: [&str; 6] = ["joy", "utility", "fear", "surprise", "trust", "anger"];
const TAGS: [&str; 8] = [
    "sensor", "vision", "audio", "chat", "planning", "test", "prod", "replay",
];

fn arg_value(args: &[String], name: &str, default: u64) -> io::Result<u64> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other(format!("{name} needs a number"))),
    }
}

fn seed(args: &[String]) -> io::Result<()> {
    let patterns = arg_value(args, "--patterns", 250_000)?;
    let kbs = arg_value(args, "--kbs", 4)?.max(1);
    let seed = arg_value(args, "--seed", 1)?;
    let stdout = io::stdout();
    let mut resp = Resp {
        out: BufWriter::with_capacity(1 << 20, stdout.lock()),
        commands: 0,
    };
    for kb in 0..kbs {
        let per_kb = patterns / kbs + u64::from(kb < patterns % kbs);
        seed_kb(
            &mut resp,
            &format!("bench{kb}_kato"),
            per_kb,
            seed ^ (kb << 32),
        )?;
    }
    resp.out.flush()
}

fn symbol_name(i: usize) -> Vec<u8> {
    // Mostly words, some KATO vector symbols; a few contain glob
    // metacharacters and spaces, as real symbols may.
    match i % 10 {
        0 => format!("VCTR|{:016x}{:024x}", i * 2_654_435_761, i).into_bytes(),
        7 => format!("word {i} [x]").into_bytes(),
        _ => format!("sym{i}").into_bytes(),
    }
}

fn pattern_name(rng_seed: u64, i: usize) -> Vec<u8> {
    let mut r = Rng(rng_seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    format!(
        "PTRN|{:016x}{:016x}{:08x}",
        r.next(),
        r.next(),
        r.next() as u32
    )
    .into_bytes()
}

fn float_text(x: f64) -> Vec<u8> {
    format!("{x}").into_bytes()
}

fn seed_kb<W: Write>(resp: &mut Resp<W>, kb: &str, patterns: u64, seed: u64) -> io::Result<()> {
    let mut rng = Rng(seed);
    let n_symbols = (patterns as usize / 6).max(50);
    let mut freq = vec![0u64; n_symbols];
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); n_symbols];
    let key = |parts: &[&[u8]]| -> Vec<u8> {
        let mut k = kb.as_bytes().to_vec();
        for p in parts {
            k.push(b':');
            k.extend_from_slice(p);
        }
        k
    };
    let mut total_symbols = 0u64;
    let mut total_freq = 0u64;
    for p in 0..patterns as usize {
        let name = pattern_name(seed, p);
        // 3..14 symbol occurrences, skewed towards frequent symbols.
        let n = 3 + rng.below(12) as usize;
        let mut counts: Vec<(usize, u32)> = Vec::with_capacity(n);
        for _ in 0..n {
            let s = ((rng.unit().powi(3)) * n_symbols as f64) as usize;
            match counts.iter_mut().find(|(sym, _)| *sym == s) {
                Some((_, c)) => *c += 1,
                None => counts.push((s, 1)),
            }
            freq[s] += 1;
        }
        total_symbols += n as u64;
        let mut entropy = 0.0;
        let mut tf = String::from("{");
        for (j, (s, c)) in counts.iter().enumerate() {
            members[*s].push(p as u32);
            let q = f64::from(*c) / n as f64;
            entropy -= q * q.log2();
            if j > 0 {
                tf.push_str(", ");
            }
            let sym = String::from_utf8_lossy(&symbol_name(*s)).into_owned();
            tf.push_str(&format!("\"{sym}\": {q}"));
        }
        tf.push('}');
        let frequency = 1 + (rng.unit().powi(4) * 500.0) as u64;
        total_freq += frequency;
        let mut emotives = String::from("[");
        for e in 0..1 + rng.below(3) {
            if e > 0 {
                emotives.push_str(", ");
            }
            emotives.push('{');
            for k in 0..1 + rng.below(3) {
                if k > 0 {
                    emotives.push_str(", ");
                }
                let name = EMOTIVES[rng.below(EMOTIVES.len() as u64) as usize];
                let v = (rng.unit() * 4.0 - 2.0) * 1000.0;
                emotives.push_str(&format!("\"{name}\": {}", v.round() / 1000.0));
            }
            emotives.push('}');
        }
        emotives.push(']');
        let metadata = format!(
            "{{\"source\": \"stream-{}\", \"tags\": [\"{}\", \"{}\"], \"created\": {}, \"note\": \"observed {} times\"}}",
            rng.below(64),
            TAGS[rng.below(8) as usize],
            TAGS[rng.below(8) as usize],
            1_700_000_000 + rng.below(30_000_000),
            frequency
        );
        let normalized = entropy / (n_symbols as f64).log2();
        resp.command(&[
            b"SET",
            &key(&[b"frequency", &name]),
            frequency.to_string().as_bytes(),
        ])?;
        resp.command(&[b"SET", &key(&[b"emotives", &name]), emotives.as_bytes()])?;
        resp.command(&[b"SET", &key(&[b"metadata", &name]), metadata.as_bytes()])?;
        resp.command(&[b"SET", &key(&[b"entropy", &name]), &float_text(entropy)])?;
        resp.command(&[
            b"SET",
            &key(&[b"normalized_entropy", &name]),
            &float_text(normalized),
        ])?;
        resp.command(&[
            b"SET",
            &key(&[b"global_normalized_entropy", &name]),
            &float_text(normalized * 0.9),
        ])?;
        resp.command(&[b"SET", &key(&[b"tf_vector", &name]), tf.as_bytes()])?;
    }
    let used: Vec<usize> = (0..n_symbols).filter(|&s| freq[s] > 0).collect();
    let pairs = |value: &dyn Fn(usize) -> u64| -> Vec<Vec<u8>> {
        used.iter()
            .flat_map(|&s| [symbol_name(s), value(s).to_string().into_bytes()])
            .collect()
    };
    resp.chunked(
        b"HSET",
        &key(&[b"symbols", b"freq"]),
        &pairs(&|s| freq[s]),
        2000,
    )?;
    resp.chunked(
        b"HSET",
        &key(&[b"symbols", b"pmf"]),
        &pairs(&|s| members[s].len() as u64),
        2000,
    )?;
    for &s in &used {
        let names: Vec<Vec<u8>> = members[s]
            .iter()
            .map(|&p| pattern_name(seed, p as usize))
            .collect();
        resp.chunked(
            b"SADD",
            &key(&[b"symbol_to_patterns", &symbol_name(s)]),
            &names,
            1000,
        )?;
        if s % 3 == 0 {
            let fields: Vec<Vec<u8>> = EMOTIVES[..2 + rng.below(4) as usize]
                .iter()
                .flat_map(|e| [e.as_bytes().to_vec(), float_text(rng.unit() * 2.0 - 1.0)])
                .collect();
            resp.chunked(
                b"HSET",
                &key(&[b"affinity", &symbol_name(s)]),
                &fields,
                1000,
            )?;
        }
    }
    resp.command(&[
        b"SET",
        &key(&[b"global", b"total_symbols_in_patterns_frequencies"]),
        total_symbols.to_string().as_bytes(),
    ])?;
    resp.command(&[
        b"SET",
        &key(&[b"global", b"total_pattern_frequencies"]),
        total_freq.to_string().as_bytes(),
    ])?;
    resp.command(&[
        b"SET",
        &key(&[b"global", b"total_unique_patterns"]),
        patterns.to_string().as_bytes(),
    ])?;
    Ok(())
}

fn restore_commands(path: &str, replace: bool) -> io::Result<()> {
    let file = File::open(path)?;
    let mut archive = IndexedArchive::open(io::BufReader::with_capacity(1 << 20, file))
        .map_err(|e| io::Error::other(format!("{path}: {e}")))?;
    let entries = archive.index().blocks.clone();
    let stdout = io::stdout();
    let mut resp = Resp {
        out: BufWriter::with_capacity(1 << 20, stdout.lock()),
        commands: 0,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    for entry in &entries {
        let block = archive
            .read_block(entry)
            .map_err(|e| io::Error::other(format!("{path}: {e}")))?;
        let records = block
            .records()
            .map_err(|e| io::Error::other(format!("{path}: {e}")))?;
        for record in records {
            let record = record.map_err(|e| io::Error::other(format!("{path}: {e}")))?;
            let ttl = record.expire_at_ms.map_or(0, |at| (at - now).max(1));
            let ttl = ttl.to_string();
            let mut args: Vec<&[u8]> =
                vec![b"RESTORE", &record.key, ttl.as_bytes(), &record.payload];
            if replace {
                args.push(b"REPLACE");
            }
            resp.command(&args)?;
        }
    }
    resp.out.flush()?;
    eprintln!("bench_tool: {} RESTORE commands", resp.commands);
    Ok(())
}
