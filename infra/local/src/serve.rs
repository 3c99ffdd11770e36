//! `pyramid serve`: the functions' HTTP API on one port, behind a bearer token (except the
//! channels' webhooks, `/v1/sources/{source}`, which their signatures authenticate).

use crate::erased::ErasedPerson;
use crate::local::Stack;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use engagement::ports::{CustomerId, CustomerReads as _};
use engagement_http::{HttpResponse, Problem};
use std::sync::Arc;

/// Bodies larger than this are refused before they are read (ingest's and the sources' own
/// limit is 1 MiB, and they answer 413 with a problem for anything between).
const BODY_LIMIT: usize = 2 * 1024 * 1024;

#[derive(Clone)]
pub struct Served {
    pub stack: Arc<Stack>,
    pub token: Arc<String>,
}

fn to_axum(response: HttpResponse) -> Response {
    response.map(Body::from)
}

fn authorized(request: &http::Request<Body>, token: &str) -> bool {
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Constant-time comparison: the token is the only thing between a laptop's port and its data.
    presented.len() == token.len() && presented.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn handle(State(served): State<Served>, request: http::Request<Body>) -> Response {
    let path = request.uri().path().to_string();
    if path == "/healthz" {
        return to_axum(engagement_http::json_response(200, &serde_json::json!({"status": "ok"})));
    }
    // The dashboard's page and assets hold no data: the page asks for the token and sends it
    // with each API call.
    if api::dashboard::is_asset_path(&path) {
        let (parts, _) = request.into_parts();
        return to_axum(served.stack.api.handle(http::Request::from_parts(parts, Vec::new())).await);
    }
    // A channel cannot send our token: its own signature authenticates the delivery.
    if is_source_path(&path) {
        let (parts, body) = request.into_parts();
        let bytes = match read_body(body, &path).await {
            Ok(bytes) => bytes,
            Err(response) => return response,
        };
        return to_axum(served.stack.sources.handle(http::Request::from_parts(parts, bytes)).await);
    }
    if !authorized(&request, &served.token) {
        let mut response = Problem::new(
            401,
            "unauthorized",
            "Unauthorized",
            "send the token pyramid printed at start (also in DATA_DIR/token) as `Authorization: Bearer <token>`",
        )
        .at(&path)
        .response();
        response
            .headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        return to_axum(response);
    }
    let (parts, body) = request.into_parts();
    let bytes = match read_body(body, &path).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let request = http::Request::from_parts(parts, bytes);
    let response = if path == "/v1/interactions" || path == "/v1/interactions/" {
        served.stack.ingest.handle(request).await
    } else if let Some(id) = erased_customer(&request) {
        erase(&served.stack, id, request).await
    } else {
        served.stack.api.handle(request).await
    };
    to_axum(response)
}

async fn read_body(body: Body, path: &str) -> Result<Vec<u8>, Response> {
    match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(_) => Err(to_axum(
            Problem::new(413, "too-large", "Request too large", "the body is larger than 1 MiB")
                .at(path)
                .response(),
        )),
    }
}

/// `/v1/sources/{source}`: one non-empty segment after the prefix.
fn is_source_path(path: &str) -> bool {
    path.strip_prefix("/v1/sources/")
        .is_some_and(|source| !source.is_empty() && !source.contains('/'))
}

/// The customer a `DELETE /v1/customers/{id}` erases.
fn erased_customer(request: &http::Request<Vec<u8>>) -> Option<CustomerId> {
    let id = request.uri().path().strip_prefix("/v1/customers/")?;
    (request.method() == http::Method::DELETE && !id.is_empty() && !id.contains('/')).then(|| CustomerId(id.to_string()))
}

/// The API's erasure, then the data directory's scrub: answered once nothing readable about
/// the person is left in the logs or the database's files.
async fn erase(stack: &Stack, id: CustomerId, request: http::Request<Vec<u8>>) -> HttpResponse {
    // Who they are, while the store still knows: the logs name them by handle and id.
    let person = stack.store.load_customer(&id).await.ok().flatten().map(|c| ErasedPerson::of(&c));
    let response = stack.api.handle(request).await;
    if response.status() == http::StatusCode::NO_CONTENT {
        let mut person = person.unwrap_or_default();
        if !person.customer_ids.contains(&id.0) {
            person.customer_ids.push(id.0.clone());
        }
        // The store has erased them and the marketing tools are told: the answer stays 204.
        if let Err(error) = stack.erasure.after_erasure(person).await {
            tracing::error!(customer_id = %id, %error, "erased, but the data directory is not scrubbed yet; retried later and at the next erasure or start");
        }
    }
    response
}

pub fn app(served: Served) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(served)
}
