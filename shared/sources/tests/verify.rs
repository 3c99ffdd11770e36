//! Each verification scheme against the vendor's documented example vector where the vendor
//! publishes one (GitHub, Slack, Standard Webhooks); otherwise against a vector computed with
//! Python's `hmac` module (an implementation independent of ours) following the vendor's
//! documented algorithm (Stripe, Zendesk, Shopify-style). The vendors' SDK vectors are in
//! `fixtures/signatures.json`. Every scheme also refuses a tampered body, a missing header and,
//! where signed, a timestamp outside 5 minutes either way.

use engagement::Timestamp;
use engagement_sources::{Delivery, Rejected, Scheme, Source};

/// A source with the given `[verification]` lines and one catch-all mapping.
fn source(verification: &str) -> Source {
    Source::from_toml(&format!(
        r#"
name = "test"
channel = "test"
[verification]
{verification}
[[mappings]]
name = "all"
[[mappings.emit]]
kind = "test.event"
id = "test:{{delivery}}"
occurred_at = "received"
handle = "/user"
"#
    ))
    .expect("a valid source")
}

fn at_unix(seconds: i64) -> Timestamp {
    Timestamp(seconds * 1000)
}

fn verify(
    source: &Source,
    headers: &[(&str, &str)],
    query: &[(&str, &str)],
    body: &[u8],
    secret: &str,
    now: Timestamp,
) -> Result<(), Rejected> {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            http::HeaderValue::from_str(value).expect("a header value"),
        );
    }
    let query: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    source.verify(
        &Delivery {
            headers: &map,
            query: &query,
            body,
        },
        Some(secret),
        now,
    )
}

fn rejected_on(result: Result<(), Rejected>, field: &str) -> String {
    match result {
        Err(rejected) => {
            assert_eq!(rejected.header.to_lowercase(), field.to_lowercase(), "{rejected:?}");
            rejected.reason
        }
        Ok(()) => panic!("accepted, but should be rejected on {field}"),
    }
}

// https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const GITHUB_SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

#[test]
fn github_accepts_its_documented_vector_and_refuses_tampering() {
    let github = source(r#"scheme = "github""#);
    let now = at_unix(1_700_000_000);
    let header = [("X-Hub-Signature-256", GITHUB_SIGNATURE)];
    assert_eq!(verify(&github, &header, &[], b"Hello, World!", GITHUB_SECRET, now), Ok(()));
    let reason = rejected_on(
        verify(&github, &header, &[], b"Hello, World?", GITHUB_SECRET, now),
        "X-Hub-Signature-256",
    );
    assert!(reason.contains("does not match"), "{reason}");
    rejected_on(
        verify(&github, &header, &[], b"Hello, World!", "another secret", now),
        "X-Hub-Signature-256",
    );
    let reason = rejected_on(
        verify(&github, &[], &[], b"Hello, World!", GITHUB_SECRET, now),
        "X-Hub-Signature-256",
    );
    assert_eq!(reason, "missing");
    let sha1 = [("X-Hub-Signature-256", "sha1=0123")];
    rejected_on(
        verify(&github, &sha1, &[], b"Hello, World!", GITHUB_SECRET, now),
        "X-Hub-Signature-256",
    );
}

#[test]
fn no_rejection_carries_the_secret_or_the_signature() {
    let github = source(r#"scheme = "github""#);
    let header = [("X-Hub-Signature-256", GITHUB_SIGNATURE)];
    let rejected = verify(&github, &header, &[], b"tampered", GITHUB_SECRET, at_unix(0)).expect_err("tampered");
    let text = format!("{rejected} {rejected:?}");
    assert!(!text.contains("757107ea") && !text.contains("Secret to Everybody"), "{text}");
}

#[test]
fn a_source_without_a_secret_refuses_everything() {
    let github = source(r#"scheme = "github""#);
    let headers = http::HeaderMap::new();
    let delivery = Delivery {
        headers: &headers,
        query: &[],
        body: b"{}",
    };
    assert!(github.verify(&delivery, None, at_unix(0)).is_err());
}

// https://api.slack.com/authentication/verifying-requests-from-slack (the worked example)
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_TIMESTAMP: &str = "1531420618";
const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SLACK_SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

#[test]
fn slack_accepts_its_documented_vector_within_five_minutes() {
    let slack = source(r#"scheme = "slack""#);
    let headers = [
        ("X-Slack-Signature", SLACK_SIGNATURE),
        ("X-Slack-Request-Timestamp", SLACK_TIMESTAMP),
    ];
    let signed_at = 1_531_420_618;
    for now in [signed_at, signed_at - 300, signed_at + 300] {
        assert_eq!(verify(&slack, &headers, &[], SLACK_BODY, SLACK_SECRET, at_unix(now)), Ok(()));
    }
    let reason = rejected_on(
        verify(&slack, &headers, &[], SLACK_BODY, SLACK_SECRET, at_unix(signed_at + 301)),
        "X-Slack-Request-Timestamp",
    );
    assert!(reason.contains("old"), "{reason}");
    let reason = rejected_on(
        verify(&slack, &headers, &[], SLACK_BODY, SLACK_SECRET, at_unix(signed_at - 301)),
        "X-Slack-Request-Timestamp",
    );
    assert!(reason.contains("future"), "{reason}");
    let mut tampered = SLACK_BODY.to_vec();
    tampered[0] = b'T';
    rejected_on(
        verify(&slack, &headers, &[], &tampered, SLACK_SECRET, at_unix(signed_at)),
        "X-Slack-Signature",
    );
    rejected_on(
        verify(&slack, &headers[..1], &[], SLACK_BODY, SLACK_SECRET, at_unix(signed_at)),
        "X-Slack-Request-Timestamp",
    );
}

// https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
// (the specification's example, used by every reference library's tests)
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STANDARD_BODY: &[u8] = br#"{"test": 2432232314}"#;

#[test]
fn standard_webhooks_accepts_the_specifications_vector() {
    let standard = source(r#"scheme = "standard-webhooks""#);
    let signed_at = 1_614_265_330;
    let headers = |signature: &'static str| {
        [
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", signature),
        ]
    };
    let good = headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    assert_eq!(
        verify(&standard, &good, &[], STANDARD_BODY, STANDARD_SECRET, at_unix(signed_at)),
        Ok(())
    );
    // One of several (a key rotation), space-separated.
    let rotating = headers("v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    assert_eq!(
        verify(&standard, &rotating, &[], STANDARD_BODY, STANDARD_SECRET, at_unix(signed_at)),
        Ok(())
    );
    rejected_on(
        verify(
            &standard,
            &good,
            &[],
            br#"{"test": 2432232315}"#,
            STANDARD_SECRET,
            at_unix(signed_at),
        ),
        "webhook-signature",
    );
    rejected_on(
        verify(&standard, &good, &[], STANDARD_BODY, STANDARD_SECRET, at_unix(signed_at + 301)),
        "webhook-timestamp",
    );
    rejected_on(
        verify(&standard, &good[1..], &[], STANDARD_BODY, STANDARD_SECRET, at_unix(signed_at)),
        "webhook-id",
    );
}

// Stripe's documented scheme (https://docs.stripe.com/webhooks#verify-manually): the header
// below was computed with Python's hmac over "t.body" with the secret as the key.
const STRIPE_SECRET: &str = "whsec_test_secret";
const STRIPE_BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;
const STRIPE_V1: &str = "0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd";

#[test]
fn stripe_accepts_any_v1_within_five_minutes() {
    let stripe = source(r#"scheme = "stripe""#);
    let signed_at = 1_700_000_000;
    let header = format!("t=1700000000,v1=ffff,v1={STRIPE_V1},v0=abcd");
    let headers = [("Stripe-Signature", header.as_str())];
    assert_eq!(
        verify(&stripe, &headers, &[], STRIPE_BODY, STRIPE_SECRET, at_unix(signed_at + 299)),
        Ok(())
    );
    let reason = rejected_on(
        verify(&stripe, &headers, &[], STRIPE_BODY, STRIPE_SECRET, at_unix(signed_at + 301)),
        "Stripe-Signature",
    );
    assert!(reason.contains("old"), "{reason}");
    let reason = rejected_on(
        verify(&stripe, &headers, &[], b"{}", STRIPE_SECRET, at_unix(signed_at)),
        "Stripe-Signature",
    );
    assert!(reason.contains("no v1 signature matches"), "{reason}");
    let v0_only = [("Stripe-Signature", "t=1700000000,v0=abcd")];
    rejected_on(
        verify(&stripe, &v0_only, &[], STRIPE_BODY, STRIPE_SECRET, at_unix(signed_at)),
        "Stripe-Signature",
    );
}

// Zendesk's documented algorithm (base64 HMAC-SHA256 of timestamp + body,
// https://developer.zendesk.com/documentation/webhooks/verifying/) with the static secret its
// docs give for test deliveries; the signature was computed with Python's hmac.
#[test]
fn zendesk_signs_timestamp_and_body_in_base64() {
    let zendesk = source(r#"scheme = "zendesk""#);
    let secret = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==";
    let body = br#"{"type":"zen:event-type:ticket.created","id":"1"}"#;
    let headers = [
        ("X-Zendesk-Webhook-Signature", "OlCFdbJD+U1zPnYdrldnHgxeZtyoZFoaqD7mesxwvMg="),
        ("X-Zendesk-Webhook-Signature-Timestamp", "2023-11-14T22:13:20Z"),
    ];
    let signed_at = 1_700_000_000;
    assert_eq!(verify(&zendesk, &headers, &[], body, secret, at_unix(signed_at)), Ok(()));
    rejected_on(
        verify(&zendesk, &headers, &[], b"{}", secret, at_unix(signed_at)),
        "X-Zendesk-Webhook-Signature",
    );
    rejected_on(
        verify(&zendesk, &headers, &[], body, secret, at_unix(signed_at - 301)),
        "X-Zendesk-Webhook-Signature-Timestamp",
    );
}

// Shopify's documented scheme (base64 HMAC-SHA256 of the body in X-Shopify-Hmac-Sha256); the
// signature was computed with Python's hmac. Also hex with a prefix (Discourse's shape).
#[test]
fn hmac_sha256_reads_base64_or_hex_with_a_prefix() {
    let body = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;
    let shopify = source(
        r#"scheme = "hmac-sha256"
header = "X-Shopify-Hmac-Sha256"
encoding = "base64""#,
    );
    let headers = [("X-Shopify-Hmac-Sha256", "D0UMXmhjwBRi4y66TmhJrDlhQABD7zI2fm3p6/QLMo8=")];
    assert_eq!(verify(&shopify, &headers, &[], body, "hush", at_unix(0)), Ok(()));
    rejected_on(verify(&shopify, &headers, &[], b"{}", "hush", at_unix(0)), "X-Shopify-Hmac-Sha256");
    rejected_on(verify(&shopify, &[], &[], body, "hush", at_unix(0)), "X-Shopify-Hmac-Sha256");

    let discourse = source(
        r#"scheme = "hmac-sha256"
header = "X-Discourse-Event-Signature"
encoding = "hex"
prefix = "sha256=""#,
    );
    let signed = "sha256=0f450c5e6863c01462e32eba4e6849ac3961400043ef32367e6de9ebf40b328f";
    let headers = [("X-Discourse-Event-Signature", signed)];
    assert_eq!(verify(&discourse, &headers, &[], body, "hush", at_unix(0)), Ok(()));
    let unprefixed = [("X-Discourse-Event-Signature", &signed[7..])];
    let reason = rejected_on(
        verify(&discourse, &unprefixed, &[], body, "hush", at_unix(0)),
        "X-Discourse-Event-Signature",
    );
    assert!(reason.contains("sha256="), "{reason}");
}

#[test]
fn secret_in_url_compares_the_parameter() {
    let mailchimp = source(
        r#"scheme = "secret-in-url"
parameter = "secret""#,
    );
    assert_eq!(verify(&mailchimp, &[], &[("secret", "s3cr3t")], b"", "s3cr3t", at_unix(0)), Ok(()));
    rejected_on(verify(&mailchimp, &[], &[("secret", "s3cr3")], b"", "s3cr3t", at_unix(0)), "secret");
    rejected_on(verify(&mailchimp, &[], &[], b"", "s3cr3t", at_unix(0)), "secret");
}

#[test]
fn none_accepts_anything_but_only_when_the_file_says_unverified() {
    let open = source(
        r#"scheme = "none"
unverified = true"#,
    );
    assert_eq!(open.scheme(), Scheme::None);
    assert_eq!(verify(&open, &[], &[], b"{}", "", at_unix(0)), Ok(()));
}
