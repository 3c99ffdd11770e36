//! rescore: decides a customer's level now, writes the decision conditionally (no lost update
//! against a concurrent rescore) and publishes what changed: `Level Changed`, and
//! `Engagement At Risk` once per foreseen drop. Event-driven per customer, and as a sweep over
//! the customers that are due. Generic over the ports, so Lambda, `pyramid serve` and the tests
//! run the same code.
//!
//! The decide-and-write step itself is `engagement-rescoring`, which the API shares.

use engagement::ports::{Clock, CustomerId, CustomerReads, EventBus, Standings, StoredCustomer};
use engagement::Rules;
pub use engagement_rescoring::{RescoreError, Rescored, Rescoring};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// The detail-type EventBridge gives scheduled events.
pub const SCHEDULED_EVENT: &str = "Scheduled Event";
/// A sweep stops starting pages when less than this is left before the Lambda deadline.
pub const SWEEP_MARGIN: Duration = Duration::from_secs(10);

/// Customers a sweep rescores at once.
const SWEEP_CONCURRENCY: usize = 4;

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// Handles one EventBridge event: `Interaction Recorded` rescores its customer; the schedule
    /// sweeps the due customers while `time_left()` allows. Returns what it did, as JSON.
    pub async fn handle(
        &self,
        event: &aws_lambda_events::eventbridge::EventBridgeEvent<serde_json::Value>,
        time_left: impl Fn() -> Duration,
    ) -> Result<serde_json::Value, RescoreError> {
        match event.detail_type.as_str() {
            engagement::events::INTERACTION_RECORDED => {
                let id = event
                    .detail
                    .get("customer_id")
                    .and_then(|v| v.as_str())
                    .map(|id| CustomerId(id.to_string()))
                    .ok_or_else(|| RescoreError::UnexpectedEvent("Interaction Recorded without customer_id".into()))?;
                let span = tracing::info_span!("rescore", customer_id = %id);
                let done = self.rescore(&id).instrument(span).await?;
                Ok(serde_json::json!({
                    "customer_id": id,
                    "level": done.as_ref().map(|d| d.level),
                    "direction": done.as_ref().and_then(|d| d.direction),
                    "published": done.map(|d| d.published).unwrap_or_default(),
                }))
            }
            SCHEDULED_EVENT => {
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
                Ok(serde_json::json!({
                    "examined": report.examined,
                    "changed": report.changed,
                    "published": report.published,
                    "unfinished": report.unfinished,
                }))
            }
            other => Err(RescoreError::UnexpectedEvent(other.to_string())),
        }
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
