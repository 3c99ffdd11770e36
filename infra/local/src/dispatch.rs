//! The local bus's dispatcher: hands each journaled delivery to its target as EventBridge invokes
//! a function, up to 8 at once. A failed delivery is tried three times in a row, then again with
//! backoff (one minute, doubling, at most fifteen) for up to 24 hours, EventBridge's maximum
//! event age, and at every start (it stays in the journal); then, or at once for an error no
//! retry can mend, it is dead-lettered to `DATA/bus-dead-letter.jsonl`.

use crate::bus::Delivery;
use crate::local::Stack;
use crate::routing::Target;
use engagement_aws::envelope::{delivered, Delivered};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Starts dispatching `deliveries` to the stack's handlers.
pub fn run(stack: &Stack, mut deliveries: tokio::sync::mpsc::UnboundedReceiver<Delivery>) {
    let (rescore, nudge, webhooks) = (Arc::clone(&stack.rescore), Arc::clone(&stack.nudge), Arc::clone(&stack.webhooks));
    let journal = stack.bus.journal().clone();
    let permits = Arc::new(tokio::sync::Semaphore::new(8));
    tokio::spawn(async move {
        while let Some(delivery) = deliveries.recv().await {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                return;
            };
            let (rescore, nudge, webhooks, journal, permits) = (
                Arc::clone(&rescore),
                Arc::clone(&nudge),
                Arc::clone(&webhooks),
                journal.clone(),
                Arc::clone(&permits),
            );
            tokio::spawn(async move {
                let attempt = || async {
                    // The handlers take domain events: the envelope is read here, as a Lambda main reads it.
                    let event = || match delivered(&delivery.event) {
                        Ok(Delivered::Event(event)) => Ok(event),
                        Ok(Delivered::Schedule) => Err(Failure {
                            error: "a scheduled event on the bus".into(),
                            retryable: false,
                        }),
                        Err(error) => Err(Failure {
                            error: error.to_string(),
                            retryable: false,
                        }),
                    };
                    match delivery.target {
                        Target::Rescore => rescore.handle(&event()?).await.map(|_| ()).map_err(|e| Failure {
                            retryable: e.is_retryable(),
                            error: e.to_string(),
                        }),
                        Target::Nudge => nudge.handle(&event()?).await.map(|_| ()).map_err(|e| Failure {
                            retryable: e.is_retryable(),
                            error: e.to_string(),
                        }),
                        Target::Webhooks => {
                            let envelope = serde_json::to_value(&delivery.event).unwrap_or_default();
                            // Files and fsyncs: off the async workers.
                            let webhooks = Arc::clone(&webhooks);
                            tokio::task::spawn_blocking(move || webhooks.enqueue(&envelope))
                                .await
                                .map_err(|e| e.to_string())
                                .and_then(|done| done.map_err(|e| e.to_string()))
                                .map_err(|error| Failure { error, retryable: true })
                        }
                    }
                };
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
            });
        }
    });
}
