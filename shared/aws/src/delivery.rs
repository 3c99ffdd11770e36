//! The cloud side of `deliver`: the destination queues on SQS and the destinations' credentials
//! in Secrets Manager (one secret per destination, its value the credential as plain text).
//!
//! Queues are known by ARN (the `eventSourceARN` of each record). Their URLs, and the URL of
//! each one's dead-letter queue (read from the queue's own redrive policy, so `deliver` sends a
//! refused event where SQS's redrive would have put it), are looked up once and kept.
//!
//! Secrets never appear in errors or logs: errors name the destination and the secret's id only.

use crate::errors::{classify, Failure};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// SQS's longest visibility timeout (12 hours): a longer wait is cut to it.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);

/// Why a queue operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// Throttled, timed out, unreachable, a 5xx: a later attempt can pass.
    #[error("queue {queue}: {operation} failed, retryable: {reason}")]
    Unavailable {
        queue: String,
        operation: &'static str,
        reason: String,
    },
    /// Denied, missing queue, no redrive policy: an operator must act.
    #[error("queue {queue}: {operation} refused: {reason}")]
    Refused {
        queue: String,
        operation: &'static str,
        reason: String,
    },
}

/// What a dead letter says besides the event (the message body): SQS message attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterNote<'a> {
    pub destination: &'a str,
    /// The tool's HTTP status.
    pub status: u16,
    /// The tool's answer (already cut short); left out when empty.
    pub tool_error: &'a str,
    /// 401/403: the credential was refused.
    pub revoked: bool,
}

#[derive(Clone)]
struct QueueUrls {
    url: String,
    dead_letters: String,
}

/// The destination queues, by ARN.
pub struct SqsDeliveryQueues {
    client: aws_sdk_sqs::Client,
    urls: Mutex<HashMap<String, QueueUrls>>,
}

/// `arn:aws:sqs:<region>:<account>:<name>` → (account, name).
fn account_and_name(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("sqs"), Some(_region), Some(account), Some(name)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (!account.is_empty() && !name.is_empty()).then_some((account, name))
}

/// Keeps the characters SQS accepts in bodies and attributes (XML's), drops the rest.
fn sqs_text(text: &str) -> String {
    text.chars()
        .filter(|&c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..))
        .collect()
}

impl SqsDeliveryQueues {
    pub fn new(client: aws_sdk_sqs::Client) -> SqsDeliveryQueues {
        SqsDeliveryQueues {
            client,
            urls: Mutex::new(HashMap::new()),
        }
    }

    fn failed<E>(
        queue: &str,
        operation: &'static str,
        error: aws_sdk_sqs::error::SdkError<E, aws_smithy_runtime_api::http::Response>,
    ) -> QueueError
    where
        E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let reason = aws_sdk_sqs::error::DisplayErrorContext(&error).to_string();
        let queue = queue.to_string();
        match classify(&error) {
            Failure::Transient => QueueError::Unavailable { queue, operation, reason },
            Failure::Permanent => QueueError::Refused { queue, operation, reason },
        }
    }

    async fn url_of_arn(&self, arn: &str) -> Result<String, QueueError> {
        let refused = |reason: &str| QueueError::Refused {
            queue: arn.to_string(),
            operation: "GetQueueUrl",
            reason: reason.to_string(),
        };
        let (account, name) = account_and_name(arn).ok_or_else(|| refused("not an SQS queue ARN"))?;
        let output = self
            .client
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| Self::failed(arn, "GetQueueUrl", e))?;
        output.queue_url.ok_or_else(|| refused("no URL in the answer"))
    }

    async fn urls(&self, queue_arn: &str) -> Result<QueueUrls, QueueError> {
        if let Some(urls) = self.urls.lock().await.get(queue_arn) {
            return Ok(urls.clone());
        }
        let url = self.url_of_arn(queue_arn).await?;
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| Self::failed(queue_arn, "GetQueueAttributes", e))?;
        let no_redrive = || QueueError::Refused {
            queue: queue_arn.to_string(),
            operation: "GetQueueAttributes",
            reason: "the queue has no redrive policy naming its dead-letter queue".into(),
        };
        let policy = attributes
            .attributes
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy).cloned())
            .ok_or_else(no_redrive)?;
        let dead_letter_arn = serde_json::from_str::<serde_json::Value>(&policy)
            .ok()
            .and_then(|p| p.get("deadLetterTargetArn").and_then(|a| a.as_str()).map(str::to_string))
            .ok_or_else(no_redrive)?;
        let dead_letters = self.url_of_arn(&dead_letter_arn).await?;
        let urls = QueueUrls { url, dead_letters };
        self.urls.lock().await.insert(queue_arn.to_string(), urls.clone());
        Ok(urls)
    }

    /// Sends `body` (the event as it came) to the dead-letter queue of `queue_arn`, with the
    /// destination, the tool's status and answer as message attributes.
    pub async fn dead_letter(&self, queue_arn: &str, body: &str, note: &DeadLetterNote<'_>) -> Result<(), QueueError> {
        use aws_sdk_sqs::types::MessageAttributeValue;
        let urls = self.urls(queue_arn).await?;
        let text = |value: &str| MessageAttributeValue::builder().data_type("String").string_value(value).build();
        let number = |value: u16| {
            MessageAttributeValue::builder()
                .data_type("Number")
                .string_value(value.to_string())
                .build()
        };
        let mut request = self
            .client
            .send_message()
            .queue_url(&urls.dead_letters)
            .message_body(sqs_text(body))
            .message_attributes("destination", text(note.destination).map_err(|e| self.invalid(queue_arn, e))?)
            .message_attributes("status", number(note.status).map_err(|e| self.invalid(queue_arn, e))?)
            .message_attributes(
                "revoked",
                text(if note.revoked { "true" } else { "false" }).map_err(|e| self.invalid(queue_arn, e))?,
            );
        let tool_error = sqs_text(note.tool_error);
        // SQS refuses empty attribute values.
        if !tool_error.is_empty() {
            request = request.message_attributes("tool_error", text(&tool_error).map_err(|e| self.invalid(queue_arn, e))?);
        }
        request.send().await.map_err(|e| Self::failed(queue_arn, "SendMessage", e))?;
        Ok(())
    }

    fn invalid(&self, queue_arn: &str, error: aws_sdk_sqs::error::BuildError) -> QueueError {
        QueueError::Refused {
            queue: queue_arn.to_string(),
            operation: "SendMessage",
            reason: error.to_string(),
        }
    }

    /// Hides the message `receipt_handle` of `queue_arn` for `after` (at most 12 hours), so its
    /// next receive, a retry, comes no sooner.
    pub async fn delay(&self, queue_arn: &str, receipt_handle: &str, after: Duration) -> Result<(), QueueError> {
        let urls = self.urls(queue_arn).await?;
        let seconds = after.min(MAX_VISIBILITY).as_secs_f64().ceil() as i32;
        self.client
            .change_message_visibility()
            .queue_url(&urls.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| Self::failed(queue_arn, "ChangeMessageVisibility", e))?;
        Ok(())
    }
}

/// Why a destination's credential could not be had.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// No secret configured for the destination, or its value is empty or was never put.
    #[error("destination `{destination}` has no credential: {reason}")]
    Missing { destination: String, reason: String },
    /// Throttled, timed out, unreachable: a later attempt can pass.
    #[error("the credential of destination `{destination}` ({secret_id}) is unavailable: {reason}")]
    Unavailable {
        destination: String,
        secret_id: String,
        reason: String,
    },
    /// Denied, deleted: an operator must act.
    #[error("the credential of destination `{destination}` ({secret_id}) was refused: {reason}")]
    Refused {
        destination: String,
        secret_id: String,
        reason: String,
    },
}

struct Held {
    value: String,
    read_at: Instant,
}

/// Each destination's credential, from its own Secrets Manager secret (plain text). Read on
/// first use and kept for `max_age` (5 minutes), so a replaced credential is used without a
/// redeploy; while a re-read fails for a reason a retry can pass, the value held keeps serving.
pub struct SecretsManagerDestinationSecrets {
    client: aws_sdk_secretsmanager::Client,
    /// Destination name → secret ARN (or name).
    ids: HashMap<String, String>,
    max_age: Duration,
    held: Mutex<HashMap<String, Held>>,
}

impl SecretsManagerDestinationSecrets {
    pub fn new(client: aws_sdk_secretsmanager::Client, ids: HashMap<String, String>) -> SecretsManagerDestinationSecrets {
        SecretsManagerDestinationSecrets {
            client,
            ids,
            max_age: crate::source_secrets::DEFAULT_MAX_AGE,
            held: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_max_age(mut self, max_age: Duration) -> SecretsManagerDestinationSecrets {
        self.max_age = max_age;
        self
    }

    pub async fn credential(&self, destination: &str) -> Result<String, CredentialError> {
        let secret_id = self.ids.get(destination).ok_or_else(|| CredentialError::Missing {
            destination: destination.to_string(),
            reason: "no secret is configured for it".into(),
        })?;
        let mut held = self.held.lock().await;
        if let Some(value) = held.get(destination).filter(|h| h.read_at.elapsed() < self.max_age) {
            return Ok(value.value.clone());
        }
        match self.read(destination, secret_id).await {
            Ok(value) => {
                held.insert(
                    destination.to_string(),
                    Held {
                        value: value.clone(),
                        read_at: Instant::now(),
                    },
                );
                Ok(value)
            }
            Err(error @ CredentialError::Unavailable { .. }) => match held.get_mut(destination) {
                Some(value) => {
                    tracing::warn!(destination, error = %error, "credential not refreshed; serving the value read before");
                    value.read_at = Instant::now();
                    Ok(value.value.clone())
                }
                None => Err(error),
            },
            Err(error) => {
                held.remove(destination);
                Err(error)
            }
        }
    }

    async fn read(&self, destination: &str, secret_id: &str) -> Result<String, CredentialError> {
        let missing = |reason: &str| CredentialError::Missing {
            destination: destination.to_string(),
            reason: format!("{reason} (put the credential in {secret_id}; see infra/README.md)"),
        };
        let output = match self.client.get_secret_value().secret_id(secret_id).send().await {
            Ok(output) => output,
            Err(error) => {
                // An empty secret (created by the stack, never filled) has no AWSCURRENT value.
                let code = aws_sdk_secretsmanager::error::ProvideErrorMetadata::code(&error).map(str::to_string);
                let reason = aws_sdk_secretsmanager::error::DisplayErrorContext(&error).to_string();
                let secret_id = secret_id.to_string();
                let destination = destination.to_string();
                return Err(match (code.as_deref(), classify(&error)) {
                    (Some("ResourceNotFoundException"), _) => missing("the secret has no value yet"),
                    (_, Failure::Transient) => CredentialError::Unavailable {
                        destination,
                        secret_id,
                        reason,
                    },
                    (_, Failure::Permanent) => CredentialError::Refused {
                        destination,
                        secret_id,
                        reason,
                    },
                });
            }
        };
        let value = output.secret_string().map(str::trim).unwrap_or_default();
        if value.is_empty() {
            return Err(missing("the secret's value is empty"));
        }
        Ok(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_arns_name_their_account_and_queue() {
        assert_eq!(
            account_and_name("arn:aws:sqs:eu-west-1:123456789012:engagement-HubspotDeliveryQueue-X1"),
            Some(("123456789012", "engagement-HubspotDeliveryQueue-X1"))
        );
        assert_eq!(account_and_name("arn:aws:sns:eu-west-1:123456789012:topic"), None);
        assert_eq!(account_and_name("https://sqs.eu-west-1.amazonaws.com/1/q"), None);
    }

    #[test]
    fn text_sqs_refuses_is_dropped() {
        assert_eq!(sqs_text("a\u{0}b\u{7}c\"é😀\n"), "abc\"é😀\n");
    }
}
