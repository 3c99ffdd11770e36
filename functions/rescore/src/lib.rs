//! rescore: decides a customer's level now, writes the decision conditionally (no lost update
//! against a concurrent rescore) and publishes what changed: `Level Changed`, and
//! `Engagement At Risk` once per foreseen drop. Event-driven per customer, and as a sweep over
//! the customers that are due. Generic over the ports, so Lambda, `pyramid serve` and the tests
//! run the same code.
//!
//! The decide-and-write step itself is `engagement-rescoring`, which the API shares.

use engagement::events::DomainEvent;
use engagement::ports::{Clock, CustomerId, CustomerReads, EventBus, Standings, StoredCustomer};
use engagement::Rules;
pub use engagement_rescoring::{RescoreError, Rescored, Rescoring};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// A sweep stops starting pages when less than this is left before the Lambda deadline.
pub const SWEEP_MARGIN: Duration = Duration::from_secs(10);

/// Customers a sweep rescores at once.
const SWEEP_CONCURRENCY: usize = 4;

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    pub examined: usize,
    pub changed: usize,
    pub published: usize,
    /// Customers that could not be rescored (they stay due).
    pub failed: usize,
    /// True when it stopped for the deadline before reaching the end.
    pub unfinished: bool,
}

pub struct Rescorer<S, B, C> {
    pub store: S,
    pub bus: B,
    pub clock: C,
    pub rules: Arc<Rules>,
}

impl<S: CustomerReads + Standings, B: EventBus, C: Clock> Rescorer<S, B, C> {
    /// Handles `Interaction Recorded`: rescores its customer. `None` if unknown or erased.
    /// Any other event is not rescore's (an error no retry mends).
    pub async fn handle(&self, event: &DomainEvent) -> Result<Option<Rescored>, RescoreError> {
        let DomainEvent::InteractionRecorded(recorded) = event else {
            return Err(RescoreError::UnexpectedEvent(event.detail_type().to_string()));
        };
        let span = tracing::info_span!("rescore", customer_id = %recorded.customer_id);
        self.rescore(&recorded.customer_id).instrument(span).await
    }

    /// Handles the schedule's sweep request: rescores the due customers while `time_left()`
    /// allows (the rest stay due for the next schedule).
    pub async fn handle_schedule(&self, time_left: impl Fn() -> Duration) -> Result<SweepReport, RescoreError> {
        let report = self
            .sweep(100, || time_left() > SWEEP_MARGIN)
            .instrument(tracing::info_span!("sweep"))
            .await?;
        tracing::info!(
            examined = report.examined,
            changed = report.changed,
            unfinished = report.unfinished,
            "swept"
        );
        Ok(report)
    }

    /// The decide-and-write step over this handler's ports.
    pub fn rescoring(&self) -> Rescoring<'_, S, B, C> {
        Rescoring {
            store: &self.store,
            bus: &self.bus,
            clock: &self.clock,
            rules: &self.rules,
        }
    }

    /// Rescores one customer (after `Interaction Recorded`). `None` if unknown or erased.
    pub async fn rescore(&self, id: &CustomerId) -> Result<Option<Rescored>, RescoreError> {
        self.rescoring().rescore(id, &mut HashSet::new()).await
    }

    /// Rescores a customer read from the due index, whose copy may be stale: on a conflict, it
    /// reads it again.
    async fn rescore_due(&self, customer: &StoredCustomer) -> Result<Option<Rescored>, RescoreError> {
        let mut published = HashSet::new();
        let rescoring = self.rescoring();
        match rescoring.rescore_loaded(customer, &mut published).await? {
            Some(done) => Ok(Some(done)),
            None => rescoring.rescore(&customer.id, &mut published).await,
        }
    }

    /// Rescores every customer due by now, a page at a time, while `keep_going()` says there
    /// is time (a Lambda stops before its deadline and the next schedule continues).
    pub async fn sweep(&self, page_size: usize, mut keep_going: impl FnMut() -> bool) -> Result<SweepReport, RescoreError> {
        let now = self.clock.now();
        let mut report = SweepReport::default();
        let mut cursor = None;
        loop {
            if !keep_going() {
                report.unfinished = true;
                return Ok(report);
            }
            let page = self.store.due_customers(now, cursor, page_size).await?;
            // Customers are independent: several at once keep the store busy while each waits.
            let mut results = Vec::with_capacity(page.items.len());
            for group in page.items.chunks(SWEEP_CONCURRENCY) {
                let rescores: Vec<_> = group.iter().map(|customer| self.rescore_due(customer)).collect();
                results.extend(futures::future::join_all(rescores).await);
            }
            for done in results {
                report.examined += 1;
                let done = match done {
                    Ok(done) => done,
                    // The bus is down: every customer would fail the same way; stop here.
                    Err(error @ RescoreError::Bus(_)) => return Err(error),
                    // One customer's trouble must not stall the others: it stays due and the
                    // next sweep tries again.
                    Err(error) => {
                        tracing::warn!(%error, "customer not rescored; still due");
                        report.failed += 1;
                        continue;
                    }
                };
                if let Some(done) = done {
                    report.changed += usize::from(done.direction.is_some());
                    report.published += done.published.len();
                }
            }
            cursor = page.cursor;
            if cursor.is_none() {
                return Ok(report);
            }
        }
    }
}
