//! The local bus's dispatcher: hands each journaled delivery to its target as EventBridge invokes
//! a function: rescores one at a time on a queue of their own, the others up to 8 at once. A failed delivery is tried three times in a row, then again with
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
    pump(Arc::clone(&targets), journal.clone(), rescores, RESCORES_AT_ONCE);
    pump(targets, journal, others, 8);
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
                        Target::Rescore => rescore.handle(&domain_event(&delivery)?).await.map(|_| ()).map_err(|e| Failure {
                            retryable: e.is_retryable(),
                            error: e.to_string(),
                        }),
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
                deliver(&delivery, attempt, &journal, permits, permit).await;
            });
        }
    });
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

/// Tries one delivery until its target takes it or it is dead-lettered: `ATTEMPTS` in a row, then
/// again after a growing wait, holding a permit only while attempting.
async fn deliver<Attempt, Attempted>(
    delivery: &Delivery,
    attempt: Attempt,
    journal: &Journal,
    permits: Arc<tokio::sync::Semaphore>,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    Attempt: Fn() -> Attempted,
    Attempted: std::future::Future<Output = Result<(), Failure>>,
{
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
                    journal.done(delivery.seq);
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
            journal.dead_letter(delivery.seq, failure.error);
            return;
        }
        tracing::error!(target = ?delivery.target, wait_s = wait.as_secs(), detail_type = %delivery.event.detail_type, "delivery kept; retried later and at the next start");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(LONGEST_WAIT);
    }
}
