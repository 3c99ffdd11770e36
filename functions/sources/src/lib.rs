//! sources: `POST /v1/sources/{source}` receives a channel's own webhook (GitHub, Slack, Stripe,
//! ...), verifies its signature, maps it to interactions as the source's file says, and records
//! them through ingest's own path (`Ingest::submit`: the same validation, the same exactly-once,
//! no store request beyond ingest's). `GET` answers the URL checks some channels make first.
//!
//! Senders retry any non-2xx for days, so what a retry cannot change (no mapping for the event,
//! a missing field, a bot, an interaction ingest refuses) is answered 202 `ignored`, with the
//! reason. Only a bad signature (401), a bad body (400, 413), an unknown or unconnected source
//! (404) and an unavailable store or secret store (503) are errors.

use engagement::interaction::{FieldError, MAX_BODY_BYTES};
use engagement::metrics::METRICS;
use engagement::ports::{Clock, EventBus, InteractionLog, RecordOutcome};
use engagement_http::{json_response, query, request_id, route, HttpRequest, HttpResponse, Problem};
use engagement_sources::{Catalog, Delivery, Mapped, Scheme, Source, SourceSecrets};
use ingest::Ingest;
use serde::Serialize;
use std::sync::Arc;
use tracing::Instrument;

pub struct Sources<S, B, C, K> {
    pub ingest: Ingest<S, B, C>,
    pub catalog: Arc<Catalog>,
    pub secrets: K,
}

/// The 202 body.
#[derive(Debug, Serialize)]
pub struct Answer {
    pub source: String,
    pub delivery_id: Option<String>,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interactions: Option<Vec<RecordOutcome>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl<S: InteractionLog, B: EventBus, C: Clock, K: SourceSecrets> Sources<S, B, C, K> {
    /// Handles an HTTP request to the sources route.
    pub async fn handle(&self, request: HttpRequest) -> HttpResponse {
        let path = request.uri().path().to_string();
        let name = match route(&request).as_deref() {
            Some([sources, name]) if sources == "sources" => name.clone(),
            _ => return Problem::not_found(format!("no route {path}")).at(&path).response(),
        };
        let method = request.method().clone();
        if method != http::Method::POST && method != http::Method::GET {
            return Problem::method_not_allowed_but(method.as_str(), &path, &["GET", "POST"])
                .at(&path)
                .response();
        }
        if request.body().len() > MAX_BODY_BYTES {
            return Problem {
                errors: vec![FieldError {
                    path: "body".into(),
                    reason: "larger than 1 MiB".into(),
                }],
                ..Problem::new(413, "too-large", "Request too large", "the body is larger than 1 MiB")
            }
            .at(&path)
            .response();
        }
        let Some(source) = self.catalog.get(&name) else {
            return Problem::not_found(format!("no source {name:?}; the sources are: {}", self.names()))
                .at(&path)
                .response();
        };
        let request_id = request_id(&request);
        let span = tracing::info_span!(
            "sources",
            source = %source.name(),
            %request_id,
            delivery_id = tracing::field::Empty,
            interactions = tracing::field::Empty,
            customers = tracing::field::Empty,
        );
        let answer = self.answer(source, &method, &request).instrument(span).await;
        match answer {
            Ok(response) => response,
            Err(problem) => problem.at(&path).answer(&request_id),
        }
    }

    async fn answer(&self, source: &Source, method: &http::Method, request: &HttpRequest) -> Result<HttpResponse, Problem> {
        let secret = if source.scheme().needs_secret() {
            match self.secrets.secret(source.name()).await {
                Ok(Some(secret)) => Some(secret),
                Ok(None) => {
                    return Err(Problem::not_found(format!(
                        "source {:?} is not connected: no signing secret",
                        source.name()
                    )))
                }
                Err(error) => {
                    return Err(Problem::unavailable("the signing secrets cannot be read; retry later").because(error.to_string()))
                }
            }
        } else {
            None
        };
        let now = self.ingest.clock.now();
        let query = query(request);
        let delivery = Delivery {
            headers: request.headers(),
            query: &query,
            body: request.body(),
        };
        if let Err(rejected) = source.verify(&delivery, secret.as_deref(), now) {
            // The field and the reason only: never the signature or the secret.
            tracing::info!(field = %rejected.header, reason = %rejected.reason, "delivery rejected");
            tracing::info!(target: METRICS, function = "sources", Source = source.name(), SourceRejected = 1u64);
            let place = if source.scheme() == Scheme::SecretInUrl {
                "query"
            } else {
                "header"
            };
            return Err(Problem {
                errors: vec![FieldError {
                    path: format!("{place}.{}", rejected.header),
                    reason: rejected.reason.clone(),
                }],
                ..Problem::new(
                    401,
                    "invalid-signature",
                    "Invalid signature",
                    format!("{} {}: {}", place, rejected.header, rejected.reason),
                )
            });
        }
        if method == http::Method::GET {
            return Ok(json_response(200, &serde_json::json!({"source": source.name(), "status": "ready"})));
        }
        let mapped = source
            .map(&delivery, now)
            .map_err(|bad| Problem::invalid_field("body", bad.reason))?;
        match mapped {
            Mapped::Challenge(challenge) => Ok(json_response(200, &serde_json::json!({ "challenge": challenge }))),
            Mapped::Ignored { reason, delivery_id } => Ok(self.ignored(source, delivery_id, reason)),
            Mapped::Interactions { interactions, delivery_id } => {
                if let Some(id) = &delivery_id {
                    tracing::Span::current().record("delivery_id", id.as_str());
                }
                let body = serde_json::to_vec(&serde_json::json!({ "interactions": interactions }))
                    .map_err(|error| Problem::internal().because(error.to_string()))?;
                match self.ingest.submit(&body).await {
                    Ok(accepted) => {
                        tracing::info!(target: METRICS, function = "sources", Source = source.name(), SourceRecorded = 1u64);
                        Ok(json_response(
                            202,
                            &Answer {
                                source: source.name().to_string(),
                                delivery_id,
                                status: "recorded",
                                interactions: Some(accepted.interactions),
                                reason: None,
                            },
                        ))
                    }
                    // Ingest refused what the mapping made (a handle too long, a kind these
                    // rules do not name): the same delivery again would be refused again.
                    Err(problem) if problem.status == 400 => {
                        let reasons: Vec<String> = problem.errors.iter().map(ToString::to_string).collect();
                        Ok(self.ignored(source, delivery_id, format!("refused by ingest: {}", reasons.join("; "))))
                    }
                    Err(problem) => {
                        if problem.status == 500 {
                            tracing::info!(target: METRICS, function = "sources", InternalErrors = 1u64);
                        }
                        Err(problem)
                    }
                }
            }
        }
    }

    fn ignored(&self, source: &Source, delivery_id: Option<String>, reason: String) -> HttpResponse {
        if let Some(id) = &delivery_id {
            tracing::Span::current().record("delivery_id", id.as_str());
        }
        tracing::info!(reason = %reason, "delivery ignored");
        tracing::info!(target: METRICS, function = "sources", Source = source.name(), SourceIgnored = 1u64);
        json_response(
            202,
            &Answer {
                source: source.name().to_string(),
                delivery_id,
                status: "ignored",
                interactions: None,
                reason: Some(reason),
            },
        )
    }

    fn names(&self) -> String {
        self.catalog.names().collect::<Vec<_>>().join(", ")
    }
}
