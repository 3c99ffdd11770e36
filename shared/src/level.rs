//! The six rungs of the Engagement Pyramid.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A rung of the Engagement Pyramid, from 1 (observing) to 6 (leading).
/// Ordered: `Level::Leading > Level::Observing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Aware of the company; looks at its messages now and then.
    Observing = 1,
    /// Gave contact permission to learn about the offerings.
    Following = 2,
    /// Advocates publicly and lets the company say so.
    Endorsing = 3,
    /// Spends time or money: forums, events, sponsoring, purchases.
    Contributing = 4,
    /// Deep commitment: invests, joins a board.
    Owning = 5,
    /// Volunteers to lead initiatives.
    Leading = 6,
}

/// Number of rungs; per-level state is an array of this length.
pub const LEVEL_COUNT: usize = 6;

impl Level {
    pub const ALL: [Level; LEVEL_COUNT] = [
        Level::Observing,
        Level::Following,
        Level::Endorsing,
        Level::Contributing,
        Level::Owning,
        Level::Leading,
    ];

    /// 1..=6
    pub fn rung(self) -> u8 {
        self as u8
    }

    /// 0..=5, for indexing per-level arrays.
    pub fn index(self) -> usize {
        self as usize - 1
    }

    pub fn from_rung(rung: u8) -> Option<Level> {
        Level::ALL.get(usize::from(rung).checked_sub(1)?).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Observing => "observing",
            Level::Following => "following",
            Level::Endorsing => "endorsing",
            Level::Contributing => "contributing",
            Level::Owning => "owning",
            Level::Leading => "leading",
        }
    }

    /// The rung above, if any.
    pub fn up(self) -> Option<Level> {
        Level::from_rung(self.rung() + 1)
    }

    /// The rung below, if any.
    pub fn down(self) -> Option<Level> {
        Level::from_rung(self.rung().checked_sub(1)?)
    }

    /// The name with a capital, for explanations read by people.
    pub fn title(self) -> &'static str {
        match self {
            Level::Observing => "Observing",
            Level::Following => "Following",
            Level::Endorsing => "Endorsing",
            Level::Contributing => "Contributing",
            Level::Owning => "Owning",
            Level::Leading => "Leading",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown level {0:?} (expected one of observing, following, endorsing, contributing, owning, leading)")]
pub struct UnknownLevel(pub String);

impl FromStr for Level {
    type Err = UnknownLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::ALL
            .into_iter()
            .find(|level| level.name() == s)
            .ok_or_else(|| UnknownLevel(s.to_string()))
    }
}

/// Which way a level moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    pub fn between(from: Level, to: Level) -> Option<Direction> {
        match to.cmp(&from) {
            std::cmp::Ordering::Greater => Some(Direction::Up),
            std::cmp::Ordering::Less => Some(Direction::Down),
            std::cmp::Ordering::Equal => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_through_their_lowercase_names() {
        for level in Level::ALL {
            assert_eq!(level.name().parse::<Level>(), Ok(level));
            let json = serde_json::to_string(&level).expect("serialize");
            assert_eq!(json, format!("\"{}\"", level.name()));
        }
        assert!("Leading".parse::<Level>().is_err());
    }

    #[test]
    fn rungs_are_ordered_one_to_six() {
        assert_eq!(Level::Observing.rung(), 1);
        assert_eq!(Level::Leading.rung(), 6);
        assert!(Level::Owning > Level::Contributing);
        assert_eq!(Level::Observing.down(), None);
        assert_eq!(Level::Leading.up(), None);
        assert_eq!(Level::from_rung(0), None);
        assert_eq!(Level::from_rung(7), None);
    }
}
