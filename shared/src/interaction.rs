//! Interactions as clients send them, and their validation: every problem is reported with its
//! JSON path, and no input makes validation panic.

use crate::customer::ScoredInteraction;
use crate::evidence::Contribution;
use crate::identity::{Channel, Identity};
use crate::rules::{is_valid_kind_name, Rules, UnknownKinds};
use crate::time::{Timestamp, MILLIS_PER_SECOND};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;

pub const MAX_ID_CHARS: usize = 128;
pub const MAX_SOURCE_CHARS: usize = 64;
pub const MAX_NAME_CHARS: usize = 256;
pub const MAX_ALSO_IDENTITIES: usize = 20;
pub const MAX_PROPERTIES_BYTES: usize = 4 * 1024;
pub const MAX_BATCH_ITEMS: usize = 500;
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Clients' clocks drift; beyond this an interaction "from the future" is a bug on their side.
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * MILLIS_PER_SECOND;

/// Who did it, as the client knows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerRef {
    /// The identity the interaction came from (its channel is the one consent applies to).
    #[serde(flatten)]
    pub identity: Identity,
    /// Other identities the client knows to be the same person.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Identity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Something a customer did, validated and normalized.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    /// The client's idempotency key: the same id is recorded once.
    pub id: String,
    /// The system it came from (`discourse`, `hubspot`, `eventbrite`…).
    pub source: String,
    pub customer: CustomerRef,
    pub kind: String,
    pub occurred_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

impl Interaction {
    /// A digest of the whole content: the same id with another fingerprint is a conflict.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&canonical);
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Every identity named, the primary one first.
    pub fn identities(&self) -> impl Iterator<Item = &Identity> {
        std::iter::once(&self.customer.identity).chain(&self.customer.also)
    }

    /// What this interaction counts for under `rules`. `None` only if the rules reject its kind
    /// (validation refuses those first).
    pub fn score(&self, rules: &Rules) -> Option<ScoredInteraction> {
        let kind = rules.resolve_kind(&self.kind)?;
        let (level, default_weight) = rules.kind_level_and_weight(kind);
        let weight = match (self.weight, rules.kind(kind).and_then(|k| k.max_weight)) {
            (Some(weight), Some(max)) => weight.clamp(0.0, max),
            _ => default_weight,
        };
        Some(ScoredInteraction {
            contribution: Contribution {
                kind,
                level,
                weight,
                occurred_at: self.occurred_at,
            },
            consent: rules
                .kind(kind)
                .and_then(|k| k.consent)
                .map(|effect| (self.customer.identity.channel.clone(), effect)),
        })
    }
}

/// One problem with a request, at a JSON path (`interactions[3].occurred_at`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// Every problem found in a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, path: &str, field: &str, reason: impl Into<String>) {
        let path = match (path.is_empty(), field.is_empty()) {
            (true, _) => field.to_string(),
            (false, true) => path.to_string(),
            (false, false) => format!("{path}.{field}"),
        };
        self.0.push(FieldError {
            path,
            reason: reason.into(),
        });
    }
}

/// Parses a request body: one interaction, or `{"interactions": [...]}` with 1..500 of them.
/// All or nothing: any problem in any item rejects the whole request.
pub fn parse_submission(body: &[u8], rules: &Rules, now: Timestamp) -> Result<Vec<Interaction>, ValidationErrors> {
    let mut errors = Errors(Vec::new());
    if body.len() > MAX_BODY_BYTES {
        errors.add("", "", "the request body is larger than 1 MiB");
        return Err(ValidationErrors(errors.0));
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(error) => {
            errors.add("", "", format!("not valid JSON: {error}"));
            return Err(ValidationErrors(errors.0));
        }
    };
    let mut interactions = Vec::new();
    match value.as_object() {
        Some(object) if object.contains_key("interactions") => {
            for key in object.keys().filter(|k| *k != "interactions") {
                errors.add("", key, "unknown field");
            }
            match object.get("interactions").and_then(Value::as_array) {
                Some(items) if items.is_empty() => errors.add("", "interactions", "must hold at least one interaction"),
                Some(items) if items.len() > MAX_BATCH_ITEMS => errors.add("", "interactions", "must hold at most 500 interactions"),
                Some(items) => {
                    for (index, item) in items.iter().enumerate() {
                        if let Some(interaction) = validate_at(item, &format!("interactions[{index}]"), rules, now, &mut errors) {
                            interactions.push(interaction);
                        }
                    }
                }
                None => errors.add("", "interactions", "must be an array of interactions"),
            }
        }
        _ => {
            if let Some(interaction) = validate_at(&value, "", rules, now, &mut errors) {
                interactions.push(interaction);
            }
        }
    }
    if errors.0.is_empty() {
        Ok(interactions)
    } else {
        Err(ValidationErrors(errors.0))
    }
}

/// Validates one interaction given as JSON (as `pyramid import` reads each line).
pub fn validate_interaction(value: &Value, rules: &Rules, now: Timestamp) -> Result<Interaction, ValidationErrors> {
    let mut errors = Errors(Vec::new());
    match validate_at(value, "", rules, now, &mut errors) {
        Some(interaction) if errors.0.is_empty() => Ok(interaction),
        _ => Err(ValidationErrors(errors.0)),
    }
}

fn text_field<'v>(object: &'v Map<String, Value>, path: &str, field: &str, max_chars: usize, errors: &mut Errors) -> Option<&'v str> {
    match object.get(field) {
        None | Some(Value::Null) => {
            errors.add(path, field, "required");
            None
        }
        Some(Value::String(text)) => {
            let count = text.chars().count();
            if count == 0 || count > max_chars {
                errors.add(path, field, format!("must be 1..{max_chars} characters"));
                None
            } else if text.chars().any(char::is_control) {
                errors.add(path, field, "must not contain control characters");
                None
            } else {
                Some(text)
            }
        }
        Some(_) => {
            errors.add(path, field, "must be a string");
            None
        }
    }
}

fn identity_at(value: &Value, path: &str, rules: &Rules, errors: &mut Errors, allowed: &[&str]) -> Option<Identity> {
    let Some(object) = value.as_object() else {
        errors.add(path, "", "must be an object with channel and handle");
        return None;
    };
    for key in object.keys().filter(|k| !allowed.contains(&k.as_str())) {
        errors.add(path, key, "unknown field");
    }
    let channel = match object.get("channel") {
        Some(Value::String(text)) => match Channel::parse(text) {
            Ok(channel) => Some(channel),
            Err(error) => {
                errors.add(path, "channel", error.to_string());
                None
            }
        },
        None | Some(Value::Null) => {
            errors.add(path, "channel", "required");
            None
        }
        Some(_) => {
            errors.add(path, "channel", "must be a string");
            None
        }
    };
    let handle = match object.get("handle") {
        Some(Value::String(text)) => Some(text),
        None | Some(Value::Null) => {
            errors.add(path, "handle", "required");
            None
        }
        Some(_) => {
            errors.add(path, "handle", "must be a string");
            None
        }
    };
    let (channel, handle) = (channel?, handle?);
    let style = rules.handle_style(&channel);
    match Identity::new(channel, style, handle) {
        Ok(identity) => Some(identity),
        Err(error) => {
            errors.add(path, "handle", error.to_string());
            None
        }
    }
}

const INTERACTION_FIELDS: [&str; 7] = ["id", "source", "customer", "kind", "occurred_at", "properties", "weight"];

fn validate_at(value: &Value, path: &str, rules: &Rules, now: Timestamp, errors: &mut Errors) -> Option<Interaction> {
    let before = errors.0.len();
    let Some(object) = value.as_object() else {
        errors.add(path, "", "must be a JSON object");
        return None;
    };
    for key in object.keys().filter(|k| !INTERACTION_FIELDS.contains(&k.as_str())) {
        errors.add(path, key, "unknown field");
    }
    // Each field in turn, so that the problems come in the fields' order.
    let id = text_field(object, path, "id", MAX_ID_CHARS, errors);
    let source = text_field(object, path, "source", MAX_SOURCE_CHARS, errors);
    let kind = kind_field(object.get("kind"), path, rules, errors);
    let occurred_at = occurred_at_field(object.get("occurred_at"), path, now, errors);
    let customer = match object.get("customer") {
        None | Some(Value::Null) => {
            errors.add(path, "customer", "required");
            None
        }
        Some(value) => {
            let customer_path = if path.is_empty() {
                "customer".to_string()
            } else {
                format!("{path}.customer")
            };
            customer_field(value, &customer_path, rules, errors)
        }
    };
    let properties = properties_field(object.get("properties"), path, errors);
    let weight = match object.get("weight") {
        None | Some(Value::Null) => None,
        Some(value) => weight_field(value, kind, path, rules, errors),
    };
    if errors.0.len() > before {
        return None;
    }
    Some(Interaction {
        id: id?.to_string(),
        source: source?.to_string(),
        customer: customer?,
        kind: kind?.to_string(),
        occurred_at: occurred_at?,
        properties,
        weight,
    })
}

/// A kind the rules accept (named, or unknown when they observe unknown kinds).
fn kind_field<'v>(value: Option<&'v Value>, path: &str, rules: &Rules, errors: &mut Errors) -> Option<&'v str> {
    match value {
        Some(Value::String(kind)) if !is_valid_kind_name(kind) => {
            errors.add(path, "kind", "must be 1..64 characters of a-z, 0-9, '_', '-' or '.'");
            None
        }
        Some(Value::String(kind)) if rules.resolve_kind(kind).is_none() => {
            errors.add(path, "kind", "unknown kind (these rules reject kinds they do not name)");
            None
        }
        Some(Value::String(kind)) => Some(kind.as_str()),
        None | Some(Value::Null) => {
            errors.add(path, "kind", "required");
            None
        }
        Some(_) => {
            errors.add(path, "kind", "must be a string");
            None
        }
    }
}

/// An RFC 3339 time no further in the future than clocks drift.
fn occurred_at_field(value: Option<&Value>, path: &str, now: Timestamp, errors: &mut Errors) -> Option<Timestamp> {
    match value {
        Some(Value::String(text)) => match Timestamp::parse_rfc3339(text) {
            Some(at) if at.0 > now.0.saturating_add(MAX_FUTURE_SKEW_MS) => {
                errors.add(path, "occurred_at", "more than 5 minutes in the future");
                None
            }
            Some(at) => Some(at),
            None => {
                errors.add(path, "occurred_at", "not RFC 3339 (e.g. 2026-03-03T09:30:00Z)");
                None
            }
        },
        None | Some(Value::Null) => {
            errors.add(path, "occurred_at", "required");
            None
        }
        Some(_) => {
            errors.add(path, "occurred_at", "not RFC 3339 (e.g. 2026-03-03T09:30:00Z)");
            None
        }
    }
}

/// `customer`: an identity, the other identities `also` names (without repeats), and a name.
fn customer_field(value: &Value, path: &str, rules: &Rules, errors: &mut Errors) -> Option<CustomerRef> {
    let identity = identity_at(value, path, rules, errors, &["channel", "handle", "also", "name"]);
    let object = value.as_object();
    let mut also = also_field(object.and_then(|o| o.get("also")), path, rules, errors);
    let name = name_field(object.and_then(|o| o.get("name")), path, errors);
    identity.map(|identity| {
        also.retain(|other| *other != identity);
        CustomerRef { identity, also, name }
    })
}

fn also_field(value: Option<&Value>, path: &str, rules: &Rules, errors: &mut Errors) -> Vec<Identity> {
    let mut also = Vec::new();
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) if items.len() > MAX_ALSO_IDENTITIES => {
            errors.add(path, "also", "at most 20 identities");
        }
        Some(Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                if let Some(identity) = identity_at(item, &format!("{path}.also[{index}]"), rules, errors, &["channel", "handle"]) {
                    if !also.contains(&identity) {
                        also.push(identity);
                    }
                }
            }
        }
        Some(_) => errors.add(path, "also", "must be an array of {channel, handle}"),
    }
    also
}

fn name_field(value: Option<&Value>, path: &str, errors: &mut Errors) -> Option<String> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS => {
            errors.add(path, "name", "must be 1..256 characters");
            None
        }
        Some(Value::String(name)) if name.chars().any(char::is_control) => {
            errors.add(path, "name", "must not contain control characters");
            None
        }
        Some(Value::String(name)) => Some(name.trim().to_string()),
        Some(_) => {
            errors.add(path, "name", "must be a string");
            None
        }
    }
}

fn properties_field(value: Option<&Value>, path: &str, errors: &mut Errors) -> Option<Map<String, Value>> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => {
            let size = serde_json::to_vec(map).map_or(usize::MAX, |bytes| bytes.len());
            if size > MAX_PROPERTIES_BYTES {
                errors.add(path, "properties", "must be at most 4 KiB of JSON");
            }
            Some(map.clone())
        }
        Some(_) => {
            errors.add(path, "properties", "must be a JSON object");
            None
        }
    }
}

/// A client's own weight: only for a kind whose rules set a `max_weight`, and within it.
fn weight_field(value: &Value, kind: Option<&str>, path: &str, rules: &Rules, errors: &mut Errors) -> Option<f64> {
    let max = kind
        .and_then(|k| rules.resolve_kind(k))
        .and_then(|id| rules.kind(id))
        .and_then(|k| k.max_weight);
    match (value.as_f64(), max) {
        (None, _) => {
            errors.add(path, "weight", "must be a number");
            None
        }
        (Some(_), None) if kind.is_some() => {
            let why =
                if rules.unknown_kinds == UnknownKinds::Observe && kind.and_then(|k| rules.resolve_kind(k)) == Some(rules.other_kind()) {
                    "not allowed for kinds the rules do not name"
                } else {
                    "not allowed for this kind (its rules set no max_weight)"
                };
            errors.add(path, "weight", why);
            None
        }
        (Some(weight), Some(max)) if !(0.0..=max).contains(&weight) => {
            errors.add(path, "weight", format!("must be between 0 and {max} for this kind"));
            None
        }
        (Some(weight), _) => Some(weight),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-25T12:00:00Z").expect("valid")
    }

    fn valid() -> Value {
        json!({
            "id": "evt-1",
            "source": "discourse",
            "customer": {"channel": "email", "handle": " Ada@Example.com", "also": [{"channel": "twitter", "handle": "@AdaL"}], "name": "Ada"},
            "kind": "forum_answered",
            "occurred_at": "2026-11-25T10:00:00+01:00",
            "properties": {"topic": 42}
        })
    }

    #[test]
    fn a_valid_interaction_is_normalized() {
        let rules = Rules::default_rules();
        let body = serde_json::to_vec(&valid()).expect("json");
        let parsed = parse_submission(&body, &rules, now()).expect("valid");
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].customer.identity.handle, "ada@example.com");
        assert_eq!(parsed[0].customer.also[0].handle, "adal");
        assert_eq!(parsed[0].occurred_at.to_rfc3339(), "2026-11-25T09:00:00Z");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let rules = Rules::default_rules();
        let mut bad = valid();
        bad["occurred_at"] = json!("yesterday");
        bad["customer"]["handle"] = json!("   ");
        bad["colour"] = json!("blue");
        bad["weight"] = json!(3);
        let body = serde_json::to_vec(&json!({"interactions": [valid(), valid(), valid(), bad]})).expect("json");
        let errors = parse_submission(&body, &rules, now()).expect_err("invalid").to_string();
        assert!(errors.contains("interactions[3].occurred_at: not RFC 3339"), "{errors}");
        assert!(errors.contains("interactions[3].customer.handle: not an email address"), "{errors}");
        assert!(errors.contains("interactions[3].colour: unknown field"), "{errors}");
        assert!(errors.contains("interactions[3].weight: not allowed for this kind"), "{errors}");
    }

    #[test]
    fn the_future_oversize_and_empty_batches_are_refused() {
        let rules = Rules::default_rules();
        let mut future = valid();
        future["occurred_at"] = json!("2026-11-25T12:06:00Z");
        let mut big = valid();
        big["properties"] = json!({"blob": "x".repeat(5000)});
        for (value, expected) in [
            (future, "occurred_at: more than 5 minutes in the future"),
            (big, "properties: must be at most 4 KiB of JSON"),
            (json!({"interactions": []}), "interactions: must hold at least one interaction"),
        ] {
            let errors = parse_submission(&serde_json::to_vec(&value).expect("json"), &rules, now()).expect_err("invalid");
            assert!(errors.to_string().contains(expected), "{errors}");
        }
        let clock_skew = {
            let mut v = valid();
            v["occurred_at"] = json!("2026-11-25T12:04:00Z");
            v
        };
        assert!(validate_interaction(&clock_skew, &rules, now()).is_ok());
        assert!(parse_submission(b"{not json", &rules, now()).is_err());
        assert!(parse_submission(&vec![b' '; MAX_BODY_BYTES + 1], &rules, now()).is_err());
    }

    #[test]
    fn weight_overrides_are_bounded_by_the_kind() {
        let rules = Rules::default_rules();
        let mut purchase = valid();
        purchase["kind"] = json!("purchase_made");
        purchase["weight"] = json!(12.5);
        let interaction = validate_interaction(&purchase, &rules, now()).expect("valid");
        assert_eq!(interaction.score(&rules).expect("scored").contribution.weight, 12.5);
        purchase["weight"] = json!(21);
        assert!(validate_interaction(&purchase, &rules, now()).is_err());
    }

    #[test]
    fn the_fingerprint_changes_with_the_content_only() {
        let rules = Rules::default_rules();
        let a = validate_interaction(&valid(), &rules, now()).expect("valid");
        let mut other = valid();
        other["customer"]["handle"] = json!("ada@example.com");
        let b = validate_interaction(&other, &rules, now()).expect("valid");
        assert_eq!(a.fingerprint(), b.fingerprint(), "normalized handles are the same content");
        other["kind"] = json!("event_attended");
        let c = validate_interaction(&other, &rules, now()).expect("valid");
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
