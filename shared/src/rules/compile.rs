//! Reading a rules file: the TOML as written (`Raw…`, with spans), checked field by field into
//! the compiled `Rules`, every problem noted with its line and column.

use super::{
    is_valid_kind_name, ConsentEffect, KindId, KindRule, LevelRule, NudgePolicy, Playbook, RuleProblem, Rules, RulesError, Step, Trigger,
    UnknownKinds, MAX_HALF_LIFE_DAYS, MAX_WEIGHT, MIN_HALF_LIFE_DAYS, OTHER_KIND,
};
use crate::identity::{Channel, HandleStyle};
use crate::level::{Level, LEVEL_COUNT};
use crate::time::MILLIS_PER_DAY;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use toml::Spanned;

impl Rules {
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

/// Compiles parsed rules, in the file's order, noting every problem (their order is the report's).
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
    let unknown_kinds = compile_unknown_kinds(raw.unknown_kinds.as_ref(), problems);
    let levels = compile_levels(&raw.levels, problems);
    let channels = compile_channels(&raw.channels, problems);
    let (kinds, kind_ids) = compile_kinds(&raw.kinds, problems);
    let nudges = match &raw.nudges {
        None => NudgePolicy::default(),
        Some(raw) => compile_nudge_policy(raw, problems),
    };
    let playbooks = compile_playbooks(&raw.playbooks, &kind_ids, &nudges, problems);
    let inverse_half_life_ms = std::array::from_fn(|i| 1.0 / (levels[i].half_life_days * MILLIS_PER_DAY as f64));
    let heaviest_kind_at = heaviest_kind_at_each_level(&kinds);
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

fn compile_unknown_kinds(raw: Option<&Spanned<String>>, problems: &mut Problems<'_>) -> UnknownKinds {
    match raw {
        None => UnknownKinds::Observe,
        Some(value) => match value.get_ref().as_str() {
            "observe" => UnknownKinds::Observe,
            "reject" => UnknownKinds::Reject,
            _ => {
                problems.at(value.span().start, "unknown_kinds", "must be \"observe\" or \"reject\"");
                UnknownKinds::Observe
            }
        },
    }
}

/// Every level's threshold and half-life; a level the file does not name is a problem.
fn compile_levels(raw: &Spanned<BTreeMap<String, Spanned<RawLevel>>>, problems: &mut Problems<'_>) -> [LevelRule; LEVEL_COUNT] {
    let mut levels: [LevelRule; LEVEL_COUNT] = std::array::from_fn(|_| LevelRule {
        threshold: 1.0,
        half_life_days: 30.0,
    });
    let mut seen_levels = HashSet::new();
    for (name, rule) in raw.get_ref() {
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
        levels[level.index()] = compile_level(level, rule.get_ref(), &path, problems);
    }
    for level in Level::ALL {
        if !seen_levels.contains(&level) {
            problems.at(
                raw.span().start,
                format!("levels.{level}"),
                "missing: every level needs a threshold and a half-life",
            );
        }
    }
    levels
}

fn compile_level(level: Level, rule: &RawLevel, path: &str, problems: &mut Problems<'_>) -> LevelRule {
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
    LevelRule {
        threshold,
        half_life_days: half_life,
    }
}

/// How each channel's handles are normalized.
fn compile_channels(raw: &BTreeMap<String, Spanned<RawChannel>>, problems: &mut Problems<'_>) -> BTreeMap<String, HandleStyle> {
    let mut channels = BTreeMap::new();
    for (name, rule) in raw {
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
    channels
}

/// The kinds in the file's order, and their ids by name.
fn compile_kinds(raw: &BTreeMap<String, Spanned<RawKind>>, problems: &mut Problems<'_>) -> (Vec<KindRule>, HashMap<String, KindId>) {
    let mut kinds = Vec::new();
    let mut kind_ids = HashMap::new();
    for (name, rule) in raw {
        let path = format!("kinds.{name}");
        if !is_valid_kind_name(name) || name == OTHER_KIND {
            problems.at(
                rule.span().start,
                &path,
                "kind names are 1..64 characters of a-z, 0-9, '_', '-' or '.', and not \"other\"",
            );
        }
        kind_ids.insert(name.clone(), KindId(kinds.len() as u16));
        kinds.push(compile_kind(name, rule.get_ref(), &path, problems));
    }
    if kinds.len() >= usize::from(u16::MAX) {
        problems.at(0, "kinds", "too many kinds");
    }
    (kinds, kind_ids)
}

fn compile_kind(name: &str, rule: &RawKind, path: &str, problems: &mut Problems<'_>) -> KindRule {
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
    KindRule {
        name: name.to_string(),
        level,
        weight,
        consent,
        max_weight,
    }
}

fn compile_nudge_policy(raw: &RawNudges, problems: &mut Problems<'_>) -> NudgePolicy {
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

/// The playbooks whose trigger compiled (the others are reported, and left out).
fn compile_playbooks(
    raw: &[Spanned<RawPlaybook>],
    kind_ids: &HashMap<String, KindId>,
    nudges: &NudgePolicy,
    problems: &mut Problems<'_>,
) -> Vec<Playbook> {
    let mut playbooks: Vec<Playbook> = Vec::new();
    for (index, spanned) in raw.iter().enumerate() {
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
        if let Some(playbook) = compile_playbook(name, raw_playbook, &path, kind_ids, nudges, problems) {
            playbooks.push(playbook);
        }
    }
    playbooks
}

/// One playbook past its name's checks: `None` when its trigger did not compile.
fn compile_playbook(
    name: String,
    raw: &RawPlaybook,
    path: &str,
    kind_ids: &HashMap<String, KindId>,
    nudges: &NudgePolicy,
    problems: &mut Problems<'_>,
) -> Option<Playbook> {
    let trigger = compile_trigger(&raw.trigger, kind_ids, &format!("{path}.trigger"), problems);
    let cool_down_days = raw.cool_down_days.as_ref().map_or(7.0, |value| {
        problems.check_range(
            value,
            &format!("{path}.cool_down_days"),
            (0.0..=3650.0).contains(value.get_ref()),
            "must be between 0 and 3650 days",
        );
        *value.get_ref()
    });
    let holdout_percent = raw.holdout_percent.as_ref().map_or(nudges.holdout_percent, |value| {
        problems.check_range(
            value,
            &format!("{path}.holdout_percent"),
            (0..=100).contains(value.get_ref()),
            "must be a percentage, 0..100",
        );
        (*value.get_ref()).clamp(0, 100) as u8
    });
    if raw.steps.get_ref().is_empty() {
        problems.at(
            raw.steps.span().start,
            format!("{path}.steps"),
            "a playbook needs at least one step",
        );
    }
    let steps = raw
        .steps
        .get_ref()
        .iter()
        .enumerate()
        .map(|(step_index, step)| compile_step(step.get_ref(), &format!("{path}.steps[{step_index}]"), kind_ids, problems))
        .collect();
    Some(Playbook {
        name,
        trigger: trigger?,
        steps,
        cool_down_days,
        holdout_percent,
    })
}

fn compile_step(step: &RawStep, path: &str, kind_ids: &HashMap<String, KindId>, problems: &mut Problems<'_>) -> Step {
    if !is_valid_kind_name(step.action.get_ref()) {
        problems.at(
            step.action.span().start,
            format!("{path}.action"),
            "action names are 1..64 characters of a-z, 0-9, '_', '-' or '.'",
        );
    }
    let channel = match Channel::parse(step.channel.get_ref()) {
        Ok(channel) => channel,
        Err(error) => {
            problems.at(step.channel.span().start, format!("{path}.channel"), error.to_string());
            Channel::parse("email").unwrap_or_else(|_| unreachable!("\"email\" is a valid channel"))
        }
    };
    for kind in &step.outcome {
        if !kind_ids.contains_key(kind.get_ref()) {
            problems.at(
                kind.span().start,
                format!("{path}.outcome"),
                format!("unknown kind {:?}", kind.get_ref()),
            );
        }
    }
    Step {
        action: step.action.get_ref().clone(),
        channel,
        outcome: step.outcome.iter().map(|k| k.get_ref().clone()).collect(),
    }
}

/// Kinds by level, heaviest first: what "what would move the customer up" suggests.
pub(super) fn heaviest_kind_at_each_level(kinds: &[KindRule]) -> [Option<KindId>; LEVEL_COUNT] {
    std::array::from_fn(|i| {
        kinds
            .iter()
            .enumerate()
            .filter(|(_, k)| k.level.index() == i && k.weight > 0.0 && k.consent != Some(ConsentEffect::Withdraw))
            .max_by(|(_, a), (_, b)| a.weight.total_cmp(&b.weight))
            .map(|(id, _)| KindId(id as u16))
    })
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
