//! The shipped Shopify source on Shopify's own SDK fixtures (shopify_python_api, see
//! `fixtures/shopify/PROVENANCE.md`): each mapped topic gives exactly these interactions, which
//! ingest accepts under the default rules; other topics are ignored with the reason.

mod common;

use engagement::{Rules, Timestamp};
use engagement_sources::{Delivery, Mapped, Scheme, Source};
use serde_json::{json, Value};

const RECEIVED: &str = "2026-06-01T12:00:00Z";
const WEBHOOK_ID: &str = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043";

fn shopify() -> Source {
    common::builtin("shopify")
}

fn fixture(name: &str) -> Vec<u8> {
    common::fixture("shopify", name)
}

fn received() -> Timestamp {
    common::at(RECEIVED)
}

fn headers(topic: &str) -> http::HeaderMap {
    common::headers(&[("x-shopify-topic", topic), ("x-shopify-webhook-id", WEBHOOK_ID)])
}

fn map(topic: &str, body: &[u8]) -> Mapped {
    common::map(&shopify(), &headers(topic), body, received())
}

/// The interactions of a delivery, checked to pass ingest's own validation under the default
/// rules.
fn interactions(topic: &str, body: &[u8]) -> Vec<Value> {
    let (interactions, delivery_id) = common::interactions_of(map(topic, body));
    assert_eq!(delivery_id.as_deref(), Some(WEBHOOK_ID));
    common::assert_ingest_accepts(&interactions, received());
    interactions
}

fn the_order() -> Value {
    json!({
        "id": "shopify:order:450789469:placed:customer",
        "source": "shopify",
        "customer": {
            "channel": "email",
            "handle": "bob.norman@hostmail.com",
            "also": [{"channel": "shopify", "handle": "207119551"}],
            "name": "Bob Norman"
        },
        "kind": "shopify.order_placed",
        "occurred_at": "2008-01-10T16:00:00Z",
        "properties": {"order": "#1001", "total_price": "409.94", "currency": "USD"}
    })
}

#[test]
fn shopify_signs_with_base64_hmac_sha256() {
    assert_eq!(shopify().scheme(), Scheme::HmacSha256);
}

#[test]
fn a_new_order_is_a_purchase_by_its_email_linked_to_the_shopify_customer() {
    assert_eq!(interactions("orders/create", &fixture("orders-create.json")), [the_order()]);
}

/// A shop that ticks both topics records the order once: the same id and the same content.
#[test]
fn a_paid_order_is_the_same_interaction_as_the_new_order() {
    assert_eq!(interactions("orders/paid", &fixture("orders-create.json")), [the_order()]);
}

#[test]
fn a_new_customer_is_observing_by_their_email() {
    assert_eq!(
        interactions("customers/create", &fixture("customers-create.json")),
        [json!({
            "id": "shopify:customer:207119551:created",
            "source": "shopify",
            "customer": {
                "channel": "email",
                "handle": "bob.norman@hostmail.com",
                "also": [{"channel": "shopify", "handle": "207119551"}]
            },
            "kind": "shopify.customer_created",
            "occurred_at": "2015-05-27T22:11:24Z",
            "properties": {"state": "disabled"}
        })]
    );
}

/// Today's payloads carry `email_marketing_consent` (the SDK fixture predates it): a customer who
/// opted in at sign-up also grants e-mail consent.
#[test]
fn a_new_customer_who_opted_in_to_email_marketing_also_subscribes() {
    let mut customer = common::json_fixture("shopify", "customers-create.json");
    customer["email_marketing_consent"] =
        json!({"state": "subscribed", "opt_in_level": "single_opt_in", "consent_updated_at": "2015-05-27T18:11:24-04:00"});
    let found = interactions("customers/create", &serde_json::to_vec(&customer).expect("JSON"));
    let kinds: Vec<&str> = found.iter().map(|i| i["kind"].as_str().expect("a kind")).collect();
    assert_eq!(kinds, ["shopify.customer_created", "shopify.marketing_subscribed"]);
    assert_eq!(
        found[1],
        json!({
            "id": "shopify:customer:207119551:marketing_subscribed",
            "source": "shopify",
            "customer": {
                "channel": "email",
                "handle": "bob.norman@hostmail.com",
                "also": [{"channel": "shopify", "handle": "207119551"}]
            },
            "kind": "shopify.marketing_subscribed",
            "occurred_at": "2015-05-27T22:11:24Z",
            "properties": {"opt_in_level": "single_opt_in"}
        })
    );
    let grants = Rules::default_rules()
        .kinds()
        .iter()
        .find(|k| k.name == "shopify.marketing_subscribed")
        .and_then(|k| k.consent);
    assert_eq!(grants, Some(engagement::ConsentEffect::Grant), "it grants consent on e-mail");
}

#[test]
fn other_topics_are_ignored_with_the_topic() {
    let (reason, delivery_id) = common::ignored_of(map("products/create", &fixture("orders-create.json")));
    // The reason names header values only when they look like event names, and the engine's
    // test for that does not admit the `/` of Shopify topics (yet).
    assert!(reason.starts_with("no mapping for this event"), "{reason}");
    assert_eq!(delivery_id.as_deref(), Some(WEBHOOK_ID));
}

#[test]
fn an_order_without_an_email_is_ignored_with_the_missing_field() {
    let mut order = common::json_fixture("shopify", "orders-create.json");
    order["email"] = json!("");
    let reason = common::ignored_reason(map("orders/create", &serde_json::to_vec(&order).expect("JSON")));
    assert_eq!(reason, "missing /email in mapping order_created");
}

/// Shopify's documented algorithm: `X-Shopify-Hmac-Sha256` = base64(HMAC-SHA256(client secret,
/// raw body)). Shopify publishes no example vector; this one was computed with Python's `hmac`
/// over the fixture (independent of our code).
#[test]
fn a_signed_order_verifies_and_a_tampered_one_does_not() {
    const SECRET: &str = "shpss_pyramid_test_secret";
    const SIGNATURE: &str = "5IWEl2Y1a0M07m6yvbMl/PUyO1hhZO1tTcN0UPyUmYc=";
    let verify = |body: &[u8]| {
        let mut headers = headers("orders/create");
        headers.insert("x-shopify-hmac-sha256", http::HeaderValue::from_static(SIGNATURE));
        shopify().verify(
            &Delivery {
                headers: &headers,
                query: &[],
                body,
            },
            Some(SECRET),
            received(),
        )
    };
    let body = fixture("orders-create.json");
    assert_eq!(verify(&body), Ok(()));
    let tampered = String::from_utf8(body.clone()).expect("text").replace("409.94", "4.94");
    assert_ne!(tampered.as_bytes(), body, "the edit took");
    assert_eq!(verify(tampered.as_bytes()).expect_err("tampered").header, "x-shopify-hmac-sha256");
}
