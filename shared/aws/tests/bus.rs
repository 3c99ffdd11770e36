//! The EventBridge adapter against moto: events reach the queue their rule targets, in chunks
//! within EventBridge's limits, and failures surface after the retry budget instead of vanishing.

use engagement::events::*;
use engagement::ports::{BusError, CustomerId, EventBus};
use engagement::{Direction, Level, Timestamp};
use engagement_aws::client::local_eventbridge;
use engagement_aws::EventBridgeBus;
use engagement_testkit::{drain_queue, local_sqs, moto_endpoint, route_to_queue, unique_name};
use std::collections::BTreeSet;

fn level_changed(n: usize) -> DomainEvent {
    DomainEvent::LevelChanged(LevelChanged {
        schema_version: SCHEMA_VERSION,
        customer_id: CustomerId(format!("cus_{n}")),
        from: Level::Endorsing,
        to: Level::Contributing,
        direction: Direction::Up,
        since: Timestamp(1_700_000_000_000),
        drops_at: Some(Timestamp(1_720_000_000_000)),
        at_risk_at: Some(Timestamp(1_717_000_000_000)),
        explanation: EventExplanation {
            summary: "Contributing since 14 November 2023: 2 event_attended.".into(),
            evidence: 4.0,
            threshold: 3.5,
            top_kinds: vec!["event_attended".into()],
        },
    })
}

fn recorded(n: usize) -> DomainEvent {
    DomainEvent::InteractionRecorded(InteractionRecorded {
        schema_version: SCHEMA_VERSION,
        customer_id: CustomerId(format!("cus_{n}")),
        interaction_ids: vec![format!("evt-{n}")],
        kinds: vec!["page_viewed".into()],
        recorded_at: Timestamp(1_700_000_000_000),
    })
}

#[tokio::test]
async fn events_reach_the_queue_their_rule_targets() {
    let endpoint = moto_endpoint();
    let (events, sqs) = (local_eventbridge(endpoint), local_sqs(endpoint));
    let bus_name = unique_name("engagement");
    let queue_url = route_to_queue(
        &events,
        &sqs,
        &bus_name,
        r#"{"source": ["engagement"], "detail-type": ["Level Changed"]}"#,
    )
    .await;

    // 23 events: three PutEvents calls; only the 12 "Level Changed" match the rule.
    let mut published: Vec<DomainEvent> = (0..12).map(level_changed).collect();
    published.extend((0..11).map(recorded));
    EventBridgeBus::new(events, &bus_name, DEFAULT_SOURCE)
        .publish(&published)
        .await
        .expect("published");

    let mut received = BTreeSet::new();
    for envelope in drain_queue(&sqs, &queue_url).await {
        assert_eq!(envelope["source"], "engagement");
        let event = DomainEvent::from_parts(envelope["detail-type"].as_str().expect("a detail-type"), envelope["detail"].clone())
            .expect("a domain event");
        assert!(matches!(event, DomainEvent::LevelChanged(_)), "{event:?}");
        assert!(
            received.insert(event.customer_id().clone()),
            "{} arrived twice",
            event.customer_id()
        );
    }
    assert_eq!(received.len(), 12, "every Level Changed arrived once");
}

#[tokio::test]
async fn events_that_cannot_be_published_are_reported_not_dropped() {
    let bus = EventBridgeBus::new(local_eventbridge(moto_endpoint()), unique_name("no-such-bus"), DEFAULT_SOURCE);
    let started = std::time::Instant::now();
    let error = bus.publish(&[recorded(1), recorded(2)]).await.expect_err("the bus does not exist");
    // A missing bus stays missing: refused at once, and not worth retrying.
    assert!(!error.is_retryable(), "{error:?}");
    let BusError::Rejected { failed, total, .. } = error else {
        panic!("a missing bus is not a passing outage: {error:?}");
    };
    assert_eq!((failed, total), (2, 2));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "retried: {:?}",
        started.elapsed()
    );
}
