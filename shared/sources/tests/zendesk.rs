//! The shipped Zendesk source on event payloads built to Zendesk's documented schema (see
//! `fixtures/zendesk/PROVENANCE.md`): a ticket opened starts service recovery, a solve is its
//! outcome, and a new end user links their Zendesk id to their e-mail.

mod common;

use engagement::{Rules, Timestamp, Trigger};
use engagement_sources::{Delivery, Mapped, Scheme, Source};
use serde_json::{json, Value};

const RECEIVED: &str = "2026-06-01T12:00:00Z";

fn zendesk() -> Source {
    common::builtin("zendesk")
}

fn fixture(name: &str) -> Vec<u8> {
    common::fixture("zendesk", name)
}

fn json_of(name: &str) -> Value {
    common::json_fixture("zendesk", name)
}

fn received() -> Timestamp {
    common::at(RECEIVED)
}

fn map(body: &[u8]) -> Mapped {
    common::map(&zendesk(), &http::HeaderMap::new(), body, received())
}

/// The interactions of a delivery, checked to pass ingest's own validation under the default
/// rules; the delivery id is the event's.
fn interactions(body: &[u8]) -> Vec<Value> {
    let event_id = serde_json::from_slice::<Value>(body).expect("JSON")["id"].clone();
    let (interactions, delivery_id) = common::interactions_of(map(body));
    assert_eq!(delivery_id.as_deref(), event_id.as_str());
    common::assert_ingest_accepts(&interactions, received());
    interactions
}

fn ignored(body: &[u8]) -> String {
    common::ignored_reason(map(body))
}

#[test]
fn zendesk_uses_the_zendesk_scheme() {
    assert_eq!(zendesk().scheme(), Scheme::Zendesk);
}

#[test]
fn a_new_ticket_is_opened_by_its_requester() {
    assert_eq!(
        interactions(&fixture("ticket-created.json")),
        [json!({
            "id": "zendesk:ticket:35436:opened:requester",
            "source": "zendesk",
            "customer": {"channel": "zendesk", "handle": "20978392"},
            "kind": "zendesk.ticket_opened",
            "occurred_at": "2019-05-20T22:55:29Z",
            "properties": {"ticket": "35436", "priority": "LOW", "type": "QUESTION", "via": "web_form"}
        })]
    );
}

/// As a complaint does, a Zendesk ticket starts service recovery at once, and its solve is the
/// playbook's outcome.
#[test]
fn a_new_ticket_starts_service_recovery_and_its_solve_ends_it() {
    let rules = Rules::default_rules();
    let playbook = rules
        .playbooks
        .iter()
        .find(|p| p.trigger == Trigger::Interaction("zendesk.ticket_opened".into()))
        .expect("a playbook starts on a Zendesk ticket");
    assert_eq!(playbook.steps[0].action, "open_priority_support_case");
    assert!(playbook.steps[0].outcome.contains(&"zendesk.ticket_solved".to_string()));
    assert_eq!(playbook.holdout_percent, 0, "nobody is held out of service recovery");
}

#[test]
fn a_solved_ticket_is_solved_for_its_requester() {
    assert_eq!(
        interactions(&fixture("ticket-status-changed-solved.json")),
        [json!({
            "id": "zendesk:ticket:35436:solved:7f0e8b6a-2d4c-4c1e-9a3b-5e6f7a8b9c0d:requester",
            "source": "zendesk",
            "customer": {"channel": "zendesk", "handle": "20978392"},
            "kind": "zendesk.ticket_solved",
            "occurred_at": "2019-05-25T01:23:45.465Z",
            "properties": {"ticket": "35436", "previous_status": "OPEN"}
        })]
    );
}

#[test]
fn other_status_changes_are_ignored() {
    let mut event = json_of("ticket-status-changed-solved.json");
    event["event"]["current"] = json!("PENDING");
    assert_eq!(
        ignored(&serde_json::to_vec(&event).expect("JSON")),
        "no mapping for this event (/type: zen:event-type:ticket.status_changed, /event/current: PENDING)"
    );
}

#[test]
fn a_new_end_user_links_their_zendesk_id_to_their_email() {
    assert_eq!(
        interactions(&fixture("user-created.json")),
        [json!({
            "id": "zendesk:user:20978392:created",
            "source": "zendesk",
            "customer": {
                "channel": "zendesk",
                "handle": "20978392",
                "also": [{"channel": "email", "handle": "johnny@example.com"}]
            },
            "kind": "zendesk.user_created",
            "occurred_at": "2019-05-20T22:50:00Z",
            "properties": {}
        })]
    );
}

#[test]
fn a_new_agent_is_not_a_customer() {
    let mut event = json_of("user-created.json");
    event["detail"]["role"] = json!("agent");
    assert_eq!(
        ignored(&serde_json::to_vec(&event).expect("JSON")),
        "no mapping for this event (/type: zen:event-type:user.created, /detail/role: agent)"
    );
}

#[test]
fn unmapped_events_are_ignored_with_their_type() {
    let mut event = json_of("ticket-created.json");
    event["type"] = json!("zen:event-type:ticket.priority_changed");
    assert_eq!(
        ignored(&serde_json::to_vec(&event).expect("JSON")),
        "no mapping for this event (/type: zen:event-type:ticket.priority_changed)"
    );
}

#[test]
fn a_ticket_without_a_requester_is_ignored_with_the_missing_field() {
    let mut event = json_of("ticket-created.json");
    event["detail"].as_object_mut().expect("an object").remove("requester_id");
    assert_eq!(
        ignored(&serde_json::to_vec(&event).expect("JSON")),
        "missing /detail/requester_id in mapping ticket_created"
    );
}

/// Zendesk's documented algorithm: `X-Zendesk-Webhook-Signature` = base64(HMAC-SHA256(signing
/// secret, timestamp + body)). Zendesk publishes no example vector; this one was computed with
/// Python's `hmac` over the fixture (independent of our code).
#[test]
fn a_signed_ticket_verifies_and_a_tampered_or_stale_one_does_not() {
    const SECRET: &str = "zendesk-pyramid-test-secret";
    const TIMESTAMP: &str = "2019-05-20T22:55:31Z";
    const SIGNATURE: &str = "E7Th7c9Lwj+hTkK1r3enJdvLlOIbHv9Z252grvmL0gk=";
    let signed_at = Timestamp::parse_rfc3339(TIMESTAMP).expect("a time");
    let verify = |body: &[u8], now: Timestamp| {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-zendesk-webhook-signature", http::HeaderValue::from_static(SIGNATURE));
        headers.insert("x-zendesk-webhook-signature-timestamp", http::HeaderValue::from_static(TIMESTAMP));
        zendesk().verify(
            &Delivery {
                headers: &headers,
                query: &[],
                body,
            },
            Some(SECRET),
            now,
        )
    };
    let body = fixture("ticket-created.json");
    assert_eq!(verify(&body, signed_at), Ok(()));
    let tampered = String::from_utf8(body.clone()).expect("text").replace("20978392", "20978393");
    assert_ne!(tampered.as_bytes(), body, "the edit took");
    assert_eq!(
        verify(tampered.as_bytes(), signed_at).expect_err("tampered").header,
        "X-Zendesk-Webhook-Signature"
    );
    assert_eq!(
        verify(&body, signed_at.plus_millis(301_000)).expect_err("stale").header,
        "X-Zendesk-Webhook-Signature-Timestamp"
    );
}
