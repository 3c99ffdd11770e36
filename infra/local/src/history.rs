//! Plays a history of interactions through the real handlers, week by week, with the clock set to
//! each week's end: levels rise and drop when they would have, the daily flow and the level
//! changes are dated then, nudges are decided then, and later rises count toward them. The demo
//! community is made this way, so its dashboard shows two years as if the engine had run all along.

use crate::bus::CollectingBus;
use engagement::events::{recorded_events, DomainEvent};
use engagement::ports::{Clock, EngagementStore};
use engagement::{validate_interaction, Interaction, Rules, Timestamp, MILLIS_PER_DAY};
use engagement_aws::DynamoStore;
use nudge::Nudger;
use rescore::Rescorer;
use serde_json::Value;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A clock the simulation moves forward.
#[derive(Clone, Default)]
pub struct SteppedClock(Arc<AtomicI64>);

impl SteppedClock {
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.millis(), Ordering::Relaxed);
    }
}

impl Clock for SteppedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::Relaxed))
    }
}

#[derive(Debug, Default)]
pub struct HistoryReport {
    pub recorded: u64,
    pub rejected: u64,
    pub level_changes: u64,
    pub nudges: u64,
    pub weeks: u64,
}

/// Interactions per ingest call (the API's batch limit).
const BATCH: usize = 500;

/// The interactions that pass validation (as of `until`), oldest first; the others are counted.
fn valid_in_time_order(submitted: &[Value], rules: &Rules, until: Timestamp, report: &mut HistoryReport) -> Vec<Interaction> {
    let mut interactions: Vec<Interaction> = Vec::with_capacity(submitted.len());
    for value in submitted {
        match validate_interaction(value, rules, until) {
            Ok(interaction) => interactions.push(interaction),
            Err(_) => report.rejected += 1,
        }
    }
    interactions.sort_by_key(|i| i.occurred_at);
    interactions
}

/// Records `submitted` (as clients send them) week by week up to `until`, rescoring and nudging
/// at the end of each week. Nudges are decided and recorded, not delivered: this is history.
/// `progress` hears of each week played, with the week's end.
pub async fn play(
    store: &DynamoStore,
    rules: &Arc<Rules>,
    submitted: Vec<Value>,
    until: Timestamp,
    mut progress: impl FnMut(Timestamp, &HistoryReport),
) -> anyhow::Result<HistoryReport> {
    let mut report = HistoryReport::default();
    let interactions = valid_in_time_order(&submitted, rules, until, &mut report);
    let Some(first) = interactions.first().map(|i| i.occurred_at) else {
        return Ok(report);
    };
    let clock = SteppedClock::default();
    let bus = CollectingBus::default();
    let rescorer = Rescorer {
        store: store.clone(),
        bus: bus.clone(),
        clock: clock.clone(),
        rules: Arc::clone(rules),
    };
    let nudger = Nudger {
        store: store.clone(),
        bus: bus.clone(),
        clock: clock.clone(),
        rules: Arc::clone(rules),
    };
    let week = 7 * MILLIS_PER_DAY;
    let mut next = 0;
    let mut end = Timestamp::from_millis(first.millis() + week);
    loop {
        let end_now = end.min(until);
        clock.set(end_now);
        let upto = next + interactions[next..].partition_point(|i| i.occurred_at <= end_now);
        for batch in interactions[next..upto].chunks(BATCH) {
            let outcomes = store.record_interactions(batch, end_now).await?;
            let kinds: Vec<&str> = batch.iter().map(|i| i.kind.as_str()).collect();
            report.recorded += outcomes
                .iter()
                .filter(|o| o.status == engagement::ports::RecordStatus::Recorded)
                .count() as u64;
            for event in recorded_events(&outcomes, &kinds, end_now) {
                nudger.on_event(&event).await?;
            }
        }
        next = upto;
        // What a scheduled sweep at the week's end does: rescores the customers with new
        // interactions, warns those entering the at-risk window and drops those due to drop.
        rescorer.sweep(100, || true).await?;
        // Hand on what was published until nothing more is (nudges publish Nudge Requested).
        loop {
            let events = bus.take();
            if events.is_empty() {
                break;
            }
            for event in events {
                match event {
                    DomainEvent::NudgeRequested(_) => report.nudges += 1,
                    DomainEvent::LevelChanged(_) => {
                        report.level_changes += 1;
                        nudger.on_event(&event).await?;
                    }
                    _ => {
                        nudger.on_event(&event).await?;
                    }
                }
            }
        }
        report.weeks += 1;
        progress(end_now, &report);
        if end_now >= until {
            return Ok(report);
        }
        end = Timestamp::from_millis(end.millis() + week);
    }
}
