//! A live server as a record source: count every key of the db by group
//! (a census), check the selection against it, SCAN the selected groups,
//! DUMP + PTTL each key in pipelined batches, and yield the records in SCAN
//! order with the end of each kb_id ([`SourceItem::KbDone`]).
//!
//! Keys outside any kb_id (KATO's global keys, foreign keys) are records
//! with an empty kb_id, and their SCAN window is the one with an empty
//! kb_id. kbdump's own temporary keys are never read.
//!
//! A SCAN read is not a point-in-time snapshot: each key is read at some
//! instant between the start and the end of its kb_id's SCAN, and the
//! window is recorded per kb_id.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use futures::stream::{FuturesOrdered, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc::{self, Sender};
use tokio::task::JoinHandle;

use super::{RecordStream, SourceError};
use crate::clock::Clock;
use crate::fingerprint::KeyFingerprints;
use crate::format::archive::{Header, KbWindow, Record, SelectionSpec};
use crate::format::dump::payload_type_name;
use crate::kato::attribute::{Attributed, Attributor, KeyspaceCensus};
use crate::kato::{self, keys, Category};
use crate::net::pace::{Pace, Pacer};
use crate::net::redis::{Dumped, RedisConn, RedisIoError, Scan, ServerInfo};
use crate::pattern::Glob;
use crate::progress::{NoProgress, Progress, Total};
use crate::records::SourceItem;
use crate::selection::{kb_scan_pattern, LeftOut, Selection, UnmatchedKbs};

/// Why a live server cannot be read for a selection.
#[derive(Debug, thiserror::Error)]
pub enum LiveOpenError {
    #[error(transparent)]
    Redis(#[from] RedisIoError),
    #[error(transparent)]
    Selection(#[from] UnmatchedKbs),
}

/// How a live server is read.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub selection: Selection,
    /// SCAN COUNT hint.
    pub scan_count: usize,
    /// DUMP pipelines in flight at once.
    pub pipelines_in_flight: usize,
    /// "Now", to turn each key's PTTL into an absolute expiry and to stamp
    /// the SCAN windows.
    pub clock: Clock,
    /// Read limits, and patience with a server that is loading or busy.
    pub pace: Pace,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            selection: Selection::default(),
            scan_count: 1000,
            pipelines_in_flight: 4,
            clock: Clock::system(),
            pace: Pace::default(),
        }
    }
}

/// Keys and payload bytes of one kb_id and category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub keys: u64,
    pub bytes: u64,
}

/// What a read of a live server yielded.
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
    /// Of a cluster: the keys read from each master (`host:port`), by the
    /// slot map as it was when each key was read.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub per_master: BTreeMap<String, u64>,
}

/// What a selection leaves out of the db, counted while the source is read
/// when the census is not needed before (see [`LiveSource::open`]).
pub type LeftOutTask = JoinHandle<Result<LeftOut, RedisIoError>>;

/// A live server, opened for a selection: the concrete kb_ids to read,
/// whether keys outside kb_ids are read, the census it was checked
/// against, and the provenance header of what it yields.
pub struct LiveSource {
    conn: RedisConn,
    kb_ids: Vec<Vec<u8>>,
    /// Keys outside any kb_id (KATO's global keys, foreign keys) are read.
    outside: bool,
    /// Every kb_id of the db, when counted before the read.
    census: Option<KeyspaceCensus>,
    left_out: Option<LeftOutTask>,
    header: Header,
    options: ExportOptions,
    progress: Arc<dyn Progress>,
    info: Option<ServerInfo>,
    /// How many keys the discovery census counted in the selection.
    estimate: Option<Total>,
}

impl LiveSource {
    /// Learns the server (INFO), checks that every `--kb` names a kb_id
    /// there ([`Selection::check_kbs`]) and resolves the selection. `spec`
    /// is the selection as the user gave it, for the header.
    ///
    /// Every key of the db is counted by group (one SCAN of the key names):
    /// before the read when the selection needs the kb_ids (globs, every
    /// kb_id, keys outside kb_ids); for kb_ids named literally, whose
    /// existence a short probe settles, while the source is read
    /// ([`Self::take_left_out`]), so that the count costs no wall time.
    pub async fn open(
        mut conn: RedisConn,
        options: ExportOptions,
        spec: SelectionSpec,
    ) -> Result<LiveSource, LiveOpenError> {
        let patience = &options.pace.patience;
        let info = patience.server_info(&mut conn).await?;
        let selection = &options.selection;
        let outside = reads_outside(selection);
        let named = match selection.literal_kbs().filter(|_| !outside) {
            Some(literal) => existing_kbs(&conn, literal, selection.allow_empty).await?,
            None => None,
        };
        let (census, kb_ids, left_out) = match named {
            Some(kb_ids) => (None, kb_ids, count_later(&conn, selection)),
            None => {
                let mut waiting = patience.waiting("SCAN");
                let (census, kb_ids) = loop {
                    match census_and_kbs(&mut conn, selection).await {
                        Err(LiveOpenError::Redis(e)) => waiting.pause(e).await?,
                        Err(e) => return Err(e),
                        Ok(found) => break waiting.done(found),
                    }
                };
                let left_out = selection.left_out(&census);
                (
                    Some(census),
                    kb_ids,
                    tokio::spawn(async move { Ok(left_out) }),
                )
            }
        };
        // A census is the estimate of the read's size; kb_ids probed by
        // name have none.
        let estimate = census.as_ref().and_then(|c| census_total(c, selection));
        let header = Header::new(
            conn.source_info(&info, "redis-server"),
            spec,
            options.clock.now_ms(),
        );
        let mut source = LiveSource::new(conn, kb_ids, header, options);
        source.outside = outside;
        source.census = census;
        source.left_out = Some(left_out);
        source.info = Some(info);
        source.estimate = estimate;
        Ok(source)
    }

    /// A source over known kb_ids (and no key outside them) with a given
    /// header.
    pub fn new(
        conn: RedisConn,
        kb_ids: Vec<Vec<u8>>,
        header: Header,
        options: ExportOptions,
    ) -> LiveSource {
        LiveSource {
            conn,
            kb_ids,
            outside: false,
            census: None,
            left_out: None,
            header,
            options,
            progress: Arc::new(NoProgress),
            info: None,
            estimate: None,
        }
    }

    /// What the selection leaves out of the db, by group, from the census
    /// of [`Self::open`] (which may still be counting: await the task).
    pub fn take_left_out(&mut self) -> Option<LeftOutTask> {
        self.left_out.take()
    }

    /// Reports the scan to `progress` when streamed ([`Self::stream`]).
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> LiveSource {
        self.progress = progress;
        self
    }

    /// About how many keys a read will yield, when opening counted them
    /// (a discovery SCAN) and `--match` does not narrow them.
    pub fn estimated_total(&self) -> Option<Total> {
        self.estimate
    }

    /// The kb_ids this source reads.
    pub fn kb_ids(&self) -> &[Vec<u8>] {
        &self.kb_ids
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// What INFO said when the source was opened (see [`Self::open`]).
    pub fn server_info(&self) -> Option<&ServerInfo> {
        self.info.as_ref()
    }

    pub fn conn(&self) -> &RedisConn {
        &self.conn
    }

    /// Reads everything into `tx` on the calling task.
    pub async fn run(
        &self,
        tx: &Sender<SourceItem>,
        progress: &dyn Progress,
    ) -> Result<ExportSummary, SourceError> {
        if let Some(total) = self.estimate {
            progress.total(total);
        }
        let mut summary = ExportSummary::default();
        let known = match &self.census {
            Some(census) => census.kb_ids(),
            None => self.kb_ids.clone(),
        };
        let scope = Scope {
            kb_ids: &self.kb_ids,
            outside: self.outside,
            known: &known,
            complete: self.census.is_some(),
        };
        scan_all(
            &self.conn,
            &scope,
            &self.options,
            tx,
            &mut summary,
            progress,
        )
        .await?;
        Ok(summary)
    }

    /// Reads everything on a task of its own.
    pub fn stream(self) -> RecordStream<ExportSummary> {
        let (tx, rx) = mpsc::channel(CHANNEL_RECORDS);
        let handle = tokio::spawn(async move {
            let progress = self.progress.clone();
            self.run(&tx, progress.as_ref()).await
        });
        RecordStream::named(rx, handle, "live server")
    }
}

/// Records in flight between the scanner and the consumer.
const CHANNEL_RECORDS: usize = 4096;

/// What a read covers: the kb_ids, whether keys outside any kb_id are read,
/// and the kb_ids known on the server for attribution (`complete` when a
/// census just listed all of them, so no key needs holding).
struct Scope<'a> {
    kb_ids: &'a [Vec<u8>],
    outside: bool,
    known: &'a [Vec<u8>],
    complete: bool,
}

/// Scans and dumps the scope, sending every record and the end of each
/// kb_id to `tx` (an archive writer, or a restore for `copy`).
///
/// Every SCAN walks the whole keyspace whatever its MATCH, so several kb_ids
/// are read in one pass when the selection allows it (all kb_ids, or one
/// glob, or keys outside kb_ids too): keys are routed to their kb_id as
/// they come. kb_ids named one by one get a pass each, filtered by the
/// server.
async fn scan_all(
    conn: &RedisConn,
    scope: &Scope<'_>,
    options: &ExportOptions,
    tx: &Sender<SourceItem>,
    summary: &mut ExportSummary,
    progress: &dyn Progress,
) -> Result<(), SourceError> {
    // One pacer for every pass: the limits hold for the whole read.
    let mut pacer = options.pace.pacer(&options.clock);
    for pass in plan_passes(scope.kb_ids, scope.outside, &options.selection) {
        progress.stage(&pass_label(&pass.windows));
        let reader = Reader {
            conn,
            options,
            pacer: &mut pacer,
        };
        let windows = export_pass(reader, &pass, scope, tx, summary, progress).await?;
        for window in windows.into_values() {
            summary.vanished += window.vanished;
            summary.duplicates += window.duplicates;
            summary.windows.push(window.clone());
            send(tx, SourceItem::KbDone(window)).await?;
        }
    }
    Ok(())
}

/// Whether a selection takes any key outside kb_ids (a category of KATO's
/// global keys, or foreign keys).
pub fn reads_outside(selection: &Selection) -> bool {
    Category::of_global()
        .chain([Category::Foreign])
        .any(|c| selection.block_selected(b"", c))
}

/// One SCAN pass: its MATCH patterns, keys read without a SCAN (exact
/// keys that KATO names after a kb_id), and the windows it feeds (kb_ids;
/// an empty one for the keys outside kb_ids).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pass {
    patterns: Vec<Vec<u8>>,
    exact: Vec<Vec<u8>>,
    windows: Vec<Vec<u8>>,
}

/// The SCAN passes for a scope.
fn plan_passes(kb_ids: &[Vec<u8>], outside: bool, selection: &Selection) -> Vec<Pass> {
    let stm = selection.category_selected(Category::Stm);
    if outside {
        let mut windows = kb_ids.to_vec();
        windows.push(Vec::new());
        return vec![Pass {
            patterns: vec![b"*".to_vec()],
            exact: Vec::new(),
            windows,
        }];
    }
    let shared = match selection.kbs.as_slice() {
        _ if kb_ids.len() < 2 => None,
        [] => Some(vec![b"*".to_vec()]),
        [glob] if !glob.is_literal() => Some(glob_patterns(glob, stm)),
        _ => None,
    };
    match shared {
        Some(patterns) => vec![Pass {
            patterns,
            exact: Vec::new(),
            windows: kb_ids.to_vec(),
        }],
        None => kb_ids
            .iter()
            .map(|kb| Pass {
                patterns: vec![kb_scan_pattern(kb)],
                exact: if stm {
                    vec![keys::stm_events(kb)]
                } else {
                    Vec::new()
                },
                windows: vec![kb.clone()],
            })
            .collect(),
    }
}

/// `{glob}:*`, and `stm:events:{glob}` for the kb_ids' STM streams.
fn glob_patterns(glob: &Glob, stm: bool) -> Vec<Vec<u8>> {
    let mut patterns = vec![keys::kb_glob_scan_pattern(glob.as_bytes())];
    if stm {
        patterns.push(keys::stm_glob_scan_pattern(glob.as_bytes()));
    }
    patterns
}

fn pass_label(windows: &[Vec<u8>]) -> String {
    match windows {
        [one] => kato::display_bytes(one),
        many => format!("{} kb_ids", many.iter().filter(|w| !w.is_empty()).count()),
    }
}

async fn send(tx: &Sender<SourceItem>, message: SourceItem) -> Result<(), SourceError> {
    tx.send(message)
        .await
        .map_err(|_| SourceError::ConsumerGone)
}

/// A selected key on its way to DUMP.
type Selected = (Vec<u8>, Vec<u8>, Category);

/// The server a pass reads, how, and at what pace.
struct Reader<'a> {
    conn: &'a RedisConn,
    options: &'a ExportOptions,
    pacer: &'a mut Pacer,
}

impl Reader<'_> {
    /// Pipelines in flight at once: one when paced, so that each charge of
    /// bytes lands before the next pipeline is let through.
    fn pipelines(&self) -> usize {
        match self.pacer.is_limited() {
            true => 1,
            false => self.options.pipelines_in_flight.max(1),
        }
    }

    /// The next pipeline's keys from the front of `queue`, once the pace
    /// lets them through: the one place a read waits for its limits.
    async fn next_batch(&mut self, queue: &mut VecDeque<Selected>) -> Vec<Selected> {
        let n = self
            .pacer
            .batch_keys(queue.len().min(self.options.scan_count.max(1)));
        let batch: Vec<Selected> = queue.drain(..n.min(queue.len())).collect();
        self.pacer.before_read(batch.len()).await;
        batch
    }

    /// DUMP + PTTL of a batch on a task of its own, so that pipelines
    /// progress while the next page is scanned; with the instant read.
    fn spawn_dump(&self, batch: Vec<Selected>) -> tokio::task::JoinHandle<Dumping> {
        let conn = self.conn.clone();
        let clock = self.options.clock.clone();
        let patience = self.options.pace.patience.clone();
        tokio::spawn(async move {
            let keys: Vec<&[u8]> = batch.iter().map(|(k, _, _)| &k[..]).collect();
            let dumped = patience.dump_keys(&conn, &keys).await;
            (batch, dumped, clock.now_ms())
        })
    }

    /// Charges the pace with what a pipeline read.
    fn charge(&mut self, batch: &[Selected], dumped: &[Dumped]) {
        let bytes = dumped
            .iter()
            .map(|d| match d {
                Dumped::Present { payload, .. } => payload.len() as u64,
                Dumped::Vanished => 0,
            })
            .sum();
        self.pacer.after_read(batch.len(), bytes);
    }
}

/// A DUMP pipeline's keys, replies and the instant it was read.
type Dumping = (Vec<Selected>, Result<Vec<Dumped>, RedisIoError>, i64);

async fn export_pass(
    mut reader: Reader<'_>,
    pass: &Pass,
    scope: &Scope<'_>,
    tx: &Sender<SourceItem>,
    summary: &mut ExportSummary,
    progress: &dyn Progress,
) -> Result<BTreeMap<Vec<u8>, KbWindow>, SourceError> {
    let options = reader.options;
    let now_ms = || options.clock.now_ms();
    let started = now_ms();
    let mut windows: BTreeMap<Vec<u8>, KbWindow> = pass
        .windows
        .iter()
        .map(|kb| {
            let window = KbWindow {
                kb_id: kb.clone(),
                scan_started_ms: started,
                ..KbWindow::default()
            };
            (kb.clone(), window)
        })
        .collect();
    let mut seen = KeyFingerprints::default();
    let kbs: Vec<Vec<u8>> = pass
        .windows
        .iter()
        .filter(|w| !w.is_empty())
        .cloned()
        .collect();
    let mut wanted = options.selection.wanted(&kbs);
    let outside = pass.windows.iter().any(Vec::is_empty);
    wanted.kato &= outside;
    wanted.foreign &= outside;
    let mut attributor = Attributor::knowing(scope.known).want(wanted);
    if scope.complete {
        attributor = attributor.complete();
    }
    let mut in_flight = FuturesOrdered::new();
    let mut queue = VecDeque::new();
    let mut pages = Pages::new(reader.conn, pass, options);
    let patience = &options.pace.patience;
    loop {
        while in_flight.len() < reader.pipelines() {
            if queue.is_empty() {
                let Some(keys) = pages.next(patience).await? else {
                    break;
                };
                let batch = select_keys(
                    keys,
                    &mut attributor,
                    &options.selection,
                    &mut seen,
                    &mut windows,
                );
                progress.scanned(batch.len() as u64);
                queue.extend(batch);
                continue;
            }
            let batch = reader.next_batch(&mut queue).await;
            // Results are consumed in SCAN order.
            in_flight.push_back(reader.spawn_dump(batch));
        }
        let Some(joined) = in_flight.next().await else {
            break;
        };
        let (batch, dumped, read_at) =
            joined.map_err(|_| SourceError::TaskGone("DUMP pipeline"))?;
        let dumped = dumped?;
        reader.charge(&batch, &dumped);
        let read = Read {
            batch,
            dumped,
            read_at,
        };
        emit_batch(read, reader.conn, tx, summary, &mut windows, progress).await?;
    }
    let late = resolve_unmarked(attributor, &options.selection, &mut seen, &mut windows);
    progress.scanned(late.len() as u64);
    let mut late = VecDeque::from(late);
    while !late.is_empty() {
        let batch = reader.next_batch(&mut late).await;
        let keys: Vec<&[u8]> = batch.iter().map(|(k, _, _)| &k[..]).collect();
        let dumped = patience.dump_keys(reader.conn, &keys).await?;
        let read_at = now_ms();
        reader.charge(&batch, &dumped);
        let read = Read {
            batch,
            dumped,
            read_at,
        };
        emit_batch(read, reader.conn, tx, summary, &mut windows, progress).await?;
    }
    let finished = now_ms();
    windows
        .values_mut()
        .for_each(|w| w.scan_finished_ms = finished);
    Ok(windows)
}

/// The pages of a pass: each pattern's SCAN in turn, then the exact keys
/// as a page of their own when there are any (one that vanishes before its
/// DUMP is then counted as vanished). Once done, it stays done.
struct Pages<'a> {
    conn: &'a RedisConn,
    scan_count: usize,
    scan: Scan,
    patterns: std::slice::Iter<'a, Vec<u8>>,
    exact: Option<&'a Vec<Vec<u8>>>,
    done: bool,
}

impl<'a> Pages<'a> {
    fn new(conn: &'a RedisConn, pass: &'a Pass, options: &ExportOptions) -> Pages<'a> {
        let mut patterns = pass.patterns.iter();
        let first = patterns.next().cloned().unwrap_or_default();
        Pages {
            conn,
            scan_count: options.scan_count,
            scan: conn.scan(first, options.scan_count),
            patterns,
            exact: Some(&pass.exact).filter(|e| !e.is_empty()),
            done: false,
        }
    }

    /// The next page, waiting out a loading or busy server.
    async fn next(
        &mut self,
        patience: &crate::net::pace::Patience,
    ) -> Result<Option<Vec<Vec<u8>>>, RedisIoError> {
        while !self.done {
            if !self.scan.is_done() {
                if let Some(page) = patience.next_page(&mut self.scan).await? {
                    return Ok(Some(page));
                }
                continue;
            }
            if let Some(pattern) = self.patterns.next() {
                self.scan = self.conn.scan(pattern.clone(), self.scan_count);
                continue;
            }
            self.done = true;
            if let Some(keys) = self.exact.take() {
                return Ok(Some(self.conn.clone().existing(keys).await?));
            }
        }
        Ok(None)
    }
}

/// Filters a SCAN page down to new, selected keys of the pass's kb_ids.
/// `kb:*` also matches keys of a longer kb_id such as `kb:x`: the
/// attributor decides whom a key belongs to, and holds the unmarked keys
/// that a longer kb_id may own until the pass is over.
fn select_keys(
    keys: Vec<Vec<u8>>,
    attributor: &mut Attributor,
    selection: &Selection,
    seen: &mut KeyFingerprints,
    windows: &mut BTreeMap<Vec<u8>, KbWindow>,
) -> Vec<Selected> {
    keys.into_iter()
        .filter_map(|key| attributor.push(key))
        .filter_map(|a| admit(a, selection, seen, windows))
        .collect()
}

/// Attributes the held unmarked keys once the pass knows every kb_id
/// under its prefix, and returns those that are new, selected keys of the
/// pass's kb_ids.
fn resolve_unmarked(
    attributor: Attributor,
    selection: &Selection,
    seen: &mut KeyFingerprints,
    windows: &mut BTreeMap<Vec<u8>, KbWindow>,
) -> Vec<Selected> {
    attributor
        .finish()
        .attributed
        .into_iter()
        .filter_map(|a| admit(a, selection, seen, windows))
        .collect()
}

/// A key of one of the pass's kb_ids, if selected and not seen before.
fn admit(
    attributed: Attributed,
    selection: &Selection,
    seen: &mut KeyFingerprints,
    windows: &mut BTreeMap<Vec<u8>, KbWindow>,
) -> Option<Selected> {
    let Attributed {
        key,
        kb_id,
        category,
    } = attributed;
    let window = windows.get_mut(&kb_id)?;
    if !selection.selects(&kb_id, category, &key) {
        return None;
    }
    if !seen.insert(&key) {
        window.duplicates += 1;
        return None;
    }
    Some((key, kb_id, category))
}

/// A pipeline's keys, their DUMP replies, and the instant they were read.
struct Read {
    batch: Vec<Selected>,
    dumped: Vec<Dumped>,
    read_at: i64,
}

async fn emit_batch(
    read: Read,
    conn: &RedisConn,
    tx: &Sender<SourceItem>,
    summary: &mut ExportSummary,
    windows: &mut BTreeMap<Vec<u8>, KbWindow>,
    progress: &dyn Progress,
) -> Result<(), SourceError> {
    let Read {
        batch,
        dumped,
        read_at: read_at_ms,
    } = read;
    let masters = conn.slot_map();
    let (mut keys, mut bytes) = (0, 0);
    for ((key, kb_id, category), dumped) in batch.into_iter().zip(dumped) {
        let window = windows
            .get_mut(&kb_id)
            .expect("selected keys have a window");
        let Dumped::Present { payload, pttl_ms } = dumped else {
            window.vanished += 1;
            continue;
        };
        window.keys += 1;
        let size = payload.len() as u64;
        let tally = summary
            .tallies
            .entry((kb_id.clone(), category))
            .or_default();
        tally.keys += 1;
        tally.bytes += size;
        keys += 1;
        bytes += size;
        if let Some(map) = &masters {
            map.count_key(&key, &mut summary.per_master);
        }
        let record = Record {
            key,
            kb_id,
            category,
            redis_type: payload_type_name(&payload).to_string(),
            expire_at_ms: pttl_ms.map(|ms| read_at_ms + ms),
            payload,
        };
        send(tx, SourceItem::Record(record)).await?;
    }
    summary.keys += keys;
    summary.payload_bytes += bytes;
    progress.advance(keys, bytes);
    Ok(())
}

/// The kb_ids named literally that exist, sorted, when all do (or
/// `allow_empty`); `None` when one does not: then only a census can say
/// which kb_ids there are, for the error. A kb_id exists when some key is
/// attributed to it ([`kb_has_keys`]).
async fn existing_kbs(
    conn: &RedisConn,
    mut literal: Vec<Vec<u8>>,
    allow_empty: bool,
) -> Result<Option<Vec<Vec<u8>>>, RedisIoError> {
    literal.sort();
    literal.dedup();
    let mut found = Vec::with_capacity(literal.len());
    for kb in literal {
        if kb_has_keys(conn, &kb).await? {
            found.push(kb);
        } else if !allow_empty {
            return Ok(None);
        }
    }
    Ok(Some(found))
}

/// Whether some key belongs to kb_id `kb` (named literally, so it needs no
/// marker): its STM stream, or a key under `{kb}:` that no longer kb_id
/// owns. Stops at the first one.
async fn kb_has_keys(conn: &RedisConn, kb: &[u8]) -> Result<bool, RedisIoError> {
    if !conn
        .clone()
        .existing(&[keys::stm_events(kb)])
        .await?
        .is_empty()
    {
        return Ok(true);
    }
    let mut attributor = Attributor::knowing([kb]).wanting([kb]);
    let mut scan = conn.scan(kb_scan_pattern(kb), 1000);
    while let Some(page) = scan.next_page().await? {
        if page.into_iter().any(|key| attributor.push(key).is_some()) {
            return Ok(true);
        }
    }
    Ok(!attributor.finish().attributed.is_empty())
}

/// Counts the db on a task of its own, for what `selection` leaves out.
fn count_later(conn: &RedisConn, selection: &Selection) -> LeftOutTask {
    let (mut conn, selection) = (conn.clone(), selection.clone());
    let trusted = selection.literal_kbs().unwrap_or_default();
    tokio::spawn(async move { Ok(selection.left_out(&conn.census(&trusted).await?)) })
}

/// Every key of the db by group, and the kb_ids the selection takes
/// there, after checking that every `--kb` names one
/// ([`Selection::check_kbs`]). kb_ids named literally count as kb_ids
/// without a marker, as they always have.
pub async fn census_and_kbs(
    conn: &mut RedisConn,
    selection: &Selection,
) -> Result<(KeyspaceCensus, Vec<Vec<u8>>), LiveOpenError> {
    let literal: Vec<Vec<u8>> = selection
        .kbs
        .iter()
        .filter(|g| g.is_literal())
        .map(|g| g.as_bytes().to_vec())
        .collect();
    let census = conn.census(&literal).await?;
    let place = format!("Redis at {} (db {})", conn.address(), conn.db());
    let existing = census.kb_ids();
    selection.check_kbs(&existing, &place)?;
    let kb_ids = selection.selected_kbs(&existing);
    Ok((census, kb_ids))
}

/// The concrete kb_ids a selection names on this server (see
/// [`census_and_kbs`]).
pub async fn resolve_kbs(
    conn: &mut RedisConn,
    selection: &Selection,
) -> Result<Vec<Vec<u8>>, LiveOpenError> {
    Ok(census_and_kbs(conn, selection).await?.1)
}

/// The selected keys a census counted: an estimate of a read's size (keys
/// come and go while it runs), and none with `--match`, which a census by
/// group and category cannot apply. kbdump's temporary keys are never read.
fn census_total(census: &KeyspaceCensus, selection: &Selection) -> Option<Total> {
    if !selection.matches.is_empty() {
        return None;
    }
    let keys = census
        .cells()
        .into_iter()
        .filter(|(kb, c, _)| selection.block_selected(kb, *c))
        .map(|(_, _, n)| n)
        .sum();
    Some(Total {
        keys,
        bytes: None,
        estimate: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kbs(names: &[&str]) -> Vec<Vec<u8>> {
        names.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    fn naming(globs: &[&str]) -> Selection {
        Selection {
            kbs: globs.iter().map(|g| Glob::new(*g)).collect(),
            ..Selection::default()
        }
    }

    #[test]
    fn the_census_counts_the_selected_kbs_and_categories_only() {
        let mut census = KeyspaceCensus::default();
        census.kbs.insert(
            b"a".to_vec(),
            [(Category::Emotives, 3), (Category::Frequency, 5)].into(),
        );
        census
            .kbs
            .insert(b"b".to_vec(), [(Category::Emotives, 7)].into());
        census.kato.insert(Category::Sessions, 2);
        census.foreign = 100;
        census.temporary = 1000;
        let keys = |s: &Selection| census_total(&census, s).map(|t| t.keys);
        assert_eq!(keys(&Selection::default()), Some(117));
        let emotives_of_a = Selection {
            kbs: vec![Glob::new("a*")],
            categories: vec![Category::Emotives],
            ..Selection::default()
        };
        assert_eq!(keys(&emotives_of_a), Some(3));
        let global = Selection {
            kato: true,
            ..Selection::default()
        };
        assert_eq!(keys(&global), Some(2));
        let matching = Selection {
            matches: vec![Glob::new("*:emotives:1*")],
            ..Selection::default()
        };
        assert_eq!(keys(&matching), None, "a census cannot apply --match");
        assert!(census_total(&census, &Selection::default()).is_some_and(|t| t.estimate));
    }

    #[test]
    fn everything_is_one_pass_over_the_whole_keyspace() {
        let all = kbs(&["a", "b"]);
        let selection = Selection::default();
        assert!(reads_outside(&selection));
        let passes = plan_passes(&all, true, &selection);
        let mut windows = all.clone();
        windows.push(Vec::new());
        assert_eq!(
            passes,
            vec![Pass {
                patterns: vec![b"*".to_vec()],
                exact: vec![],
                windows
            }]
        );
        let global = Selection {
            kato: true,
            ..naming(&["a"])
        };
        assert!(reads_outside(&global));
        assert_eq!(plan_passes(&kbs(&["a"]), true, &global).len(), 1);
    }

    #[test]
    fn all_kbs_or_one_glob_share_one_pass() {
        let all = kbs(&["a", "b", "c"]);
        let emotives = Selection {
            categories: vec![Category::Emotives],
            ..Selection::default()
        };
        assert!(!reads_outside(&emotives));
        let passes = plan_passes(&all, false, &emotives);
        assert_eq!(passes[0].patterns, vec![b"*".to_vec()]);
        assert_eq!(passes[0].windows, all);
        let glob = naming(&["node*"]);
        assert!(!reads_outside(&glob));
        let passes = plan_passes(&all, false, &glob);
        assert_eq!(passes.len(), 1);
        assert_eq!(
            passes[0].patterns,
            vec![b"node*:*".to_vec(), b"stm:events:node*".to_vec()]
        );
    }

    #[test]
    fn named_kbs_get_a_filtered_pass_each_with_their_stm_stream() {
        let named = naming(&["a*b", "c"]);
        let passes = plan_passes(&kbs(&["a*b", "c"]), false, &named);
        let patterns: Vec<_> = passes.iter().map(|p| p.patterns.clone()).collect();
        assert_eq!(
            patterns,
            vec![vec![b"a\\*b:*".to_vec()], vec![b"c:*".to_vec()]]
        );
        assert_eq!(passes[1].exact, vec![b"stm:events:c".to_vec()]);
        let one = naming(&["x"]);
        assert_eq!(plan_passes(&kbs(&["x"]), false, &one).len(), 1);
        let no_stm = Selection {
            categories: vec![Category::Frequency],
            ..naming(&["c"])
        };
        assert!(plan_passes(&kbs(&["c"]), false, &no_stm)[0]
            .exact
            .is_empty());
    }
}
