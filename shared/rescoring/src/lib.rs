//! The decide-and-write step: rescores one customer now. The rescore function runs it per
//! `Interaction Recorded` and over the due customers; the API runs it after a merge. The core
//! decides (`engagement::rescoring::plan_rescore`); this step reads, publishes and writes.
//!
//! Events are published first, then the decision is written (one read and one write per rescore,
//! so a new interaction costs four requests in all, level change included). If publishing fails,
//! the events are written with the decision (the customer's outbox) and the customer stays due:
//! the next run publishes them. Event ids are stable per fact, so a rescore that publishes again
//! after a crash or a conflicting write repeats the same id and receivers deduplicate on it.

use engagement::events::DomainEvent;
use engagement::metrics::METRICS;
use engagement::ports::{BusError, Clock, CustomerId, CustomerReads, EventBus, Standings, StoreError, StoredCustomer, WriteOutcome};
use engagement::rescoring::{plan_rescore, RescorePlan};
use engagement::{Direction, Level, Rules};
use std::collections::HashSet;

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

/// The ports one rescore uses, borrowed from the handler that runs it.
pub struct Rescoring<'a, S, B, C> {
    pub store: &'a S,
    pub bus: &'a B,
    pub clock: &'a C,
    pub rules: &'a Rules,
}

impl<S: CustomerReads + Standings, B: EventBus, C: Clock> Rescoring<'_, S, B, C> {
    /// Rescores one customer by id, reading again after a conflicting write. `None` if unknown
    /// or erased. `published` holds the ids of events this invocation already published.
    pub async fn rescore(&self, id: &CustomerId, published: &mut HashSet<String>) -> Result<Option<Rescored>, RescoreError> {
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
        let done = |level, direction, published, wrote| Rescored {
            customer_id: customer.id.clone(),
            level,
            direction,
            published,
            wrote,
        };
        if customer.erasing {
            // Being erased: nothing more is said about them (Customer Erased went out first).
            let level = customer.state.standing.map_or(Level::Observing, |s| s.level);
            return Ok(Some(done(level, None, published, false)));
        }
        if customer
            .rules_fingerprint
            .as_deref()
            .is_some_and(|folded| folded != self.rules.fingerprint())
        {
            // Its evidence was folded under other rules (ingest adds under the new ones): deciding
            // on that mix would announce rules-change moves. The refold decides it, quietly; until
            // then it is left as stored, and stays due.
            tracing::warn!(customer_id = %customer.id, "folded under other rules: left for `pyramid refold`");
            tracing::info!(target: METRICS, function = "rescore", AwaitingRefold = 1u64);
            let level = customer.state.standing.map_or(Level::Observing, |s| s.level);
            return Ok(Some(done(level, None, published, false)));
        }
        // First, what an earlier run (or ingest) could not publish. If that fails too, the level
        // is decided all the same and the new events join the outbox.
        let outbox_failure = self.publish_outbox(customer, &mut published).await?;
        let plan = plan_rescore(self.rules, customer, now);
        if plan.unchanged {
            if let Some(error) = outbox_failure {
                // Nothing to write: the customer stays due with its outbox.
                return Err(RescoreError::Bus(error));
            }
            return Ok(Some(done(plan.decision.level, None, published, false)));
        }
        // Publish first: on success the decision is written with an empty outbox, in one write.
        let publish_failure = match outbox_failure {
            // The bus is down: the new events wait behind the old ones.
            Some(error) => Some(error),
            None => self.publish_fresh(&plan.events, published_ids, &mut published).await,
        };
        let write = plan.write(customer, publish_failure.is_some(), now);
        if self.store.write_standing(&write).await? == WriteOutcome::Conflict {
            return Ok(None);
        }
        if let Some(error) = publish_failure {
            return Err(RescoreError::Bus(error));
        }
        report(customer, &plan);
        Ok(Some(done(plan.decision.level, plan.direction, published, true)))
    }

    /// Publishes the customer's outbox and clears it; the bus's error if it is still down.
    async fn publish_outbox(&self, customer: &StoredCustomer, published: &mut Vec<&'static str>) -> Result<Option<BusError>, StoreError> {
        if customer.outbox.is_empty() {
            return Ok(None);
        }
        let events: Vec<DomainEvent> = customer.outbox.iter().map(|(_, e)| e.clone()).collect();
        match self.bus.publish(&events).await {
            Ok(()) => {
                let ids: Vec<String> = customer.outbox.iter().map(|(id, _)| id.clone()).collect();
                self.store
                    .clear_outbox(&customer.id, &ids, customer.version, customer.due_at)
                    .await?;
                published.extend(events.iter().map(DomainEvent::detail_type));
                Ok(None)
            }
            Err(error) => Ok(Some(error)),
        }
    }

    /// Publishes the events this invocation has not published yet; the bus's error if it failed.
    async fn publish_fresh(
        &self,
        events: &[DomainEvent],
        published_ids: &mut HashSet<String>,
        published: &mut Vec<&'static str>,
    ) -> Option<BusError> {
        let fresh: Vec<DomainEvent> = events
            .iter()
            .filter(|event| !published_ids.contains(&event.event_id()))
            .cloned()
            .collect();
        if fresh.is_empty() {
            return None;
        }
        match self.bus.publish(&fresh).await {
            Ok(()) => {
                published_ids.extend(fresh.iter().map(DomainEvent::event_id));
                published.extend(fresh.iter().map(DomainEvent::detail_type));
                None
            }
            Err(error) => Some(error),
        }
    }
}

/// Logs and counts a written decision.
fn report(customer: &StoredCustomer, plan: &RescorePlan) {
    tracing::info!(customer_id = %customer.id, level = %plan.decision.level, changed = plan.direction.is_some(), "rescored");
    if let Some(direction) = plan.direction {
        tracing::info!(target: METRICS, function = "rescore", Direction = direction.name(), LevelChanges = 1u64);
    }
    if plan.notify_risk {
        tracing::info!(target: METRICS, function = "rescore", AtRiskNotices = 1u64);
    }
}
