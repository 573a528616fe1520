//! `kbdump restore`.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use tokio::sync::mpsc;

use super::args::{open_file, ArchiveInput, RedisArgs, SelectArgs};
use super::clickhouse_args::ClickHouseArgs;
use super::progress::key_progress;
use super::{print_json, GlobalOpts, EXIT_ERROR};
use crate::clock::system_now_ms as now_ms;
use crate::format::archive::{ArchiveWriter, Header, Record, SourceInfo, FORMAT_VERSION};
use crate::kato::{display_bytes, parse_display_bytes};
use crate::net::mirror::MirrorScope;
use crate::selection::Selection;
use crate::sink::file::AtomicFile;
use crate::sink::redis::{restore, Mode, RestoreOptions, RestoreSummary, SourceItem, Target};
use crate::source::archive::{selected_size, spawn_file_source, spawn_stream_source, SourceResult};
use crate::source::mirror::{spawn_mirror_source, MirrorSourceResult};

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
    let guard = !args.write.force && !args.write.dry_run;
    let (rx, source, input) = match (&args.from_clickhouse, &args.file) {
        (Some(url), _) => {
            let (rx, task) = open_mirror(url, selection, guard.then_some(&target)).await?;
            (rx, Source::Mirror(task), ArchiveInput::Stdin)
        }
        (None, file) => {
            let input = ArchiveInput::parse(file.as_deref().unwrap_or("-"));
            let (rx, task) = match &input {
                ArchiveInput::Path(p) => {
                    match selected_size(open_file(p)?, &selection) {
                        Ok((_, size)) if guard => {
                            target.check_headroom(size.payload_bytes, size.keys)?
                        }
                        Ok(_) => {}
                        // No index to size the selection from: the running
                        // memory budget still applies.
                        Err(e @ crate::format::archive::Error::Truncated { .. }) => eprintln!(
                            "kbdump: warning: {}: {e}; restoring every intact block in a front-to-back read",
                            input.name()
                        ),
                        Err(e) => anyhow::bail!("{}: {e}", input.name()),
                    }
                    spawn_file_source(open_file(p)?, selection)
                }
                ArchiveInput::Stdin => spawn_stream_source(input.open_stream()?, selection),
            };
            (rx, Source::Archive(task), input)
        }
    };
    let options = args.write.options_for(&target);
    let undo = undo_path(&args, &input);
    let (summary, undo_file) = restore_with_undo(&target, rx, &options, &undo, global).await?;
    match source {
        Source::Archive(task) => drop(source_outcome(task, &input).await?),
        Source::Mirror(task) => mirror_outcome(task).await?,
    }
    report(&summary, &options, &target, undo_file.as_deref(), global)?;
    Ok(exit_code(&summary))
}

pub fn exit_code(summary: &RestoreSummary) -> ExitCode {
    if summary.has_failures() {
        ExitCode::from(EXIT_ERROR)
    } else {
        ExitCode::SUCCESS
    }
}

/// The archive reader's own result: an archive that could not be opened at
/// all is an error even though no record failed.
pub async fn source_outcome(
    source: tokio::task::JoinHandle<SourceResult>,
    input: &ArchiveInput,
) -> anyhow::Result<Header> {
    source
        .await
        .context("the archive reader stopped unexpectedly")?
        .map_err(|e| anyhow::anyhow!("{}: {e}", input.name()))
}

/// Runs the restore engine; in replace mode (not a dry run) the keys about
/// to be overwritten go to an undo archive at `undo`, which is completed
/// even when the restore fails midway.
pub(crate) async fn restore_with_undo(
    target: &Target,
    rx: mpsc::Receiver<SourceItem>,
    options: &RestoreOptions,
    undo: &Path,
    global: &GlobalOpts,
) -> anyhow::Result<(RestoreSummary, Option<PathBuf>)> {
    let undo = match (options.mode, options.dry_run) {
        (Mode::Replace, false) => Some(UndoWriter::start(undo, target)?),
        _ => None,
    };
    let progress = key_progress(global);
    let result = restore(
        target,
        rx,
        options,
        undo.as_ref().map(|u| u.tx.clone()),
        progress.as_ref(),
    )
    .await;
    let undo_file = match undo {
        Some(u) => u.finish().await?,
        None => None,
    };
    Ok((result?, undo_file))
}

/// A timestamp usable in a file name.
pub(crate) fn undo_stamp() -> String {
    super::inspect::iso_ms(now_ms()).replace([':', '.'], "-")
}

/// Where the records come from.
enum Source {
    Archive(tokio::task::JoinHandle<SourceResult>),
    Mirror(tokio::task::JoinHandle<MirrorSourceResult>),
}

/// Starts reading the ClickHouse mirror; with `guard`, first refuses a
/// restore the target has no memory headroom for, as for an archive.
async fn open_mirror(
    url: &str,
    selection: Selection,
    guard: Option<&Target>,
) -> anyhow::Result<(
    mpsc::Receiver<SourceItem>,
    tokio::task::JoinHandle<MirrorSourceResult>,
)> {
    let ch = ClickHouseArgs {
        clickhouse: url.to_string(),
    }
    .connect()
    .await?;
    if let Some(target) = guard {
        if let Some(scope) = MirrorScope::resolve(&ch, &selection).await? {
            let (bytes, keys) = scope.payload_bytes(&ch).await?;
            target.check_headroom(bytes, keys)?;
        }
    }
    Ok(spawn_mirror_source(ch, selection))
}

async fn mirror_outcome(task: tokio::task::JoinHandle<MirrorSourceResult>) -> anyhow::Result<()> {
    task.await
        .context("the ClickHouse mirror reader stopped unexpectedly")??;
    Ok(())
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

/// The undo archive: a writer thread fed with the keys about to be
/// overwritten. It is completed (and renamed into place) even when the
/// restore fails midway, so whatever was overwritten can be put back.
struct UndoWriter {
    tx: mpsc::Sender<Record>,
    task: tokio::task::JoinHandle<anyhow::Result<Option<PathBuf>>>,
}

impl UndoWriter {
    fn start(path: &Path, target: &Target) -> anyhow::Result<UndoWriter> {
        let file = AtomicFile::create(path, false).context("creating the undo archive")?;
        let header = Header {
            format_version: FORMAT_VERSION,
            tool: format!("kbdump {}", env!("CARGO_PKG_VERSION")),
            created_at_ms: now_ms(),
            source: SourceInfo {
                kind: "undo".into(),
                address: target.conn.address().to_string(),
                product: target.info.product.clone(),
                version: target.info.version.clone(),
                rdb_version: Some(target.kind.rdb_version),
                mode: if target.info.cluster {
                    "cluster"
                } else {
                    "standalone"
                }
                .into(),
                db: u32::try_from(target.conn.db()).unwrap_or(0),
            },
            selection: Default::default(),
        };
        let (tx, mut rx) = mpsc::channel::<Record>(1024);
        let path = path.to_path_buf();
        let task = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<PathBuf>> {
            let mut writer = ArchiveWriter::new(BufWriter::new(file), &header, Default::default())?;
            let mut count = 0u64;
            while let Some(record) = rx.blocking_recv() {
                writer.push(&record)?;
                count += 1;
            }
            let (out, _) = writer.finish()?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            if count == 0 {
                return Ok(None);
            }
            file.commit()?;
            Ok(Some(path))
        });
        Ok(UndoWriter { tx, task })
    }

    async fn finish(self) -> anyhow::Result<Option<PathBuf>> {
        drop(self.tx);
        self.task
            .await
            .context("the undo writer stopped unexpectedly")?
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

/// Feeds restore from an in-process channel (used by copy).
pub fn channel() -> (mpsc::Sender<SourceItem>, mpsc::Receiver<SourceItem>) {
    mpsc::channel(4096)
}
