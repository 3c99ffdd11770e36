//! Scoring and nudge rules, read from TOML (`shared/rules/default.toml`), validated with
//! line-located errors, and compiled into lookups the hot paths can use without hashing strings.

use crate::identity::{Channel, HandleStyle};
use crate::level::{Level, LEVEL_COUNT};
use crate::time::MILLIS_PER_DAY;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use toml::Spanned;

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    hysteresis: Spanned<f64>,
    at_risk_horizon_days: Spanned<f64>,
    #[serde(default)]
    unknown_kinds: Option<Spanned<String>>,
    levels: Spanned<BTreeMap<String, Spanned<RawLevel>>>,
    #[serde(default)]
    channels: BTreeMap<String, Spanned<RawChannel>>,
    kinds: BTreeMap<String, Spanned<RawKind>>,
    #[serde(default)]
    nudges: Option<RawNudges>,
    #[serde(default)]
    playbooks: Vec<Spanned<RawPlaybook>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevel {
    threshold: Spanned<f64>,
    half_life_days: Spanned<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    handle: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKind {
    level: Spanned<String>,
    weight: Spanned<f64>,
    #[serde(default)]
    consent: Option<Spanned<String>>,
    #[serde(default)]
    max_weight: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNudges {
    frequency_cap: Spanned<i64>,
    frequency_window_days: Spanned<f64>,
    holdout_percent: Spanned<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlaybook {
    name: Spanned<String>,
    trigger: Spanned<BTreeMap<String, Spanned<String>>>,
    #[serde(default)]
    cool_down_days: Option<Spanned<f64>>,
    #[serde(default)]
    holdout_percent: Option<Spanned<i64>>,
    steps: Spanned<Vec<Spanned<RawStep>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    action: Spanned<String>,
    channel: Spanned<String>,
    #[serde(default)]
    outcome: Vec<Spanned<String>>,
}

/// Collects located problems while compiling.
struct Problems<'a> {
    source: &'a str,
    found: Vec<RuleProblem>,
}

impl Problems<'_> {
    fn at(&mut self, offset: usize, path: impl Into<String>, message: impl Into<String>) {
        let before = &self.source[..offset.min(self.source.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        self.found.push(RuleProblem {
            line,
            column,
            path: path.into(),
            message: message.into(),
        });
    }

    fn check_range<T>(&mut self, value: &Spanned<T>, path: &str, ok: bool, message: &str) {
        if !ok {
            self.at(value.span().start, path, message);
        }
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

    /// Parses and validates rules, reporting every problem with its line.
    pub fn from_toml(source: &str) -> Result<Rules, RulesError> {
        let mut problems = Problems { source, found: Vec::new() };
        let raw: RawRules = match toml::from_str(source) {
            Ok(raw) => raw,
            Err(error) => {
                let offset = error.span().map_or(0, |span| span.start);
                problems.at(offset, "", error.message().to_string());
                return Err(RulesError { problems: problems.found });
            }
        };
        let rules = compile(raw, &mut problems);
        if problems.found.is_empty() {
            Ok(rules)
        } else {
            Err(RulesError { problems: problems.found })
        }
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

    pub fn playbook(&self, name: &str) -> Option<&Playbook> {
        self.playbooks.iter().find(|p| p.name == name)
    }
}

fn compile(raw: RawRules, problems: &mut Problems<'_>) -> Rules {
    let hysteresis = *raw.hysteresis.get_ref();
    problems.check_range(
        &raw.hysteresis,
        "hysteresis",
        hysteresis > 0.0 && hysteresis <= 1.0,
        "must be greater than 0 and at most 1 (promote at the threshold, drop below hysteresis × threshold)",
    );
    let horizon = *raw.at_risk_horizon_days.get_ref();
    problems.check_range(
        &raw.at_risk_horizon_days,
        "at_risk_horizon_days",
        (0.0..=MAX_HALF_LIFE_DAYS).contains(&horizon),
        "must be between 0 and 36500 days",
    );
    let unknown_kinds = match &raw.unknown_kinds {
        None => UnknownKinds::Observe,
        Some(value) => match value.get_ref().as_str() {
            "observe" => UnknownKinds::Observe,
            "reject" => UnknownKinds::Reject,
            _ => {
                problems.at(value.span().start, "unknown_kinds", "must be \"observe\" or \"reject\"");
                UnknownKinds::Observe
            }
        },
    };

    let mut levels: [LevelRule; LEVEL_COUNT] = std::array::from_fn(|_| LevelRule {
        threshold: 1.0,
        half_life_days: 30.0,
    });
    let mut seen_levels = HashSet::new();
    for (name, rule) in raw.levels.get_ref() {
        let path = format!("levels.{name}");
        let Ok(level) = name.parse::<Level>() else {
            problems.at(
                rule.span().start,
                path,
                format!("unknown level {name:?} (expected one of observing, following, endorsing, contributing, owning, leading)"),
            );
            continue;
        };
        seen_levels.insert(level);
        let rule = rule.get_ref();
        let threshold = *rule.threshold.get_ref();
        let floor = if level == Level::Observing { 0.0 } else { f64::MIN_POSITIVE };
        problems.check_range(
            &rule.threshold,
            &format!("{path}.threshold"),
            threshold.is_finite() && threshold >= floor && threshold <= MAX_WEIGHT,
            "must be a positive number of at most 1000000",
        );
        let half_life = *rule.half_life_days.get_ref();
        problems.check_range(
            &rule.half_life_days,
            &format!("{path}.half_life_days"),
            (MIN_HALF_LIFE_DAYS..=MAX_HALF_LIFE_DAYS).contains(&half_life),
            "must be between 1 and 36500 days",
        );
        levels[level.index()] = LevelRule {
            threshold,
            half_life_days: half_life,
        };
    }
    for level in Level::ALL {
        if !seen_levels.contains(&level) {
            problems.at(
                raw.levels.span().start,
                format!("levels.{level}"),
                "missing: every level needs a threshold and a half-life",
            );
        }
    }

    let mut channels = BTreeMap::new();
    for (name, rule) in &raw.channels {
        let path = format!("channels.{name}");
        if Channel::parse(name).is_err() {
            problems.at(
                rule.span().start,
                &path,
                "channel names are 1..32 characters of a-z, 0-9, '_' or '-'",
            );
        }
        let handle = rule.get_ref().handle.get_ref().as_str();
        let style = match handle {
            "email" => HandleStyle::Email,
            "social" => HandleStyle::Social,
            "phone" => HandleStyle::Phone,
            "exact" => HandleStyle::Exact,
            _ => {
                problems.at(
                    rule.get_ref().handle.span().start,
                    format!("{path}.handle"),
                    "must be one of \"email\", \"social\", \"phone\", \"exact\"",
                );
                HandleStyle::Social
            }
        };
        channels.insert(name.clone(), style);
    }

    let mut kinds = Vec::new();
    let mut kind_ids = HashMap::new();
    for (name, rule) in &raw.kinds {
        let path = format!("kinds.{name}");
        if !is_valid_kind_name(name) || name == OTHER_KIND {
            problems.at(
                rule.span().start,
                &path,
                "kind names are 1..64 characters of a-z, 0-9, '_', '-' or '.', and not \"other\"",
            );
        }
        let rule = rule.get_ref();
        let level = match rule.level.get_ref().parse::<Level>() {
            Ok(level) => level,
            Err(error) => {
                problems.at(rule.level.span().start, format!("{path}.level"), error.to_string());
                Level::Observing
            }
        };
        let weight = *rule.weight.get_ref();
        problems.check_range(
            &rule.weight,
            &format!("{path}.weight"),
            weight.is_finite() && (0.0..=MAX_WEIGHT).contains(&weight),
            "must be between 0 and 1000000",
        );
        let consent = match &rule.consent {
            None => None,
            Some(value) => match value.get_ref().as_str() {
                "grant" => Some(ConsentEffect::Grant),
                "withdraw" => Some(ConsentEffect::Withdraw),
                _ => {
                    problems.at(value.span().start, format!("{path}.consent"), "must be \"grant\" or \"withdraw\"");
                    None
                }
            },
        };
        let max_weight = rule.max_weight.as_ref().map(|value| {
            let max = *value.get_ref();
            problems.check_range(
                value,
                &format!("{path}.max_weight"),
                max.is_finite() && max > 0.0 && max <= MAX_WEIGHT,
                "must be greater than 0 and at most 1000000",
            );
            max
        });
        kind_ids.insert(name.clone(), KindId(kinds.len() as u16));
        kinds.push(KindRule {
            name: name.clone(),
            level,
            weight,
            consent,
            max_weight,
        });
    }
    if kinds.len() >= usize::from(u16::MAX) {
        problems.at(0, "kinds", "too many kinds");
    }

    let nudges = match &raw.nudges {
        None => NudgePolicy::default(),
        Some(raw) => {
            let cap = *raw.frequency_cap.get_ref();
            problems.check_range(
                &raw.frequency_cap,
                "nudges.frequency_cap",
                (0..=1000).contains(&cap),
                "must be between 0 and 1000",
            );
            let window = *raw.frequency_window_days.get_ref();
            problems.check_range(
                &raw.frequency_window_days,
                "nudges.frequency_window_days",
                window > 0.0 && window <= 365.0,
                "must be more than 0 and at most 365 days",
            );
            let holdout = *raw.holdout_percent.get_ref();
            problems.check_range(
                &raw.holdout_percent,
                "nudges.holdout_percent",
                (0..=100).contains(&holdout),
                "must be a percentage, 0..100",
            );
            NudgePolicy {
                frequency_cap: cap.clamp(0, 1000) as u32,
                frequency_window_days: window,
                holdout_percent: holdout.clamp(0, 100) as u8,
            }
        }
    };

    let mut playbooks: Vec<Playbook> = Vec::new();
    for (index, spanned) in raw.playbooks.iter().enumerate() {
        let raw_playbook = spanned.get_ref();
        let name = raw_playbook.name.get_ref().clone();
        let path = format!("playbooks[{index}]");
        if !is_valid_kind_name(&name) {
            problems.at(
                raw_playbook.name.span().start,
                format!("{path}.name"),
                "playbook names are 1..64 characters of a-z, 0-9, '_', '-' or '.'",
            );
        }
        if playbooks.iter().any(|p| p.name == name) {
            problems.at(
                raw_playbook.name.span().start,
                format!("{path}.name"),
                format!("a playbook named {name:?} exists already"),
            );
        }
        let trigger = compile_trigger(&raw_playbook.trigger, &kind_ids, &format!("{path}.trigger"), problems);
        let cool_down_days = raw_playbook.cool_down_days.as_ref().map_or(7.0, |value| {
            problems.check_range(
                value,
                &format!("{path}.cool_down_days"),
                (0.0..=3650.0).contains(value.get_ref()),
                "must be between 0 and 3650 days",
            );
            *value.get_ref()
        });
        let holdout_percent = raw_playbook.holdout_percent.as_ref().map_or(nudges.holdout_percent, |value| {
            problems.check_range(
                value,
                &format!("{path}.holdout_percent"),
                (0..=100).contains(value.get_ref()),
                "must be a percentage, 0..100",
            );
            (*value.get_ref()).clamp(0, 100) as u8
        });
        if raw_playbook.steps.get_ref().is_empty() {
            problems.at(
                raw_playbook.steps.span().start,
                format!("{path}.steps"),
                "a playbook needs at least one step",
            );
        }
        let mut steps = Vec::new();
        for (step_index, step) in raw_playbook.steps.get_ref().iter().enumerate() {
            let step = step.get_ref();
            let step_path = format!("{path}.steps[{step_index}]");
            if !is_valid_kind_name(step.action.get_ref()) {
                problems.at(
                    step.action.span().start,
                    format!("{step_path}.action"),
                    "action names are 1..64 characters of a-z, 0-9, '_', '-' or '.'",
                );
            }
            let channel = match Channel::parse(step.channel.get_ref()) {
                Ok(channel) => channel,
                Err(error) => {
                    problems.at(step.channel.span().start, format!("{step_path}.channel"), error.to_string());
                    Channel::parse("email").unwrap_or_else(|_| unreachable!("\"email\" is a valid channel"))
                }
            };
            for kind in &step.outcome {
                if !kind_ids.contains_key(kind.get_ref()) {
                    problems.at(
                        kind.span().start,
                        format!("{step_path}.outcome"),
                        format!("unknown kind {:?}", kind.get_ref()),
                    );
                }
            }
            steps.push(Step {
                action: step.action.get_ref().clone(),
                channel,
                outcome: step.outcome.iter().map(|k| k.get_ref().clone()).collect(),
            });
        }
        if let Some(trigger) = trigger {
            playbooks.push(Playbook {
                name,
                trigger,
                steps,
                cool_down_days,
                holdout_percent,
            });
        }
    }

    let inverse_half_life_ms = std::array::from_fn(|i| 1.0 / (levels[i].half_life_days * MILLIS_PER_DAY as f64));
    let heaviest_kind_at = std::array::from_fn(|i| {
        kinds
            .iter()
            .enumerate()
            .filter(|(_, k)| k.level.index() == i && k.weight > 0.0 && k.consent != Some(ConsentEffect::Withdraw))
            .max_by(|(_, a), (_, b)| a.weight.total_cmp(&b.weight))
            .map(|(id, _)| KindId(id as u16))
    });
    Rules {
        hysteresis,
        at_risk_horizon_days: horizon,
        unknown_kinds,
        levels,
        kinds,
        kind_ids,
        channels,
        nudges,
        playbooks,
        inverse_half_life_ms,
        heaviest_kind_at,
    }
}

fn compile_trigger(
    raw: &Spanned<BTreeMap<String, Spanned<String>>>,
    kind_ids: &HashMap<String, KindId>,
    path: &str,
    problems: &mut Problems<'_>,
) -> Option<Trigger> {
    let entries = raw.get_ref();
    if entries.len() != 1 {
        problems.at(raw.span().start, path, "needs exactly one of level_reached, at_risk, interaction");
        return None;
    }
    let (key, value) = entries.iter().next()?;
    let mut level = || match value.get_ref().parse::<Level>() {
        Ok(level) => Some(level),
        Err(error) => {
            problems.at(value.span().start, format!("{path}.{key}"), error.to_string());
            None
        }
    };
    match key.as_str() {
        "level_reached" => level().map(Trigger::LevelReached),
        "at_risk" => level().map(Trigger::AtRisk),
        "interaction" => {
            if kind_ids.contains_key(value.get_ref()) {
                Some(Trigger::Interaction(value.get_ref().clone()))
            } else {
                problems.at(
                    value.span().start,
                    format!("{path}.interaction"),
                    format!("unknown kind {:?}", value.get_ref()),
                );
                None
            }
        }
        other => {
            problems.at(
                raw.span().start,
                format!("{path}.{other}"),
                "unknown trigger (expected level_reached, at_risk or interaction)",
            );
            None
        }
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
