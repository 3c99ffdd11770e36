//! The cloud wiring of deliver against real protocol servers: the destination queues and the
//! credentials on moto (SQS, Secrets Manager), the store on dynoxide, and the tool a local HTTP
//! server this test starts. The Lambda entry (`handle_batch`) gets an SQS event made of messages
//! really received from the queue, each an EventBridge event as the destination's rule put it.

use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use deliver::sqs::{handle_batch, CloudDestinations};
use deliver::ReqwestSender;
use deliver::{Deliver, NoErasedContacts};
use engagement::Rules;
use engagement_aws::client::{local_dynamodb, local_secretsmanager};
use engagement_aws::delivery::{CredentialError, DeadLetterNote, SecretsManagerDestinationSecrets, SqsDeliveryQueues};
use engagement_aws::{DynamoStore, StoreConfig, SystemClock};
use engagement_testkit::{dynoxide_endpoint, local_sqs, moto_endpoint, unique_name};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A queue with its own dead-letter queue, as the template makes them: (URL, ARN, DLQ URL).
async fn destination_queues(sqs: &aws_sdk_sqs::Client) -> (String, String, String) {
    let dead_letters = sqs
        .create_queue()
        .queue_name(unique_name("dead-letters"))
        .send()
        .await
        .expect("a DLQ");
    let dead_letters = dead_letters.queue_url.expect("its URL");
    let dead_letter_arn = arn_of(sqs, &dead_letters).await;
    let redrive = json!({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": 12}).to_string();
    let queue = sqs
        .create_queue()
        .queue_name(unique_name("delivery"))
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .expect("a queue");
    let queue = queue.queue_url.expect("its URL");
    let arn = arn_of(sqs, &queue).await;
    (queue, arn, dead_letters)
}

async fn arn_of(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes")
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("an ARN")
}

/// Receives what is visible now, hiding it `hide` seconds.
async fn receive(sqs: &aws_sdk_sqs::Client, url: &str, hide: i32) -> Vec<aws_sdk_sqs::types::Message> {
    sqs.receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(hide)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .message_attribute_names("All")
        .send()
        .await
        .expect("received")
        .messages
        .unwrap_or_default()
}

fn attribute(message: &aws_sdk_sqs::types::Message, name: &str) -> Option<String> {
    message.message_attributes.as_ref()?.get(name)?.string_value.clone()
}

/// A Nudge Requested as its rule puts it in the queue: the EventBridge event.
fn nudge_event(nudge_id: &str) -> Value {
    json!({
        "version": "0", "id": format!("{nudge_id}-event"), "detail-type": "Nudge Requested", "source": "engagement",
        "account": "123456789012", "time": "2026-01-10T09:01:00Z", "region": "us-east-1", "resources": [],
        "detail": {
            "schema_version": 2, "nudge_id": nudge_id, "customer_id": "c-1", "playbook": "endorser_to_sponsor",
            "step": 1, "action": "invite_as_event_guest", "channel": "email", "handle": "ada@example.com",
            "level": "endorsing", "trigger": {"level_reached": "endorsing"},
            "explanation": {"summary": "Reviews \"often\" 🎉 \\ twice", "evidence": 12.0, "threshold": 10.0, "top_kinds": ["review_posted"]},
            "requested_at": "2026-01-10T09:00:00Z"
        }
    })
}

/// The tool: answers each nudge by its id (ok: 200; refused: 400 with a reason; later: 429,
/// Retry-After 0), and keeps what it was sent.
async fn start_tool() -> (String, Arc<Mutex<Vec<String>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |body: String| {
            let kept = Arc::clone(&kept);
            async move {
                kept.lock().expect("the tool's list").push(body.clone());
                if body.contains("n-refused") {
                    (
                        axum::http::StatusCode::BAD_REQUEST,
                        [("x-tool", "refused")],
                        r#"{"error": "unknown list \"x\""}"#,
                    )
                } else if body.contains("n-later") {
                    (axum::http::StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")], "slow down")
                } else {
                    (axum::http::StatusCode::OK, [("x-tool", "ok")], "")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}/hooks", listener.local_addr().expect("its address"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("the tool serves") });
    (url, received)
}

#[tokio::test]
async fn a_batch_is_delivered_dead_lettered_and_retried_as_the_tool_answers() {
    let (url, tool) = start_tool().await;
    let sqs = local_sqs(moto_endpoint());
    let (queue, queue_arn, dead_letters) = destination_queues(&sqs).await;
    let secretsmanager = local_secretsmanager(moto_endpoint(), None);
    let secret = secretsmanager
        .create_secret()
        .name(unique_name("standard-webhooks"))
        .secret_string("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .send()
        .await
        .expect("a secret")
        .arn
        .expect("its ARN");
    // As the template builds it, with parameters at their defaults (empty lists are [""]).
    let variable = json!({"tool": "standard-webhooks", "queue": queue_arn, "secret": secret, "url": url,
        "detail_types": ["Nudge Requested", "Customer Erased"], "playbooks": [""], "actions": [""], "levels": [""]});
    let cloud = CloudDestinations::from_vars([("DESTINATION_STANDARD_WEBHOOKS".to_string(), variable.to_string())]).expect("a destination");

    let bodies: HashMap<&str, String> = ["n-ok", "n-refused", "n-later"]
        .into_iter()
        .map(|id| (id, nudge_event(id).to_string()))
        .collect();
    for body in bodies.values() {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .expect("queued");
    }
    let mut messages = Vec::new();
    while messages.len() < 3 {
        let batch = receive(&sqs, &queue, 300).await;
        assert!(!batch.is_empty(), "the queue holds {} of the 3 events", messages.len());
        messages.extend(batch);
    }
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({"messageId": m.message_id, "receiptHandle": m.receipt_handle, "body": m.body,
                "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": "us-east-1"})
        })
        .collect();
    let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).expect("an SQS event");
    let id_of = |nudge: &str| {
        messages
            .iter()
            .find(|m| m.body.as_deref() == Some(bodies[nudge].as_str()))
            .and_then(|m| m.message_id.clone())
            .expect("received")
    };

    let store = DynamoStore::new(
        local_dynamodb(dynoxide_endpoint(), None),
        Arc::new(Rules::default_rules()),
        StoreConfig {
            table: unique_name("deliver"),
            salt: "deliver-salt".into(),
            omit_request_tokens: true,
        },
    );
    store.create_table().await.expect("a table");
    let deliver = Deliver {
        reads: store,
        http: ReqwestSender::new(deliver::REQUEST_TIMEOUT).expect("a client"),
        clock: SystemClock,
        secrets: SecretsManagerDestinationSecrets::new(secretsmanager, cloud.secrets.clone()),
        destinations: Arc::new(cloud.destinations.clone()),
        contacts: Arc::new(NoErasedContacts),
    };
    let response = handle_batch(&deliver, &SqsDeliveryQueues::new(sqs.clone()), &cloud.queues, event).await;

    // Only the 429 is received again.
    let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, [id_of("n-later").as_str()]);
    let sent = tool.lock().expect("the tool's list").clone();
    assert_eq!(sent.len(), 3, "one request per event");
    let explained = sent
        .iter()
        .filter_map(|body| serde_json::from_str::<Value>(body).ok())
        .any(|body| body.to_string().contains(r#"Reviews \"often\" 🎉 \\ twice"#));
    assert!(explained, "the explanation arrives intact: {sent:?}");

    // The 400 is in the dead-letter queue at once: the event, and the tool's answer.
    let dead = receive(&sqs, &dead_letters, 300).await;
    assert_eq!(dead.len(), 1, "one dead letter");
    assert_eq!(dead[0].body.as_deref(), Some(bodies["n-refused"].as_str()));
    assert_eq!(attribute(&dead[0], "status").as_deref(), Some("400"));
    assert_eq!(attribute(&dead[0], "destination").as_deref(), Some("standard-webhooks"));
    assert_eq!(attribute(&dead[0], "revoked").as_deref(), Some("false"));
    assert_eq!(
        attribute(&dead[0], "tool_error").as_deref(),
        Some(r#"{"error": "unknown list \"x\""}"#)
    );

    // The 429 is visible again at once (Retry-After: 0); the others stay hidden for 300 s.
    let again = receive(&sqs, &queue, 300).await;
    let again: Vec<&str> = again.iter().filter_map(|m| m.body.as_deref()).collect();
    assert_eq!(again, [bodies["n-later"].as_str()]);
}

#[tokio::test]
async fn the_queue_adapter_dead_letters_with_the_answer_and_hides_a_retry() {
    let sqs = local_sqs(moto_endpoint());
    let (queue, queue_arn, dead_letters) = destination_queues(&sqs).await;
    let queues = SqsDeliveryQueues::new(sqs.clone());

    let answer = "{\"message\": \"Invalid \\\"email\\\" 🎉\"}\u{0}";
    let note = DeadLetterNote {
        destination: "hubspot",
        status: 403,
        tool_error: answer,
        revoked: true,
    };
    queues
        .dead_letter(&queue_arn, r#"{"detail-type": "Nudge Requested"}"#, &note)
        .await
        .expect("dead-lettered");
    let dead = receive(&sqs, &dead_letters, 300).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body.as_deref(), Some(r#"{"detail-type": "Nudge Requested"}"#));
    assert_eq!(attribute(&dead[0], "status").as_deref(), Some("403"));
    assert_eq!(attribute(&dead[0], "revoked").as_deref(), Some("true"));
    // Intact, but for the NUL SQS does not take.
    assert_eq!(attribute(&dead[0], "tool_error").as_deref(), Some(answer.trim_end_matches('\u{0}')));

    sqs.send_message()
        .queue_url(&queue)
        .message_body("retry me")
        .send()
        .await
        .expect("queued");
    let received = receive(&sqs, &queue, 1).await;
    let receipt = received[0].receipt_handle.clone().expect("a receipt");
    queues.delay(&queue_arn, &receipt, Duration::from_secs(3600)).await.expect("hidden");
    assert!(receive(&sqs, &queue, 300).await.is_empty(), "hidden for an hour");
    queues.delay(&queue_arn, &receipt, Duration::ZERO).await.expect("shown");
    assert_eq!(receive(&sqs, &queue, 300).await.len(), 1, "visible again");
}

#[tokio::test]
async fn an_unfilled_secret_names_its_destination() {
    let secretsmanager = local_secretsmanager(moto_endpoint(), None);
    let arn = secretsmanager
        .create_secret()
        .name(unique_name("hubspot"))
        .send()
        .await
        .expect("an empty secret, as the stack makes it")
        .arn
        .expect("its ARN");
    let secrets = SecretsManagerDestinationSecrets::new(secretsmanager, HashMap::from([("hubspot".to_string(), arn)]));
    match secrets.credential("hubspot").await {
        Err(CredentialError::Missing { destination, .. }) => assert_eq!(destination, "hubspot"),
        other => panic!("not missing: {other:?}"),
    }
    assert!(matches!(secrets.credential("klaviyo").await, Err(CredentialError::Missing { .. })));
}
