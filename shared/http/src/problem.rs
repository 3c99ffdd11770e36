//! RFC 9457 problem details: every HTTP error is `application/problem+json`, names the field
//! at fault (a JSON path into the body, or `query.<name>` / `path.<name>`) and the reason.

use crate::{respond, HttpResponse, PROBLEM_JSON};
use engagement::interaction::FieldError;
use engagement::ports::{BusError, StoreError};
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
    /// On server errors (5xx): the request's id, to quote when reporting it; the log line that
    /// says what happened carries the same id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// What happened inside, for that log line only: never sent (SDK text names tables, keys,
    /// endpoints and the engine's internals).
    #[serde(skip)]
    pub cause: Option<String>,
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
            request_id: None,
            cause: None,
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

    /// 500: a failure a retry cannot fix (refused by the store or bus, unreadable data).
    pub fn internal() -> Problem {
        Problem::new(
            500,
            "internal",
            "Internal error",
            "something went wrong on our side; it was logged: quote request_id when reporting it",
        )
    }

    pub fn at(mut self, instance: &str) -> Problem {
        self.instance = Some(instance.to_string());
        self
    }

    /// Keeps what happened inside for the log (see `answer`), never for the client.
    pub fn because(mut self, cause: impl Into<String>) -> Problem {
        self.cause = Some(cause.into());
        self
    }

    /// The response to the request `request_id`. A server error carries the id and is logged
    /// with it and its cause: a 500 at error level (an operator has to act), a 503 at warn
    /// (it passes; the client retries).
    pub fn answer(mut self, request_id: &str) -> HttpResponse {
        if self.status >= 500 {
            self.request_id = Some(request_id.to_string());
            let cause = self.cause.as_deref().unwrap_or(self.detail.as_str());
            if self.status == 500 {
                tracing::error!(request_id, status = self.status, problem = %self.kind, cause, "answered with a server error");
            } else {
                tracing::warn!(request_id, status = self.status, problem = %self.kind, cause, "answered with a server error");
            }
        }
        self.response()
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

/// A store failure as the client sees it: what it means for them, nothing of the store's text
/// (that goes to the log, through `Problem::answer`).
pub fn store_problem(error: &StoreError) -> Problem {
    match error {
        StoreError::Unavailable(_) | StoreError::Contention(_) => {
            Problem::unavailable("the store is busy or cannot be reached; nothing was changed, retry later").because(error.to_string())
        }
        StoreError::InvalidCursor => Problem::invalid_field("query.cursor", "not a cursor this listing gave"),
        // Erased customers are not told apart from unknown ones: that a person was here is
        // itself personal data.
        StoreError::NotFound(_) | StoreError::Erased(_) => Problem::not_found("no such customer"),
        StoreError::Rejected(_) | StoreError::Corrupt(_) => Problem::internal().because(error.to_string()),
    }
}

/// A publish failure as the client sees it; `retry` tells them what a retry does.
pub fn bus_problem(error: &BusError, retry: &str) -> Problem {
    if error.is_retryable() {
        Problem::unavailable(retry).because(error.to_string())
    } else {
        Problem::internal().because(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_carry_the_request_id_and_never_the_cause() {
        let sdk_text = "GetItem: service error: ResourceNotFoundException: Requested resource not found: table engagement";
        for error in [StoreError::Rejected(sdk_text.into()), StoreError::Unavailable(sdk_text.into())] {
            let response = store_problem(&error).at("/v1/pyramid").answer("req-7");
            let body = String::from_utf8(response.body().clone()).expect("utf-8");
            let problem: serde_json::Value = serde_json::from_str(&body).expect("json");
            assert_eq!(problem["request_id"], "req-7");
            assert!(!body.contains("ResourceNotFound") && !body.contains("GetItem"), "{body}");
            let retry_after = response.headers().get(http::header::RETRY_AFTER);
            match error {
                StoreError::Rejected(_) => assert_eq!((problem["status"].as_u64(), retry_after), (Some(500), None)),
                _ => assert_eq!((problem["status"].as_u64(), retry_after.is_some()), (Some(503), true)),
            }
        }
        let client_error = Problem::not_found("no such customer").answer("req-8");
        assert!(!String::from_utf8_lossy(client_error.body()).contains("req-8"));
    }
}
