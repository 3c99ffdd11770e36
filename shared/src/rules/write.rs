//! Writing rules back as a complete TOML file that [`Rules::from_toml`] reads into the same rules
//! (calibration's proposal). Comments are not kept: the file is the rules, not their story.

use super::{ConsentEffect, Rules, Trigger, UnknownKinds};
use crate::identity::HandleStyle;
use crate::level::Level;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize)]
struct File<'a> {
    hysteresis: f64,
    at_risk_horizon_days: f64,
    unknown_kinds: &'static str,
    levels: Levels,
    channels: BTreeMap<&'a str, Channel>,
    kinds: BTreeMap<&'a str, Kind>,
    nudges: Nudges,
    playbooks: Vec<Playbook<'a>>,
}

/// In rung order, as people read them.
#[derive(Serialize)]
struct Levels {
    observing: Level1,
    following: Level1,
    endorsing: Level1,
    contributing: Level1,
    owning: Level1,
    leading: Level1,
}

#[derive(Serialize)]
struct Level1 {
    threshold: f64,
    half_life_days: f64,
}

#[derive(Serialize)]
struct Channel {
    handle: &'static str,
}

#[derive(Serialize)]
struct Kind {
    level: &'static str,
    weight: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    consent: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_weight: Option<f64>,
}

#[derive(Serialize)]
struct Nudges {
    frequency_cap: u32,
    frequency_window_days: f64,
    holdout_percent: u8,
}

#[derive(Serialize)]
struct Playbook<'a> {
    name: &'a str,
    trigger: BTreeMap<&'static str, String>,
    cool_down_days: f64,
    holdout_percent: u8,
    steps: Vec<Step<'a>>,
}

#[derive(Serialize)]
struct Step<'a> {
    action: &'a str,
    channel: &'a str,
    outcome: &'a [String],
}

impl Rules {
    /// The rules as a complete TOML file: every level, channel, kind, the nudge policy and every
    /// playbook, so that `Rules::from_toml(&rules.to_toml())` gives these rules back.
    pub fn to_toml(&self) -> String {
        let level = |l: Level| Level1 {
            threshold: self.threshold(l),
            half_life_days: self.level(l).half_life_days,
        };
        let file = File {
            hysteresis: self.hysteresis,
            at_risk_horizon_days: self.at_risk_horizon_days,
            unknown_kinds: match self.unknown_kinds {
                UnknownKinds::Observe => "observe",
                UnknownKinds::Reject => "reject",
            },
            levels: Levels {
                observing: level(Level::Observing),
                following: level(Level::Following),
                endorsing: level(Level::Endorsing),
                contributing: level(Level::Contributing),
                owning: level(Level::Owning),
                leading: level(Level::Leading),
            },
            channels: self
                .channels
                .iter()
                .map(|(name, style)| {
                    let handle = match style {
                        HandleStyle::Email => "email",
                        HandleStyle::Social => "social",
                        HandleStyle::Phone => "phone",
                        HandleStyle::Exact => "exact",
                    };
                    (name.as_str(), Channel { handle })
                })
                .collect(),
            kinds: self
                .kinds
                .iter()
                .map(|kind| {
                    let written = Kind {
                        level: kind.level.name(),
                        weight: kind.weight,
                        consent: kind.consent.map(|effect| match effect {
                            ConsentEffect::Grant => "grant",
                            ConsentEffect::Withdraw => "withdraw",
                        }),
                        max_weight: kind.max_weight,
                    };
                    (kind.name.as_str(), written)
                })
                .collect(),
            nudges: Nudges {
                frequency_cap: self.nudges.frequency_cap,
                frequency_window_days: self.nudges.frequency_window_days,
                holdout_percent: self.nudges.holdout_percent,
            },
            playbooks: self
                .playbooks
                .iter()
                .map(|playbook| Playbook {
                    name: &playbook.name,
                    trigger: BTreeMap::from([match &playbook.trigger {
                        Trigger::LevelReached(level) => ("level_reached", level.name().to_string()),
                        Trigger::AtRisk(level) => ("at_risk", level.name().to_string()),
                        Trigger::Interaction(kind) => ("interaction", kind.clone()),
                    }]),
                    cool_down_days: playbook.cool_down_days,
                    holdout_percent: playbook.holdout_percent,
                    steps: playbook
                        .steps
                        .iter()
                        .map(|step| Step {
                            action: &step.action,
                            channel: step.channel.as_str(),
                            outcome: &step.outcome,
                        })
                        .collect(),
                })
                .collect(),
        };
        match toml::to_string(&file) {
            Ok(text) => text,
            // Plain strings, numbers and tables always serialize; failing is a defect here.
            Err(error) => panic!("rules did not serialize to TOML: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::level::LEVEL_COUNT;
    use crate::rules::LevelRule;

    fn same(a: &Rules, b: &Rules) {
        assert_eq!(a.hysteresis, b.hysteresis);
        assert_eq!(a.at_risk_horizon_days, b.at_risk_horizon_days);
        assert_eq!(a.unknown_kinds, b.unknown_kinds);
        assert_eq!(a.level_rules(), b.level_rules());
        assert_eq!(a.kinds(), b.kinds());
        assert_eq!(a.channels, b.channels);
        assert_eq!(a.nudges, b.nudges);
        assert_eq!(a.playbooks, b.playbooks);
        assert_eq!(a.inverse_half_life_ms(), b.inverse_half_life_ms());
        assert_eq!(a.heaviest_kind_at, b.heaviest_kind_at);
    }

    #[test]
    fn the_default_rules_written_and_read_back_are_the_same_rules() {
        let rules = Rules::default_rules();
        let text = rules.to_toml();
        let read = Rules::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        same(&rules, &read);
        assert!(!text.contains('#'), "no comments");
    }

    #[test]
    fn changed_levels_and_weights_survive_the_round_trip() {
        let rules = Rules::default_rules();
        let levels: [LevelRule; LEVEL_COUNT] = std::array::from_fn(|i| LevelRule {
            threshold: if i == 0 { 0.0 } else { 0.1 + i as f64 * 1.37 },
            half_life_days: 400.0 - i as f64 * 33.3,
        });
        let weights: Vec<f64> = rules
            .kinds()
            .iter()
            .enumerate()
            .map(|(i, k)| k.weight * 1.1 + i as f64 / 7.0)
            .collect();
        let changed = rules.with_level_rules(levels).with_kind_weights(&weights);
        let read = Rules::from_toml(&changed.to_toml()).expect("valid");
        same(&changed, &read);
        assert_ne!(read.threshold(Level::Owning), rules.threshold(Level::Owning));
    }
}
