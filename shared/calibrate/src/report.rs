//! What the report shows beyond the scores: the changes to the rules, the customers whose level
//! moves most (with their explanations before and after), and the text people read.

use crate::{Calibration, Label, Scores, Verdict};
use engagement::{replay, Level, Rules};
use std::fmt::Write as _;

/// One value of the rules that the proposal changes.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// As in the rules file: `levels.contributing.threshold`, `kinds.review_posted.weight`.
    pub path: String,
    pub from: f64,
    pub to: f64,
}

/// A labelled customer whose level at `as_of` differs under the proposed rules.
#[derive(Clone, Debug, PartialEq)]
pub struct Mover {
    pub line: usize,
    pub customer: String,
    pub label: Level,
    pub before: Level,
    pub after: Level,
    /// `Decision::summary()` under the current rules, then the proposed ones.
    pub explanation_before: String,
    pub explanation_after: String,
}

pub(crate) fn changes(current: &Rules, proposed: &Rules) -> Vec<Change> {
    let mut changes = Vec::new();
    for level in Level::ALL {
        let (a, b) = (current.level(level), proposed.level(level));
        if a.threshold != b.threshold {
            changes.push(Change {
                path: format!("levels.{level}.threshold"),
                from: a.threshold,
                to: b.threshold,
            });
        }
        if a.half_life_days != b.half_life_days {
            changes.push(Change {
                path: format!("levels.{level}.half_life_days"),
                from: a.half_life_days,
                to: b.half_life_days,
            });
        }
    }
    for (a, b) in current.kinds().iter().zip(proposed.kinds()) {
        if a.weight != b.weight {
            changes.push(Change {
                path: format!("kinds.{}.weight", a.name),
                from: a.weight,
                to: b.weight,
            });
        }
    }
    changes
}

/// The labelled customers whose level moves most between the current and the proposed rules.
pub(crate) fn movers(current: &Rules, proposed: &Rules, labels: &[&Label], before: &[Level], after: &[Level], count: usize) -> Vec<Mover> {
    let mut moved: Vec<usize> = (0..labels.len()).filter(|&i| before[i] != after[i]).collect();
    // Largest move first; among equals, the file's order.
    moved.sort_by_key(|&i| (std::cmp::Reverse(before[i].rung().abs_diff(after[i].rung())), labels[i].line));
    moved
        .into_iter()
        .take(count)
        .map(|i| {
            let label = labels[i];
            let explain = |rules: &Rules| replay(rules, &label.history, label.as_of).decision.summary();
            Mover {
                line: label.line,
                customer: label.customer.clone(),
                label: label.level,
                before: before[i],
                after: after[i],
                explanation_before: explain(current),
                explanation_after: explain(proposed),
            }
        })
        .collect()
}

fn scores_table(text: &mut String, current: &Scores, proposed: &Scores) {
    let _ = writeln!(
        text,
        "  {:<14}{:>7}   {:>9} {:>7} {:>6}   {:>9} {:>7} {:>6}",
        "level", "labels", "precision", "recall", "F1", "precision", "recall", "F1"
    );
    for (a, b) in current.levels.iter().zip(&proposed.levels) {
        let _ = writeln!(
            text,
            "  {:<14}{:>7}   {:>9.3} {:>7.3} {:>6.3}   {:>9.3} {:>7.3} {:>6.3}",
            a.level.name(),
            a.labels,
            a.precision,
            a.recall,
            a.f1,
            b.precision,
            b.recall,
            b.f1
        );
    }
    let _ = writeln!(
        text,
        "  {:<14}{:>7}   {:>24.3}   {:>24.3}",
        "macro-F1", "", current.macro_f1, proposed.macro_f1
    );
}

fn confusion_table(text: &mut String, title: &str, scores: &Scores) {
    let _ = writeln!(text, "{title} (rows: labelled level, columns: level given)");
    let _ = write!(text, "  {:<14}", "");
    for level in Level::ALL {
        let _ = write!(text, "{:>8}", &level.name()[..level.name().len().min(7)]);
    }
    text.push('\n');
    for level in Level::ALL {
        let row = &scores.confusion.0[level.index()];
        if row.iter().sum::<u32>() == 0 {
            continue;
        }
        let _ = write!(text, "  {:<14}", level.name());
        for count in row {
            let _ = write!(text, "{count:>8}");
        }
        text.push('\n');
    }
}

impl Calibration {
    /// The report, as `pyramid calibrate` prints it.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{} labels, {}-fold cross-validated; {} candidate rules scored by replay",
            self.labels, self.folds, self.evaluations
        );
        if !self.excluded.is_empty() {
            let _ = writeln!(text, "\nexcluded from the fit (no rules could satisfy them):");
            for excluded in &self.excluded {
                let _ = writeln!(text, "  line {}: {}", excluded.line, excluded.reason);
            }
        }
        for (level, count) in &self.kept {
            let _ = writeln!(
                text,
                "{level}: {count} label(s), fewer than needed to fit it: its threshold and half-life are kept"
            );
        }
        let _ = writeln!(
            text,
            "\nper level: current rules | proposed rules, each label predicted by rules fitted without it"
        );
        scores_table(&mut text, &self.current, &self.proposed_cross_validated);
        let _ = writeln!(
            text,
            "  (the proposed rules on the labels they were fitted on: macro-F1 {:.3}; optimistic)",
            self.proposed_in_sample.macro_f1
        );
        let _ = writeln!(
            text,
            "\ngain in macro-F1: {:+.3}, 95 % bootstrap interval [{:+.3}, {:+.3}]\n",
            self.gain, self.interval.0, self.interval.1
        );
        confusion_table(&mut text, "current rules", &self.current);
        confusion_table(&mut text, "proposed rules, cross-validated", &self.proposed_cross_validated);
        match &self.verdict {
            Verdict::Refuse(reason) => {
                let _ = writeln!(text, "\nno proposal: {reason}.");
            }
            Verdict::Propose => {
                let _ = writeln!(text, "\nproposed changes:");
                if self.changes.is_empty() {
                    let _ = writeln!(text, "  none");
                }
                for change in &self.changes {
                    let _ = writeln!(text, "  {}: {} -> {}", change.path, change.from, change.to);
                }
                if !self.movers.is_empty() {
                    let _ = writeln!(text, "\nthe labelled customers whose level changes most:");
                }
                for mover in &self.movers {
                    let _ = writeln!(
                        text,
                        "  line {} ({}, labelled {}): {} -> {}\n    before: {}\n    after:  {}",
                        mover.line,
                        mover.customer,
                        mover.label,
                        mover.before,
                        mover.after,
                        mover.explanation_before,
                        mover.explanation_after
                    );
                }
            }
        }
        text
    }
}
