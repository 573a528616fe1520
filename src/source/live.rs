//! A live server as a record source: SCAN the selected kb_ids, DUMP + PTTL
//! each key in pipelined batches, and yield the records in SCAN order with
//! the end of each kb_id ([`SourceItem::KbDone`]).
//!
//! A SCAN read is not a point-in-time snapshot: each key is read at some
//! instant between the start and the end of its kb_id's SCAN, and the
//! window is recorded per kb_id.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use futures::stream::{FuturesOrdered, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc::{self, Sender};

use super::{RecordStream, SourceError};
use crate::clock::Clock;
use crate::fingerprint::KeyFingerprints;
use crate::format::archive::{Header, KbWindow, Record, SelectionSpec};
use crate::format::dump::payload_type_name;
use crate::kato::attribute::{Attributed, Attributor, KbCensus};
use crate::kato::{self, Category};
use crate::net::pace::{Pace, Pacer};
use crate::net::redis::{Dumped, RedisConn, RedisIoError, ServerInfo};
use crate::progress::{NoProgress, Progress, Total};
use crate::records::SourceItem;
use crate::selection::{kb_scan_pattern, Selection};

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
}

/// A live server, opened for a selection: the concrete kb_ids to read and
/// the provenance header of what it yields.
pub struct LiveSource {
    conn: RedisConn,
    kb_ids: Vec<Vec<u8>>,
    header: Header,
    options: ExportOptions,
    progress: Arc<dyn Progress>,
    info: Option<ServerInfo>,
    /// How many keys the discovery census counted in the selection.
    estimate: Option<Total>,
}

impl LiveSource {
    /// Learns the server (INFO) and resolves the selection's kb_ids (a
    /// discovery SCAN unless every `--kb` is literal). `spec` is the
    /// selection as the user gave it, for the header.
    pub async fn open(
        mut conn: RedisConn,
        options: ExportOptions,
        spec: SelectionSpec,
    ) -> Result<LiveSource, RedisIoError> {
        let patience = &options.pace.patience;
        let info = patience.server_info(&mut conn).await?;
        let mut waiting = patience.waiting("SCAN");
        let (kb_ids, estimate) = loop {
            match discover(&mut conn, &options.selection).await {
                Err(e) => waiting.pause(e).await?,
                Ok(found) => break waiting.done(found),
            }
        };
        let header = Header::new(
            conn.source_info(&info, "redis-server"),
            spec,
            options.clock.now_ms(),
        );
        let mut source = LiveSource::new(conn, kb_ids, header, options);
        source.info = Some(info);
        source.estimate = estimate;
        Ok(source)
    }

    /// A source over known kb_ids with a given header.
    pub fn new(
        conn: RedisConn,
        kb_ids: Vec<Vec<u8>>,
        header: Header,
        options: ExportOptions,
    ) -> LiveSource {
        LiveSource {
            conn,
            kb_ids,
            header,
            options,
            progress: Arc::new(NoProgress),
            info: None,
            estimate: None,
        }
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
        scan_all(
            &self.conn,
            &self.kb_ids,
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

/// Scans and dumps the kb_ids, sending every record and the end of each
/// kb_id to `tx` (an archive writer, or a restore for `copy`).
///
/// Every SCAN walks the whole keyspace whatever its MATCH, so several kb_ids
/// are read in one pass when the selection allows it (all kb_ids, or one
/// glob): keys are routed to their kb_id as they come. kb_ids named one by
/// one get a pass each, filtered by the server.
pub async fn scan_all(
    conn: &RedisConn,
    kb_ids: &[Vec<u8>],
    options: &ExportOptions,
    tx: &Sender<SourceItem>,
    summary: &mut ExportSummary,
    progress: &dyn Progress,
) -> Result<(), SourceError> {
    // One pacer for every pass: the limits hold for the whole read.
    let mut pacer = options.pace.pacer(&options.clock);
    for (pattern, pass_kbs) in plan_passes(kb_ids, &options.selection) {
        progress.stage(&pass_label(&pass_kbs));
        let pass = Pass {
            pattern,
            kbs: &pass_kbs,
            all_kbs: kb_ids,
        };
        let reader = Reader {
            conn,
            options,
            pacer: &mut pacer,
        };
        let windows = export_pass(reader, &pass, tx, summary, progress).await?;
        for window in windows.into_values() {
            summary.vanished += window.vanished;
            summary.duplicates += window.duplicates;
            summary.windows.push(window.clone());
            send(tx, SourceItem::KbDone(window)).await?;
        }
    }
    Ok(())
}

/// The SCAN passes for a set of kb_ids: `(MATCH pattern, kb_ids it feeds)`.
fn plan_passes(kb_ids: &[Vec<u8>], selection: &Selection) -> Vec<(Vec<u8>, Vec<Vec<u8>>)> {
    let shared_pattern = match selection.kbs.as_slice() {
        _ if kb_ids.len() < 2 => None,
        [] => Some(b"*".to_vec()),
        [glob] if !glob.is_literal() => Some([glob.as_bytes(), b":*"].concat()),
        _ => None,
    };
    match shared_pattern {
        Some(pattern) => vec![(pattern, kb_ids.to_vec())],
        None => kb_ids
            .iter()
            .map(|kb| (kb_scan_pattern(kb), vec![kb.clone()]))
            .collect(),
    }
}

fn pass_label(kbs: &[Vec<u8>]) -> String {
    match kbs {
        [one] => kato::display_bytes(one),
        many => format!("{} kb_ids", many.len()),
    }
}

async fn send(tx: &Sender<SourceItem>, message: SourceItem) -> Result<(), SourceError> {
    tx.send(message)
        .await
        .map_err(|_| SourceError::ConsumerGone)
}

/// One SCAN pass: its pattern, the kb_ids it exports, and every kb_id of
/// the export (to attribute keys of kb_ids that prefix one another).
struct Pass<'a> {
    pattern: Vec<u8>,
    kbs: &'a [Vec<u8>],
    all_kbs: &'a [Vec<u8>],
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
    pass: &Pass<'_>,
    tx: &Sender<SourceItem>,
    summary: &mut ExportSummary,
    progress: &dyn Progress,
) -> Result<BTreeMap<Vec<u8>, KbWindow>, SourceError> {
    let options = reader.options;
    let now_ms = || options.clock.now_ms();
    let started = now_ms();
    let mut windows: BTreeMap<Vec<u8>, KbWindow> = pass
        .kbs
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
    let mut attributor = Attributor::knowing(pass.all_kbs).wanting(pass.kbs);
    let mut in_flight = FuturesOrdered::new();
    let mut queue = VecDeque::new();
    let mut scan = reader.conn.scan(pass.pattern.clone(), options.scan_count);
    let patience = &options.pace.patience;
    loop {
        while in_flight.len() < reader.pipelines() && !(queue.is_empty() && scan.is_done()) {
            if queue.is_empty() {
                let Some(keys) = patience.next_page(&mut scan).await? else {
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
        emit_batch(batch, dumped, read_at, tx, summary, &mut windows, progress).await?;
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
        emit_batch(batch, dumped, read_at, tx, summary, &mut windows, progress).await?;
    }
    let finished = now_ms();
    windows
        .values_mut()
        .for_each(|w| w.scan_finished_ms = finished);
    Ok(windows)
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

async fn emit_batch(
    batch: Vec<Selected>,
    dumped: Vec<Dumped>,
    read_at_ms: i64,
    tx: &Sender<SourceItem>,
    summary: &mut ExportSummary,
    windows: &mut BTreeMap<Vec<u8>, KbWindow>,
    progress: &dyn Progress,
) -> Result<(), SourceError> {
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

/// The concrete kb_ids a selection names on this server: literal ids as
/// given, globs (or nothing = all) resolved by a discovery SCAN.
pub async fn resolve_kbs(
    conn: &mut RedisConn,
    selection: &Selection,
) -> Result<Vec<Vec<u8>>, RedisIoError> {
    Ok(discover(conn, selection).await?.0)
}

/// [`resolve_kbs`], and the census's count of the selected keys when a
/// discovery SCAN ran.
async fn discover(
    conn: &mut RedisConn,
    selection: &Selection,
) -> Result<(Vec<Vec<u8>>, Option<Total>), RedisIoError> {
    if let Some(literal) = selection.literal_kbs() {
        return Ok((literal, None));
    }
    let pattern: Vec<u8> = match selection.kbs.as_slice() {
        [only] => [only.as_bytes(), b":*"].concat(),
        _ => b"*".to_vec(),
    };
    let census = conn.discover_kbs(&pattern).await?;
    let total = census_total(&census, selection);
    let kb_ids = census
        .kbs
        .into_keys()
        .filter(|kb| selection.kb_selected(kb))
        .collect();
    Ok((kb_ids, total))
}

/// The selected keys a census counted: an estimate of a read's size (keys
/// come and go while it runs), and none with `--match`, which a census by
/// kb_id and category cannot apply.
fn census_total(census: &KbCensus, selection: &Selection) -> Option<Total> {
    if !selection.matches.is_empty() {
        return None;
    }
    let keys = census
        .kbs
        .iter()
        .filter(|(kb, _)| selection.kb_selected(kb))
        .flat_map(|(_, categories)| categories.iter())
        .filter(|(category, _)| selection.category_selected(**category))
        .map(|(_, keys)| keys)
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
    use crate::pattern::Glob;

    fn kbs(names: &[&str]) -> Vec<Vec<u8>> {
        names.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    #[test]
    fn all_kbs_or_one_glob_share_one_pass() {
        let all = kbs(&["a", "b", "c"]);
        let passes = plan_passes(&all, &Selection::default());
        assert_eq!(passes, vec![(b"*".to_vec(), all.clone())]);
        let glob = Selection {
            kbs: vec![Glob::new("node*")],
            ..Selection::default()
        };
        assert_eq!(plan_passes(&all, &glob), vec![(b"node*:*".to_vec(), all)]);
    }

    #[test]
    fn the_census_counts_the_selected_kbs_and_categories_only() {
        let mut census = KbCensus::default();
        census.kbs.insert(
            b"a".to_vec(),
            [(Category::Emotives, 3), (Category::Frequency, 5)].into(),
        );
        census
            .kbs
            .insert(b"b".to_vec(), [(Category::Emotives, 7)].into());
        census.unclassified = 100;
        let keys = |s: &Selection| census_total(&census, s).map(|t| t.keys);
        assert_eq!(keys(&Selection::default()), Some(15));
        let emotives_of_a = Selection {
            kbs: vec![Glob::new("a*")],
            categories: vec![Category::Emotives],
            ..Selection::default()
        };
        assert_eq!(keys(&emotives_of_a), Some(3));
        let matching = Selection {
            matches: vec![Glob::new("*:emotives:1*")],
            ..Selection::default()
        };
        assert_eq!(keys(&matching), None, "a census cannot apply --match");
        assert!(census_total(&census, &Selection::default()).is_some_and(|t| t.estimate));
    }

    #[test]
    fn named_kbs_get_a_filtered_pass_each() {
        let named = Selection {
            kbs: vec![Glob::new("a*b"), Glob::new("c")],
            ..Selection::default()
        };
        let passes = plan_passes(&kbs(&["a*b", "c"]), &named);
        let patterns: Vec<_> = passes.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(patterns, vec![b"a\\*b:*".to_vec(), b"c:*".to_vec()]);
        assert_eq!(plan_passes(&kbs(&["x"]), &Selection::default()).len(), 1);
    }
}
