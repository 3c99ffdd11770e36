//! The flow of customers between levels, day by day: who joined, who moved from which level to
//! which, who left (erased, or merged into another customer). The store keeps these counts per
//! UTC day beside the maintained pyramid counts, in the same transactions; from the two, the
//! pyramid at any past day, the weekly series and the transition table follow without rescanning
//! customers or replaying histories.

use crate::level::{Direction, Level, LEVEL_COUNT};
use crate::time::{Timestamp, MILLIS_PER_DAY};
use crate::values::{Movers, PyramidCounts};
use serde::{Deserialize, Serialize};

/// A UTC day, counted from 1970-01-01.
pub type Day = i64;

pub fn day_of(at: Timestamp) -> Day {
    at.millis().div_euclid(MILLIS_PER_DAY)
}

/// The last millisecond of a day: "as of a day" means at its end.
pub fn end_of_day(day: Day) -> Timestamp {
    Timestamp::from_millis((day + 1) * MILLIS_PER_DAY - 1)
}

/// What moved on one day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayFlow {
    pub day: Day,
    /// New customers (they enter at observing).
    pub joined: u64,
    /// `moved[from][to]`: level changes.
    pub moved: [[u64; LEVEL_COUNT]; LEVEL_COUNT],
    /// Customers who left the pyramid from each level: erased, or merged into another.
    pub left: [u64; LEVEL_COUNT],
}

impl DayFlow {
    pub fn empty(day: Day) -> DayFlow {
        DayFlow { day, ..DayFlow::default() }
    }

    /// What the day added to each level's count.
    pub fn net(&self) -> [i64; LEVEL_COUNT] {
        let mut net = [0i64; LEVEL_COUNT];
        net[Level::Observing.index()] += self.joined as i64;
        for (from, row) in self.moved.iter().enumerate() {
            for (to, &n) in row.iter().enumerate() {
                net[from] -= n as i64;
                net[to] += n as i64;
            }
        }
        for (level, &n) in self.left.iter().enumerate() {
            net[level] -= n as i64;
        }
        net
    }

    pub fn add(&mut self, other: &DayFlow) {
        self.joined += other.joined;
        for (row, other_row) in self.moved.iter_mut().zip(other.moved) {
            for (n, m) in row.iter_mut().zip(other_row) {
                *n += m;
            }
        }
        for (n, m) in self.left.iter_mut().zip(other.left) {
            *n += m;
        }
    }
}

/// One change to the pyramid, as the store records it in the day's flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowEntry {
    Joined,
    Moved { from: Level, to: Level },
    Left(Level),
}

/// The pyramid at the end of `day`, from today's maintained counts and the flows since: each day
/// after it is undone. `flows` may hold any days; only those after `day` count.
pub fn counts_at_end_of(current: &PyramidCounts, flows: &[DayFlow], day: Day) -> PyramidCounts {
    let mut counts: [i64; LEVEL_COUNT] = current.0.map(|n| n as i64);
    for flow in flows.iter().filter(|f| f.day > day) {
        for (count, net) in counts.iter_mut().zip(flow.net()) {
            *count -= net;
        }
    }
    // A customer whose first interaction arrived after a later one had risen them (a late
    // import) can leave a level a customer short for the days between; never show below zero.
    PyramidCounts(counts.map(|n| n.max(0) as u64))
}

/// Rises (to each level) and drops (from each level) on days `first..=last`.
pub fn movers(flows: &[DayFlow], first: Day, last: Day) -> Movers {
    let mut movers = Movers::default();
    for flow in flows.iter().filter(|f| (first..=last).contains(&f.day)) {
        for from in Level::ALL {
            for to in Level::ALL {
                let n = flow.moved[from.index()][to.index()];
                match Direction::between(from, to) {
                    Some(Direction::Up) => movers.up[to.index()] += n,
                    Some(Direction::Down) => movers.down[from.index()] += n,
                    None => {}
                }
            }
        }
    }
    movers
}

/// Everything that moved on days `first..=last`, summed.
pub fn total(flows: &[DayFlow], first: Day, last: Day) -> DayFlow {
    let mut sum = DayFlow::empty(last);
    for flow in flows.iter().filter(|f| (first..=last).contains(&f.day)) {
        sum.add(flow);
    }
    sum
}

/// The pyramid at the end of each of `weeks` weeks, the last one ending on `last`; oldest first.
pub fn weekly(current: &PyramidCounts, flows: &[DayFlow], last: Day, weeks: u32) -> Vec<(Day, PyramidCounts)> {
    let mut days: Vec<Day> = (0..i64::from(weeks)).map(|w| last - 7 * w).collect();
    days.reverse();
    // One pass from the newest day backwards, undoing flows as we go.
    let mut sorted: Vec<&DayFlow> = flows.iter().collect();
    sorted.sort_by_key(|f| std::cmp::Reverse(f.day));
    let mut counts: [i64; LEVEL_COUNT] = current.0.map(|n| n as i64);
    let mut next = sorted.into_iter().peekable();
    let mut series = Vec::with_capacity(days.len());
    for &day in days.iter().rev() {
        while let Some(flow) = next.next_if(|f| f.day > day) {
            for (count, net) in counts.iter_mut().zip(flow.net()) {
                *count -= net;
            }
        }
        series.push((day, PyramidCounts(counts.map(|n| n.max(0) as u64))));
    }
    series.reverse();
    series
}

#[cfg(test)]
mod tests {
    use super::*;
    use Level::*;

    fn flow(day: Day, entries: &[FlowEntry]) -> DayFlow {
        let mut flow = DayFlow::empty(day);
        for entry in entries {
            match *entry {
                FlowEntry::Joined => flow.joined += 1,
                FlowEntry::Moved { from, to } => flow.moved[from.index()][to.index()] += 1,
                FlowEntry::Left(level) => flow.left[level.index()] += 1,
            }
        }
        flow
    }

    fn counts(pairs: &[(Level, u64)]) -> PyramidCounts {
        let mut counts = PyramidCounts::default();
        for (level, n) in pairs {
            counts.0[level.index()] = *n;
        }
        counts
    }

    /// Two customers: A joins on day 10 and rises to endorsing on day 20; B joins on day 15,
    /// rises to following on day 16, and is erased on day 30.
    fn history() -> (PyramidCounts, Vec<DayFlow>) {
        let flows = vec![
            flow(10, &[FlowEntry::Joined]),
            flow(15, &[FlowEntry::Joined]),
            flow(
                16,
                &[FlowEntry::Moved {
                    from: Observing,
                    to: Following,
                }],
            ),
            flow(
                20,
                &[FlowEntry::Moved {
                    from: Observing,
                    to: Endorsing,
                }],
            ),
            flow(30, &[FlowEntry::Left(Following)]),
        ];
        (counts(&[(Endorsing, 1)]), flows)
    }

    #[test]
    fn the_past_pyramid_undoes_each_later_day() {
        let (now, flows) = history();
        assert_eq!(counts_at_end_of(&now, &flows, 40), now);
        assert_eq!(counts_at_end_of(&now, &flows, 29), counts(&[(Following, 1), (Endorsing, 1)]));
        assert_eq!(counts_at_end_of(&now, &flows, 19), counts(&[(Observing, 1), (Following, 1)]));
        assert_eq!(counts_at_end_of(&now, &flows, 15), counts(&[(Observing, 2)]));
        assert_eq!(counts_at_end_of(&now, &flows, 9), PyramidCounts::default());
    }

    #[test]
    fn weekly_series_agrees_with_each_day_on_its_own() {
        let (now, flows) = history();
        let series = weekly(&now, &flows, 33, 5);
        assert_eq!(series.iter().map(|(d, _)| *d).collect::<Vec<_>>(), vec![5, 12, 19, 26, 33]);
        for (day, counts) in series {
            assert_eq!(counts, counts_at_end_of(&now, &flows, day), "day {day}");
        }
    }

    #[test]
    fn movers_count_rises_at_their_new_level_and_drops_at_their_old_one() {
        let flows = vec![
            flow(
                1,
                &[FlowEntry::Moved {
                    from: Observing,
                    to: Endorsing,
                }],
            ),
            flow(
                2,
                &[FlowEntry::Moved {
                    from: Contributing,
                    to: Endorsing,
                }],
            ),
            flow(
                9,
                &[FlowEntry::Moved {
                    from: Following,
                    to: Endorsing,
                }],
            ),
        ];
        let moved = movers(&flows, 1, 2);
        assert_eq!(moved.up[Endorsing.index()], 1);
        assert_eq!(moved.down[Contributing.index()], 1);
        assert_eq!(moved.up.iter().sum::<u64>() + moved.down.iter().sum::<u64>(), 2, "day 9 is outside");
    }
}
