//! What rescoring a stored customer decides, as data: the decision, the events it publishes and
//! the conditional write that records it. The store writes what this decides; the thin async
//! step that reads, publishes and writes is `engagement-rescoring`.

use crate::decide::{decide, Decision};
use crate::events::{DomainEvent, EngagementAtRisk, EventExplanation, LevelChanged, SCHEMA_VERSION};
use crate::evidence::{era_start, Evidence};
use crate::level::{Direction, Level};
use crate::ports::{StandingWrite, StoredCustomer};
use crate::replay::LevelChange;
use crate::rules::Rules;
use crate::time::Timestamp;

/// One customer's rescore, decided.
#[derive(Clone, Debug, PartialEq)]
pub struct RescorePlan {
    pub decision: Decision,
    pub previous_level: Level,
    /// Which way the level moved, if it did.
    pub direction: Option<Direction>,
    /// An `Engagement At Risk` notice goes out for this foreseen drop (once per drop).
    pub notify_risk: bool,
    /// `Level Changed` and `Engagement At Risk`, as they apply.
    pub events: Vec<DomainEvent>,
    /// The evidence rebased to a newer epoch, when the stored one had fallen behind.
    pub rebased: Option<Evidence>,
    /// When the sweep must look again (entering the at-risk window, or the drop).
    pub next_due: Option<Timestamp>,
    /// Nothing to publish or write: the stored standing, due time and evidence already match.
    pub unchanged: bool,
}

/// Decides a stored customer's level now and what follows from it.
pub fn plan_rescore(rules: &Rules, customer: &StoredCustomer, now: Timestamp) -> RescorePlan {
    let decision = decide(rules, &customer.state, now);
    let previous = customer.state.standing;
    let previous_level = previous.map_or(Level::Observing, |p| p.level);
    let direction = Direction::between(previous_level, decision.level);
    let notify_risk = decision.is_at_risk(now) && customer.at_risk_notified_for != decision.drops_at;
    let rebased = customer.state.evidence.epoch_is_stale().then(|| {
        let mut evidence = customer.state.evidence.clone();
        if let Some(last) = evidence.last_interaction_at {
            evidence.rebase(rules, era_start(last));
        }
        evidence
    });
    let next_due = decision.next_transition(now);
    let events = events_of(customer, &decision, previous_level, direction, notify_risk);
    let unchanged = events.is_empty() && rebased.is_none() && previous == Some(decision.standing()) && customer.due_at == next_due;
    RescorePlan {
        decision,
        previous_level,
        direction,
        notify_risk,
        events,
        rebased,
        next_due,
        unchanged,
    }
}

fn events_of(
    customer: &StoredCustomer,
    decision: &Decision,
    previous_level: Level,
    direction: Option<Direction>,
    notify_risk: bool,
) -> Vec<DomainEvent> {
    let explanation = EventExplanation::of(decision);
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
    events
}

impl RescorePlan {
    /// The write that records this plan, conditional on the version read. With `unpublished`,
    /// the events go into the customer's outbox and it stays due now, so the next run (or the
    /// sweep) publishes them.
    pub fn write(&self, customer: &StoredCustomer, unpublished: bool, now: Timestamp) -> StandingWrite {
        StandingWrite {
            customer_id: customer.id.clone(),
            expected_version: customer.version,
            previous: customer.state.standing,
            standing: self.decision.standing(),
            due_at: if unpublished { Some(now) } else { self.next_due },
            at_risk_notified_for: if self.notify_risk {
                self.decision.drops_at
            } else {
                customer.at_risk_notified_for
            },
            change: self.direction.map(|_| LevelChange {
                at: self.decision.since,
                from: self.previous_level,
                to: self.decision.level,
            }),
            rebased: self.rebased.clone(),
            outbox: if unpublished { self.events.clone() } else { Vec::new() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Channel, HandleStyle, Identity};
    use crate::interaction::{CustomerRef, Interaction};
    use crate::recording::newcomer;
    use crate::values::CustomerId;

    /// A customer just created by one review: stored at observing, due now.
    fn reviewer(rules: &Rules, at: Timestamp) -> StoredCustomer {
        let interaction = Interaction {
            id: "i1".into(),
            source: "test".into(),
            customer: CustomerRef {
                identity: Identity::new(Channel::parse("email").expect("valid"), HandleStyle::Email, "ada@example.com").expect("valid"),
                also: Vec::new(),
                name: None,
            },
            kind: "review_posted".into(),
            occurred_at: at,
            properties: None,
            weight: None,
        };
        let scored = interaction.score(rules).expect("a known kind");
        StoredCustomer {
            id: CustomerId("cus_1".into()),
            name: None,
            identities: Vec::new(),
            state: newcomer(rules, &[scored], at).state,
            version: 1,
            created_at: at,
            at_risk_notified_for: None,
            due_at: Some(at),
            merged_ids: Vec::new(),
            outbox: Vec::new(),
            erasing: false,
            rules_fingerprint: Some(rules.fingerprint()),
        }
    }

    #[test]
    fn a_rise_is_announced_and_written_with_its_change_and_unpublished_events_wait_in_the_outbox() {
        let rules = Rules::default_rules();
        let at = Timestamp::from_millis(1_700_000_000_000);
        let customer = reviewer(&rules, at);
        let now = at.plus_millis(1_000);
        let plan = plan_rescore(&rules, &customer, now);
        assert_eq!(plan.direction, Some(Direction::Up));
        assert!(!plan.unchanged);
        assert!(matches!(plan.events.first(), Some(DomainEvent::LevelChanged(change)) if change.to == plan.decision.level));

        let published = plan.write(&customer, false, now);
        assert_eq!(published.expected_version, 1);
        assert!(published.outbox.is_empty());
        assert_eq!(published.due_at, plan.next_due);
        assert_eq!(published.change.map(|c| c.to), Some(plan.decision.level));

        let unpublished = plan.write(&customer, true, now);
        assert_eq!(unpublished.outbox, plan.events);
        assert_eq!(unpublished.due_at, Some(now), "stays due so the next run publishes");
    }
}
