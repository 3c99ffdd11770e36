//! The shipped Discourse source over real deliveries (fixtures/discourse, see PROVENANCE.md):
//! each maps to exactly the interactions the rules expect, and Discourse's signature
//! (`X-Discourse-Event-Signature: sha256=<hex hmac-sha256(secret, body)>`) is checked as
//! Discourse documents it (Discourse ships no signing SDK).

mod common;

use common::{hex, ignored_reason};
use engagement::{ConsentEffect, Timestamp};
use engagement_sources::{Delivery, Mapped, Source};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};
use sha2::Sha256;

const SECRET: &str = "a discourse webhook secret";

fn received_at() -> Timestamp {
    common::at("2026-04-01T09:00:00Z")
}

fn source() -> Source {
    common::builtin("discourse")
}

fn fixture(name: &str) -> Vec<u8> {
    common::fixture("discourse", name)
}

/// Discourse's algorithm: `sha256=` + hex HMAC-SHA256 of the raw body, keyed by the secret.
fn discourse_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// The headers Discourse sent with the fixture, and its signature over `body`.
fn signed_headers(event: &str, body: &[u8]) -> HeaderMap {
    let sent = common::json_fixture("discourse", &format!("{event}.headers.json"));
    let sent: Vec<(&str, &str)> = sent
        .as_object()
        .expect("an object")
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str().expect("a string")))
        .collect();
    let mut headers = common::headers(&sent);
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert(
        "x-discourse-event-signature",
        HeaderValue::from_str(&discourse_signature(SECRET, body)).expect("a header value"),
    );
    headers
}

/// Verifies and maps a body sent with the headers of fixture `event`.
fn deliver(event: &str, body: &[u8]) -> Mapped {
    let headers = signed_headers(event, body);
    let delivery = Delivery {
        headers: &headers,
        query: &[],
        body,
    };
    common::verify_and_map(&source(), &delivery, SECRET, received_at())
}

struct Expected {
    kind: &'static str,
    id: &'static str,
    handle: &'static str,
    name: Option<&'static str>,
    also: &'static [(&'static str, &'static str)],
    occurred_at: &'static str,
    properties: Value,
    consent: Option<ConsentEffect>,
}

/// The one interaction a delivery maps to, field by field, and that ingest accepts it under the
/// default rules.
fn assert_maps_to(mapped: Mapped, delivery_id: &str, expected: Expected) {
    let (interactions, got_delivery_id) = common::interactions_of(mapped);
    assert_eq!(got_delivery_id.as_deref(), Some(delivery_id));
    assert_eq!(interactions.len(), 1, "{interactions:#?}");
    let wire = &interactions[0];
    assert_eq!(wire["source"], "discourse");
    assert_eq!(wire["kind"], expected.kind);
    assert_eq!(wire["id"], expected.id);
    assert_eq!(wire["customer"]["channel"], "discourse");
    assert_eq!(wire["customer"]["handle"], expected.handle);
    assert_eq!(wire["customer"]["name"].as_str(), expected.name);
    let also: Vec<(String, String)> = wire["customer"]["also"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|i| {
                    (
                        i["channel"].as_str().unwrap_or_default().to_string(),
                        i["handle"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let expected_also: Vec<(String, String)> = expected.also.iter().map(|(c, h)| (c.to_string(), h.to_string())).collect();
    assert_eq!(also, expected_also);
    common::assert_occurred_at(wire, expected.occurred_at);
    assert_eq!(wire.get("properties").cloned().unwrap_or(json!({})), expected.properties);
    common::assert_ingested_as(wire, expected.kind, expected.consent, received_at());
}

#[test]
fn a_new_forum_account_follows_with_its_email_linked() {
    let body = fixture("user_created.json");
    assert_maps_to(
        deliver("user_created", &body),
        "1",
        Expected {
            kind: "discourse.user_created",
            id: "discourse:user:1:created",
            handle: "angus",
            name: Some("Angus Power"),
            also: &[("email", "angus@test.com")],
            occurred_at: "2021-11-09T09:32:24.207Z",
            properties: json!({"user_id": 1}),
            consent: Some(ConsentEffect::Grant),
        },
    );
}

#[test]
fn a_new_topic_credits_its_author() {
    let body = fixture("topic_created.json");
    assert_maps_to(
        deliver("topic_created", &body),
        "83629",
        Expected {
            kind: "discourse.topic_created",
            id: "discourse:topic:31739:created",
            handle: "awarda",
            name: Some("Armin Warda"),
            also: &[],
            occurred_at: "2023-02-13T08:39:01.337Z",
            properties: json!({"topic_id": 31739, "category_id": 97}),
            consent: None,
        },
    );
}

#[test]
fn a_reply_credits_its_author() {
    let body = fixture("post_created.json");
    assert_maps_to(
        deliver("post_created", &body),
        "158765",
        Expected {
            kind: "discourse.post_created",
            id: "discourse:post:79563:created",
            handle: "darknao",
            name: Some("Francois Andrieu"),
            also: &[],
            occurred_at: "2023-02-09T10:19:46.324Z",
            properties: json!({"post_id": 79563, "topic_id": 46582, "post_number": 3, "category_id": 7}),
            consent: None,
        },
    );
}

#[test]
fn an_accepted_solution_credits_the_answers_author_at_the_answers_time() {
    let body = fixture("accepted_solution.json");
    assert_maps_to(
        deliver("accepted_solution", &body),
        "83528",
        Expected {
            kind: "discourse.solution_accepted",
            id: "discourse:post:127593:accepted",
            handle: "isudoajl",
            name: Some("isudoajl"),
            also: &[],
            occurred_at: "2023-02-12T15:43:44.749Z",
            properties: json!({"post_id": 127593, "topic_id": 31703, "category_id": 97}),
            consent: None,
        },
    );
}

#[test]
fn a_like_credits_the_one_who_liked_not_the_author() {
    let body = fixture("post_liked.json");
    assert_maps_to(
        deliver("post_liked", &body),
        "159033",
        Expected {
            kind: "discourse.post_liked",
            id: "discourse:like:79590:1605",
            handle: "t0xic0der",
            name: Some("Akashdeep Dhar"),
            also: &[],
            // A like carries no time of its own: the delivery's arrival.
            occurred_at: "2026-04-01T09:00:00Z",
            properties: json!({"post_id": 79590, "topic_id": 46632}),
            consent: None,
        },
    );
}

#[test]
fn a_redelivered_post_is_the_same_interaction() {
    let body = fixture("post_created.json");
    let source = source();
    let headers = signed_headers("post_created", &body);
    let first = common::map(&source, &headers, &body, received_at());
    let later = common::map(&source, &headers, &body, received_at().plus_millis(86_400_000));
    assert_eq!(first, later);
}

fn edited(fixture_name: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value = common::json_fixture("discourse", fixture_name);
    edit(&mut value);
    serde_json::to_vec(&value).expect("JSON")
}

#[test]
fn a_private_message_is_not_community_activity() {
    let body = edited("post_created.json", |v| v["post"]["topic_archetype"] = json!("private_message"));
    let reason = ignored_reason(deliver("post_created", &body));
    assert!(reason.starts_with("no mapping for this event"), "{reason}");
}

#[test]
fn a_small_action_post_is_not_a_post() {
    // Post type 3: "this topic was automatically closed" and the like.
    let body = edited("post_created.json", |v| v["post"]["post_type"] = json!(3));
    let reason = ignored_reason(deliver("post_created", &body));
    assert!(reason.starts_with("no mapping for this event"), "{reason}");
}

#[test]
fn a_topics_opening_post_is_not_counted_twice() {
    // Opening a topic sends topic_created and a post_created for post 1: the topic credits it.
    let body = edited("post_created.json", |v| v["post"]["post_number"] = json!(1));
    let reason = ignored_reason(deliver("post_created", &body));
    assert!(reason.starts_with("no mapping for this event"), "{reason}");
}

#[test]
fn discourses_own_accounts_are_bots() {
    for login in ["system", "discobot"] {
        let body = edited("post_created.json", |v| v["post"]["username"] = json!(login));
        assert_eq!(ignored_reason(deliver("post_created", &body)), "bot", "{login}");
    }
}

#[test]
fn a_staged_user_is_not_a_sign_up() {
    let body = edited("user_created.json", |v| v["user"]["staged"] = json!(true));
    let reason = ignored_reason(deliver("user_created", &body));
    assert!(reason.starts_with("no mapping for this event"), "{reason}");
}

#[test]
fn an_event_no_mapping_names_is_ignored_with_its_name() {
    let body = fixture("post_created.json");
    let mut headers = signed_headers("post_created", &body);
    headers.insert("x-discourse-event", HeaderValue::from_static("post_edited"));
    let reason = ignored_reason(common::map(&source(), &headers, &body, received_at()));
    assert!(reason.starts_with("no mapping for this event"), "{reason}");
    assert!(!reason.contains("darknao"), "no personal data in reasons: {reason}");
}

#[test]
fn the_signature_is_discourses_hex_hmac_of_the_body() {
    let source = source();
    let body = fixture("topic_created.json");
    let headers = signed_headers("topic_created", &body);
    let verify = |headers: &HeaderMap, body: &[u8], secret: &str| {
        source.verify(&Delivery { headers, query: &[], body }, Some(secret), received_at())
    };
    verify(&headers, &body, SECRET).expect("Discourse's own signature holds");

    let mut tampered = body.clone();
    tampered[body.len() / 2] ^= 1;
    let rejected = verify(&headers, &tampered, SECRET).expect_err("a tampered body is refused");
    assert!(rejected.header.eq_ignore_ascii_case("X-Discourse-Event-Signature"), "{rejected:?}");
    assert!(verify(&headers, &body, "another secret").is_err(), "another secret is refused");

    let mut unprefixed = headers.clone();
    let bare = discourse_signature(SECRET, &body).trim_start_matches("sha256=").to_string();
    unprefixed.insert("x-discourse-event-signature", HeaderValue::from_str(&bare).expect("a value"));
    assert!(
        verify(&unprefixed, &body, SECRET).is_err(),
        "Discourse always sends the sha256= prefix"
    );

    let mut unsigned = headers.clone();
    unsigned.remove("x-discourse-event-signature");
    let rejected = verify(&unsigned, &body, SECRET).expect_err("an unsigned delivery is refused");
    assert!(rejected.header.eq_ignore_ascii_case("X-Discourse-Event-Signature"), "{rejected:?}");
    let shown = format!("{rejected} {rejected:?}");
    assert!(
        !shown.contains(SECRET) && !shown.contains(&bare),
        "no secret or signature in errors: {shown}"
    );
}
