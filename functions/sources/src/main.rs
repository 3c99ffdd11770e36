//! The sources Lambda behind API Gateway (`POST` and `GET /v1/sources/{source}`, public: the
//! channel's signature authenticates): wires the DynamoDB store, the EventBridge bus, the system
//! clock, the rules, the source catalog (shipped files and `SOURCES_DIR`) and the signing secrets
//! (`SOURCE_SECRETS_ARN`), and hands each request to `Sources::handle`.

#![recursion_limit = "256"]

use engagement_aws::{wiring, SystemClock};
use engagement_http::lambda::{from_lambda, to_lambda};
use engagement_sources::Scheme;
use ingest::Ingest;
use lambda_http::{service_fn, Error, Request};
use sources::Sources;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    wiring::init_tracing();
    let deployment = wiring::from_env().await?;
    let catalog = Arc::new(wiring::load_catalog(std::env::var("SOURCES_DIR").ok().as_deref())?);
    let secrets = wiring::source_secrets(&deployment.config)?;
    // Read at cold start, so the first delivery does not wait for it. A failure here is not
    // fatal: each request tries again, and answers 503 until the read passes (the channels
    // retry).
    match secrets.connected().await {
        Ok(connected) => tracing::info!(?connected, sources = ?catalog.names().collect::<Vec<_>>(), "source secrets read"),
        Err(error) if error.retryable() => tracing::warn!(%error, "source secrets not read at start; retried per request"),
        Err(error) => tracing::error!(%error, "source secrets refused or malformed; deliveries are refused until fixed"),
    }
    for source in catalog.sources().filter(|source| source.scheme() == Scheme::None) {
        tracing::warn!(source = source.name(), "source accepts deliveries unverified (scheme none)");
    }
    let sources = Arc::new(Sources {
        ingest: Ingest {
            store: deployment.store,
            bus: deployment.bus,
            clock: SystemClock,
            rules: deployment.rules,
        },
        catalog,
        secrets,
    });
    lambda_http::run(service_fn(move |request: Request| {
        let sources = Arc::clone(&sources);
        async move { Ok::<_, Error>(to_lambda(sources.handle(from_lambda(request)).await)) }
    }))
    .await
}
