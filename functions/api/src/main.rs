//! The api Lambda behind API Gateway (every `/v1/` route but `POST /v1/interactions`): wires the
//! DynamoDB store, the EventBridge bus and the system clock, and hands each request to
//! `Api::handle`.

#![recursion_limit = "256"]

use api::Api;
use engagement_aws::{wiring, SystemClock};
use engagement_http::lambda::{from_lambda, to_lambda};
use engagement_http::CursorSigner;
use lambda_http::{service_fn, Error, Request};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    wiring::init_tracing();
    let deployment = wiring::from_env().await?;
    let cursor_key = wiring::cursor_key()?;
    let contact_key = wiring::contact_key()?;
    let api = Arc::new(Api {
        store: deployment.store,
        bus: deployment.bus,
        clock: SystemClock,
        rules: deployment.rules,
        cursors: CursorSigner::new(&cursor_key),
        contact_key,
    });
    lambda_http::run(service_fn(move |request: Request| {
        let api = Arc::clone(&api);
        async move { Ok::<_, Error>(to_lambda(api.handle(from_lambda(request)).await)) }
    }))
    .await
}
