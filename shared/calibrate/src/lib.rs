//! Calibration: fitting the rules' per-level thresholds and half-lives (and, if asked, the kinds'
//! weights) to the levels an organisation knows some of its people stood at.
//!
//! Pure: the caller brings the labels with their histories, the current rules and a seed; every
//! candidate is scored by replaying the labelled customers through the core's fold
//! ([`engagement::level_at`]), in parallel. The search is coordinate descent in log space over a
//! bounded space, with a step that halves when no coordinate improves. The gain is measured by
//! k-fold cross-validation (each label predicted by rules fitted without it) and a 95 % bootstrap
//! interval: when it includes 0, nothing is proposed.

mod metrics;
mod report;
mod search;
pub mod synthetic;

pub use metrics::{Confusion, LevelScore, Scores};
pub use report::{Change, Mover};
pub use search::Bounds;

/// Macro-F1 of predicted levels against known ones (each labelled level weighs the same).
pub fn metrics_of(truth: &[Level], predicted: &[Level]) -> f64 {
    metrics::macro_f1(truth, predicted)
}

use engagement::{Interaction, Level, Rules, ScoredInteraction, Timestamp, LEVEL_COUNT};
use rayon::prelude::*;
use std::sync::Arc;

/// One row of the labels file, its customer found and their history read.
#[derive(Clone, Debug)]
pub struct Label {
    /// Where it is in the labels file (reported with every problem and mover).
    pub line: usize,
    /// The customer's id (never a handle: the report may be shared).
    pub customer: String,
    pub level: Level,
    pub as_of: Timestamp,
    /// Every interaction of the customer; those after `as_of` are not used.
    pub history: Arc<Vec<Interaction>>,
}

/// A label no rules could satisfy, left out of the fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excluded {
    pub line: usize,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Folds of the cross-validation.
    pub folds: usize,
    /// Also fit the kinds' default weights.
    pub weights: bool,
    /// Resamples of the bootstrap interval.
    pub resamples: usize,
    /// Seeds the folds and the bootstrap: the same labels and seed give the same report.
    pub seed: u64,
    /// A level with fewer labels keeps its threshold and half-life.
    pub min_labels_per_level: usize,
    /// How many customers whose level changes most are shown.
    pub movers: usize,
    pub bounds: Bounds,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            folds: 5,
            weights: false,
            resamples: 1000,
            seed: 18,
            min_labels_per_level: 5,
            movers: 10,
            bounds: Bounds::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CalibrateError {
    #[error("no usable label: every row was refused or excluded")]
    NoLabels,
    #[error("{labels} usable labels are too few for {folds}-fold cross-validation (at least {needed} are needed)")]
    TooFewLabels { labels: usize, folds: usize, needed: usize },
    #[error("--folds must be at least 2")]
    TooFewFolds,
}

/// Whether the proposal stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Propose,
    /// The cross-validated gain is within noise (or a loss): the reason, for people.
    Refuse(String),
}

/// Everything the report says.
#[derive(Clone, Debug)]
pub struct Calibration {
    pub excluded: Vec<Excluded>,
    /// Levels with too few labels, which kept their parameters, with their label counts.
    pub kept: Vec<(Level, usize)>,
    pub labels: usize,
    /// The current rules on every label (nothing fitted: these are honest as they are).
    pub current: Scores,
    /// Each label predicted by the rules fitted on the other folds.
    pub proposed_cross_validated: Scores,
    /// The proposed rules (fitted on every label) on every label: optimistic, shown for contrast.
    pub proposed_in_sample: Scores,
    pub gain: f64,
    /// The 95 % bootstrap interval of the cross-validated gain in macro-F1.
    pub interval: (f64, f64),
    pub verdict: Verdict,
    pub proposed: Rules,
    pub changes: Vec<Change>,
    pub movers: Vec<Mover>,
    /// Candidate rules scored by replay, over all folds and the final fit.
    pub evaluations: usize,
    pub folds: usize,
}

/// Why no rules could put this customer at `level` as of `as_of`, if so.
pub fn unsatisfiable(rules: &Rules, history: &[Interaction], level: Level, as_of: Timestamp, weights_fitted: bool) -> Option<String> {
    if level == Level::Observing {
        return None;
    }
    let scored: Vec<ScoredInteraction> = history
        .iter()
        .filter(|i| i.occurred_at <= as_of)
        .filter_map(|i| i.score(rules))
        .collect();
    let at_or_above: Vec<&ScoredInteraction> = scored.iter().filter(|s| s.contribution.level >= level).collect();
    if at_or_above.is_empty() {
        return Some(format!("no interaction of a kind at or above {level} before as_of"));
    }
    if !weights_fitted && at_or_above.iter().all(|s| s.contribution.weight <= 0.0) {
        return Some(format!("their interactions at or above {level} all weigh 0"));
    }
    if level == Level::Following {
        let mut sorted: Vec<&ScoredInteraction> = scored.iter().collect();
        sorted.sort_by_key(|s| s.contribution.occurred_at);
        let mut consents = engagement::Consents::default();
        for item in sorted {
            if let Some((channel, effect)) = &item.consent {
                consents.record(channel, *effect == engagement::ConsentEffect::Grant, item.contribution.occurred_at);
            }
        }
        if !consents.any_granted() {
            return Some("following needs consent on a channel, and they had given none by as_of".to_string());
        }
    }
    None
}

/// A label as the search replays it: its scored history up to `as_of`, sorted.
struct Prepared {
    truth: Level,
    as_of: Timestamp,
    items: Vec<ScoredInteraction>,
    /// Per item: the client gave its own weight (kept when weights are fitted).
    client_weighted: Vec<bool>,
}

fn prepare(rules: &Rules, label: &Label) -> Prepared {
    let mut scored: Vec<(Timestamp, &str, ScoredInteraction, bool)> = label
        .history
        .iter()
        .filter(|i| i.occurred_at <= label.as_of)
        .filter_map(|i| {
            let scored = i.score(rules)?;
            // Observing evidence decides no level (its threshold is 0), and an interaction can only
            // raise a level at its own instant: dropping looks that touch no consent leaves every
            // level replay decides as it is (a test checks), and most histories are mostly looks.
            if scored.contribution.level == Level::Observing && scored.consent.is_none() {
                return None;
            }
            let client = i.weight.is_some() && rules.kind(scored.contribution.kind).is_some_and(|k| k.max_weight.is_some());
            Some((i.occurred_at, i.id.as_str(), scored, client))
        })
        .collect();
    scored.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let client_weighted = scored.iter().map(|s| s.3).collect();
    Prepared {
        truth: label.level,
        as_of: label.as_of,
        items: scored.into_iter().map(|s| s.2).collect(),
        client_weighted,
    }
}

/// The level each label's customer stands at under `rules`, by replay, in parallel.
fn predict(rules: &Rules, prepared: &[Prepared], which: &[usize], reweighted: bool) -> Vec<Level> {
    which
        .par_iter()
        .map(|&i| {
            let label = &prepared[i];
            if reweighted {
                let items: Vec<ScoredInteraction> = label
                    .items
                    .iter()
                    .zip(&label.client_weighted)
                    .map(|(item, client)| {
                        let mut item = item.clone();
                        if !client {
                            item.contribution.weight = rules.kind_level_and_weight(item.contribution.kind).1;
                        }
                        item
                    })
                    .collect();
                engagement::level_at(rules, &items, label.as_of)
            } else {
                engagement::level_at(rules, &label.items, label.as_of)
            }
        })
        .collect()
}

/// Fits, cross-validates and reports. `labels` are the rows that parsed and were found.
pub fn calibrate(current: &Rules, labels: &[Label], options: &Options) -> Result<Calibration, CalibrateError> {
    if options.folds < 2 {
        return Err(CalibrateError::TooFewFolds);
    }
    let mut excluded = Vec::new();
    let mut usable = Vec::new();
    for label in labels {
        match unsatisfiable(current, &label.history, label.level, label.as_of, options.weights) {
            Some(reason) => excluded.push(Excluded { line: label.line, reason }),
            None => usable.push(label),
        }
    }
    if usable.is_empty() {
        return Err(CalibrateError::NoLabels);
    }
    let needed = options.folds * 2;
    if usable.len() < needed {
        return Err(CalibrateError::TooFewLabels {
            labels: usable.len(),
            folds: options.folds,
            needed,
        });
    }
    let prepared: Vec<Prepared> = usable.par_iter().map(|label| prepare(current, label)).collect();
    let truth: Vec<Level> = prepared.iter().map(|p| p.truth).collect();

    let mut per_level = [0usize; LEVEL_COUNT];
    for level in &truth {
        per_level[level.index()] += 1;
    }
    let kept: Vec<(Level, usize)> = Level::ALL[1..]
        .iter()
        .filter(|l| per_level[l.index()] < options.min_labels_per_level)
        .map(|l| (*l, per_level[l.index()]))
        .collect();
    let fitted: Vec<Level> = Level::ALL[1..]
        .iter()
        .copied()
        .filter(|l| !kept.iter().any(|(k, _)| k == l))
        .collect();

    // Folds: a seeded shuffle, then every k-th label.
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let mut order: Vec<usize> = (0..prepared.len()).collect();
    rng.shuffle(&mut order);
    let mut fold_of = vec![0usize; prepared.len()];
    for (position, &index) in order.iter().enumerate() {
        fold_of[index] = position % options.folds;
    }

    let all: Vec<usize> = (0..prepared.len()).collect();
    let current_predictions = predict(current, &prepared, &all, false);
    let mut evaluations = 1;

    let space = search::Space::new(current, &prepared, &fitted, options);
    let mut out_of_fold = vec![Level::Observing; prepared.len()];
    for fold in 0..options.folds {
        let train: Vec<usize> = all.iter().copied().filter(|&i| fold_of[i] != fold).collect();
        let test: Vec<usize> = all.iter().copied().filter(|&i| fold_of[i] == fold).collect();
        let (rules, spent) = space.fit(current, &prepared, &train);
        evaluations += spent;
        for (index, level) in test.iter().zip(predict(&rules, &prepared, &test, options.weights)) {
            out_of_fold[*index] = level;
        }
    }
    let (proposed, spent) = space.fit(current, &prepared, &all);
    evaluations += spent + 1;
    let proposed_predictions = predict(&proposed, &prepared, &all, options.weights);

    let current_scores = Scores::of(&truth, &current_predictions);
    let cross_validated = Scores::of(&truth, &out_of_fold);
    let gain = cross_validated.macro_f1 - current_scores.macro_f1;
    let interval = metrics::bootstrap_gain(&truth, &current_predictions, &out_of_fold, options.resamples, &mut rng);
    let verdict = if interval.0 > 0.0 {
        Verdict::Propose
    } else if interval.1 < 0.0 {
        Verdict::Refuse(format!(
            "the proposed rules do worse than the current ones on labels they did not see (gain {gain:+.3}, 95 % bootstrap interval [{:+.3}, {:+.3}])",
            interval.0, interval.1
        ))
    } else {
        Verdict::Refuse(format!(
            "the cross-validated gain in macro-F1 ({gain:+.3}) is within noise: its 95 % bootstrap interval [{:+.3}, {:+.3}] includes 0",
            interval.0, interval.1
        ))
    };
    let movers = report::movers(
        current,
        &proposed,
        &usable,
        &current_predictions,
        &proposed_predictions,
        options.movers,
    );
    Ok(Calibration {
        excluded,
        kept,
        labels: prepared.len(),
        current: current_scores,
        proposed_cross_validated: cross_validated,
        proposed_in_sample: Scores::of(&truth, &proposed_predictions),
        gain,
        interval,
        verdict,
        changes: report::changes(current, &proposed),
        proposed,
        movers,
        evaluations,
        folds: options.folds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use engagement::LevelRule;

    /// The search replays histories without their looks; the levels must be replay's own.
    #[test]
    fn replaying_without_looks_decides_the_levels_replay_decides() {
        let end = Timestamp::parse_rfc3339("2026-06-01T00:00:00Z").expect("a time");
        let members = synthetic::community(3, 400, 60, end);
        let default = Rules::default_rules();
        let fast = default.with_level_rules(std::array::from_fn::<LevelRule, LEVEL_COUNT, _>(|i| LevelRule {
            threshold: [0.0, 1.0, 2.0, 3.0, 4.0, 5.0][i],
            half_life_days: [60.0, 30.0, 20.0, 10.0, 5.0, 2.0][i],
        }));
        for rules in [default, fast] {
            let labels: Vec<Label> = members
                .iter()
                .map(|m| Label {
                    line: 0,
                    customer: m.id.clone(),
                    level: Level::Observing,
                    as_of: m.as_of,
                    history: m.history.clone(),
                })
                .collect();
            let prepared: Vec<Prepared> = labels.iter().map(|l| prepare(&rules, l)).collect();
            let all: Vec<usize> = (0..labels.len()).collect();
            assert!(
                prepared.iter().map(|p| p.items.len()).sum::<usize>() < members.len() * 60 / 2,
                "looks dropped"
            );
            assert_eq!(predict(&rules, &prepared, &all, false), synthetic::true_levels(&rules, &members));
            assert_eq!(predict(&rules, &prepared, &all, true), synthetic::true_levels(&rules, &members));
        }
    }
}
