//! The cloud's wiring of [`Deliver`]: one SQS queue per destination, drained in batches by an
//! event source mapping with partial batch responses. Each record's body is the EventBridge
//! event its rule put in the queue; the queue (the record's `eventSourceARN`) says which
//! destination it is for.
//!
//! What becomes of a record:
//! - delivered or skipped: done (SQS deletes it);
//! - refused by the tool (400/404/409/422, or 401/403): sent to the queue's dead-letter queue
//!   with the tool's status and answer as message attributes, then done: SQS would only redrive
//!   it after `maxReceiveCount` useless retries;
//! - to retry (429 with its Retry-After, 5xx or no answer with backoff): hidden for that long
//!   (`ChangeMessageVisibility`) and reported failed, so SQS hands it out again no sooner;
//! - not deliverable now (no credential yet, the store unavailable, a bad setting): reported
//!   failed with the destination named in the log; after `maxReceiveCount` receives SQS moves it
//!   to the dead-letter queue.

use crate::{Deliver, DeliverError, DestinationSecrets, HttpSender, Outcome, SecretError};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use engagement::ports::{Clock, CustomerReads};
use engagement_aws::delivery::{CredentialError, DeadLetterNote, QueueError, SecretsManagerDestinationSecrets, SqsDeliveryQueues};
use engagement_aws::envelope::{delivered, Delivered};
use engagement_deliver::{ConfigError, Destination, RawDestination};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// Port: what `deliver` asks of a destination queue besides receiving and deleting (which the
/// event source mapping does).
pub trait DeliveryQueues: Send + Sync {
    /// Puts `body` in the dead-letter queue of `queue_arn`, with the tool's answer.
    fn dead_letter(&self, queue_arn: &str, body: &str, note: &DeadLetterNote<'_>) -> impl Future<Output = Result<(), QueueError>> + Send;
    /// Hides a received message for `after`: its retry comes no sooner.
    fn delay(&self, queue_arn: &str, receipt_handle: &str, after: Duration) -> impl Future<Output = Result<(), QueueError>> + Send;
}

impl DeliveryQueues for SqsDeliveryQueues {
    async fn dead_letter(&self, queue_arn: &str, body: &str, note: &DeadLetterNote<'_>) -> Result<(), QueueError> {
        SqsDeliveryQueues::dead_letter(self, queue_arn, body, note).await
    }

    async fn delay(&self, queue_arn: &str, receipt_handle: &str, after: Duration) -> Result<(), QueueError> {
        SqsDeliveryQueues::delay(self, queue_arn, receipt_handle, after).await
    }
}

impl DestinationSecrets for SecretsManagerDestinationSecrets {
    async fn secret(&self, destination: &str) -> Result<String, SecretError> {
        self.credential(destination).await.map_err(|error| match error {
            CredentialError::Missing { destination, reason } => SecretError::Missing { destination, hint: reason },
            CredentialError::Refused { ref destination, .. } => SecretError::Missing {
                destination: destination.clone(),
                hint: error.to_string(),
            },
            CredentialError::Unavailable { ref destination, .. } => SecretError::Unavailable {
                destination: destination.clone(),
                reason: error.to_string(),
            },
        })
    }
}

/// The destinations of this stack, from its `DESTINATION_<TOOL>` variables.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CloudDestinations {
    pub destinations: Vec<Destination>,
    /// Queue ARN → destination name.
    pub queues: HashMap<String, String>,
    /// Destination name → secret ARN.
    pub secrets: HashMap<String, String>,
}

/// A `DESTINATION_<TOOL>` variable that is not a destination.
#[derive(Debug, thiserror::Error)]
pub enum CloudConfigError {
    #[error("{variable}: {reason}")]
    Variable { variable: String, reason: String },
    #[error("{variable}: {source}")]
    Destination {
        variable: String,
        #[source]
        source: ConfigError,
    },
}

/// The environment variables that configure destinations start with this.
pub const DESTINATION_PREFIX: &str = "DESTINATION_";

impl CloudDestinations {
    /// Reads every `DESTINATION_<NAME>` variable: a JSON object with the destination's `tool`,
    /// `queue` (ARN), `secret` (ARN), settings and filters as `[destinations.<name>]` takes them,
    /// `<name>` being `<NAME>` in lower case with `_` as `-`. The template builds them from
    /// parameters, so empty texts mean "not set" and empty list entries are dropped (an empty
    /// CommaDelimitedList is `[""]`: all).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<CloudDestinations, CloudConfigError> {
        let mut config = CloudDestinations::default();
        let mut vars: Vec<(String, String)> = vars.into_iter().filter(|(name, _)| name.starts_with(DESTINATION_PREFIX)).collect();
        vars.sort();
        for (variable, value) in vars {
            let failed = |reason: String| CloudConfigError::Variable {
                variable: variable.clone(),
                reason,
            };
            let name = variable[DESTINATION_PREFIX.len()..].to_ascii_lowercase().replace('_', "-");
            let json: serde_json::Value =
                serde_json::from_str(&value).map_err(|e| failed(format!("not JSON (column {}): {e}", e.column())))?;
            let serde_json::Value::Object(mut fields) = json else {
                return Err(failed("not a JSON object".into()));
            };
            let mut take = |key: &str| match fields.remove(key) {
                Some(serde_json::Value::String(text)) if !text.is_empty() => Ok(text),
                _ => Err(failed(format!("`{key}` is missing"))),
            };
            let queue = take("queue")?;
            let secret = take("secret")?;
            let fields: serde_json::Map<String, serde_json::Value> = fields
                .into_iter()
                .filter_map(|(key, value)| match value {
                    serde_json::Value::String(text) if text.is_empty() => None,
                    serde_json::Value::Array(items) => Some((
                        key,
                        serde_json::Value::Array(items.into_iter().filter(|item| item.as_str() != Some("")).collect()),
                    )),
                    other => Some((key, other)),
                })
                .collect();
            let raw: RawDestination = serde_json::from_value(serde_json::Value::Object(fields)).map_err(|e| failed(e.to_string()))?;
            let destination = Destination::from_raw(&name, raw).map_err(|source| CloudConfigError::Destination {
                variable: variable.clone(),
                source,
            })?;
            config.queues.insert(queue, name.clone());
            config.secrets.insert(name, secret);
            config.destinations.push(destination);
        }
        Ok(config)
    }
}

/// Reads the destinations from the process environment.
pub fn destinations_from_env() -> Result<CloudDestinations, CloudConfigError> {
    CloudDestinations::from_vars(std::env::vars())
}

/// What became of one record (for the log and the tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    Done,
    /// Reported failed, SQS hands it out again.
    Failed,
}

/// Handles one batch from the destination queues; the answer lists the records to receive again.
pub async fn handle_batch<R, H, C, K, Q>(
    deliver: &Deliver<R, H, C, K>,
    queues: &Q,
    routes: &HashMap<String, String>,
    event: SqsEvent,
) -> SqsBatchResponse
where
    R: CustomerReads,
    H: HttpSender,
    C: Clock,
    K: DestinationSecrets,
    Q: DeliveryQueues,
{
    let mut response = SqsBatchResponse::default();
    // One after another: the mapping's MaximumConcurrency bounds what reaches each tool.
    for record in event.records {
        if handle_record(deliver, queues, routes, &record).await == Handled::Failed {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = record.message_id.clone().unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

async fn handle_record<R, H, C, K, Q>(
    deliver: &Deliver<R, H, C, K>,
    queues: &Q,
    routes: &HashMap<String, String>,
    record: &SqsMessage,
) -> Handled
where
    R: CustomerReads,
    H: HttpSender,
    C: Clock,
    K: DestinationSecrets,
    Q: DeliveryQueues,
{
    let message_id = record.message_id.as_deref().unwrap_or_default();
    let queue = record.event_source_arn.as_deref().unwrap_or_default();
    let Some(destination) = routes.get(queue) else {
        tracing::error!(
            message_id,
            queue,
            "a record from a queue no DESTINATION_ variable names; left for the redrive"
        );
        return Handled::Failed;
    };
    let body = record.body.as_deref().unwrap_or_default();
    let attempt = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|count| count.parse::<u32>().ok())
        .map_or(0, |count| count.saturating_sub(1));
    let dead_letter = |status: u16, tool_error: String, revoked: bool| DeadLetter {
        queue,
        body,
        message_id,
        destination,
        status,
        tool_error,
        revoked,
    };
    let event = match serde_json::from_str::<EventBridgeEvent<serde_json::Value>>(body)
        .map_err(|e| e.to_string())
        .and_then(|envelope| delivered(&envelope).map_err(|e| e.to_string()))
    {
        Ok(Delivered::Event(event)) => event,
        Ok(Delivered::Schedule) => {
            return dead_letter(0, "a scheduled event, not an engagement event".into(), false)
                .send(queues)
                .await
        }
        Err(reason) => {
            tracing::error!(message_id, destination, %reason, "not an engagement event; dead-lettered");
            return dead_letter(0, format!("not an engagement event: {reason}"), false)
                .send(queues)
                .await;
        }
    };
    match deliver.deliver(destination, &event, attempt).await {
        Ok(Outcome::Delivered) | Ok(Outcome::Skipped(_)) => Handled::Done,
        Ok(Outcome::DeadLetter {
            status,
            tool_error_body,
            revoked,
        }) => dead_letter(status, tool_error_body, revoked).send(queues).await,
        Ok(Outcome::Retry(after)) => {
            let receipt = record.receipt_handle.as_deref().unwrap_or_default();
            if let Err(error) = queues.delay(queue, receipt, after).await {
                tracing::warn!(message_id, destination, %error, "retry not delayed; received again after the queue's visibility timeout");
            }
            Handled::Failed
        }
        Err(error) => {
            log_error(message_id, destination, &error);
            Handled::Failed
        }
    }
}

/// A record on its way to the dead-letter queue.
struct DeadLetter<'a> {
    queue: &'a str,
    body: &'a str,
    message_id: &'a str,
    destination: &'a str,
    status: u16,
    tool_error: String,
    revoked: bool,
}

impl DeadLetter<'_> {
    async fn send<Q: DeliveryQueues>(self, queues: &Q) -> Handled {
        let note = DeadLetterNote {
            destination: self.destination,
            status: self.status,
            tool_error: &self.tool_error,
            revoked: self.revoked,
        };
        match queues.dead_letter(self.queue, self.body, &note).await {
            Ok(()) => Handled::Done,
            Err(error) => {
                tracing::error!(message_id = self.message_id, destination = self.destination, %error, "not dead-lettered; received again");
                Handled::Failed
            }
        }
    }
}

fn log_error(message_id: &str, destination: &str, error: &DeliverError) {
    if error.is_retryable() {
        tracing::warn!(message_id, destination, %error, "not delivered now; received again");
    } else {
        tracing::error!(message_id, destination, %error, "not deliverable until the destination's configuration is fixed; received again, then dead-lettered");
    }
}
