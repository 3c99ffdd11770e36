//! Matching a verified delivery against the mappings, and emitting `POST /v1/interactions`
//! objects from it.

use crate::pointer::{scalar_text, Part, Pointer, Template};
use crate::source::{DeliveryIdAt, Emit, Mapping, Source, TimeFormat, Verification, When, MAX_PROPERTIES, MAX_PROPERTY_CHARS};
use crate::{BadBody, Delivery, Mapped};
use engagement::interaction::{MAX_NAME_CHARS, MAX_PROPERTIES_BYTES};
use engagement::Timestamp;
use serde_json::{json, Map, Value};

/// Why an emit could not be made: the whole delivery is then ignored with this reason.
struct Missing(String);

impl Source {
    /// Maps a verified delivery to interactions (or ignores it, with the reason).
    pub fn map(&self, delivery: &Delivery, received_at: Timestamp) -> Result<Mapped, BadBody> {
        let body = crate::body::parse(delivery)?;
        if matches!(self.verification, Verification::Slack) && body.get("type").and_then(Value::as_str) == Some("url_verification") {
            if let Some(challenge) = body.get("challenge").and_then(Value::as_str) {
                return Ok(Mapped::Challenge(challenge.to_string()));
            }
        }
        let delivery_id = self.delivery_id(delivery, &body);
        let ignored = |reason: String| Mapped::Ignored {
            reason,
            delivery_id: delivery_id.clone(),
        };
        if self.actor_is_bot(&body) {
            return Ok(ignored("bot".into()));
        }
        let mut interactions = Vec::new();
        let mut matched = false;
        let mut dropped_bots = false;
        for mapping in self.mappings.iter().filter(|m| m.matches(delivery, &body)) {
            matched = true;
            for emit in &mapping.emits {
                match self.emit(emit, &body, delivery_id.as_deref(), received_at) {
                    Ok(Some(interaction)) => interactions.push(interaction),
                    Ok(None) => dropped_bots = true,
                    Err(Missing(what)) => return Ok(ignored(format!("{what} in mapping {}", mapping.name))),
                }
            }
        }
        if !matched {
            return Ok(ignored(self.no_mapping_reason(delivery, &body)));
        }
        if interactions.is_empty() && dropped_bots {
            return Ok(ignored("bot".into()));
        }
        Ok(Mapped::Interactions { interactions, delivery_id })
    }

    fn delivery_id(&self, delivery: &Delivery, body: &Value) -> Option<String> {
        let id = match self.delivery_id.as_ref()? {
            DeliveryIdAt::Header(name) => delivery.headers.get(name)?.to_str().ok()?.to_string(),
            DeliveryIdAt::Pointer(pointer) => scalar_text(pointer.find(body)?)?,
        };
        (!id.is_empty()).then_some(id)
    }

    fn actor_is_bot(&self, body: &Value) -> bool {
        let actor = self.bots.actor.as_ref().and_then(|p| p.find(body)).and_then(Value::as_str);
        let actor_type = self.bots.actor_type.as_ref().and_then(|p| p.find(body)).and_then(Value::as_str);
        actor_type == Some("Bot") || actor.is_some_and(|login| self.is_bot_login(login))
    }

    fn is_bot_login(&self, login: &str) -> bool {
        let login = login.to_lowercase();
        login.ends_with("[bot]") || self.bots.logins.contains(&login)
    }

    /// One interaction; `Ok(None)` when its customer is a bot.
    fn emit(&self, emit: &Emit, body: &Value, delivery_id: Option<&str>, received_at: Timestamp) -> Result<Option<Value>, Missing> {
        let handle = required_text(&emit.handle, body)?;
        if self.is_bot_login(&handle) {
            return Ok(None);
        }
        let id = render(&emit.id, body, delivery_id)?;
        let occurred_at = match &emit.occurred_at {
            When::Received => received_at,
            When::At(pointer) => {
                let value = pointer.find(body).ok_or_else(|| missing(pointer))?;
                parse_time(value, &emit.time_format).ok_or_else(|| {
                    Missing(format!(
                        "{} is not a time in format {}",
                        pointer.as_str(),
                        format_name(&emit.time_format)
                    ))
                })?
            }
        };
        let mut customer = Map::new();
        customer.insert("channel".into(), Value::String(emit.channel.clone()));
        customer.insert("handle".into(), Value::String(handle));
        let also: Vec<Value> = emit
            .also
            .iter()
            .filter_map(|(channel, pointer)| {
                let handle = pointer.find(body).and_then(scalar_text).filter(|h| !h.trim().is_empty())?;
                (!self.is_bot_login(&handle)).then(|| json!({"channel": channel, "handle": handle}))
            })
            .collect();
        if !also.is_empty() {
            customer.insert("also".into(), Value::Array(also));
        }
        if let Some(name) = emit
            .name
            .as_ref()
            .and_then(|p| p.find(body))
            .and_then(Value::as_str)
            .and_then(clean_name)
        {
            customer.insert("name".into(), Value::String(name));
        }
        let mut interaction = Map::new();
        interaction.insert("id".into(), Value::String(id));
        interaction.insert("source".into(), Value::String(self.name.clone()));
        interaction.insert("customer".into(), Value::Object(customer));
        interaction.insert("kind".into(), Value::String(emit.kind.clone()));
        interaction.insert("occurred_at".into(), Value::String(occurred_at.to_rfc3339()));
        interaction.insert("properties".into(), Value::Object(properties(&emit.properties, body)));
        Ok(Some(Value::Object(interaction)))
    }

    /// "no mapping for this event (X-GitHub-Event: watch, /action: started)": the values the
    /// mappings match on, when they look like event names (never free text: no personal data).
    fn no_mapping_reason(&self, delivery: &Delivery, body: &Value) -> String {
        let mut seen: Vec<String> = Vec::new();
        for mapping in &self.mappings {
            for (name, _, spelled) in &mapping.headers {
                if let Some(value) = delivery.headers.get(name).and_then(|v| v.to_str().ok()) {
                    push_if_event_like(&mut seen, spelled.clone(), value);
                }
            }
            let pointers = mapping.equals.iter().map(|(p, _)| p).chain(mapping.one_of.iter().map(|(p, _)| p));
            for pointer in pointers {
                if let Some(value) = pointer.find(body).and_then(Value::as_str) {
                    push_if_event_like(&mut seen, pointer.as_str().to_string(), value);
                }
            }
        }
        if seen.is_empty() {
            "no mapping for this event".into()
        } else {
            format!("no mapping for this event ({})", seen.join(", "))
        }
    }
}

impl Mapping {
    fn matches(&self, delivery: &Delivery, body: &Value) -> bool {
        self.headers
            .iter()
            .all(|(name, expected, _)| delivery.headers.get(name).and_then(|v| v.to_str().ok()) == Some(expected.as_str()))
            && self
                .equals
                .iter()
                .all(|(pointer, expected)| pointer.find(body).is_some_and(|found| same_scalar(found, expected)))
            && self.present.iter().all(|pointer| pointer.find(body).is_some())
            && self.one_of.iter().all(|(pointer, expected)| {
                pointer
                    .find(body)
                    .is_some_and(|found| expected.iter().any(|e| same_scalar(found, e)))
            })
    }
}

/// JSON equality, with numbers compared by value (`1` equals `1.0`).
fn same_scalar(found: &Value, expected: &Value) -> bool {
    match (found, expected) {
        (Value::Number(a), Value::Number(b)) => a == b || a.as_f64().is_some_and(|a| b.as_f64() == Some(a)),
        _ => found == expected,
    }
}

fn missing(pointer: &Pointer) -> Missing {
    Missing(format!("missing {}", pointer.as_str()))
}

fn required_text(pointer: &Pointer, body: &Value) -> Result<String, Missing> {
    pointer
        .find(body)
        .and_then(scalar_text)
        .filter(|text| !text.trim().is_empty())
        .ok_or_else(|| missing(pointer))
}

fn render(template: &Template, body: &Value, delivery_id: Option<&str>) -> Result<String, Missing> {
    let mut id = String::new();
    for part in &template.0 {
        match part {
            Part::Text(text) => id.push_str(text),
            Part::Pointer(pointer) => id.push_str(&required_text(pointer, body)?),
            Part::Delivery => id.push_str(delivery_id.ok_or_else(|| Missing("missing the delivery id".into()))?),
        }
    }
    Ok(id)
}

fn parse_time(value: &Value, format: &TimeFormat) -> Option<Timestamp> {
    match format {
        TimeFormat::Rfc3339 => Timestamp::parse_rfc3339(value.as_str()?),
        TimeFormat::Unix => seconds_or_text(value).map(|seconds| Timestamp((seconds * 1000.0).round() as i64)),
        TimeFormat::UnixMs => seconds_or_text(value).map(|millis| Timestamp(millis.round() as i64)),
        TimeFormat::Strftime(pattern) => {
            let text = value.as_str()?;
            chrono::DateTime::parse_from_str(text, pattern)
                .map(|t| t.timestamp_millis())
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, pattern).map(|t| t.and_utc().timestamp_millis()))
                .or_else(|_| {
                    chrono::NaiveDate::parse_from_str(text, pattern)
                        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp_millis())
                })
                .ok()
                .map(Timestamp)
        }
    }
}

/// A number, or a number written as text (Slack's `"1360782804.083113"`); finite only.
fn seconds_or_text(value: &Value) -> Option<f64> {
    let number = match value {
        Value::Number(number) => number.as_f64()?,
        Value::String(text) => text.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    number.is_finite().then_some(number)
}

fn format_name(format: &TimeFormat) -> &str {
    match format {
        TimeFormat::Rfc3339 => "rfc3339",
        TimeFormat::Unix => "unix",
        TimeFormat::UnixMs => "unix_ms",
        TimeFormat::Strftime(pattern) => pattern,
    }
}

/// A display name ingest accepts: trimmed, no control characters, at most 256 characters.
fn clean_name(name: &str) -> Option<String> {
    let name: String = name.trim().chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect();
    (!name.trim().is_empty()).then(|| name.trim().to_string())
}

/// The properties present as scalars; strings cut to 256 characters; within ingest's 4 KiB.
fn properties(wanted: &[(String, Pointer)], body: &Value) -> Map<String, Value> {
    let mut properties = Map::new();
    let mut size = 2; // {}
    for (key, pointer) in wanted.iter().take(MAX_PROPERTIES) {
        let value = match pointer.find(body) {
            Some(Value::String(text)) => Value::String(text.chars().take(MAX_PROPERTY_CHARS).collect()),
            Some(value @ (Value::Number(_) | Value::Bool(_))) => value.clone(),
            _ => continue,
        };
        let entry_size = serde_json::to_string(key).map_or(0, |k| k.len()) + value.to_string().len() + 2;
        if size + entry_size > MAX_PROPERTIES_BYTES {
            continue;
        }
        size += entry_size;
        properties.insert(key.clone(), value);
    }
    properties
}

/// Event names only: short, and of letters, digits and `._:-` (never free text).
fn push_if_event_like(seen: &mut Vec<String>, field: String, value: &str) {
    let event_like = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    let entry = format!("{field}: {value}");
    if event_like && !seen.contains(&entry) && seen.len() < 4 {
        seen.push(entry);
    }
}
