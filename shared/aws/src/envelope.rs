//! Inbound adapter for EventBridge: the envelope a Lambda target (or `pyramid`'s bus, or the
//! e2e harness) receives, translated into what the handlers take, a domain event or the
//! schedule's sweep request. One translation, so the Lambda mains, `pyramid` and the tests read
//! envelopes alike and the handlers never see one.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use engagement::events::{DomainEvent, EventError};
use serde_json::Value;

/// The detail-type EventBridge gives scheduled events.
pub const SCHEDULED_EVENT: &str = "Scheduled Event";

/// What an EventBridge envelope asks of a handler.
// One per invocation, moved once: boxing the event would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Delivered {
    /// One of the engine's events.
    Event(DomainEvent),
    /// The schedule fired: sweep what is due.
    Schedule,
}

/// Reads an envelope. An unknown detail-type or a malformed detail is an error no retry mends.
pub fn delivered(envelope: &EventBridgeEvent<Value>) -> Result<Delivered, EventError> {
    if envelope.detail_type == SCHEDULED_EVENT {
        return Ok(Delivered::Schedule);
    }
    DomainEvent::from_parts(&envelope.detail_type, envelope.detail.clone()).map(Delivered::Event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(detail_type: &str, detail: Value) -> EventBridgeEvent<Value> {
        serde_json::from_value(json!({
            "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": detail_type,
            "source": "engagement", "account": "123456789012", "time": "2026-01-10T09:01:00Z",
            "region": "eu-west-1", "resources": [], "detail": detail,
        }))
        .expect("an EventBridge event")
    }

    #[test]
    fn envelopes_become_domain_events_or_the_schedule() {
        let recorded = envelope(
            "Interaction Recorded",
            json!({"schema_version": 1, "customer_id": "c-1", "interaction_ids": ["s-1"], "kinds": ["newsletter_subscribed"], "recorded_at": "2026-01-10T09:00:00Z"}),
        );
        match delivered(&recorded) {
            Ok(Delivered::Event(DomainEvent::InteractionRecorded(event))) => assert_eq!(event.customer_id.as_str(), "c-1"),
            other => panic!("not an Interaction Recorded: {other:?}"),
        }
        assert_eq!(delivered(&envelope(SCHEDULED_EVENT, json!({}))), Ok(Delivered::Schedule));
        assert!(matches!(
            delivered(&envelope("Something Else", json!({}))),
            Err(EventError::UnknownDetailType(_))
        ));
        assert!(matches!(
            delivered(&envelope("Level Changed", json!({"customer_id": 3}))),
            Err(EventError::InvalidDetail(..))
        ));
    }
}
