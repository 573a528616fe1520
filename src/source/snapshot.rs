//! A live server's snapshot, taken from its replication stream, as a
//! record source: one instant of the whole db, read as the server streams
//! it; of a cluster, every master's snapshot, each one instant of its
//! shard.
//!
//! [`SnapshotSource::open`] learns the server (INFO) and asks it for a
//! snapshot ([`crate::net::replication`]); on a cluster it asks every
//! master at once, so that their instants are close, and checks that the
//! slot map did not move meanwhile. A refusal there (an ACL without
//! `+sync`, a managed service, a renamed command, slots on the move) is
//! [`SnapshotOpenError::is_refusal`], and the caller may read the server
//! with SCAN instead. [`SnapshotSource::run`] then moves the bytes through
//! stages joined by bounded channels, so memory stays flat apart from the
//! largest value:
//!
//! 1. per transfer, the pump (async) reads the socket in chunks;
//! 2. per transfer, the RDB reader (a blocking thread) decodes the keys of
//!    the selected db ([`RdbSource::decode`]), dropping keys already
//!    expired at its snapshot's instant, and sends them in batches;
//! 3. the attribution stage (a blocking thread) takes the keys of every
//!    transfer through one [`KeyStage`]: classified and selected exactly
//!    as a file is (the same attribution rule as a SCAN pass), every key
//!    counted by group, so that a kb_id one master's key proves attributes
//!    the keys of the others;
//! 4. the forwarder (async) paces the records (`--max-keys-per-sec`,
//!    `--max-bytes-per-sec`: the server pushes, so pacing the reading
//!    lets its output buffer for this replica grow), tallies them and
//!    hands them to the sink.
//!
//! A transfer that breaks off stops the others: the archive would be
//! incomplete ([`SourceError::Snapshot`]).
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
//! the archive is complete.

use std::collections::BTreeMap;
use std::io::{self, Read};

use tokio::sync::mpsc::{self, Receiver, Sender};

use super::live::{reads_outside, ExportOptions, ExportSummary, Tally};
use super::rdb::{Decoded, KeyStage, RdbSource};
use super::SourceError;
use crate::format::archive::{Header, KbWindow, SelectionSpec, ShardSnapshot};
use crate::format::dump::Product;
use crate::format::rdb::KeyRecord;
use crate::kato::attribute::KeyspaceCensus;
use crate::net::cluster::Topology;
use crate::net::redis::{
    raw_target, raw_targets_at, Endpoint, RedisConn, RedisIoError, ServerInfo,
};
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
    #[error(
        "the snapshot connection to {address} is TCP (plain or TLS) only, and this URL {reason}"
    )]
    Unsupported { address: String, reason: String },
    /// The slot map of a cluster moved while its masters' snapshots were
    /// being started: a key that moved between two of them could be in
    /// neither.
    #[error(
        "the slot map of the cluster {address} changed while its masters' snapshots were \
         being started ({slots} slots moved or were migrating, slot {first} first): the \
         snapshots could miss a key that moved between two of them; rerun once the cluster \
         is stable, or read with SCAN (--method scan), which reads moved slots again"
    )]
    Unsettled {
        address: String,
        slots: usize,
        first: u16,
    },
}

impl SnapshotOpenError {
    /// Whether nothing of a snapshot was sent because the server (or the
    /// connection) does not allow one: reading with SCAN is then sound.
    pub fn is_refusal(&self) -> bool {
        match self {
            SnapshotOpenError::Replication(e) => e.is_refusal(),
            // Nothing was read yet, and SCAN reads moved slots again.
            SnapshotOpenError::Unsupported { .. } | SnapshotOpenError::Unsettled { .. } => true,
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
    /// Unix ms of the snapshot (as in the header); of a cluster, the
    /// earliest of its masters'.
    pub snapshot_at_ms: i64,
    /// Each snapshot read: one for a server, one per master of a cluster.
    pub shards: Vec<ShardRead>,
}

/// What one server's (or master's) snapshot held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardRead {
    /// `host:port`.
    pub address: String,
    pub snapshot_at_ms: i64,
    /// Keys of the db read from it, selected or not.
    pub keys_read: u64,
    /// Keys it held already expired, left out.
    pub expired: u64,
}

/// A server whose snapshot is on its way, opened for a selection; for a
/// cluster, every master's, all started before any is read.
pub struct SnapshotSource {
    conn: RedisConn,
    shards: Vec<Shard>,
    info: ServerInfo,
    header: Header,
    options: ExportOptions,
}

/// One snapshot on its way.
struct Shard {
    transfer: Option<Transfer>,
    snapshot_at_ms: i64,
}

/// Chunks of a transfer in flight to its RDB reader (each up to 256 KiB).
const CHUNKS_IN_FLIGHT: usize = 8;
/// Batches of keys in flight from the RDB readers to the attribution
/// stage, and the most keys and payload bytes in one batch.
const BATCHES_IN_FLIGHT: usize = 8;
const BATCH_KEYS: usize = 256;
const BATCH_BYTES: usize = 1 << 20;
/// Records in flight from the attribution stage to the forwarder (few:
/// the sink's channel holds the many).
const RECORDS_IN_FLIGHT: usize = 64;
/// Records per progress report.
const PROGRESS_EVERY: u64 = 1024;
/// The most masters whose snapshots are read at once: each holds a fork
/// on its server and a few MiB here while it streams.
pub const MAX_SHARDS: usize = 64;

impl SnapshotSource {
    /// Learns the server (INFO) on `conn` and asks `endpoint` for a
    /// snapshot; returns once the server has started sending it. On a
    /// cluster, asks every master at once, and returns once all have
    /// started and the slot map is seen not to have changed meanwhile
    /// (else the snapshots could miss a key that moved between two of
    /// them: [`SnapshotOpenError::Unsettled`]).
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
        let before = conn.cluster_topology().await?;
        let unsupported = |reason| SnapshotOpenError::Unsupported {
            address: conn.address().to_string(),
            reason,
        };
        let mut targets = match &before {
            Some(topology) => raw_targets_at(endpoint, &topology.map.masters())?,
            None => raw_target(endpoint)?.map(|t| vec![t]),
        }
        .map_err(unsupported)?;
        if targets.len() > MAX_SHARDS {
            return Err(unsupported(format!(
                "has {} masters, more than the {MAX_SHARDS} whose snapshots are read at once",
                targets.len()
            )));
        }
        if info.product() == Product::Valkey {
            for target in &mut targets {
                target.announce_version = Some(info.version.clone());
            }
        }
        let said = std::sync::Once::new();
        let waiting_once = || said.call_once(waiting);
        let asked_ms = options.clock.now_ms();
        // Each transfer's instant is read as it starts, not once all have.
        let requests = targets.iter().map(|target| async {
            let transfer = request_snapshot(target, &waiting_once).await?;
            // A diskless transfer starts as the server forks; a snapshot
            // saved to disk first was forked as the server received SYNC.
            let snapshot_at_ms = match transfer.framing() {
                Framing::EndMark(_) => options.clock.now_ms(),
                Framing::Length(_) => asked_ms,
            };
            Ok::<_, ReplicationError>(Shard {
                transfer: Some(transfer),
                snapshot_at_ms,
            })
        });
        let shards = futures::future::try_join_all(requests).await?;
        if let Some(before) = &before {
            settled(&conn, before).await?;
        }
        let earliest = shards.iter().map(|s| s.snapshot_at_ms).min();
        let mut header = Header::new(
            conn.source_info(&info, "redis-server"),
            spec,
            earliest.unwrap_or(asked_ms),
        );
        if before.is_some() {
            header.shards = shards
                .iter()
                .zip(&targets)
                .map(|(shard, target)| ShardSnapshot {
                    master: target.address.clone(),
                    snapshot_at_ms: shard.snapshot_at_ms,
                })
                .collect();
        } else {
            header.snapshot_at_ms = earliest;
        }
        Ok(SnapshotSource {
            conn,
            shards,
            info,
            header,
            options,
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

    /// Reads the snapshots into `tx` (see the module docs); once only.
    pub async fn run(
        &mut self,
        tx: &Sender<SourceItem>,
        progress: &dyn Progress,
    ) -> Result<SnapshotSummary, SourceError> {
        let (keys_tx, keys_rx) = mpsc::channel(BATCHES_IN_FLIGHT);
        let (items_tx, items_rx) = mpsc::channel(RECORDS_IN_FLIGHT);
        let db = u64::try_from(self.conn.db()).unwrap_or(0);
        let mut pumps = Vec::with_capacity(self.shards.len());
        let mut readers = Vec::with_capacity(self.shards.len());
        for shard in &mut self.shards {
            let transfer = shard
                .transfer
                .take()
                .ok_or(SourceError::TaskGone("snapshot (read twice)"))?;
            let (chunks_tx, chunks_rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
            let reading = Reading {
                address: transfer.address().to_string(),
                db,
                end_mark: match transfer.framing() {
                    Framing::EndMark(mark) => Some(mark.clone()),
                    Framing::Length(_) => None,
                },
                expired_at_ms: shard.snapshot_at_ms,
            };
            let keys = keys_tx.clone();
            readers.push(tokio::task::spawn_blocking(move || {
                reading.run(chunks_rx, keys)
            }));
            pumps.push(tokio::spawn(pump(transfer, chunks_tx)));
        }
        drop(keys_tx);
        let selection = self.options.selection.clone();
        let attribution =
            tokio::task::spawn_blocking(move || attribute(keys_rx, items_tx, &selection));
        let reading = async {
            let read = futures::future::try_join_all(readers.into_iter().map(|r| async {
                r.await
                    .map_err(|_| SourceError::TaskGone("snapshot reader"))?
            }))
            .await;
            // One transfer broke: the others need not be read to the end.
            if read.is_err() {
                pumps.iter().for_each(|p| p.abort());
            }
            read
        };
        let attributing = async {
            attribution
                .await
                .map_err(|_| SourceError::TaskGone("snapshot attribution"))?
        };
        let forwarding = forward(items_rx, tx, &self.options, progress);
        let (read, census, forwarded) = tokio::join!(reading, attributing, forwarding);
        pumps.iter().for_each(|p| p.abort());
        // A broken transfer is the cause of whatever the later stages saw.
        let (shards, census, mut summary) = (read?, census?, forwarded?);
        let selection = &self.options.selection;
        let place = format!("Redis at {} (db {})", self.conn.address(), self.conn.db());
        selection.check_kbs(&census.kb_ids(), &place)?;
        let span = self.span();
        summary.windows = windows(selection, &census, &summary, span);
        for window in &summary.windows {
            send(tx, SourceItem::KbDone(window.clone())).await?;
        }
        Ok(SnapshotSummary {
            left_out: selection.left_out(&census),
            summary,
            expired: shards.iter().map(|s| s.expired).sum(),
            snapshot_at_ms: span.0,
            shards,
        })
    }

    /// The earliest and the latest instant of the snapshots.
    fn span(&self) -> (i64, i64) {
        let at = self.shards.iter().map(|s| s.snapshot_at_ms);
        (
            at.clone().min().unwrap_or_default(),
            at.max().unwrap_or_default(),
        )
    }
}

/// Fails when the slot map or the migrations of the cluster differ from
/// `before` (see [`SnapshotSource::open`]).
async fn settled(conn: &RedisConn, before: &Topology) -> Result<(), SnapshotOpenError> {
    let after = conn.cluster_topology().await?.unwrap_or_default();
    let unsettled = after.unsettled_slots(before);
    match unsettled.first() {
        None => Ok(()),
        Some((first, _)) => Err(SnapshotOpenError::Unsettled {
            address: conn.address().to_string(),
            slots: unsettled.len(),
            first: *first,
        }),
    }
}

/// One window per selected kb_id (and one with an empty kb_id for the
/// keys outside kb_ids, when selected), from the earliest to the latest
/// snapshot (one instant for one server).
fn windows(
    selection: &Selection,
    census: &KeyspaceCensus,
    summary: &ExportSummary,
    (first, last): (i64, i64),
) -> Vec<KbWindow> {
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
            scan_started_ms: first,
            scan_finished_ms: last,
            vanished: 0,
            duplicates: 0,
        })
        .collect()
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

/// What one transfer's RDB reader needs.
struct Reading {
    address: String,
    db: u64,
    end_mark: Option<Vec<u8>>,
    expired_at_ms: i64,
}

impl Reading {
    fn broken(&self, reason: String) -> SourceError {
        SourceError::Snapshot {
            address: self.address.clone(),
            reason,
        }
    }

    /// Reads the RDB from `chunks`, sending the keys of the db, in
    /// batches, to `keys`.
    fn run(
        self,
        chunks: Receiver<io::Result<Vec<u8>>>,
        keys: Sender<Vec<KeyRecord>>,
    ) -> Result<ShardRead, SourceError> {
        let input = Chunks {
            rx: chunks,
            current: Vec::new(),
            at: 0,
        };
        let name = format!("snapshot of {}", self.address);
        let source = RdbSource::open(name, Box::new(input), Some(self.db))
            .map_err(|e| self.broken(e.to_string()))?
            .dropping_expired_at(self.expired_at_ms);
        let source = match &self.end_mark {
            Some(mark) => source.ending_with_mark(mark.clone()),
            None => source,
        };
        let mut batch = Batch::default();
        let mut consumer_gone = false;
        let end = source.decode(&mut |decoded| match decoded {
            Decoded::Key(k) => {
                if batch.add(k) {
                    consumer_gone = keys.blocking_send(batch.take()).is_err();
                }
                !consumer_gone
            }
            // Said once, from the end, below.
            Decoded::Damaged(_) => true,
        });
        if let Some(reason) = end.error {
            return Err(self.broken(reason));
        }
        if !consumer_gone && !batch.keys.is_empty() {
            consumer_gone = keys.blocking_send(batch.take()).is_err();
        }
        if consumer_gone {
            return Err(SourceError::ConsumerGone);
        }
        if end.checksum.is_none() {
            return Err(self.broken("the transfer ended before the end of the RDB".into()));
        }
        Ok(ShardRead {
            address: self.address,
            snapshot_at_ms: self.expired_at_ms,
            keys_read: end.keys_read,
            expired: end.expired,
        })
    }
}

/// Keys on their way from an RDB reader to the attribution stage.
#[derive(Default)]
struct Batch {
    keys: Vec<KeyRecord>,
    bytes: usize,
}

impl Batch {
    /// Adds a key; true when the batch is full.
    fn add(&mut self, key: KeyRecord) -> bool {
        self.bytes += key.payload.len() + key.key.len();
        self.keys.push(key);
        self.keys.len() >= BATCH_KEYS || self.bytes >= BATCH_BYTES
    }

    fn take(&mut self) -> Vec<KeyRecord> {
        self.bytes = 0;
        std::mem::take(&mut self.keys)
    }
}

/// The attribution stage: the keys of every transfer through one
/// [`KeyStage`], so that a kb_id one master's key proves attributes the
/// keys of the others; the selected records go to `items`. Returns the
/// census of every key once every reader is done.
fn attribute(
    mut keys: Receiver<Vec<KeyRecord>>,
    items: Sender<SourceItem>,
    selection: &Selection,
) -> Result<KeyspaceCensus, SourceError> {
    let mut stage = KeyStage::new(selection, None, true);
    let mut consumer_gone = false;
    let mut emit = |item| {
        consumer_gone = items.blocking_send(item).is_err();
        !consumer_gone
    };
    while let Some(batch) = keys.blocking_recv() {
        for key in batch {
            if !stage.push(key, &mut emit) {
                return Err(SourceError::ConsumerGone);
            }
        }
    }
    let census = stage.finish(&mut emit);
    if consumer_gone {
        return Err(SourceError::ConsumerGone);
    }
    census.ok_or(SourceError::TaskGone("snapshot census"))
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
