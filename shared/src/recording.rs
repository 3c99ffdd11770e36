//! What recording interactions does to a customer, as data the store writes: a newcomer's first
//! state and standing, and for a known customer the sums to add against its stored epoch (so the
//! store folds by atomic adds, with no read-modify-write).

use crate::customer::{CustomerState, ScoredInteraction, Standing};
use crate::evidence::Evidence;
use crate::identity::Channel;
use crate::level::{Level, LEVEL_COUNT};
use crate::rules::{ConsentEffect, Rules};
use crate::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// A customer created by its first interactions.
#[derive(Clone, Debug, PartialEq)]
pub struct Newcomer {
    /// Their interactions folded: evidence and consent.
    pub state: CustomerState,
    /// Observing since the first interaction: whatever the evidence, a rise is rescore's to decide
    /// (and to announce with `Level Changed`). The pyramid counts them as joined that day.
    pub standing: Standing,
}

/// Decides a new customer's first state from the interactions that created them.
pub fn newcomer(rules: &Rules, scored: &[ScoredInteraction], first_at: Timestamp) -> Newcomer {
    let mut state = CustomerState::new(rules);
    for item in scored {
        state.fold(rules, item);
    }
    let standing = Standing {
        level: Level::Observing,
        since: first_at,
        drops_at: None,
        at_risk_at: None,
    };
    state.standing = Some(standing);
    Newcomer { state, standing }
}

/// What a batch of interactions adds to a known customer's stored sums, against `epoch`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvidenceAdds {
    /// Per level (the store quantizes what it adds).
    pub levels: [f64; LEVEL_COUNT],
    /// Per kind name: evidence and how many interactions.
    pub kinds: BTreeMap<String, (f64, i64)>,
}

/// Sums the interactions' contributions against the stored epoch.
pub fn evidence_adds(rules: &Rules, epoch: Timestamp, scored: &[ScoredInteraction]) -> EvidenceAdds {
    let mut levels = [0.0; LEVEL_COUNT];
    let mut kinds: BTreeMap<String, (f64, i64)> = BTreeMap::new();
    for item in scored {
        let delta = Evidence::delta(rules, epoch, &item.contribution);
        for (sum, term) in levels.iter_mut().zip(delta.levels) {
            *sum += term;
        }
        let entry = kinds.entry(rules.kind_name(delta.kind).to_string()).or_default();
        entry.0 += delta.kind_evidence;
        entry.1 += 1;
    }
    EvidenceAdds { levels, kinds }
}

/// The consent decisions among the interactions: per channel and whether granted, the instants.
pub fn consent_marks(scored: &[ScoredInteraction]) -> BTreeMap<(Channel, bool), BTreeSet<Timestamp>> {
    let mut marks: BTreeMap<(Channel, bool), BTreeSet<Timestamp>> = BTreeMap::new();
    for item in scored {
        if let Some((channel, effect)) = &item.consent {
            marks
                .entry((channel.clone(), *effect == ConsentEffect::Grant))
                .or_default()
                .insert(item.contribution.occurred_at);
        }
    }
    marks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::decide;
    use crate::identity::{HandleStyle, Identity};
    use crate::interaction::{CustomerRef, Interaction};

    fn scored(rules: &Rules, id: &str, kind: &str, at: Timestamp) -> ScoredInteraction {
        let interaction = Interaction {
            id: id.into(),
            source: "test".into(),
            customer: CustomerRef {
                identity: Identity::new(Channel::parse("email").expect("valid"), HandleStyle::Email, "ada@example.com").expect("valid"),
                name: None,
                also: Vec::new(),
            },
            kind: kind.into(),
            occurred_at: at,
            properties: None,
            weight: None,
        };
        interaction.score(rules).expect("a known kind")
    }

    #[test]
    fn a_newcomer_stands_at_observing_since_the_first_interaction_whatever_the_evidence() {
        let rules = Rules::default_rules();
        let first = Timestamp::from_millis(1_700_000_000_000);
        let later = first.plus_millis(60_000);
        let items = [
            scored(&rules, "i2", "review_posted", later),
            scored(&rules, "i1", "review_posted", first),
        ];
        let newcomer = newcomer(&rules, &items, first);
        assert_eq!(newcomer.standing.level, Level::Observing);
        assert_eq!(newcomer.standing.since, first);
        assert_eq!(newcomer.state.standing, Some(newcomer.standing));
        // The evidence is folded: the rescore that follows raises them.
        assert!(decide(&rules, &newcomer.state, later).level > Level::Observing);
    }

    #[test]
    fn adds_against_the_epoch_sum_to_what_folding_gives() {
        let rules = Rules::default_rules();
        let first = Timestamp::from_millis(1_700_000_000_000);
        let items = [
            scored(&rules, "i1", "review_posted", first),
            scored(&rules, "i2", "review_posted", first.plus_millis(1_000)),
        ];
        let folded = newcomer(&rules, &items, first).state.evidence;
        let adds = evidence_adds(&rules, folded.epoch, &items);
        assert_eq!(adds.kinds["review_posted"].1, 2);
        for (level, sum) in adds.levels.iter().enumerate() {
            assert!((sum - folded.levels[level]).abs() <= 1e-9 * sum.abs().max(1.0), "level {level}");
        }
    }
}
