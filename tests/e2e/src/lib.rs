//! The stack as deployed, in one test process: the four functions' handlers over the DynamoDB
//! store (dynoxide) and the EventBridge bus (moto). A rule on the bus routes every event of
//! source `engagement` to an SQS queue; `deliver` reads the queue and hands each event to the
//! functions that `infra/template.yaml`'s rules target (matched by `engagement-routing`, as
//! `pyramid` matches them), read from its envelope as the Lambda mains read it. HTTP requests go in as
//! API Gateway (payload v2) events through `lambda_http`, exactly as in Lambda.

use api::Api;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use engagement::events::{DomainEvent, DEFAULT_SOURCE};
use engagement::{Rules, Timestamp};
use engagement_aws::client::{local_dynamodb, local_eventbridge};
use engagement_aws::envelope::{delivered, Delivered};
use engagement_aws::{DynamoStore, EventBridgeBus, RequestCounter, StoreConfig};
use engagement_http::lambda::{from_lambda, to_lambda};
use engagement_http::CursorSigner;
use engagement_routing::{Router, Target};
use engagement_testkit::{drain_queue, dynoxide_endpoint, local_sqs, moto_endpoint, route_to_queue, unique_name, ManualClock};
use ingest::Ingest;
use nudge::Nudger;
use rescore::{Rescorer, SweepReport};
use serde_json::{json, Value};
use sources::Sources;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub type Store = DynamoStore;
pub type Bus = EventBridgeBus;

pub const SALT: &str = "e2e-salt";
/// The secret of the contact key `Customer Erased` is sealed with (tests open it with it).
pub const CONTACT_SECRET: &str = "e2e-contact-key-0123456789abcdef0123456789";
/// The signing secret of every shipped source in the stack (GitHub's for the tests that sign).
pub const SOURCE_SECRET: &str = "e2e-source-secret";

/// Each shipped source connected with `SOURCE_SECRET` (the port; the adapters are Secrets
/// Manager and files, tested on their own).
#[derive(Clone, Debug, Default)]
pub struct SourceSecrets(pub BTreeMap<String, String>);

impl engagement_sources::SourceSecrets for SourceSecrets {
    async fn secret(&self, source: &str) -> Result<Option<String>, engagement_sources::SecretsError> {
        Ok(self.0.get(source).cloned())
    }
}

pub struct Stack {
    pub clock: ManualClock,
    pub rules: Arc<Rules>,
    /// Counts every DynamoDB request the functions send.
    pub requests: RequestCounter,
    pub ingest: Ingest<Store, Bus, ManualClock>,
    pub rescore: Rescorer<Store, Bus, ManualClock>,
    pub nudge: Nudger<Store, Bus, ManualClock>,
    pub api: Api<Store, Bus, ManualClock>,
    pub sources: Sources<Store, Bus, ManualClock, SourceSecrets>,
    /// The stack's routing, from `infra/template.yaml`.
    pub router: Router,
    sqs: aws_sdk_sqs::Client,
    events: aws_sdk_eventbridge::Client,
    bus_name: String,
    /// The queue the bus routes to (empty while the bus does not exist).
    queue_url: std::sync::Mutex<String>,
}

/// An HTTP answer: status, content type and JSON body (`null` when empty; a string when the
/// body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    /// The `Allow` header (405 answers name the methods a path takes).
    pub allow: Option<String>,
    pub body: Value,
}

impl Stack {
    pub async fn start(now: Timestamp) -> Stack {
        Stack::start_with(now, Rules::default_rules()).await
    }

    pub async fn start_with(now: Timestamp, rules: Rules) -> Stack {
        Stack::build(now, rules, true).await
    }

    /// A stack whose event bus does not exist: every publish fails (after its retries).
    pub async fn start_without_bus(now: Timestamp) -> Stack {
        Stack::build(now, Rules::default_rules(), false).await
    }

    async fn build(now: Timestamp, rules: Rules, bus_exists: bool) -> Stack {
        let rules = Arc::new(rules);
        let requests = RequestCounter::default();
        let store = DynamoStore::new(
            local_dynamodb(dynoxide_endpoint(), Some(requests.clone())),
            Arc::clone(&rules),
            StoreConfig {
                table: unique_name("e2e"),
                salt: SALT.into(),
                omit_request_tokens: true,
            },
        );
        store.create_table().await.expect("a table");
        let (events, sqs) = (local_eventbridge(moto_endpoint()), local_sqs(moto_endpoint()));
        let bus_name = unique_name("engagement");
        let queue_url = if bus_exists {
            route_to_queue(&events, &sqs, &bus_name, r#"{"source": ["engagement"]}"#).await
        } else {
            String::new()
        };
        let bus = EventBridgeBus::new(events.clone(), bus_name.clone(), DEFAULT_SOURCE);
        let clock = ManualClock::at(now);
        let parts = || (store.clone(), bus.clone(), clock.clone(), Arc::clone(&rules));
        let (s, b, c, r) = parts();
        let ingest = Ingest {
            store: s,
            bus: b,
            clock: c,
            rules: r,
        };
        let (s, b, c, r) = parts();
        let rescore = Rescorer {
            store: s,
            bus: b,
            clock: c,
            rules: r,
        };
        let (s, b, c, r) = parts();
        let nudge = Nudger {
            store: s,
            bus: b,
            clock: c,
            rules: r,
        };
        let (s, b, c, r) = parts();
        let api = Api {
            store: s,
            bus: b,
            clock: c,
            rules: r,
            cursors: CursorSigner::new(SALT),
            contact_key: engagement::erasure::ContactKey::from_secret(CONTACT_SECRET).expect("a contact key"),
        };
        let (s, b, c, r) = parts();
        let catalog = engagement_sources::Catalog::builtin();
        let secrets = catalog.names().map(|name| (name.to_string(), SOURCE_SECRET.to_string())).collect();
        let sources = Sources {
            ingest: Ingest {
                store: s,
                bus: b,
                clock: c,
                rules: r,
            },
            catalog: Arc::new(catalog),
            secrets: SourceSecrets(secrets),
        };
        requests.reset();
        Stack {
            clock,
            rules,
            requests,
            ingest,
            rescore,
            nudge,
            api,
            sources,
            router: Router::shipped().expect("the template routes"),
            sqs,
            events,
            bus_name,
            queue_url: std::sync::Mutex::new(queue_url),
        }
    }

    /// Creates the bus that `start_without_bus` left out: publishing works from now on.
    pub async fn bring_bus_back(&self) {
        let queue_url = route_to_queue(&self.events, &self.sqs, &self.bus_name, r#"{"source": ["engagement"]}"#).await;
        *self.queue_url.lock().expect("the queue url") = queue_url;
    }

    fn queue_url(&self) -> String {
        self.queue_url.lock().expect("the queue url").clone()
    }

    /// Sends an HTTP request as API Gateway would (payload v2), to the function its route
    /// belongs to. `body` is sent as JSON unless it is `Value::Null`.
    pub async fn http(&self, method: &str, path_and_query: &str, body: Value) -> Answer {
        let body_text = if body.is_null() { None } else { Some(body.to_string()) };
        self.http_raw(method, path_and_query, body_text.as_deref(), "application/json")
            .await
    }

    pub async fn http_raw(&self, method: &str, path_and_query: &str, body: Option<&str>, content_type: &str) -> Answer {
        self.http_with_headers(method, path_and_query, body, &[("content-type", content_type)])
            .await
    }

    /// As `http_raw`, with the request's headers given (a channel's signature headers).
    pub async fn http_with_headers(&self, method: &str, path_and_query: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Answer {
        let mut fixture: Value = serde_json::from_str(&apigw_v2_request(method, path_and_query, body, "application/json")).expect("JSON");
        fixture["headers"] = json!({"host": "api.example.com"});
        for (name, value) in headers {
            fixture["headers"][name.to_lowercase()] = json!(value);
        }
        let request = lambda_http::request::from_str(&fixture.to_string()).expect("an API Gateway v2 request");
        let request = from_lambda(request);
        let path = request.uri().path().to_string();
        let response = if path == "/v1/interactions" {
            self.ingest.handle(request).await
        } else if path.starts_with("/v1/sources/") {
            self.sources.handle(request).await
        } else {
            self.api.handle(request).await
        };
        // Through the Lambda response type too, as API Gateway would receive it.
        let response = to_lambda(response);
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let allow = response.headers().get("allow").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = if response.body().is_empty() {
            Value::Null
        } else if content_type.contains("json") {
            serde_json::from_slice(response.body()).expect("a JSON body")
        } else {
            // The dashboard's page and assets: kept as text.
            Value::String(String::from_utf8_lossy(response.body()).into_owned())
        };
        Answer {
            status,
            content_type,
            allow,
            body,
        }
    }

    /// Delivers every event on the bus to the functions the stack's rules target, until no new
    /// event appears; returns them all, in the order they were read.
    pub async fn deliver(&self) -> Vec<DomainEvent> {
        let mut seen = Vec::new();
        loop {
            let envelopes = drain_queue(&self.sqs, &self.queue_url()).await;
            if envelopes.is_empty() {
                return seen;
            }
            for envelope in envelopes {
                let targets = self.router.targets(&envelope);
                let envelope: EventBridgeEvent<Value> = serde_json::from_value(envelope).expect("an EventBridge event");
                let Ok(Delivered::Event(event)) = delivered(&envelope) else {
                    panic!("not an engine event: {}", envelope.detail_type);
                };
                for target in targets {
                    match target {
                        Target::Rescore => {
                            self.rescore.handle(&event).await.expect("rescored");
                        }
                        Target::Nudge => {
                            self.nudge.handle(&event).await.expect("nudged");
                        }
                        // Marketing tools are outside the engine: what reaches them is `seen`.
                        Target::Deliver => {}
                    }
                }
                seen.push(event);
            }
        }
    }

    /// Events on the bus, read without delivering them to any function.
    pub async fn take_events(&self) -> Vec<DomainEvent> {
        drain_queue(&self.sqs, &self.queue_url())
            .await
            .into_iter()
            .map(|envelope| {
                DomainEvent::from_parts(envelope["detail-type"].as_str().expect("a detail-type"), envelope["detail"].clone())
                    .expect("a domain event")
            })
            .collect()
    }

    /// The schedule fires: the rescore function sweeps the due customers (the scheduled
    /// envelope read as its Lambda main reads it).
    pub async fn schedule(&self) -> SweepReport {
        let envelope: EventBridgeEvent<Value> = serde_json::from_value(scheduled_event()).expect("a scheduled event");
        assert_eq!(delivered(&envelope), Ok(Delivered::Schedule));
        self.rescore.handle_schedule(|| Duration::from_secs(900)).await.expect("swept")
    }
}

/// An API Gateway HTTP API (payload v2) request, as JSON text.
pub fn apigw_v2_request(method: &str, path_and_query: &str, body: Option<&str>, content_type: &str) -> String {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"content-type": content_type, "host": "api.example.com"},
        "requestContext": {
            "routeKey": "$default",
            "accountId": "123456789012",
            "stage": "$default",
            "requestId": "request-1",
            "apiId": "api",
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "time": "25/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795600000000u64,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "e2e"}
        },
        "body": body,
        "isBase64Encoded": false
    })
    .to_string()
}

/// The event an EventBridge schedule delivers.
pub fn scheduled_event() -> Value {
    json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-25T10:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/rescore-schedule"],
        "detail": {}
    })
}

/// One interaction as a client sends it.
pub fn interaction(id: &str, email: &str, kind: &str, occurred_at: Timestamp) -> Value {
    json!({
        "id": id,
        "source": "e2e",
        "customer": {"channel": "email", "handle": email},
        "kind": kind,
        "occurred_at": occurred_at.to_rfc3339(),
    })
}
