//! The API Gateway adapter: `lambda_http` requests in, neutral requests out, and back.

use crate::{HttpRequest, HttpResponse};

/// A `lambda_http` request (API Gateway HTTP API payload v2, REST, ALB) as a neutral request.
pub fn from_lambda(request: lambda_http::Request) -> HttpRequest {
    let (parts, body) = request.into_parts();
    http::Request::from_parts(parts, body.to_vec())
}

/// A neutral response as a `lambda_http` response (JSON bodies as text).
pub fn to_lambda(response: HttpResponse) -> lambda_http::Response<lambda_http::Body> {
    response.map(|bytes| match String::from_utf8(bytes) {
        Ok(text) => lambda_http::Body::Text(text),
        Err(error) => lambda_http::Body::Binary(error.into_bytes()),
    })
}
