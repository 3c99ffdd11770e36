//! The nudge Lambda: wires the DynamoDB store, the EventBridge bus and the system clock, and
//! hands each event (`Level Changed`, `Engagement At Risk`, `Interaction Recorded`) to
//! `Nudger::handle`.

#![recursion_limit = "256"]

use aws_lambda_events::eventbridge::EventBridgeEvent;
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
        async move { nudger.handle(&event.payload).await.map_err(Error::from) }
    }))
    .await
}
