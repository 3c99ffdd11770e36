//! What the HTTP functions (ingest, api) share, framework-neutral: handlers take an
//! `http::Request<Vec<u8>>` and return an `http::Response<Vec<u8>>`, so API Gateway (through
//! `lambda_http`), `pyramid serve` (through axum) and the tests all drive the same code.

pub mod cursor;
pub mod lambda;
pub mod outbox;
pub mod problem;

pub use cursor::CursorSigner;
pub use problem::{bus_problem, store_problem, Problem};

use serde::Serialize;

pub type HttpRequest = http::Request<Vec<u8>>;
pub type HttpResponse = http::Response<Vec<u8>>;

pub const JSON: &str = "application/json";
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A request's id, set by the front door: in AWS, API Gateway's (`requestContext.requestId`, also
/// in its access log and its `apigw-requestid` header). Without one (`pyramid serve`, tests) the
/// handler makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The request's id, or a new one when no front door gave it one.
pub fn request_id(request: &HttpRequest) -> String {
    match request.extensions().get::<RequestId>() {
        Some(RequestId(id)) => id.clone(),
        None => new_request_id(),
    }
}

/// A new request id (not a secret: it only has to be unique enough to find one log line).
pub fn new_request_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// A JSON response.
pub fn json_response(status: u16, body: &impl Serialize) -> HttpResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    respond(status, JSON, bytes)
}

pub(crate) fn respond(status: u16, content_type: &str, body: Vec<u8>) -> HttpResponse {
    let mut response = http::Response::new(body);
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    response
}

/// The path's segments after the API version (`/v1/customers/cus_1` → `["customers", "cus_1"]`),
/// whatever stage prefix API Gateway put before it. `None` if the path has no `/v1/`.
pub fn route(request: &HttpRequest) -> Option<Vec<String>> {
    let path = request.uri().path();
    let start = path
        .find("/v1/")
        .map(|at| at + 4)
        .or_else(|| path.ends_with("/v1").then_some(path.len()))?;
    Some(
        path[start..]
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(|segment| percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned())
            .collect(),
    )
}

/// The query string's parameters, decoded, in order.
pub fn query(request: &HttpRequest) -> Vec<(String, String)> {
    request
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// The first value of a query parameter.
pub fn query_param<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

/// True if the request declares a JSON body (or declares nothing, as curl users often do).
pub fn has_json_body(request: &HttpRequest) -> bool {
    match request.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(value) => {
            let media = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            media == JSON || (media.starts_with("application/") && media.ends_with("+json"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str) -> HttpRequest {
        http::Request::builder().uri(uri).body(Vec::new()).expect("a request")
    }

    #[test]
    fn routes_ignore_a_stage_prefix_and_decode_segments() {
        assert_eq!(
            route(&get("/prod/v1/customers/cus_1/consent/email")),
            Some(vec!["customers".into(), "cus_1".into(), "consent".into(), "email".into()])
        );
        assert_eq!(route(&get("/v1/customers/a%2Fb")), Some(vec!["customers".into(), "a/b".into()]));
        assert_eq!(route(&get("/healthz")), None);
    }

    #[test]
    fn query_parameters_are_decoded() {
        let q = query(&get("/v1/customers/by-identity?channel=email&handle=maya%2Bnews%40example.com"));
        assert_eq!(query_param(&q, "handle"), Some("maya+news@example.com"));
        assert_eq!(query_param(&q, "missing"), None);
    }
}
