//! The API Gateway adapter: `lambda_http` requests in, neutral requests out, and back.

use crate::{HttpRequest, HttpResponse, RequestId};
use lambda_http::request::RequestContext;
use lambda_http::RequestExt as _;

/// A `lambda_http` request (API Gateway HTTP API payload v2, REST, ALB) as a neutral request,
/// with its `RequestId`: API Gateway's, or else the Lambda invocation's.
pub fn from_lambda(request: lambda_http::Request) -> HttpRequest {
    let gateway_id = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone(),
        _ => None,
    };
    let id = gateway_id.or_else(|| request.lambda_context_ref().map(|context| context.request_id.clone()));
    let (mut parts, body) = request.into_parts();
    if let Some(id) = id {
        parts.extensions.insert(RequestId(id));
    }
    http::Request::from_parts(parts, body.to_vec())
}

/// A neutral response as a `lambda_http` response (JSON bodies as text).
pub fn to_lambda(response: HttpResponse) -> lambda_http::Response<lambda_http::Body> {
    response.map(|bytes| match String::from_utf8(bytes) {
        Ok(text) => lambda_http::Body::Text(text),
        Err(error) => lambda_http::Body::Binary(error.into_bytes()),
    })
}
