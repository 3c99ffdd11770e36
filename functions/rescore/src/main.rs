//! The rescore Lambda: wires the DynamoDB store, the EventBridge bus and the system clock, and
//! hands each event (`Interaction Recorded`, the schedule) to `Rescorer::handle`.

// The handler's futures nest deeply (SDK calls inside retries inside the sweep).
#![recursion_limit = "256"]

use aws_lambda_events::eventbridge::EventBridgeEvent;
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
            rescorer.handle(&event.payload, time_left).await.map_err(Error::from)
        }
    }))
    .await
}
