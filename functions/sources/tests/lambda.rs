//! The sources function as Lambda runs it: an API Gateway HTTP API (payload v2) event from a JSON
//! fixture, read by `lambda_http`, handled with the adapters `main.rs` wires (the DynamoDB store
//! on dynoxide, the EventBridge bus and the Secrets Manager secret on moto). A signed GitHub
//! merged-pull-request delivery (signed by @octokit/webhooks-methods: fixtures/signatures.json)
//! raises its author to contributing through the rescore function; a redelivery changes nothing;
//! a tampered body is refused; a bot's delivery records nothing.

use engagement::events::{DomainEvent, DEFAULT_SOURCE};
use engagement::{Level, Rules};
use engagement_aws::client::{local_dynamodb, local_eventbridge, local_secretsmanager};
use engagement_aws::{DynamoStore, EventBridgeBus, SecretsManagerSourceSecrets, StoreConfig};
use engagement_http::lambda::{from_lambda, to_lambda};
use engagement_sources::Catalog;
use engagement_testkit::{
    at, drain_queue, dynoxide_endpoint, local_sqs, moto_endpoint, route_to_queue, sign_github, unique_name, workspace_root, ManualClock,
};
use ingest::Ingest;
use rescore::Rescorer;
use serde_json::Value;
use sources::Sources;
use std::sync::Arc;

type Handler = Sources<DynamoStore, EventBridgeBus, ManualClock, SecretsManagerSourceSecrets>;

struct Deployed {
    sources: Handler,
    rescore: Rescorer<DynamoStore, EventBridgeBus, ManualClock>,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl Deployed {
    /// The function's adapters, as `main.rs` wires them, with the GitHub signing secret in the
    /// Secrets Manager secret.
    async fn start(github_secret: &str) -> Deployed {
        let rules = Arc::new(Rules::default_rules());
        let store = DynamoStore::new(
            local_dynamodb(dynoxide_endpoint(), None),
            Arc::clone(&rules),
            StoreConfig {
                table: unique_name("sources"),
                salt: "sources-salt".into(),
                omit_request_tokens: true,
            },
        );
        store.create_table().await.expect("a table");
        let (events, sqs) = (local_eventbridge(moto_endpoint()), local_sqs(moto_endpoint()));
        let bus_name = unique_name("engagement");
        let queue_url = route_to_queue(&events, &sqs, &bus_name, r#"{"source": ["engagement"]}"#).await;
        let bus = EventBridgeBus::new(events, bus_name, DEFAULT_SOURCE);
        let secretsmanager = local_secretsmanager(moto_endpoint(), None);
        let arn = secretsmanager
            .create_secret()
            .name(unique_name("source-secrets"))
            .secret_string(serde_json::json!({ "github": github_secret }).to_string())
            .send()
            .await
            .expect("the source secrets")
            .arn()
            .expect("an arn")
            .to_string();
        let secrets = SecretsManagerSourceSecrets::new(secretsmanager, arn);
        secrets.preload().await.expect("read at cold start");
        // A few seconds after the fixture's merge.
        let clock = ManualClock::at(at("2019-05-15T15:21:30Z"));
        Deployed {
            sources: Sources {
                ingest: Ingest {
                    store: store.clone(),
                    bus: bus.clone(),
                    clock: clock.clone(),
                    rules: Arc::clone(&rules),
                },
                catalog: Arc::new(Catalog::builtin()),
                secrets,
            },
            rescore: Rescorer { store, bus, clock, rules },
            sqs,
            queue_url,
        }
    }

    /// The request through `lambda_http` and back, as API Gateway hands it to the function.
    async fn invoke(&self, event: &Value) -> (u16, String, Value) {
        let request = lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 request");
        let response = to_lambda(self.sources.handle(from_lambda(request)).await);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = serde_json::from_slice(response.body()).expect("a JSON answer");
        (response.status().as_u16(), content_type, body)
    }

    /// Hands every event on the bus to the rescore function (as the stack's rule does); returns
    /// the interaction events and the levels rescore decided.
    async fn deliver(&self) -> (usize, Vec<Level>) {
        let (mut recorded, mut levels) = (0, Vec::new());
        for envelope in drain_queue(&self.sqs, &self.queue_url).await {
            let detail_type = envelope["detail-type"].as_str().expect("a detail-type");
            let event = DomainEvent::from_parts(detail_type, envelope["detail"].clone()).expect("a domain event");
            if let DomainEvent::InteractionRecorded(_) = event {
                recorded += 1;
                if let Some(rescored) = self.rescore.handle(&event).await.expect("rescored") {
                    levels.push(rescored.level);
                }
            }
        }
        (recorded, levels)
    }
}

fn fixture(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The API Gateway event of the fixture with this delivery's body and GitHub headers.
fn delivery(body: &str, headers: &[(&str, &str)]) -> Value {
    let mut event: Value = serde_json::from_str(&fixture("functions/sources/tests/fixtures/apigw-v2-post-sources-github.json"))
        .expect("the API Gateway fixture");
    event["body"] = Value::String(body.to_string());
    event["headers"]["content-length"] = Value::String(body.len().to_string());
    for (name, value) in headers {
        // API Gateway (payload v2) lower-cases header names.
        event["headers"][name.to_ascii_lowercase()] = Value::String(value.to_string());
    }
    event
}

/// The merged pull request and the headers @octokit/webhooks-methods signed it with.
fn octokit_vector() -> (String, String, Vec<(String, String)>) {
    let vectors: Value = serde_json::from_str(&fixture("shared/sources/fixtures/signatures.json")).expect("the vectors");
    let vector = vectors
        .as_array()
        .and_then(|all| all.iter().find(|v| v["source"] == "github"))
        .expect("a GitHub vector");
    let body = fixture(vector["fixture"].as_str().expect("its fixture"));
    let secret = vector["secret"].as_str().expect("its secret").to_string();
    let headers = vector["headers"]
        .as_object()
        .expect("its headers")
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().expect("a header value").to_string()))
        .collect();
    (body, secret, headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_merged_pull_request_raises_its_author_to_contributing_once() {
    let (body, secret, headers) = octokit_vector();
    assert!(body.contains("\"merged\": true"), "the vector signs the merged pull request");
    let deployed = Deployed::start(&secret).await;
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let event = delivery(&body, &headers);

    let (status, content_type, answer) = deployed.invoke(&event).await;
    assert_eq!((status, content_type.as_str()), (202, "application/json"), "{answer}");
    assert_eq!(answer["source"], "github");
    assert_eq!(answer["status"], "recorded", "{answer}");
    let outcomes = answer["interactions"].as_array().expect("outcomes");
    assert!(
        !outcomes.is_empty() && outcomes.iter().all(|o| o["status"] == "recorded"),
        "{answer}"
    );
    let (recorded, levels) = deployed.deliver().await;
    assert!(recorded >= 1);
    assert_eq!(levels.last(), Some(&Level::Contributing), "the author is a contributor");

    // GitHub redelivers (the same delivery, or the organisation's hook with the same fact).
    let (status, _, answer) = deployed.invoke(&event).await;
    assert_eq!(status, 202, "{answer}");
    let outcomes = answer["interactions"].as_array().expect("outcomes");
    assert!(outcomes.iter().all(|o| o["status"] == "duplicate"), "{answer}");
    assert_eq!(deployed.deliver().await, (0, vec![]), "a redelivery announces nothing");

    // One byte changed after signing.
    let tampered = delivery(&body.replacen("Codertocat", "Codertocah", 1), &headers);
    let (status, content_type, answer) = deployed.invoke(&tampered).await;
    assert_eq!((status, content_type.as_str()), (401, "application/problem+json"), "{answer}");
    assert!(!answer.to_string().contains(&secret), "the answer holds no secret");
    assert_eq!(deployed.deliver().await, (0, vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bots_delivery_records_nothing() {
    let secret = "bot-test-secret";
    let deployed = Deployed::start(secret).await;
    let body = fixture("shared/sources/fixtures/github/pull_request.opened.bot.json");
    let event = delivery(
        &body,
        &[
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", "5f3a9c40-2b7d-11f0-8a4e-1d2c3b4a5f60"),
            ("X-Hub-Signature-256", &sign_github(secret, body.as_bytes())),
        ],
    );
    let (status, _, answer) = deployed.invoke(&event).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "ignored", "{answer}");
    assert_eq!(answer["reason"], "bot", "{answer}");
    assert_eq!(deployed.deliver().await, (0, vec![]));
}
