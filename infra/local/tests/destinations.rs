//! Destinations from outside, with the real `pyramid` binary and a local HTTP server standing in
//! for the tools (each destination's `base_url` points at it; its answers are scripted): a tool
//! that fails twice then takes the nudge, one that refuses it (400), one that asks to wait
//! (429, `Retry-After: 2`), one that is down across a restart; then an erasure, delivered to
//! some and dead-lettered by another, leaves the person's e-mail nowhere.

mod harness;

use base64::Engine as _;
use harness::{binary, temp_dir, Server};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SALT: &str = "destinations-salt-destinations-salt-destinations";

/// One request a tool received.
#[derive(Clone, Debug)]
struct Hit {
    tool: String,
    path: String,
    headers: http::HeaderMap,
    body: String,
    at: Instant,
    status: u16,
}

/// The tools' side: every request, and whether the webhook receiver is up.
#[derive(Default)]
struct Tools {
    hits: Mutex<Vec<Hit>>,
    hook_up: Mutex<bool>,
    /// Named in Mailchimp's refusals, as a tool's error body may name the person.
    email: Mutex<String>,
}

impl Tools {
    fn hits(&self, tool: &str) -> Vec<Hit> {
        self.hits.lock().expect("lock").iter().filter(|h| h.tool == tool).cloned().collect()
    }

    /// The scripted answer to the `earlier`+1-th request to `tool`.
    fn answer(&self, tool: &str, earlier: usize) -> (u16, Vec<(&'static str, String)>, String) {
        match tool {
            "hubspot" if earlier < 2 => (500, vec![], "{\"status\":\"error\"}".into()),
            "hubspot" => (200, vec![], "{\"status\":\"COMPLETE\",\"results\":[]}".into()),
            "mailchimp" => {
                let email = self.email.lock().expect("lock").clone();
                (
                    400,
                    vec![],
                    json!({"title": "Invalid Resource", "detail": format!("{email} looks fake")}).to_string(),
                )
            }
            "klaviyo" if earlier == 0 => (429, vec![("retry-after", "2".to_string())], "{\"errors\":[]}".into()),
            "klaviyo" => (202, vec![], String::new()),
            _ if *self.hook_up.lock().expect("lock") => (204, vec![], String::new()),
            _ => (503, vec![], String::new()),
        }
    }
}

async fn start_tools(tools: Arc<Tools>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    let app = axum::Router::new().fallback(move |uri: http::Uri, headers: http::HeaderMap, body: String| {
        let tools = Arc::clone(&tools);
        async move {
            let path = uri.path().to_string();
            let tool = path.trim_start_matches('/').split('/').next().unwrap_or_default().to_string();
            let earlier = tools.hits(&tool).len();
            let (status, headers_out, body_out) = tools.answer(&tool, earlier);
            tools.hits.lock().expect("lock").push(Hit {
                tool,
                path,
                headers,
                body,
                at: Instant::now(),
                status,
            });
            let mut response = http::Response::builder().status(status);
            for (name, value) in headers_out {
                response = response.header(name, value);
            }
            response.body(axum::body::Body::from(body_out)).expect("a response")
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// An e-mail address whose customer the welcome playbook nudges (not in its holdout).
fn welcomed_email(prefix: &str) -> String {
    harness::treated_email(SALT, "welcome_follower", |n| format!("{prefix}-{n}@example.com"))
}

/// The outbox's pending deliveries.
fn outbox(data: &Path) -> Vec<Value> {
    std::fs::read_dir(data.join("outbox"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn dead_letters(data: &Path) -> Vec<Value> {
    std::fs::read_to_string(data.join("dead-letter.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a dead letter per line"))
        .collect()
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    harness::files_holding(dir, &[needle.to_string()])
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}

async fn until(what: &str, seconds: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_retried_refused_or_waited_for_as_the_tool_says_across_a_restart_and_an_erasure_keeps_ids_only() {
    let data = temp_dir("destinations");
    std::fs::write(data.join("identity-salt"), SALT).expect("a salt");
    let tools = Arc::new(Tools::default());
    let base = start_tools(Arc::clone(&tools)).await;
    let email = welcomed_email("dana");
    *tools.email.lock().expect("lock") = email.clone();
    // Nudges and erasures only: the level change a subscription causes would be one more
    // delivery to each tool, and this test follows one event per tool through its faults.
    std::fs::write(
        data.join("destinations.toml"),
        format!(
            r#"
[destinations.crm]
tool = "hubspot"
base_url = "{base}/hubspot"
detail_types = ["Nudge Requested", "Customer Erased"]

[destinations.news]
tool = "mailchimp"
list_id = "a1b2c3d4e5"
server = "us21"
base_url = "{base}/mailchimp"
detail_types = ["Nudge Requested", "Customer Erased"]

[destinations.flows]
tool = "klaviyo"
base_url = "{base}/klaviyo"
detail_types = ["Nudge Requested", "Customer Erased"]

[destinations.hook]
tool = "standard-webhooks"
url = "{base}/hook"
detail_types = ["Nudge Requested", "Customer Erased"]
"#
        ),
    )
    .expect("the configuration");
    // One secret in a file (0600), the others in the environment.
    std::fs::create_dir_all(data.join("destinations")).expect("a dir");
    let write_secret = |name: &str, secret: &str| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(
            &mut options
                .open(data.join("destinations").join(format!("{name}.secret")))
                .expect("a file"),
            secret.as_bytes(),
        )
        .expect("written");
    };
    write_secret("news", "mc-key-us21");
    let whsec = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
    let env = [
        ("PYRAMID_DESTINATION_SECRET_CRM", "pat-na1-crm"),
        ("PYRAMID_DESTINATION_SECRET_FLOWS", "pk_flows"),
        ("PYRAMID_DESTINATION_SECRET_HOOK", whsec.as_str()),
    ];

    let server = Server::start_with_env(&data, &[], &env);
    for name in ["crm (hubspot", "news (mailchimp", "flows (klaviyo", "hook (standard-webhooks"] {
        assert!(server.banner.contains(name), "the banner lists {name}: {}", server.banner);
    }
    assert!(!server.banner.contains("pat-na1-crm"), "no secret in the banner");
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let subscribed = json!({"id": "dana-1", "source": "destinations", "customer": {"channel": "email", "handle": email}, "kind": "newsletter_subscribed", "occurred_at": at});
    let (status, body) = server.post("/v1/interactions", subscribed).await;
    assert_eq!(status, 202, "{body}");
    let customer = body["interactions"][0]["customer_id"].as_str().expect("an id").to_string();

    // First attempts made and their retries written down: then killed.
    until("each tool had its first request and the retries are planned", 30, || {
        let pending = outbox(&data);
        pending.len() == 3 && pending.iter().all(|p| p["attempts"] == 1) && tools.hits("mailchimp").len() == 1
    })
    .await;
    server.kill();
    *tools.hook_up.lock().expect("lock") = true;

    // A restart picks the pending deliveries up, each at the time it was planned for.
    let server = Server::start_with_env(&data, &[], &env);
    until("every pending delivery is done", 30, || {
        outbox(&data).is_empty() && tools.hits("klaviyo").len() == 2 && tools.hits("hook").len() == 2
    })
    .await;
    let hubspot = tools.hits("hubspot");
    assert_eq!(
        hubspot.iter().map(|h| h.status).collect::<Vec<_>>(),
        [500, 500, 200],
        "two failures, then delivered"
    );
    assert!(hubspot.iter().all(|h| h.path == "/hubspot/crm/v3/objects/contacts/batch/upsert"));
    assert_eq!(hubspot[2].headers["authorization"], "Bearer pat-na1-crm");
    let upsert: Value = serde_json::from_str(&hubspot[2].body).expect("JSON");
    assert_eq!(upsert["inputs"][0]["id"], json!(email), "{upsert}");
    assert_eq!(
        upsert,
        serde_json::from_str::<Value>(&hubspot[0].body).expect("JSON"),
        "the same request each time"
    );
    let klaviyo = tools.hits("klaviyo");
    let waited = klaviyo[1].at - klaviyo[0].at;
    eprintln!(
        "429 with Retry-After: 2 → next attempt after {:.2} s; 500s → attempts after {:.2} s and {:.2} s",
        waited.as_secs_f64(),
        (hubspot[1].at - hubspot[0].at).as_secs_f64(),
        (hubspot[2].at - hubspot[1].at).as_secs_f64()
    );
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    assert_eq!(klaviyo[1].status, 202);
    // Refused once, dead-lettered at once, with the tool's answer.
    assert_eq!(tools.hits("mailchimp").len(), 1, "a 400 is not retried");
    let dead = dead_letters(&data);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((&dead[0]["destination"], &dead[0]["status"]), (&json!("news"), &json!(400)));
    assert!(dead[0]["tool_error_body"].as_str().is_some_and(|b| b.contains("Invalid Resource")));
    // The webhook receiver, down before the restart, has the nudge once it is up.
    let hook = tools.hits("hook");
    assert_eq!(hook.iter().map(|h| h.status).collect::<Vec<_>>(), [503, 204]);
    assert_eq!(hook[0].headers["webhook-id"], hook[1].headers["webhook-id"]);

    // The erasure: HubSpot GDPR-deletes by the e-mail the event carried sealed; Mailchimp
    // refuses, so it is dead-lettered, with ids only.
    let (status, _) = server
        .send(reqwest::Method::DELETE, &format!("/v1/customers/{customer}"), None)
        .await;
    assert_eq!(status, 204);
    until("the erasure is delivered or dead-lettered everywhere", 30, || {
        outbox(&data).is_empty() && tools.hits("mailchimp").len() == 2 && tools.hits("hubspot").len() == 4
    })
    .await;
    let deleted = &tools.hits("hubspot")[3];
    assert_eq!(deleted.path, "/hubspot/crm/v3/objects/contacts/gdpr-delete");
    assert!(deleted.body.contains(&email), "{}", deleted.body);
    let dead = dead_letters(&data);
    assert_eq!(dead.len(), 1, "the nudge's dead letter went with the erasure: {dead:?}");
    assert_eq!(dead[0]["event"]["detail-type"], "Customer Erased");
    assert_eq!(dead[0]["event"]["detail"]["customer_id"], json!(customer));
    let left = files_holding(&data, &email);
    assert!(left.is_empty(), "her e-mail is still in {left:?}");
    let sealed = files_holding(&data, engagement::erasure::SEALED_CONTACT);
    assert!(sealed.is_empty(), "a sealed contact is still in {sealed:?}");
    // Nothing after HubSpot's 200 but the erasure.
    assert_eq!(
        tools.hits("hubspot").iter().filter(|h| h.path.ends_with("/batch/upsert")).count(),
        3
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_bad_configuration_stops_serve_at_start_naming_the_destination() {
    let data = temp_dir("destinations-bad");
    std::fs::write(
        data.join("destinations.toml"),
        "[destinations.news]\ntool = \"mailchimp\"\nserver = \"us21\"\n",
    )
    .expect("written");
    let output = std::process::Command::new(binary())
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(&data)
        .output()
        .expect("pyramid ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("`news`") && stderr.contains("list_id"), "{stderr}");
    let _ = std::fs::remove_dir_all(&data);
}
