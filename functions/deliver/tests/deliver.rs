//! The deliver handler against real servers: the store on dynoxide, the tool a local HTTP server
//! this test starts (recording what it receives, answering what the test scripts), reached
//! through the real HTTP adapter.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use deliver::{Deliver, DeliverError, DestinationSecrets, NoErasedContacts, Outcome, ReqwestSender, SecretError};
use engagement::erasure::{seal_contact, ContactKey};
use engagement::events::{CustomerErased, DomainEvent, EventExplanation, LevelChanged, SCHEMA_VERSION};
use engagement::ports::{Clock, InteractionLog};
use engagement::*;
use engagement_aws::client::local_dynamodb;
use engagement_aws::{DynamoStore, StoreConfig};
use engagement_deliver::{mailchimp_subscriber_hash, parse_destinations, SkipReason};
use engagement_testkit::{dynoxide_endpoint, unique_name};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const EMAIL: &str = "maya@example.com";
const NOW: Timestamp = Timestamp(1_780_315_200_000);

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        NOW
    }
}

#[derive(Clone, Debug)]
struct Received {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A scripted answer: status, headers, body.
type Answer = (u16, Vec<(&'static str, &'static str)>, &'static str);

/// A tool on 127.0.0.1: records every request, answers the scripted responses in order, then 200.
#[derive(Clone, Default)]
struct Tool {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

impl Tool {
    async fn start() -> (Tool, String) {
        let tool = Tool::default();
        let state = tool.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                state.received.lock().expect("lock").push(Received {
                    method,
                    path: uri.path().to_string(),
                    headers,
                    body,
                });
                let (status, headers, body) = state.script.lock().expect("lock").pop_front().unwrap_or((200, Vec::new(), "{}"));
                let mut response = axum::response::Response::new(axum::body::Body::from(body));
                *response.status_mut() = StatusCode::from_u16(status).expect("status");
                for (name, value) in headers {
                    response.headers_mut().insert(name, value.parse().expect("header"));
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (tool, url)
    }

    fn answer(&self, status: u16, headers: Vec<(&'static str, &'static str)>, body: &'static str) {
        self.script.lock().expect("lock").push_back((status, headers, body));
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

struct Secrets(HashMap<String, String>);

impl DestinationSecrets for Secrets {
    async fn secret(&self, destination: &str) -> Result<String, SecretError> {
        self.0.get(destination).cloned().ok_or_else(|| SecretError::Missing {
            destination: destination.to_string(),
            hint: "test".into(),
        })
    }
}

type Handler = Deliver<DynamoStore, ReqwestSender, FixedClock, Secrets>;

async fn store() -> DynamoStore {
    let store = DynamoStore::new(
        local_dynamodb(dynoxide_endpoint(), None),
        Arc::new(Rules::default_rules()),
        StoreConfig {
            table: unique_name("deliver"),
            salt: "deliver-tests".into(),
            omit_request_tokens: true,
        },
    );
    store.create_table().await.expect("table");
    store
}

async fn handler(destinations: &str, secrets: &[(&str, &str)], contacts: Arc<dyn deliver::ErasedContacts>) -> Handler {
    Deliver {
        reads: store().await,
        http: ReqwestSender::new(Duration::from_secs(5)).expect("client"),
        clock: FixedClock,
        secrets: Secrets(secrets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        destinations: Arc::new(parse_destinations(destinations).expect("destinations")),
        contacts,
    }
}

/// A customer known by e-mail, with the given interactions recorded (in order, a minute apart).
async fn customer(store: &DynamoStore, kinds: &[&str]) -> CustomerId {
    let rules = Rules::default_rules();
    let mut id = None;
    for (i, kind) in kinds.iter().enumerate() {
        let when = Timestamp(NOW.millis() - 3_600_000 + 60_000 * i as i64);
        let value = json!({"id": format!("i-{i}"), "source": "test", "customer": {"channel": "email", "handle": EMAIL}, "kind": kind, "occurred_at": when.to_rfc3339()});
        let interaction = validate_interaction(&value, &rules, when).expect("valid");
        id = store.record_interactions(&[interaction], when).await.expect("recorded")[0]
            .customer_id
            .clone();
    }
    id.expect("a customer")
}

fn level_changed(customer_id: &CustomerId) -> DomainEvent {
    DomainEvent::LevelChanged(LevelChanged {
        schema_version: SCHEMA_VERSION,
        customer_id: customer_id.clone(),
        from: Level::Observing,
        to: Level::Following,
        direction: Direction::Up,
        since: NOW,
        drops_at: None,
        at_risk_at: None,
        explanation: EventExplanation {
            summary: "Following: \"subscribed\" 🎉 \\o/".into(),
            evidence: 3.0,
            threshold: 2.0,
            top_kinds: vec!["newsletter_subscribed".into()],
        },
    })
}

fn hubspot(url: &str) -> String {
    format!("[destinations.crm]\ntool = \"hubspot\"\nbase_url = \"{url}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_change_reaches_hubspot_with_the_email_read_from_the_store_and_none_after_withdrawal() {
    let (tool, url) = Tool::start().await;
    let deliver = handler(&hubspot(&url), &[("crm", "pat-secret")], Arc::new(NoErasedContacts)).await;
    let id = customer(&deliver.reads, &["newsletter_subscribed"]).await;

    let outcome = deliver.deliver("crm", &level_changed(&id), 0).await.expect("delivered");
    assert_eq!(outcome, Outcome::Delivered);
    let received = tool.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/crm/v3/objects/contacts/batch/upsert")
    );
    assert_eq!(request.headers["authorization"], "Bearer pat-secret");
    let body: Value = serde_json::from_slice(&request.body).expect("json");
    assert_eq!(
        body,
        json!({"inputs": [{"id": EMAIL, "idProperty": "email", "properties": {"engagement_level": "following", "engagement_at_risk": "false"}}]})
    );

    customer(&deliver.reads, &["newsletter_subscribed", "consent_withdrawn"]).await;
    let outcome = deliver.deliver("crm", &level_changed(&id), 0).await.expect("decided");
    assert_eq!(outcome, Outcome::Skipped(SkipReason::NoConsent));
    assert_eq!(tool.received().len(), 1, "nothing sent after the withdrawal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tools_answers_decide_retry_dead_letter_or_revoked() {
    let (tool, url) = Tool::start().await;
    let deliver = handler(&hubspot(&url), &[("crm", "pat-secret")], Arc::new(NoErasedContacts)).await;
    let id = customer(&deliver.reads, &["newsletter_subscribed"]).await;
    let event = level_changed(&id);

    tool.answer(500, Vec::new(), "oops");
    assert_eq!(
        deliver.deliver("crm", &event, 2).await.expect("tried"),
        Outcome::Retry(Duration::from_secs(4))
    );
    tool.answer(429, vec![("retry-after", "2")], "");
    assert_eq!(
        deliver.deliver("crm", &event, 0).await.expect("tried"),
        Outcome::Retry(Duration::from_secs(2))
    );
    tool.answer(400, Vec::new(), r#"{"status":"error","message":"Property values were not valid"}"#);
    assert_eq!(
        deliver.deliver("crm", &event, 0).await.expect("tried"),
        Outcome::DeadLetter {
            status: 400,
            tool_error_body: r#"{"status":"error","message":"Property values were not valid"}"#.into(),
            revoked: false
        }
    );
    tool.answer(401, Vec::new(), "expired");
    let Outcome::DeadLetter {
        status: 401,
        revoked: true,
        ..
    } = deliver.deliver("crm", &event, 0).await.expect("tried")
    else {
        panic!("a 401 is a revoked key")
    };
    assert_eq!(tool.received().len(), 4, "one request per attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_tool_is_retried_and_a_missing_secret_names_the_destination() {
    // A port nothing listens on: bound, then closed.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let deliver = handler(
        &format!("{}[destinations.nokey]\ntool = \"klaviyo\"\n", hubspot(&url)),
        &[("crm", "k")],
        Arc::new(NoErasedContacts),
    )
    .await;
    let id = customer(&deliver.reads, &["newsletter_subscribed"]).await;
    assert_eq!(
        deliver.deliver("crm", &level_changed(&id), 0).await.expect("tried"),
        Outcome::Retry(Duration::from_secs(1))
    );

    let error = deliver.deliver("nokey", &level_changed(&id), 0).await.expect_err("no secret");
    assert!(matches!(error, DeliverError::Secret(SecretError::Missing { .. })));
    assert!(error.to_string().contains("`nokey`"), "{error}");
    assert!(!error.is_retryable());
    let error = deliver.deliver("nowhere", &level_changed(&id), 0).await.expect_err("unknown");
    assert_eq!(error.to_string(), "no destination named `nowhere` is configured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_deletes_the_mailchimp_member_found_by_the_sealed_email() {
    let (tool, url) = Tool::start().await;
    let key = ContactKey::from_secret("a contact key secret of at least thirty-two characters").expect("key");
    let destinations =
        format!("[destinations.news]\ntool = \"mailchimp\"\nlist_id = \"57afe96172\"\nserver = \"us21\"\nbase_url = \"{url}\"\n");
    let deliver = handler(&destinations, &[("news", "key-us21")], Arc::new(key.clone())).await;
    let customer_id = CustomerId("cus_gone".into());
    let erased = DomainEvent::CustomerErased(CustomerErased {
        schema_version: 2,
        sealed_contact: Some(seal_contact(&key, &customer_id, "Maya@Example.com", [7; 24])),
        customer_id,
        erased_at: NOW,
    });
    assert_eq!(deliver.deliver("news", &erased, 0).await.expect("delivered"), Outcome::Delivered);
    let received = tool.received();
    assert_eq!(
        received[0].path,
        format!(
            "/3.0/lists/57afe96172/members/{}/actions/delete-permanent",
            mailchimp_subscriber_hash(EMAIL)
        )
    );

    // A contact sealed under another key does not open: a clear error, not a silent skip.
    let other = ContactKey::from_secret("another contact key secret, also thirty-two chars").expect("key");
    let wrong = handler(&destinations, &[("news", "key-us21")], Arc::new(other)).await;
    let error = wrong.deliver("news", &erased, 0).await.expect_err("unreadable");
    assert!(error.to_string().starts_with("destination `news`:"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_posts_to_the_webhook_url_its_secret_holds() {
    let (tool, url) = Tool::start().await;
    let destinations = "[destinations.team]\ntool = \"slack\"\ndetail_types = [\"Level Changed\"]\ninclude_names = true\n";
    let webhook = format!("{url}/services/T0/B0/secret");
    let deliver = handler(destinations, &[("team", &webhook)], Arc::new(NoErasedContacts)).await;
    let id = customer(&deliver.reads, &["newsletter_subscribed"]).await;
    assert_eq!(
        deliver.deliver("team", &level_changed(&id), 0).await.expect("delivered"),
        Outcome::Delivered
    );
    let received = tool.received();
    assert_eq!(received[0].path, "/services/T0/B0/secret");
    let body: Value = serde_json::from_slice(&received[0].body).expect("json");
    let text = body["text"].as_str().expect("text");
    assert!(text.contains("moved up to *following*"), "{text}");
    assert!(text.contains("Following: \"subscribed\" 🎉 \\o/"), "the explanation intact: {text}");
}
