//! Re-folding a stored customer under new rules: its whole history replayed (evidence, consent,
//! standing and timeline as replay decides them now), written only if that history is the one the
//! stored evidence counts. Quiet: nothing is published, and an at-risk window the customer is
//! already in counts as told, so a rules change does not fire playbooks en masse.

use crate::interaction::Interaction;
use crate::level::{Direction, Level};
use crate::ports::{RefoldWrite, StoredCustomer};
use crate::replay::replay;
use crate::rules::Rules;
use crate::time::Timestamp;
use std::collections::HashSet;

/// The history read does not hold everything the stored evidence counts (an index that lags
/// behind, or an interaction recorded since the read): read both again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the history read is not the one the stored evidence counts")]
pub struct HistoryMismatch;

/// True when `history` is exactly what `customer`'s evidence folded: the same count per kind
/// (kinds the rules do not name, as "other") and the same latest interaction.
pub fn history_matches(rules: &Rules, customer: &StoredCustomer, history: &[Interaction]) -> bool {
    let mut counts = vec![0u64; rules.kind_count()];
    for interaction in history {
        let kind = rules.resolve_kind(&interaction.kind).unwrap_or_else(|| rules.other_kind());
        if let Some(count) = counts.get_mut(usize::from(kind.0)) {
            *count += 1;
        }
    }
    let latest = history.iter().map(|i| i.occurred_at).max();
    counts == customer.state.evidence.kind_counts && latest == customer.state.evidence.last_interaction_at
}

/// Replays `customer`'s history under `rules` as of `now` and decides what to store, or
/// [`HistoryMismatch`] when the history is not the one the stored evidence counts.
pub fn plan_refold(
    rules: &Rules,
    customer: &StoredCustomer,
    history: &[Interaction],
    now: Timestamp,
) -> Result<RefoldWrite, HistoryMismatch> {
    // Once each: during a merge an interaction may show under both ids.
    let mut seen = HashSet::with_capacity(history.len());
    let unique: Vec<Interaction> = history.iter().filter(|i| seen.insert(i.id.as_str())).cloned().collect();
    if !history_matches(rules, customer, &unique) {
        return Err(HistoryMismatch);
    }
    // Interactions stamped a little ahead of the clock are folded already: replay up to them.
    let at = customer.state.evidence.last_interaction_at.map_or(now, |last| last.max(now));
    let replayed = replay(rules, &unique, at);
    let decision = &replayed.decision;
    let due_at = if customer.outbox.is_empty() {
        decision.next_transition(now)
    } else {
        // Events still to publish: the sweep does so at once.
        Some(now)
    };
    Ok(RefoldWrite {
        customer_id: customer.id.clone(),
        expected_version: customer.version,
        previous_level: customer.state.standing.map_or(Level::Observing, |s| s.level),
        state: replayed.state.clone(),
        standing: decision.standing(),
        due_at,
        // Quiet: a window already entered is not announced by a rules change.
        at_risk_notified_for: if decision.is_at_risk(now) { decision.drops_at } else { None },
        moved: replayed.timeline.last().and_then(|c| Direction::between(c.from, c.to)),
        timeline: replayed.timeline.clone(),
        rules_fingerprint: rules.fingerprint(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Channel, HandleStyle, Identity};
    use crate::interaction::CustomerRef;
    use crate::recording::newcomer;
    use crate::values::CustomerId;
    use crate::MILLIS_PER_DAY;

    fn interaction(id: &str, kind: &str, day: i64) -> Interaction {
        Interaction {
            id: id.into(),
            source: "test".into(),
            customer: CustomerRef {
                identity: Identity::new(Channel::parse("email").expect("valid"), HandleStyle::Email, "ada@example.com").expect("valid"),
                also: Vec::new(),
                name: None,
            },
            kind: kind.into(),
            occurred_at: Timestamp::from_millis(1_700_000_000_000 + day * MILLIS_PER_DAY),
            properties: None,
            weight: None,
        }
    }

    fn stored(rules: &Rules, history: &[Interaction]) -> StoredCustomer {
        let scored: Vec<_> = history.iter().filter_map(|i| i.score(rules)).collect();
        StoredCustomer {
            id: CustomerId("cus_1".into()),
            name: None,
            identities: Vec::new(),
            state: newcomer(rules, &scored, history[0].occurred_at).state,
            version: 4,
            created_at: history[0].occurred_at,
            at_risk_notified_for: None,
            due_at: None,
            merged_ids: Vec::new(),
            outbox: Vec::new(),
            erasing: false,
            rules_fingerprint: None,
        }
    }

    #[test]
    fn a_refold_stores_what_replay_decides_under_the_new_rules() {
        let old = Rules::default_rules();
        let history = vec![interaction("a", "review_posted", 0), interaction("b", "event_attended", 3)];
        let customer = stored(&old, &history);
        let text = crate::rules::DEFAULT_RULES_TOML.replace("hysteresis = 0.8", "hysteresis = 0.7");
        let new = Rules::from_toml(&text).expect("valid");
        assert_ne!(new.fingerprint(), old.fingerprint());
        let now = history[1].occurred_at.plus_millis(MILLIS_PER_DAY);
        let write = plan_refold(&new, &customer, &history, now).expect("the history matches");
        let replayed = replay(&new, &history, now);
        assert_eq!(write.standing, replayed.decision.standing());
        assert_eq!(write.timeline, replayed.timeline);
        assert_eq!(write.expected_version, 4);
        assert_eq!(write.rules_fingerprint, new.fingerprint());
    }

    #[test]
    fn a_history_missing_an_interaction_or_the_latest_one_is_refused() {
        let rules = Rules::default_rules();
        let history = vec![interaction("a", "review_posted", 0), interaction("b", "event_attended", 3)];
        let customer = stored(&rules, &history);
        let now = history[1].occurred_at;
        assert_eq!(plan_refold(&rules, &customer, &history[..1], now), Err(HistoryMismatch));
        let mut moved = history.clone();
        moved[1].occurred_at = moved[1].occurred_at.minus_millis(1);
        assert_eq!(plan_refold(&rules, &customer, &moved, now), Err(HistoryMismatch));
        let mut twice = history.clone();
        twice.push(history[0].clone());
        assert!(
            plan_refold(&rules, &customer, &twice, now).is_ok(),
            "the same interaction twice counts once"
        );
    }
}
