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
use futures::StreamExt as _;
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
    /// Histories read and customers written at once, per segment.
    pub in_flight: usize,
    /// A progress line after every page (tests), not every few seconds.
    pub report_pages: bool,
}

impl Default for RefoldOptions {
    fn default() -> RefoldOptions {
        RefoldOptions {
            segments: 4,
            page_size: 200,
            in_flight: 16,
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
    let mut report = RefoldReport::default();
    let mut cursor = None;
    loop {
        let refolded_before = report.refolded;
        let page = store
            .customers_to_refold(fingerprint, segment, options.segments.max(1), cursor, options.page_size)
            .await?;
        let histories: Vec<Result<Vec<Interaction>, StoreError>> = futures::stream::iter(&page.items)
            .map(|customer| store.history(customer))
            .buffered(options.in_flight)
            .collect()
            .await;
        let mut pairs = Vec::with_capacity(page.items.len());
        for (customer, history) in page.items.into_iter().zip(histories) {
            pairs.push((customer, history?));
        }
        let plans = fold_in_parallel(rules, pairs, clock.now()).await?;
        let outcomes: Vec<Result<(Outcome, u32), StoreError>> = futures::stream::iter(plans)
            .map(|(customer, plan)| async move {
                match plan {
                    Ok(write) if store.write_refold(&write).await? == WriteOutcome::Written => Ok((written(&write), 0)),
                    // Read again, alone.
                    _ => refold_one(store, rules, clock, &customer.id).await,
                }
            })
            .buffer_unordered(options.in_flight)
            .collect()
            .await;
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
        progress.page(report.refolded - refolded_before);
        cursor = page.cursor;
        if cursor.is_none() {
            return Ok(report);
        }
    }
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
