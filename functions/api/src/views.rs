//! The JSON the API answers with. Field names follow the vocabulary (customer, identity, level,
//! evidence, decision, nudge, consent); times are RFC 3339.

use engagement::flow::{end_of_day, Day, DayFlow};
use engagement::ports::{CustomerId, CustomerSummary, LinkOutcome, Movers, PyramidCounts, StepOutcomes, StoredCustomer, StoredNudge};
use engagement::{ConsentEffect, HandleStyle, NudgeOutcome, Rules, SuppressReason, UnknownKinds, ATTRIBUTION_DAYS};
use engagement::{ConsentRecord, Decision, Direction, Explanation, Identity, Interaction, Level, LevelChange, Timestamp, Trigger};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct CustomerView {
    pub id: CustomerId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub identities: Vec<Identity>,
    /// Consent per channel: the latest decision and when it was made.
    pub consent: BTreeMap<String, ConsentRecord>,
    /// The decision: where the customer stands, since when, when that would change, and why.
    pub level: Level,
    pub since: Timestamp,
    pub drops_at: Option<Timestamp>,
    pub drops_to: Option<Level>,
    pub at_risk_at: Option<Timestamp>,
    pub at_risk: bool,
    /// The explanation as a sentence.
    pub summary: String,
    pub explanation: Explanation,
    /// The instant this view is as of (now, or `?at=`).
    pub as_of: Timestamp,
    /// Every change of level, oldest first: as recorded, or with `?at=` as replayed up to then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<LevelChange>>,
    /// Ids of customers merged into this one (they redirect here).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged_ids: Vec<CustomerId>,
    /// The latest interactions, newest first; `cursor` fetches older ones.
    pub interactions: InteractionPage,
    pub nudges: Vec<NudgeView>,
}

#[derive(Debug, Serialize)]
pub struct InteractionPage {
    pub items: Vec<Interaction>,
    pub cursor: Option<String>,
}

impl CustomerView {
    pub fn new(
        customer: &StoredCustomer,
        decision: &Decision,
        as_of: Timestamp,
        timeline: Option<Vec<LevelChange>>,
        interactions: Vec<Interaction>,
        cursor: Option<String>,
        nudges: Vec<StoredNudge>,
    ) -> CustomerView {
        let mut nudges: Vec<NudgeView> = nudges.into_iter().map(NudgeView::from).collect();
        nudges.sort_by_key(|n| std::cmp::Reverse(n.decided_at));
        CustomerView {
            id: customer.id.clone(),
            name: customer.name.clone(),
            identities: customer.identities.clone(),
            consent: customer
                .state
                .consent
                .0
                .iter()
                .map(|(channel, record)| (channel.to_string(), *record))
                .collect(),
            level: decision.level,
            since: decision.since,
            drops_at: decision.drops_at,
            drops_to: decision.drops_to,
            at_risk_at: decision.at_risk_at,
            at_risk: decision.is_at_risk(as_of),
            summary: decision.summary(),
            explanation: decision.explanation.clone(),
            as_of,
            timeline,
            merged_ids: customer.merged_ids.clone(),
            interactions: InteractionPage {
                items: interactions,
                cursor,
            },
            nudges,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct NudgeView {
    pub nudge_id: String,
    pub playbook: String,
    pub step: u32,
    pub action: String,
    pub channel: String,
    pub outcome: NudgeOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<SuppressReason>,
    pub trigger: Trigger,
    pub decided_at: Timestamp,
}

impl From<StoredNudge> for NudgeView {
    fn from(nudge: StoredNudge) -> NudgeView {
        NudgeView {
            nudge_id: nudge.nudge_id,
            playbook: nudge.decision.playbook,
            step: nudge.decision.step,
            action: nudge.decision.action,
            channel: nudge.decision.channel.to_string(),
            outcome: nudge.decision.outcome,
            reason: nudge.decision.reason,
            trigger: nudge.trigger,
            decided_at: nudge.decided_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CustomerSummaryView {
    pub id: CustomerId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub level: Level,
    pub since: Timestamp,
    pub drops_at: Option<Timestamp>,
    pub at_risk_at: Option<Timestamp>,
    pub at_risk: bool,
    /// Which way the latest level change went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// The older name of `direction`, still sent for existing clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved: Option<Direction>,
}

impl CustomerSummaryView {
    pub fn new(summary: CustomerSummary, now: Timestamp) -> CustomerSummaryView {
        let standing = summary.standing;
        CustomerSummaryView {
            id: summary.id,
            name: summary.name,
            level: standing.level,
            since: standing.since,
            drops_at: standing.drops_at,
            at_risk_at: standing.at_risk_at,
            at_risk: standing.at_risk_at.is_some_and(|t| t <= now),
            direction: summary.moved,
            moved: summary.moved,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Listing {
    pub customers: Vec<CustomerSummaryView>,
    /// Fetches the next page; `null` on the last. With `at_risk=true` the listing reads on until
    /// the page is full or the levels run out.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LevelCount {
    pub level: Level,
    pub rung: u8,
    pub title: &'static str,
    pub customers: u64,
}

#[derive(Debug, Serialize)]
pub struct MoverCounts {
    /// Customers who rose to each level.
    pub up: BTreeMap<Level, u64>,
    /// Customers who dropped from each level.
    pub down: BTreeMap<Level, u64>,
}

impl MoverCounts {
    fn of(movers: &Movers) -> MoverCounts {
        let per_level = |counts: &[u64; engagement::LEVEL_COUNT]| Level::ALL.iter().map(|l| (*l, counts[l.index()])).collect();
        MoverCounts {
            up: per_level(&movers.up),
            down: per_level(&movers.down),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PyramidView {
    /// Observing first, leading last.
    pub levels: Vec<LevelCount>,
    pub total: u64,
    pub movers: BTreeMap<&'static str, MoverCounts>,
    pub as_of: Timestamp,
}

impl PyramidView {
    pub fn new(counts: &PyramidCounts, week: &Movers, month: &Movers, now: Timestamp) -> PyramidView {
        PyramidView {
            levels: Level::ALL
                .iter()
                .map(|l| LevelCount {
                    level: *l,
                    rung: l.rung(),
                    title: l.title(),
                    customers: counts.at(*l),
                })
                .collect(),
            total: counts.0.iter().sum(),
            movers: BTreeMap::from([("last_7_days", MoverCounts::of(week)), ("last_30_days", MoverCounts::of(month))]),
            as_of: now,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct MoversView {
    pub since: Timestamp,
    pub until: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up: Option<BTreeMap<Level, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down: Option<BTreeMap<Level, u64>>,
}

impl MoversView {
    pub fn new(movers: &Movers, since: Timestamp, until: Timestamp, direction: Option<Direction>) -> MoversView {
        let counts = MoverCounts::of(movers);
        MoversView {
            since,
            until,
            up: (direction != Some(Direction::Down)).then_some(counts.up),
            down: (direction != Some(Direction::Up)).then_some(counts.down),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LinkView {
    pub customer_id: CustomerId,
    pub identity: Identity,
    /// `linked`, `already_linked`, or `merged` (the identity's customer merged into this one).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_customer_id: Option<CustomerId>,
}

impl LinkView {
    pub fn new(customer_id: &CustomerId, identity: &Identity, outcome: &LinkOutcome) -> LinkView {
        let (name, merged) = match outcome {
            LinkOutcome::Linked => ("linked", None),
            LinkOutcome::AlreadyLinked => ("already_linked", None),
            LinkOutcome::Merged { merged } => ("merged", Some(merged.clone())),
        };
        LinkView {
            customer_id: customer_id.clone(),
            identity: identity.clone(),
            outcome: name,
            merged_customer_id: merged,
        }
    }
}

fn per_level(counts: &PyramidCounts) -> BTreeMap<Level, u64> {
    Level::ALL.iter().map(|l| (*l, counts.at(*l))).collect()
}

#[derive(Debug, Serialize)]
pub struct WeekView {
    /// The end of the week's last day.
    pub ends_at: Timestamp,
    pub levels: BTreeMap<Level, u64>,
}

#[derive(Debug, Serialize)]
pub struct WeeklyView {
    pub as_of: Timestamp,
    /// Oldest first.
    pub weeks: Vec<WeekView>,
}

impl WeeklyView {
    pub fn new(series: &[(Day, PyramidCounts)], as_of: Timestamp) -> WeeklyView {
        WeeklyView {
            as_of,
            weeks: series
                .iter()
                .map(|(day, counts)| WeekView {
                    ends_at: end_of_day(*day),
                    levels: per_level(counts),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct MoveCount {
    pub from: Level,
    pub to: Level,
    pub customers: u64,
}

#[derive(Debug, Serialize)]
pub struct TransitionsView {
    pub from: Timestamp,
    pub to: Timestamp,
    /// The pyramid when the period began, and when it ended.
    pub start: BTreeMap<Level, u64>,
    pub end: BTreeMap<Level, u64>,
    /// New customers in the period.
    pub joined: u64,
    /// Customers who left the pyramid (erased, or merged into another), by the level they left.
    pub left: BTreeMap<Level, u64>,
    /// Level changes in the period (a customer who rose twice counts in both), nonzero only.
    pub moves: Vec<MoveCount>,
}

impl TransitionsView {
    pub fn new(from: Timestamp, to: Timestamp, start: &PyramidCounts, end: &PyramidCounts, flow: &DayFlow) -> TransitionsView {
        let mut moves = Vec::new();
        for from_level in Level::ALL {
            for to_level in Level::ALL {
                let customers = flow.moved[from_level.index()][to_level.index()];
                if customers > 0 {
                    moves.push(MoveCount {
                        from: from_level,
                        to: to_level,
                        customers,
                    });
                }
            }
        }
        TransitionsView {
            from,
            to,
            start: per_level(start),
            end: per_level(end),
            joined: flow.joined,
            left: Level::ALL.iter().map(|l| (*l, flow.left[l.index()])).collect(),
            moves,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct StepOutcomesView {
    pub playbook: String,
    pub step: u32,
    /// The step's action, as the rules name it now (absent if the rules no longer have it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    pub sent: u64,
    pub held_out: u64,
    pub suppressed: BTreeMap<String, u64>,
    pub sent_moved_up: u64,
    pub held_out_moved_up: u64,
}

#[derive(Debug, Serialize)]
pub struct OutcomesView {
    /// A rise counts toward a nudge when it came this many days or fewer after it.
    pub attribution_days: i64,
    pub steps: Vec<StepOutcomesView>,
}

impl OutcomesView {
    pub fn new(steps: Vec<StepOutcomes>, rules: &Rules) -> OutcomesView {
        OutcomesView {
            attribution_days: ATTRIBUTION_DAYS,
            steps: steps
                .into_iter()
                .map(|s| StepOutcomesView {
                    action: rules
                        .playbooks
                        .iter()
                        .find(|p| p.name == s.playbook)
                        .and_then(|p| p.steps.get((s.step as usize).wrapping_sub(1)))
                        .map(|step| step.action.clone()),
                    playbook: s.playbook,
                    step: s.step,
                    sent: s.sent,
                    held_out: s.held_out,
                    suppressed: s.suppressed,
                    sent_moved_up: s.sent_moved_up,
                    held_out_moved_up: s.held_out_moved_up,
                })
                .collect(),
        }
    }
}

/// `GET /v1/rules`: the rules in force, shaped as the rules file is (the same names and nesting,
/// every default filled in), so what a client reads is what it would write to change them.
#[derive(Debug, Serialize)]
pub struct RulesView {
    pub hysteresis: f64,
    pub at_risk_horizon_days: f64,
    pub unknown_kinds: UnknownKinds,
    /// Every level, observing first.
    pub levels: BTreeMap<Level, LevelRuleView>,
    pub channels: BTreeMap<String, ChannelRuleView>,
    pub kinds: BTreeMap<String, KindRuleView>,
    pub nudges: NudgePolicyView,
    pub playbooks: Vec<PlaybookView>,
}

#[derive(Debug, Serialize)]
pub struct LevelRuleView {
    pub threshold: f64,
    pub half_life_days: f64,
}

#[derive(Debug, Serialize)]
pub struct ChannelRuleView {
    pub handle: HandleStyle,
}

#[derive(Debug, Serialize)]
pub struct KindRuleView {
    pub level: Level,
    pub weight: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentEffect>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_weight: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct NudgePolicyView {
    pub frequency_cap: u32,
    pub frequency_window_days: f64,
    pub holdout_percent: u8,
}

#[derive(Debug, Serialize)]
pub struct PlaybookView {
    pub name: String,
    pub trigger: Trigger,
    pub cool_down_days: f64,
    pub holdout_percent: u8,
    /// In order: step 1 first, as `/v1/nudges/outcomes` numbers them.
    pub steps: Vec<StepView>,
}

#[derive(Debug, Serialize)]
pub struct StepView {
    pub action: String,
    pub channel: String,
    pub outcome: Vec<String>,
}

impl RulesView {
    pub fn new(rules: &Rules) -> RulesView {
        RulesView {
            hysteresis: rules.hysteresis,
            at_risk_horizon_days: rules.at_risk_horizon_days,
            unknown_kinds: rules.unknown_kinds,
            levels: Level::ALL
                .iter()
                .map(|level| {
                    let rule = rules.level(*level);
                    (
                        *level,
                        LevelRuleView {
                            threshold: rule.threshold,
                            half_life_days: rule.half_life_days,
                        },
                    )
                })
                .collect(),
            channels: rules
                .channels()
                .iter()
                .map(|(channel, style)| (channel.clone(), ChannelRuleView { handle: *style }))
                .collect(),
            kinds: rules
                .kinds()
                .iter()
                .map(|kind| {
                    (
                        kind.name.clone(),
                        KindRuleView {
                            level: kind.level,
                            weight: kind.weight,
                            consent: kind.consent,
                            max_weight: kind.max_weight,
                        },
                    )
                })
                .collect(),
            nudges: NudgePolicyView {
                frequency_cap: rules.nudges.frequency_cap,
                frequency_window_days: rules.nudges.frequency_window_days,
                holdout_percent: rules.nudges.holdout_percent,
            },
            playbooks: rules
                .playbooks
                .iter()
                .map(|playbook| PlaybookView {
                    name: playbook.name.clone(),
                    trigger: playbook.trigger.clone(),
                    cool_down_days: playbook.cool_down_days,
                    holdout_percent: playbook.holdout_percent,
                    steps: playbook
                        .steps
                        .iter()
                        .map(|step| StepView {
                            action: step.action.clone(),
                            channel: step.channel.to_string(),
                            outcome: step.outcome.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engagement::rules::DEFAULT_RULES_TOML;
    use serde_json::Value;

    /// Whether `actual` says everything `expected` says (numbers compared as numbers: the file's
    /// `threshold = 0` is the answer's `0.0`); `actual` may say more (defaults filled in).
    fn says_all_of(actual: &Value, expected: &Value, at: &str, missing: &mut Vec<String>) {
        match (actual, expected) {
            (Value::Object(actual), Value::Object(expected)) => {
                for (key, value) in expected {
                    match actual.get(key) {
                        Some(found) => says_all_of(found, value, &format!("{at}.{key}"), missing),
                        None => missing.push(format!("{at}.{key}")),
                    }
                }
            }
            (Value::Array(actual), Value::Array(expected)) if actual.len() == expected.len() => {
                for (n, (found, value)) in actual.iter().zip(expected).enumerate() {
                    says_all_of(found, value, &format!("{at}[{n}]"), missing);
                }
            }
            (Value::Number(actual), Value::Number(expected)) if actual.as_f64() == expected.as_f64() => {}
            _ if actual == expected => {}
            _ => missing.push(format!("{at}: {actual} instead of {expected}")),
        }
    }

    #[test]
    fn the_view_says_everything_the_rules_file_says() {
        let view = serde_json::to_value(RulesView::new(&Rules::default_rules())).expect("JSON");
        let file: Value = toml::from_str(DEFAULT_RULES_TOML).expect("the rules file");
        let mut missing = Vec::new();
        says_all_of(&view, &file, "", &mut missing);
        assert!(missing.is_empty(), "the view leaves out or changes: {missing:?}");
    }

    #[test]
    fn the_view_written_back_as_toml_is_a_rules_file_with_the_same_rules() {
        let custom = DEFAULT_RULES_TOML.replace("unknown_kinds = \"observe\"", "unknown_kinds = \"reject\"");
        let view = serde_json::to_value(RulesView::new(&Rules::from_toml(&custom).expect("valid"))).expect("JSON");
        let written = toml::to_string(&view).expect("TOML");
        let read = Rules::from_toml(&written).unwrap_or_else(|e| panic!("{e}\n{written}"));
        assert_eq!(serde_json::to_value(RulesView::new(&read)).expect("JSON"), view);
        assert_eq!(view["unknown_kinds"], "reject");
        // The answer lists the levels from the bottom up, as the pyramid reads.
        let text = serde_json::to_string(&RulesView::new(&read)).expect("JSON");
        let at: Vec<usize> = Level::ALL
            .iter()
            .map(|l| text.find(&format!("\"{}\":{{\"threshold\"", l.name())).expect("every level"))
            .collect();
        assert!(at.is_sorted(), "levels not observing first: {text}");
    }
}
