//! Scoring and nudge rules, read from TOML (`shared/rules/default.toml`), validated with
//! line-located errors, and compiled into lookups the hot paths can use without hashing strings.

use crate::identity::{Channel, HandleStyle};
use crate::level::{Level, LEVEL_COUNT};
use crate::time::MILLIS_PER_DAY;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

mod compile;
mod write;

/// The rules shipped with the engine; a deployment may replace them.
pub const DEFAULT_RULES_TOML: &str = include_str!("../rules/default.toml");

/// Shortest half-life accepted: the evidence accumulators are anchored to an epoch that moves
/// at most every [`crate::evidence::EPOCH_ERA_DAYS`], and this bound keeps them far inside f64
/// and DynamoDB's number range.
pub const MIN_HALF_LIFE_DAYS: f64 = 1.0;
pub const MAX_HALF_LIFE_DAYS: f64 = 36_500.0;
/// Largest weight a kind (or a client's override) may carry.
pub const MAX_WEIGHT: f64 = 1_000_000.0;
/// Interaction kinds: lowercase words, like channels but longer.
pub const MAX_KIND_LEN: usize = 64;

/// Index of an interaction kind in the compiled rules. The last index is "other":
/// kinds the rules do not name, when they are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KindId(pub u16);

/// What an interaction of a kind does to consent on its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentEffect {
    Grant,
    Withdraw,
}

/// What happens to interactions whose kind the rules do not name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnknownKinds {
    /// Recorded, and counted as `observing` with weight 1.
    #[default]
    Observe,
    /// Refused at validation.
    Reject,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LevelRule {
    pub threshold: f64,
    pub half_life_days: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct KindRule {
    pub name: String,
    pub level: Level,
    pub weight: f64,
    pub consent: Option<ConsentEffect>,
    /// When set, a client may send its own `weight` up to this value (e.g. a purchase amount).
    pub max_weight: Option<f64>,
}

/// Caps that hold across all playbooks.
#[derive(Clone, Debug, PartialEq)]
pub struct NudgePolicy {
    /// At most this many nudges sent to one customer per window.
    pub frequency_cap: u32,
    pub frequency_window_days: f64,
    /// Share of customers held out of each playbook (unless the playbook says otherwise).
    pub holdout_percent: u8,
}

impl Default for NudgePolicy {
    fn default() -> Self {
        NudgePolicy {
            frequency_cap: 3,
            frequency_window_days: 7.0,
            holdout_percent: 10,
        }
    }
}

/// What starts a playbook.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The customer rose to this level.
    LevelReached(Level),
    /// The customer became at risk of dropping from this level.
    AtRisk(Level),
    /// The customer did something of this kind.
    Interaction(String),
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::LevelReached(level) => write!(f, "level_reached:{level}"),
            Trigger::AtRisk(level) => write!(f, "at_risk:{level}"),
            Trigger::Interaction(kind) => write!(f, "interaction:{kind}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub action: String,
    /// The channel the nudge goes out on; the customer must have consented on it.
    pub channel: Channel,
    /// Interaction kinds that count as this step's outcome; one arriving after the step was
    /// sent offers the next step.
    pub outcome: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Playbook {
    pub name: String,
    pub trigger: Trigger,
    pub steps: Vec<Step>,
    /// Least time between two steps of this playbook for one customer.
    pub cool_down_days: f64,
    pub holdout_percent: u8,
}

/// Validated, compiled rules.
#[derive(Clone, Debug)]
pub struct Rules {
    pub hysteresis: f64,
    pub at_risk_horizon_days: f64,
    pub unknown_kinds: UnknownKinds,
    levels: [LevelRule; LEVEL_COUNT],
    kinds: Vec<KindRule>,
    kind_ids: HashMap<String, KindId>,
    channels: BTreeMap<String, HandleStyle>,
    pub nudges: NudgePolicy,
    pub playbooks: Vec<Playbook>,
    inverse_half_life_ms: [f64; LEVEL_COUNT],
    /// Kinds by level, heaviest first: the suggestions in "what would move the customer up".
    heaviest_kind_at: [Option<KindId>; LEVEL_COUNT],
}

/// The name under which kinds unknown to the rules are counted.
pub const OTHER_KIND: &str = "other";

/// One problem in a rules file, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleProblem {
    pub line: usize,
    pub column: usize,
    pub path: String,
    pub message: String,
}

impl fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: ", self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a rules file (not just the first).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RulesError {
    pub problems: Vec<RuleProblem>,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid rules ({} problem(s))", self.problems.len())?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// True for `[a-z0-9_.-]{1,64}`, the shape of an interaction kind or an action name.
pub fn is_valid_kind_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_KIND_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.'))
}

impl Rules {
    /// The rules shipped in `shared/rules/default.toml`.
    pub fn default_rules() -> Rules {
        match Rules::from_toml(DEFAULT_RULES_TOML) {
            Ok(rules) => rules,
            // The file is compiled in and covered by tests; failing here is a build defect.
            Err(error) => panic!("shared/rules/default.toml is invalid: {error}"),
        }
    }

    /// A short digest of what scoring depends on (hysteresis, the at-risk horizon, unknown kinds,
    /// each level's threshold and half-life, each kind's level, weight, cap and consent effect),
    /// stored on each customer with the evidence folded under these rules: evidence folded
    /// under other rules must be re-folded (`pyramid refold`) before it is decided again.
    /// Playbooks and nudge caps are not part of it: changing them needs no refold.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        use std::fmt::Write as _;
        let mut text = format!(
            "v1|{:x}|{:x}|{:?}",
            self.hysteresis.to_bits(),
            self.at_risk_horizon_days.to_bits(),
            self.unknown_kinds
        );
        for level in &self.levels {
            let _ = write!(text, "|L{:x},{:x}", level.threshold.to_bits(), level.half_life_days.to_bits());
        }
        for kind in &self.kinds {
            let _ = write!(
                text,
                "|K{},{},{:x},{:?},{:?}",
                kind.name,
                kind.level.index(),
                kind.weight.to_bits(),
                kind.max_weight.map(f64::to_bits),
                kind.consent
            );
        }
        Sha256::digest(text.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    pub fn level(&self, level: Level) -> &LevelRule {
        &self.levels[level.index()]
    }

    pub fn threshold(&self, level: Level) -> f64 {
        self.levels[level.index()].threshold
    }

    /// The evidence below which a customer already at `level` drops from it.
    pub fn hold_threshold(&self, level: Level) -> f64 {
        self.hysteresis * self.levels[level.index()].threshold
    }

    pub fn half_life_ms(&self, level: Level) -> f64 {
        self.levels[level.index()].half_life_days * MILLIS_PER_DAY as f64
    }

    /// The shortest half-life of any level, in milliseconds.
    pub fn shortest_half_life_ms(&self) -> f64 {
        self.levels.iter().map(|l| l.half_life_days).fold(f64::INFINITY, f64::min) * MILLIS_PER_DAY as f64
    }

    pub(crate) fn inverse_half_life_ms(&self) -> &[f64; LEVEL_COUNT] {
        &self.inverse_half_life_ms
    }

    /// Number of per-kind accumulators: the named kinds plus "other".
    pub fn kind_count(&self) -> usize {
        self.kinds.len() + 1
    }

    pub fn other_kind(&self) -> KindId {
        KindId(self.kinds.len() as u16)
    }

    /// Looks a kind up; unknown kinds map to "other" unless the rules reject them.
    pub fn resolve_kind(&self, kind: &str) -> Option<KindId> {
        match self.kind_ids.get(kind) {
            Some(id) => Some(*id),
            None if self.unknown_kinds == UnknownKinds::Observe => Some(self.other_kind()),
            None => None,
        }
    }

    /// The named kind, or `None` for "other".
    pub fn kind(&self, id: KindId) -> Option<&KindRule> {
        self.kinds.get(usize::from(id.0))
    }

    pub fn kinds(&self) -> &[KindRule] {
        &self.kinds
    }

    pub fn kind_name(&self, id: KindId) -> &str {
        self.kind(id).map_or(OTHER_KIND, |k| k.name.as_str())
    }

    /// The rung and default weight an interaction of this kind counts for.
    pub fn kind_level_and_weight(&self, id: KindId) -> (Level, f64) {
        self.kind(id).map_or((Level::Observing, 1.0), |k| (k.level, k.weight))
    }

    /// The heaviest kind sitting exactly at `level`, to suggest as a next step.
    pub fn heaviest_kind_at(&self, level: Level) -> Option<&KindRule> {
        self.heaviest_kind_at[level.index()].and_then(|id| self.kind(id))
    }

    /// How handles on this channel are normalized (social style unless the rules say).
    pub fn handle_style(&self, channel: &Channel) -> HandleStyle {
        self.channels.get(channel.as_str()).copied().unwrap_or_default()
    }

    /// The channels the rules name, with how their handles are compared (any other is social).
    pub fn channels(&self) -> &BTreeMap<String, HandleStyle> {
        &self.channels
    }

    pub fn playbook(&self, name: &str) -> Option<&Playbook> {
        self.playbooks.iter().find(|p| p.name == name)
    }

    /// Every level's threshold and half-life, observing first.
    pub fn level_rules(&self) -> &[LevelRule; LEVEL_COUNT] {
        &self.levels
    }

    /// These rules with other thresholds and half-lives (calibration's candidates). The caller
    /// keeps them inside the parser's bounds; [`Rules::to_toml`] then writes a file that parses.
    pub fn with_level_rules(&self, levels: [LevelRule; LEVEL_COUNT]) -> Rules {
        let mut rules = self.clone();
        rules.inverse_half_life_ms = std::array::from_fn(|i| 1.0 / (levels[i].half_life_days * MILLIS_PER_DAY as f64));
        rules.levels = levels;
        rules
    }

    /// These rules with other default weights, one per named kind in [`Rules::kinds`]' order.
    pub fn with_kind_weights(&self, weights: &[f64]) -> Rules {
        let mut rules = self.clone();
        for (kind, weight) in rules.kinds.iter_mut().zip(weights) {
            kind.weight = *weight;
        }
        rules.heaviest_kind_at = compile::heaviest_kind_at_each_level(&rules.kinds);
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rules_are_valid_and_cover_every_level() {
        let rules = Rules::default_rules();
        for level in Level::ALL {
            assert!(rules.kinds().iter().any(|k| k.level == level), "no kind at {level}");
        }
        assert!(rules.hold_threshold(Level::Contributing) < rules.threshold(Level::Contributing));
        assert!(!rules.playbooks.is_empty());
    }

    #[test]
    fn problems_are_reported_all_at_once_with_their_lines() {
        let source = "hysteresis = 1.5\nat_risk_horizon_days = 30\n\n[levels.observing]\nthreshold = 0\nhalf_life_days = 30\n\n[levels.folowing]\nthreshold = 2\nhalf_life_days = 0.5\n\n[kinds.review_posted]\nlevel = \"endorser\"\nweight = 2\n";
        let error = Rules::from_toml(source).expect_err("invalid");
        let text = error.to_string();
        assert!(text.contains("line 1, column 14: hysteresis: must be greater than 0"), "{text}");
        assert!(text.contains("levels.folowing: unknown level"), "{text}");
        assert!(
            text.contains("line 13, column 9: kinds.review_posted.level: unknown level \"endorser\""),
            "{text}"
        );
        assert!(text.contains("levels.leading: missing"), "{text}");
    }

    #[test]
    fn syntax_errors_carry_their_line() {
        let error = Rules::from_toml("hysteresis = 0.8\nat_risk_horizon_days = \n").expect_err("invalid");
        assert_eq!(error.problems[0].line, 2, "{error}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let source = DEFAULT_RULES_TOML.replace("hysteresis =", "hysteresys = 0.8\nhysteresis =");
        let error = Rules::from_toml(&source).expect_err("invalid");
        assert!(error.to_string().contains("hysteresys"), "{error}");
    }

    #[test]
    fn unknown_kinds_are_observed_or_rejected_as_configured() {
        let rules = Rules::default_rules();
        assert_eq!(rules.resolve_kind("tiktok_duet"), Some(rules.other_kind()));
        assert_eq!(rules.kind_level_and_weight(rules.other_kind()), (Level::Observing, 1.0));
        let strict =
            Rules::from_toml(&DEFAULT_RULES_TOML.replace("unknown_kinds = \"observe\"", "unknown_kinds = \"reject\"")).expect("valid");
        assert_eq!(strict.resolve_kind("tiktok_duet"), None);
    }
}
