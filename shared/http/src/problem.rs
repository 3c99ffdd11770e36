//! RFC 9457 problem details: every HTTP error is `application/problem+json`, names the field
//! at fault (a JSON path into the body, or `query.<name>` / `path.<name>`) and the reason.

use crate::{respond, HttpResponse, PROBLEM_JSON};
use engagement::interaction::FieldError;
use engagement::ports::StoreError;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Problem {
    /// A URN per kind of problem, stable for clients to match on.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Every field at fault, with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Seconds to wait before retrying (also sent as `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u32>,
    /// The methods a path takes, for 405 (sent as the `Allow` header, not in the body).
    #[serde(skip)]
    pub allow: Option<String>,
}

impl Problem {
    pub fn new(status: u16, slug: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("urn:engagement:problem:{slug}"),
            title: title.to_string(),
            status,
            detail: detail.into(),
            instance: None,
            errors: Vec::new(),
            retry_after: None,
            allow: None,
        }
    }

    /// 400: the request is malformed; `errors` says where and why. Nothing was written.
    pub fn invalid(errors: Vec<FieldError>) -> Problem {
        let detail = match errors.as_slice() {
            [only] => only.to_string(),
            _ => format!("{} problems in the request; nothing was written", errors.len()),
        };
        Problem {
            errors,
            ..Problem::new(400, "invalid-request", "The request is invalid", detail)
        }
    }

    /// 400 for one field.
    pub fn invalid_field(path: &str, reason: impl Into<String>) -> Problem {
        Problem::invalid(vec![FieldError {
            path: path.to_string(),
            reason: reason.into(),
        }])
    }

    pub fn not_found(what: impl Into<String>) -> Problem {
        Problem::new(404, "not-found", "Not found", what)
    }

    pub fn method_not_allowed(method: &str, path: &str) -> Problem {
        Problem::new(
            405,
            "method-not-allowed",
            "Method not allowed",
            format!("{method} is not allowed on {path}"),
        )
    }

    /// 405 naming the methods the path takes (sent as `Allow` too, as RFC 9110 asks).
    pub fn method_not_allowed_but(method: &str, path: &str, allowed: &[&str]) -> Problem {
        Problem {
            allow: Some(allowed.join(", ")),
            detail: format!("{method} is not allowed on {path}; use {}", allowed.join(" or ")),
            ..Problem::method_not_allowed(method, path)
        }
    }

    pub fn unsupported_media_type() -> Problem {
        Problem {
            errors: vec![FieldError {
                path: "header.content-type".into(),
                reason: "must be application/json".into(),
            }],
            ..Problem::new(415, "unsupported-media-type", "Unsupported media type", "the body must be JSON")
        }
    }

    /// 503: the store or bus is unavailable after retries; the client should retry later.
    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem {
            retry_after: Some(5),
            ..Problem::new(503, "unavailable", "Temporarily unavailable", detail)
        }
    }

    pub fn internal() -> Problem {
        Problem::new(500, "internal", "Internal error", "something went wrong on our side; it was logged")
    }

    pub fn at(mut self, instance: &str) -> Problem {
        self.instance = Some(instance.to_string());
        self
    }

    pub fn response(&self) -> HttpResponse {
        let body = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = respond(self.status, PROBLEM_JSON, body);
        if let Some(seconds) = self.retry_after.and_then(|s| http::HeaderValue::from_str(&s.to_string()).ok()) {
            response.headers_mut().insert(http::header::RETRY_AFTER, seconds);
        }
        if let Some(allow) = self.allow.as_deref().and_then(|a| http::HeaderValue::from_str(a).ok()) {
            response.headers_mut().insert(http::header::ALLOW, allow);
        }
        response
    }
}

/// A store failure as the client sees it.
pub fn store_problem(error: &StoreError) -> Problem {
    match error {
        StoreError::Unavailable(_) | StoreError::Contention(_) => Problem::unavailable(error.to_string()),
        StoreError::InvalidCursor => Problem::invalid_field("query.cursor", "not a cursor this listing gave"),
        // Erased customers are not told apart from unknown ones: that a person was here is
        // itself personal data.
        StoreError::NotFound(_) | StoreError::Erased(_) => Problem::not_found("no such customer"),
        StoreError::Corrupt(_) => {
            tracing::error!(%error, "stored data could not be read");
            Problem::internal()
        }
    }
}
