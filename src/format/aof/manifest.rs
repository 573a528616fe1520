//! The manifest of a Redis 7+ multi-part AOF directory
//! (`appendonly.aof.manifest`): one line per file,
//! `file <name> seq <n> type <b|i|h>` (base, incremental, history), in the
//! order the server replays them. Names with spaces are quoted as
//! `sdssplitargs` reads them.

use super::error::{AofError, Result};

/// What a part of a multi-part AOF is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    /// The base: an RDB file or RESP commands, written by a rewrite.
    Base,
    /// Commands appended since the base.
    Incremental,
    /// A part an older rewrite left behind, waiting for deletion: not
    /// replayed.
    History,
}

/// One manifest line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub file: String,
    pub seq: u64,
    pub kind: PartKind,
}

/// The parts to replay, in order: the base (if any) first, then every
/// incremental part as the manifest lists them. History parts are left
/// out. The longest accepted manifest line is 4 KiB.
pub fn parse(text: &str) -> Result<Vec<Part>> {
    let mut base = Vec::new();
    let mut incremental = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what: String| AofError::Manifest { line: n + 1, what };
        if line.len() > 4096 {
            return Err(bad("longer than 4 KiB".into()));
        }
        let part = parse_line(line).map_err(bad)?;
        match part.kind {
            PartKind::Base => base.push(part),
            PartKind::Incremental => incremental.push(part),
            PartKind::History => {}
        }
    }
    if base.len() > 1 {
        return Err(AofError::Manifest {
            line: 0,
            what: format!("{} base files; a manifest has at most one", base.len()),
        });
    }
    if base.is_empty() && incremental.is_empty() {
        return Err(AofError::Manifest {
            line: 0,
            what: "no base and no incremental file".into(),
        });
    }
    base.extend(incremental);
    Ok(base)
}

fn parse_line(line: &str) -> std::result::Result<Part, String> {
    let words = split_args(line)?;
    if !words.len().is_multiple_of(2) {
        return Err(format!("{line:?}: expected key value pairs"));
    }
    let (mut file, mut seq, mut kind) = (None, None, None);
    for pair in words.chunks(2) {
        match pair[0].as_str() {
            "file" => file = Some(pair[1].clone()),
            "seq" => {
                seq = Some(
                    pair[1]
                        .parse::<u64>()
                        .map_err(|_| format!("seq {:?}", pair[1]))?,
                )
            }
            "type" => {
                kind = Some(match pair[1].as_str() {
                    "b" => PartKind::Base,
                    "i" => PartKind::Incremental,
                    "h" => PartKind::History,
                    other => return Err(format!("unknown type {other:?} (b, i or h expected)")),
                })
            }
            // Later servers may add fields (offsets); they do not change
            // what is replayed.
            _ => {}
        }
    }
    let file = file.ok_or_else(|| format!("{line:?}: no file name"))?;
    if file.is_empty() || file.contains('/') || file == ".." {
        return Err(format!(
            "file name {file:?} is not a plain name inside the directory"
        ));
    }
    Ok(Part {
        file,
        seq: seq.ok_or_else(|| format!("{line:?}: no seq"))?,
        kind: kind.ok_or_else(|| format!("{line:?}: no type"))?,
    })
}

/// Words separated by spaces; a word in double quotes may hold spaces and
/// `\"`, `\\`, `\n` escapes.
fn split_args(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return Ok(words);
        };
        let mut word = String::new();
        if first == '"' {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unbalanced quotes".into()),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => word.push('\n'),
                        Some(c) => word.push(c),
                        None => return Err("unbalanced quotes".into()),
                    },
                    Some(c) => word.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                word.push(c);
            }
        }
        words.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_first_then_incrementals_history_left_out() {
        let text = "file appendonly.aof.2.base.rdb seq 2 type b\n\
                    file appendonly.aof.1.incr.aof seq 1 type h\n\
                    file appendonly.aof.3.incr.aof seq 3 type i\n\
                    file \"with space.aof\" seq 4 type i\n";
        let parts = parse(text).unwrap();
        let names: Vec<_> = parts.iter().map(|p| p.file.as_str()).collect();
        assert_eq!(
            names,
            [
                "appendonly.aof.2.base.rdb",
                "appendonly.aof.3.incr.aof",
                "with space.aof"
            ]
        );
        assert_eq!(parts[0].kind, PartKind::Base);
    }

    #[test]
    fn nonsense_is_refused_with_its_line() {
        for bad in [
            "file a seq 1 type x\n",
            "file a seq one type b\n",
            "file ../etc seq 1 type b\n",
            "file a seq 1\n",
            "\n",
            "file a seq 1 type b\nfile b seq 2 type b\n",
            "file \"a seq 1 type b\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let err = parse("# comment\nfile a seq 1 type q\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
