//! Sources: a channel's own webhook (GitHub, Slack, Stripe, Mailchimp, ...) verified with the
//! channel's signature scheme and mapped to zero or more `POST /v1/interactions` objects, as a
//! TOML file declares (`builtin/*.toml`, or a user's file beside the rules).
//!
//! Pure: no I/O, no clock (callers pass `now`), no AWS types. The handler (`functions/sources`)
//! reads the secret through [`SourceSecrets`] and records what [`Source::map`] emits through
//! ingest's own path.

mod body;
mod catalog;
mod format;
mod map;
mod pointer;
mod source;
mod verify;

pub use catalog::Catalog;
pub use source::Source;

use std::future::Future;

/// What a channel sent: headers, decoded query parameters and the raw body (signatures are over
/// the exact bytes).
#[derive(Clone, Copy, Debug)]
pub struct Delivery<'a> {
    pub headers: &'a http::HeaderMap,
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
}

/// What a verified delivery comes to.
#[derive(Clone, Debug, PartialEq)]
pub enum Mapped {
    /// `POST /v1/interactions` wire objects, in mapping order.
    Interactions {
        interactions: Vec<serde_json::Value>,
        delivery_id: Option<String>,
    },
    /// Nothing to record, and a retry would not help (no mapping, a missing field, a bot).
    Ignored { reason: String, delivery_id: Option<String> },
    /// Slack's `url_verification`: answer the challenge.
    Challenge(String),
}

/// A delivery whose signature does not hold (answered 401). Never carries the secret or the
/// signature itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{header}: {reason}")]
pub struct Rejected {
    /// The field at fault: a header name, or a query parameter.
    pub header: String,
    pub reason: String,
}

/// A body that cannot be read (answered 400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct BadBody {
    pub reason: String,
}

/// The verification schemes a source file may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Github,
    HmacSha256,
    Stripe,
    Slack,
    Zendesk,
    StandardWebhooks,
    SecretInUrl,
    None,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Github => "github",
            Scheme::HmacSha256 => "hmac-sha256",
            Scheme::Stripe => "stripe",
            Scheme::Slack => "slack",
            Scheme::Zendesk => "zendesk",
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::SecretInUrl => "secret-in-url",
            Scheme::None => "none",
        }
    }

    /// Every scheme, for messages and docs.
    pub const ALL: [Scheme; 8] = [
        Scheme::Github,
        Scheme::HmacSha256,
        Scheme::Stripe,
        Scheme::Slack,
        Scheme::Zendesk,
        Scheme::StandardWebhooks,
        Scheme::SecretInUrl,
        Scheme::None,
    ];

    pub fn from_name(name: &str) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|scheme| scheme.name() == name)
    }

    /// Whether deliveries are checked against a secret (`none` is not).
    pub fn needs_secret(self) -> bool {
        self != Scheme::None
    }
}

/// The signing secret of each source (port). Adapters: Secrets Manager (shared/aws), files and
/// environment variables (pyramid).
pub trait SourceSecrets: Send + Sync {
    /// The source's secret; `None` when the source is not connected.
    fn secret(&self, source: &str) -> impl Future<Output = Result<Option<String>, SecretsError>> + Send;
}

/// The secrets could not be read: `Unavailable` answers 503 (a retry may succeed), `Malformed`
/// (unparsable, deleted or refused) 500, counted as an internal error so an alarm fires.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error("the source secrets are unavailable: {0}")]
    Unavailable(String),
    #[error("the source secrets are malformed: {0}")]
    Malformed(String),
}

/// A source file that cannot be used: which file, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("source file {file}: {reason}")]
pub struct DefinitionError {
    /// The file's path (or `builtin/<name>.toml`, or the source's name when no path is known).
    pub file: String,
    pub reason: String,
}
