//! `kbdump cat`: the decoded values in an archive, without a server.
//!
//! Text output is for people (key line, then the value as indented JSON);
//! `--json` is for scripts (JSON Lines whose `value` reads back with
//! `Value::from_json`); `--raw KEY` is for tools that want one string's
//! exact bytes. A payload that does not decode is reported on stderr and
//! the others are still printed (exit 2 at the end), like ripgrep's
//! per-file errors.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::anyhow;
use serde_json::{json, Value as Json};

use super::common::{visit_archive, ArchiveInput};
use super::options::selection;
use super::report::{for_people, iso_ms, one_line, stdout_error};
use super::{GlobalOpts, EXIT_ERROR};
use crate::cli::CatArgs;
use crate::flow::verify::undecodable;
use crate::format::archive::Record;
use crate::format::dump::{self, Value};
use crate::kato::{display_bytes, parse_display_bytes};
use crate::selection::Selection;

pub async fn run(args: CatArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let input = ArchiveInput::parse(&args.file)
        .with_keys(global.keys.clone())
        .salvaging(args.db.salvage);
    let selection = selection(&args.select);
    if let Some(key) = &args.raw {
        return raw(&input, args.db.db, &selection, &parse_display_bytes(key));
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut undecodable = 0u64;
    let print = |r: Record| -> anyhow::Result<()> {
        if r.is_absent() {
            return write!(out, "{}", absent(&r, global.json)).map_err(stdout_error);
        }
        match dump::decode(&r.payload) {
            Ok(value) if global.json => {
                writeln!(out, "{}", json_line(&r, &value)).map_err(stdout_error)?
            }
            Ok(value) => write!(out, "{}", text(&r, &value)).map_err(stdout_error)?,
            Err(e) => {
                undecodable += 1;
                // Keep stdout and stderr in order for a reader of both.
                out.flush().map_err(stdout_error)?;
                eprintln!(
                    "kbdump: key {}: {}",
                    display_bytes(&r.key),
                    self::undecodable(&r.payload, &e)
                );
            }
        }
        Ok(())
    };
    let damaged = visit(&input, args.db.db, &selection, print)?;
    out.flush().map_err(stdout_error)?;
    if undecodable > 0 {
        eprintln!("kbdump: {undecodable} key(s) could not be decoded");
    }
    if undecodable > 0 || damaged > 0 {
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    Ok(ExitCode::SUCCESS)
}

/// The selected records; damaged parts are named on stderr and counted.
fn visit(
    input: &ArchiveInput,
    db: u64,
    selection: &Selection,
    visit: impl FnMut(Record) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    visit_archive(input, db, selection, visit)
}

/// One key as a JSON Lines object.
pub fn json_line(r: &Record, value: &Value) -> Json {
    json!({
        "key": display_bytes(&r.key),
        "kb_id": display_bytes(&r.kb_id),
        "category": r.category.name(),
        "type": r.redis_type,
        "expire_at_ms": r.expire_at_ms,
        "value": value.to_json(),
    })
}

/// An absent record (an undo archive's key that did not exist): a line.
fn absent(r: &Record, as_json: bool) -> String {
    if as_json {
        let line = json!({
            "key": display_bytes(&r.key),
            "kb_id": display_bytes(&r.kb_id),
            "category": r.category.name(),
            "type": r.redis_type,
            "absent": true,
            "value": null,
        });
        return format!("{line}\n");
    }
    format!(
        "{}  (absent: the key did not exist; restoring in replace mode deletes it)\n",
        display_bytes(&r.key)
    )
}

/// One key for people: `KEY  (type[, expires at ...])`, then the value as
/// indented JSON.
fn text(r: &Record, value: &Value) -> String {
    let expiry = r
        .expire_at_ms
        .map_or(String::new(), |ms| format!(", expires {}", iso_ms(ms)));
    let mut out = format!("{}  ({}{expiry})\n", display_bytes(&r.key), r.redis_type);
    out += "    ";
    pretty(&for_people(&value.to_json()["value"]), 4, &mut out);
    out += "\n";
    out
}

/// Output width that [`pretty`] keeps short containers within.
const WIDTH: usize = 100;

/// Indented JSON, pprint style: a container that fits on the rest of the
/// line is written on one line (with spaces after `,` and `:`), a longer
/// one gets one element per line. Keeps zset pairs and small emotives
/// objects readable at a glance.
fn pretty(j: &Json, indent: usize, out: &mut String) {
    let one_line = one_line(j, usize::MAX);
    let fits = indent + one_line.len() <= WIDTH;
    let (open, close, items): (char, char, Vec<(Option<&String>, &Json)>) = match j {
        Json::Array(a) if !fits && !a.is_empty() => {
            ('[', ']', a.iter().map(|v| (None, v)).collect())
        }
        Json::Object(o) if !fits && !o.is_empty() => {
            ('{', '}', o.iter().map(|(k, v)| (Some(k), v)).collect())
        }
        _ => {
            out.push_str(&one_line);
            return;
        }
    };
    let pad = " ".repeat(indent + 2);
    out.push(open);
    for (n, (k, v)) in items.iter().enumerate() {
        out.push_str(if n == 0 { "\n" } else { ",\n" });
        out.push_str(&pad);
        if let Some(k) = k {
            out.push_str(&Json::String((*k).clone()).to_string());
            out.push_str(": ");
        }
        pretty(v, indent + 2, out);
    }
    out.push('\n');
    out.push_str(&" ".repeat(indent));
    out.push(close);
}

/// Marks "found it, stop reading" in the visitor's error channel.
#[derive(Debug, thiserror::Error)]
#[error("found")]
struct Found(Record);

/// `--raw KEY`: the one string's bytes on stdout.
fn raw(
    input: &ArchiveInput,
    db: u64,
    selection: &Selection,
    key: &[u8],
) -> anyhow::Result<ExitCode> {
    let found = visit(input, db, selection, |r| {
        if r.key == key {
            return Err(Found(r).into());
        }
        Ok(())
    });
    let record = match found {
        Ok(_) => return Err(not_found(input, key)),
        Err(e) => match e.downcast::<Found>() {
            Ok(Found(record)) => record,
            Err(e) => return Err(e),
        },
    };
    let value = dump::decode(&record.payload).map_err(|e| {
        anyhow!(
            "key {}: {}",
            display_bytes(key),
            undecodable(&record.payload, &e)
        )
    })?;
    let Value::String(bytes) = value else {
        return Err(anyhow!(
            "key {} is a {}, and --raw writes only strings; use --json to see it",
            display_bytes(key),
            value.redis_type()
        ));
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .map_err(stdout_error)?;
    Ok(ExitCode::SUCCESS)
}

fn not_found(input: &ArchiveInput, key: &[u8]) -> anyhow::Error {
    anyhow!(
        "key {} is not in {} (or not in the --kb/--category/--match selection); \
         `kbdump ls` lists the keys in the same notation",
        display_bytes(key),
        input.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(j: Json) -> String {
        let mut out = String::new();
        pretty(&j, 0, &mut out);
        out
    }

    #[test]
    fn python_written_json_shows_without_its_marker() {
        let j = serde_json::json!([{"json_spaced": {"joy": 0.4}}, {"base64": "/w=="}]);
        assert_eq!(
            for_people(&j),
            serde_json::json!([{"joy": 0.4}, {"base64": "/w=="}])
        );
    }

    #[test]
    fn short_containers_stay_on_one_line() {
        assert_eq!(
            show(json!([["a", 1.5], ["b", "inf"]])),
            r#"[["a", 1.5], ["b", "inf"]]"#
        );
        assert_eq!(show(json!({"joy": 0.4})), r#"{"joy": 0.4}"#);
        assert_eq!(show(json!("a\"b")), r#""a\"b""#);
        assert_eq!(show(json!([])), "[]");
    }

    #[test]
    fn long_containers_get_one_element_per_line() {
        let long = "x".repeat(60);
        let j = json!({"a": [long.clone(), long.clone()], "b": 1});
        let expected =
            format!("{{\n  \"a\": [\n    \"{long}\",\n    \"{long}\"\n  ],\n  \"b\": 1\n}}");
        assert_eq!(show(j), expected);
    }
}
