//! `pyramid refold --rules NEW.toml`: every customer still folded under other rules is replayed
//! from its whole history under the new ones and stored (evidence, consent, standing, timeline,
//! the counters and the due and level indexes), quietly: nothing is published.
//!
//! The same run serves the embedded store (`--data`) and a deployed table (`--table`): the store
//! operations are the `Refolds` port's. Resumable and idempotent: the scan only returns customers
//! whose stored fingerprint is not the new rules', and each customer's write is one transaction
//! (or, for a very long timeline, several that the next run completes). Safe while ingest runs:
//! a write happens only when the history read matches the stored counts and `last_at`, under the
//! version read; otherwise the customer is read again.

use engagement::ports::{Clock, CustomerId, CustomerReads, RefoldWrite, Refolds, StoreError, StoredCustomer, WriteOutcome};
use engagement::refold::{plan_refold, HistoryMismatch};
use engagement::{Interaction, Level, Rules};
use futures::{StreamExt as _, TryStreamExt as _};
use rayon::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a refold reads and writes.
#[derive(Clone, Copy, Debug)]
pub struct RefoldOptions {
    /// Parallel scan segments.
    pub segments: u32,
    /// Items each scan request reads (before the filter).
    pub page_size: usize,
    /// Histories read and writes sent at once, per page.
    pub in_flight: usize,
    /// Customers handed to the store's `write_refolds` at once (the embedded store packs them
    /// into few transactions; a deployed table writes one transaction per customer anyway).
    pub pack: usize,
    /// Pages of a segment worked on at once (the next page read while this one is folded and
    /// written).
    pub pages_in_flight: usize,
    /// A progress line after every page (tests), not every few seconds.
    pub report_pages: bool,
}

impl Default for RefoldOptions {
    /// For a deployed table: a parallel scan, requests in flight to hide their latency.
    fn default() -> RefoldOptions {
        RefoldOptions {
            segments: 4,
            page_size: 200,
            in_flight: 16,
            pack: 1,
            pages_in_flight: 1,
            report_pages: false,
        }
    }
}

impl RefoldOptions {
    /// For the embedded store: one segment (a scan in key order, which SQLite serves from the
    /// primary key; a parallel scan sorts the whole table for every page there), large pages,
    /// and two pages at once so that the fold on one core overlaps the store's work on the
    /// other.
    pub fn embedded() -> RefoldOptions {
        RefoldOptions {
            segments: 1,
            page_size: 1000,
            in_flight: 4,
            pack: 64,
            pages_in_flight: 2,
            report_pages: false,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RefoldReport {
    /// Customers re-folded and written by this run.
    pub refolded: u64,
    pub moved_up: u64,
    pub moved_down: u64,
    /// Customers read again (a history behind the stored counts, or a write since the read).
    pub retried: u64,
    /// Customers left for the next run after repeated retries (named in the log by id).
    pub left: u64,
    pub seconds: f64,
}

/// Reads of a customer that did not match (or a write that conflicted) tolerated before it is
/// left for the next run.
const MAX_ATTEMPTS: u32 = 8;

/// What one customer's refold came to.
enum Outcome {
    /// Written: the level it stood at, and the one it stands at now.
    Written(Level, Level),
    /// Refolded meanwhile, erased or merged away: nothing to do.
    Gone,
    Left,
}

/// Re-folds every customer not yet folded under `rules`.
pub async fn refold<S, C>(store: &S, rules: &Arc<Rules>, clock: &C, options: RefoldOptions) -> Result<RefoldReport, StoreError>
where
    S: Refolds + CustomerReads,
    C: Clock,
{
    let started = Instant::now();
    let fingerprint = rules.fingerprint();
    let progress = Progress::new(options.report_pages);
    let segments =
        (0..options.segments.max(1)).map(|segment| refold_segment(store, rules, clock, &fingerprint, segment, options, &progress));
    let mut report = RefoldReport::default();
    for done in futures::future::join_all(segments).await {
        let done = done?;
        report.refolded += done.refolded;
        report.moved_up += done.moved_up;
        report.moved_down += done.moved_down;
        report.retried += done.retried;
        report.left += done.left;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn refold_segment<S: Refolds + CustomerReads, C: Clock>(
    store: &S,
    rules: &Arc<Rules>,
    clock: &C,
    fingerprint: &str,
    segment: u32,
    options: RefoldOptions,
    progress: &Progress,
) -> Result<RefoldReport, StoreError> {
    let segments = options.segments.max(1);
    // The scan, page after page (`None` once the segment is read to its end).
    let pages = futures::stream::try_unfold(Some(None), move |cursor: Option<Option<String>>| async move {
        let Some(cursor) = cursor else {
            return Ok(None);
        };
        let page = store
            .customers_to_refold(fingerprint, segment, segments, cursor, options.page_size)
            .await?;
        let next = page.cursor.clone().map(Some);
        Ok(Some((page.items, next)))
    });
    let mut done = std::pin::pin!(pages
        .map_ok(|customers| refold_page(store, rules, clock, customers, options))
        .try_buffer_unordered(options.pages_in_flight.max(1)));
    let mut report = RefoldReport::default();
    while let Some(page) = done.try_next().await? {
        progress.page(page.refolded);
        report.refolded += page.refolded;
        report.moved_up += page.moved_up;
        report.moved_down += page.moved_down;
        report.retried += page.retried;
        report.left += page.left;
    }
    Ok(report)
}

/// One scan page: the histories read, replayed in parallel, and written.
async fn refold_page<S: Refolds + CustomerReads, C: Clock>(
    store: &S,
    rules: &Arc<Rules>,
    clock: &C,
    customers: Vec<StoredCustomer>,
    options: RefoldOptions,
) -> Result<RefoldReport, StoreError> {
    let mut report = RefoldReport::default();
    let histories: Vec<Result<Vec<Interaction>, StoreError>> = futures::stream::iter(&customers)
        .map(|customer| store.history(customer))
        .buffered(options.in_flight)
        .collect()
        .await;
    let mut pairs = Vec::with_capacity(customers.len());
    for (customer, history) in customers.into_iter().zip(histories) {
        pairs.push((customer, history?));
    }
    let plans = fold_in_parallel(rules, pairs, clock.now()).await?;
    let mut writes = Vec::with_capacity(plans.len());
    let mut again = Vec::new();
    for (customer, plan) in plans {
        match plan {
            Ok(write) => writes.push(write),
            Err(HistoryMismatch) => again.push(customer.id),
        }
    }
    let mut outcomes: Vec<Result<(Outcome, u32), StoreError>> = Vec::with_capacity(writes.len());
    let written_in_chunks: Vec<Result<Vec<WriteOutcome>, StoreError>> = futures::stream::iter(writes.chunks(options.pack.max(1)))
        .map(|chunk| store.write_refolds(chunk))
        .buffered(options.in_flight)
        .collect()
        .await;
    for (chunk, written_chunk) in writes.chunks(options.pack.max(1)).zip(written_in_chunks) {
        for (write, outcome) in chunk.iter().zip(written_chunk?) {
            match outcome {
                WriteOutcome::Written => outcomes.push(Ok((written(write), 0))),
                WriteOutcome::Conflict => again.push(write.customer_id.clone()),
            }
        }
    }
    // Read again, alone.
    let retried: Vec<Result<(Outcome, u32), StoreError>> = futures::stream::iter(&again)
        .map(|id| refold_one(store, rules, clock, id))
        .buffer_unordered(options.in_flight)
        .collect()
        .await;
    outcomes.extend(retried);
    for outcome in outcomes {
        let (outcome, retries) = outcome?;
        report.retried += u64::from(retries);
        match outcome {
            Outcome::Written(before, after) => {
                report.refolded += 1;
                match after.cmp(&before) {
                    std::cmp::Ordering::Greater => report.moved_up += 1,
                    std::cmp::Ordering::Less => report.moved_down += 1,
                    std::cmp::Ordering::Equal => {}
                }
            }
            Outcome::Gone => {}
            Outcome::Left => report.left += 1,
        }
    }
    Ok(report)
}

fn written(write: &RefoldWrite) -> Outcome {
    Outcome::Written(write.previous_level, write.standing.level)
}

/// Replays a page of customers on every core (the fold is CPU work: off the async threads).
async fn fold_in_parallel(
    rules: &Arc<Rules>,
    pairs: Vec<(StoredCustomer, Vec<Interaction>)>,
    now: engagement::Timestamp,
) -> Result<Vec<(StoredCustomer, Result<RefoldWrite, HistoryMismatch>)>, StoreError> {
    let rules = Arc::clone(rules);
    tokio::task::spawn_blocking(move || {
        pairs
            .into_par_iter()
            .map(|(customer, history)| {
                let plan = plan_refold(&rules, &customer, &history, now);
                (customer, plan)
            })
            .collect()
    })
    .await
    .map_err(|e| StoreError::Unavailable(format!("the fold stopped: {e}")))
}

/// One customer, read afresh until its history matches and the write holds.
async fn refold_one<S: Refolds + CustomerReads, C: Clock>(
    store: &S,
    rules: &Rules,
    clock: &C,
    id: &CustomerId,
) -> Result<(Outcome, u32), StoreError> {
    for attempt in 1..=MAX_ATTEMPTS {
        let Some(customer) = store.load_customer(id).await? else {
            return Ok((Outcome::Gone, attempt));
        };
        if customer.erasing || customer.id != *id || customer.rules_fingerprint.as_deref() == Some(&rules.fingerprint()) {
            return Ok((Outcome::Gone, attempt));
        }
        let history = store.history(&customer).await?;
        if let Ok(write) = plan_refold(rules, &customer, &history, clock.now()) {
            if store.write_refold(&write).await? == WriteOutcome::Written {
                return Ok((written(&write), attempt));
            }
        }
        // An index that lags catches up within a second or so; a busy customer calms down.
        let wait = Duration::from_millis((25u64 << attempt.min(6)).min(1_000));
        tokio::time::sleep(wait.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
    }
    tracing::warn!(customer_id = %id, "not refolded: its history kept changing or lagging; the next run takes it");
    Ok((Outcome::Left, MAX_ATTEMPTS))
}

/// Progress lines on stderr: every few seconds, or after every page.
struct Progress {
    every_page: bool,
    started: Instant,
    last: std::sync::Mutex<Instant>,
    refolded: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn new(every_page: bool) -> Progress {
        Progress {
            every_page,
            started: Instant::now(),
            last: std::sync::Mutex::new(Instant::now()),
            refolded: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A segment finished a page in which it refolded `refolded` customers.
    fn page(&self, refolded: u64) {
        let total = self.refolded.fetch_add(refolded, std::sync::atomic::Ordering::Relaxed) + refolded;
        let Ok(mut last) = self.last.lock() else { return };
        if self.every_page || last.elapsed() >= Duration::from_secs(5) {
            let rate = total as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            eprintln!("refolded {total} customers so far ({rate:.0}/s)");
            *last = Instant::now();
        }
    }
}
