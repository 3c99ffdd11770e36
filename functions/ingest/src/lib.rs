//! ingest: `POST /v1/interactions`. Validates the whole request first (one bad item rejects it
//! and nothing is written), records each new interaction exactly once (resolving or creating its
//! customer and marking it due for rescoring), then publishes one `Interaction Recorded` per
//! customer. If publishing fails, the answer is still 202: the events go into their customers'
//! outboxes (one extra write per customer, only then), so the scheduled sweep publishes them and
//! the interactions' own playbook triggers (a complaint's service recovery) are not lost.

use engagement::events::recorded_events;
use engagement::interaction::parse_submission;
use engagement::metrics::METRICS;
use engagement::ports::{Clock, CustomerId, EventBus, InteractionLog, RecordOutcome, RecordStatus};
use engagement::Rules;
use engagement_http::{has_json_body, json_response, request_id, route, store_problem, HttpRequest, HttpResponse, Problem};
use serde::Serialize;
use std::sync::Arc;
use tracing::Instrument;

pub struct Ingest<S, B, C> {
    pub store: S,
    pub bus: B,
    pub clock: C,
    pub rules: Arc<Rules>,
}

/// The 202 body: one outcome per interaction, in request order.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub interactions: Vec<RecordOutcome>,
}

impl<S: InteractionLog, B: EventBus, C: Clock> Ingest<S, B, C> {
    /// Handles an HTTP request to the ingest route.
    pub async fn handle(&self, request: HttpRequest) -> HttpResponse {
        let path = request.uri().path().to_string();
        let routed = route(&request);
        if routed.as_deref() != Some(&["interactions".to_string()][..]) {
            return Problem::not_found(format!("no route {path}")).at(&path).response();
        }
        if request.method() != http::Method::POST {
            return Problem::method_not_allowed_but(request.method().as_str(), &path, &["POST"])
                .at(&path)
                .response();
        }
        if !has_json_body(&request) {
            return Problem::unsupported_media_type().at(&path).response();
        }
        if request.body().len() > engagement::interaction::MAX_BODY_BYTES {
            return Problem {
                errors: vec![engagement::FieldError {
                    path: String::new(),
                    reason: "the request body is larger than 1 MiB; send at most 500 interactions per request".into(),
                }],
                ..Problem::new(413, "too-large", "Request too large", "the body is larger than 1 MiB")
            }
            .at(&path)
            .response();
        }
        let request_id = request_id(&request);
        let span = tracing::info_span!(
            "ingest",
            %request_id,
            interactions = tracing::field::Empty,
            customers = tracing::field::Empty
        );
        match self.submit(request.body()).instrument(span).await {
            Ok(accepted) => json_response(202, &accepted),
            Err(problem) => {
                if problem.status == 500 {
                    tracing::info!(target: METRICS, function = "ingest", InternalErrors = 1u64);
                }
                problem.at(&path).answer(&request_id)
            }
        }
    }

    /// Validates and records a request body; publishes what was recorded.
    pub async fn submit(&self, body: &[u8]) -> Result<Accepted, Problem> {
        let now = self.clock.now();
        let interactions = parse_submission(body, &self.rules, now).map_err(|errors| Problem::invalid(errors.0))?;
        let outcomes = self
            .store
            .record_interactions(&interactions, now)
            .await
            .map_err(|error| store_problem(&error))?;
        let kinds: Vec<&str> = interactions.iter().map(|i| i.kind.as_str()).collect();
        let events = recorded_events(&outcomes, &kinds, now);
        let span = tracing::Span::current();
        span.record("interactions", interactions.len());
        span.record("customers", events.len());
        for outcome in &outcomes {
            // Ids only: handles and names are personal data.
            tracing::info!(
                interaction_id = %outcome.id,
                customer_id = %outcome.customer_id.as_ref().map_or("", CustomerId::as_str),
                status = ?outcome.status,
                "interaction"
            );
        }
        let count = |status: RecordStatus| outcomes.iter().filter(|o| o.status == status).count() as u64;
        tracing::info!(
            target: METRICS,
            function = "ingest",
            InteractionsRecorded = count(RecordStatus::Recorded),
            Duplicates = count(RecordStatus::Duplicate),
            Conflicts = count(RecordStatus::Conflict),
            ErasedRefused = count(RecordStatus::Erased),
        );
        if !events.is_empty() {
            if let Err(error) = self.bus.publish(&events).await {
                engagement_http::outbox::keep_unpublished(&self.store, &events, now, &error).await;
            }
        }
        Ok(Accepted { interactions: outcomes })
    }
}
