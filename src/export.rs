//! Export: SCAN the selected kb_ids of a live server, DUMP + PTTL each key in
//! pipelined batches, and stream the records into an archive.
//!
//! A SCAN export is not a point-in-time snapshot: each key is read at some
//! instant between the start and the end of its kb_id's SCAN, and the archive
//! records that window per kb_id.

use std::collections::BTreeMap;
use std::io::Write;

use futures::stream::{FuturesOrdered, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc::{self, Sender};

use crate::archive::{self, ArchiveWriter, Header, KbWindow, Record, WriterOptions};
use crate::fingerprint::KeyFingerprints;
use crate::kato::{self, Category};
use crate::progress::Progress;
use crate::redis_io::{Dumped, RedisConn, RedisIoError};
use crate::selection::{kb_scan_pattern, Selection};

/// How an export runs.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub selection: Selection,
    /// SCAN COUNT hint.
    pub scan_count: usize,
    /// DUMP pipelines in flight at once.
    pub pipelines_in_flight: usize,
    pub writer: WriterOptions,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            selection: Selection::default(),
            scan_count: 1000,
            pipelines_in_flight: 4,
            writer: WriterOptions::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Redis(#[from] RedisIoError),
    #[error("writing the archive failed: {0}")]
    Archive(#[from] archive::Error),
    #[error("an export task stopped unexpectedly")]
    WriterGone,
}

/// Keys and payload bytes of one kb_id and category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub keys: u64,
    pub bytes: u64,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExportSummary {
    #[serde(skip)]
    pub tallies: BTreeMap<(Vec<u8>, Category), Tally>,
    #[serde(skip)]
    pub windows: Vec<KbWindow>,
    pub keys: u64,
    pub payload_bytes: u64,
    pub vanished: u64,
    pub duplicates: u64,
}

/// What an export produces, in order: records, and the end of each kb_id.
#[derive(Debug)]
pub enum ExportEvent {
    Record(Record),
    FinishKb(KbWindow),
}

/// Exports the selection from `conn` into an archive written to `out`.
/// `kb_ids` are the concrete kb_ids to scan (see [`resolve_kbs`]).
pub async fn export<W: Write + Send + 'static>(
    conn: &RedisConn,
    kb_ids: &[Vec<u8>],
    header: Header,
    options: &ExportOptions,
    out: W,
    progress: &dyn Progress,
) -> Result<(W, ExportSummary), ExportError> {
    // The bounded channel is the backpressure that keeps memory flat; the
    // writer (zstd, file I/O) runs on its own blocking thread.
    let (tx, mut rx) = mpsc::channel::<ExportEvent>(4096);
    let writer_options = options.writer;
    let writer = tokio::task::spawn_blocking(move || -> archive::Result<W> {
        let mut writer = ArchiveWriter::new(out, &header, writer_options)?;
        while let Some(message) = rx.blocking_recv() {
            match message {
                ExportEvent::Record(record) => writer.push(&record)?,
                ExportEvent::FinishKb(window) => writer.finish_kb(window)?,
            }
        }
        Ok(writer.finish()?.0)
    });
    let mut summary = ExportSummary::default();
    let scanned = scan_all(conn, kb_ids, options, &tx, &mut summary, progress).await;
    drop(tx);
    let written = writer.await.map_err(|_| ExportError::WriterGone)?;
    progress.finish();
    match (scanned, written) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) => Err(e.into()),
        (Ok(()), Ok(out)) => Ok((out, summary)),
    }
}

/// Scans and dumps the kb_ids, sending every record and the end of each
/// kb_id to `tx` (an archive writer, or a restore for `copy`).
pub async fn scan_all(
    conn: &RedisConn,
    kb_ids: &[Vec<u8>],
    options: &ExportOptions,
    tx: &Sender<ExportEvent>,
    summary: &mut ExportSummary,
    progress: &dyn Progress,
) -> Result<(), ExportError> {
    for kb_id in kb_ids {
        progress.stage(&kato::display_bytes(kb_id));
        let window = export_kb(conn, kb_id, kb_ids, options, tx, summary, progress).await?;
        summary.vanished += window.vanished;
        summary.duplicates += window.duplicates;
        summary.windows.push(window.clone());
        send(tx, ExportEvent::FinishKb(window)).await?;
    }
    Ok(())
}

async fn send(tx: &Sender<ExportEvent>, message: ExportEvent) -> Result<(), ExportError> {
    tx.send(message).await.map_err(|_| ExportError::WriterGone)
}

async fn export_kb(
    conn: &RedisConn,
    kb_id: &[u8],
    all_kbs: &[Vec<u8>],
    options: &ExportOptions,
    tx: &Sender<ExportEvent>,
    summary: &mut ExportSummary,
    progress: &dyn Progress,
) -> Result<KbWindow, ExportError> {
    let mut window = KbWindow {
        kb_id: kb_id.to_vec(),
        scan_started_ms: now_ms(),
        ..KbWindow::default()
    };
    let pattern = kb_scan_pattern(kb_id);
    let mut scanner = conn.clone();
    let mut seen = KeyFingerprints::default();
    let mut in_flight = FuturesOrdered::new();
    let mut cursor = Some(0u64);
    loop {
        while let Some(at) = cursor.filter(|_| in_flight.len() < options.pipelines_in_flight) {
            let (next, keys) = scanner.scan_page(at, &pattern, options.scan_count).await?;
            cursor = (next != 0).then_some(next);
            let batch = select_keys(
                keys,
                kb_id,
                all_kbs,
                &options.selection,
                &mut seen,
                &mut window,
            );
            if !batch.is_empty() {
                progress.scanned(batch.len() as u64);
                let mut dumper = conn.clone();
                // Spawned so that pipelines progress while the next page is
                // scanned; results are consumed in SCAN order.
                in_flight.push_back(tokio::spawn(async move {
                    let keys: Vec<Vec<u8>> = batch.iter().map(|(k, _)| k.clone()).collect();
                    let dumped = dumper.dump_keys(&keys).await;
                    (batch, dumped, now_ms())
                }));
            }
        }
        let Some(joined) = in_flight.next().await else {
            break;
        };
        let (batch, dumped, read_at) = joined.map_err(|_| ExportError::WriterGone)?;
        let dumped = dumped?;
        emit_batch(
            kb_id,
            batch,
            dumped,
            read_at,
            tx,
            summary,
            &mut window,
            progress,
        )
        .await?;
    }
    window.scan_finished_ms = now_ms();
    Ok(window)
}

/// Filters a SCAN page down to new, selected keys of this kb_id.
fn select_keys(
    keys: Vec<Vec<u8>>,
    kb_id: &[u8],
    all_kbs: &[Vec<u8>],
    selection: &Selection,
    seen: &mut KeyFingerprints,
    window: &mut KbWindow,
) -> Vec<(Vec<u8>, Category)> {
    keys.into_iter()
        .filter_map(|key| {
            // `kb:*` also matches keys of a longer kb_id such as `kb:x`; the
            // classifier decides whom a key belongs to.
            let classified = kato::classify_with(&key, all_kbs)?;
            if classified.kb_id != kb_id || !selection.selects(kb_id, classified.category, &key) {
                return None;
            }
            let category = classified.category;
            if !seen.insert(&key) {
                window.duplicates += 1;
                return None;
            }
            Some((key, category))
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn emit_batch(
    kb_id: &[u8],
    batch: Vec<(Vec<u8>, Category)>,
    dumped: Vec<Dumped>,
    read_at_ms: i64,
    tx: &Sender<ExportEvent>,
    summary: &mut ExportSummary,
    window: &mut KbWindow,
    progress: &dyn Progress,
) -> Result<(), ExportError> {
    let (mut keys, mut bytes) = (0, 0);
    for ((key, category), dumped) in batch.into_iter().zip(dumped) {
        let Dumped::Present { payload, pttl_ms } = dumped else {
            window.vanished += 1;
            continue;
        };
        let tally = summary
            .tallies
            .entry((kb_id.to_vec(), category))
            .or_default();
        tally.keys += 1;
        tally.bytes += payload.len() as u64;
        keys += 1;
        bytes += payload.len() as u64;
        let record = Record {
            key,
            kb_id: kb_id.to_vec(),
            category,
            redis_type: payload_type_name(&payload).to_string(),
            expire_at_ms: pttl_ms.map(|ms| read_at_ms + ms),
            payload,
        };
        send(tx, ExportEvent::Record(record)).await?;
    }
    window.keys += keys;
    summary.keys += keys;
    summary.payload_bytes += bytes;
    progress.advance(keys, bytes);
    Ok(())
}

/// The Redis type of a DUMP payload, from its type byte and trailer version.
pub fn payload_type_name(payload: &[u8]) -> &'static str {
    crate::dump::parse_envelope(payload)
        .ok()
        .and_then(|e| crate::dump::redis_type(e.type_byte, e.rdb_version))
        .map_or("unknown", |t| t.name())
}

/// The concrete kb_ids a selection names on this server: literal ids as
/// given, globs (or nothing = all) resolved by a discovery SCAN.
pub async fn resolve_kbs(
    conn: &mut RedisConn,
    selection: &Selection,
) -> Result<Vec<Vec<u8>>, RedisIoError> {
    if let Some(literal) = selection.literal_kbs() {
        return Ok(literal);
    }
    let pattern: Vec<u8> = match selection.kbs.as_slice() {
        [only] => [only.as_bytes(), b":*"].concat(),
        _ => b"*".to_vec(),
    };
    let census = conn.discover_kbs(&pattern).await?;
    Ok(census
        .kbs
        .into_keys()
        .filter(|kb| selection.kb_selected(kb))
        .collect())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
