//! The rescore Lambda: wires the DynamoDB store, the EventBridge bus and the system clock, reads
//! each EventBridge envelope (`Interaction Recorded`, the schedule) and hands what it asks to
//! `Rescorer::handle` or `Rescorer::handle_schedule`.

// The handler's futures nest deeply (SDK calls inside retries inside the sweep).
#![recursion_limit = "256"]

use aws_lambda_events::eventbridge::EventBridgeEvent;
use engagement_aws::envelope::{delivered, Delivered};
use engagement_aws::{wiring, SystemClock};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use rescore::Rescorer;
use std::sync::Arc;
use std::time::SystemTime;

#[tokio::main]
async fn main() -> Result<(), Error> {
    wiring::init_tracing();
    let deployment = wiring::from_env().await?;
    let rescorer = Arc::new(Rescorer {
        store: deployment.store,
        bus: deployment.bus,
        clock: SystemClock,
        rules: deployment.rules,
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| {
        let rescorer = Arc::clone(&rescorer);
        async move {
            let deadline = event.context.deadline();
            let time_left = move || deadline.duration_since(SystemTime::now()).unwrap_or_default();
            // What it did, as the invocation's result (EventBridge discards it; a test invoke shows it).
            let done = match delivered(&event.payload)? {
                Delivered::Event(event) => serde_json::to_value(rescorer.handle(&event).await?)?,
                Delivered::Schedule => serde_json::to_value(rescorer.handle_schedule(time_left).await?)?,
            };
            Ok::<_, Error>(done)
        }
    }))
    .await
}
