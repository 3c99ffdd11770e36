//! Instants as milliseconds since the Unix epoch. The core never reads a clock:
//! every function that needs "now" takes it as an argument.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

pub const MILLIS_PER_SECOND: i64 = 1_000;
pub const MILLIS_PER_DAY: i64 = 86_400_000;

/// An instant, in whole milliseconds since 1970-01-01T00:00:00Z.
/// Serialized as RFC 3339 in UTC (`2026-03-03T09:30:00Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// Parses RFC 3339 with an explicit offset (`Z` or `+02:00`).
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        DateTime::parse_from_rfc3339(text).ok().map(|t| Timestamp(t.timestamp_millis()))
    }

    pub fn to_rfc3339(self) -> String {
        match DateTime::<Utc>::from_timestamp_millis(self.0) {
            Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            None => format!("@{}ms", self.0),
        }
    }

    /// `self + days` (fractional days allowed), saturating.
    pub fn plus_days(self, days: f64) -> Timestamp {
        self.plus_millis((days * MILLIS_PER_DAY as f64) as i64)
    }

    pub fn plus_millis(self, millis: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(millis))
    }

    pub fn minus_millis(self, millis: i64) -> Timestamp {
        Timestamp(self.0.saturating_sub(millis))
    }

    /// Whole calendar date, for explanations ("3 March 2026").
    pub fn human_date(self) -> String {
        match DateTime::<Utc>::from_timestamp_millis(self.0) {
            Some(t) => t.format("%-d %B %Y").to_string(),
            None => self.to_rfc3339(),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text).ok_or_else(|| serde::de::Error::custom(format!("not RFC 3339: {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_prints_utc() {
        let t = Timestamp::parse_rfc3339("2026-03-03T10:30:00+01:00").expect("valid");
        assert_eq!(t.to_rfc3339(), "2026-03-03T09:30:00Z");
        assert_eq!(t.human_date(), "3 March 2026");
        assert!(Timestamp::parse_rfc3339("2026-03-03 10:30").is_none());
        assert!(Timestamp::parse_rfc3339("2026-03-03T10:30:00").is_none(), "offset required");
    }
}
