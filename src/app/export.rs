//! `kbdump export`.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::common::{connect_redis, open_archive, ArchiveInput};
use super::options::{selection, selection_spec};
use super::progress::key_progress;
use super::report::{human_bytes, is_broken_pipe, print_json, print_text};
use super::GlobalOpts;
use crate::cli::ExportArgs;
use crate::flow::export::{convert, export, Converted, ExportError};
use crate::format::archive::WriterOptions;
use crate::kato::display_bytes;
use crate::net::redis::RedisConn;
use crate::sink::file::Output;
use crate::source::live::{ExportOptions, ExportSummary, LiveSource};
use crate::stop::Stop;

pub async fn run(args: ExportArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    if let Some(from) = &args.from {
        return convert_file(&args, from, global).await;
    }
    // Refuse a bad output path before touching the server.
    let output = Output::open(&args.output, args.force)?;
    let to_stdout = matches!(output, Output::Stdout);
    let stop = global.interrupts.stop();
    // A signal while connecting drops the output (and its temporary file).
    let source = tokio::select! {
        source = open_source(&args) => source?,
        () = stop.requested() => return Ok(interrupted(global, &output)),
    };
    if source.kb_ids().is_empty() {
        eprintln!(
            "kbdump: warning: no kb_id on {} matches the selection; the archive will be empty",
            source.conn().address()
        );
    }
    let writer = WriterOptions {
        level: args.level,
        ..Default::default()
    };
    let progress = key_progress(global);
    let kind = OutputKind::of(&output);
    let written = write(&source, writer, output, progress.as_ref(), &stop).await;
    let (summary, written) = match written {
        Err(e) if is_interrupted(&e) => return Ok(global.interrupts.report(&kind.stopped())),
        written => written?,
    };
    let info = source.server_info().cloned().unwrap_or_default();
    let conn = source.conn();
    report(&args, conn, &info, &summary, written, to_stdout, global)?;
    Ok(ExitCode::SUCCESS)
}

async fn open_source(args: &ExportArgs) -> anyhow::Result<LiveSource> {
    let conn = connect_redis(&args.redis).await?;
    let options = ExportOptions {
        selection: selection(&args.select),
        scan_count: args.scan_count,
        ..Default::default()
    };
    let spec = selection_spec(&args.select);
    Ok(LiveSource::open(conn, options, spec).await?)
}

/// Exports into `output`: the summary and the archive's size (0 when not
/// known, for a stream).
async fn write(
    source: &LiveSource,
    writer: WriterOptions,
    output: Output,
    progress: &dyn crate::progress::Progress,
    stop: &Stop,
) -> anyhow::Result<(ExportSummary, u64)> {
    match output {
        Output::File(file) => {
            let out = BufWriter::with_capacity(1 << 20, file);
            let (out, summary) = export(source, writer, out, progress, stop).await?;
            let file = out
                .into_inner()
                .map_err(|e| e.into_error())
                .context("flushing the archive")?;
            let written = std::fs::metadata(file.temp_path())
                .map(|m| m.len())
                .unwrap_or(0);
            file.commit()?;
            Ok((summary, written))
        }
        Output::Stream { file, path } => {
            let name = path.display().to_string();
            let streamed = export_stream(source, writer, file, progress, stop).await;
            Ok((stream_outcome(streamed, &name)?, 0))
        }
        Output::Stdout => {
            let streamed = export_stream(source, writer, std::io::stdout(), progress, stop).await;
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
    source: &LiveSource,
    writer: WriterOptions,
    out: W,
    progress: &dyn crate::progress::Progress,
    stop: &Stop,
) -> anyhow::Result<ExportSummary> {
    let out = BufWriter::with_capacity(1 << 20, out);
    let (mut out, summary) = export(source, writer, out, progress, stop).await?;
    out.flush()?;
    Ok(summary)
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

fn report(
    args: &ExportArgs,
    conn: &RedisConn,
    info: &crate::net::redis::ServerInfo,
    summary: &ExportSummary,
    written: u64,
    to_stdout: bool,
    global: &GlobalOpts,
) -> anyhow::Result<()> {
    let value = summary_json(args, conn, info, summary, written);
    if global.json {
        if to_stdout {
            eprintln!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            print_json(&value)?;
        }
        return Ok(());
    }
    let text = summary_text(args, conn, info, summary, written);
    if global.quiet {
        Ok(())
    } else if to_stdout {
        eprint!("{text}");
        Ok(())
    } else {
        print_text(&text)
    }
}

fn summary_json(
    args: &ExportArgs,
    conn: &RedisConn,
    info: &crate::net::redis::ServerInfo,
    summary: &ExportSummary,
    written: u64,
) -> serde_json::Value {
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
        "kbs": kbs,
    })
}

fn summary_text(
    args: &ExportArgs,
    conn: &RedisConn,
    info: &crate::net::redis::ServerInfo,
    summary: &ExportSummary,
    written: u64,
) -> String {
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
    out.push_str(&format!(
        "{:<24} {:<12} {:>10} {:>12}\n",
        "kb_id", "category", "keys", "bytes"
    ));
    for ((kb, cat), t) in &summary.tallies {
        out.push_str(&format!(
            "{:<24} {:<12} {:>10} {:>12}\n",
            display_bytes(kb),
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
    out
}

/// `export --from FILE`: a physical backup converted into an archive.
async fn convert_file(
    args: &ExportArgs,
    from: &str,
    global: &GlobalOpts,
) -> anyhow::Result<ExitCode> {
    let input = ArchiveInput::parse(from);
    let source = open_archive(&input, args.db.db)?;
    if !source.is_rdb() {
        anyhow::bail!(
            "{}: not a physical backup: `export --from` converts RDB files (dump.rdb); \
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
            let out = BufWriter::with_capacity(1 << 20, file);
            match convert(source, header, sel, writer, out, progress, &stop).await {
                Ok((out, converted)) => {
                    let file = out
                        .into_inner()
                        .map_err(|e| e.into_error())
                        .context("flushing the archive")?;
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
            let run = convert(
                source,
                header,
                sel,
                writer,
                BufWriter::new(out),
                progress,
                &stop,
            );
            flushed(run.await)
        }
    };
    let converted = match converted {
        Err(e) if is_interrupted(&e) => return Ok(global.interrupts.report(&kind.stopped())),
        converted => converted?,
    };
    report_conversion(&input.name(), args, &converted, to_stdout, global)
}

fn flushed(
    result: Result<(BufWriter<Box<dyn Write + Send>>, Converted), ExportError>,
) -> anyhow::Result<Converted> {
    let (mut out, converted) = result?;
    out.flush()?;
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
            "kbdump: warning: {from}: {} key(s) of no kb_id left out (an archive files keys by kb_id), e.g. {first}",
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
