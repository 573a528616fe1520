//! `kbdump ls`: the keys in an archive.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::args::{ArchiveInput, SelectArgs};
use super::inspect::iso_ms;
use super::GlobalOpts;
use crate::format::archive::Record;
use crate::kato::display_bytes;
use crate::source::archive::ArchiveSource;

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Examples:\n  kbdump ls node0.kbd --category emotives\n  kbdump ls node0.kbd --long --match '*:metadata:3f7*'\n  kbdump ls --json all.kbd --kb 'node*'   # JSON Lines, one key per line"
)]
pub struct LsArgs {
    /// Archive file, or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: String,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Also show type, expiry and payload size.
    #[arg(long, short = 'l')]
    pub long: bool,
}

pub async fn run(args: LsArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let input = ArchiveInput::parse(&args.file);
    let selection = args.select.selection();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let print = |r: Record| -> anyhow::Result<()> {
        Ok(writeln!(out, "{}", line(&r, args.long, global.json))?)
    };
    ArchiveSource::open(&input)?
        .visit(&selection, print)
        .map_err(|e| e.context(input.name()))?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn line(r: &Record, long: bool, as_json: bool) -> String {
    if as_json {
        return json!({
            "key": display_bytes(&r.key), "kb_id": display_bytes(&r.kb_id), "category": r.category.to_string(),
            "type": r.redis_type, "expire_at_ms": r.expire_at_ms, "payload_bytes": r.payload.len(),
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
