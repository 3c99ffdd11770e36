//! nudge: what marketing tools receive, and what they never receive twice.

use crate::{held_out_email, treated_email};
use engagement::events::{DomainEvent, LEVEL_CHANGED};
use engagement::Level;
use engagement_e2e::{interaction, Stack};
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
    let stack = Stack::start(now).await;
    let email = treated_email("ivy", &["endorser_to_sponsor"]);
    // She subscribes (consent on email) and gives a testimonial, in one request.
    let batch = json!({"interactions": [
        interaction("t-0", &email, "newsletter_subscribed", now),
        interaction("t-1", &email, "testimonial_given", now),
    ]});
    stack.http("POST", "/v1/interactions", batch).await;
    stack.clock.set(now.plus_millis(1_000));
    let recorded = stack.take_events().await;
    let outcome = stack
        .rescore
        .handle(&recorded[0])
        .await
        .expect("rescored")
        .expect("a known customer");
    assert_eq!(outcome.level, Level::Endorsing);
    let changed = stack.take_events().await;
    let level_changed = changed.iter().find(|e| e.detail_type() == LEVEL_CHANGED).expect("Level Changed");

    let first = stack.nudge.handle(level_changed).await.expect("nudged");
    let second = stack.nudge.handle(level_changed).await.expect("nudged again");
    assert!(first[0].new);
    assert!(!second[0].new, "the redelivery is recognized");
    assert_eq!(first[0].nudge_id, second[0].nudge_id);

    let customer_id = level_changed.customer_id();
    let view = stack.http("GET", &format!("/v1/customers/{customer_id}"), Value::Null).await;
    let invitations = view.body["nudges"]
        .as_array()
        .expect("nudges")
        .iter()
        .filter(|n| n["action"] == "invite_as_event_guest")
        .count();
    assert_eq!(invitations, 1, "recorded once");
    // A redelivery may publish the request again, always with the same nudge_id (EventBridge
    // targets are at-least-once; receivers deduplicate on it).
    let published = requested(&stack.take_events().await);
    assert!(!published.is_empty());
    assert!(published.iter().all(|(id, _)| *id == first[0].nudge_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_consent_or_in_the_holdout_a_step_is_recorded_with_its_reason_and_not_sent() {
    let now = at("2026-05-04T10:00:00Z");
    let stack = Stack::start(now).await;
    // An advocate on a social network, with no email identity or consent.
    let social = json!({"id": "s-1", "source": "e2e", "customer": {"channel": "twitter", "handle": "@zoe"}, "kind": "testimonial_given", "occurred_at": now.to_rfc3339()});
    let held = held_out_email("hal", "endorser_to_sponsor");
    stack.http("POST", "/v1/interactions", social).await;
    let batch = json!({"interactions": [
        interaction("s-2", &held, "newsletter_subscribed", now),
        interaction("s-3", &held, "testimonial_given", now),
    ]});
    stack.http("POST", "/v1/interactions", batch).await;
    stack.clock.set(now.plus_millis(1_000));
    let events = stack.deliver().await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, DomainEvent::NudgeRequested(n) if n.playbook == "endorser_to_sponsor")),
        "{events:?}"
    );

    let zoe = stack
        .http("GET", "/v1/customers/by-identity?channel=twitter&handle=zoe", Value::Null)
        .await;
    assert_eq!(zoe.body["level"], "endorsing");
    let nudge = &zoe.body["nudges"][0];
    assert_eq!((&nudge["outcome"], &nudge["reason"]), (&json!("suppressed"), &json!("no_consent")));

    let hal = stack
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

fn step<'a>(outcomes: &'a Value, playbook: &str, step: u64) -> &'a Value {
    outcomes["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["playbook"] == playbook && s["step"] == step)
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rise_after_a_sent_nudge_counts_once_toward_its_step() {
    let now = at("2026-05-04T10:00:00Z");
    let stack = Stack::start(now).await;
    let email = treated_email("kai", &["endorser_to_sponsor"]);
    let batch = json!({"interactions": [
        interaction("r-0", &email, "newsletter_subscribed", now),
        interaction("r-1", &email, "testimonial_given", now),
    ]});
    stack.http("POST", "/v1/interactions", batch).await;
    stack.deliver().await;
    let outcomes = stack.http("GET", "/v1/nudges/outcomes", Value::Null).await;
    let invitation = step(&outcomes.body, "endorser_to_sponsor", 1);
    assert_eq!(invitation["action"], "invite_as_event_guest");
    assert_eq!((&invitation["sent"], &invitation["sent_moved_up"]), (&json!(1), &json!(0)));

    // Ten days later she comes to two events: she rises to contributing, after the invitation.
    let later = now.plus_days(10.0);
    stack.clock.set(later);
    let batch = json!({"interactions": [
        interaction("r-2", &email, "event_attended", later),
        interaction("r-3", &email, "event_attended", later.plus_millis(60_000)),
    ]});
    stack.http("POST", "/v1/interactions", batch).await;
    let delivered = stack.deliver().await;
    let rise = delivered
        .iter()
        .find(|e| matches!(e, DomainEvent::LevelChanged(c) if c.to == engagement::Level::Contributing))
        .expect("a rise to contributing")
        .clone();
    let outcomes = stack.http("GET", "/v1/nudges/outcomes", Value::Null).await;
    assert_eq!(step(&outcomes.body, "endorser_to_sponsor", 1)["sent_moved_up"], 1);

    // The same Level Changed delivered again counts nothing more.
    stack.nudge.on_event(&rise).await.expect("nudged again");
    let again = stack.http("GET", "/v1/nudges/outcomes", Value::Null).await;
    assert_eq!(
        step(&again.body, "endorser_to_sponsor", 1),
        step(&outcomes.body, "endorser_to_sponsor", 1)
    );
    assert_eq!(again.body["attribution_days"], 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_recorded_in_part_is_completed_when_delivered_again() {
    // Two playbooks start on a complaint. A run that recorded the first and failed before the
    // second leaves the state that the shipped rules (service recovery alone) leave: the same
    // trigger, decided for one of its playbooks only.
    let both = format!(
        "{}\n[[playbooks]]\nname = \"complaint_follow_up\"\ntrigger = {{ interaction = \"complaint_opened\" }}\ncool_down_days = 0\nholdout_percent = 0\n[[playbooks.steps]]\naction = \"call_back_within_a_day\"\nchannel = \"email\"\noutcome = [\"complaint_resolved\"]\n",
        include_str!("../../../../shared/rules/default.toml")
    );
    let now = at("2026-05-04T10:00:00Z");
    let stack = Stack::start_with(now, engagement::Rules::from_toml(&both).expect("valid rules")).await;
    let interrupted = nudge::Nudger {
        store: stack.nudge.store.clone(),
        bus: stack.nudge.bus.clone(),
        clock: stack.clock.clone(),
        rules: std::sync::Arc::new(engagement::Rules::default_rules()),
    };
    let batch = json!({"interactions": [
        interaction("pc-0", "una@example.com", "newsletter_subscribed", now),
        interaction("pc-1", "una@example.com", "complaint_opened", now),
    ]});
    stack.http("POST", "/v1/interactions", batch).await;
    let recorded = stack
        .take_events()
        .await
        .into_iter()
        .find(|e| matches!(e, DomainEvent::InteractionRecorded(_)))
        .expect("Interaction Recorded");
    let first = interrupted.on_event(&recorded).await.expect("decided in part");
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].decision.playbook, "service_recovery");

    // Delivered again, later: the missing playbook is decided, the recorded one is not repeated.
    stack.clock.set(now.plus_millis(60_000));
    let again = stack.nudge.on_event(&recorded).await.expect("completed");
    let summary: Vec<(&str, bool)> = again.iter().map(|d| (d.decision.playbook.as_str(), d.new)).collect();
    assert_eq!(summary, [("service_recovery", false), ("complaint_follow_up", true)]);
    let requests = requested(&stack.take_events().await);
    let actions: Vec<&str> = requests.iter().map(|(_, action)| action.as_str()).collect();
    assert!(actions.contains(&"call_back_within_a_day"), "{actions:?}");
    // And once complete, another delivery decides nothing new.
    let third = stack.nudge.on_event(&recorded).await.expect("redelivered");
    assert!(third.iter().all(|d| !d.new), "{third:?}");
    let customer_id = recorded.customer_id().to_string();
    let view = stack.http("GET", &format!("/v1/customers/{customer_id}"), Value::Null).await;
    let mut playbooks: Vec<&str> = view.body["nudges"]
        .as_array()
        .expect("nudges")
        .iter()
        .map(|n| n["playbook"].as_str().unwrap_or_default())
        .collect();
    playbooks.sort_unstable();
    assert_eq!(playbooks, ["complaint_follow_up", "service_recovery"], "each recorded once");
}
