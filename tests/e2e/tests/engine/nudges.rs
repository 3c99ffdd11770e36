//! nudge: what marketing tools receive, and what they never receive twice.

use crate::{held_out_email, treated_email};
use engagement::events::{DomainEvent, LEVEL_CHANGED};
use engagement_e2e::{interaction, Engine};
use engagement_testkit::at;
use serde_json::{json, Value};

fn requested(events: &[DomainEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            DomainEvent::NudgeRequested(n) => Some((n.nudge_id.clone(), n.action.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_change_delivered_twice_yields_one_nudge() {
    let now = at("2026-05-04T10:00:00Z");
    let engine = Engine::start(now).await;
    let email = treated_email("ivy", &["endorser_to_sponsor"]);
    // She subscribes (consent on email) and gives a testimonial, in one request.
    let batch = json!({"interactions": [
        interaction("t-0", &email, "newsletter_subscribed", now),
        interaction("t-1", &email, "testimonial_given", now),
    ]});
    engine.http("POST", "/v1/interactions", batch).await;
    engine.clock.set(now.plus_millis(1_000));
    let recorded = engine.take_envelopes().await;
    let outcome = engine
        .rescore
        .handle(&recorded[0], || std::time::Duration::from_secs(60))
        .await
        .expect("rescored");
    assert_eq!(outcome["level"], "endorsing");
    let changed = engine.take_envelopes().await;
    let level_changed = changed.iter().find(|e| e.detail_type == LEVEL_CHANGED).expect("Level Changed");

    let first = engine.nudge.handle(level_changed).await.expect("nudged");
    let second = engine.nudge.handle(level_changed).await.expect("nudged again");
    assert_eq!(first["nudges"][0]["new"], true);
    assert_eq!(second["nudges"][0]["new"], false, "the redelivery is recognized");
    assert_eq!(first["nudges"][0]["nudge_id"], second["nudges"][0]["nudge_id"]);

    let customer_id = first["customer_id"].as_str().expect("an id");
    let view = engine.http("GET", &format!("/v1/customers/{customer_id}"), Value::Null).await;
    let invitations = view.body["nudges"]
        .as_array()
        .expect("nudges")
        .iter()
        .filter(|n| n["action"] == "invite_as_event_guest")
        .count();
    assert_eq!(invitations, 1, "recorded once");
    // A redelivery may publish the request again, always with the same nudge_id (EventBridge
    // targets are at-least-once; receivers deduplicate on it).
    let published = requested(&engine.take_events().await);
    assert!(!published.is_empty());
    assert!(published
        .iter()
        .all(|(id, _)| id == first["nudges"][0]["nudge_id"].as_str().unwrap_or_default()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_consent_or_in_the_holdout_a_step_is_recorded_with_its_reason_and_not_sent() {
    let now = at("2026-05-04T10:00:00Z");
    let engine = Engine::start(now).await;
    // An advocate on a social network, with no email identity or consent.
    let social = json!({"id": "s-1", "source": "e2e", "customer": {"channel": "twitter", "handle": "@zoe"}, "kind": "testimonial_given", "occurred_at": now.to_rfc3339()});
    let held = held_out_email("hal", "endorser_to_sponsor");
    engine.http("POST", "/v1/interactions", social).await;
    let batch = json!({"interactions": [
        interaction("s-2", &held, "newsletter_subscribed", now),
        interaction("s-3", &held, "testimonial_given", now),
    ]});
    engine.http("POST", "/v1/interactions", batch).await;
    engine.clock.set(now.plus_millis(1_000));
    let events = engine.deliver().await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, DomainEvent::NudgeRequested(n) if n.playbook == "endorser_to_sponsor")),
        "{events:?}"
    );

    let zoe = engine
        .http("GET", "/v1/customers/by-identity?channel=twitter&handle=zoe", Value::Null)
        .await;
    assert_eq!(zoe.body["level"], "endorsing");
    let nudge = &zoe.body["nudges"][0];
    assert_eq!((&nudge["outcome"], &nudge["reason"]), (&json!("suppressed"), &json!("no_consent")));

    let hal = engine
        .http(
            "GET",
            &format!("/v1/customers/by-identity?channel=email&handle={held}"),
            Value::Null,
        )
        .await;
    let nudge = hal.body["nudges"]
        .as_array()
        .expect("nudges")
        .iter()
        .find(|n| n["playbook"] == "endorser_to_sponsor")
        .expect("the decision is recorded");
    assert_eq!(nudge["outcome"], "held_out");
}
