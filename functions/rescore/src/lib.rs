//! rescore: decides a customer's level now, writes the decision conditionally (no lost update
//! against a concurrent rescore) and publishes what changed: `Level Changed`, and
//! `Engagement At Risk` once per foreseen drop. Event-driven per customer, and as a sweep over
//! the customers that are due. Generic over the ports, so Lambda, `pyramid serve` and the tests
//! run the same code.
//!
//! Events are published first, then the decision is written (one read and one write per rescore,
//! so a new interaction costs four requests in all, level change included). If publishing fails,
//! the events are written with the decision (the customer's outbox) and the customer stays due:
//! the next run publishes them. Event ids are stable per fact, so a rescore that publishes again
//! after a crash or a conflicting write repeats the same id and receivers deduplicate on it.

use engagement::events::{DomainEvent, EngagementAtRisk, EventExplanation, LevelChanged, SCHEMA_VERSION};
use engagement::metrics::METRICS;
use engagement::ports::{BusError, Clock, CustomerId, EngagementStore, EventBus, StandingWrite, StoreError, StoredCustomer, WriteOutcome};
use engagement::{decide, era_start, Direction, Level, LevelChange, Rules};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// A sweep stops starting pages when less than this is left before the Lambda deadline.
pub const SWEEP_MARGIN: Duration = Duration::from_secs(10);

/// Customers a sweep rescores at once.
const SWEEP_CONCURRENCY: usize = 4;

/// Conflicting writes tolerated before giving up (each is a fresh read and decision).
const MAX_ATTEMPTS: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum RescoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the decision is stored but its events are not published yet (the customer stays due): {0}")]
    Bus(#[from] BusError),
    #[error("customer {0}: too many concurrent writers")]
    Contention(CustomerId),
    #[error("not an event rescore handles: {0}")]
    UnexpectedEvent(String),
}

impl RescoreError {
    /// Whether retrying the invocation can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            RescoreError::Store(error) => error.is_retryable(),
            RescoreError::Bus(error) => error.is_retryable(),
            RescoreError::Contention(_) => true,
            RescoreError::UnexpectedEvent(_) => false,
        }
    }
}

/// What one rescore did.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Rescored {
    pub customer_id: CustomerId,
    pub level: Level,
    pub direction: Option<Direction>,
    /// Detail-types published by this run (outbox leftovers included).
    pub published: Vec<&'static str>,
    /// False when nothing needed writing (a repeated run).
    pub wrote: bool,
}

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

impl<S: EngagementStore, B: EventBus, C: Clock> Rescorer<S, B, C> {
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

    /// Rescores one customer (after `Interaction Recorded`). `None` if unknown or erased.
    pub async fn rescore(&self, id: &CustomerId) -> Result<Option<Rescored>, RescoreError> {
        self.rescore_with(id, &mut HashSet::new()).await
    }

    /// [`Rescorer::rescore`], remembering what this invocation already published.
    async fn rescore_with(&self, id: &CustomerId, published: &mut HashSet<String>) -> Result<Option<Rescored>, RescoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let Some(customer) = self.store.load_customer(id).await? else {
                return Ok(None);
            };
            if let Some(done) = self.rescore_loaded(&customer, published).await? {
                return Ok(Some(done));
            }
        }
        Err(RescoreError::Contention(id.clone()))
    }

    /// Rescores from a customer already read (the sweep reads them from the due index).
    /// `None` when someone wrote since that read. `published_ids` holds the ids of events this
    /// invocation already published (before a conflicting write): they are not published again.
    pub async fn rescore_loaded(
        &self,
        customer: &StoredCustomer,
        published_ids: &mut HashSet<String>,
    ) -> Result<Option<Rescored>, RescoreError> {
        let now = self.clock.now();
        let mut published = Vec::new();
        if customer.erasing {
            // Being erased: nothing more is said about them (Customer Erased went out first).
            return Ok(Some(Rescored {
                customer_id: customer.id.clone(),
                level: customer.state.standing.map_or(Level::Observing, |s| s.level),
                direction: None,
                published,
                wrote: false,
            }));
        }
        // First, what an earlier run (or ingest) could not publish. If that fails too, the level
        // is decided all the same and the new events join the outbox.
        let mut outbox_failure = None;
        if !customer.outbox.is_empty() {
            let events: Vec<DomainEvent> = customer.outbox.iter().map(|(_, e)| e.clone()).collect();
            match self.bus.publish(&events).await {
                Ok(()) => {
                    let ids: Vec<String> = customer.outbox.iter().map(|(id, _)| id.clone()).collect();
                    self.store
                        .clear_outbox(&customer.id, &ids, customer.version, customer.due_at)
                        .await?;
                    published.extend(events.iter().map(DomainEvent::detail_type));
                }
                Err(error) => outbox_failure = Some(error),
            }
        }

        let decision = decide(&self.rules, &customer.state, now);
        let previous = customer.state.standing;
        let previous_level = previous.map_or(Level::Observing, |p| p.level);
        let direction = Direction::between(previous_level, decision.level);
        let notify_risk = decision.is_at_risk(now) && customer.at_risk_notified_for != decision.drops_at;
        let rebased = customer.state.evidence.epoch_is_stale().then(|| {
            let mut evidence = customer.state.evidence.clone();
            if let Some(last) = evidence.last_interaction_at {
                evidence.rebase(&self.rules, era_start(last));
            }
            evidence
        });
        let next_due = decision.next_transition(now);

        let explanation = EventExplanation::of(&decision);
        let mut events = Vec::new();
        if let Some(direction) = direction {
            events.push(DomainEvent::LevelChanged(LevelChanged {
                schema_version: SCHEMA_VERSION,
                customer_id: customer.id.clone(),
                from: previous_level,
                to: decision.level,
                direction,
                since: decision.since,
                drops_at: decision.drops_at,
                at_risk_at: decision.at_risk_at,
                explanation: explanation.clone(),
            }));
        }
        if let (true, Some(drops_at), Some(drops_to)) = (notify_risk, decision.drops_at, decision.drops_to) {
            events.push(DomainEvent::EngagementAtRisk(EngagementAtRisk {
                schema_version: SCHEMA_VERSION,
                customer_id: customer.id.clone(),
                level: decision.level,
                drops_at,
                drops_to,
                explanation,
            }));
        }

        let unchanged = events.is_empty() && rebased.is_none() && previous == Some(decision.standing()) && customer.due_at == next_due;
        if unchanged {
            if let Some(error) = outbox_failure {
                // Nothing to write: the customer stays due with its outbox.
                return Err(RescoreError::Bus(error));
            }
            return Ok(Some(Rescored {
                customer_id: customer.id.clone(),
                level: decision.level,
                direction: None,
                published,
                wrote: false,
            }));
        }
        // Publish first: on success the decision is written with an empty outbox, in one write.
        let fresh: Vec<DomainEvent> = events
            .iter()
            .filter(|event| !published_ids.contains(&event.event_id()))
            .cloned()
            .collect();
        let publish_failure = if outbox_failure.is_some() {
            // The bus is down: the new events wait behind the old ones.
            outbox_failure
        } else if fresh.is_empty() {
            None
        } else {
            match self.bus.publish(&fresh).await {
                Ok(()) => {
                    published_ids.extend(fresh.iter().map(DomainEvent::event_id));
                    published.extend(fresh.iter().map(DomainEvent::detail_type));
                    None
                }
                Err(error) => Some(error),
            }
        };
        let write = StandingWrite {
            customer_id: customer.id.clone(),
            expected_version: customer.version,
            previous,
            standing: decision.standing(),
            // Events not published go into the outbox and keep the customer due, so the next run
            // (or the sweep) publishes them.
            due_at: if publish_failure.is_some() { Some(now) } else { next_due },
            at_risk_notified_for: if notify_risk {
                decision.drops_at
            } else {
                customer.at_risk_notified_for
            },
            change: direction.map(|_| LevelChange {
                at: decision.since,
                from: previous_level,
                to: decision.level,
            }),
            rebased,
            outbox: if publish_failure.is_some() { events.clone() } else { Vec::new() },
        };
        if self.store.write_standing(&write).await? == WriteOutcome::Conflict {
            return Ok(None);
        }
        if let Some(error) = publish_failure {
            return Err(RescoreError::Bus(error));
        }
        tracing::info!(customer_id = %customer.id, level = %decision.level, changed = direction.is_some(), "rescored");
        if let Some(direction) = direction {
            tracing::info!(target: METRICS, function = "rescore", Direction = direction.name(), LevelChanges = 1u64);
        }
        if notify_risk {
            tracing::info!(target: METRICS, function = "rescore", AtRiskNotices = 1u64);
        }
        Ok(Some(Rescored {
            customer_id: customer.id.clone(),
            level: decision.level,
            direction,
            published,
            wrote: true,
        }))
    }

    /// Rescores a customer read from the due index, whose copy may be stale: on a conflict, it
    /// reads it again.
    async fn rescore_due(&self, customer: &StoredCustomer) -> Result<Option<Rescored>, RescoreError> {
        let mut published = HashSet::new();
        match self.rescore_loaded(customer, &mut published).await? {
            Some(done) => Ok(Some(done)),
            None => self.rescore_with(&customer.id, &mut published).await,
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
