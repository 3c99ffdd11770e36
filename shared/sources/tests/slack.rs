//! The shipped Slack (Events API) source over Slack's own payloads (fixtures/slack, from
//! bolt-python's tests; see PROVENANCE.md): each maps to exactly the interactions the rules
//! expect, bots record nothing, the url_verification challenge is answered, and the v0 signature
//! is checked as Slack documents it. The vectors made by `slack_sdk` itself are checked with the
//! other SDK vectors (fixtures/signatures.json).

mod common;

use common::{hex, ignored_reason};
use engagement::{ConsentEffect, Timestamp};
use engagement_sources::{Delivery, Mapped, Source};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};
use sha2::Sha256;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn now() -> Timestamp {
    common::at("2026-04-01T09:00:00Z")
}

fn source() -> Source {
    common::builtin("slack")
}

fn fixture(name: &str) -> Vec<u8> {
    common::fixture("slack", name)
}

/// Slack's v0 scheme: `v0=` + hex HMAC-SHA256 of `v0:<timestamp>:<body>`.
fn slack_headers(secret: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("x-slack-request-timestamp", HeaderValue::from(timestamp));
    headers.insert(
        "x-slack-signature",
        HeaderValue::from_str(&format!("v0={}", hex(&mac.finalize().into_bytes()))).expect("a value"),
    );
    headers
}

fn deliver(body: &[u8]) -> Mapped {
    let headers = slack_headers(SECRET, now().millis() / 1000, body);
    let delivery = Delivery {
        headers: &headers,
        query: &[],
        body,
    };
    common::verify_and_map(&source(), &delivery, SECRET, now())
}

/// The one interaction a delivery maps to, field by field (times to the millisecond Slack's
/// microsecond `ts` allows), and that ingest accepts it under the default rules.
fn assert_maps_to(
    mapped: Mapped,
    kind: &str,
    id: &str,
    handle: &str,
    occurred_at_ms: i64,
    properties: Value,
    consent: Option<ConsentEffect>,
) {
    let (interactions, delivery_id) = common::interactions_of(mapped);
    assert!(delivery_id.is_some(), "the event_id is the delivery id");
    assert_eq!(interactions.len(), 1, "{interactions:#?}");
    let wire = &interactions[0];
    assert_eq!(wire["source"], "slack");
    assert_eq!(wire["kind"], kind);
    assert_eq!(wire["id"], id);
    assert_eq!(wire["customer"]["channel"], "slack");
    assert_eq!(wire["customer"]["handle"], handle);
    assert!(
        wire["customer"].get("name").is_none_or(Value::is_null),
        "Slack events carry no names"
    );
    let at = wire["occurred_at"]
        .as_str()
        .and_then(Timestamp::parse_rfc3339)
        .expect("an RFC 3339 time");
    assert!(
        (at.millis() - occurred_at_ms).abs() <= 1,
        "{} vs {occurred_at_ms}",
        wire["occurred_at"]
    );
    assert_eq!(wire.get("properties").cloned().unwrap_or(json!({})), properties);
    common::assert_ingested_as(wire, kind, consent, now());
}

#[test]
fn a_message_in_a_public_channel_credits_its_author() {
    assert_maps_to(
        deliver(&fixture("message_channels.json")),
        "slack.message_posted",
        "slack:message:C111:1596183880.004200",
        "W111",
        1_596_183_880_004,
        json!({"team": "T111", "channel": "C111"}),
        None,
    );
}

#[test]
fn a_reaction_credits_the_one_who_reacted() {
    assert_maps_to(
        deliver(&fixture("reaction_added.json")),
        "slack.reaction_added",
        "slack:reaction:C111:1599529504.000400:W111:heart_eyes",
        "W111",
        1_599_616_881_001,
        json!({"team": "T111", "channel": "C111", "reaction": "heart_eyes"}),
        None,
    );
}

#[test]
fn joining_a_public_channel_follows_with_consent_on_slack() {
    assert_maps_to(
        deliver(&fixture("member_joined_channel.json")),
        "slack.channel_joined",
        "slack:joined:C111:U999:1599616881",
        "U999",
        1_599_616_881_000,
        json!({"team": "T111", "channel": "C111"}),
        Some(ConsentEffect::Grant),
    );
}

#[test]
fn the_same_message_delivered_again_is_the_same_interaction() {
    let body = fixture("message_channels.json");
    assert_eq!(deliver(&body), deliver(&body));
}

#[test]
fn the_url_verification_challenge_is_answered() {
    assert_eq!(
        deliver(&fixture("url_verification.json")),
        Mapped::Challenge("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".into())
    );
}

#[test]
fn a_classic_bot_message_records_nothing() {
    // subtype "bot_message": no user posted it.
    let reason = ignored_reason(deliver(&fixture("message_classic_bot.json")));
    assert!(reason.starts_with("no mapping for this event") || reason == "bot", "{reason}");
}

#[test]
fn an_apps_bot_message_records_nothing() {
    // A message an app posted as its bot user: it has a `user`, and a `bot_id`.
    let reason = ignored_reason(deliver(&fixture("message_bot.json")));
    assert!(reason.starts_with("no mapping for this event") || reason == "bot", "{reason}");
}

#[test]
fn a_join_notice_is_not_a_message() {
    // Slack also posts "<@U999> has joined the channel" as a message with a user and a subtype.
    let mut value = common::json_fixture("slack", "message_channels.json");
    value["event"]["subtype"] = json!("channel_join");
    let reason = ignored_reason(deliver(&serde_json::to_vec(&value).expect("JSON")));
    assert!(reason.starts_with("no mapping for this event"), "{reason}");
}

#[test]
fn a_thread_reply_sent_to_the_channel_is_still_a_message() {
    let mut value = common::json_fixture("slack", "message_channels.json");
    value["event"]["subtype"] = json!("thread_broadcast");
    value["event"]["thread_ts"] = json!("1596183000.000100");
    assert_maps_to(
        deliver(&serde_json::to_vec(&value).expect("JSON")),
        "slack.message_posted",
        "slack:message:C111:1596183880.004200",
        "W111",
        1_596_183_880_004,
        json!({"team": "T111", "channel": "C111", "thread_ts": "1596183000.000100"}),
        None,
    );
}

#[test]
fn private_channels_and_direct_messages_are_not_community_activity() {
    for channel_type in ["group", "im", "mpim"] {
        let mut value = common::json_fixture("slack", "message_channels.json");
        value["event"]["channel_type"] = json!(channel_type);
        let reason = ignored_reason(deliver(&serde_json::to_vec(&value).expect("JSON")));
        assert!(reason.starts_with("no mapping for this event"), "{channel_type}: {reason}");
        assert!(!reason.contains("W111"), "no handles in reasons: {reason}");
    }
    let mut value = common::json_fixture("slack", "member_joined_channel.json");
    value["event"]["channel_type"] = json!("G");
    let reason = ignored_reason(deliver(&serde_json::to_vec(&value).expect("JSON")));
    assert!(reason.starts_with("no mapping for this event"), "{reason}");
}

#[test]
fn the_signature_is_slacks_v0_within_five_minutes() {
    let source = source();
    let body = fixture("message_channels.json");
    let now_s = now().millis() / 1000;
    let verify = |headers: &HeaderMap, body: &[u8]| source.verify(&Delivery { headers, query: &[], body }, Some(SECRET), now());
    verify(&slack_headers(SECRET, now_s, &body), &body).expect("Slack's own signature holds");
    verify(&slack_headers(SECRET, now_s - 299, &body), &body).expect("within the tolerance");

    let mut tampered = body.clone();
    tampered[body.len() / 2] ^= 1;
    assert!(
        verify(&slack_headers(SECRET, now_s, &body), &tampered).is_err(),
        "a tampered body is refused"
    );
    assert!(
        verify(&slack_headers("another secret", now_s, &body), &body).is_err(),
        "another secret is refused"
    );
    let stale = verify(&slack_headers(SECRET, now_s - 301, &body), &body).expect_err("a stale timestamp is refused");
    assert!(stale.header.eq_ignore_ascii_case("X-Slack-Request-Timestamp"), "{stale:?}");
}
