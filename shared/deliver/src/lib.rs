//! Destinations: what each marketing or support tool receives for a domain event, built in typed
//! Rust (serde_json, never string concatenation), the tool's credentials added apart, and what
//! the tool's answer means (delivered, dead letter, revoked key, retry). Pure: no I/O, no clock,
//! no AWS types; the `deliver` function and `pyramid serve` send what this crate builds, so the
//! cloud and the one-machine mode send byte-identical requests.

mod auth;
mod classify;
mod destination;
mod tools;

pub use auth::{authorize, sign_standard_webhook, standard_webhook_key, AuthError, MIN_WEBHOOK_KEY_BYTES};
pub use classify::{backoff, classify, timestamp_of, Verdict, MAX_BACKOFF};
pub use destination::{parse_destinations, ConfigError, Destination, RawDestination, Region, Routing, Settings, Tool};
pub use tools::{mailchimp_subscriber_hash, ulid_of, KLAVIYO_REVISION};

use engagement::events::DomainEvent;
use std::fmt;

/// What the handler read about the customer (one read) for events that carry no handle
/// (`Level Changed`, `Engagement At Risk`), or opened from `Customer Erased` (its sealed e-mail).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryContext {
    /// The customer's e-mail identity.
    pub email: Option<String>,
    /// Whether the customer's latest decision on the `email` channel is a grant.
    pub email_consented: bool,
    /// Whether the customer has consent on any channel (tools that do not reach the customer
    /// themselves, Slack and Standard Webhooks, send only about customers who allowed contact).
    pub channel_consented: bool,
    /// The customer's name (Slack shows it only with `include_names`).
    pub name: Option<String>,
}

/// An HTTP method a tool's API takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request to a tool. Built without credentials ([`authorize`] adds them), so it can be
/// logged by its method and URL path, kept in an outbox, or compared across runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Stable per fact: what the tool deduplicates on, where it takes one (also in `headers`
    /// when the tool reads it from a header).
    pub idempotency_key: Option<String>,
}

impl Outbound {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Why an event is not sent to a destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// The destination's routing does not take it (detail-type, playbook, action or level).
    NotRouted,
    /// The customer withdrew consent on the tool's channel (or never gave any).
    NoConsent,
    /// No e-mail to find the customer by in an e-mail tool.
    NoEmail,
    /// The tool does nothing with this event (Slack and an erasure).
    Ignored,
}

impl SkipReason {
    /// A short code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::NotRouted => "not_routed",
            SkipReason::NoConsent => "no_consent",
            SkipReason::NoEmail => "no_email",
            SkipReason::Ignored => "ignored",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What to do for one event at one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Skip {
        reason: SkipReason,
    },
    /// The requests, in order; each is idempotent, so a retry sends them all again.
    Send(Vec<Outbound>),
}

/// Why no request could be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("destination `{destination}`: {reason}")]
    Invalid { destination: String, reason: String },
}

/// The requests `destination` receives for `event`, or why none.
pub fn build(destination: &Destination, event: &DomainEvent, context: &DeliveryContext) -> Result<Plan, BuildError> {
    tools::build(destination, event, context)
}
