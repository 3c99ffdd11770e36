//! The dashboard's static page and assets, compiled into the function (and into `pyramid`), so
//! nothing is fetched from elsewhere at run time. The page reads only the public `/v1/` API, with
//! the caller's own token.

use engagement_http::HttpResponse;

const INDEX: &[u8] = include_bytes!("../dashboard/index.html");
const SCRIPT: &[u8] = include_bytes!("../dashboard/app.js");
const STYLE: &[u8] = include_bytes!("../dashboard/app.css");

/// The page's content security policy: its own script and style, its own API, nothing else.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The body and content type of the asset at exactly `path`, if it is one.
fn lookup(path: &str) -> Option<(&'static [u8], &'static str)> {
    match path {
        "/" => Some((INDEX, "text/html; charset=utf-8")),
        "/assets/app.js" => Some((SCRIPT, "text/javascript; charset=utf-8")),
        "/assets/app.css" => Some((STYLE, "text/css; charset=utf-8")),
        _ => None,
    }
}

/// The asset at exactly `path` (`/`, `/assets/app.js` or `/assets/app.css`), if it is one.
pub fn asset(path: &str) -> Option<HttpResponse> {
    let (body, content_type) = lookup(path)?;
    let mut response = http::Response::new(body.to_vec());
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    headers.insert(http::header::CONTENT_SECURITY_POLICY, http::HeaderValue::from_static(POLICY));
    headers.insert(http::header::X_CONTENT_TYPE_OPTIONS, http::HeaderValue::from_static("nosniff"));
    headers.insert(http::header::REFERRER_POLICY, http::HeaderValue::from_static("no-referrer"));
    // Revalidated each time: a deployment's new page is seen at once.
    headers.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
    Some(response)
}

/// Whether a path is exactly one of the dashboard's (served without a token: the page holds no
/// data). Exact, so no API path can pass for one.
pub fn is_asset_path(path: &str) -> bool {
    lookup(path).is_some()
}
