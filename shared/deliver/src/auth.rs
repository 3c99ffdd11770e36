//! Credentials, added to a built request just before it is sent: they stay out of outboxes,
//! dead letters and logs.

use crate::destination::{Destination, Settings, Tool};
use crate::Outbound;
use base64::Engine as _;
use engagement::Timestamp;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Standard Webhooks' smallest signing key.
pub const MIN_WEBHOOK_KEY_BYTES: usize = 24;

/// Why a secret cannot authorize a request. Never holds the secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("destination `{destination}`: the secret is empty")]
    Empty { destination: String },
    #[error("destination `{destination}`: the secret must be {expected}")]
    Malformed { destination: String, expected: &'static str },
}

/// The key of a `whsec_<base64>` secret, refused when shorter than Standard Webhooks allows.
pub fn standard_webhook_key(secret: &str) -> Option<Vec<u8>> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim().trim_start_matches("whsec_"))
        .ok()?;
    (key.len() >= MIN_WEBHOOK_KEY_BYTES).then_some(key)
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, per Standard Webhooks; `None` when
/// the secret is not a `whsec_` key of at least 24 bytes.
pub fn sign_standard_webhook(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = standard_webhook_key(secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn set_header(outbound: &mut Outbound, name: &str, value: String) {
    outbound.headers.retain(|(key, _)| !key.eq_ignore_ascii_case(name));
    outbound.headers.push((name.to_string(), value));
}

/// Adds `destination`'s credentials (`secret`, as stored for it) to a request it built.
/// `now` dates a Standard Webhooks signature.
pub fn authorize(destination: &Destination, outbound: &mut Outbound, secret: &str, now: Timestamp) -> Result<(), AuthError> {
    let secret = secret.trim();
    let name = &destination.name;
    if secret.is_empty() {
        return Err(AuthError::Empty { destination: name.clone() });
    }
    let malformed = |expected| AuthError::Malformed {
        destination: name.clone(),
        expected,
    };
    match (&destination.settings, destination.tool) {
        (_, Tool::HubSpot) => set_header(outbound, "authorization", format!("Bearer {secret}")),
        // Any user name; the key is the password.
        (_, Tool::Mailchimp) => set_header(outbound, "authorization", basic("anystring", secret)),
        (_, Tool::Klaviyo) => set_header(outbound, "authorization", format!("Klaviyo-API-Key {secret}")),
        (_, Tool::CustomerIo) => {
            // Track API credentials: the workspace's site id and its API key.
            let (site_id, api_key) = secret
                .split_once(':')
                .filter(|(site, key)| !site.is_empty() && !key.is_empty())
                .ok_or_else(|| malformed("`<site_id>:<api_key>` (Track API credentials)"))?;
            set_header(outbound, "authorization", basic(site_id, api_key));
        }
        (Settings::Zendesk { email, .. }, Tool::Zendesk) => {
            set_header(outbound, "authorization", basic(&format!("{email}/token"), secret));
        }
        (_, Tool::Slack) => {
            // The incoming webhook's URL is the credential; a base_url (tests) keeps its host.
            if !(secret.starts_with("https://") || secret.starts_with("http://")) {
                return Err(malformed("the incoming webhook URL (https://hooks.slack.com/services/…)"));
            }
            if destination.base_url.is_none() {
                outbound.url = secret.to_string();
            }
        }
        (_, Tool::StandardWebhooks) => {
            let id = outbound.idempotency_key.clone().unwrap_or_default();
            let timestamp = now.millis() / 1000;
            let signature = sign_standard_webhook(secret, &id, timestamp, &outbound.body)
                .ok_or_else(|| malformed("a whsec_ key of at least 24 bytes (base64)"))?;
            set_header(outbound, "webhook-id", id);
            set_header(outbound, "webhook-timestamp", timestamp.to_string());
            set_header(outbound, "webhook-signature", signature);
        }
        (_, Tool::Zendesk) => return Err(malformed("paired with a zendesk destination")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The specification's own example (standard-webhooks/spec, "Signature scheme").
        let signature = sign_standard_webhook(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature.as_deref(), Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
        assert_eq!(
            sign_standard_webhook("whsec_c2hvcnQ=", "msg", 1, b"{}"),
            None,
            "a short key signs nothing"
        );
    }
}
