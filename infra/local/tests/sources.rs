//! The channels' own webhooks through the real `pyramid serve`, over HTTP and without the token:
//! GitHub's signed deliveries (the real payloads of `shared/sources/fixtures/github`), signed here
//! with the source's secret as GitHub signs them; Mailchimp's form posts with the secret in the
//! URL; and identities linked across the two, down to the e-mail nudge.

mod harness;

use harness::{binary, temp_dir, Server};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const MAILCHIMP_SECRET: &str = "mailchimp-url-secret-0123456789";

fn fixture(path: &str) -> String {
    let file = format!("{}/../../shared/sources/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// A GitHub fixture with its times moved to now (evidence fades: a 2019 merge would count for
/// almost nothing today), as GitHub would deliver the same event now.
fn github_payload(name: &str, times: &[&str]) -> Vec<u8> {
    let mut payload: Value = serde_json::from_str(&fixture(&format!("github/{name}"))).expect("a JSON fixture");
    let now = harness::now_text();
    for pointer in times {
        *payload.pointer_mut(pointer).unwrap_or_else(|| panic!("{name} has {pointer}")) = json!(now);
    }
    serde_json::to_vec(&payload).expect("JSON")
}

/// `X-Hub-Signature-256` as GitHub computes it.
fn github_signature(body: &[u8]) -> String {
    engagement_testkit::sign_github(GITHUB_SECRET, body)
}

/// What a source answered: status, content type and JSON body.
struct Answer {
    status: u16,
    content_type: String,
    body: Value,
}

/// A delivery as the channel sends it: no `Authorization`, only its own headers.
async fn deliver(server: &Server, path_and_query: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let mut request = server.client.post(format!("{}{path_and_query}", server.url)).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = response.text().await.expect("a body");
    Answer {
        status,
        content_type,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

async fn deliver_github(server: &Server, event: &str, delivery: &str, body: Vec<u8>, signature: &str) -> Answer {
    let headers = [
        ("content-type", "application/json"),
        ("x-github-event", event),
        ("x-github-delivery", delivery),
        ("x-hub-signature-256", signature),
    ];
    deliver(server, "/v1/sources/github", &headers, body).await
}

/// The customers the API lists (every level).
async fn customers(server: &Server) -> Vec<Value> {
    let (status, body) = server.get("/v1/customers?limit=100").await;
    assert_eq!(status, 200, "{body}");
    body["customers"].as_array().cloned().unwrap_or_default()
}

/// What a customer's view says was recorded: each kind's count, and the interactions' ids
/// (evidence itself fades between two reads).
fn recorded(view: &Value) -> (Vec<(String, u64)>, Vec<String>) {
    let mut counts: Vec<(String, u64)> = view["explanation"]["top_kinds"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| {
            (
                k["kind"].as_str().unwrap_or_default().to_string(),
                k["count"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    counts.sort();
    let mut ids: Vec<String> = view["interactions"]["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i["id"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    (counts, ids)
}

/// A data directory where the GitHub and Mailchimp sources are connected (secret files, 0600).
fn connected_data_dir(name: &str) -> std::path::PathBuf {
    let data = temp_dir(name);
    let sources = data.join("sources");
    std::fs::create_dir_all(&sources).expect("a sources directory");
    for (source, secret) in [("github", GITHUB_SECRET), ("mailchimp", MAILCHIMP_SECRET)] {
        pyramid::files::write_private(&sources.join(format!("{source}.secret")), secret.as_bytes()).expect("a secret file");
    }
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_github_merge_makes_its_author_a_contributor_once_and_forgeries_and_bots_record_nothing() {
    let data = connected_data_dir("sources-github");
    let server = Server::start(&data, &[]);
    let merged = github_payload(
        "pull_request.closed.merged.json",
        &["/pull_request/merged_at", "/pull_request/closed_at", "/pull_request/updated_at"],
    );
    let signature = github_signature(&merged);

    let answer = deliver_github(&server, "pull_request", "d-1", merged.clone(), &signature).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.body["status"], "recorded", "{}", answer.body);
    let outcomes = answer.body["interactions"].as_array().cloned().unwrap_or_default();
    assert!(
        !outcomes.is_empty() && outcomes.iter().all(|o| o["status"] == "recorded"),
        "{outcomes:?}"
    );
    let customer = outcomes[0]["customer_id"].as_str().expect("a customer id").to_string();
    let path = format!("/v1/customers/{customer}");
    server
        .until("the author is contributing", async |s: &Server| {
            s.get(&path).await.1["level"] == "contributing"
        })
        .await;
    let before = server.get(&path).await.1;
    assert_eq!(
        before["identities"],
        json!([{"channel": "github", "handle": "codertocat"}]),
        "{before}"
    );
    let before = recorded(&before);
    // The author's merge, and the merge they performed themselves (Codertocat merged it).
    assert_eq!(
        before.0,
        [
            ("github.pull_request_merge_performed".to_string(), 1),
            ("github.pull_request_merged".to_string(), 1)
        ],
        "{before:?}"
    );

    // GitHub's "Redeliver": the same body, the same signature. Nothing changes.
    let again = deliver_github(&server, "pull_request", "d-1", merged.clone(), &signature).await;
    assert_eq!(again.status, 202, "{}", again.body);
    let statuses: Vec<&Value> = again.body["interactions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| &o["status"])
        .collect();
    assert!(
        !statuses.is_empty() && statuses.iter().all(|s| **s == "duplicate"),
        "{}",
        again.body
    );
    assert_eq!(recorded(&server.get(&path).await.1), before, "a redelivery records nothing");

    // The body changed on the way, the signature not: refused, and nobody is recorded.
    let tampered = String::from_utf8(merged).expect("UTF-8").replace("\"Codertocat\"", "\"Mallory\"");
    let refused = deliver_github(&server, "pull_request", "d-2", tampered.into_bytes(), &signature).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(refused.content_type, "application/problem+json");
    assert!(!refused.body.to_string().contains(&signature[7..]), "the signature is not echoed");
    let unsigned = github_payload("pull_request.opened.json", &[]);
    let missing = deliver(
        &server,
        "/v1/sources/github",
        &[("content-type", "application/json"), ("x-github-event", "pull_request")],
        unsigned,
    )
    .await;
    assert_eq!(missing.status, 401, "{}", missing.body);

    // A bot's pull request: answered (GitHub stops retrying), recorded nowhere.
    let bot = github_payload("pull_request.opened.bot.json", &[]);
    let signature = github_signature(&bot);
    let ignored = deliver_github(&server, "pull_request", "d-3", bot, &signature).await;
    assert_eq!(ignored.status, 202, "{}", ignored.body);
    assert_eq!(ignored.body["status"], "ignored", "{}", ignored.body);
    assert_eq!(ignored.body["reason"], "bot", "{}", ignored.body);

    let listed = customers(&server).await;
    assert_eq!(listed.len(), 1, "only the author: {listed:?}");
    assert_eq!(recorded(&server.get(&path).await.1), before);

    // The route is the sources' only: a source nobody defined is not found.
    let unknown = deliver(&server, "/v1/sources/nosuch", &[], b"{}".to_vec()).await;
    assert_eq!((unknown.status, unknown.content_type.as_str()), (404, "application/problem+json"));
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

/// A marketing tool's webhook: the nudges pyramid delivers to it.
type Received = Arc<Mutex<Vec<Value>>>;

async fn nudge_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}/hooks", listener.local_addr().expect("an address"));
    let state = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |body: String| {
            let state = Arc::clone(&state);
            async move {
                state.lock().expect("lock").push(serde_json::from_str(&body).unwrap_or(Value::Null));
                http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// Mailchimp's subscribe fixture for `email`, fired now (Mailchimp's time format, UTC).
fn mailchimp_subscribe(email: &str) -> Vec<u8> {
    let fired_at = chrono::Utc::now().format("%Y-%m-%d+%H%%3A%M%%3A%S").to_string();
    fixture("mailchimp/subscribe.txt")
        .trim()
        .replace("fired_at=2009-03-26+21%3A35%3A57", &format!("fired_at={fired_at}"))
        .replace("api%40mailchimp.com", &email.replace('@', "%40"))
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_contributor_linked_to_a_mailchimp_subscriber_is_one_customer_and_gets_the_email_nudge() {
    let data = connected_data_dir("sources-identity");
    // A known salt, so the test knows an address the contributor playbook does not hold out.
    let salt = "sources-salt-sources-salt-sources-salt-00";
    std::fs::write(data.join("identity-salt"), salt).expect("a salt");
    let email = harness::treated_email(salt, "contributor_to_owner", |n| format!("ada{n}@example.com"));
    let (hook, received) = nudge_receiver().await;
    let server = Server::start(&data, &["--webhook", &hook, "--webhook-backoff-ms", "20"]);

    // Mailchimp checks the URL before it saves the webhook.
    let check = server
        .client
        .get(format!("{}/v1/sources/mailchimp?secret={MAILCHIMP_SECRET}", server.url))
        .send()
        .await
        .expect("an answer");
    assert_eq!(check.status(), 200);

    // Mailchimp: Ada subscribes (her e-mail, with consent to write to it).
    let subscribed = deliver(
        &server,
        &format!("/v1/sources/mailchimp?secret={MAILCHIMP_SECRET}"),
        &[("content-type", "application/x-www-form-urlencoded")],
        mailchimp_subscribe(&email),
    )
    .await;
    assert_eq!(
        (subscribed.status, &subscribed.body["status"]),
        (202, &json!("recorded")),
        "{}",
        subscribed.body
    );
    let subscriber = subscribed.body["interactions"][0]["customer_id"]
        .as_str()
        .expect("an id")
        .to_string();
    let wrong_secret = deliver(
        &server,
        "/v1/sources/mailchimp?secret=guess",
        &[("content-type", "application/x-www-form-urlencoded")],
        mailchimp_subscribe("eve@example.com"),
    )
    .await;
    assert_eq!(wrong_secret.status, 401, "{}", wrong_secret.body);

    // GitHub: the same person, as Codertocat, opens an issue. Nothing links the two yet.
    let issue = github_payload("issues.opened.json", &["/issue/created_at"]);
    let opened = deliver_github(&server, "issues", "d-10", issue.clone(), &github_signature(&issue)).await;
    assert_eq!(
        (opened.status, &opened.body["status"]),
        (202, &json!("recorded")),
        "{}",
        opened.body
    );
    let contributor = opened.body["interactions"][0]["customer_id"].as_str().expect("an id").to_string();
    assert_ne!(contributor, subscriber, "two customers while nothing links them");

    // The team knows they are one person: it links the login to the subscriber.
    let (status, link) = server
        .post(
            &format!("/v1/customers/{subscriber}/identities"),
            json!({"channel": "github", "handle": "Codertocat"}),
        )
        .await;
    assert_eq!((status, &link["outcome"]), (201, &json!("merged")), "{link}");
    assert_eq!(link["merged_customer_id"], json!(contributor));
    let path = format!("/v1/customers/{subscriber}");
    let view = server.get(&path).await.1;
    let mut identities: Vec<String> = view["identities"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            format!(
                "{}:{}",
                i["channel"].as_str().unwrap_or_default(),
                i["handle"].as_str().unwrap_or_default()
            )
        })
        .collect();
    identities.sort();
    assert_eq!(
        identities,
        ["email:".to_string() + &email, "github:codertocat".to_string()],
        "{view}"
    );

    // Their pull request is merged: the one customer becomes a contributor, and the playbook
    // that invites contributors further reaches them by e-mail, the channel GitHub never gave.
    let merged = github_payload(
        "pull_request.closed.merged.json",
        &["/pull_request/merged_at", "/pull_request/closed_at", "/pull_request/updated_at"],
    );
    let answer = deliver_github(&server, "pull_request", "d-11", merged.clone(), &github_signature(&merged)).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert!(
        answer.body["interactions"]
            .as_array()
            .is_some_and(|outcomes| outcomes.iter().all(|o| o["customer_id"] == json!(subscriber))),
        "recorded on the linked customer: {}",
        answer.body
    );
    server
        .until("the contributor is invited by e-mail", async |_s: &Server| {
            received
                .lock()
                .map(|nudges| nudges.iter().any(|n| n["data"]["playbook"] == "contributor_to_owner"))
                .unwrap_or(false)
        })
        .await;
    let nudges = received.lock().expect("lock").clone();
    let invitation = nudges
        .iter()
        .find(|n| n["data"]["playbook"] == "contributor_to_owner")
        .expect("the invitation");
    assert_eq!(invitation["data"]["customer_id"], json!(subscriber), "{invitation}");
    assert_eq!(invitation["data"]["channel"], "email", "{invitation}");
    assert_eq!(invitation["data"]["handle"], json!(email), "{invitation}");
    assert_eq!(invitation["data"]["level"], "contributing", "{invitation}");
    assert_eq!(server.get(&path).await.1["level"], "contributing");
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

/// Runs `pyramid serve` expecting it to refuse to start; its error output. One that starts
/// after all (it says where it listens) is stopped and fails the test.
fn refused_start(data: &Path, extra: &[&str]) -> String {
    let mut child = Command::new(binary())
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra)
        .env("PYRAMID_LOG", "error")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pyramid runs");
    let stdout = child.stdout.take().expect("stdout");
    let listening = std::io::BufRead::lines(std::io::BufReader::new(stdout)).any(|line| line.is_ok_and(|l| l.starts_with("listening on ")));
    if listening {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("pyramid ends");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!listening && !output.status.success(), "it started: {stderr}");
    stderr
}

#[test]
fn a_readable_secret_file_or_a_bad_source_file_stops_the_start_naming_the_file() {
    let data = temp_dir("sources-refused");
    let sources = data.join("sources");
    std::fs::create_dir_all(&sources).expect("a directory");
    let secret = sources.join("github.secret");
    std::fs::write(&secret, GITHUB_SECRET).expect("a secret file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = refused_start(&data, &[]);
        assert!(
            error.contains(&secret.display().to_string()) && error.contains("chmod 600"),
            "{error}"
        );
        assert!(!error.contains(GITHUB_SECRET), "{error}");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let extra = data.join("more-sources");
    std::fs::create_dir_all(&extra).expect("a directory");
    let bad = extra.join("forum.toml");
    std::fs::write(&bad, "name = \"forum\"\n[verification]\nscheme = \"rot13\"\n").expect("a source file");
    let error = refused_start(&data, &["--sources", &extra.display().to_string()]);
    assert!(error.contains(&bad.display().to_string()), "{error}");
    let error = refused_start(&data, &["--sources", &data.join("absent").display().to_string()]);
    assert!(error.contains("absent"), "{error}");
    let _ = std::fs::remove_dir_all(&data);
}

/// A child process killed when dropped.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banner_names_the_connected_sources_and_an_unverified_one_is_warned_about() {
    let data = temp_dir("sources-banner");
    let extra = data.join("more-sources");
    std::fs::create_dir_all(&extra).expect("a directory");
    std::fs::write(
        extra.join("kiosk.toml"),
        r#"name = "kiosk"
description = "the lobby's sign-up kiosk, on our own network"
channel = "email"
[verification]
scheme = "none"
unverified = true
[[mappings]]
name = "signup"
[[mappings.emit]]
kind = "newsletter_subscribed"
id = "kiosk:{/id}"
occurred_at = "/at"
handle = "/email"
"#,
    )
    .expect("a source file");
    let slack_secret = "slack-signing-secret-from-the-environment";
    let mut child = Command::new(binary())
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(&data)
        .args(["--sources", &extra.display().to_string()])
        .env("PYRAMID_LOG", "warn")
        .env("PYRAMID_SOURCE_SECRET_SLACK", slack_secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pyramid starts");
    let (stdout, mut stderr) = (child.stdout.take().expect("stdout"), child.stderr.take().expect("stderr"));
    // Stopped even when an assertion below fails.
    let server = Stopped(child);
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut log);
        log
    });
    let mut banner = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.expect("a line");
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("listening on ") {
            break;
        }
    }
    let url = banner
        .lines()
        .find_map(|l| l.strip_prefix("listening on "))
        .expect("it listens")
        .to_string();
    // The unverified source takes deliveries without any secret.
    let posted = reqwest::Client::new()
        .post(format!("{url}/v1/sources/kiosk"))
        .header("content-type", "application/json")
        .body(json!({"id": "k-1", "at": harness::now_text(), "email": "kim@example.com"}).to_string())
        .send()
        .await
        .expect("an answer");
    assert_eq!(posted.status(), 202);
    drop(server);
    let log = log.join().expect("the log");
    assert!(banner.contains("connected: slack\n"), "{banner}");
    assert!(banner.contains("kiosk") && banner.contains("UNVERIFIED"), "{banner}");
    assert!(
        !banner.contains(slack_secret) && !log.contains(slack_secret),
        "the secret is printed"
    );
    assert!(log.contains("source kiosk verifies nothing"), "{log}");
    assert!(!log.contains("kim@example.com"), "personal data in the log: {log}");
    let _ = std::fs::remove_dir_all(&data);
}
