//! What the source tests share: the shipped sources and their fixtures, deliveries built from
//! headers, mapping and verifying them, and reading what a mapping gave.

// Each test file uses the part it needs.
#![allow(dead_code)]

use engagement::{parse_submission, ConsentEffect, Rules, Timestamp};
use engagement_sources::{Catalog, Delivery, Mapped, Source};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};

/// The shipped source `name`.
pub fn builtin(name: &str) -> Source {
    Catalog::builtin().get(name).unwrap_or_else(|| panic!("{name} ships")).clone()
}

/// The file `name` of `fixtures/<dir>`.
pub fn fixture(dir: &str, name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/{dir}/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The JSON file `name` of `fixtures/<dir>`.
pub fn json_fixture(dir: &str, name: &str) -> Value {
    serde_json::from_slice(&fixture(dir, name)).expect("the fixture is JSON")
}

/// An RFC 3339 time.
pub fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).expect("an RFC 3339 time")
}

/// Headers from (name, value) pairs, in order.
pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            HeaderValue::from_str(value).expect("a header value"),
        );
    }
    headers
}

/// Maps `body`, delivered with `headers` and no query, received at `received`.
pub fn map(source: &Source, headers: &HeaderMap, body: &[u8], received: Timestamp) -> Mapped {
    source
        .map(&Delivery { headers, query: &[], body }, received)
        .expect("a readable body")
}

/// Verifies a delivery against `secret` and maps it.
pub fn verify_and_map(source: &Source, delivery: &Delivery, secret: &str, received: Timestamp) -> Mapped {
    source.verify(delivery, Some(secret), received).expect("the delivery verifies");
    source.map(delivery, received).expect("a readable body")
}

/// The interactions a delivery mapped to, and its delivery id.
pub fn interactions_of(mapped: Mapped) -> (Vec<Value>, Option<String>) {
    match mapped {
        Mapped::Interactions { interactions, delivery_id } => (interactions, delivery_id),
        other => panic!("expected interactions, got {other:?}"),
    }
}

/// Why a delivery was ignored, and its delivery id.
pub fn ignored_of(mapped: Mapped) -> (String, Option<String>) {
    match mapped {
        Mapped::Ignored { reason, delivery_id } => (reason, delivery_id),
        other => panic!("expected ignored, got {other:?}"),
    }
}

/// Why a delivery was ignored.
pub fn ignored_reason(mapped: Mapped) -> String {
    ignored_of(mapped).0
}

/// Checks that ingest accepts `interactions` as one submission under the default rules (so the
/// kinds exist and every field is within bounds).
pub fn assert_ingest_accepts(interactions: &[Value], received: Timestamp) {
    let submission = serde_json::to_vec(&json!({ "interactions": interactions })).expect("JSON");
    parse_submission(&submission, &Rules::default_rules(), received).expect("ingest accepts them");
}

/// Checks that ingest accepts the one interaction `wire` under the default rules, as `kind`, and
/// that the rules give that kind `consent`.
pub fn assert_ingested_as(wire: &Value, kind: &str, consent: Option<ConsentEffect>, received: Timestamp) {
    let rules = Rules::default_rules();
    let parsed = parse_submission(wire.to_string().as_bytes(), &rules, received).expect("ingest accepts what the source emits");
    assert_eq!(parsed[0].kind, kind);
    let rule = rules
        .resolve_kind(kind)
        .and_then(|id| rules.kind(id))
        .expect("a kind of the default rules");
    assert_eq!(rule.consent, consent, "consent of {kind}");
}

/// Checks that the interaction's `occurred_at` is the time `expected` (whatever its offset).
pub fn assert_occurred_at(wire: &Value, expected: &str) {
    assert_eq!(
        wire["occurred_at"].as_str().and_then(Timestamp::parse_rfc3339),
        Timestamp::parse_rfc3339(expected),
        "{}",
        wire["occurred_at"]
    );
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
