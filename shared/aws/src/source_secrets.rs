//! `SourceSecrets` on Secrets Manager: ONE secret whose value is a JSON object of source name →
//! signing secret (`{"github": "…", "stripe": "whsec_…"}`), named by `SOURCE_SECRETS_ARN`.
//!
//! Read once at cold start and cached, so a delivery costs no Secrets Manager call. The cache is
//! read again after `max_age` (default 5 minutes), so a secret the operator adds or rotates is
//! used without a redeploy; if that read fails for a reason a retry can pass, the value already
//! held keeps serving (a Secrets Manager blip must not refuse every delivery).
//!
//! Secrets never appear in errors or logs: errors name the secret's id and the source, never a
//! value, and `Debug` is not derived on anything that holds one.

use crate::errors::{classify, Failure};
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::Client;
use engagement_sources::{SecretsError, SourceSecrets};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long a read value serves before it is read again.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

/// Why the source secrets could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourceSecretsError {
    /// Throttled, timed out, unreachable, a 5xx: a later attempt can pass (answer 503).
    #[error("the source secrets {secret_id} are unavailable: {reason}")]
    Unavailable { secret_id: String, reason: String },
    /// Missing secret, denied access, a secret scheduled for deletion: an operator must act.
    #[error("the source secrets {secret_id} were refused: {reason}")]
    Refused { secret_id: String, reason: String },
    /// The value is not a JSON object of source name → secret string (nothing of it is quoted).
    #[error("the source secrets {secret_id} are malformed: {reason}")]
    Malformed { secret_id: String, reason: String },
}

impl SourceSecretsError {
    /// Whether a later attempt can pass without an operator acting.
    pub fn retryable(&self) -> bool {
        matches!(self, SourceSecretsError::Unavailable { .. })
    }
}

/// A read value of the secret.
struct Cached {
    secrets: Arc<HashMap<String, String>>,
    read_at: Instant,
}

/// The signing secrets of the sources, from one Secrets Manager secret.
pub struct SecretsManagerSourceSecrets {
    client: Client,
    secret_id: String,
    max_age: Duration,
    /// Held across the read, so concurrent requests after expiry send one GetSecretValue.
    cache: Mutex<Option<Cached>>,
}

impl SecretsManagerSourceSecrets {
    /// An adapter for the secret `secret_id` (its ARN or name); nothing is read yet.
    pub fn new(client: Client, secret_id: impl Into<String>) -> SecretsManagerSourceSecrets {
        SecretsManagerSourceSecrets {
            client,
            secret_id: secret_id.into(),
            max_age: DEFAULT_MAX_AGE,
            cache: Mutex::new(None),
        }
    }

    /// How long a read value serves before it is read again.
    pub fn with_max_age(mut self, max_age: Duration) -> SecretsManagerSourceSecrets {
        self.max_age = max_age;
        self
    }

    /// Reads the secret now (at cold start), so the first delivery does not wait for it.
    pub async fn preload(&self) -> Result<(), SourceSecretsError> {
        self.secrets().await.map(|_| ())
    }

    /// The signing secret of `source`; `None` when the secret has no entry for it (the source is
    /// not connected).
    pub async fn secret_of(&self, source: &str) -> Result<Option<String>, SourceSecretsError> {
        Ok(self.secrets().await?.get(source).cloned())
    }

    /// The names of the sources that have a secret (for the start-up log: names, not values).
    pub async fn connected(&self) -> Result<Vec<String>, SourceSecretsError> {
        let mut names: Vec<String> = self.secrets().await?.keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    async fn secrets(&self) -> Result<Arc<HashMap<String, String>>, SourceSecretsError> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref() {
            if cached.read_at.elapsed() < self.max_age {
                return Ok(Arc::clone(&cached.secrets));
            }
        }
        match self.read().await {
            Ok(secrets) => {
                let secrets = Arc::new(secrets);
                *cache = Some(Cached {
                    secrets: Arc::clone(&secrets),
                    read_at: Instant::now(),
                });
                Ok(secrets)
            }
            Err(error) => match cache.as_mut() {
                // A blip: keep serving what was read, and try again after another max_age.
                Some(cached) if error.retryable() => {
                    tracing::warn!(secret_id = %self.secret_id, error = %error, "source secrets not refreshed; serving the value read before");
                    cached.read_at = Instant::now();
                    Ok(Arc::clone(&cached.secrets))
                }
                // Refused or malformed: fail closed rather than trust a value the operator replaced.
                _ => Err(error),
            },
        }
    }

    async fn read(&self) -> Result<HashMap<String, String>, SourceSecretsError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|error| {
                let reason = DisplayErrorContext(&error).to_string();
                let secret_id = self.secret_id.clone();
                match classify(&error) {
                    Failure::Transient => SourceSecretsError::Unavailable { secret_id, reason },
                    Failure::Permanent => SourceSecretsError::Refused { secret_id, reason },
                }
            })?;
        let malformed = |reason: String| SourceSecretsError::Malformed {
            secret_id: self.secret_id.clone(),
            reason,
        };
        let text = output
            .secret_string()
            .ok_or_else(|| malformed("no SecretString (a binary secret?)".into()))?;
        parse_secrets(text).map_err(malformed)
    }
}

impl SourceSecrets for SecretsManagerSourceSecrets {
    async fn secret(&self, source: &str) -> Result<Option<String>, SecretsError> {
        self.secret_of(source).await.map_err(|error| match error {
            SourceSecretsError::Unavailable { .. } => SecretsError::Unavailable(error.to_string()),
            // The port has one permanent variant: a retry fails the same way, an operator acts.
            SourceSecretsError::Refused { .. } | SourceSecretsError::Malformed { .. } => {
                SecretsError::Malformed(error.to_string())
            }
        })
    }
}

/// Parses the secret's value. Errors say where the value is wrong, never what it holds.
pub fn parse_secrets(text: &str) -> Result<HashMap<String, String>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON (line {}, column {})", e.line(), e.column()))?;
    let serde_json::Value::Object(entries) = value else {
        return Err("not a JSON object of source name to signing secret".into());
    };
    let mut secrets = HashMap::with_capacity(entries.len());
    for (source, secret) in entries {
        match secret {
            serde_json::Value::String(secret) if !secret.is_empty() => {
                secrets.insert(source, secret);
            }
            serde_json::Value::String(_) => return Err(format!("the secret of source {source:?} is empty")),
            _ => return Err(format!("the secret of source {source:?} is not a string")),
        }
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_objects_of_non_empty_strings_and_errors_quote_no_secret() {
        let secrets = parse_secrets(r#"{"github": "gh-secret", "stripe": "whsec_abc"}"#).expect("parsed");
        assert_eq!(secrets.get("github").map(String::as_str), Some("gh-secret"));
        assert_eq!(secrets.len(), 2);
        assert!(parse_secrets("{}").expect("empty is fine").is_empty());
        for bad in [
            r#"{"github": 4711}"#,
            r#"{"github": ""}"#,
            r#"["hunter2"]"#,
            "hunter2",
            r#"{"github": "hunter2""#,
        ] {
            let error = parse_secrets(bad).expect_err(bad);
            assert!(!error.contains("hunter2") && !error.contains("4711"), "{error} quotes the secret");
        }
    }
}
