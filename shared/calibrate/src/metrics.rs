//! Precision, recall and F1 per level, macro-F1, the confusion matrix and the bootstrap interval
//! of a gain.

use engagement::{Level, LEVEL_COUNT};

/// Labelled level (row) × predicted level (column).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Confusion(pub [[u32; LEVEL_COUNT]; LEVEL_COUNT]);

impl Confusion {
    pub fn of(truth: &[Level], predicted: &[Level]) -> Confusion {
        let mut counts = [[0u32; LEVEL_COUNT]; LEVEL_COUNT];
        for (t, p) in truth.iter().zip(predicted) {
            counts[t.index()][p.index()] += 1;
        }
        Confusion(counts)
    }

    fn of_sample(truth: &[Level], predicted: &[Level], sample: &[usize]) -> Confusion {
        let mut counts = [[0u32; LEVEL_COUNT]; LEVEL_COUNT];
        for &i in sample {
            counts[truth[i].index()][predicted[i].index()] += 1;
        }
        Confusion(counts)
    }

    /// Per level present among the labels: precision, recall, F1; and their mean F1.
    pub fn scores(&self) -> (Vec<LevelScore>, f64) {
        let mut levels = Vec::new();
        for level in Level::ALL {
            let r = level.index();
            let labelled: u32 = self.0[r].iter().sum();
            if labelled == 0 {
                continue;
            }
            let predicted: u32 = self.0.iter().map(|row| row[r]).sum();
            let hits = self.0[r][r];
            let precision = if predicted == 0 {
                0.0
            } else {
                f64::from(hits) / f64::from(predicted)
            };
            let recall = f64::from(hits) / f64::from(labelled);
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            levels.push(LevelScore {
                level,
                labels: labelled,
                precision,
                recall,
                f1,
            });
        }
        let macro_f1 = if levels.is_empty() {
            0.0
        } else {
            levels.iter().map(|l| l.f1).sum::<f64>() / levels.len() as f64
        };
        (levels, macro_f1)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LevelScore {
    pub level: Level,
    pub labels: u32,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// How well predictions match the labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Scores {
    pub levels: Vec<LevelScore>,
    /// The mean F1 over the levels labelled (each level counts the same, however many labels).
    pub macro_f1: f64,
    pub confusion: Confusion,
}

impl Scores {
    pub fn of(truth: &[Level], predicted: &[Level]) -> Scores {
        let confusion = Confusion::of(truth, predicted);
        let (levels, macro_f1) = confusion.scores();
        Scores {
            levels,
            macro_f1,
            confusion,
        }
    }
}

/// Macro-F1 of `predicted` against `truth`: what the search maximizes.
pub(crate) fn macro_f1(truth: &[Level], predicted: &[Level]) -> f64 {
    Confusion::of(truth, predicted).scores().1
}

/// The 2.5 % and 97.5 % quantiles of macro-F1(after) − macro-F1(before) over resamples of the
/// labels with replacement.
pub(crate) fn bootstrap_gain(truth: &[Level], before: &[Level], after: &[Level], resamples: usize, rng: &mut fastrand::Rng) -> (f64, f64) {
    let n = truth.len();
    let mut gains: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            let sample: Vec<usize> = (0..n).map(|_| rng.usize(..n)).collect();
            Confusion::of_sample(truth, after, &sample).scores().1 - Confusion::of_sample(truth, before, &sample).scores().1
        })
        .collect();
    gains.sort_by(f64::total_cmp);
    let at = |q: f64| gains[((q * (gains.len() - 1) as f64).round() as usize).min(gains.len() - 1)];
    (at(0.025), at(0.975))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Level::*;

    #[test]
    fn per_level_scores_and_their_mean() {
        let truth = [Following, Following, Endorsing, Endorsing];
        let predicted = [Following, Endorsing, Endorsing, Endorsing];
        let scores = Scores::of(&truth, &predicted);
        assert_eq!(scores.levels.len(), 2);
        let following = &scores.levels[0];
        assert_eq!((following.precision, following.recall), (1.0, 0.5));
        let endorsing = &scores.levels[1];
        assert!((endorsing.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((scores.macro_f1 - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-12);
        assert_eq!(scores.confusion.0[Following.index()][Endorsing.index()], 1);
    }

    #[test]
    fn the_bootstrap_interval_of_no_change_is_zero_and_of_a_clear_gain_excludes_it() {
        let truth: Vec<Level> = (0..200).map(|i| if i % 2 == 0 { Following } else { Owning }).collect();
        let wrong = vec![Following; 200];
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(bootstrap_gain(&truth, &wrong, &wrong, 200, &mut rng), (0.0, 0.0));
        let (low, _) = bootstrap_gain(&truth, &wrong, &truth, 200, &mut rng);
        assert!(low > 0.3, "{low}");
    }
}
