//! nudge: on `Level Changed` (up), `Engagement At Risk` and `Interaction Recorded` (kinds that
//! trigger a playbook or are the outcome of a step sent), runs the core's playbook selection
//! against the customer's consent and nudge history, records each decision once, and publishes
//! `Nudge Requested` for those sent. Held-out and suppressed decisions are recorded with their
//! reason, not published.
//!
//! Idempotent per trigger: each trigger has a stable id (the event id, or the interaction id),
//! and a trigger already decided is not decided again; its sent nudges are published again with
//! the same `nudge_id` (a redelivery after a failed publish), which receivers deduplicate on.
//! A trigger recorded only in part (an error between two playbooks) is completed on redelivery,
//! as of its first decision.

use engagement::events::{DomainEvent, EventExplanation, NudgeRequested, NUDGE_REQUESTED_SCHEMA_VERSION};
use engagement::metrics::METRICS;
use engagement::ports::{BusError, Clock, CustomerReads, EventBus, NudgeLedger, StoreError, StoredCustomer, StoredNudge};
use engagement::{
    decide, may_offer, nudge_id, rise_follows, select_nudges, Direction, NudgeDecision, NudgeOutcome, Rules, SuppressReason, Timestamp,
    Trigger,
};
use std::sync::Arc;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum NudgeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("nudges are recorded but not yet requested (a retry requests them): {0}")]
    Bus(#[from] BusError),
}

impl NudgeError {
    pub fn is_retryable(&self) -> bool {
        match self {
            NudgeError::Store(error) => error.is_retryable(),
            NudgeError::Bus(error) => error.is_retryable(),
        }
    }
}

/// What was decided for one trigger.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Decided {
    pub nudge_id: String,
    pub trigger: Trigger,
    #[serde(flatten)]
    pub decision: NudgeDecision,
    /// False when the trigger had been decided before (a redelivery).
    pub new: bool,
}

/// What one event's triggers decided so far, for one customer as of `now`.
struct Round<'a> {
    customer: &'a StoredCustomer,
    now: Timestamp,
    decided: Vec<Decided>,
    requests: Vec<DomainEvent>,
}

pub struct Nudger<S, B, C> {
    pub store: S,
    pub bus: B,
    pub clock: C,
    pub rules: Arc<Rules>,
}

/// The triggers an event carries, each with its stable id.
pub fn triggers_of(event: &DomainEvent) -> Vec<(Trigger, String)> {
    match event {
        DomainEvent::LevelChanged(change) if change.direction == Direction::Up => {
            vec![(Trigger::LevelReached(change.to), event.event_id())]
        }
        DomainEvent::EngagementAtRisk(risk) => vec![(Trigger::AtRisk(risk.level), event.event_id())],
        DomainEvent::InteractionRecorded(recorded) => recorded
            .interaction_ids
            .iter()
            .zip(&recorded.kinds)
            .map(|(id, kind)| (Trigger::Interaction(kind.clone()), format!("interaction:{id}")))
            .collect(),
        _ => Vec::new(),
    }
}

impl<S: CustomerReads + NudgeLedger, B: EventBus, C: Clock> Nudger<S, B, C> {
    /// Handles one event: decides the nudges it triggers (none for an event that triggers none).
    pub async fn handle(&self, event: &DomainEvent) -> Result<Vec<Decided>, NudgeError> {
        let span = tracing::info_span!("nudge", customer_id = %event.customer_id(), detail_type = event.detail_type());
        self.on_event(event).instrument(span).await
    }

    /// Decides the nudges an event triggers.
    pub async fn on_event(&self, event: &DomainEvent) -> Result<Vec<Decided>, NudgeError> {
        // Only triggers some playbook starts on: most interactions start none, and then nothing
        // is read. A rise is read even so: it counts toward the nudges that came before it.
        let triggers: Vec<(Trigger, String)> = triggers_of(event)
            .into_iter()
            .filter(|(trigger, _)| may_offer(&self.rules, trigger))
            .collect();
        let rise = match event {
            DomainEvent::LevelChanged(change) if change.direction == Direction::Up => Some(change.since),
            _ => None,
        };
        if triggers.is_empty() && rise.is_none() {
            return Ok(Vec::new());
        }
        let Some(customer) = self.store.load_customer(event.customer_id()).await? else {
            return Ok(Vec::new()); // unknown or erased: nobody to nudge
        };
        if customer.erasing {
            return Ok(Vec::new());
        }
        let mut history = self.store.nudges_of(&customer).await?;
        if let Some(rose_at) = rise {
            self.count_rise(&customer, &history, rose_at).await?;
        }
        let mut round = Round {
            customer: &customer,
            now: self.clock.now(),
            decided: Vec::new(),
            requests: Vec::new(),
        };
        for (trigger, trigger_id) in triggers {
            self.decide_trigger(&mut round, &mut history, trigger, &trigger_id).await?;
        }
        if !round.requests.is_empty() {
            self.bus.publish(&round.requests).await?;
        }
        Ok(round.decided)
    }

    /// A rise counts toward the nudges that came shortly before it (once each): the sent ones
    /// against the held-out ones is the playbook's uplift.
    async fn count_rise(&self, customer: &StoredCustomer, history: &[StoredNudge], rose_at: Timestamp) -> Result<(), NudgeError> {
        for nudge in history.iter().filter(|n| n.rose_at.is_none() && rise_follows(&n.record(), rose_at)) {
            self.store.record_rise_after(&customer.id, nudge, rose_at).await?;
        }
        Ok(())
    }

    /// Decides one trigger: what was decided for it before is requested again (if still
    /// consented), and the playbooks not yet decided for it are decided and recorded.
    async fn decide_trigger(
        &self,
        round: &mut Round<'_>,
        history: &mut Vec<StoredNudge>,
        trigger: Trigger,
        trigger_id: &str,
    ) -> Result<(), NudgeError> {
        let customer = round.customer;
        let earlier: Vec<StoredNudge> = history.iter().filter(|n| n.trigger_id == trigger_id).cloned().collect();
        for nudge in &earlier {
            // Requested again only if the customer still consents on that channel.
            let consents = customer.state.consent.granted(&nudge.decision.channel);
            if nudge.decision.outcome == NudgeOutcome::Sent && consents {
                round.requests.extend(self.request(customer, nudge, round.now));
            }
            round.decided.push(Decided {
                nudge_id: nudge.nudge_id.clone(),
                trigger: nudge.trigger.clone(),
                decision: nudge.decision.clone(),
                new: false,
            });
        }
        // A trigger decided before is decided again as of its first decision, against the
        // history it saw then: the playbooks an interrupted run did not record (an error
        // between two of them) are completed with the decisions it would have made.
        let decided_at = earlier.iter().map(|n| n.decided_at).min().unwrap_or(round.now);
        let records: Vec<_> = history
            .iter()
            .filter(|n| n.trigger_id != trigger_id && n.decided_at <= decided_at)
            .map(StoredNudge::record)
            .collect();
        let decisions = select_nudges(
            &self.rules,
            customer.id.as_str(),
            &customer.state.consent,
            &records,
            &trigger,
            decided_at,
        );
        let missing = decisions
            .into_iter()
            .filter(|decision| !earlier.iter().any(|n| n.decision.playbook == decision.playbook));
        for decision in missing {
            let nudge = StoredNudge {
                nudge_id: nudge_id(trigger_id, &decision.playbook, decision.step),
                trigger: trigger.clone(),
                trigger_id: trigger_id.to_string(),
                decision,
                decided_at,
                rose_at: None,
            };
            history.push(self.record_decision(round, nudge).await?);
        }
        Ok(())
    }

    /// Records a new decision once (suppressed when the customer has no handle on its channel)
    /// and requests it if it is sent and this delivery recorded it.
    async fn record_decision(&self, round: &mut Round<'_>, mut nudge: StoredNudge) -> Result<StoredNudge, NudgeError> {
        let customer = round.customer;
        let reachable = customer.identities.iter().any(|i| i.channel == nudge.decision.channel);
        if nudge.decision.outcome != NudgeOutcome::Suppressed && !reachable {
            nudge.decision.outcome = NudgeOutcome::Suppressed;
            nudge.decision.reason = Some(SuppressReason::NoHandle);
        }
        // A concurrent delivery of the same trigger recorded it first: it requests it.
        let new = self.store.record_nudge(&customer.id, &nudge).await?;
        if new && nudge.decision.outcome == NudgeOutcome::Sent {
            round.requests.extend(self.request(customer, &nudge, round.now));
        }
        tracing::info!(
            nudge_id = %nudge.nudge_id,
            playbook = %nudge.decision.playbook,
            step = nudge.decision.step,
            outcome = ?nudge.decision.outcome,
            reason = nudge.decision.reason.map(SuppressReason::name),
            new,
            "nudge decided"
        );
        if new {
            let outcome = match nudge.decision.outcome {
                NudgeOutcome::Sent => "sent",
                NudgeOutcome::HeldOut => "held_out",
                NudgeOutcome::Suppressed => "suppressed",
            };
            tracing::info!(target: METRICS, function = "nudge", Outcome = outcome, Nudges = 1u64);
        }
        round.decided.push(Decided {
            nudge_id: nudge.nudge_id.clone(),
            trigger: nudge.trigger.clone(),
            decision: nudge.decision.clone(),
            new,
        });
        Ok(nudge)
    }

    /// The `Nudge Requested` event for a sent nudge: what the marketing tool needs to act.
    fn request(&self, customer: &StoredCustomer, nudge: &StoredNudge, now: Timestamp) -> Option<DomainEvent> {
        let identity = customer.identities.iter().find(|i| i.channel == nudge.decision.channel)?;
        let decision = decide(&self.rules, &customer.state, now);
        Some(DomainEvent::NudgeRequested(NudgeRequested {
            schema_version: NUDGE_REQUESTED_SCHEMA_VERSION,
            nudge_id: nudge.nudge_id.clone(),
            customer_id: customer.id.clone(),
            playbook: nudge.decision.playbook.clone(),
            step: nudge.decision.step,
            action: nudge.decision.action.clone(),
            channel: nudge.decision.channel.clone(),
            handle: identity.handle.clone(),
            level: decision.level,
            trigger: nudge.trigger.clone(),
            explanation: EventExplanation::of(&decision),
            requested_at: nudge.decided_at,
        }))
    }
}
