//! Choosing the next nudge: which playbook step a trigger offers a customer, or why none is sent.

use crate::customer::Consents;
use crate::identity::Channel;
use crate::rules::{Playbook, Rules, Step, Trigger};
use crate::time::{Timestamp, MILLIS_PER_DAY};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What became of one offered step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NudgeOutcome {
    /// Handed to the marketing or support tool.
    Sent,
    /// The customer is in the playbook's holdout: recorded, not sent, to measure uplift.
    HeldOut,
    /// Not sent, for the reason given.
    Suppressed,
}

/// Why a step was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressReason {
    /// No consent on the step's channel.
    NoConsent,
    /// A step of this playbook went out too recently.
    CoolDown,
    /// The customer had as many nudges as the rules allow in the window.
    FrequencyCap,
    /// Every step of the playbook was already offered.
    LadderFinished,
    /// Consent was given on the channel, but the customer has no handle there to reach.
    NoHandle,
}

impl SuppressReason {
    pub fn name(self) -> &'static str {
        match self {
            SuppressReason::NoConsent => "no_consent",
            SuppressReason::CoolDown => "cool_down",
            SuppressReason::FrequencyCap => "frequency_cap",
            SuppressReason::LadderFinished => "ladder_finished",
            SuppressReason::NoHandle => "no_handle",
        }
    }
}

/// A nudge decision already recorded for the customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NudgeRecord {
    pub playbook: String,
    /// 1-based position on the playbook's ladder.
    pub step: u32,
    pub outcome: NudgeOutcome,
    pub decided_at: Timestamp,
}

/// A rise this many days or fewer after a nudge counts toward that nudge's step (for sent and
/// held-out nudges alike, so the two rates compare).
pub const ATTRIBUTION_DAYS: i64 = 30;

/// Whether a rise at `rose_at` counts as "moved up after" this nudge.
pub fn rise_follows(nudge: &NudgeRecord, rose_at: Timestamp) -> bool {
    matches!(nudge.outcome, NudgeOutcome::Sent | NudgeOutcome::HeldOut)
        && nudge.decided_at < rose_at
        && rose_at.millis() - nudge.decided_at.millis() <= ATTRIBUTION_DAYS * MILLIS_PER_DAY
}

/// The decision for one playbook that a trigger matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NudgeDecision {
    pub playbook: String,
    pub step: u32,
    pub action: String,
    pub channel: Channel,
    pub outcome: NudgeOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<SuppressReason>,
}

/// The id of the nudge a trigger yields for a playbook step: stable, so a redelivered trigger
/// finds its nudge already recorded, and receivers deduplicate on it.
pub fn nudge_id(trigger_id: &str, playbook: &str, step: u32) -> String {
    let digest = Sha256::new()
        .chain_update(trigger_id.as_bytes())
        .chain_update([0u8])
        .chain_update(playbook.as_bytes())
        .chain_update([0u8])
        .chain_update(step.to_string().as_bytes())
        .finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("ndg_{hex}")
}

/// True when the customer is in the playbook's holdout. Deterministic: the same customer is
/// always in or always out of the same playbook, so uplift can be measured later.
pub fn in_holdout(customer_id: &str, playbook: &Playbook) -> bool {
    if playbook.holdout_percent == 0 {
        return false;
    }
    let digest = Sha256::new()
        .chain_update(customer_id.as_bytes())
        .chain_update([0u8])
        .chain_update(playbook.name.as_bytes())
        .finalize();
    let mut bucket = [0u8; 8];
    bucket.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bucket) % 100 < u64::from(playbook.holdout_percent)
}

/// How far up its ladder the customer is: the highest step sent or held out.
fn ladder_position(playbook: &Playbook, history: &[NudgeRecord]) -> (u32, Option<Timestamp>) {
    history
        .iter()
        .filter(|r| r.playbook == playbook.name && r.outcome != NudgeOutcome::Suppressed)
        .fold(
            (0, None),
            |(step, at), r| if r.step > step { (r.step, Some(r.decided_at)) } else { (step, at) },
        )
}

/// Whether any playbook could offer a step on this trigger: its own trigger, or an interaction
/// that is some step's outcome. Anything else needs no history read.
pub fn may_offer(rules: &Rules, trigger: &Trigger) -> bool {
    rules.playbooks.iter().any(|playbook| {
        &playbook.trigger == trigger
            || matches!(trigger, Trigger::Interaction(kind) if playbook.steps.iter().any(|step| step.outcome.contains(kind)))
    })
}

/// Held-out nudges count as sent for the caps: the holdout group must see the same cadence as
/// the treated group, or the two are not comparable.
fn would_have_sent(record: &&NudgeRecord) -> bool {
    record.outcome != NudgeOutcome::Suppressed
}

/// Whether `trigger` is an interaction that counts as the outcome of the last step offered
/// (before `now`), which offers the next one.
fn is_outcome_of_last_step(playbook: &Playbook, trigger: &Trigger, position: u32, last_at: Option<Timestamp>, now: Timestamp) -> bool {
    match (trigger, position) {
        (Trigger::Interaction(kind), 1..) => playbook
            .steps
            .get(position as usize - 1)
            .is_some_and(|step| step.outcome.contains(kind) && last_at.is_some_and(|at| at <= now)),
        _ => false,
    }
}

/// Why a step may not go out now: no consent on its channel, the playbook's cool-down, or the
/// frequency cap (`sent_in_window` already sent); `None` when it may.
fn why_suppressed(
    rules: &Rules,
    playbook: &Playbook,
    step: &Step,
    consent: &Consents,
    history: &[NudgeRecord],
    sent_in_window: u32,
    now: Timestamp,
) -> Option<SuppressReason> {
    let last_sent = history
        .iter()
        .filter(would_have_sent)
        .filter(|r| r.playbook == playbook.name)
        .map(|r| r.decided_at)
        .max();
    let cool_down_ms = (playbook.cool_down_days * MILLIS_PER_DAY as f64) as i64;
    if !consent.granted(&step.channel) {
        Some(SuppressReason::NoConsent)
    } else if last_sent.is_some_and(|at| at.plus_millis(cool_down_ms) > now) {
        Some(SuppressReason::CoolDown)
    } else if sent_in_window >= rules.nudges.frequency_cap {
        Some(SuppressReason::FrequencyCap)
    } else {
        None
    }
}

/// Offers, for each playbook the trigger matches, its next step, or says why none is sent.
///
/// A playbook matches when the trigger is its own (offering the step after the last one offered),
/// or when an interaction is an outcome of the last step offered (climbing the ladder: the guest
/// who came to the event is next asked to sponsor it).
pub fn select_nudges(
    rules: &Rules,
    customer_id: &str,
    consent: &Consents,
    history: &[NudgeRecord],
    trigger: &Trigger,
    now: Timestamp,
) -> Vec<NudgeDecision> {
    let window_start = now.minus_millis((rules.nudges.frequency_window_days * MILLIS_PER_DAY as f64) as i64);
    let mut sent_in_window = history
        .iter()
        .filter(would_have_sent)
        .filter(|r| r.decided_at > window_start)
        .count() as u32;
    let mut decisions = Vec::new();
    for playbook in &rules.playbooks {
        let (position, last_at) = ladder_position(playbook, history);
        let own_trigger = &playbook.trigger == trigger;
        let outcome_of_last = is_outcome_of_last_step(playbook, trigger, position, last_at, now);
        if !own_trigger && !outcome_of_last {
            continue;
        }
        let Some(step) = playbook.steps.get(position as usize) else {
            if own_trigger {
                let last = &playbook.steps[playbook.steps.len() - 1];
                decisions.push(NudgeDecision {
                    playbook: playbook.name.clone(),
                    step: position,
                    action: last.action.clone(),
                    channel: last.channel.clone(),
                    outcome: NudgeOutcome::Suppressed,
                    reason: Some(SuppressReason::LadderFinished),
                });
            }
            continue;
        };
        let reason = why_suppressed(rules, playbook, step, consent, history, sent_in_window, now);
        let outcome = match reason {
            Some(_) => NudgeOutcome::Suppressed,
            None => {
                sent_in_window += 1;
                if in_holdout(customer_id, playbook) {
                    NudgeOutcome::HeldOut
                } else {
                    NudgeOutcome::Sent
                }
            }
        };
        decisions.push(NudgeDecision {
            playbook: playbook.name.clone(),
            step: position + 1,
            action: step.action.clone(),
            channel: step.channel.clone(),
            outcome,
            reason,
        });
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_playbook_triggers_and_ladder_outcomes_may_offer_a_step() {
        let rules = Rules::default_rules();
        assert!(may_offer(&rules, &Trigger::LevelReached(crate::Level::Endorsing)));
        // An outcome of a step (the guest came to the event) climbs the ladder.
        assert!(may_offer(&rules, &Trigger::Interaction("event_attended".into())));
        assert!(!may_offer(&rules, &Trigger::Interaction("page_viewed".into())));
    }
}
