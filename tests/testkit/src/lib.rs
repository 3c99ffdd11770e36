//! The real protocol servers the tests run against, started by the tests themselves:
//! dynoxide (DynamoDB on SQLite) in-process, and moto (DynamoDB, EventBridge, SQS) as a child
//! process. One server of each kind per test binary, shared by its tests; each test makes its
//! own table, bus and queue with unique names. Prism (validating mocks of the tools' OpenAPI
//! descriptions, one per test that asks) is in [`prism`].

pub mod prism;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A name no other test of this process (or a concurrent one) uses.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The endpoint of an in-memory dynoxide served on a loopback port, on its own thread and
/// runtime so that it outlives each test's runtime.
pub fn dynoxide_endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| serve_dynoxide(|| dynoxide::Database::memory().expect("an in-memory dynoxide")))
}

/// Serves a dynoxide database (made on the server's thread) on a loopback port; returns the
/// endpoint once the port is bound.
pub fn serve_dynoxide(open: impl FnOnce() -> dynoxide::Database + Send + 'static) -> String {
    {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("dynoxide".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a runtime for dynoxide");
                runtime.block_on(async move {
                    let database = open();
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
                    let address = listener.local_addr().expect("a bound address");
                    // The listener is bound: connections queue from here on, so it is ready.
                    sender.send(format!("http://{address}")).expect("the test thread waits");
                    let _ = dynoxide::server::serve_with_shutdown(listener, database, std::future::pending()).await;
                });
            })
            .expect("a thread for dynoxide");
        receiver.recv().expect("dynoxide started")
    }
}

struct Moto {
    endpoint: String,
    _child: Mutex<Child>,
}

/// The endpoint of a moto server for this test process (installed by `tests/tools/install`
/// into `.venv-tools` if needed). It exits when this process does.
pub fn moto_endpoint() -> &'static str {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    &MOTO
        .get_or_init(|| {
            let root = workspace_root();
            let status = Command::new("bash")
                .arg(root.join("tests/tools/install"))
                .status()
                .expect("bash runs the installer");
            assert!(status.success(), "tests/tools/install failed");
            let mut child = Command::new(root.join(".venv-tools/bin/python"))
                .arg(root.join("tests/tools/moto_guard.py"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto starts");
            let stdout = child.stdout.take().expect("moto's stdout");
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).expect("moto prints its port");
            let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("moto printed {line:?}, not a port"));
            // Keep stdin open for as long as this process lives (dropping it stops moto).
            std::mem::forget(child.stdin.take());
            Moto {
                endpoint: format!("http://127.0.0.1:{port}"),
                _child: Mutex::new(child),
            }
        })
        .endpoint
}

/// Dummy static credentials for local servers.
pub fn local_credentials() -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new("local", "local", None, None, "static-local")
}

/// An SQS client for moto.
pub fn local_sqs(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(local_credentials())
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// Creates a queue and an EventBridge rule on `bus_name` (created too) that routes events
/// matching `pattern` to it, as the deployed stack's rules route them to functions. Returns the
/// queue's URL.
pub async fn route_to_queue(events: &aws_sdk_eventbridge::Client, sqs: &aws_sdk_sqs::Client, bus_name: &str, pattern: &str) -> String {
    events.create_event_bus().name(bus_name).send().await.expect("a bus");
    let queue_url = sqs
        .create_queue()
        .queue_name(unique_name("routed"))
        .send()
        .await
        .expect("a queue")
        .queue_url()
        .expect("a queue url")
        .to_string();
    let arn_name = aws_sdk_sqs::types::QueueAttributeName::QueueArn;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(arn_name.clone())
        .send()
        .await
        .expect("attributes");
    let arn = attributes.attributes().and_then(|a| a.get(&arn_name)).expect("a queue arn").clone();
    events
        .put_rule()
        .name("routed")
        .event_bus_name(bus_name)
        .event_pattern(pattern)
        .send()
        .await
        .expect("a rule");
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("queue")
        .arn(arn)
        .build()
        .expect("a target");
    events
        .put_targets()
        .rule("routed")
        .event_bus_name(bus_name)
        .targets(target)
        .send()
        .await
        .expect("the target");
    queue_url
}

/// Every event envelope (`source`, `detail-type`, `detail`, …) waiting in the queue, deleted as
/// read.
pub async fn drain_queue(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<serde_json::Value> {
    let mut envelopes = Vec::new();
    loop {
        let output = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("received");
        if output.messages().is_empty() {
            return envelopes;
        }
        for message in output.messages() {
            envelopes.push(serde_json::from_str(message.body().unwrap_or("null")).expect("an event envelope"));
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("deleted");
        }
    }
}

/// A clock the tests set by hand (a year of silence passes in one call).
#[derive(Clone, Default)]
pub struct ManualClock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl ManualClock {
    pub fn at(at: engagement::Timestamp) -> ManualClock {
        let clock = ManualClock::default();
        clock.set(at);
        clock
    }

    pub fn set(&self, at: engagement::Timestamp) {
        self.0.store(at.millis(), Ordering::SeqCst);
    }
}

impl engagement::ports::Clock for ManualClock {
    fn now(&self) -> engagement::Timestamp {
        engagement::Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// A time from RFC 3339 text (tests only: panics on a typo).
pub fn at(text: &str) -> engagement::Timestamp {
    engagement::Timestamp::parse_rfc3339(text).unwrap_or_else(|| panic!("{text} is not RFC 3339"))
}

/// GitHub's `X-Hub-Signature-256` of `body` under `secret`: `sha256=` and the hex HMAC-SHA256,
/// as GitHub signs its deliveries.
pub fn sign_github(secret: &str, body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}
