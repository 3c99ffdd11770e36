//! Verification plus mapping of a real GitHub delivery (a ~25 KB `pull_request` opened payload
//! from @octokit/webhooks-examples): the whole of the sources route's own work before ingest.
//! Target: median ≤ 200 µs on a 2-core machine.

use criterion::{criterion_group, criterion_main, Criterion};
use engagement::Timestamp;
use engagement_sources::{Catalog, Delivery, Mapped};
use hmac::{Hmac, Mac};
use std::hint::black_box;

const PAYLOAD: &[u8] = include_bytes!("../fixtures/github/pull_request.opened.json");
const SECRET: &str = "bench-secret";

fn verify_and_map(c: &mut Criterion) {
    let catalog = Catalog::builtin();
    let github = catalog.get("github").expect("the built-in GitHub source");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(PAYLOAD);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-github-event", http::HeaderValue::from_static("pull_request"));
    headers.insert(
        "x-github-delivery",
        http::HeaderValue::from_static("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    );
    headers.insert("content-type", http::HeaderValue::from_static("application/json"));
    headers.insert(
        "x-hub-signature-256",
        http::HeaderValue::from_str(&format!("sha256={hex}")).expect("a header value"),
    );
    let delivery = Delivery {
        headers: &headers,
        query: &[],
        body: PAYLOAD,
    };
    let now = Timestamp::parse_rfc3339("2026-03-03T09:30:00Z").expect("a time");
    // The bench measures a delivery that is recorded, not one refused early.
    github.verify(&delivery, Some(SECRET), now).expect("verified");
    assert!(matches!(
        github.map(&delivery, now).expect("mapped"),
        Mapped::Interactions { ref interactions, .. } if !interactions.is_empty()
    ));
    c.bench_function("verify_and_map_github_pull_request_25kb", |b| {
        b.iter(|| {
            let delivery = black_box(&delivery);
            github.verify(delivery, Some(SECRET), now).expect("verified");
            black_box(github.map(delivery, now).expect("mapped"))
        })
    });
}

criterion_group!(benches, verify_and_map);
criterion_main!(benches);
