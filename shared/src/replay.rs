//! Scoring a customer from their history, as of any instant and under any rules: time travel
//! (`?at=`), what-if on new rules, and the level timeline.

use crate::customer::{CustomerState, ScoredInteraction};
use crate::decide::{decide, decide_unexplained, Decision};
use crate::interaction::Interaction;
use crate::level::Level;
use crate::rules::Rules;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// One move on the pyramid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelChange {
    pub at: Timestamp,
    pub from: Level,
    pub to: Level,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Replay {
    pub state: CustomerState,
    pub decision: Decision,
    /// Every change of level, oldest first, including drops between interactions.
    pub timeline: Vec<LevelChange>,
}

/// Replays interactions (in any order; those after `at` are ignored) as if the engine had decided
/// after each one and at each foreseen drop.
pub fn replay(rules: &Rules, interactions: &[Interaction], at: Timestamp) -> Replay {
    let mut scored: Vec<(Timestamp, &str, ScoredInteraction)> = interactions
        .iter()
        .filter(|i| i.occurred_at <= at)
        .filter_map(|i| Some((i.occurred_at, i.id.as_str(), i.score(rules)?)))
        .collect();
    scored.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let items: Vec<ScoredInteraction> = scored.into_iter().map(|(_, _, s)| s).collect();
    replay_scored(rules, &items, at)
}

/// [`replay`] over interactions already scored and sorted by `occurred_at`.
pub fn replay_scored(rules: &Rules, sorted: &[ScoredInteraction], at: Timestamp) -> Replay {
    let mut state = CustomerState::new(rules);
    let mut timeline = Vec::new();
    for item in sorted.iter().filter(|i| i.contribution.occurred_at <= at) {
        let when = item.contribution.occurred_at;
        settle_drops(rules, &mut state, when, &mut timeline);
        state.fold(rules, item);
        apply(rules, &mut state, when, &mut timeline);
    }
    settle_drops(rules, &mut state, at, &mut timeline);
    let decision = decide(rules, &state, at);
    Replay { state, decision, timeline }
}

/// The level [`replay_scored`] decides at `at`, without the timeline and the explanations: the
/// same folds and decisions, several times cheaper (calibration replays every labelled customer
/// under each candidate rules).
pub fn level_at(rules: &Rules, sorted: &[ScoredInteraction], at: Timestamp) -> Level {
    let mut state = CustomerState::new(rules);
    let mut untold = Vec::new();
    for item in sorted.iter().filter(|i| i.contribution.occurred_at <= at) {
        let when = item.contribution.occurred_at;
        settle(rules, &mut state, when, &mut untold, false);
        state.fold(rules, item);
        decide_into(rules, &mut state, when, &mut untold, false);
    }
    settle(rules, &mut state, at, &mut untold, false);
    decide_unexplained(rules, &state, at).level
}

/// Applies every foreseen drop up to and including `until`, as the scheduled sweep would.
pub fn settle_drops(rules: &Rules, state: &mut CustomerState, until: Timestamp, timeline: &mut Vec<LevelChange>) {
    settle(rules, state, until, timeline, true);
}

fn settle(rules: &Rules, state: &mut CustomerState, until: Timestamp, timeline: &mut Vec<LevelChange>, explained: bool) {
    // Each round lowers the level or clears the deadline, so six rounds always suffice.
    for _ in 0..8 {
        match state.standing.and_then(|s| s.drops_at) {
            Some(drop) if drop <= until => decide_into(rules, state, drop, timeline, explained),
            _ => return,
        }
    }
}

fn apply(rules: &Rules, state: &mut CustomerState, at: Timestamp, timeline: &mut Vec<LevelChange>) {
    decide_into(rules, state, at, timeline, true);
}

fn decide_into(rules: &Rules, state: &mut CustomerState, at: Timestamp, timeline: &mut Vec<LevelChange>, explained: bool) {
    let decision = if explained {
        decide(rules, state, at)
    } else {
        decide_unexplained(rules, state, at)
    };
    let changed =
        state.standing.is_some_and(|s| s.level != decision.level) || (state.standing.is_none() && decision.level != Level::Observing);
    // A replay for its level alone keeps no timeline.
    if explained && changed {
        timeline.push(LevelChange {
            at: decision.since,
            from: decision.previous,
            to: decision.level,
        });
    }
    state.standing = Some(decision.standing());
}
