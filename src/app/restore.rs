//! `kbdump restore`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::common::{
    check_archive, check_before_writing, check_read_kbs, check_write_permissions,
    connect_clickhouse, connect_target, open_archive, redis_endpoint, restore_with_undo,
    source_outcome, watch_kbs, ArchiveInput, Existing,
};
use super::options::{check_write_args, restore_options, selection};
use super::progress::known_total;
use super::report::{
    iso_ms, report_interrupted, report_restore_selection, restore_exit_code, undo_stamp,
};
use super::GlobalOpts;
use crate::cli::backup::parse_age;
use crate::cli::RestoreArgs;
use crate::clock::Clock;
use crate::flow::preflight::{dbsize, existing_keys, overlaps, same_origin};
use crate::flow::restore::is_undo_archive;
use crate::kato::attribute::KeyspaceCensus;
use crate::net::mirror::{layout as mirror_layout, mirrored_kb_ids};
use crate::plan::instant;
use crate::selection::Selection;
use crate::sink::redis::{Mode, RestoreOptions, Target};
use crate::source::archive::ArchiveSource;
use crate::source::mirror::MirrorSource;
use crate::source::Source;

pub async fn run(args: RestoreArgs, global: &GlobalOpts) -> anyhow::Result<ExitCode> {
    check_write_args(&args.write)?;
    check_mirror_args(&args)?;
    let selection = selection(&args.select);
    let target = connect_target(&redis_endpoint(&args.redis)?).await?;
    // A `--kb` that names nothing in an indexed archive fails here, before
    // any write.
    let (source, input, census) = open_source(&args, &selection, global, true).await?;
    if !args.write.force && !args.write.dry_run {
        // Without an index (a pipe, a cut file) the selection's size is
        // unknown: the running memory budget still applies.
        if let Some(size) = source.selected_size(&selection) {
            target.check_headroom(size.payload_bytes, size.keys)?;
        }
    }
    let total = known_total(source.selected_size(&selection), &selection);
    let mut options = restore_options(&args.write, &target, global.interrupts.stop());
    options.expired_means_absent = source.header().is_some_and(is_undo_archive);
    let checked_up_front = census.is_some() || args.from_clickhouse.is_some();
    check_write_permissions(&target, &options).await?;
    warn_same_origin(&input, &source, &target, &selection, &options);
    let occupied = check_before_writing(&target, &options, args.yes, || {
        count_existing(&args, &selection, &target, &options, global)
    })
    .await?;
    let (items, task) = source.stream(selection.clone()).split();
    let (items, watcher) = watch_kbs(items, &selection, checked_up_front);
    let undo = undo_path(&args, &input);
    let (mut summary, undo) =
        restore_with_undo(&target, items, &options, &undo, total, global).await?;
    summary.rename_targets = occupied;
    if summary.interrupted {
        // The source was not read to its end: its verdict does not count.
        return report_interrupted(
            &summary,
            &options,
            &target,
            undo.as_ref(),
            global,
            "restore",
        );
    }
    source_outcome(task, &input).await?;
    let left_out = census.map(|c| selection.left_out(&c));
    report_restore_selection(
        &summary,
        &options,
        &target,
        undo.as_ref(),
        left_out.as_ref(),
        global,
    )?;
    check_read_kbs(watcher, &input, &selection).await?;
    Ok(restore_exit_code(&summary))
}

/// The mirror's options make sense only with `--from-clickhouse`, and
/// `--as-of` must parse, before anything connects. (clap leaves
/// `requires` unchecked when the file, which conflicts with
/// `--from-clickhouse`, is given.)
fn check_mirror_args(args: &RestoreArgs) -> anyhow::Result<()> {
    if args.from_clickhouse.is_none() {
        if args.as_of.is_some() {
            anyhow::bail!(
                "--as-of reads the history of the ClickHouse mirror and needs --from-clickhouse \
                 URL; an archive holds one instant (restore the archive of the time you want)"
            );
        }
        if args.clickhouse_password_file.is_some() {
            anyhow::bail!(
                "--clickhouse-password-file is for --from-clickhouse URL, which is not given"
            );
        }
    }
    if let Some(text) = &args.as_of {
        as_of(text)?;
    }
    Ok(())
}

/// `--as-of TIME` as unix ms.
fn as_of(text: &str) -> anyhow::Result<u64> {
    let at = instant::parse(text, parse_age).map_err(|e| anyhow::anyhow!("--as-of: {e}"))?;
    Ok(at.resolve(Clock::system().now_ms()).max(0) as u64)
}

/// The archive (a file, stdin) or the ClickHouse mirror the records come
/// from, the input to name in messages, and what an indexed archive holds
/// by group (its `--kb`s checked against it); `warn`: say so when the
/// archive is cut short.
async fn open_source(
    args: &RestoreArgs,
    selection: &Selection,
    global: &GlobalOpts,
    warn: bool,
) -> anyhow::Result<(Source, ArchiveInput, Option<KeyspaceCensus>)> {
    if let Some(url) = &args.from_clickhouse {
        let at_ms = args.as_of.as_deref().map(as_of).transpose()?;
        let ch = connect_clickhouse(url, args.clickhouse_password_file.as_deref()).await?;
        if !selection.kbs.is_empty() {
            let place = format!("the ClickHouse mirror at {}", ch.target());
            let layout = mirror_layout(&ch).await?;
            selection.check_kbs(&mirrored_kb_ids(&ch, layout).await?, &place)?;
        }
        let mirror = MirrorSource::open(ch, selection.clone(), at_ms).await?;
        return Ok((
            Source::Mirror(Box::new(mirror)),
            ArchiveInput::stdin(),
            None,
        ));
    }
    let input = ArchiveInput::parse(args.file.as_deref().unwrap_or("-"))
        .with_keys(global.keys.clone())
        .salvaging(args.db.salvage);
    // The second read of a file (to count) does not warn again.
    let archive = if warn {
        open_archive(&input, args.db.db)?
    } else {
        ArchiveSource::open_db(&input, Some(args.db.db))?
    };
    let census = check_archive(&archive, &input, selection)?;
    Ok((Source::Archive(archive), input, census))
}

/// The default undo path: beside the input archive, or in the current
/// directory for stdin and ClickHouse.
fn undo_path(args: &RestoreArgs, input: &ArchiveInput) -> PathBuf {
    if let Some(path) = &args.undo {
        return path.clone();
    }
    let stamp = undo_stamp();
    match input.file_path() {
        Some(p) => PathBuf::from(format!("{}.undo-{stamp}.kbd", p.display())),
        None => PathBuf::from(format!("restore.undo-{stamp}.kbd")),
    }
}

/// Whether the source can be read a second time: not a pipe.
fn rereadable(args: &RestoreArgs) -> bool {
    args.from_clickhouse.is_some() || args.file.as_deref().is_some_and(|f| f != "-")
}

/// The selected keys the target already holds: a dry run over a second
/// read of the source, or the target's key count for a pipe.
async fn count_existing(
    args: &RestoreArgs,
    selection: &Selection,
    target: &Target,
    options: &RestoreOptions,
    global: &GlobalOpts,
) -> anyhow::Result<Existing> {
    if !rereadable(args) {
        return Ok(Existing::AtMost(dbsize(&target.conn).await?));
    }
    let (again, input, _) = open_source(args, selection, global, false).await?;
    let (items, task) = again.stream(selection.clone()).split();
    let existing = existing_keys(target, items, options).await?;
    source_outcome(task, &input).await?;
    Ok(Existing::Counted(existing))
}

/// Replace mode into the server and db an archive came from, taking keys
/// back under their own kb_id, rolls them back to the archived values:
/// say so before writing.
fn warn_same_origin(
    input: &ArchiveInput,
    source: &Source,
    target: &Target,
    selection: &Selection,
    options: &RestoreOptions,
) {
    let Some(header) = source.header() else {
        return;
    };
    if options.mode != Mode::Replace || options.dry_run || !same_origin(header, &target.conn) {
        return;
    }
    let overlap = match input.file_path() {
        Some(_) => ArchiveSource::open(input)
            .ok()
            .and_then(|archive| archive.overview().ok())
            .is_none_or(|o| overlaps(o.blocks.iter().map(|(_, b)| b), selection, &options.renames)),
        None => options.renames.is_empty(),
    };
    if overlap {
        eprintln!(
            "kbdump: warning: {} was exported from {} db {} at {}, the server and db it now \
             overwrites: every selected key changed since then goes back to its archived value",
            input.name(),
            header.source.address,
            header.source.db,
            iso_ms(header.created_at_ms)
        );
    }
}
