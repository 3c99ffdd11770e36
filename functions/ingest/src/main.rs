//! The ingest Lambda behind API Gateway (`POST /v1/interactions`): wires the DynamoDB store,
//! the EventBridge bus and the system clock, and hands each request to `Ingest::handle`.

#![recursion_limit = "256"]

use engagement_aws::{wiring, SystemClock};
use engagement_http::lambda::{from_lambda, to_lambda};
use ingest::Ingest;
use lambda_http::{service_fn, Error, Request};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    wiring::init_tracing();
    let deployment = wiring::from_env().await?;
    let ingest = Arc::new(Ingest {
        store: deployment.store,
        bus: deployment.bus,
        clock: SystemClock,
        rules: deployment.rules,
    });
    lambda_http::run(service_fn(move |request: Request| {
        let ingest = Arc::clone(&ingest);
        async move { Ok::<_, Error>(to_lambda(ingest.handle(from_lambda(request)).await)) }
    }))
    .await
}
