//! Our verifiers accept what the vendors' own SDKs sign (`fixtures/signatures.json`, made by
//! `tests/tools/source-signatures/generate` with @octokit/webhooks-methods, stripe, slack_sdk and
//! standardwebhooks), and refuse the same delivery with its body changed or, where the scheme
//! signs a time, when it arrives too late.

use engagement::Timestamp;
use engagement_sources::{Catalog, Delivery, Scheme, Source};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
struct Vector {
    source: String,
    scheme: String,
    fixture: String,
    secret: String,
    now: String,
    headers: BTreeMap<String, String>,
}

fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn vectors() -> Vec<Vector> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/signatures.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("signatures.json holds vectors")
}

/// The built-in source of that name (checked to use the vector's scheme), or, for a scheme no
/// built-in source uses, a source that only names it.
fn source_for(vector: &Vector) -> Source {
    if let Some(source) = Catalog::builtin().get(&vector.source) {
        assert_eq!(
            source.scheme().name(),
            vector.scheme,
            "the built-in {} source's scheme",
            vector.source
        );
        return source.clone();
    }
    let text = format!(
        r#"
name = {:?}
channel = "test"
[verification]
scheme = {:?}
[[mappings]]
name = "any"
[[mappings.emit]]
kind = "test.delivered"
id = "test:delivered"
occurred_at = "received"
handle = "/nobody"
"#,
        vector.source, vector.scheme
    );
    Source::from_toml(&text).unwrap_or_else(|e| panic!("{e}"))
}

fn headers(vector: &Vector) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in &vector.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("a header name");
        map.insert(name, HeaderValue::from_str(value).expect("a header value"));
    }
    map
}

fn verify(vector: &Vector, body: &[u8], now: Timestamp) -> Result<(), engagement_sources::Rejected> {
    let headers = headers(vector);
    let delivery = Delivery {
        headers: &headers,
        query: &[],
        body,
    };
    source_for(vector).verify(&delivery, Some(&vector.secret), now)
}

fn body(vector: &Vector) -> Vec<u8> {
    let path = repository_root().join(&vector.fixture);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn now(vector: &Vector) -> Timestamp {
    Timestamp::parse_rfc3339(&vector.now).expect("an RFC 3339 time")
}

#[test]
fn every_scheme_with_a_vendor_sdk_has_a_vector() {
    let schemes: Vec<String> = vectors().into_iter().map(|vector| vector.scheme).collect();
    for scheme in [Scheme::Github, Scheme::Stripe, Scheme::Slack, Scheme::StandardWebhooks] {
        assert!(schemes.iter().any(|s| s == scheme.name()), "a vector for {}", scheme.name());
    }
}

#[test]
fn what_the_vendors_sdks_sign_is_accepted() {
    for vector in vectors() {
        let verified = verify(&vector, &body(&vector), now(&vector));
        assert_eq!(verified, Ok(()), "{} ({})", vector.source, vector.fixture);
    }
}

#[test]
fn a_changed_body_is_refused() {
    for vector in vectors() {
        let mut tampered = body(&vector);
        // One byte of the payload, as a proxy or an attacker would change an amount or a login.
        let middle = tampered.len() / 2;
        tampered[middle] ^= 0x01;
        let refused = verify(&vector, &tampered, now(&vector)).expect_err("a changed body is refused");
        assert!(!refused.reason.contains(&vector.secret), "the reason never shows the secret");
        for value in vector.headers.values().filter(|v| v.len() > 20) {
            assert!(!refused.reason.contains(value.as_str()), "the reason never shows the signature");
        }
    }
}

#[test]
fn a_wrong_secret_is_refused() {
    for mut vector in vectors() {
        let body = body(&vector);
        let now = now(&vector);
        vector.secret = match vector.secret.strip_prefix("whsec_") {
            // standard-webhooks secrets are base64 after the prefix: keep it decodable.
            Some(_) => "whsec_d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==".to_string(),
            None => format!("{}x", vector.secret),
        };
        assert!(verify(&vector, &body, now).is_err(), "{} with another secret", vector.source);
    }
}

#[test]
fn a_stale_or_early_delivery_is_refused_where_the_scheme_signs_its_time() {
    const MINUTE: i64 = 60_000;
    for vector in vectors().into_iter().filter(|vector| vector.scheme != "github") {
        let body = body(&vector);
        let signed_at = now(&vector).minus_millis(30_000);
        // Within the 5-minute tolerance on either side: accepted.
        for offset in [-5 * MINUTE + 1_000, 5 * MINUTE - 1_000] {
            let at = signed_at.plus_millis(offset);
            assert_eq!(verify(&vector, &body, at), Ok(()), "{} at {offset} ms", vector.source);
        }
        for offset in [6 * MINUTE, -6 * MINUTE, 24 * 60 * MINUTE] {
            let at = signed_at.plus_millis(offset);
            assert!(
                verify(&vector, &body, at).is_err(),
                "{} {offset} ms from its signing time",
                vector.source
            );
        }
    }
}

#[test]
fn github_signs_no_time_so_a_late_redelivery_is_accepted() {
    // GitHub's "Redeliver" button resends the original signed body days later.
    for vector in vectors().into_iter().filter(|vector| vector.scheme == "github") {
        let later = now(&vector).plus_days(3.0);
        assert_eq!(verify(&vector, &body(&vector), later), Ok(()));
    }
}
