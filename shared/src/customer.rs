//! A customer's scoring state: evidence, consent per channel and the current standing.

use crate::evidence::{Contribution, Evidence};
use crate::identity::Channel;
use crate::level::Level;
use crate::rules::{ConsentEffect, Rules};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The latest consent decision on one channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub granted: bool,
    pub at: Timestamp,
}

/// Consent per channel. The latest decision wins; on a tie, withdrawal wins (the safe side).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Consents(pub BTreeMap<Channel, ConsentRecord>);

impl Consents {
    pub fn record(&mut self, channel: &Channel, granted: bool, at: Timestamp) {
        let replaces = match self.0.get(channel) {
            None => true,
            Some(existing) => at > existing.at || (at == existing.at && !granted),
        };
        if replaces {
            self.0.insert(channel.clone(), ConsentRecord { granted, at });
        }
    }

    pub fn granted(&self, channel: &Channel) -> bool {
        self.0.get(channel).is_some_and(|c| c.granted)
    }

    pub fn any_granted(&self) -> bool {
        self.0.values().any(|c| c.granted)
    }

    /// Merging two customers: a withdrawal on either side wins over any grant (the strictest
    /// consent), otherwise the latest grant.
    pub fn merge_strictest(&self, other: &Consents) -> Consents {
        let mut merged = self.0.clone();
        for (channel, theirs) in &other.0 {
            let keep = match merged.get(channel) {
                None => *theirs,
                Some(ours) if ours.granted && theirs.granted => {
                    if theirs.at > ours.at {
                        *theirs
                    } else {
                        *ours
                    }
                }
                Some(ours) if !ours.granted && !theirs.granted => {
                    if theirs.at > ours.at {
                        *theirs
                    } else {
                        *ours
                    }
                }
                Some(ours) if !ours.granted => *ours,
                Some(_) => *theirs,
            };
            merged.insert(channel.clone(), keep);
        }
        Consents(merged)
    }
}

/// The level a customer was last decided to be at, and what that decision foresaw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    pub level: Level,
    pub since: Timestamp,
    /// When the level drops if nothing new arrives.
    pub drops_at: Option<Timestamp>,
    /// When the customer enters the at-risk window (`drops_at − horizon`).
    pub at_risk_at: Option<Timestamp>,
}

/// One interaction as scoring sees it: its contribution, and its effect on consent.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoredInteraction {
    pub contribution: Contribution,
    pub consent: Option<(Channel, ConsentEffect)>,
}

/// Everything the core needs to decide a customer's level; O(levels + kinds + channels).
#[derive(Clone, Debug, PartialEq)]
pub struct CustomerState {
    pub evidence: Evidence,
    pub consent: Consents,
    pub standing: Option<Standing>,
}

impl CustomerState {
    pub fn new(rules: &Rules) -> CustomerState {
        CustomerState {
            evidence: Evidence::empty(rules),
            consent: Consents::default(),
            standing: None,
        }
    }

    pub fn fold(&mut self, rules: &Rules, interaction: &ScoredInteraction) {
        self.evidence.fold(rules, &interaction.contribution);
        if let Some((channel, effect)) = &interaction.consent {
            self.consent
                .record(channel, *effect == ConsentEffect::Grant, interaction.contribution.occurred_at);
        }
    }

    /// Merges another customer into this one (identity merge): evidence as if both histories had
    /// been folded together, the strictest consent, and the higher standing.
    pub fn merge(&self, rules: &Rules, other: &CustomerState) -> CustomerState {
        let standing = match (self.standing, other.standing) {
            (Some(a), Some(b)) => Some(if b.level > a.level || (b.level == a.level && b.since < a.since) {
                b
            } else {
                a
            }),
            (a, b) => a.or(b),
        };
        CustomerState {
            evidence: self.evidence.merge(rules, &other.evidence),
            consent: self.consent.merge_strictest(&other.consent),
            standing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Channel {
        Channel::parse("email").expect("valid")
    }

    #[test]
    fn the_latest_consent_decision_wins_whatever_the_arrival_order() {
        let mut consent = Consents::default();
        consent.record(&email(), false, Timestamp(20));
        consent.record(&email(), true, Timestamp(10));
        assert!(!consent.granted(&email()));
        consent.record(&email(), true, Timestamp(30));
        assert!(consent.granted(&email()));
        consent.record(&email(), false, Timestamp(30));
        assert!(!consent.granted(&email()), "a withdrawal at the same instant wins");
    }

    #[test]
    fn merging_keeps_a_withdrawal_over_a_later_grant() {
        let mut withdrawn = Consents::default();
        withdrawn.record(&email(), false, Timestamp(10));
        let mut granted = Consents::default();
        granted.record(&email(), true, Timestamp(99));
        assert!(!withdrawn.merge_strictest(&granted).granted(&email()));
        assert!(!granted.merge_strictest(&withdrawn).granted(&email()));
    }
}
