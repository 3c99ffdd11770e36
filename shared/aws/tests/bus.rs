//! The EventBridge adapter against moto: events reach the queue their rule targets, in chunks
//! within EventBridge's limits, and failures surface after the retry budget instead of vanishing.

use engagement::events::*;
use engagement::ports::{BusError, CustomerId, EventBus};
use engagement::{Direction, Level, Timestamp};
use engagement_aws::client::local_eventbridge;
use engagement_aws::EventBridgeBus;
use engagement_testkit::{local_sqs, moto_endpoint, unique_name};
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
    events.create_event_bus().name(&bus_name).send().await.expect("bus created");
    let queue_url = sqs
        .create_queue()
        .queue_name(unique_name("level-changed"))
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("url")
        .to_string();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes");
    let queue_arn = attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("arn")
        .clone();
    events
        .put_rule()
        .name("level-changed")
        .event_bus_name(&bus_name)
        .event_pattern(r#"{"source": ["engagement"], "detail-type": ["Level Changed"]}"#)
        .send()
        .await
        .expect("rule");
    events
        .put_targets()
        .rule("level-changed")
        .event_bus_name(&bus_name)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("target");

    // 23 events: three PutEvents calls; only the 12 "Level Changed" match the rule.
    let mut published: Vec<DomainEvent> = (0..12).map(level_changed).collect();
    published.extend((0..11).map(recorded));
    EventBridgeBus::new(events, &bus_name, DEFAULT_SOURCE)
        .publish(&published)
        .await
        .expect("published");

    let mut received = BTreeSet::new();
    for _ in 0..10 {
        let messages = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("received");
        for message in messages.messages() {
            let envelope: serde_json::Value = serde_json::from_str(message.body().expect("a body")).expect("json");
            assert_eq!(envelope["source"], "engagement");
            let event = DomainEvent::from_parts(envelope["detail-type"].as_str().expect("a detail-type"), envelope["detail"].clone())
                .expect("a domain event");
            assert!(matches!(event, DomainEvent::LevelChanged(_)), "{event:?}");
            received.insert(event.customer_id().clone());
        }
        if received.len() == 12 || messages.messages().is_empty() {
            break;
        }
    }
    assert_eq!(received.len(), 12, "every Level Changed arrived once");
}

#[tokio::test]
async fn events_that_cannot_be_published_are_reported_not_dropped() {
    let bus = EventBridgeBus::new(local_eventbridge(moto_endpoint()), unique_name("no-such-bus"), DEFAULT_SOURCE);
    let error = bus.publish(&[recorded(1), recorded(2)]).await.expect_err("the bus does not exist");
    let BusError::NotPublished { failed, total, .. } = error;
    assert_eq!((failed, total), (2, 2));
}
