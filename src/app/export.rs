//! `kbdump export`.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::common::{open_archive, redis_endpoint, ArchiveInput};
use super::options::{pace, recipients, selection, selection_spec};
use super::progress::key_progress;
use super::report::{human_bytes, is_broken_pipe, iso_ms, print_json, print_text};
use super::GlobalOpts;
use crate::cli::export::Method;
use crate::cli::ExportArgs;
use crate::flow::export::{convert, export, export_snapshot, Converted, ExportError};
use crate::format::archive::WriterOptions;
use crate::format::encryption::{MaybeSealed, Recipients};
use crate::kato::{display_bytes, place_label, Group};
use crate::net::redis::{RedisConn, ServerInfo};
use crate::selection::LeftOut;
use crate::sink::file::Output;
use crate::source::live::{ExportOptions, ExportSummary, LeftOutTask, LiveSource};
use crate::source::snapshot::{ShardRead, SnapshotSource};
use crate::stop::Stop;

pub async fn run(args: ExportArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    // Refuse a bad output path or recipient before touching the server.
    let recipients = recipients(&args.encrypt)?;
    let sealing = Sealing {
        recipients: recipients.as_ref(),
    };
    if let Some(from) = &args.from {
        return convert_file(&args, from, sealing, global).await;
    }
    let output = Output::open(&args.output, args.force)?;
    let to_stdout = matches!(output, Output::Stdout);
    let stop = global.interrupts.stop();
    // A signal while connecting drops the output (and its temporary file).
    let mut source = tokio::select! {
        source = open_source(&args, global) => source?,
        () = stop.requested() => return Ok(interrupted(global, &output)),
    };
    let writer = WriterOptions {
        level: args.level,
        ..Default::default()
    };
    let progress = key_progress(global);
    let kind = OutputKind::of(&output);
    let written = write(
        &mut source,
        writer,
        output,
        sealing,
        progress.as_ref(),
        &stop,
    )
    .await;
    let (read, written) = match written {
        Err(e) if is_interrupted(&e) => return Ok(global.interrupts.report(&kind.stopped())),
        written => written?,
    };
    let (conn, info) = source.server();
    let done = Done {
        left_out: match read.left_out {
            LeftOutBy::Known(left_out) => left_out,
            LeftOutBy::Counting(Some(task)) => task.await.context("counting the db")??,
            LeftOutBy::Counting(None) => LeftOut::default(),
        },
        summary: read.summary,
        snapshot: read.snapshot,
        written,
    };
    report(&args, conn, &info, &done, to_stdout, global)?;
    Ok(ExitCode::SUCCESS)
}

/// The server, opened for the method that reads it.
enum Opened {
    Scan(Box<LiveSource>),
    Snapshot(Box<SnapshotSource>),
}

impl Opened {
    fn server(&self) -> (&RedisConn, ServerInfo) {
        match self {
            Opened::Scan(live) => (live.conn(), live.server_info().cloned().unwrap_or_default()),
            Opened::Snapshot(snap) => (snap.conn(), snap.server_info().clone()),
        }
    }
}

async fn open_source(args: &ExportArgs, global: &GlobalOpts) -> anyhow::Result<Opened> {
    let pace = pace(&args.pace);
    let endpoint = redis_endpoint(&args.redis)?;
    let conn = pace.patience.connect(&endpoint).await?;
    let options = ExportOptions {
        selection: selection(&args.select),
        scan_count: args.scan_count,
        pace,
        ..Default::default()
    };
    let spec = selection_spec(&args.select);
    if args.method != Method::Scan {
        let quiet = global.quiet;
        let waiting = move || {
            if !quiet {
                eprintln!("{WAITING_NOTE}");
            }
        };
        let opened = SnapshotSource::open(
            conn.clone(),
            &endpoint,
            options.clone(),
            spec.clone(),
            &waiting,
        )
        .await;
        match opened {
            Ok(snapshot) => return Ok(Opened::Snapshot(Box::new(snapshot))),
            Err(e) if args.method == Method::Auto && e.is_refusal() => {
                if !global.quiet {
                    eprintln!("kbdump: note: reading with SCAN (--method scan) instead of a snapshot: {e}");
                }
            }
            Err(e) => {
                return Err(anyhow::Error::from(e).context(
                    "--method rdb: the server's snapshot cannot be read (--method auto falls back \
                     to SCAN when the server refuses one)",
                ))
            }
        }
    }
    // A `--kb` that names nothing fails here, before the archive exists.
    let live = LiveSource::open(conn, options, spec).await?;
    Ok(Opened::Scan(Box::new(live)))
}

/// Said once when the server takes more than a moment to start its snapshot.
const WAITING_NOTE: &str = "kbdump: note: waiting for the server to start its snapshot \
(it saves it to disk first, or, with diskless replication, waits repl-diskless-sync-delay \
seconds, 5 by default, for other replicas; --method scan does not wait)";

/// The encryption asked for, if any.
#[derive(Clone, Copy)]
struct Sealing<'a> {
    recipients: Option<&'a Recipients>,
}

impl Sealing<'_> {
    fn wrap<W: Write>(self, out: W) -> anyhow::Result<BufWriter<MaybeSealed<W>>> {
        let sealed = MaybeSealed::new(out, self.recipients).context("starting the encryption")?;
        Ok(BufWriter::with_capacity(1 << 20, sealed))
    }
}

/// Flushes an archive and ends its encryption: what is written after the
/// last byte of the archive itself.
fn finish_output<W: Write>(out: BufWriter<MaybeSealed<W>>) -> anyhow::Result<W> {
    let sealed = out
        .into_inner()
        .map_err(|e| e.into_error())
        .context("flushing the archive")?;
    sealed.finish().context("finishing the encrypted archive")
}

/// What a read yielded, whatever the method.
struct Read {
    summary: ExportSummary,
    left_out: LeftOutBy,
    /// How the snapshot read went; `None` for a SCAN read.
    snapshot: Option<SnapshotRead>,
}

/// The instant of a snapshot (of a cluster: the earliest of its
/// masters'), the keys it held already expired, and each snapshot read.
struct SnapshotRead {
    at_ms: i64,
    expired: u64,
    shards: Vec<ShardRead>,
}

/// What the selection left out: known at the end of a snapshot, or still
/// being counted beside a SCAN read.
enum LeftOutBy {
    Known(LeftOut),
    Counting(Option<LeftOutTask>),
}

/// Exports `source` into `out` by its method.
async fn export_any<W: Write + Send + 'static>(
    source: &mut Opened,
    writer: WriterOptions,
    out: W,
    progress: &dyn crate::progress::Progress,
    stop: &Stop,
) -> Result<(W, Read), ExportError> {
    match source {
        Opened::Scan(live) => {
            let left_out = LeftOutBy::Counting(live.take_left_out());
            let (out, summary) = export(live, writer, out, progress, stop).await?;
            let read = Read {
                summary,
                left_out,
                snapshot: None,
            };
            Ok((out, read))
        }
        Opened::Snapshot(snap) => {
            let (out, s) = export_snapshot(snap, writer, out, progress, stop).await?;
            let read = Read {
                summary: s.summary,
                left_out: LeftOutBy::Known(s.left_out),
                snapshot: Some(SnapshotRead {
                    at_ms: s.snapshot_at_ms,
                    expired: s.expired,
                    shards: s.shards,
                }),
            };
            Ok((out, read))
        }
    }
}

/// Exports into `output`: what was read and the archive's size (0 when
/// not known, for a stream).
async fn write(
    source: &mut Opened,
    writer: WriterOptions,
    output: Output,
    sealing: Sealing<'_>,
    progress: &dyn crate::progress::Progress,
    stop: &Stop,
) -> anyhow::Result<(Read, u64)> {
    match output {
        Output::File(file) => {
            let out = sealing.wrap(file)?;
            let (out, read) = export_any(source, writer, out, progress, stop).await?;
            let file = finish_output(out)?;
            let written = std::fs::metadata(file.temp_path())
                .map(|m| m.len())
                .unwrap_or(0);
            file.commit()?;
            Ok((read, written))
        }
        Output::Stream { file, path } => {
            let name = path.display().to_string();
            let streamed = export_stream(source, writer, sealing, file, progress, stop).await;
            Ok((stream_outcome(streamed, &name)?, 0))
        }
        Output::Stdout => {
            let out = std::io::stdout();
            let streamed = export_stream(source, writer, sealing, out, progress, stop).await;
            Ok((stream_outcome(streamed, "stdout")?, 0))
        }
    }
}

/// What an interrupted export leaves, for its one line.
enum OutputKind {
    File,
    Stream(String),
}

impl OutputKind {
    fn of(output: &Output) -> OutputKind {
        match output {
            Output::File(_) => OutputKind::File,
            Output::Stream { path, .. } => OutputKind::Stream(path.display().to_string()),
            Output::Stdout => OutputKind::Stream("stdout".into()),
        }
    }

    fn stopped(&self) -> String {
        match self {
            OutputKind::File => {
                "export stopped; no archive was written (its temporary file is removed)".into()
            }
            OutputKind::Stream(name) => format!(
                "export stopped; the archive written to {name} is cut short (readers report it as truncated)"
            ),
        }
    }
}

fn interrupted(global: &GlobalOpts, output: &Output) -> ExitCode {
    global.interrupts.report(&OutputKind::of(output).stopped())
}

fn is_interrupted(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| matches!(c.downcast_ref(), Some(ExportError::Interrupted)))
}

/// Exports into a stream (stdout, a FIFO, a device), flushed.
async fn export_stream<W: Write + Send + 'static>(
    source: &mut Opened,
    writer: WriterOptions,
    sealing: Sealing<'_>,
    out: W,
    progress: &dyn crate::progress::Progress,
    stop: &Stop,
) -> anyhow::Result<Read> {
    let out = sealing.wrap(out)?;
    let (out, read) = export_any(source, writer, out, progress, stop).await?;
    finish_output(out)?.flush()?;
    Ok(read)
}

/// A reader that closes the pipe of an archive (`| head -c N`) got a
/// truncated archive: unlike a report cut short, that is a failure.
fn stream_outcome<T>(result: anyhow::Result<T>, name: &str) -> anyhow::Result<T> {
    result.map_err(|e| {
        if is_broken_pipe(&e) {
            anyhow::anyhow!(
                "writing the archive to {name}: the reader closed the pipe before the archive \
                 was complete, so what it read is a truncated archive"
            )
        } else {
            e.context(format!("writing the archive to {name}"))
        }
    })
}

/// What an export did, for its report.
struct Done {
    summary: ExportSummary,
    left_out: LeftOut,
    /// How the snapshot read went (`--method rdb`); `None` for a SCAN
    /// read.
    snapshot: Option<SnapshotRead>,
    written: u64,
}

fn report(
    args: &ExportArgs,
    conn: &RedisConn,
    info: &crate::net::redis::ServerInfo,
    done: &Done,
    to_stdout: bool,
    global: &GlobalOpts,
) -> anyhow::Result<()> {
    let value = summary_json(args, conn, info, done);
    if global.json {
        if to_stdout {
            eprintln!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            print_json(&value)?;
        }
        return Ok(());
    }
    let text = summary_text(args, conn, info, done);
    if global.quiet {
        Ok(())
    } else if to_stdout {
        eprint!("{text}");
        Ok(())
    } else {
        print_text(&text)
    }
}

/// Keys exported per group, from the tallies.
fn group_keys(summary: &ExportSummary, group: Group) -> u64 {
    let tallies = summary.tallies.iter();
    tallies
        .filter(|((kb, c), _)| Group::of(kb, *c) == group)
        .map(|(_, t)| t.keys)
        .sum()
}

fn groups_json(summary: &ExportSummary) -> serde_json::Value {
    let kb_ids = summary
        .windows
        .iter()
        .filter(|w| !w.kb_id.is_empty())
        .count();
    let kato: serde_json::Map<_, _> = summary
        .tallies
        .iter()
        .filter(|((kb, c), _)| Group::of(kb, *c) == Group::Kato)
        .map(|((_, c), t)| (c.to_string(), json!(t.keys)))
        .collect();
    json!({
        "kb": {"kb_ids": kb_ids, "keys": group_keys(summary, Group::Kb)},
        "kato": {"keys": group_keys(summary, Group::Kato), "categories": kato},
        "foreign": {"keys": group_keys(summary, Group::Foreign)},
    })
}

fn summary_json(
    args: &ExportArgs,
    conn: &RedisConn,
    info: &crate::net::redis::ServerInfo,
    done: &Done,
) -> serde_json::Value {
    let (summary, written) = (&done.summary, done.written);
    let kbs: Vec<_> = summary
        .windows
        .iter()
        .map(|w| {
            let categories: serde_json::Map<_, _> = summary
                .tallies
                .iter()
                .filter(|((kb, _), _)| *kb == w.kb_id)
                .map(|((_, cat), t)| (cat.to_string(), json!({"keys": t.keys, "bytes": t.bytes})))
                .collect();
            json!({
                "kb_id": display_bytes(&w.kb_id),
                // The window of the keys outside kb_ids has an empty kb_id.
                "outside_kb_ids": w.kb_id.is_empty(),
                "keys": w.keys,
                "vanished": w.vanished,
                "duplicates": w.duplicates,
                "scan_started_ms": w.scan_started_ms,
                "scan_finished_ms": w.scan_finished_ms,
                "categories": categories,
            })
        })
        .collect();
    json!({
        "output": args.output,
        "archive_bytes": written,
        "source": {"address": conn.address(), "product": info.product, "version": info.version},
        "keys": summary.keys,
        "payload_bytes": summary.payload_bytes,
        "vanished": summary.vanished,
        "duplicates": summary.duplicates,
        "method": if done.snapshot.is_some() { "rdb" } else { "scan" },
        // One instant only for one server: a cluster's are in `shards`.
        "snapshot_at_ms": done.snapshot.as_ref().filter(|_| !conn.is_cluster()).map(|s| s.at_ms),
        "expired_in_snapshot": done.snapshot.as_ref().map(|s| s.expired),
        "shards": done.snapshot.as_ref().filter(|_| conn.is_cluster()).map(|s| {
            s.shards.iter().map(|shard| json!({
                "master": shard.address,
                "snapshot_at_ms": shard.snapshot_at_ms,
                "keys_read": shard.keys_read,
                "expired": shard.expired,
            })).collect::<Vec<_>>()
        }),
        // Of a cluster read with SCAN: the keys read from each master.
        "per_master": summary.per_master,
        "kbs": kbs,
        "groups": groups_json(summary),
        "left_out": done.left_out,
    })
}

/// What the export's keys are the state of: one instant, one per shard,
/// or each key's own.
fn point_in_time(snapshot: Option<&SnapshotRead>, cluster: bool) -> String {
    let Some(snapshot) = snapshot else {
        return "read key by key with SCAN: each key as it was at some moment of its kb_id's \
                SCAN window\n"
            .into();
    };
    let expired = match snapshot.expired {
        0 => String::new(),
        n => format!("; {n} keys in it had already expired and are left out"),
    };
    if !cluster {
        return format!(
            "point-in-time: the server's snapshot of {}{expired}\n",
            iso_ms(snapshot.at_ms)
        );
    }
    let last = snapshot.shards.iter().map(|s| s.snapshot_at_ms).max();
    let spread = last.unwrap_or(snapshot.at_ms) - snapshot.at_ms;
    let mut out = format!(
        "point-in-time per shard: each master's snapshot, taken within {spread} ms of each \
         other; not one instant across shards{expired}\n"
    );
    for shard in &snapshot.shards {
        out += &format!(
            "  {:<24} snapshot of {}, {} keys read\n",
            shard.address,
            iso_ms(shard.snapshot_at_ms),
            shard.keys_read
        );
    }
    out
}

fn summary_text(
    args: &ExportArgs,
    conn: &RedisConn,
    info: &crate::net::redis::ServerInfo,
    done: &Done,
) -> String {
    let (summary, written) = (&done.summary, done.written);
    let mut out = format!(
        "exported {} keys ({} of payload) from {} ({} {}) to {}{}\n",
        summary.keys,
        human_bytes(summary.payload_bytes),
        conn.address(),
        info.product,
        info.version,
        if matches!(args.output.as_str(), "-" | "/dev/stdout") {
            "stdout"
        } else {
            &args.output
        },
        if written > 0 {
            format!(" ({})", human_bytes(written))
        } else {
            String::new()
        },
    );
    out += &point_in_time(done.snapshot.as_ref(), conn.is_cluster());
    for (master, keys) in &summary.per_master {
        out += &format!("  {master:<24} {keys} keys read\n");
    }
    out.push_str(&format!(
        "{:<24} {:<12} {:>10} {:>12}\n",
        "kb_id", "category", "keys", "bytes"
    ));
    for ((kb, cat), t) in &summary.tallies {
        out.push_str(&format!(
            "{:<24} {:<12} {:>10} {:>12}\n",
            place_label(kb, *cat),
            cat,
            t.keys,
            t.bytes
        ));
    }
    if summary.vanished > 0 || summary.duplicates > 0 {
        out.push_str(&format!(
            "{} keys vanished between SCAN and DUMP (deleted, expired or evicted); {} repeated SCAN results dropped\n",
            summary.vanished, summary.duplicates
        ));
    }
    out += &format!(
        "groups: {} keys of {} kb_ids, {} KATO global keys, {} foreign keys\n",
        group_keys(summary, Group::Kb),
        summary
            .windows
            .iter()
            .filter(|w| !w.kb_id.is_empty())
            .count(),
        group_keys(summary, Group::Kato),
        group_keys(summary, Group::Foreign)
    );
    let narrowed = !args.select.matches.is_empty();
    match (done.left_out.describe(), narrowed) {
        (Some(line), false) => out += &format!("{line}\n"),
        (Some(line), true) => out += &format!("{line}; and the keys --match skips\n"),
        (None, true) => out += "left out: the keys --match skips\n",
        (None, false) => out += "left out: nothing (every key of the db is in the archive)\n",
    }
    if let Some(line) = done.left_out.describe_temporary() {
        out += &format!("{line}\n");
    }
    out
}

/// `export --from FILE`: a physical backup converted into an archive.
async fn convert_file(
    args: &ExportArgs,
    from: &str,
    sealing: Sealing<'_>,
    global: &GlobalOpts,
) -> anyhow::Result<ExitCode> {
    let input = ArchiveInput::parse(from)
        .with_keys(global.keys.clone())
        .salvaging(args.db.salvage);
    let source = open_archive(&input, args.db.db)?;
    if !source.is_physical() {
        anyhow::bail!(
            "{}: not a physical backup: `export --from` converts RDB files (dump.rdb) and AOFs \
             (appendonlydir, appendonly.aof); \
             this is already a kbdump archive",
            input.name()
        );
    }
    let mut header = source.header().clone();
    header.selection = selection_spec(&args.select);
    let output = Output::open(&args.output, args.force)?;
    let to_stdout = matches!(output, Output::Stdout);
    let writer = WriterOptions {
        level: args.level,
        ..Default::default()
    };
    let progress = key_progress(global);
    let stop = global.interrupts.stop();
    let kind = OutputKind::of(&output);
    let sel = selection(&args.select);
    let progress = progress.as_ref();
    let converted = match output {
        Output::File(file) => {
            let out = sealing.wrap(file)?;
            match convert(source, header, sel, writer, out, progress, &stop).await {
                Ok((out, converted)) => {
                    let file = finish_output(out)?;
                    file.commit()?;
                    Ok(converted)
                }
                Err(e) => Err(anyhow::Error::from(e)),
            }
        }
        stream => {
            let out: Box<dyn Write + Send> = match stream {
                Output::Stream { file, .. } => Box::new(file),
                _ => Box::new(std::io::stdout()),
            };
            let out = sealing.wrap(out)?;
            let run = convert(source, header, sel, writer, out, progress, &stop);
            flushed(run.await)
        }
    };
    let converted = match converted {
        Err(e) if is_interrupted(&e) => return Ok(global.interrupts.report(&kind.stopped())),
        converted => converted?,
    };
    report_conversion(&input.name(), args, &converted, to_stdout, global)
}

/// An archive written into a stream (stdout, a FIFO, a device).
type StreamOut = BufWriter<MaybeSealed<Box<dyn Write + Send>>>;

fn flushed(result: Result<(StreamOut, Converted), ExportError>) -> anyhow::Result<Converted> {
    let (out, converted) = result?;
    finish_output(out)?.flush()?;
    Ok(converted)
}

fn report_conversion(
    from: &str,
    args: &ExportArgs,
    converted: &Converted,
    to_stdout: bool,
    global: &GlobalOpts,
) -> anyhow::Result<ExitCode> {
    for d in &converted.damaged {
        eprintln!("kbdump: {from}: damaged: {}: {}", d.what, d.reason);
    }
    if !converted.unfiled.is_empty() {
        let first = display_bytes(&converted.unfiled[0]);
        eprintln!(
            "kbdump: warning: {from}: {} key(s) left out that the archive could not file under their group, e.g. {first}",
            converted.unfiled.len()
        );
    }
    let value = json!({
        "from": from, "output": args.output, "db": args.db.db,
        "records": converted.records, "damaged": converted.damaged,
        "unfiled": converted.unfiled.len(),
    });
    let text = format!(
        "converted {} keys of db {} from {from} into {}\n",
        converted.records, args.db.db, args.output
    );
    if global.json {
        if to_stdout {
            eprintln!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            print_json(&value)?;
        }
    } else if !global.quiet {
        if to_stdout {
            eprint!("{text}");
        } else {
            print_text(&text)?;
        }
    }
    Ok(if converted.damaged.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_ERROR)
    })
}
