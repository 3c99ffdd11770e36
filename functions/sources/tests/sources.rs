//! The sources handler against the real store (dynoxide) and bus (moto's EventBridge), with a
//! small test source (`fixtures/forge.toml`, GitHub's scheme and shape): what a channel's
//! delivery records, and that every refused or ignored delivery writes nothing.

use engagement::events::DEFAULT_SOURCE;
use engagement::{Rules, Timestamp};
use engagement_aws::client::{local_dynamodb, local_eventbridge};
use engagement_aws::{DynamoStore, EventBridgeBus, RequestCounter, StoreConfig};
use engagement_sources::{Catalog, SecretsError, SourceSecrets};
use engagement_testkit::{dynoxide_endpoint, moto_endpoint, sign_github, unique_name, ManualClock};
use hmac::{Hmac, Mac};
use ingest::Ingest;
use serde_json::{json, Value};
use sources::Sources;
use std::collections::BTreeMap;
use std::sync::Arc;

const SECRET: &str = "forge-test-secret";
const MERGED: &str = include_str!("fixtures/pull_request_merged.json");

/// Secrets held in memory (the port's adapters are Secrets Manager and files; this is the port).
/// The second field, when set, is what every read fails with.
#[derive(Clone, Default)]
struct Secrets(BTreeMap<String, String>, Option<SecretsError>);

impl SourceSecrets for Secrets {
    async fn secret(&self, source: &str) -> Result<Option<String>, SecretsError> {
        match &self.1 {
            Some(error) => Err(error.clone()),
            None => Ok(self.0.get(source).cloned()),
        }
    }
}

struct World {
    sources: Sources<DynamoStore, EventBridgeBus, ManualClock, Secrets>,
    requests: RequestCounter,
}

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-03-03T09:30:00Z").expect("a time")
}

async fn world() -> World {
    let rules = Arc::new(Rules::default_rules());
    let requests = RequestCounter::default();
    let store = DynamoStore::new(
        local_dynamodb(dynoxide_endpoint(), Some(requests.clone())),
        Arc::clone(&rules),
        StoreConfig {
            table: unique_name("sources"),
            salt: "sources-tests".into(),
            omit_request_tokens: true,
        },
    );
    store.create_table().await.expect("a table");
    let events = local_eventbridge(moto_endpoint());
    let bus_name = unique_name("engagement");
    events.create_event_bus().name(&bus_name).send().await.expect("a bus");
    let catalog = Catalog::with_files([("fixtures/forge.toml", include_str!("fixtures/forge.toml"))]).expect("the test source loads");
    requests.reset();
    World {
        sources: Sources {
            ingest: Ingest {
                store,
                bus: EventBridgeBus::new(events, bus_name, DEFAULT_SOURCE),
                clock: ManualClock::at(now()),
                rules,
            },
            catalog: Arc::new(catalog),
            secrets: Secrets(BTreeMap::from([("forge".to_string(), SECRET.to_string())]), None),
        },
        requests,
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

impl World {
    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        let mut request = http::Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self.sources.handle(request.body(body.to_vec()).expect("a request")).await;
        Answer {
            status: response.status().as_u16(),
            content_type: response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            body: serde_json::from_slice(response.body()).unwrap_or(Value::Null),
        }
    }

    /// A GitHub-style delivery of `body`, signed with the source's secret.
    async fn deliver(&self, event: &str, delivery: &str, body: &[u8]) -> Answer {
        let signature = sign_github(SECRET, body);
        let headers = [
            ("X-GitHub-Event", event),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", signature.as_str()),
            ("Content-Type", "application/json"),
        ];
        self.send("POST", "/v1/sources/forge", &headers, body).await
    }
}

fn assert_problem(answer: &Answer, status: u16, field: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(answer.content_type, "application/problem+json", "{answer:?}");
    assert_eq!(answer.body["errors"][0]["path"], field, "{answer:?}");
}

#[tokio::test]
async fn a_merged_pull_request_is_recorded_once_and_its_redelivery_changes_nothing() {
    let world = world().await;
    let answer = world.deliver("pull_request", "d-1", MERGED.as_bytes()).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(answer.body["source"], "forge");
    assert_eq!(answer.body["delivery_id"], "d-1");
    assert_eq!(answer.body["status"], "recorded");
    let outcomes = answer.body["interactions"].as_array().expect("outcomes");
    let ids: Vec<&Value> = outcomes.iter().map(|o| &o["id"]).collect();
    assert_eq!(
        ids,
        [
            &json!("forge:pull_request:279147437:merged:author"),
            &json!("forge:pull_request:279147437:merged:merger")
        ]
    );
    assert!(outcomes.iter().all(|o| o["status"] == "recorded"), "{outcomes:?}");
    // Author and merger are two customers.
    assert_ne!(outcomes[0]["customer_id"], outcomes[1]["customer_id"]);

    // The same fact again (GitHub's redelivery, or an organisation hook beside a repository
    // hook: another delivery id): duplicates, same customers.
    let again = world.deliver("pull_request", "d-2", MERGED.as_bytes()).await;
    assert_eq!(again.status, 202, "{again:?}");
    let repeated = again.body["interactions"].as_array().expect("outcomes");
    assert!(repeated.iter().all(|o| o["status"] == "duplicate"), "{repeated:?}");
    assert_eq!(repeated[0]["customer_id"], outcomes[0]["customer_id"]);
}

#[tokio::test]
async fn a_tampered_body_is_refused_and_nothing_is_written() {
    let world = world().await;
    let signature = sign_github(SECRET, MERGED.as_bytes());
    let tampered = MERGED.replace("Codertocat\", \"id\"", "Mallory\", \"id\"");
    assert_ne!(tampered, MERGED);
    let headers = [("X-GitHub-Event", "pull_request"), ("X-Hub-Signature-256", signature.as_str())];
    let answer = world.send("POST", "/v1/sources/forge", &headers, tampered.as_bytes()).await;
    assert_problem(&answer, 401, "header.X-Hub-Signature-256");
    let text = answer.body.to_string();
    assert!(!text.contains(&signature[7..]) && !text.contains(SECRET), "{text}");
    assert_eq!(world.requests.total(), 0, "nothing read or written");
}

#[tokio::test]
async fn a_missing_signature_is_refused_naming_the_header() {
    let world = world().await;
    let answer = world
        .send(
            "POST",
            "/v1/sources/forge",
            &[("X-GitHub-Event", "pull_request")],
            MERGED.as_bytes(),
        )
        .await;
    assert_problem(&answer, 401, "header.X-Hub-Signature-256");
    assert_eq!(answer.body["errors"][0]["reason"], "missing");
    assert_eq!(world.requests.total(), 0);
}

/// Slack's v0 signature of `body` sent at `timestamp` (Unix seconds), under `SECRET`.
fn slack_signature(timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("v0={hex}")
}

#[tokio::test]
async fn a_stale_timestamp_is_refused() {
    // Slack's scheme signs a timestamp: one older than 5 minutes is a replay.
    let mut world = world().await;
    let slack = r#"
name = "chat"
channel = "slack"
[verification]
scheme = "slack"
[[mappings]]
name = "message"
[[mappings.emit]]
kind = "forum_posted"
id = "chat:{/event_id}"
occurred_at = "/event_time"
time_format = "unix"
handle = "/event/user"
"#;
    world.sources.catalog = Arc::new(Catalog::with_files([("chat.toml", slack)]).expect("loads"));
    world.sources.secrets.0.insert("chat".into(), SECRET.into());
    let body = br#"{"type":"event_callback","event_id":"Ev1","event_time":1772529600,"event":{"type":"message","user":"U1"}}"#;
    let signed_at = (now().millis() / 1000 - 301).to_string();
    let signature = slack_signature(&signed_at, body);
    let headers = [
        ("X-Slack-Signature", signature.as_str()),
        ("X-Slack-Request-Timestamp", signed_at.as_str()),
    ];
    let answer = world.send("POST", "/v1/sources/chat", &headers, body).await;
    assert_problem(&answer, 401, "header.X-Slack-Request-Timestamp");
    assert_eq!(world.requests.total(), 0);

    // The same delivery signed now is recorded; its url_verification is answered.
    let fresh = (now().millis() / 1000).to_string();
    let challenge = br#"{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#;
    let signature = slack_signature(&fresh, challenge);
    let headers = [
        ("X-Slack-Signature", signature.as_str()),
        ("X-Slack-Request-Timestamp", fresh.as_str()),
    ];
    let answer = world.send("POST", "/v1/sources/chat", &headers, challenge).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.body,
        json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );
    assert_eq!(world.requests.total(), 0);
}

#[tokio::test]
async fn unknown_and_unconnected_sources_are_not_found() {
    let mut world = world().await;
    let answer = world.deliver("pull_request", "d-1", MERGED.as_bytes()).await;
    assert_eq!(answer.status, 202);
    let answer = world.send("POST", "/v1/sources/nowhere", &[], b"{}").await;
    assert_eq!(answer.status, 404, "{answer:?}");
    assert_eq!(answer.content_type, "application/problem+json");
    world.sources.secrets.0.clear();
    let answer = world.deliver("pull_request", "d-1", MERGED.as_bytes()).await;
    assert_eq!(answer.status, 404, "{answer:?}");
    assert_eq!(answer.body["detail"], "source \"forge\" is not connected: no signing secret");
    let answer = world.send("PUT", "/v1/sources/forge", &[], b"{}").await;
    assert_eq!(answer.status, 405, "{answer:?}");
}

#[tokio::test]
async fn unreadable_secrets_answer_503_and_broken_ones_500_and_nothing_is_written() {
    let mut world = world().await;
    world.sources.secrets.1 = Some(SecretsError::Unavailable("throttled".into()));
    let answer = world.deliver("pull_request", "d-1", MERGED.as_bytes()).await;
    assert_eq!(answer.status, 503, "a retry may read them: {answer:?}");
    world.sources.secrets.1 = Some(SecretsError::Malformed("not a JSON object".into()));
    let answer = world.deliver("pull_request", "d-1", MERGED.as_bytes()).await;
    assert_eq!(answer.status, 500, "an operator must fix the secret (alarmed): {answer:?}");
    assert!(!answer.body.to_string().contains("JSON object"), "no internal text: {answer:?}");
    assert_eq!(world.requests.total(), 0);
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused_and_nothing_is_written() {
    let world = world().await;
    let answer = world.deliver("pull_request", "d-1", b"{\"action\": \"closed\",").await;
    assert_problem(&answer, 400, "body");
    let big = vec![b' '; engagement::interaction::MAX_BODY_BYTES + 1];
    let answer = world.deliver("pull_request", "d-1", &big).await;
    assert_problem(&answer, 413, "body");
    assert_eq!(world.requests.total(), 0);
}

#[tokio::test]
async fn a_bots_delivery_and_an_unmapped_event_are_ignored_and_nothing_is_written() {
    let world = world().await;
    let mut merged: Value = serde_json::from_str(MERGED).expect("json");
    merged["sender"] = json!({"login": "dependabot[bot]", "type": "Bot"});
    let answer = world.deliver("pull_request", "d-3", merged.to_string().as_bytes()).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(
        answer.body,
        json!({"source": "forge", "delivery_id": "d-3", "status": "ignored", "reason": "bot"})
    );

    let star = json!({"action": "created", "starred_at": "2026-03-02T10:00:00Z", "sender": {"login": "Octocat", "type": "User"}});
    let answer = world.deliver("star", "d-4", star.to_string().as_bytes()).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(answer.body["status"], "ignored");
    assert_eq!(
        answer.body["reason"],
        "no mapping for this event (X-GitHub-Event: star, /action: created)"
    );
    assert_eq!(world.requests.total(), 0);
}

#[tokio::test]
async fn an_interaction_ingest_refuses_is_ignored_with_the_reason() {
    // A handle longer than ingest takes: a retry would be refused again, so 202 ignored.
    let world = world().await;
    let mut merged: Value = serde_json::from_str(MERGED).expect("json");
    merged["pull_request"]["user"]["login"] = json!("x".repeat(300));
    let answer = world.deliver("pull_request", "d-5", merged.to_string().as_bytes()).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(answer.body["status"], "ignored");
    assert_eq!(
        answer.body["reason"],
        "refused by ingest: interactions[0].customer.handle: must be at most 256 characters"
    );
    assert_eq!(world.requests.total(), 0);
}

#[tokio::test]
async fn get_answers_a_url_check_after_the_same_verification() {
    let world = world().await;
    let signature = sign_github(SECRET, b"");
    let answer = world
        .send("GET", "/v1/sources/forge", &[("X-Hub-Signature-256", signature.as_str())], b"")
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, json!({"source": "forge", "status": "ready"}));
    let answer = world.send("GET", "/v1/sources/forge", &[], b"").await;
    assert_problem(&answer, 401, "header.X-Hub-Signature-256");
}
