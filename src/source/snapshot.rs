//! A live server's snapshot, taken from its replication stream, as a
//! record source: one instant of the whole db, read as the server streams
//! it.
//!
//! [`SnapshotSource::open`] learns the server (INFO) and asks it for a
//! snapshot ([`crate::net::replication`]); a refusal there (an ACL without
//! `+sync`, a managed service, a renamed command) is
//! [`SnapshotOpenError::is_refusal`], and the caller may read the server
//! with SCAN instead. [`SnapshotSource::run`] then moves the bytes through
//! three stages joined by bounded channels, so memory stays flat apart
//! from the largest value:
//!
//! 1. the transfer (async) reads the socket in chunks;
//! 2. the RDB reader (a blocking thread) turns the chunks into records of
//!    the selected db, classified and selected by [`RdbSource`] exactly as
//!    a file is (the same attribution rule as a SCAN pass), dropping keys
//!    already expired at the snapshot's instant, and counting every key by
//!    group;
//! 3. the forwarder (async) paces the records (`--max-keys-per-sec`,
//!    `--max-bytes-per-sec`: the server pushes, so pacing the reading
//!    lets its output buffer for this replica grow), tallies them and
//!    hands them to the sink.
//!
//! The kb_ids are known only at the end of the stream, so a key without a
//! category marker whose owner a later key may still reveal (a foreign key
//! such as `cache:user:42` when every key is selected) is held with its
//! value until the end, as for any RDB stream ([`RdbSource`]); KATO's
//! keys carry markers and are never held. With `--kb` named literally,
//! only keys that may belong to those kb_ids are held.
//!
//! The kb_ids that exist are known only at the end of the snapshot, so a
//! `--kb` that names none fails then ([`SourceError::Selection`]), before
//! the archive is complete; so does a transfer that breaks off midway
//! ([`SourceError::Snapshot`]).

use std::collections::BTreeMap;
use std::io::{self, Read};

use tokio::sync::mpsc::{self, Receiver, Sender};

use super::live::{reads_outside, ExportOptions, ExportSummary, Tally};
use super::rdb::RdbSource;
use super::SourceError;
use crate::format::archive::{Header, KbWindow, SelectionSpec};
use crate::format::dump::Product;
use crate::kato::attribute::KeyspaceCensus;
use crate::net::redis::{raw_target, Endpoint, RedisConn, RedisIoError, ServerInfo};
use crate::net::replication::{request_snapshot, Framing, ReplicationError, Transfer};
use crate::progress::Progress;
use crate::records::SourceItem;
use crate::selection::{LeftOut, Selection};

/// Why a server's snapshot cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotOpenError {
    #[error(transparent)]
    Redis(#[from] RedisIoError),
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    /// This connection cannot carry the replication stream.
    #[error("the snapshot connection to {address} speaks plain TCP only, and this URL {reason}")]
    Unsupported { address: String, reason: String },
}

impl SnapshotOpenError {
    /// Whether nothing of a snapshot was sent because the server (or the
    /// connection) does not allow one: reading with SCAN is then sound.
    pub fn is_refusal(&self) -> bool {
        match self {
            SnapshotOpenError::Replication(e) => e.is_refusal(),
            SnapshotOpenError::Unsupported { .. } => true,
            SnapshotOpenError::Redis(_) => false,
        }
    }
}

/// What a read of a snapshot yielded: the same summary as a SCAN read
/// (no key vanishes or repeats in a snapshot), what the selection left
/// out of the db, and the keys dropped as already expired.
#[derive(Debug, Clone, Default)]
pub struct SnapshotSummary {
    pub summary: ExportSummary,
    pub left_out: LeftOut,
    pub expired: u64,
    /// Unix ms of the snapshot (as in the header).
    pub snapshot_at_ms: i64,
}

/// A server whose snapshot is on its way, opened for a selection.
pub struct SnapshotSource {
    conn: RedisConn,
    transfer: Option<Transfer>,
    info: ServerInfo,
    header: Header,
    options: ExportOptions,
    snapshot_at_ms: i64,
}

/// Chunks of the transfer in flight to the RDB reader (each up to 256
/// KiB).
const CHUNKS_IN_FLIGHT: usize = 8;
/// Records in flight from the RDB reader to the forwarder (few: the
/// sink's channel holds the many).
const RECORDS_IN_FLIGHT: usize = 64;
/// Records per progress report.
const PROGRESS_EVERY: u64 = 1024;

impl SnapshotSource {
    /// Learns the server (INFO) on `conn` and asks `endpoint` for a
    /// snapshot; returns once the server has started sending it.
    /// `waiting` is called once when the server takes more than a moment
    /// to start (a diskless transfer waits `repl-diskless-sync-delay`).
    pub async fn open(
        mut conn: RedisConn,
        endpoint: &Endpoint,
        options: ExportOptions,
        spec: SelectionSpec,
        waiting: &(dyn Fn() + Send + Sync),
    ) -> Result<SnapshotSource, SnapshotOpenError> {
        let info = options.pace.patience.server_info(&mut conn).await?;
        let mut target =
            raw_target(endpoint)?.map_err(|reason| SnapshotOpenError::Unsupported {
                address: conn.address().to_string(),
                reason,
            })?;
        if info.product() == Product::Valkey {
            target.announce_version = Some(info.version.clone());
        }
        let asked_ms = options.clock.now_ms();
        let transfer = request_snapshot(&target, waiting).await?;
        // A diskless transfer starts as the server forks; a snapshot saved
        // to disk first was forked as the server received SYNC.
        let snapshot_at_ms = match transfer.framing() {
            Framing::EndMark(_) => options.clock.now_ms(),
            Framing::Length(_) => asked_ms,
        };
        let mut header = Header::new(
            conn.source_info(&info, "redis-server"),
            spec,
            snapshot_at_ms,
        );
        header.snapshot_at_ms = Some(snapshot_at_ms);
        Ok(SnapshotSource {
            conn,
            transfer: Some(transfer),
            info,
            header,
            options,
            snapshot_at_ms,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn server_info(&self) -> &ServerInfo {
        &self.info
    }

    pub fn conn(&self) -> &RedisConn {
        &self.conn
    }

    /// Reads the snapshot into `tx` (see the module docs); once only.
    pub async fn run(
        &mut self,
        tx: &Sender<SourceItem>,
        progress: &dyn Progress,
    ) -> Result<SnapshotSummary, SourceError> {
        let transfer = self
            .transfer
            .take()
            .ok_or(SourceError::TaskGone("snapshot (read twice)"))?;
        let address = transfer.address().to_string();
        let (chunks_tx, chunks_rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let (items_tx, items_rx) = mpsc::channel(RECORDS_IN_FLIGHT);
        let reading = Reading {
            address: address.clone(),
            db: u64::try_from(self.conn.db()).unwrap_or(0),
            end_mark: match transfer.framing() {
                Framing::EndMark(mark) => Some(mark.clone()),
                Framing::Length(_) => None,
            },
            expired_at_ms: self.snapshot_at_ms,
            selection: self.options.selection.clone(),
        };
        let parse = tokio::task::spawn_blocking(move || reading.run(chunks_rx, items_tx));
        let forwarding = forward(items_rx, tx, &self.options, progress);
        let work = async move {
            let forwarded = forwarding.await;
            let parsed = parse.await;
            (forwarded, parsed)
        };
        let pumping = pump(transfer, chunks_tx);
        tokio::pin!(work, pumping);
        let (forwarded, parsed) = tokio::select! {
            done = &mut work => done,
            () = &mut pumping => work.await,
        };
        let parsed = parsed.map_err(|_| SourceError::TaskGone("snapshot reader"))?;
        let (parsed, mut summary) = match (parsed, forwarded) {
            // A broken transfer is the cause of whatever the forwarder saw.
            (Err(e @ SourceError::Snapshot { .. }), _) => return Err(e),
            (_, Err(e)) | (Err(e), _) => return Err(e),
            (Ok(parsed), Ok(summary)) => (parsed, summary),
        };
        let selection = &self.options.selection;
        let place = format!("Redis at {} (db {})", address, self.conn.db());
        selection.check_kbs(&parsed.census.kb_ids(), &place)?;
        summary.windows = self.windows(&parsed.census, &summary);
        for window in &summary.windows {
            send(tx, SourceItem::KbDone(window.clone())).await?;
        }
        Ok(SnapshotSummary {
            left_out: selection.left_out(&parsed.census),
            summary,
            expired: parsed.expired,
            snapshot_at_ms: self.snapshot_at_ms,
        })
    }

    /// One window per selected kb_id (and one with an empty kb_id for the
    /// keys outside kb_ids, when selected), all at the snapshot's instant.
    fn windows(&self, census: &KeyspaceCensus, summary: &ExportSummary) -> Vec<KbWindow> {
        let selection = &self.options.selection;
        let mut kbs = selection.selected_kbs(&census.kb_ids());
        if reads_outside(selection) {
            kbs.push(Vec::new());
        }
        kbs.into_iter()
            .map(|kb_id| KbWindow {
                keys: summary
                    .tallies
                    .iter()
                    .filter(|((kb, _), _)| *kb == kb_id)
                    .map(|(_, t)| t.keys)
                    .sum(),
                kb_id,
                scan_started_ms: self.snapshot_at_ms,
                scan_finished_ms: self.snapshot_at_ms,
                vanished: 0,
                duplicates: 0,
            })
            .collect()
    }
}

async fn send(tx: &Sender<SourceItem>, item: SourceItem) -> Result<(), SourceError> {
    tx.send(item).await.map_err(|_| SourceError::ConsumerGone)
}

/// Moves the transfer's bytes to the RDB reader until the transfer ends
/// (a `$<len>` one), fails (the failure goes to the reader, which says
/// where the RDB broke off), or the reader stops taking them.
async fn pump(mut transfer: Transfer, chunks: Sender<io::Result<Vec<u8>>>) {
    loop {
        let next = match transfer.next_chunk().await {
            Ok(Some(chunk)) => Ok(chunk),
            Ok(None) => return,
            Err(ReplicationError::Lost {
                received, source, ..
            }) => Err(io::Error::new(
                source.kind(),
                format!("the connection broke off after {received} bytes: {source}"),
            )),
            Err(e) => Err(io::Error::other(e.to_string())),
        };
        let failed = next.is_err();
        if chunks.send(next).await.is_err() || failed {
            return;
        }
    }
}

/// The chunks of a transfer as one [`Read`] (on a blocking thread).
struct Chunks {
    rx: Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
}

impl Read for Chunks {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => (self.current, self.at) = (chunk, 0),
                Some(Err(e)) => return Err(e),
                // The transfer ended (or was dropped): the RDB reader says
                // whether that was at the end of the RDB.
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// What the RDB reader stage needs.
struct Reading {
    address: String,
    db: u64,
    end_mark: Option<Vec<u8>>,
    expired_at_ms: i64,
    selection: Selection,
}

/// What the RDB reader stage found besides the records.
struct Parsed {
    census: KeyspaceCensus,
    expired: u64,
}

impl Reading {
    fn broken(&self, reason: String) -> SourceError {
        SourceError::Snapshot {
            address: self.address.clone(),
            reason,
        }
    }

    /// Reads the RDB from `chunks`, sending the selected records to
    /// `items`.
    fn run(
        self,
        chunks: Receiver<io::Result<Vec<u8>>>,
        items: Sender<SourceItem>,
    ) -> Result<Parsed, SourceError> {
        let input = Chunks {
            rx: chunks,
            current: Vec::new(),
            at: 0,
        };
        let name = format!("snapshot of {}", self.address);
        let source = RdbSource::open(name, Box::new(input), Some(self.db))
            .map_err(|e| self.broken(e.to_string()))?
            .counting()
            .dropping_expired_at(self.expired_at_ms);
        let source = match &self.end_mark {
            Some(mark) => source.ending_with_mark(mark.clone()),
            None => source,
        };
        let mut consumer_gone = false;
        let end = source.read(&self.selection, &mut |item| match item {
            // Said once, from the end, below.
            SourceItem::Damaged { .. } => false,
            item => {
                consumer_gone = items.blocking_send(item).is_err();
                !consumer_gone
            }
        });
        if let Some(reason) = end.error {
            return Err(self.broken(reason));
        }
        if consumer_gone {
            return Err(SourceError::ConsumerGone);
        }
        match (end.checksum, end.census) {
            (Some(_), Some(census)) => Ok(Parsed {
                census,
                expired: end.expired,
            }),
            _ => Err(self.broken("the transfer ended before the end of the RDB".into())),
        }
    }
}

/// Paces, tallies and forwards the records of the RDB reader.
async fn forward(
    mut items: Receiver<SourceItem>,
    tx: &Sender<SourceItem>,
    options: &ExportOptions,
    progress: &dyn Progress,
) -> Result<ExportSummary, SourceError> {
    let mut pacer = options.pace.pacer(&options.clock);
    let paced = pacer.is_limited();
    let mut summary = ExportSummary::default();
    let mut tallies: BTreeMap<_, Tally> = BTreeMap::new();
    let (mut keys, mut bytes) = (0u64, 0u64);
    while let Some(item) = items.recv().await {
        if let SourceItem::Record(r) = &item {
            let size = r.payload.len() as u64;
            if paced {
                pacer.before_read(1).await;
                pacer.after_read(1, size);
            }
            let tally = tallies.entry((r.kb_id.clone(), r.category)).or_default();
            tally.keys += 1;
            tally.bytes += size;
            summary.keys += 1;
            summary.payload_bytes += size;
            keys += 1;
            bytes += size;
            if keys == PROGRESS_EVERY {
                progress.advance(keys, bytes);
                (keys, bytes) = (0, 0);
            }
        }
        send(tx, item).await?;
    }
    progress.advance(keys, bytes);
    summary.tallies = tallies;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_read_as_one_stream_and_pass_errors_on() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(b"ab".to_vec())).unwrap();
        tx.try_send(Ok(Vec::new())).unwrap();
        tx.try_send(Ok(b"cde".to_vec())).unwrap();
        tx.try_send(Err(io::Error::other("gone"))).unwrap();
        let mut chunks = Chunks {
            rx,
            current: Vec::new(),
            at: 0,
        };
        let mut buf = [0u8; 4];
        let mut got = Vec::new();
        loop {
            match chunks.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => {
                    assert_eq!(e.to_string(), "gone");
                    break;
                }
            }
        }
        assert_eq!(got, b"abcde");
        drop(tx);
        assert_eq!(chunks.read(&mut buf).unwrap(), 0, "a closed transfer ends");
    }
}
