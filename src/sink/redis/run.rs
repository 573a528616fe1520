//! One restore run: batches formed from the source, a few in flight, their
//! outcomes counted.

use tokio::sync::mpsc::Receiver;
use tokio::task::JoinSet;

use super::write::write_batch;
use super::{
    estimated_memory, renamed, Failure, Outcome, Pending, RestoreError, RestoreOptions,
    RestoreSummary, Results, SourceItem, Target,
};
use crate::format::archive::Record;
use crate::kato::display_bytes;
use crate::net::cluster::SlotMap;
use crate::progress::Progress;
use crate::sink::archive::UndoLog;

/// Restores every record that arrives on `source` into `target`.
/// In replace mode, `undo` gets the previous value of every key of a batch,
/// and the batch is written only once the undo says they are on disk.
pub async fn restore(
    target: &Target,
    mut source: Receiver<SourceItem>,
    options: &RestoreOptions,
    undo: Option<UndoLog>,
    progress: &dyn Progress,
) -> Result<RestoreSummary, RestoreError> {
    if !options.dry_run {
        target.check_writable()?;
    }
    let mut run = Run::new(target, options, undo);
    let fed = run.feed(&mut source, progress).await;
    // Batches in flight finish even when the run failed: their previous
    // values are saved already, and a batch cut off midway could leave
    // temporary keys behind.
    let drained = run.drain(progress).await;
    progress.finish();
    fed.and(drained).map_err(|e| run.counted(e))?;
    Ok(run.summary)
}

/// One restore run: the batch being filled, the batches in flight, and
/// what is known so far.
struct Run<'a> {
    target: &'a Target,
    options: &'a RestoreOptions,
    undo: Option<UndoLog>,
    summary: RestoreSummary,
    running: JoinSet<Result<Results, RestoreError>>,
    batch: Vec<Pending>,
    /// Size of what was handed to the target so far (the memory budget).
    payload_bytes: u64,
    keys: u64,
}

impl<'a> Run<'a> {
    fn new(target: &'a Target, options: &'a RestoreOptions, undo: Option<UndoLog>) -> Self {
        Run {
            target,
            options,
            undo,
            summary: RestoreSummary::default(),
            running: JoinSet::new(),
            batch: Vec::with_capacity(options.batch_keys),
            payload_bytes: 0,
            keys: 0,
        }
    }

    fn max_in_flight(&self) -> usize {
        self.options.in_flight.max(1)
    }

    /// Reads the source to its end, writing full batches as they form;
    /// a stop request ends it early (the batch being filled is dropped:
    /// nothing of it was saved or written).
    async fn feed(
        &mut self,
        source: &mut Receiver<SourceItem>,
        progress: &dyn Progress,
    ) -> Result<(), RestoreError> {
        while let Some(item) = self.next_item(source).await {
            match item {
                SourceItem::Record(record) => {
                    if let Some(pending) = prepare(record, self.options, &mut self.summary) {
                        self.batch.push(pending);
                    }
                }
                SourceItem::Damaged { what, reason } => {
                    self.summary.damaged += 1;
                    self.summary.failures.push(Failure { what, reason })
                }
                SourceItem::KbDone(_) => {}
            }
            if self.batch.len() >= self.options.batch_keys {
                self.send_batch(progress).await?;
            }
        }
        if !self.batch.is_empty() {
            self.send_batch(progress).await?;
        }
        Ok(())
    }

    /// The next item of the source; `None` at its end or once a stop is
    /// requested.
    async fn next_item(&mut self, source: &mut Receiver<SourceItem>) -> Option<SourceItem> {
        let stop = &self.options.stop;
        let item = tokio::select! {
            biased;
            () = stop.requested() => None,
            item = source.recv() => item,
        };
        self.summary.interrupted |= stop.is_requested();
        item.filter(|_| !self.summary.interrupted)
    }

    /// Starts writing the current batch, once a slot is free (unless a
    /// stop was requested meanwhile).
    async fn send_batch(&mut self, progress: &dyn Progress) -> Result<(), RestoreError> {
        while self.running.len() >= self.max_in_flight() {
            self.collect_one(progress).await?;
        }
        if self.options.stop.is_requested() {
            self.summary.interrupted = true;
            self.batch.clear();
            return Ok(());
        }
        let work = std::mem::replace(&mut self.batch, Vec::with_capacity(self.options.batch_keys));
        self.payload_bytes += work.iter().map(|p| p.payload.len() as u64).sum::<u64>();
        self.keys += work.len() as u64;
        let needed = estimated_memory(self.payload_bytes, self.keys);
        check_budget(self.target, self.options, needed, &self.summary)?;
        let (target, options, undo) =
            (self.target.clone(), self.options.clone(), self.undo.clone());
        self.running
            .spawn(async move { write_batch(&target, work, &options, undo.as_ref()).await });
        Ok(())
    }

    /// Waits for one batch in flight and counts its outcomes.
    async fn collect_one(&mut self, progress: &dyn Progress) -> Result<(), RestoreError> {
        let Some(done) = self.running.join_next().await else {
            return Ok(());
        };
        let results = done.map_err(|_| RestoreError::TaskGone)??;
        let masters = self.target.conn.slot_map();
        record_results(&mut self.summary, results, masters.as_ref(), progress);
        watch_evictions(self.target, self.target.info.evicted_keys).await
    }

    /// The run's error with its count of written keys taken after the
    /// batches in flight were awaited, so it says what the server holds.
    fn counted(&self, error: RestoreError) -> RestoreError {
        match error {
            RestoreError::BudgetExceeded {
                address,
                needed,
                headroom,
                policy,
                ..
            } => RestoreError::BudgetExceeded {
                address,
                needed,
                headroom,
                policy,
                written: self.summary.total().restored,
            },
            other => other,
        }
    }

    /// Waits for every batch in flight; the first error wins.
    async fn drain(&mut self, progress: &dyn Progress) -> Result<(), RestoreError> {
        let mut first = Ok(());
        while !self.running.is_empty() {
            let result = self.collect_one(progress).await;
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

/// Stops the run before a batch that would take the target past the
/// memory budget (a dry run writes nothing, so it is never stopped).
fn check_budget(
    target: &Target,
    options: &RestoreOptions,
    needed: u64,
    summary: &RestoreSummary,
) -> Result<(), RestoreError> {
    match options.memory_budget {
        Some(budget) if !options.dry_run && needed > budget => Err(RestoreError::BudgetExceeded {
            address: target.conn.address().to_string(),
            needed,
            headroom: target.headroom(),
            policy: target.info.maxmemory_policy.clone(),
            written: summary.total().restored,
        }),
        _ => Ok(()),
    }
}

fn record_results(
    summary: &mut RestoreSummary,
    results: Results,
    masters: Option<&SlotMap>,
    progress: &dyn Progress,
) {
    let mut done = 0;
    for (kb_id, category, key, outcome) in results {
        let outcome = summary.plan.note(&kb_id, category, &key, outcome);
        let written = matches!(
            outcome,
            Outcome::Restored(_) | Outcome::Lossy(_) | Outcome::Merged | Outcome::Deleted
        );
        if let Some(map) = masters.filter(|_| written) {
            map.count_key(&key, &mut summary.per_master);
        }
        summary
            .tallies
            .entry((kb_id, category))
            .or_default()
            .add(&outcome);
        match outcome {
            Outcome::Failed(reason) => summary.failures.push(Failure {
                what: display_bytes(&key),
                reason,
            }),
            Outcome::Lossy(reason) => summary.warnings.push(Failure {
                what: display_bytes(&key),
                reason,
            }),
            Outcome::Conflict(reason) => summary.conflicts.push(Failure {
                what: display_bytes(&key),
                reason,
            }),
            _ => {}
        }
        done += 1;
    }
    progress.advance(done, 0);
}

async fn watch_evictions(target: &Target, evicted_at_start: u64) -> Result<(), RestoreError> {
    if !target.evicts() {
        return Ok(());
    }
    let info = target.conn.clone().server_info().await?;
    if info.evicted_keys > evicted_at_start {
        return Err(RestoreError::Evicting {
            address: target.conn.address().to_string(),
            evicted: info.evicted_keys - evicted_at_start,
            policy: info.maxmemory_policy,
        });
    }
    Ok(())
}

/// Renames and expiry: turns a record into a pending write, or counts it as
/// expired.
fn prepare(
    record: Record,
    options: &RestoreOptions,
    summary: &mut RestoreSummary,
) -> Option<Pending> {
    let (kb_id, key) = renamed(&record.kb_id, &record.key, &options.renames);
    let pending = Pending {
        kb_id,
        category: record.category,
        key,
        absent: record.is_absent(),
        expire_at_ms: record.expire_at_ms,
        payload: record.payload,
    };
    let now = options.clock.now_ms();
    let pending = pending.settle_expiry(options, now);
    if pending.expired(now) {
        summary
            .tallies
            .entry((pending.kb_id, pending.category))
            .or_default()
            .add(&Outcome::Expired);
        return None;
    }
    Some(pending)
}
