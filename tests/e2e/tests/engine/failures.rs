//! When the store or the bus fails: a failure that passes (unreachable, throttled) is a 503 with
//! `Retry-After`; one a retry cannot fix (a missing table or bus) is a 500, logged at error level.
//! Neither answer says anything of the cause: only the request id to quote, which the log has too.

use api::Api;
use engagement::events::DEFAULT_SOURCE;
use engagement::Rules;
use engagement_aws::client::{local_dynamodb, local_eventbridge};
use engagement_aws::{DynamoStore, EventBridgeBus, StoreConfig};
use engagement_e2e::{apigw_v2_request, interaction, SALT};
use engagement_http::lambda::from_lambda;
use engagement_http::CursorSigner;
use engagement_testkit::{at, dynoxide_endpoint, moto_endpoint, unique_name, ManualClock};
use ingest::Ingest;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use tracing_subscriber::util::SubscriberInitExt as _;

/// The id API Gateway gave the request (`requestContext.requestId` of `apigw_v2_request`).
const REQUEST_ID: &str = "request-1";

/// The two HTTP functions over one store and one bus.
struct Front {
    ingest: Ingest<DynamoStore, EventBridgeBus, ManualClock>,
    api: Api<DynamoStore, EventBridgeBus, ManualClock>,
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    text: String,
    body: Value,
}

impl Front {
    fn new(dynamodb: aws_sdk_dynamodb::Client, table: &str, bus_name: &str) -> Front {
        let rules = Arc::new(Rules::default_rules());
        let store = DynamoStore::new(
            dynamodb,
            Arc::clone(&rules),
            StoreConfig {
                table: table.into(),
                salt: SALT.into(),
                omit_request_tokens: true,
            },
        );
        let bus = EventBridgeBus::new(local_eventbridge(moto_endpoint()), bus_name, DEFAULT_SOURCE);
        let clock = ManualClock::at(at("2026-05-01T09:00:00Z"));
        Front {
            ingest: Ingest {
                store: store.clone(),
                bus: bus.clone(),
                clock: clock.clone(),
                rules: Arc::clone(&rules),
            },
            api: Api {
                store,
                bus,
                clock,
                rules,
                cursors: CursorSigner::new("failures-cursor-key"),
                contact_key: engagement::erasure::ContactKey::from_secret("failures-contact-key-0123456789abcdef").expect("a key"),
            },
        }
    }

    /// Sends a request as API Gateway (payload v2) would, to the function its route belongs to.
    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let body = body.map(|b| b.to_string());
        let fixture = apigw_v2_request(method, path, body.as_deref(), "application/json");
        let request = from_lambda(lambda_http::request::from_str(&fixture).expect("an API Gateway v2 request"));
        let response = if path == "/v1/interactions" {
            self.ingest.handle(request).await
        } else {
            self.api.handle(request).await
        };
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = String::from_utf8_lossy(response.body()).into_owned();
        Answer {
            status: response.status().as_u16(),
            retry_after,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }
}

/// Log lines written while it is held (tests on one thread: the handlers run on it too).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("the log").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn capture() -> (Log, tracing::dispatcher::DefaultGuard) {
        let log = Log::default();
        let writer = log.clone();
        let guard = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::WARN)
            .finish()
            .set_default();
        (log, guard)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("the log")).into_owned()
    }
}

/// An address nothing listens on (bound, then released).
fn closed_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("an address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn assert_says_nothing_of_the_cause(answer: &Answer, words: &[&str]) {
    for word in words {
        assert!(!answer.text.contains(word), "the answer tells the client {word:?}: {}", answer.text);
    }
    assert_eq!(answer.body["request_id"], REQUEST_ID, "{}", answer.text);
}

#[tokio::test]
async fn a_table_that_does_not_exist_is_a_500_with_only_a_request_id_and_an_error_log() {
    let table = unique_name("no-such-table");
    let front = Front::new(local_dynamodb(dynoxide_endpoint(), None), &table, &unique_name("bus"));
    let (log, _guard) = Log::capture();
    let now = at("2026-05-01T09:00:00Z");
    for (method, path, body) in [
        (
            "POST",
            "/v1/interactions",
            Some(interaction("f-1", "fay@example.com", "page_viewed", now)),
        ),
        ("GET", "/v1/pyramid", None),
    ] {
        let answer = front.send(method, path, body).await;
        assert_eq!(
            (answer.status, &answer.body["type"]),
            (500, &Value::from("urn:engagement:problem:internal"))
        );
        assert_eq!(answer.retry_after, None, "a retry cannot fix it");
        assert_says_nothing_of_the_cause(&answer, &["ResourceNotFound", "resource not found", &table, "GetItem", "Query"]);
    }
    let log = log.text();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 2, "{log}");
    for line in errors {
        assert!(line.contains(REQUEST_ID) && line.contains("ResourceNotFoundException"), "{line}");
    }
}

#[tokio::test]
async fn a_store_that_cannot_be_reached_is_a_503_with_retry_after() {
    // The SDK's own retries (seconds of backoff) off: the answer is the same, only sooner.
    let client = local_dynamodb(&closed_endpoint(), None);
    let config = client
        .config()
        .to_builder()
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .build();
    let front = Front::new(aws_sdk_dynamodb::Client::from_conf(config), "engagement", &unique_name("bus"));
    let (log, _guard) = Log::capture();
    let now = at("2026-05-01T09:00:00Z");
    let answer = front
        .send(
            "POST",
            "/v1/interactions",
            Some(interaction("u-1", "uma@example.com", "page_viewed", now)),
        )
        .await;
    assert_eq!(
        (answer.status, &answer.body["type"]),
        (503, &Value::from("urn:engagement:problem:unavailable"))
    );
    assert_eq!(answer.retry_after.as_deref(), Some("5"));
    assert_says_nothing_of_the_cause(&answer, &["dispatch", "onnection", "127.0.0.1", "BatchGetItem"]);
    let log = log.text();
    assert!(!log.contains("ERROR"), "a passing outage is no error: {log}");
    assert!(log.lines().any(|l| l.contains("WARN") && l.contains(REQUEST_ID)), "{log}");
}

#[tokio::test]
async fn an_erasure_the_bus_refuses_is_a_500_and_erases_nothing() {
    let table = unique_name("failures");
    let front = Front::new(local_dynamodb(dynoxide_endpoint(), None), &table, &unique_name("no-such-bus"));
    front.ingest.store.create_table().await.expect("a table");
    let now = at("2026-05-01T09:00:00Z");
    let recorded = front
        .send(
            "POST",
            "/v1/interactions",
            Some(interaction("e-1", "eli@example.com", "page_viewed", now)),
        )
        .await;
    assert_eq!(recorded.status, 202, "kept though the bus is missing: {}", recorded.text);
    let customer = recorded.body["interactions"][0]["customer_id"].as_str().expect("an id").to_string();
    let path = format!("/v1/customers/{customer}");

    let (log, _guard) = Log::capture();
    let refused = front.send("DELETE", &path, None).await;
    assert_eq!((refused.status, refused.retry_after.as_deref()), (500, None), "{}", refused.text);
    assert_says_nothing_of_the_cause(&refused, &["ResourceNotFound", "no-such-bus", "PutEvents"]);
    assert!(
        log.text().lines().any(|l| l.contains("ERROR") && l.contains(REQUEST_ID)),
        "{}",
        log.text()
    );
    assert_eq!(front.send("GET", &path, None).await.status, 200, "nothing was erased");
}
