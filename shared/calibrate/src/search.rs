//! Coordinate descent over per-level thresholds and half-lives (and kinds' weights), in log
//! space, inside bounds the rules parser accepts, keeping half-lives non-increasing going up the
//! pyramid (so customers step down one rung at a time) and hysteresis as it is.

use crate::metrics::macro_f1;
use crate::{predict, Options, Prepared};
use engagement::rules::{MAX_HALF_LIFE_DAYS, MAX_WEIGHT, MIN_HALF_LIFE_DAYS};
use engagement::{Level, LevelRule, Rules, LEVEL_COUNT};

/// The box the search stays in (inside the parser's bounds: thresholds in (0, 1e6], half-lives
/// in [1, 36500] days, weights in [0, 1e6]).
#[derive(Clone, Debug, PartialEq)]
pub struct Bounds {
    pub threshold: (f64, f64),
    pub half_life_days: (f64, f64),
    pub weight: (f64, f64),
    /// The first step multiplies or divides a value by this factor; it halves (in log space)
    /// whenever a whole round improves nothing, down to `finest_factor`.
    pub first_factor: f64,
    pub finest_factor: f64,
    /// At most this many candidates scored per fit.
    pub max_evaluations: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            threshold: (0.05, 10_000.0),
            half_life_days: (MIN_HALF_LIFE_DAYS, 3650.0_f64.min(MAX_HALF_LIFE_DAYS)),
            weight: (0.01, 10_000.0_f64.min(MAX_WEIGHT)),
            first_factor: 2.0,
            finest_factor: 1.1,
            max_evaluations: 300,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Coordinate {
    Threshold(Level),
    HalfLife(Level),
    Weight(usize),
}

/// A point of the search: the levels' parameters and the named kinds' weights.
#[derive(Clone, Debug, PartialEq)]
struct Point {
    levels: [LevelRule; LEVEL_COUNT],
    weights: Vec<f64>,
}

/// What may move, and where.
pub(crate) struct Space {
    coordinates: Vec<Coordinate>,
    /// Levels whose half-life may not move (too few labels): neighbours are bounded by them.
    frozen: Vec<Level>,
    bounds: Bounds,
    weights: bool,
}

/// Three significant digits: proposals people can read, and a grid the search cannot creep on.
fn round3(value: f64) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    let scale = 10f64.powi(2 - value.abs().log10().floor() as i32);
    (value * scale).round() / scale
}

impl Space {
    pub(crate) fn new(current: &Rules, prepared: &[Prepared], fitted: &[Level], options: &Options) -> Space {
        let mut coordinates: Vec<Coordinate> = fitted.iter().map(|l| Coordinate::Threshold(*l)).collect();
        coordinates.extend(fitted.iter().map(|l| Coordinate::HalfLife(*l)));
        if options.weights {
            // Kinds that appear in the labelled histories, above observing (observing evidence
            // decides no level), and that weigh something now (weight 0 is a decision: consent
            // bookkeeping, not engagement).
            let mut seen = vec![false; current.kinds().len()];
            for label in prepared {
                for item in &label.items {
                    if let Some(slot) = seen.get_mut(usize::from(item.contribution.kind.0)) {
                        *slot = true;
                    }
                }
            }
            coordinates.extend(
                current
                    .kinds()
                    .iter()
                    .enumerate()
                    .filter(|(i, k)| seen[*i] && k.level > Level::Observing && k.weight > 0.0)
                    .map(|(i, _)| Coordinate::Weight(i)),
            );
        }
        Space {
            coordinates,
            frozen: Level::ALL[1..].iter().copied().filter(|l| !fitted.contains(l)).collect(),
            bounds: options.bounds.clone(),
            weights: options.weights,
        }
    }

    fn rules(&self, base: &Rules, point: &Point) -> Rules {
        let rules = base.with_level_rules(point.levels.clone());
        if self.weights {
            rules.with_kind_weights(&point.weights)
        } else {
            rules
        }
    }

    /// The start, projected onto the invariant: half-lives non-increasing going up.
    fn start(&self, current: &Rules) -> Point {
        let mut levels = current.level_rules().clone();
        for r in 2..LEVEL_COUNT {
            if levels[r].half_life_days > levels[r - 1].half_life_days && !self.frozen.contains(&Level::ALL[r - 1]) {
                levels[r - 1].half_life_days = levels[r].half_life_days;
            }
        }
        for r in (1..LEVEL_COUNT).rev() {
            levels[r - 1].half_life_days = levels[r - 1].half_life_days.max(levels[r].half_life_days);
        }
        Point {
            levels,
            weights: current.kinds().iter().map(|k| k.weight).collect(),
        }
    }

    /// `point` with one coordinate multiplied by `factor`, kept in bounds and in order; `None`
    /// when it cannot move that way.
    fn moved(&self, point: &Point, coordinate: Coordinate, factor: f64) -> Option<Point> {
        let mut next = point.clone();
        let clamp = |value: f64, (low, high): (f64, f64)| round3(value.clamp(low, high));
        match coordinate {
            Coordinate::Threshold(level) => {
                let rule = &mut next.levels[level.index()];
                rule.threshold = clamp(rule.threshold * factor, self.bounds.threshold);
            }
            Coordinate::Weight(kind) => {
                next.weights[kind] = clamp(next.weights[kind] * factor, self.bounds.weight);
            }
            Coordinate::HalfLife(level) => {
                let r = level.index();
                // Frozen levels above bound it from below, frozen levels below from above; the
                // free levels in between are pushed along to keep the order.
                let low = Level::ALL[r + 1..]
                    .iter()
                    .filter(|l| self.frozen.contains(l))
                    .map(|l| point.levels[l.index()].half_life_days)
                    .fold(self.bounds.half_life_days.0, f64::max);
                let high = Level::ALL[1..r]
                    .iter()
                    .filter(|l| self.frozen.contains(l))
                    .map(|l| point.levels[l.index()].half_life_days)
                    .fold(self.bounds.half_life_days.1, f64::min);
                let value = clamp(point.levels[r].half_life_days * factor, (low, high.max(low)));
                next.levels[r].half_life_days = value;
                for s in r + 1..LEVEL_COUNT {
                    next.levels[s].half_life_days = next.levels[s].half_life_days.min(next.levels[s - 1].half_life_days);
                }
                for s in (0..r).rev() {
                    next.levels[s].half_life_days = next.levels[s].half_life_days.max(next.levels[s + 1].half_life_days);
                }
            }
        }
        (next != *point).then_some(next)
    }

    /// Fits on the labels `train`, from `current`: the rules found and how many candidates were
    /// scored.
    pub(crate) fn fit(&self, current: &Rules, prepared: &[Prepared], train: &[usize]) -> (Rules, usize) {
        let truth: Vec<Level> = train.iter().map(|&i| prepared[i].truth).collect();
        let score = |point: &Point| macro_f1(&truth, &predict(&self.rules(current, point), prepared, train, self.weights));
        let mut point = self.start(current);
        let mut best = score(&point);
        let mut evaluations = 1;
        let mut log_step = self.bounds.first_factor.ln();
        let finest = self.bounds.finest_factor.ln();
        'search: while log_step >= finest * 0.999 {
            let mut improved = false;
            for &coordinate in &self.coordinates {
                for direction in [1.0, -1.0] {
                    // Keep going while it helps: a far-off start needs several steps of one size.
                    let mut moved_this_way = false;
                    while let Some(candidate) = self.moved(&point, coordinate, (direction * log_step).exp()) {
                        if evaluations >= self.bounds.max_evaluations {
                            break 'search;
                        }
                        evaluations += 1;
                        let candidate_score = score(&candidate);
                        if candidate_score > best + 1e-9 {
                            best = candidate_score;
                            point = candidate;
                            improved = true;
                            moved_this_way = true;
                        } else {
                            break;
                        }
                    }
                    if moved_this_way {
                        break;
                    }
                }
            }
            if !improved {
                log_step /= 2.0;
            }
        }
        (self.rules(current, &point), evaluations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_rounded_to_three_significant_digits() {
        assert_eq!(round3(4.56789), 4.57);
        assert_eq!(round3(182.7), 183.0);
        assert_eq!(round3(0.012345), 0.0123);
    }

    #[test]
    fn a_half_life_moved_keeps_the_ladder_in_order_and_frozen_levels_still() {
        let rules = Rules::default_rules();
        let options = Options::default();
        let fitted = [Level::Following, Level::Endorsing, Level::Owning, Level::Leading];
        let space = Space::new(&rules, &[], &fitted, &options);
        let start = space.start(&rules);
        // Endorsing's half-life up past following's pushes following (and observing) up.
        let up = space.moved(&start, Coordinate::HalfLife(Level::Endorsing), 2.0).expect("moves");
        let h = |p: &Point, l: Level| p.levels[l.index()].half_life_days;
        assert_eq!(h(&up, Level::Endorsing), 540.0);
        assert!(h(&up, Level::Following) >= 540.0 && h(&up, Level::Observing) >= 540.0);
        // Owning's cannot go above contributing's (kept: 180 days), so it cannot move up at all.
        assert_eq!(space.moved(&start, Coordinate::HalfLife(Level::Owning), 2.0), None);
        // Following's down past endorsing's would have to move contributing: bounded by it.
        let down = space.moved(&start, Coordinate::HalfLife(Level::Following), 0.25).expect("moves");
        assert_eq!(h(&down, Level::Contributing), 180.0);
        for r in 1..LEVEL_COUNT {
            assert!(down.levels[r].half_life_days <= down.levels[r - 1].half_life_days);
        }
    }
}
