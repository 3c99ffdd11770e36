//! Decayed evidence per level, as epoch-anchored sums.
//!
//! The evidence for level r at time t is Σ wᵢ·2^(−(t − tᵢ)/hᵣ) over interactions whose kind sits
//! at r or higher. Writing it as 2^(−(t − E)/hᵣ) · Σ wᵢ·2^((tᵢ − E)/hᵣ) for an anchor instant E
//! (the epoch) makes the second factor a plain sum: folding an interaction is an addition, which is
//! commutative (order independent) and which DynamoDB can apply atomically (`SET a = a + :x`).
//!
//! The epoch is `era_start(latest interaction)`: it only moves forward, in steps of
//! [`EPOCH_ERA_DAYS`], and it is the same whatever order the interactions arrived in. With half-lives
//! of at least one day, a term is at most `weight × 2^32` (about 4e15). Every term is rounded to
//! [`QUANTUM`] (1e-12): sums then need at most ~34 significant digits, so DynamoDB (38 digits,
//! magnitudes 1e-130..1e126) can add them exactly, and terms that small are no evidence anyway.

use crate::level::{Level, LEVEL_COUNT};
use crate::rules::{KindId, Rules};
use crate::time::{Timestamp, MILLIS_PER_DAY};

/// The epoch moves forward in steps of this many days.
pub const EPOCH_ERA_DAYS: i64 = 32;
const ERA_MS: i64 = EPOCH_ERA_DAYS * MILLIS_PER_DAY;
/// Terms are rounded to this grid (far below any threshold).
pub const QUANTUM: f64 = 1e-12;

/// Rounds a term to [`QUANTUM`]; values too large for the grid to matter are kept as they are.
pub fn quantize(value: f64) -> f64 {
    if value.abs() >= 1e3 {
        value
    } else {
        (value / QUANTUM).round() * QUANTUM
    }
}

/// How far (in shortest half-lives) an interaction may lie after the epoch and still be added
/// against it: a term is then at most `weight × 2^40` (≈ 1e18), so sums stay exact in
/// DynamoDB's 38 digits. The store folds lazily: it adds against the stored epoch while within
/// this lag, and the next rescore moves the epoch forward under its version condition.
pub const MAX_LAG_HALF_LIVES: f64 = 40.0;

/// The start of the era holding `at`: the epoch a customer whose latest interaction is `at` uses.
pub fn era_start(at: Timestamp) -> Timestamp {
    Timestamp(at.0.div_euclid(ERA_MS) * ERA_MS)
}

/// One interaction, reduced to what scoring needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Contribution {
    pub kind: KindId,
    pub level: Level,
    pub weight: f64,
    pub occurred_at: Timestamp,
}

/// What folding one contribution adds, relative to a given epoch: the store applies these as
/// atomic adds.
#[derive(Clone, Debug, PartialEq)]
pub struct EvidenceDelta {
    pub epoch: Timestamp,
    pub levels: [f64; LEVEL_COUNT],
    pub kind: KindId,
    pub kind_evidence: f64,
}

/// A customer's evidence: O(levels + kinds in the rules), whatever the number of interactions.
#[derive(Clone, Debug, PartialEq)]
pub struct Evidence {
    /// The anchor instant of the sums below.
    pub epoch: Timestamp,
    /// Per level (index 0 = observing): Σ w·2^((t − epoch)/h_level) over kinds at that level or above.
    pub levels: [f64; LEVEL_COUNT],
    /// Per kind (indexed by [`KindId`]): the same sum for that kind alone, at its own level's half-life.
    pub kinds: Vec<f64>,
    /// Per kind: how many interactions of that kind were ever folded (not decayed).
    pub kind_counts: Vec<u64>,
    /// Latest `occurred_at` folded.
    pub last_interaction_at: Option<Timestamp>,
}

impl Evidence {
    pub fn empty(rules: &Rules) -> Evidence {
        Evidence {
            epoch: Timestamp(0),
            levels: [0.0; LEVEL_COUNT],
            kinds: vec![0.0; rules.kind_count()],
            kind_counts: vec![0; rules.kind_count()],
            last_interaction_at: None,
        }
    }

    pub fn interaction_count(&self) -> u64 {
        self.kind_counts.iter().sum()
    }

    /// True when folding something at `at` first needs the epoch moved forward.
    pub fn needs_rebase(&self, at: Timestamp) -> bool {
        self.last_interaction_at.is_some() && era_start(at) > self.epoch
    }

    /// The epoch a fold at `at` happens against.
    pub fn epoch_for(&self, at: Timestamp) -> Timestamp {
        match self.last_interaction_at {
            None => era_start(at),
            Some(_) => self.epoch.max(era_start(at)),
        }
    }

    /// Whether a contribution at `at` may be added against `epoch` without moving it first.
    pub fn within_lag(rules: &Rules, epoch: Timestamp, at: Timestamp) -> bool {
        (at.0 - epoch.0) as f64 <= MAX_LAG_HALF_LIVES * rules.shortest_half_life_ms()
    }

    /// True when the epoch lags behind the era of the latest interaction (a rescore moves it).
    pub fn epoch_is_stale(&self) -> bool {
        self.last_interaction_at.is_some_and(|last| era_start(last) > self.epoch)
    }

    /// The terms one contribution adds against `epoch`.
    pub fn delta(rules: &Rules, epoch: Timestamp, contribution: &Contribution) -> EvidenceDelta {
        let mut levels = [0.0; LEVEL_COUNT];
        let elapsed = (contribution.occurred_at.0 - epoch.0) as f64;
        let inverse = rules.inverse_half_life_ms();
        let top = contribution.level.index();
        for (r, slot) in levels.iter_mut().enumerate().take(top + 1) {
            *slot = quantize(contribution.weight * (elapsed * inverse[r]).exp2());
        }
        EvidenceDelta {
            epoch,
            levels,
            kind: contribution.kind,
            kind_evidence: levels[top],
        }
    }

    /// Adds one interaction. Order independent: any order of the same folds gives the same
    /// evidence (up to floating-point rounding).
    pub fn fold(&mut self, rules: &Rules, contribution: &Contribution) {
        let epoch = self.epoch_for(contribution.occurred_at);
        if self.last_interaction_at.is_some() && epoch > self.epoch {
            self.rebase(rules, epoch);
        }
        self.epoch = epoch;
        let delta = Self::delta(rules, epoch, contribution);
        self.apply(&delta, contribution.occurred_at);
    }

    /// Applies a delta computed by [`Evidence::delta`] against this evidence's epoch (what the
    /// store does atomically).
    pub fn apply(&mut self, delta: &EvidenceDelta, occurred_at: Timestamp) {
        debug_assert_eq!(delta.epoch, self.epoch);
        for (slot, term) in self.levels.iter_mut().zip(delta.levels) {
            *slot += term;
        }
        let kind = usize::from(delta.kind.0);
        if let (Some(evidence), Some(count)) = (self.kinds.get_mut(kind), self.kind_counts.get_mut(kind)) {
            *evidence += delta.kind_evidence;
            *count += 1;
        }
        self.last_interaction_at = Some(self.last_interaction_at.map_or(occurred_at, |t| t.max(occurred_at)));
    }

    /// Moves the anchor forward to `epoch`, scaling every sum so the evidence is unchanged.
    pub fn rebase(&mut self, rules: &Rules, epoch: Timestamp) {
        if epoch <= self.epoch {
            return;
        }
        let elapsed = (epoch.0 - self.epoch.0) as f64;
        let inverse = rules.inverse_half_life_ms();
        let factors: [f64; LEVEL_COUNT] = std::array::from_fn(|r| (-elapsed * inverse[r]).exp2());
        for (slot, factor) in self.levels.iter_mut().zip(factors) {
            *slot = flush(*slot * factor);
        }
        for (id, slot) in self.kinds.iter_mut().enumerate() {
            let (level, _) = rules.kind_level_and_weight(KindId(id as u16));
            *slot = flush(*slot * factors[level.index()]);
        }
        self.epoch = epoch;
    }

    /// The evidence for `level` at `at`.
    pub fn at(&self, rules: &Rules, level: Level, at: Timestamp) -> f64 {
        let r = level.index();
        decay(self.levels[r], self.epoch, rules.inverse_half_life_ms()[r], at)
    }

    /// The evidence of one kind at `at`, decayed at its own level's half-life.
    pub fn kind_at(&self, rules: &Rules, kind: KindId, at: Timestamp) -> f64 {
        let (level, _) = rules.kind_level_and_weight(kind);
        let sum = self.kinds.get(usize::from(kind.0)).copied().unwrap_or(0.0);
        decay(sum, self.epoch, rules.inverse_half_life_ms()[level.index()], at)
    }

    /// The instant the evidence for `level` falls to `bar`, in fractional milliseconds, from the
    /// closed form `epoch + h·log2(sum / bar)`; `None` if it is already at or below zero.
    pub fn crossing_ms(&self, rules: &Rules, level: Level, bar: f64) -> Option<f64> {
        let sum = self.levels[level.index()];
        if sum <= 0.0 || bar <= 0.0 {
            return None;
        }
        Some(self.epoch.0 as f64 + rules.half_life_ms(level) * (sum / bar).log2())
    }

    /// Combines two customers' evidence: equal to folding both histories into one.
    pub fn merge(&self, rules: &Rules, other: &Evidence) -> Evidence {
        let (Some(a), Some(b)) = (self.last_interaction_at, other.last_interaction_at) else {
            return if self.last_interaction_at.is_some() {
                self.clone()
            } else {
                other.clone()
            };
        };
        let epoch = self.epoch.max(other.epoch);
        let mut left = self.clone();
        let mut right = other.clone();
        left.rebase(rules, epoch);
        right.rebase(rules, epoch);
        for (slot, term) in left.levels.iter_mut().zip(right.levels) {
            *slot += term;
        }
        for (slot, term) in left.kinds.iter_mut().zip(&right.kinds) {
            *slot += term;
        }
        for (slot, count) in left.kind_counts.iter_mut().zip(&right.kind_counts) {
            *slot += count;
        }
        left.last_interaction_at = Some(a.max(b));
        left
    }
}

fn decay(sum: f64, epoch: Timestamp, inverse_half_life_ms: f64, at: Timestamp) -> f64 {
    if sum == 0.0 {
        return 0.0;
    }
    sum * (-((at.0 - epoch.0) as f64) * inverse_half_life_ms).exp2()
}

fn flush(value: f64) -> f64 {
    quantize(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::MILLIS_PER_DAY;

    fn contribution(rules: &Rules, kind: &str, day: i64) -> Contribution {
        let id = rules.resolve_kind(kind).expect("known kind");
        let (level, weight) = rules.kind_level_and_weight(id);
        Contribution {
            kind: id,
            level,
            weight,
            occurred_at: Timestamp(day * MILLIS_PER_DAY),
        }
    }

    #[test]
    fn evidence_halves_every_half_life() {
        let rules = Rules::default_rules();
        let mut evidence = Evidence::empty(&rules);
        evidence.fold(&rules, &contribution(&rules, "event_attended", 1000));
        let half_life_days = rules.level(Level::Contributing).half_life_days as i64;
        let now = Timestamp((1000 + half_life_days) * MILLIS_PER_DAY);
        assert!((evidence.at(&rules, Level::Contributing, now) - 1.0).abs() < 1e-12);
        // The pyramid is cumulative: an event is also (faster-fading) evidence of following.
        assert!((evidence.at(&rules, Level::Following, Timestamp(1000 * MILLIS_PER_DAY)) - 2.0).abs() < 1e-12);
        assert_eq!(evidence.at(&rules, Level::Owning, now), 0.0);
    }

    #[test]
    fn a_century_of_daily_interactions_stays_in_dynamodb_number_range() {
        let text = crate::rules::DEFAULT_RULES_TOML.replace("half_life_days = 180\n", "half_life_days = 1\n");
        let rules = Rules::from_toml(&text).expect("valid");
        let mut evidence = Evidence::empty(&rules);
        for day in 0..36_525 {
            evidence.fold(&rules, &contribution(&rules, "talk_given", day));
            for value in evidence.levels.iter().chain(&evidence.kinds) {
                assert!(value.is_finite() && *value < 1e20 && (*value == 0.0 || *value >= 1e-12), "{value}");
            }
        }
    }
}
