//! `kbdump restore`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::args::{ArchiveInput, RedisArgs, SelectArgs};
use super::clickhouse_args::ClickHouseArgs;
use super::progress::key_progress;
use super::{print_json, GlobalOpts, EXIT_ERROR};
use crate::clock::{system_now_ms as now_ms, Clock};
pub(crate) use crate::flow::restore::restore_with_undo;
use crate::kato::{display_bytes, parse_display_bytes};
use crate::selection::Selection;
use crate::sink::redis::{Mode, RestoreOptions, RestoreSummary, Target};
use crate::source::archive::ArchiveSource;
use crate::source::mirror::MirrorSource;
use crate::source::{Source, SourceError, SourceTask};

const EXAMPLES: &str = "\
By default only keys that are missing on the server are written; existing
keys are never touched. Keys whose archived expiry has passed are skipped.

Examples:
  kbdump restore node0.kbd --kb node0_kato --category emotives   # put back lost emotives
  kbdump restore node0.kbd --dry-run                             # what would happen
  kbdump restore node0.kbd --rename-kb node0_kato=node9_kato     # clone a knowledge base
  kbdump restore node0.kbd --mode replace --undo before.kbd      # overwrite, keep an undo
  kbdump restore --mode replace before.kbd                       # ...and undo it
  ssh backup 'cat node0.kbd' | kbdump restore - --redis redis://new:6379
  kbdump restore --from-clickhouse http://ch:8123 --kb node0_kato   # from `kbdump mirror`";

/// Options of restore that copy shares.
#[derive(Debug, Clone, Args)]
pub struct WriteArgs {
    /// missing: never touch existing keys; replace: overwrite them.
    #[arg(long, value_enum, default_value_t = Mode::Missing)]
    pub mode: Mode,
    /// Write kb_id FROM's keys under kb_id TO (repeatable).
    #[arg(long = "rename-kb", value_name = "FROM=TO", value_parser = parse_rename)]
    pub renames: Vec<(String, String)>,
    /// Write nothing; report exactly what a real run would do.
    #[arg(long)]
    pub dry_run: bool,
    /// Re-create every key with plain commands instead of RESTORE.
    #[arg(long)]
    pub logical: bool,
    /// Restore even when the target's maxmemory headroom looks too small.
    #[arg(long)]
    pub force: bool,
}

impl WriteArgs {
    /// The options, with the memory guard for `target` unless `--force`.
    pub fn options_for(&self, target: &Target) -> RestoreOptions {
        RestoreOptions {
            memory_budget: target.memory_budget().filter(|_| !self.force),
            max_payload: target.max_bulk,
            // Logical chunks stay well below the server's argument limit.
            max_bytes: (target.max_bulk / 4).clamp(1, 1 << 20) as usize,
            ..self.options()
        }
    }

    pub fn options(&self) -> RestoreOptions {
        RestoreOptions {
            mode: self.mode,
            renames: self
                .renames
                .iter()
                .map(|(f, t)| (parse_display_bytes(f), parse_display_bytes(t)))
                .collect(),
            dry_run: self.dry_run,
            force_logical: self.logical,
            ..RestoreOptions::default()
        }
    }
}

fn parse_rename(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => {
            Ok((from.to_string(), to.to_string()))
        }
        _ => Err(format!("expected FROM=TO, got {s:?}")),
    }
}

#[derive(Debug, Clone, Args)]
#[command(after_help = EXAMPLES)]
pub struct RestoreArgs {
    /// Archive file, or `-` for stdin.
    #[arg(
        value_name = "FILE|-",
        required_unless_present = "from_clickhouse",
        conflicts_with = "from_clickhouse"
    )]
    pub file: Option<String>,
    /// Read the records from the ClickHouse mirror table (written by `kbdump
    /// mirror`) instead of an archive: http://[user:password@]host:port/?database=NAME
    #[arg(long, value_name = "URL")]
    pub from_clickhouse: Option<String>,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub write: WriteArgs,
    /// Where replace mode saves the keys it overwrites (default: beside the
    /// input, `<input>.undo-<time>.kbd`).
    #[arg(long, value_name = "FILE")]
    pub undo: Option<PathBuf>,
}

pub async fn run(args: RestoreArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    let selection = args.select.selection();
    let target = Target::connect(&args.redis.redis).await?;
    let (source, input) = open_source(&args, &selection).await?;
    if !args.write.force && !args.write.dry_run {
        // Without an index (a pipe, a cut file) the selection's size is
        // unknown: the running memory budget still applies.
        if let Some(size) = source.selected_size(&selection) {
            target.check_headroom(size.payload_bytes, size.keys)?;
        }
    }
    let (items, task) = source.stream(selection).split();
    let options = args.write.options_for(&target);
    let undo = undo_path(&args, &input);
    let progress = key_progress(global);
    let (summary, undo_file) = restore_with_undo(
        &target,
        items,
        &options,
        &undo,
        &Clock::system(),
        progress.as_ref(),
    )
    .await?;
    source_outcome(task, &input).await?;
    report(&summary, &options, &target, undo_file.as_deref(), global)?;
    Ok(exit_code(&summary))
}

/// The archive (a file, stdin) or the ClickHouse mirror the records come
/// from, and the input to name in messages.
async fn open_source(
    args: &RestoreArgs,
    selection: &Selection,
) -> anyhow::Result<(Source, ArchiveInput)> {
    if let Some(url) = &args.from_clickhouse {
        let ch = ClickHouseArgs {
            clickhouse: url.to_string(),
        }
        .connect()
        .await?;
        let mirror = MirrorSource::open(ch, selection.clone()).await?;
        return Ok((Source::Mirror(mirror), ArchiveInput::Stdin));
    }
    let input = ArchiveInput::parse(args.file.as_deref().unwrap_or("-"));
    let archive = ArchiveSource::open(&input)?;
    if let Some(cut) = archive.truncation() {
        eprintln!(
            "kbdump: warning: {}: {cut}; restoring every intact block in a front-to-back read",
            input.name()
        );
    }
    Ok((Source::Archive(archive), input))
}

pub fn exit_code(summary: &RestoreSummary) -> ExitCode {
    if summary.has_failures() {
        ExitCode::from(EXIT_ERROR)
    } else {
        ExitCode::SUCCESS
    }
}

/// The source's own verdict: an archive that could not be read at all is
/// an error even though no record failed.
pub async fn source_outcome<T>(task: SourceTask<T>, input: &ArchiveInput) -> anyhow::Result<T> {
    task.finish().await.map_err(|e| match e {
        SourceError::Archive(e) => anyhow::anyhow!("{}: {e}", input.name()),
        other => other.into(),
    })
}

/// A timestamp usable in a file name.
pub(crate) fn undo_stamp() -> String {
    super::inspect::iso_ms(now_ms()).replace([':', '.'], "-")
}

/// The default undo path: beside the input archive, or in the current
/// directory for stdin and ClickHouse.
fn undo_path(args: &RestoreArgs, input: &ArchiveInput) -> PathBuf {
    if let Some(path) = &args.undo {
        return path.clone();
    }
    let stamp = undo_stamp();
    match input {
        ArchiveInput::Path(p) => PathBuf::from(format!("{}.undo-{stamp}.kbd", p.display())),
        ArchiveInput::Stdin => PathBuf::from(format!("restore.undo-{stamp}.kbd")),
    }
}

pub fn report(
    summary: &RestoreSummary,
    options: &RestoreOptions,
    target: &Target,
    undo: Option<&Path>,
    global: &GlobalOpts,
) -> anyhow::Result<()> {
    if global.json {
        return print_json(&summary_json(summary, options, target, undo));
    }
    print!("{}", summary_text(summary, options, target, undo));
    Ok(())
}

fn summary_json(
    summary: &RestoreSummary,
    options: &RestoreOptions,
    target: &Target,
    undo: Option<&Path>,
) -> serde_json::Value {
    let cells = super::cells_json(&summary.tallies);
    json!({
        "target": target.conn.address(),
        "mode": options.mode,
        "dry_run": options.dry_run,
        "total": summary.total(),
        "contents": cells,
        "failures": summary.failures,
        "warnings": summary.warnings,
        "saved_for_undo": summary.saved_for_undo,
        "undo_archive": undo.map(|p| p.display().to_string()),
    })
}

fn summary_text(
    summary: &RestoreSummary,
    options: &RestoreOptions,
    target: &Target,
    undo: Option<&Path>,
) -> String {
    let total = summary.total();
    let verb = if options.dry_run {
        "would restore"
    } else {
        "restored"
    };
    let mut out = format!(
        "{}{verb} {} keys into {} ({} {}), mode {}: {} kept (already present), {} expired, {} failed\n",
        if options.dry_run { "dry run: " } else { "" },
        total.restored,
        target.conn.address(),
        target.info.product,
        target.info.version,
        match options.mode {
            Mode::Missing => "missing",
            Mode::Replace => "replace",
        },
        total.kept,
        total.expired,
        total.failed
    );
    out += &format!(
        "{:<24} {:<12} {:>9} {:>9} {:>9} {:>7}   {:>7} {:>9} {:>8}\n",
        "kb_id", "category", "restored", "kept", "expired", "failed", "raw", "retagged", "logical"
    );
    for ((kb, cat), c) in &summary.tallies {
        out += &format!(
            "{:<24} {:<12} {:>9} {:>9} {:>9} {:>7}   {:>7} {:>9} {:>8}\n",
            display_bytes(kb),
            cat,
            c.restored,
            c.kept,
            c.expired,
            c.failed,
            c.raw,
            c.retagged,
            c.logical
        );
    }
    for warning in summary.warnings.iter().take(20) {
        out += &format!("restored with loss: {}: {}\n", warning.what, warning.reason);
    }
    if summary.warnings.len() > 20 {
        out += &format!(
            "... and {} more keys restored with loss (see --json)\n",
            summary.warnings.len() - 20
        );
    }
    for failure in summary.failures.iter().take(20) {
        out += &format!("failed: {}: {}\n", failure.what, failure.reason);
    }
    if summary.failures.len() > 20 {
        out += &format!(
            "... and {} more failures (see --json)\n",
            summary.failures.len() - 20
        );
    }
    if let Some(path) = undo {
        out += &format!(
            "{} overwritten keys saved to {}; undo with: kbdump restore --mode replace {}\n",
            summary.saved_for_undo,
            path.display(),
            path.display()
        );
    }
    out
}
