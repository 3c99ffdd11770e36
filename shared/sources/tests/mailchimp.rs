//! The shipped Mailchimp source over Mailchimp's documented webhook bodies (form-encoded, as
//! Mailchimp posts them; fixtures/mailchimp, see PROVENANCE.md): subscribe grants e-mail
//! consent, unsubscribe and cleaned withdraw it, a profile update is attention. Mailchimp signs
//! nothing: the callback URL's `secret` parameter is the check.

mod common;

use engagement::{ConsentEffect, Timestamp};
use engagement_sources::{Delivery, Mapped, Source};
use http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};

const SECRET: &str = "a long random mailchimp url secret";

fn received_at() -> Timestamp {
    common::at("2026-04-01T09:00:00Z")
}

fn source() -> Source {
    common::builtin("mailchimp")
}

fn fixture(name: &str) -> Vec<u8> {
    common::fixture("mailchimp", name)
}

fn form_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/x-www-form-urlencoded"));
    headers
}

fn with_secret() -> Vec<(String, String)> {
    vec![("secret".to_string(), SECRET.to_string())]
}

fn deliver_at(body: &[u8], received_at: Timestamp) -> Mapped {
    let headers = form_headers();
    let query = with_secret();
    let delivery = Delivery {
        headers: &headers,
        query: &query,
        body,
    };
    common::verify_and_map(&source(), &delivery, SECRET, received_at)
}

fn deliver(body: &[u8]) -> Mapped {
    deliver_at(body, received_at())
}

struct Expected {
    kind: &'static str,
    id: &'static str,
    handle: &'static str,
    name: Option<&'static str>,
    occurred_at: &'static str,
    properties: Value,
    consent: Option<ConsentEffect>,
}

/// The one interaction a body maps to, field by field, and that ingest accepts it under the
/// default rules.
fn assert_maps_to(mapped: Mapped, expected: Expected) {
    let (interactions, _) = common::interactions_of(mapped);
    assert_eq!(interactions.len(), 1, "{interactions:#?}");
    let wire = &interactions[0];
    assert_eq!(wire["source"], "mailchimp");
    assert_eq!(wire["kind"], expected.kind);
    assert_eq!(wire["id"], expected.id);
    // Ids are logged and shown: the address is in them only as its digest.
    assert!(
        !wire["id"].as_str().unwrap_or_default().contains('@'),
        "an e-mail address in the id"
    );
    assert_eq!(wire["customer"]["channel"], "email");
    assert_eq!(wire["customer"]["handle"], expected.handle);
    assert_eq!(wire["customer"]["name"].as_str(), expected.name);
    common::assert_occurred_at(wire, expected.occurred_at);
    assert_eq!(wire.get("properties").cloned().unwrap_or(json!({})), expected.properties);
    common::assert_ingested_as(wire, expected.kind, expected.consent, received_at());
}

#[test]
fn a_subscribe_grants_email_consent() {
    assert_maps_to(
        deliver(&fixture("subscribe.txt")),
        Expected {
            kind: "mailchimp.subscribed",
            id: "mailchimp:a6b5da1054:subscribe:2009-03-26 21:35:57:d1b385a999bb716ef26424a2f026b6ac",
            handle: "api@mailchimp.com",
            name: Some("Mailchimp"),
            occurred_at: "2009-03-26T21:35:57Z",
            properties: json!({"list_id": "a6b5da1054"}),
            consent: Some(ConsentEffect::Grant),
        },
    );
}

#[test]
fn an_unsubscribe_withdraws_it() {
    assert_maps_to(
        deliver(&fixture("unsubscribe.txt")),
        Expected {
            kind: "mailchimp.unsubscribed",
            id: "mailchimp:a6b5da1054:unsubscribe:2009-03-26 21:40:57:a3102dcf06c4519b57da9bb060c58b3a",
            handle: "api+unsub@mailchimp.com",
            name: None,
            occurred_at: "2009-03-26T21:40:57Z",
            properties: json!({"list_id": "a6b5da1054", "action": "unsub", "reason": "manual"}),
            consent: Some(ConsentEffect::Withdraw),
        },
    );
}

#[test]
fn a_cleaned_address_withdraws_it_too() {
    assert_maps_to(
        deliver(&fixture("cleaned.txt")),
        Expected {
            kind: "mailchimp.cleaned",
            id: "mailchimp:a6b5da1054:cleaned:2009-03-26 22:01:00:5684ea8d121e3be0bad6b8fb1b757d6e",
            handle: "api+cleaned@mailchimp.com",
            name: None,
            occurred_at: "2009-03-26T22:01:00Z",
            properties: json!({"list_id": "a6b5da1054", "reason": "hard"}),
            consent: Some(ConsentEffect::Withdraw),
        },
    );
}

#[test]
fn a_profile_update_is_recorded_with_the_first_name() {
    assert_maps_to(
        deliver(&fixture("profile.txt")),
        Expected {
            kind: "mailchimp.profile_updated",
            id: "mailchimp:a6b5da1054:profile:2009-03-26 21:31:21:d1b385a999bb716ef26424a2f026b6ac",
            handle: "api@mailchimp.com",
            name: Some("MailChimp"),
            occurred_at: "2009-03-26T21:31:21Z",
            properties: json!({"list_id": "a6b5da1054"}),
            consent: None,
        },
    );
}

#[test]
fn a_redelivery_is_the_same_interaction() {
    // No event id in the body: type, audience, time and address make one, so Mailchimp's retry
    // an hour later is a duplicate rather than a second subscription.
    let body = fixture("subscribe.txt");
    assert_eq!(deliver(&body), deliver_at(&body, received_at().plus_millis(3_600_000)));
}

#[test]
fn events_without_a_mapping_are_ignored() {
    // Mailchimp's documented upemail example: an address change, not an engagement.
    let body = b"type=upemail&fired_at=2009-03-26+22%3A15%3A09&data%5Blist_id%5D=a6b5da1054&data%5Bnew_id%5D=51da8c3259&data%5Bnew_email%5D=api%2Bnew%40mailchimp.com&data%5Bold_email%5D=api%2Bold%40mailchimp.com";
    let reason = common::ignored_reason(deliver(body));
    assert!(reason.starts_with("no mapping for this event"), "{reason}");
    assert!(!reason.contains("mailchimp.com"), "no addresses in reasons: {reason}");
}

#[test]
fn the_url_secret_is_the_check() {
    let source = source();
    let body = fixture("subscribe.txt");
    let headers = form_headers();
    let verify = |query: &[(String, String)]| {
        source.verify(
            &Delivery {
                headers: &headers,
                query,
                body: &body,
            },
            Some(SECRET),
            received_at(),
        )
    };
    verify(&with_secret()).expect("the right secret");
    let wrong = verify(&[("secret".to_string(), "a guess".to_string())]).expect_err("a wrong secret is refused");
    assert_eq!(wrong.header, "secret");
    assert!(!format!("{wrong} {wrong:?}").contains(SECRET), "the secret never shows: {wrong:?}");
    let missing = verify(&[]).expect_err("no secret is refused");
    assert_eq!(missing.header, "secret");
}
