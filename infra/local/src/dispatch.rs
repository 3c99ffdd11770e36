//! The local bus's dispatcher: hands each journaled delivery to its target as EventBridge invokes
//! a function: rescores one at a time on a queue of their own (where the waiting rescores of one
//! customer are run as one), the others up to 8 at once. A failed delivery is tried three times in a row, then again with
//! backoff (one minute, doubling, at most fifteen) for up to 24 hours, EventBridge's maximum
//! event age, and at every start (it stays in the journal); then, or at once for an error no
//! retry can mend, it is dead-lettered to `DATA/bus-dead-letter.jsonl`.

use crate::bus::LocalBus;
use crate::delivery::Delivery;
use crate::journal::Journal;
use crate::outbox::Outbox;
use crate::routing::Target;
use engagement::events::DomainEvent;
use engagement_aws::envelope::{delivered, Delivered};
use engagement_aws::{DynamoStore, SystemClock};
use nudge::Nudger;
use rescore::Rescorer;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rescores at once: each is a read and a write of the one database ingest writes to, so more
/// at once only queue ingest's transactions behind them; a burst's rescores wait in the journal
/// (durably) and are worked off behind it.
const RESCORES_AT_ONCE: usize = 1;
/// Attempts in a row before waiting.
const ATTEMPTS: u32 = 3;
const FIRST_WAIT: Duration = Duration::from_secs(60);
const LONGEST_WAIT: Duration = Duration::from_secs(15 * 60);
/// How long a delivery is retried before it is dead-lettered.
const MAXIMUM_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Why one attempt failed, and whether another one can succeed.
struct Failure {
    error: String,
    retryable: bool,
}

/// The handlers deliveries go to.
pub struct Targets {
    pub rescore: Arc<Rescorer<DynamoStore, LocalBus, SystemClock>>,
    pub nudge: Arc<Nudger<DynamoStore, LocalBus, SystemClock>>,
    pub outbox: Arc<Outbox>,
}

/// Starts dispatching `deliveries` to their targets, marking each done (or dead) in `journal`.
pub fn run(targets: Targets, journal: Journal, mut deliveries: tokio::sync::mpsc::UnboundedReceiver<Delivery>) {
    // Rescores queue on their own: nudges and webhooks do not wait behind a burst of them.
    let (to_rescore, rescores) = tokio::sync::mpsc::unbounded_channel();
    let (to_others, others) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(delivery) = deliveries.recv().await {
            let queue = if matches!(delivery.target, Target::Rescore) {
                &to_rescore
            } else {
                &to_others
            };
            if queue.send(delivery).is_err() {
                return;
            }
        }
    });
    let targets = Arc::new(targets);
    rescore_by_customer(Arc::clone(&targets), journal.clone(), rescores);
    pump(targets, journal, others, 8);
}

/// Rescores waiting their turn, one entry per customer in order of arrival. A rescore reads the
/// customer's stored state when it starts, so one run answers every delivery for that customer
/// that arrived before it started: a burst of batches naming one customer costs one rescore,
/// not one per batch. A delivery arriving once the run has started waits for a run of its own.
#[derive(Default)]
struct WaitingRescores {
    order: VecDeque<String>,
    by_customer: HashMap<String, Vec<Delivery>>,
}

impl WaitingRescores {
    fn add(&mut self, delivery: Delivery) {
        // A delivery whose customer cannot be read runs alone (and fails as it would have).
        let key = match domain_event(&delivery) {
            Ok(event) => format!("customer {}", event.customer_id()),
            Err(_) => format!("delivery {}", delivery.seq),
        };
        match self.by_customer.get_mut(&key) {
            Some(waiting) => waiting.push(delivery),
            None => {
                self.order.push_back(key.clone());
                self.by_customer.insert(key, vec![delivery]);
            }
        }
    }

    /// The deliveries of the customer who has waited longest.
    fn next(&mut self) -> Option<Vec<Delivery>> {
        let key = self.order.pop_front()?;
        self.by_customer.remove(&key)
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Delivers rescores `RESCORES_AT_ONCE` at a time, those waiting for one customer as one.
fn rescore_by_customer(targets: Arc<Targets>, journal: Journal, mut deliveries: tokio::sync::mpsc::UnboundedReceiver<Delivery>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(RESCORES_AT_ONCE));
    tokio::spawn(async move {
        let mut waiting = WaitingRescores::default();
        let mut open = true;
        while open || !waiting.is_empty() {
            tokio::select! {
                // A free turn goes to the longest waiting customer before more arrivals are read.
                biased;
                permit = Arc::clone(&permits).acquire_owned(), if !waiting.is_empty() => {
                    let (Ok(permit), Some(group)) = (permit, waiting.next()) else { return };
                    let (rescore, journal, permits) = (Arc::clone(&targets.rescore), journal.clone(), Arc::clone(&permits));
                    tokio::spawn(async move {
                        let attempt = || rescore_once(&rescore, &group[0]);
                        deliver(&group, attempt, &journal, permits, permit).await;
                    });
                }
                delivery = deliveries.recv(), if open => match delivery {
                    Some(delivery) => waiting.add(delivery),
                    None => open = false,
                },
            }
        }
    });
}

/// Delivers what arrives on `deliveries`, up to `at_once` at a time.
fn pump(targets: Arc<Targets>, journal: Journal, mut deliveries: tokio::sync::mpsc::UnboundedReceiver<Delivery>, at_once: usize) {
    let (rescore, nudge, outbox) = (
        Arc::clone(&targets.rescore),
        Arc::clone(&targets.nudge),
        Arc::clone(&targets.outbox),
    );
    let permits = Arc::new(tokio::sync::Semaphore::new(at_once));
    tokio::spawn(async move {
        while let Some(delivery) = deliveries.recv().await {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                return;
            };
            let (rescore, nudge, outbox, journal, permits) = (
                Arc::clone(&rescore),
                Arc::clone(&nudge),
                Arc::clone(&outbox),
                journal.clone(),
                Arc::clone(&permits),
            );
            tokio::spawn(async move {
                let attempt = || async {
                    match delivery.target {
                        Target::Rescore => rescore_once(&rescore, &delivery).await,
                        Target::Nudge => nudge.handle(&domain_event(&delivery)?).await.map(|_| ()).map_err(|e| Failure {
                            retryable: e.is_retryable(),
                            error: e.to_string(),
                        }),
                        Target::Deliver => {
                            let envelope = serde_json::to_value(&delivery.event).unwrap_or_default();
                            // Files and fsyncs: off the async workers.
                            let outbox = Arc::clone(&outbox);
                            tokio::task::spawn_blocking(move || outbox.enqueue(&envelope))
                                .await
                                .map_err(|e| e.to_string())
                                .and_then(|done| done.map_err(|e| e.to_string()))
                                .map_err(|error| Failure { error, retryable: true })
                        }
                    }
                };
                deliver(std::slice::from_ref(&delivery), attempt, &journal, permits, permit).await;
            });
        }
    });
}

/// Rescores the customer of `delivery`'s event.
async fn rescore_once(rescore: &Rescorer<DynamoStore, LocalBus, SystemClock>, delivery: &Delivery) -> Result<(), Failure> {
    rescore.handle(&domain_event(delivery)?).await.map(|_| ()).map_err(|e| Failure {
        retryable: e.is_retryable(),
        error: e.to_string(),
    })
}

/// The domain event a delivery carries, read from its envelope as a Lambda main reads it (the
/// handlers take domain events). An envelope that holds none is an error no retry mends.
fn domain_event(delivery: &Delivery) -> Result<DomainEvent, Failure> {
    match delivered(&delivery.event) {
        Ok(Delivered::Event(event)) => Ok(event),
        Ok(Delivered::Schedule) => Err(Failure {
            error: "a scheduled event on the bus".into(),
            retryable: false,
        }),
        Err(error) => Err(Failure {
            error: error.to_string(),
            retryable: false,
        }),
    }
}

/// Tries one attempt, which answers every delivery of `group` (one event, or the waiting rescores
/// of one customer), until its target takes it or it is dead-lettered: `ATTEMPTS` in a row, then
/// again after a growing wait, holding a permit only while attempting.
async fn deliver<Attempt, Attempted>(
    group: &[Delivery],
    attempt: Attempt,
    journal: &Journal,
    permits: Arc<tokio::sync::Semaphore>,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    Attempt: Fn() -> Attempted,
    Attempted: std::future::Future<Output = Result<(), Failure>>,
{
    let Some(delivery) = group.first() else { return };
    let started = Instant::now();
    let mut permit = Some(permit);
    let mut wait = FIRST_WAIT;
    loop {
        let held = match permit.take() {
            Some(permit) => permit,
            None => match Arc::clone(&permits).acquire_owned().await {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let mut last = None;
        for round in 0..ATTEMPTS {
            match attempt().await {
                Ok(()) => {
                    for delivery in group {
                        journal.done(delivery.seq);
                    }
                    return;
                }
                Err(failure) => {
                    tracing::warn!(target = ?delivery.target, attempt = round, error = %failure.error, detail_type = %delivery.event.detail_type, "delivery failed");
                    let retryable = failure.retryable;
                    last = Some(failure);
                    if !retryable {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200 << round)).await;
                }
            }
        }
        drop(held);
        let Some(failure) = last else { return };
        if !failure.retryable || started.elapsed() >= MAXIMUM_AGE {
            tracing::error!(target = ?delivery.target, error = %failure.error, detail_type = %delivery.event.detail_type, "delivery dead-lettered");
            for delivery in group {
                journal.dead_letter(delivery.seq, failure.error.clone());
            }
            return;
        }
        tracing::error!(target = ?delivery.target, wait_s = wait.as_secs(), detail_type = %delivery.event.detail_type, "delivery kept; retried later and at the next start");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(LONGEST_WAIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn recorded(seq: u64, customer: &str) -> Delivery {
        let event = serde_json::from_value(json!({
            "version": "0", "id": format!("event-{seq}"), "detail-type": "Interaction Recorded",
            "source": "engagement", "account": "123456789012", "time": "2026-01-10T09:01:00Z",
            "region": "eu-west-1", "resources": [],
            "detail": {"schema_version": 1, "customer_id": customer, "interaction_ids": [format!("i-{seq}")],
                       "kinds": ["page_viewed"], "recorded_at": "2026-01-10T09:00:00Z"},
        }))
        .expect("an EventBridge event");
        Delivery {
            seq,
            target: Target::Rescore,
            event,
        }
    }

    fn seqs(group: Option<Vec<Delivery>>) -> Vec<u64> {
        group.unwrap_or_default().iter().map(|delivery| delivery.seq).collect()
    }

    #[test]
    fn waiting_rescores_of_one_customer_run_as_one_in_order_of_first_arrival() {
        let mut waiting = WaitingRescores::default();
        for (seq, customer) in [(1, "c-a"), (2, "c-b"), (3, "c-a"), (4, "c-c"), (5, "c-b"), (6, "c-a")] {
            waiting.add(recorded(seq, customer));
        }
        assert_eq!(seqs(waiting.next()), [1, 3, 6]);
        assert_eq!(seqs(waiting.next()), [2, 5]);
        // Once a customer's run has started, a new delivery waits for a run of its own.
        waiting.add(recorded(7, "c-a"));
        assert_eq!(seqs(waiting.next()), [4]);
        assert_eq!(seqs(waiting.next()), [7]);
        assert!(waiting.is_empty());
        assert!(waiting.next().is_none());
    }

    #[test]
    fn a_delivery_without_a_customer_waits_alone() {
        let mut waiting = WaitingRescores::default();
        let mut broken = recorded(1, "c-a");
        broken.event.detail = json!({"not": "an interaction"});
        waiting.add(broken);
        let mut other = recorded(2, "c-a");
        other.event.detail = json!({});
        waiting.add(other);
        waiting.add(recorded(3, "c-a"));
        assert_eq!(seqs(waiting.next()), [1]);
        assert_eq!(seqs(waiting.next()), [2]);
        assert_eq!(seqs(waiting.next()), [3]);
    }
}
