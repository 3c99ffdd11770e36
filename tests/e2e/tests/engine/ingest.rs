//! ingest, as a client of `POST /v1/interactions` sees it.

use engagement::events::DomainEvent;
use engagement_e2e::{interaction, Stack};
use engagement_testkit::at;
use serde_json::{json, Value};

fn statuses(body: &Value) -> Vec<&str> {
    body["interactions"]
        .as_array()
        .expect("outcomes")
        .iter()
        .map(|o| o["status"].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_recorded_in_order_and_announced_once_per_customer() {
    let now = at("2026-04-01T12:00:00Z");
    let stack = Stack::start(now).await;
    let batch = json!({"interactions": [
        interaction("b-1", "ana@example.com", "page_viewed", now),
        interaction("b-2", "ben@example.com", "newsletter_subscribed", now),
        interaction("b-3", "ANA@example.com ", "email_clicked", now),
    ]});
    let answer = stack.http("POST", "/v1/interactions", batch).await;
    assert_eq!((answer.status, answer.content_type.as_str()), (202, "application/json"));
    assert_eq!(statuses(&answer.body), ["recorded", "recorded", "recorded"]);
    let ids: Vec<&str> = answer.body["interactions"]
        .as_array()
        .expect("outcomes")
        .iter()
        .map(|o| o["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids, ["b-1", "b-2", "b-3"]);
    assert_eq!(
        answer.body["interactions"][0]["customer_id"], answer.body["interactions"][2]["customer_id"],
        "the handle is normalized: one customer"
    );
    let events = stack.take_events().await;
    let recorded: Vec<(String, Vec<String>)> = events
        .iter()
        .map(|e| match e {
            DomainEvent::InteractionRecorded(r) => (r.customer_id.to_string(), r.kinds.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert!(recorded.iter().any(|(_, kinds)| kinds == &["page_viewed", "email_clicked"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_item_rejects_the_request_with_every_problem_and_writes_nothing() {
    let now = at("2026-04-01T12:00:00Z");
    let stack = Stack::start(now).await;
    let mut late = interaction("v-2", "cy@example.com", "page_viewed", now);
    late["occurred_at"] = json!("yesterday");
    let mut anonymous = interaction("v-3", "dee@example.com", "page_viewed", now);
    anonymous["customer"] = json!({"channel": "email"});
    let batch = json!({"interactions": [interaction("v-1", "bo@example.com", "page_viewed", now), late, anonymous]});
    let answer = stack.http("POST", "/v1/interactions", batch).await;
    assert_eq!((answer.status, answer.content_type.as_str()), (400, "application/problem+json"));
    assert_eq!(answer.body["status"], 400);
    let paths: Vec<&str> = answer.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["path"].as_str().unwrap_or_default())
        .collect();
    assert!(paths.contains(&"interactions[1].occurred_at"), "{paths:?}");
    assert!(paths.contains(&"interactions[2].customer.handle"), "{paths:?}");
    assert!(answer.body["errors"][0]["reason"].as_str().is_some_and(|r| !r.is_empty()));
    // The valid first item was not written either.
    let lookup = stack
        .http("GET", "/v1/customers/by-identity?channel=email&handle=bo@example.com", Value::Null)
        .await;
    assert_eq!(lookup.status, 404);
    assert!(stack.take_events().await.is_empty());
    let retry = stack
        .http("POST", "/v1/interactions", interaction("v-1", "bo@example.com", "page_viewed", now))
        .await;
    assert_eq!(statuses(&retry.body), ["recorded"], "not a duplicate: nothing was written before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_changes_nothing_and_a_conflict_is_reported() {
    let now = at("2026-04-01T12:00:00Z");
    let stack = Stack::start(now).await;
    let first = interaction("d-1", "eve@example.com", "forum_posted", now);
    assert_eq!(
        statuses(&stack.http("POST", "/v1/interactions", first.clone()).await.body),
        ["recorded"]
    );
    stack.take_events().await;
    let again = stack.http("POST", "/v1/interactions", first).await;
    assert_eq!((again.status, statuses(&again.body)), (202, vec!["duplicate"]));
    let changed = stack
        .http(
            "POST",
            "/v1/interactions",
            interaction("d-1", "eve@example.com", "forum_answered", now),
        )
        .await;
    assert_eq!(statuses(&changed.body), ["conflict"]);
    assert!(stack.take_events().await.is_empty(), "neither is announced");
    let customer_id = again.body["interactions"][0]["customer_id"].as_str().expect("an id");
    let view = stack.http("GET", &format!("/v1/customers/{customer_id}"), Value::Null).await;
    let kinds: Vec<&str> = view.body["interactions"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["forum_posted"], "stored once, as first sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_requests_get_problems_naming_what_is_wrong() {
    let now = at("2026-04-01T12:00:00Z");
    let stack = Stack::start(now).await;
    let text = stack
        .http_raw("POST", "/v1/interactions", Some("id=1"), "application/x-www-form-urlencoded")
        .await;
    assert_eq!((text.status, text.content_type.as_str()), (415, "application/problem+json"));
    assert_eq!(text.body["errors"][0]["path"], "header.content-type");
    let broken = stack
        .http_raw("POST", "/v1/interactions", Some("{\"id\": "), "application/json")
        .await;
    assert_eq!(broken.status, 400);
    assert!(
        broken.body["detail"].as_str().is_some_and(|d| d.contains("not valid JSON")),
        "{:?}",
        broken.body
    );
    let listing = stack.http("GET", "/v1/interactions", Value::Null).await;
    assert_eq!((listing.status, listing.content_type.as_str()), (405, "application/problem+json"));
    let future = stack
        .http(
            "POST",
            "/v1/interactions",
            interaction("f-1", "fay@example.com", "page_viewed", now.plus_days(1.0)),
        )
        .await;
    assert_eq!(future.body["errors"][0]["path"], "occurred_at");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_identity_is_accepted_but_not_stored() {
    let now = at("2026-04-01T12:00:00Z");
    let stack = Stack::start(now).await;
    let first = stack
        .http(
            "POST",
            "/v1/interactions",
            interaction("e-1", "gus@example.com", "page_viewed", now),
        )
        .await;
    let customer_id = first.body["interactions"][0]["customer_id"].as_str().expect("an id").to_string();
    assert_eq!(
        stack
            .http("DELETE", &format!("/v1/customers/{customer_id}"), Value::Null)
            .await
            .status,
        204
    );
    stack.take_events().await;
    let later = stack
        .http(
            "POST",
            "/v1/interactions",
            interaction("e-2", "Gus@Example.com", "page_viewed", now),
        )
        .await;
    assert_eq!((later.status, statuses(&later.body)), (202, vec!["erased"]));
    assert!(later.body["interactions"][0].get("customer_id").is_none());
    assert!(stack.take_events().await.is_empty());
    let lookup = stack
        .http("GET", "/v1/customers/by-identity?channel=email&handle=gus@example.com", Value::Null)
        .await;
    assert_eq!(lookup.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_bus_is_down_the_interaction_is_kept_and_its_triggers_follow_once_the_bus_is_back() {
    let now = at("2026-04-01T12:00:00Z");
    let stack = Stack::start_without_bus(now).await;
    let batch = json!({"interactions": [
        interaction("p-1", "hal@example.com", "newsletter_subscribed", now),
        interaction("p-2", "hal@example.com", "complaint_opened", now),
    ]});
    let answer = stack.http("POST", "/v1/interactions", batch).await;
    assert_eq!((answer.status, statuses(&answer.body)), (202, vec!["recorded", "recorded"]));
    let customer_id = answer.body["interactions"][0]["customer_id"].as_str().expect("an id").to_string();
    stack.clock.set(now.plus_millis(60_000));
    // The schedule finds the customer due, decides, and (the bus still down) keeps the events in
    // the outbox; the level is stored all the same.
    let _ = stack
        .rescore
        .sweep(100, || true)
        .await
        .expect_err("the Level Changed event cannot be published yet");
    let view = stack.http("GET", &format!("/v1/customers/{customer_id}"), Value::Null).await;
    assert_eq!(view.body["level"], "following");
    let listed = stack.http("GET", "/v1/customers?level=following", Value::Null).await;
    assert_eq!(listed.body["customers"][0]["id"], customer_id.as_str());

    // The bus is back: the next schedule publishes what was kept, and the complaint is answered
    // by the service-recovery playbook, once.
    stack.bring_bus_back().await;
    stack.clock.set(now.plus_millis(120_000));
    stack.schedule().await;
    let delivered = stack.deliver().await;
    let recoveries = |events: &[DomainEvent]| {
        events
            .iter()
            .filter(|e| matches!(e, DomainEvent::NudgeRequested(n) if n.playbook == "service_recovery"))
            .count()
    };
    assert_eq!(recoveries(&delivered), 1, "{delivered:?}");
    assert!(delivered.iter().any(|e| matches!(e, DomainEvent::LevelChanged(_))));
    stack.clock.set(now.plus_millis(180_000));
    let again = stack.schedule().await;
    assert_eq!(again.published, 0, "the outbox is empty: {again:?}");
    assert_eq!(recoveries(&stack.deliver().await), 0);
}
