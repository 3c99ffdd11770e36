//! The verification schemes. Every comparison of a signature is constant-time
//! (`hmac::Mac::verify_slice`), and neither the secret nor a signature ever appears in a
//! `Rejected`: it names the field and what is wrong with it.

use crate::source::{Encoding, Source, Verification};
use crate::{Delivery, Rejected};
use base64::Engine as _;
use engagement::Timestamp;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far a signed timestamp may be from now, either way (the vendors' own default).
pub const TOLERANCE_SECONDS: i64 = 300;

impl Source {
    /// Checks the delivery's signature with the source's secret (`None` when not connected).
    pub fn verify(&self, delivery: &Delivery, secret: Option<&str>, now: Timestamp) -> Result<(), Rejected> {
        let secret = match (&self.verification, secret) {
            (Verification::None, _) => return Ok(()),
            (verification, None) => {
                return Err(reject(
                    signature_field(verification),
                    "this source has no signing secret configured",
                ))
            }
            (_, Some(secret)) => secret,
        };
        match &self.verification {
            Verification::None => Ok(()),
            Verification::Github => {
                const HEADER: &str = "X-Hub-Signature-256";
                let signature = header(delivery, HEADER)?;
                let hex = signature
                    .strip_prefix("sha256=")
                    .ok_or_else(|| reject(HEADER, "must be sha256=<hex HMAC-SHA256 of the body>"))?;
                let expected = decode_hex(hex).ok_or_else(|| reject(HEADER, "must be sha256=<hex HMAC-SHA256 of the body>"))?;
                check(secret.as_bytes(), &[delivery.body], &expected, HEADER)
            }
            Verification::HmacSha256 {
                header: name,
                encoding,
                prefix,
            } => {
                let field = name.as_str();
                let signature = header(delivery, field)?;
                let encoded = signature
                    .strip_prefix(prefix.as_str())
                    .ok_or_else(|| reject(field, &format!("must start with {prefix:?}")))?;
                let expected = match encoding {
                    Encoding::Hex => decode_hex(encoded),
                    Encoding::Base64 => decode_base64(encoded),
                }
                .ok_or_else(|| {
                    let what = if *encoding == Encoding::Hex { "hex" } else { "base64" };
                    reject(field, &format!("must be the {what} HMAC-SHA256 of the body"))
                })?;
                check(secret.as_bytes(), &[delivery.body], &expected, field)
            }
            Verification::Stripe => {
                const HEADER: &str = "Stripe-Signature";
                let signature = header(delivery, HEADER)?;
                let mut timestamp = None;
                let mut candidates = Vec::new();
                for pair in signature.split(',') {
                    match pair.trim().split_once('=') {
                        Some(("t", value)) => timestamp = Some(value),
                        Some(("v1", value)) => candidates.push(value),
                        _ => {}
                    }
                }
                let timestamp = timestamp.ok_or_else(|| reject(HEADER, "has no timestamp (t=…)"))?;
                let seconds = timestamp
                    .parse::<i64>()
                    .map_err(|_| reject(HEADER, "its timestamp (t=…) is not a Unix time"))?;
                within_tolerance(seconds, now, HEADER)?;
                if candidates.is_empty() {
                    return Err(reject(HEADER, "has no v1 signature"));
                }
                let signed: [&[u8]; 3] = [timestamp.as_bytes(), b".", delivery.body];
                let matches = candidates
                    .iter()
                    .filter_map(|hex| decode_hex(hex))
                    .any(|expected| check(secret.as_bytes(), &signed, &expected, HEADER).is_ok());
                if matches {
                    Ok(())
                } else {
                    Err(reject(HEADER, "no v1 signature matches the body"))
                }
            }
            Verification::Slack => {
                const HEADER: &str = "X-Slack-Signature";
                const TIMESTAMP: &str = "X-Slack-Request-Timestamp";
                let timestamp = unix_timestamp(delivery, TIMESTAMP, now)?;
                let signature = header(delivery, HEADER)?;
                let expected = signature
                    .strip_prefix("v0=")
                    .and_then(decode_hex)
                    .ok_or_else(|| reject(HEADER, "must be v0=<hex HMAC-SHA256>"))?;
                check(
                    secret.as_bytes(),
                    &[b"v0:", timestamp.as_bytes(), b":", delivery.body],
                    &expected,
                    HEADER,
                )
            }
            Verification::Zendesk => {
                const HEADER: &str = "X-Zendesk-Webhook-Signature";
                const TIMESTAMP: &str = "X-Zendesk-Webhook-Signature-Timestamp";
                let timestamp = header(delivery, TIMESTAMP)?;
                let seconds = chrono::DateTime::parse_from_rfc3339(timestamp.trim())
                    .map_err(|_| reject(TIMESTAMP, "must be an ISO 8601 time such as 2026-03-03T09:30:00Z"))?
                    .timestamp();
                within_tolerance(seconds, now, TIMESTAMP)?;
                let signature = header(delivery, HEADER)?;
                let expected =
                    decode_base64(signature.trim()).ok_or_else(|| reject(HEADER, "must be the base64 HMAC-SHA256 of timestamp + body"))?;
                check(secret.as_bytes(), &[timestamp.as_bytes(), delivery.body], &expected, HEADER)
            }
            Verification::StandardWebhooks => {
                const ID: &str = "webhook-id";
                const TIMESTAMP: &str = "webhook-timestamp";
                const HEADER: &str = "webhook-signature";
                let id = header(delivery, ID)?;
                let timestamp = unix_timestamp(delivery, TIMESTAMP, now)?;
                let signature = header(delivery, HEADER)?;
                // The secret is `whsec_` + base64 of the key (the prefix is optional in the spec).
                let key = decode_base64(secret.strip_prefix("whsec_").unwrap_or(secret))
                    .ok_or_else(|| reject(HEADER, "the configured secret is not whsec_<base64>, so no signature can match"))?;
                let signed: [&[u8]; 5] = [id.as_bytes(), b".", timestamp.as_bytes(), b".", delivery.body];
                let matches = signature
                    .split(' ')
                    .filter_map(|entry| entry.strip_prefix("v1,"))
                    .filter_map(decode_base64)
                    .any(|expected| check(&key, &signed, &expected, HEADER).is_ok());
                if matches {
                    Ok(())
                } else {
                    Err(reject(HEADER, "no v1 signature matches the body"))
                }
            }
            Verification::SecretInUrl { parameter } => {
                let given = delivery
                    .query
                    .iter()
                    .find(|(name, _)| name == parameter)
                    .map(|(_, value)| value.as_str())
                    .ok_or_else(|| reject(parameter, "the query parameter holding the secret is missing"))?;
                // Compared as MACs under one fixed key: constant-time, whatever the lengths.
                let expected = mac(b"secret-in-url", &[secret.as_bytes()]);
                check(b"secret-in-url", &[given.as_bytes()], &expected, parameter)
                    .map_err(|_| reject(parameter, "does not match this source's secret"))
            }
        }
    }
}

/// The field a missing secret is reported on.
fn signature_field(verification: &Verification) -> &str {
    match verification {
        Verification::Github => "X-Hub-Signature-256",
        Verification::HmacSha256 { header, .. } => header.as_str(),
        Verification::Stripe => "Stripe-Signature",
        Verification::Slack => "X-Slack-Signature",
        Verification::Zendesk => "X-Zendesk-Webhook-Signature",
        Verification::StandardWebhooks => "webhook-signature",
        Verification::SecretInUrl { parameter } => parameter,
        Verification::None => "",
    }
}

fn reject(field: &str, reason: &str) -> Rejected {
    Rejected {
        header: field.to_string(),
        reason: reason.to_string(),
    }
}

/// A header's value as text; missing or unreadable is a rejection naming it.
fn header<'d>(delivery: &Delivery<'d>, name: &str) -> Result<&'d str, Rejected> {
    let value = delivery.headers.get(name).ok_or_else(|| reject(name, "missing"))?;
    value.to_str().map_err(|_| reject(name, "not readable text"))
}

/// The header `name`, a Unix time in seconds within the tolerance of `now`, as sent.
fn unix_timestamp<'d>(delivery: &Delivery<'d>, name: &str, now: Timestamp) -> Result<&'d str, Rejected> {
    let timestamp = header(delivery, name)?;
    let seconds = timestamp
        .trim()
        .parse::<i64>()
        .map_err(|_| reject(name, "must be a Unix time in seconds"))?;
    within_tolerance(seconds, now, name)?;
    Ok(timestamp)
}

fn within_tolerance(seconds: i64, now: Timestamp, field: &str) -> Result<(), Rejected> {
    let skew_ms = now.millis().saturating_sub(seconds.saturating_mul(1000));
    if skew_ms.abs() > TOLERANCE_SECONDS * 1000 {
        let reason = if skew_ms > 0 {
            "the timestamp is more than 5 minutes old (a replay, or a stale retry)"
        } else {
            "the timestamp is more than 5 minutes in the future"
        };
        return Err(reject(field, reason));
    }
    Ok(())
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// The HMAC-SHA256 of the parts under `key` equals `expected` (compared in constant time).
fn check(key: &[u8], parts: &[&[u8]], expected: &[u8], field: &str) -> Result<(), Rejected> {
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(expected)
        .map_err(|_| reject(field, "does not match the body (tampered, or signed with another secret)"))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| text.get(at..at + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()
}
