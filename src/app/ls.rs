//! `kbdump ls`: the keys in an archive.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use serde_json::json;

use super::common::{visit_archive, ArchiveInput};
use super::options::selection;
use super::report::{iso_ms, stdout_error};
use super::{GlobalOpts, EXIT_ERROR};
use crate::cli::LsArgs;
use crate::format::archive::Record;
use crate::kato::display_bytes;

pub async fn run(args: LsArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let input = ArchiveInput::parse(&args.file)
        .with_keys(global.keys.clone())
        .salvaging(args.db.salvage);
    let selection = selection(&args.select);
    let mut out = BufWriter::new(std::io::stdout().lock());
    let print = |r: Record| -> anyhow::Result<()> {
        writeln!(out, "{}", line(&r, args.long, global.json)).map_err(stdout_error)
    };
    let damaged = visit_archive(&input, args.db.db, &selection, print)?;
    out.flush().map_err(stdout_error)?;
    Ok(if damaged > 0 {
        ExitCode::from(EXIT_ERROR)
    } else {
        ExitCode::SUCCESS
    })
}

fn line(r: &Record, long: bool, as_json: bool) -> String {
    if as_json {
        return json!({
            "key": display_bytes(&r.key), "kb_id": display_bytes(&r.kb_id), "category": r.category.to_string(),
            "type": r.redis_type, "expire_at_ms": r.expire_at_ms, "payload_bytes": r.payload.len(),
            "absent": r.is_absent(),
        })
        .to_string();
    }
    if !long {
        return display_bytes(&r.key);
    }
    let expiry = r.expire_at_ms.map_or("-".to_string(), iso_ms);
    format!(
        "{:<7} {:<24} {:>9}  {}",
        r.redis_type,
        expiry,
        r.payload.len(),
        display_bytes(&r.key)
    )
}
