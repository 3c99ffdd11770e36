//! The seeds' story across all the functions: she subscribes, reviews us, is invited to an event
//! as a guest, comes, is asked to sponsor the next one; then a year of silence, and the schedule
//! warns before it demotes her.
//! (The figures behind "four requests" are printed by the second test: `cargo test -p engagement-e2e --test stack requests -- --nocapture`.)

use crate::treated_email;
use engagement::events::DomainEvent;
use engagement::{Direction, Level, Trigger};
use engagement_e2e::{interaction, Stack};
use engagement_testkit::at;
use serde_json::json;

fn nudges(events: &[DomainEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            DomainEvent::NudgeRequested(n) => Some((n.playbook.clone(), n.action.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endorser_is_invited_as_guest_then_asked_to_sponsor_then_warned_before_she_drops() {
    let start = at("2026-02-02T09:00:00Z");
    let stack = Stack::start(start).await;
    let maya = treated_email("maya", &["welcome_follower", "endorser_to_sponsor", "reengage_endorsing"]);

    // She subscribes: following, and the welcome series goes out.
    let answer = stack
        .http(
            "POST",
            "/v1/interactions",
            interaction("m-1", &maya, "newsletter_subscribed", start),
        )
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["interactions"][0]["status"], "recorded");
    let customer_id = answer.body["interactions"][0]["customer_id"].as_str().expect("an id").to_string();
    let events = stack.deliver().await;
    assert_eq!(
        nudges(&events),
        [("welcome_follower".to_string(), "send_welcome_series".to_string())]
    );

    // A day later she gives a testimonial: endorsing, and she is invited to an event as a guest.
    let reviewed = start.plus_days(1.0);
    stack.clock.set(reviewed.plus_millis(1_000));
    stack
        .http("POST", "/v1/interactions", interaction("m-2", &maya, "testimonial_given", reviewed))
        .await;
    let events = stack.deliver().await;
    let rose = events.iter().find_map(|e| match e {
        DomainEvent::LevelChanged(c) => Some(c.clone()),
        _ => None,
    });
    let rose = rose.expect("Level Changed");
    assert_eq!(
        (rose.from, rose.to, rose.direction),
        (Level::Following, Level::Endorsing, Direction::Up)
    );
    assert!(
        rose.explanation.summary.contains("testimonial_given"),
        "{}",
        rose.explanation.summary
    );
    let invited = events.iter().find_map(|e| match e {
        DomainEvent::NudgeRequested(n) if n.playbook == "endorser_to_sponsor" => Some(n.clone()),
        _ => None,
    });
    let invited = invited.expect("the guest invitation");
    assert_eq!(invited.action, "invite_as_event_guest");
    assert_eq!((invited.channel.as_str(), invited.handle.as_str()), ("email", maya.as_str()));
    assert_eq!(invited.level, Level::Endorsing);
    assert_eq!(invited.trigger, Trigger::LevelReached(Level::Endorsing));
    // The explanation has one shape in every event (schema_version 2 of Nudge Requested).
    assert_eq!(invited.schema_version, 2);
    assert_eq!(invited.explanation.top_kinds, rose.explanation.top_kinds);
    assert!(
        invited.explanation.summary.starts_with("Endorsing since"),
        "{}",
        invited.explanation.summary
    );

    // Three weeks later she attends: the next step of the ladder, asking her to sponsor.
    let attended = start.plus_days(22.0);
    stack.clock.set(attended.plus_millis(1_000));
    stack
        .http("POST", "/v1/interactions", interaction("m-3", &maya, "event_attended", attended))
        .await;
    let events = stack.deliver().await;
    assert_eq!(
        nudges(&events),
        [("endorser_to_sponsor".to_string(), "ask_to_sponsor_event".to_string())]
    );

    // A year of silence. The schedule runs when she enters the at-risk window, then at the drop.
    let view = stack.http("GET", &format!("/v1/customers/{customer_id}"), json!(null)).await;
    assert_eq!(view.body["level"], "endorsing");
    let at_risk_at = engagement::Timestamp::parse_rfc3339(view.body["at_risk_at"].as_str().expect("an at-risk time")).expect("a time");
    let drops_at = engagement::Timestamp::parse_rfc3339(view.body["drops_at"].as_str().expect("a drop time")).expect("a time");
    assert!(
        at_risk_at < drops_at && drops_at < start.plus_days(400.0),
        "{at_risk_at} {drops_at}"
    );

    stack.clock.set(at_risk_at.plus_millis(60_000));
    stack.schedule().await;
    let warned = stack.deliver().await;
    assert!(
        warned
            .iter()
            .any(|e| matches!(e, DomainEvent::EngagementAtRisk(r) if r.level == Level::Endorsing && r.drops_at == drops_at)),
        "{warned:?}"
    );
    assert_eq!(
        nudges(&warned),
        [("reengage_endorsing".to_string(), "ask_for_updated_review".to_string())]
    );

    stack.clock.set(drops_at.plus_millis(60_000));
    stack.schedule().await;
    let dropped = stack.deliver().await;
    let fell = dropped.iter().find_map(|e| match e {
        DomainEvent::LevelChanged(c) => Some(c.clone()),
        _ => None,
    });
    let fell = fell.expect("Level Changed down");
    assert_eq!((fell.from, fell.direction), (Level::Endorsing, Direction::Down));
    assert_eq!(fell.since, drops_at, "the drop is dated when it was due");
    assert!(nudges(&dropped).is_empty(), "no nudge for a drop: the at-risk one went out before");

    // Her page tells the story: the nudges in order, and where she stands now.
    let view = stack.http("GET", &format!("/v1/customers/{customer_id}"), json!(null)).await;
    assert_eq!(view.body["level"], fell.to.name());
    let sent: Vec<&str> = view.body["nudges"]
        .as_array()
        .expect("nudges")
        .iter()
        .filter(|n| n["outcome"] == "sent")
        .map(|n| n["action"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        sent,
        [
            "ask_for_updated_review",
            "ask_to_sponsor_event",
            "invite_as_event_guest",
            "send_welcome_series"
        ],
        "newest first"
    );
}

/// The DynamoDB requests behind one new interaction (ingest + rescore), the level change and the
/// pyramid counts included; and behind a duplicate delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_interaction_costs_four_requests_and_a_duplicate_one() {
    let start = at("2026-03-01T09:00:00Z");
    let stack = Stack::start(start).await;
    stack.requests.reset();
    let body = interaction("r-1", "rita@example.com", "newsletter_subscribed", start);
    let answer = stack.http("POST", "/v1/interactions", body.clone()).await;
    assert_eq!(answer.body["interactions"][0]["status"], "recorded");
    let ingest = stack.requests.snapshot();
    let events = stack.take_events().await;
    let [DomainEvent::InteractionRecorded(recorded)] = events.as_slice() else {
        panic!("{events:?}")
    };
    stack.requests.reset();
    let rescored = stack
        .rescore
        .rescore(&recorded.customer_id)
        .await
        .expect("rescored")
        .expect("known");
    assert_eq!((rescored.level, rescored.direction), (Level::Following, Some(Direction::Up)));
    let rescore = stack.requests.snapshot();
    let total = ingest.values().sum::<u64>() + rescore.values().sum::<u64>();
    println!("new interaction: ingest {ingest:?}, rescore {rescore:?}: {total} requests");
    assert!(total <= 4, "ingest {ingest:?} + rescore {rescore:?}");
    let pyramid = stack.http("GET", "/v1/pyramid", json!(null)).await;
    assert_eq!(pyramid.body["levels"][1]["customers"], 1, "the counts moved in those requests");

    // The same request delivered again: one read, nothing written, nothing published.
    stack.take_events().await;
    stack.requests.reset();
    let again = stack.http("POST", "/v1/interactions", body).await;
    assert_eq!(again.body["interactions"][0]["status"], "duplicate");
    let duplicate = stack.requests.snapshot();
    println!("duplicate delivery: {duplicate:?}");
    assert_eq!(duplicate.values().sum::<u64>(), 1, "{duplicate:?}");
    assert!(stack.take_events().await.is_empty());

    // The same Interaction Recorded delivered twice to rescore: one read, nothing else.
    stack.requests.reset();
    let repeat = stack
        .rescore
        .rescore(&recorded.customer_id)
        .await
        .expect("rescored")
        .expect("known");
    assert!(!repeat.wrote && repeat.published.is_empty());
    assert_eq!(stack.requests.total(), 1);

    // An interaction whose kind starts no playbook and climbs no ladder costs nudge nothing.
    stack.requests.reset();
    let viewed = DomainEvent::InteractionRecorded(engagement::events::InteractionRecorded {
        kinds: vec!["page_viewed".into()],
        interaction_ids: vec!["r-2".into()],
        ..recorded.clone()
    });
    assert!(stack.nudge.on_event(&viewed).await.expect("handled").is_empty());
    assert_eq!(stack.requests.total(), 0, "nothing read for a kind no playbook uses");
}
