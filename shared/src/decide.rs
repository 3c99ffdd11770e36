//! Deciding a customer's level at an instant, when it will drop, when it becomes at risk, and why.

use crate::customer::{CustomerState, Standing};
use crate::level::{Direction, Level, LEVEL_COUNT};
use crate::rules::{KindId, Rules};
use crate::time::{Timestamp, MILLIS_PER_DAY};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Where a customer stands at an instant, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub level: Level,
    /// Since when the customer has been at `level`.
    pub since: Timestamp,
    /// The first instant at which the level is lower, if nothing new arrives.
    pub drops_at: Option<Timestamp>,
    /// The level it drops to at `drops_at`.
    pub drops_to: Option<Level>,
    /// The instant the customer enters the at-risk window (`drops_at − at_risk_horizon`).
    pub at_risk_at: Option<Timestamp>,
    /// The level the customer had before this decision.
    pub previous: Level,
    pub explanation: Explanation,
}

/// Evidence against the bars for one level.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RungEvidence {
    pub level: Level,
    pub evidence: f64,
    /// Evidence needed to rise to this level.
    pub threshold: f64,
    /// Evidence needed to stay once there (`hysteresis × threshold`).
    pub hold_threshold: f64,
}

/// A kind that contributed to the customer's level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KindContribution {
    pub kind: String,
    pub level: Level,
    /// Its decayed evidence now.
    pub evidence: f64,
    /// How many interactions of this kind were folded.
    pub count: u64,
}

/// What would move the customer up one level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NextStep {
    pub level: Level,
    /// Evidence still missing for that level (0 when only consent is missing).
    pub missing_evidence: f64,
    /// True when the customer must also give consent on some channel.
    pub needs_consent: bool,
    /// An interaction kind that would do it, and how many of them.
    pub suggested_kind: Option<String>,
    pub suggested_count: u32,
}

/// Why a customer is where they are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// One entry per level, observing first.
    pub rungs: Vec<RungEvidence>,
    /// The kinds that contributed most to the current level, largest first (at most three).
    pub top_kinds: Vec<KindContribution>,
    pub next_step: Option<NextStep>,
    pub has_consent: bool,
}

impl Decision {
    pub fn direction(&self) -> Option<Direction> {
        Direction::between(self.previous, self.level)
    }

    /// What to store so the next decision applies hysteresis and knows its deadlines.
    pub fn standing(&self) -> Standing {
        Standing {
            level: self.level,
            since: self.since,
            drops_at: self.drops_at,
            at_risk_at: self.at_risk_at,
        }
    }

    /// Inside the window before a drop.
    pub fn is_at_risk(&self, now: Timestamp) -> bool {
        matches!((self.at_risk_at, self.drops_at), (Some(risk), Some(drop)) if risk <= now && now < drop)
    }

    /// The next instant at which deciding again may change something: entering the at-risk
    /// window, or dropping. The scheduled sweep rescores the customer then.
    pub fn next_transition(&self, now: Timestamp) -> Option<Timestamp> {
        match (self.at_risk_at, self.drops_at) {
            (Some(risk), Some(drop)) if risk > now => Some(risk.min(drop)),
            (_, drop) => drop,
        }
    }

    /// One paragraph a community manager can read.
    pub fn summary(&self) -> String {
        let mut text = format!("{} since {}", self.level.title(), self.since.human_date());
        let kinds: Vec<String> = self
            .explanation
            .top_kinds
            .iter()
            .map(|k| format!("{} {}", k.count, k.kind))
            .collect();
        if !kinds.is_empty() {
            let _ = write!(text, ": {}", kinds.join(", "));
        }
        text.push('.');
        if let (Some(drops_at), Some(drops_to)) = (self.drops_at, self.drops_to) {
            let _ = write!(
                text,
                " Drops to {} on {} unless more {} evidence arrives.",
                drops_to.title(),
                drops_at.human_date(),
                self.level
            );
        }
        if let Some(next) = &self.explanation.next_step {
            if next.missing_evidence > 0.0 {
                let _ = write!(
                    text,
                    " {:.1} more {} evidence would move them up",
                    shown_missing(next.missing_evidence),
                    next.level
                );
                if let Some(kind) = &next.suggested_kind {
                    let _ = write!(text, ", e.g. {} × {}", next.suggested_count, kind);
                }
                if next.needs_consent {
                    text.push_str(", with consent on a channel");
                }
                text.push('.');
            } else if next.needs_consent {
                let _ = write!(text, " Consent on any channel would make them {}.", next.level);
            }
        }
        text
    }
}

/// Missing evidence as a person reads it: rounded up to the tenth shown, so a level not yet
/// reached never reads as "0.0 more" (float noise below a millionth of a tenth is not rounded up).
pub fn shown_missing(missing: f64) -> f64 {
    ((missing * 10.0 - 1e-6).ceil() / 10.0).max(0.1)
}

/// When the standing's level actually ends, if it has by `now`: the foreseen `drops_at`, unless
/// interactions that came before it (but after that decision) pushed the crossing later. With
/// interactions after the foreseen drop, the evidence cannot tell, and the foreseen drop stands.
fn lapsed_at(rules: &Rules, state: &CustomerState, standing: &Standing, now: Timestamp) -> Option<Timestamp> {
    let foreseen = standing.drops_at.filter(|d| *d <= now)?;
    if state.evidence.last_interaction_at.is_some_and(|last| last < foreseen) {
        let crossing = state
            .evidence
            .crossing_ms(rules, standing.level, rules.hold_threshold(standing.level))
            .map(|c| Timestamp(c.floor() as i64 + 1))?;
        return (crossing <= now).then_some(crossing);
    }
    Some(foreseen)
}

/// The level a standing protects with hysteresis at `now`: the standing's own level until it
/// lapses, one below after (a drop the sweep has not yet recorded).
fn protected_level(standing: Option<&Standing>, lapsed: Option<Timestamp>) -> Level {
    match standing {
        None => Level::Observing,
        Some(s) if lapsed.is_some() => s.level.down().unwrap_or(Level::Observing),
        Some(s) => s.level,
    }
}

/// How far below a rise threshold evidence may sit and still reach it: the precision of the
/// stored sums (terms on a 1e-12 grid, decay by `exp2`). One review of weight 3 is an evidence of
/// 3 at its own instant up to this rounding, and must reach a threshold of 3.
const RISE_TOLERANCE: f64 = 1e-9;

/// Evidence for one level, at the two instants a decision looks at.
#[derive(Clone, Copy)]
struct LevelEvidence {
    /// At the decision's instant: what holds a level (against `hysteresis × threshold`).
    now: f64,
    /// At the latest interaction, the one that could have caused a rise: what a rise is
    /// judged on, so that a rescore a moment later decides what replay decides at that instant.
    at_rise: f64,
}

fn qualifies(rules: &Rules, level: Level, evidence: LevelEvidence, protected: Level, has_consent: bool) -> bool {
    // Only decay below the hold bar takes a level away; a rise needs the full threshold as of the
    // interaction that caused it, and still holding now.
    let holds = evidence.now >= rules.hold_threshold(level);
    let reached = level <= protected || evidence.at_rise >= rules.threshold(level) * (1.0 - RISE_TOLERANCE);
    holds && reached && (level != Level::Following || has_consent)
}

/// Decides the customer's level at `now`. Pure: the same inputs give the same decision.
pub fn decide(rules: &Rules, state: &CustomerState, now: Timestamp) -> Decision {
    decide_with(rules, state, now, true)
}

/// [`decide`] without the explanation (empty rungs and kinds): the same level and dates, for
/// replays that only need where customers stand (calibration scores thousands of them per
/// candidate rules).
pub fn decide_unexplained(rules: &Rules, state: &CustomerState, now: Timestamp) -> Decision {
    decide_with(rules, state, now, false)
}

fn decide_with(rules: &Rules, state: &CustomerState, now: Timestamp, explained: bool) -> Decision {
    let evidence: [f64; LEVEL_COUNT] = std::array::from_fn(|r| state.evidence.at(rules, Level::ALL[r], now));
    // The latest interaction is the only thing that can cause a rise or a consent drop: both are
    // judged and dated at its instant, as replay does, however late the rescore runs.
    let latest_at = state.evidence.last_interaction_at.map_or(now, |last| last.min(now));
    let judged: [LevelEvidence; LEVEL_COUNT] = std::array::from_fn(|r| LevelEvidence {
        now: evidence[r],
        at_rise: state.evidence.at(rules, Level::ALL[r], latest_at),
    });
    let has_consent = state.consent.any_granted();
    let standing = state.standing.as_ref();
    let previous = standing.map_or(Level::Observing, |s| s.level);
    let lapsed = standing.and_then(|s| lapsed_at(rules, state, s, now));
    let protected = protected_level(standing, lapsed);

    let level = Level::ALL[1..]
        .iter()
        .rev()
        .copied()
        .find(|&l| qualifies(rules, l, judged[l.index()], protected, has_consent))
        .unwrap_or(Level::Observing);

    let since = match standing {
        Some(s) if s.level == level && protected == s.level => s.since,
        Some(s) if level < s.level => match lapsed {
            // The drop happened when the evidence crossed the bar, unless consent was
            // withdrawn: then at the withdrawal, the latest interaction.
            Some(drop) => drop.max(s.since),
            None => latest_at.max(s.since),
        },
        // A rise is caused by an interaction: the latest one is when it happened.
        _ => latest_at.max(standing.map_or(Timestamp(i64::MIN), |s| s.since)),
    };

    let (drops_at, drops_to) = if level == Level::Observing {
        (None, None)
    } else {
        let bar = rules.hold_threshold(level);
        let drops_at = state
            .evidence
            .crossing_ms(rules, level, bar)
            .map(|crossing| Timestamp(crossing.floor() as i64 + 1))
            .map(|at| at.max(now));
        let drops_to = drops_at.map(|at| {
            Level::ALL[1..level.index()]
                .iter()
                .rev()
                .copied()
                .find(|&l| {
                    let later = state.evidence.at(rules, l, at);
                    let evidence = LevelEvidence {
                        now: later,
                        at_rise: later,
                    };
                    qualifies(rules, l, evidence, level, has_consent)
                })
                .unwrap_or(Level::Observing)
        });
        (drops_at, drops_to)
    };
    let horizon_ms = (rules.at_risk_horizon_days * MILLIS_PER_DAY as f64) as i64;
    let at_risk_at = drops_at.map(|d| d.minus_millis(horizon_ms));

    Decision {
        level,
        since,
        drops_at,
        drops_to,
        at_risk_at,
        previous,
        explanation: if explained {
            explain(rules, state, now, level, &evidence, has_consent)
        } else {
            Explanation {
                rungs: Vec::new(),
                top_kinds: Vec::new(),
                next_step: None,
                has_consent,
            }
        },
    }
}

fn explain(
    rules: &Rules,
    state: &CustomerState,
    now: Timestamp,
    level: Level,
    evidence: &[f64; LEVEL_COUNT],
    has_consent: bool,
) -> Explanation {
    let rungs = Level::ALL
        .iter()
        .map(|&l| RungEvidence {
            level: l,
            evidence: evidence[l.index()],
            threshold: rules.threshold(l),
            hold_threshold: rules.hold_threshold(l),
        })
        .collect();

    // The three kinds at or above the current level with the most evidence now.
    let mut best: [(f64, usize); 3] = [(0.0, usize::MAX); 3];
    for (id, &sum) in state.evidence.kinds.iter().enumerate() {
        if sum <= 0.0 {
            continue;
        }
        let kind = KindId(id as u16);
        if rules.kind_level_and_weight(kind).0 < level {
            continue;
        }
        let value = state.evidence.kind_at(rules, kind, now);
        if let Some(slot) = best.iter().position(|(v, _)| value > *v) {
            best[slot..].rotate_right(1);
            best[slot] = (value, id);
        }
    }
    let top_kinds = best
        .iter()
        .filter(|(_, id)| *id != usize::MAX)
        .map(|&(value, id)| {
            let kind = KindId(id as u16);
            KindContribution {
                kind: rules.kind_name(kind).to_string(),
                level: rules.kind_level_and_weight(kind).0,
                evidence: value,
                count: state.evidence.kind_counts.get(id).copied().unwrap_or(0),
            }
        })
        .collect();

    let next_step = level.up().map(|next| {
        let missing = (rules.threshold(next) - evidence[next.index()]).max(0.0);
        let suggestion = rules.heaviest_kind_at(next).filter(|_| missing > 0.0);
        NextStep {
            level: next,
            missing_evidence: missing,
            needs_consent: next == Level::Following && !has_consent,
            suggested_kind: suggestion.map(|k| k.name.clone()),
            suggested_count: suggestion.map_or(0, |k| (missing / k.weight).ceil().max(1.0) as u32),
        }
    });

    Explanation {
        rungs,
        top_kinds,
        next_step,
        has_consent,
    }
}
