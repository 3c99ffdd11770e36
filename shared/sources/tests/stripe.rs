//! The shipped Stripe source on Stripe's own fixtures (stripe/openapi `fixtures3.json`, see
//! `fixtures/stripe/PROVENANCE.md`): each mapped event gives exactly these interactions, which
//! ingest accepts under the default rules; other events are ignored with the reason.

mod common;

use engagement::Timestamp;
use engagement_sources::{Delivery, Mapped, Scheme, Source};
use serde_json::{json, Value};

const RECEIVED: &str = "2026-06-01T12:00:00Z";

fn stripe() -> Source {
    common::builtin("stripe")
}

fn fixture(name: &str) -> Vec<u8> {
    common::fixture("stripe", name)
}

fn json_of(name: &str) -> Value {
    common::json_fixture("stripe", name)
}

fn map(body: &[u8]) -> Mapped {
    common::map(&stripe(), &http::HeaderMap::new(), body, common::at(RECEIVED))
}

/// The interactions of a delivery, checked to pass ingest's own validation under the default
/// rules (so the kinds exist and every field is within bounds).
fn interactions(body: &[u8]) -> Vec<Value> {
    let (interactions, _) = common::interactions_of(map(body));
    common::assert_ingest_accepts(&interactions, common::at(RECEIVED));
    interactions
}

#[test]
fn stripe_uses_the_stripe_scheme() {
    assert_eq!(stripe().scheme(), Scheme::Stripe);
}

#[test]
fn a_completed_guest_checkout_is_a_purchase_by_its_email() {
    assert_eq!(
        interactions(&fixture("checkout.session.completed.json")),
        [json!({
            "id": "stripe:checkout_session:cs_test_a1YS1URlnyQCN5fUUduORoQ7Pw41PJqDWkIVQCpJPqkfIhd6tVY8XB1OLY:completed:customer",
            "source": "stripe",
            "customer": {"channel": "email", "handle": "example@example.com"},
            "kind": "stripe.checkout_completed",
            "occurred_at": "2009-02-13T23:31:30Z",
            "properties": {"payment_status": "unpaid"}
        })]
    );
}

#[test]
fn a_checkout_by_a_stripe_customer_links_the_customer_id_to_the_email() {
    let mut event = json_of("checkout.session.completed.json");
    event["data"]["object"]["customer"] = json!("cus_QXg1o8vcGmoR32");
    event["data"]["object"]["customer_details"]["name"] = json!("Jenny Rosen");
    event["data"]["object"]["amount_total"] = json!(2000);
    event["data"]["object"]["currency"] = json!("usd");
    let found = interactions(&serde_json::to_vec(&event).expect("JSON"));
    assert_eq!(
        found[0]["customer"],
        json!({
            "channel": "email",
            "handle": "example@example.com",
            "also": [{"channel": "stripe", "handle": "cus_QXg1o8vcGmoR32"}],
            "name": "Jenny Rosen"
        })
    );
    assert_eq!(
        found[0]["properties"],
        json!({"amount_total": 2000, "currency": "usd", "payment_status": "unpaid"})
    );
}

#[test]
fn a_subscription_checkout_is_left_to_its_invoice_and_subscription_events() {
    let mut event = json_of("checkout.session.completed.json");
    event["data"]["object"]["mode"] = json!("subscription");
    match map(&serde_json::to_vec(&event).expect("JSON")) {
        Mapped::Ignored { reason, delivery_id } => {
            assert_eq!(
                reason,
                "no mapping for this event (/data/object/mode: subscription, /type: checkout.session.completed)"
            );
            assert_eq!(delivery_id.as_deref(), Some("evt_1Pgc76B7WZ01zgkWwyRHS12y"));
        }
        other => panic!("expected ignored, got {other:?}"),
    }
}

#[test]
fn a_paid_invoice_is_money_spent_by_the_stripe_customer() {
    assert_eq!(
        interactions(&fixture("invoice.paid.json")),
        [json!({
            "id": "stripe:invoice:in_1Pgc6tB7WZ01zgkWu9fdqL6I:paid:customer",
            "source": "stripe",
            "customer": {"channel": "stripe", "handle": "cus_QXg1o8vcGmoR32"},
            "kind": "stripe.invoice_paid",
            "occurred_at": "2009-02-13T23:31:30Z",
            "properties": {"amount_paid": 0, "currency": "usd", "billing_reason": "manual"}
        })]
    );
}

#[test]
fn an_invoice_with_the_customers_email_links_it() {
    let mut event = json_of("invoice.paid.json");
    event["data"]["object"]["customer_email"] = json!("jenny.rosen@example.com");
    event["data"]["object"]["customer_name"] = json!("Jenny Rosen");
    let found = interactions(&serde_json::to_vec(&event).expect("JSON"));
    assert_eq!(
        found[0]["customer"],
        json!({
            "channel": "stripe",
            "handle": "cus_QXg1o8vcGmoR32",
            "also": [{"channel": "email", "handle": "jenny.rosen@example.com"}],
            "name": "Jenny Rosen"
        })
    );
}

#[test]
fn a_subscription_started_and_cancelled() {
    assert_eq!(
        interactions(&fixture("customer.subscription.created.json")),
        [json!({
            "id": "stripe:subscription:sub_1Pgc6rB7WZ01zgkWNy0Cn5nw:started:customer",
            "source": "stripe",
            "customer": {"channel": "stripe", "handle": "cus_QXg1o8vcGmoR32"},
            "kind": "stripe.subscription_started",
            "occurred_at": "2009-02-13T23:31:30Z",
            "properties": {"status": "active", "currency": "usd"}
        })]
    );
    assert_eq!(
        interactions(&fixture("customer.subscription.deleted.json")),
        [json!({
            "id": "stripe:subscription:sub_1Pgc6rB7WZ01zgkWNy0Cn5nw:cancelled:customer",
            "source": "stripe",
            "customer": {"channel": "stripe", "handle": "cus_QXg1o8vcGmoR32"},
            "kind": "stripe.subscription_cancelled",
            "occurred_at": "2009-02-13T23:31:30Z",
            "properties": {"currency": "usd"}
        })]
    );
}

/// Two endpoints (or a retry) receiving one event record one fact: the id is the object's.
#[test]
fn the_same_event_maps_to_the_same_interaction_whatever_the_delivery() {
    let mut resent = json_of("invoice.paid.json");
    resent["pending_webhooks"] = json!(3);
    resent["request"] = json!({"id": "req_other", "idempotency_key": null});
    assert_eq!(
        interactions(&fixture("invoice.paid.json")),
        interactions(&serde_json::to_vec(&resent).expect("JSON"))
    );
}

#[test]
fn unmapped_events_are_ignored_with_their_type() {
    let mut event = json_of("invoice.paid.json");
    event["type"] = json!("invoice.finalized");
    let reason = common::ignored_reason(map(&serde_json::to_vec(&event).expect("JSON")));
    assert_eq!(reason, "no mapping for this event (/type: invoice.finalized)");
}

#[test]
fn an_invoice_without_a_customer_is_ignored_with_the_missing_field() {
    let mut event = json_of("invoice.paid.json");
    event["data"]["object"]["customer"] = Value::Null;
    let reason = common::ignored_reason(map(&serde_json::to_vec(&event).expect("JSON")));
    assert_eq!(reason, "missing /data/object/customer in mapping invoice_paid");
}

/// The fixture as Stripe would sign it: `t=…,v1=hex(HMAC-SHA256(secret, "t.body"))`. The vector
/// was computed with Python's `hmac` (independent of our code); the SDK-made vectors are in
/// `fixtures/signatures.json`.
#[test]
fn a_signed_invoice_delivery_verifies_and_a_tampered_one_does_not() {
    const SECRET: &str = "whsec_pyramid_test_secret";
    const HEADER: &str = "t=1234567900,v1=f8b4652ba80f8a494846c2207cc51747698ea072ff9bd55493f653bb7bfbd160";
    let verify = |body: &[u8]| {
        let mut headers = http::HeaderMap::new();
        headers.insert("stripe-signature", http::HeaderValue::from_static(HEADER));
        stripe().verify(
            &Delivery {
                headers: &headers,
                query: &[],
                body,
            },
            Some(SECRET),
            Timestamp(1_234_567_900_000),
        )
    };
    let body = fixture("invoice.paid.json");
    assert_eq!(verify(&body), Ok(()));
    let tampered = String::from_utf8(body.clone())
        .expect("text")
        .replace("\"amount_paid\": 0", "\"amount_paid\": 1");
    assert_ne!(tampered.as_bytes(), body, "the edit took");
    assert_eq!(verify(tampered.as_bytes()).expect_err("tampered").header, "Stripe-Signature");
}
