//! deliver: sends one domain event to one configured destination (HubSpot, Mailchimp, Klaviyo,
//! Customer.io, Slack, Zendesk, Standard Webhooks) and says what became of it. The same handler
//! runs behind the cloud's per-destination SQS queues and `pyramid serve`'s outbox, so both send
//! byte-identical requests (`engagement_deliver` builds them).
//!
//! One delivery: route → read the customer (one read, only for events without a handle) →
//! build → authorize with the destination's secret → send → classify the answer → [`Outcome`].

/// The cloud's wiring: SQS batches, Secrets Manager credentials, HTTPS by reqwest.
pub mod sqs;

use engagement::erasure::{ContactError, ContactKey};
use engagement::events::DomainEvent;
use engagement::identity::Channel;
use engagement::metrics::METRICS;
use engagement::ports::{Clock, CustomerReads, StoreError};
use engagement_deliver::{
    authorize, build, AuthError, BuildError, DeliveryContext, Destination, Outbound, Plan, Settings, SkipReason, Verdict,
};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// The most of a tool's error body kept with a dead letter (enough for its error message).
pub const MAX_ERROR_BODY: usize = 2048;

/// A tool's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Why a request got no answer. Both are retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the tool did not answer in time")]
    Timeout,
    #[error("the tool could not be reached: {0}")]
    Unreachable(String),
}

/// Port: sends one request as it is (no redirects followed, a timeout per request).
pub trait HttpSender: Send + Sync {
    fn send(&self, outbound: &Outbound) -> impl Future<Output = Result<HttpResponse, SendError>> + Send;
}

/// Why a destination's secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("destination `{destination}` has no secret ({hint})")]
    Missing { destination: String, hint: String },
    #[error("the secret of destination `{destination}` could not be read: {reason}")]
    Unavailable { destination: String, reason: String },
}

/// Port: a destination's secret by its name (an API key, Track API `site_id:api_key`, a Slack
/// webhook URL, a `whsec_` key).
pub trait DestinationSecrets: Send + Sync {
    fn secret(&self, destination: &str) -> impl Future<Output = Result<String, SecretError>> + Send;
}

/// Port: the e-mail a `Customer Erased` carries, opened (it travels sealed, see
/// `engagement::erasure`); `Ok(None)` when it carries none.
pub trait ErasedContacts: Send + Sync {
    fn open_contact(&self, event: &DomainEvent) -> Result<Option<String>, ContactError>;
}

/// The contact key opens what the API sealed.
impl ErasedContacts for ContactKey {
    fn open_contact(&self, event: &DomainEvent) -> Result<Option<String>, ContactError> {
        engagement::erasure::open_contact(event, self)
    }
}

/// No contact key configured: erasures reach the e-mail tools without an e-mail (skipped).
pub struct NoErasedContacts;

impl ErasedContacts for NoErasedContacts {
    fn open_contact(&self, _event: &DomainEvent) -> Result<Option<String>, ContactError> {
        Ok(None)
    }
}

/// What became of one event at one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Skipped(SkipReason),
    /// Try again after this long (a 429's `Retry-After`, or backoff after a 5xx or a timeout).
    Retry(Duration),
    /// Never again: keep it with the tool's answer (truncated; it holds no secret of ours).
    DeadLetter {
        status: u16,
        tool_error_body: String,
        /// 401/403: the key was revoked or lacks a scope; an operator must act.
        revoked: bool,
    },
}

/// Why a delivery could not be tried at all. The destination is named.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("no destination named `{0}` is configured")]
    UnknownDestination(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The erasure's sealed e-mail does not open with the contact key configured here.
    #[error("destination `{destination}`: {source}")]
    Contact {
        destination: String,
        #[source]
        source: ContactError,
    },
    #[error("destination `{destination}`: {source}")]
    Store {
        destination: String,
        #[source]
        source: StoreError,
    },
}

impl DeliverError {
    /// Whether a later attempt can pass without anyone changing the configuration.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliverError::Store { source, .. } => source.is_retryable(),
            DeliverError::Secret(SecretError::Unavailable { .. }) => true,
            _ => false,
        }
    }
}

pub struct Deliver<R, H, C, K> {
    pub reads: R,
    pub http: H,
    pub clock: C,
    pub secrets: K,
    pub destinations: Arc<Vec<Destination>>,
    pub contacts: Arc<dyn ErasedContacts>,
}

/// The text of a tool's error body, cut at [`MAX_ERROR_BODY`] bytes on a character boundary.
pub fn truncated_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if text.len() <= MAX_ERROR_BODY {
        return text.into_owned();
    }
    let mut end = MAX_ERROR_BODY;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn wants_names(destination: &Destination) -> bool {
    matches!(destination.settings, Settings::Slack { include_names: true, .. })
}

fn email_channel() -> Option<Channel> {
    Channel::parse("email").ok()
}

impl<R, H, C, K> Deliver<R, H, C, K>
where
    R: CustomerReads,
    H: HttpSender,
    C: Clock,
    K: DestinationSecrets,
{
    pub fn destination(&self, name: &str) -> Result<&Destination, DeliverError> {
        self.destinations
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| DeliverError::UnknownDestination(name.to_string()))
    }

    /// Delivers `event` to the destination named `destination`; `attempt` counts earlier tries
    /// (0 on the first), for the backoff.
    pub async fn deliver(&self, destination: &str, event: &DomainEvent, attempt: u32) -> Result<Outcome, DeliverError> {
        let span = tracing::info_span!(
            "deliver",
            destination,
            detail_type = event.detail_type(),
            customer_id = %event.customer_id(),
            nudge_id = match event {
                DomainEvent::NudgeRequested(nudge) => nudge.nudge_id.as_str(),
                _ => "",
            },
            attempt,
        );
        self.deliver_in_span(destination, event, attempt).instrument(span).await
    }

    async fn deliver_in_span(&self, name: &str, event: &DomainEvent, attempt: u32) -> Result<Outcome, DeliverError> {
        let destination = self.destination(name)?;
        let context = self.context(destination, event).await?;
        let plan = build(destination, event, &context)?;
        let requests = match plan {
            Plan::Skip { reason } => {
                tracing::debug!(reason = reason.code(), "skipped");
                count(name, "Skipped");
                return Ok(Outcome::Skipped(reason));
            }
            Plan::Send(requests) => requests,
        };
        let secret = self.secrets.secret(name).await?;
        for mut outbound in requests {
            authorize(destination, &mut outbound, &secret, self.clock.now())?;
            let outcome = self.send_one(name, &outbound, attempt).await;
            if outcome != Outcome::Delivered {
                return Ok(outcome);
            }
        }
        count(name, "Delivered");
        Ok(Outcome::Delivered)
    }

    /// What the build needs to know about the customer: read only for events that carry no
    /// handle, opened from the erasure itself for `Customer Erased`.
    async fn context(&self, destination: &Destination, event: &DomainEvent) -> Result<DeliveryContext, DeliverError> {
        let customer_id = match event {
            DomainEvent::CustomerErased(_) => {
                let email = self.contacts.open_contact(event).map_err(|source| DeliverError::Contact {
                    destination: destination.name.clone(),
                    source,
                })?;
                return Ok(DeliveryContext {
                    email,
                    ..DeliveryContext::default()
                });
            }
            // A nudge carries its consented handle; only Slack's names need the customer.
            DomainEvent::NudgeRequested(nudge) if wants_names(destination) => &nudge.customer_id,
            DomainEvent::NudgeRequested(_) | DomainEvent::InteractionRecorded(_) => return Ok(DeliveryContext::default()),
            DomainEvent::LevelChanged(e) => &e.customer_id,
            DomainEvent::EngagementAtRisk(e) => &e.customer_id,
        };
        // Not routed here: no read.
        if !destination.detail_types().contains(&event.detail_type()) {
            return Ok(DeliveryContext::default());
        }
        let customer = self.reads.load_customer(customer_id).await.map_err(|source| DeliverError::Store {
            destination: destination.name.clone(),
            source,
        })?;
        let Some(customer) = customer else {
            return Ok(DeliveryContext::default()); // erased or unknown: no consent, nothing sent
        };
        let email = email_channel();
        Ok(DeliveryContext {
            email: customer
                .identities
                .iter()
                .find(|identity| Some(&identity.channel) == email.as_ref())
                .map(|identity| identity.handle.clone()),
            email_consented: email.as_ref().is_some_and(|channel| customer.state.consent.granted(channel)),
            channel_consented: customer.state.consent.any_granted(),
            name: customer.name.clone(),
        })
    }

    async fn send_one(&self, name: &str, outbound: &Outbound, attempt: u32) -> Outcome {
        let response = match self.http.send(outbound).await {
            Ok(response) => response,
            Err(error) => {
                let after = engagement_deliver::backoff(attempt);
                tracing::warn!(%error, after_ms = after.as_millis() as u64, "no answer; retried");
                count(name, "Retried");
                return Outcome::Retry(after);
            }
        };
        let verdict = engagement_deliver::classify(response.status, response.header("retry-after"), attempt, self.clock.now());
        match verdict {
            Verdict::Delivered => Outcome::Delivered,
            Verdict::RetryAfter(after) | Verdict::Backoff(after) => {
                tracing::warn!(status = response.status, after_ms = after.as_millis() as u64, "retried");
                count(name, "Retried");
                Outcome::Retry(after)
            }
            Verdict::Revoked => {
                tracing::error!(
                    status = response.status,
                    "the destination's key was refused (revoked or missing a scope); dead-lettered"
                );
                count(name, "Revoked");
                count(name, "DeadLettered");
                Outcome::DeadLetter {
                    status: response.status,
                    tool_error_body: truncated_body(&response.body),
                    revoked: true,
                }
            }
            Verdict::DeadLetter { reason } => {
                tracing::warn!(status = response.status, %reason, "refused by the tool; dead-lettered");
                count(name, "DeadLettered");
                Outcome::DeadLetter {
                    status: response.status,
                    tool_error_body: truncated_body(&response.body),
                    revoked: false,
                }
            }
        }
    }
}

/// One count per destination on the metrics target.
fn count(destination: &str, what: &'static str) {
    match what {
        "Delivered" => tracing::info!(target: METRICS, function = "deliver", Destination = destination, Delivered = 1u64),
        "DeadLettered" => tracing::info!(target: METRICS, function = "deliver", Destination = destination, DeadLettered = 1u64),
        "Revoked" => tracing::info!(target: METRICS, function = "deliver", Destination = destination, Revoked = 1u64),
        "Retried" => tracing::info!(target: METRICS, function = "deliver", Destination = destination, Retried = 1u64),
        _ => tracing::info!(target: METRICS, function = "deliver", Destination = destination, Skipped = 1u64),
    }
}

/// The HTTP adapter: reqwest over rustls, no redirects followed (a tool that redirects is
/// misconfigured, and credentials must not follow a redirect), a timeout per request.
#[derive(Clone)]
pub struct ReqwestSender {
    client: reqwest::Client,
}

/// How long a tool may take to answer before the attempt counts as a timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl ReqwestSender {
    pub fn new(timeout: Duration) -> Result<ReqwestSender, SendError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pyramid-deliver/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SendError::Unreachable(e.to_string()))?;
        Ok(ReqwestSender { client })
    }
}

impl HttpSender for ReqwestSender {
    async fn send(&self, outbound: &Outbound) -> Result<HttpResponse, SendError> {
        let method = match outbound.method {
            engagement_deliver::Method::Post => reqwest::Method::POST,
            engagement_deliver::Method::Put => reqwest::Method::PUT,
            engagement_deliver::Method::Delete => reqwest::Method::DELETE,
        };
        let mut request = self.client.request(method, &outbound.url);
        for (name, value) in &outbound.headers {
            request = request.header(name, value);
        }
        if !outbound.body.is_empty() {
            request = request.body(outbound.body.clone());
        }
        // The error's text names the URL, which is a secret for Slack: only its kind is kept.
        let failed = |error: reqwest::Error| {
            if error.is_timeout() {
                SendError::Timeout
            } else if error.is_connect() {
                SendError::Unreachable("connection failed".into())
            } else {
                SendError::Unreachable("request failed".into())
            }
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
            .collect();
        let body = response.bytes().await.map_err(failed)?.to_vec();
        Ok(HttpResponse { status, headers, body })
    }
}
