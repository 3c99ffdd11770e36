//! The nudge Lambda: wires the DynamoDB store, the EventBridge bus and the system clock, reads
//! each EventBridge envelope (`Level Changed`, `Engagement At Risk`, `Interaction Recorded`) and
//! hands its event to `Nudger::handle`.

#![recursion_limit = "256"]

use aws_lambda_events::eventbridge::EventBridgeEvent;
use engagement::events::EventError;
use engagement_aws::envelope::{delivered, Delivered};
use engagement_aws::{wiring, SystemClock};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use nudge::Nudger;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    wiring::init_tracing();
    let deployment = wiring::from_env().await?;
    let nudger = Arc::new(Nudger {
        store: deployment.store,
        bus: deployment.bus,
        clock: SystemClock,
        rules: deployment.rules,
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| {
        let nudger = Arc::clone(&nudger);
        async move {
            let Delivered::Event(event) = delivered(&event.payload)? else {
                return Err(Error::from(EventError::UnknownDetailType(event.payload.detail_type)));
            };
            let nudges = nudger.handle(&event).await?;
            // The decisions, as the invocation's result (EventBridge discards it; a test invoke shows it).
            Ok(serde_json::json!({ "customer_id": event.customer_id(), "nudges": nudges }))
        }
    }))
    .await
}
