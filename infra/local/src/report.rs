//! `pyramid rescore --at` and `pyramid whatif --rules`: how levels would change, without writing.
//! Each customer's history is replayed (under the given rules, as of the given instant) and
//! compared with the level stored now.

use engagement::ports::{CustomerReads, Insights};
use engagement::{replay, Level, Rules, Timestamp, LEVEL_COUNT};
use engagement_aws::DynamoStore;
use std::fmt::Write as _;

/// Customers by (stored level, level under the question asked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transitions {
    pub counts: [[u64; LEVEL_COUNT]; LEVEL_COUNT],
}

impl Transitions {
    pub fn customers(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    pub fn moved(&self) -> (u64, u64) {
        let mut up = 0;
        let mut down = 0;
        for (from, row) in self.counts.iter().enumerate() {
            for (to, count) in row.iter().enumerate() {
                if to > from {
                    up += count;
                } else if to < from {
                    down += count;
                }
            }
        }
        (up, down)
    }

    /// The table a person reads: counts per level now and then, and who moves where.
    pub fn render(&self, question: &str) -> String {
        let mut text = String::new();
        let (up, down) = self.moved();
        let _ = writeln!(text, "{question}: {} customers, {up} would move up, {down} down", self.customers());
        let _ = writeln!(text, "{:<14}{:>10}{:>10}   moves", "level", "now", "then");
        for level in Level::ALL {
            let now: u64 = self.counts[level.index()].iter().sum();
            let then: u64 = self.counts.iter().map(|row| row[level.index()]).sum();
            let moves: Vec<String> = Level::ALL
                .iter()
                .filter(|to| **to != level && self.counts[level.index()][to.index()] > 0)
                .map(|to| format!("{} → {to}", self.counts[level.index()][to.index()]))
                .collect();
            let _ = writeln!(text, "{:<14}{now:>10}{then:>10}   {}", level.name(), moves.join(", "));
        }
        text
    }
}

/// Replays every customer under `rules` as of `at` and counts the transitions from their stored
/// level.
pub async fn compare(store: &DynamoStore, rules: &Rules, at: Timestamp) -> anyhow::Result<Transitions> {
    let mut transitions = Transitions::default();
    for level in Level::ALL {
        let mut cursor = None;
        loop {
            let page = store.customers_at_level(level, None, cursor, 500).await?;
            for summary in &page.items {
                let mut history = Vec::new();
                let mut interactions = None;
                loop {
                    let part = store.interactions(&summary.id, interactions, 500).await?;
                    history.extend(part.items);
                    interactions = part.cursor;
                    if interactions.is_none() {
                        break;
                    }
                }
                let then = replay(rules, &history, at).decision.level;
                transitions.counts[summary.standing.level.index()][then.index()] += 1;
            }
            cursor = page.cursor;
            if cursor.is_none() {
                break;
            }
        }
    }
    Ok(transitions)
}
