//! The real `pyramid` binary, driven from outside as a user would: started on a free port with a
//! temporary data directory, over HTTP, restarted, killed, importing files, delivering webhooks.

mod harness;

use harness::{binary, interaction, now_text, temp_dir, Server};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_with_the_token_and_keeps_data_across_restarts_and_kills() {
    let data = temp_dir("serve");
    let server = Server::start(&data, &[]);
    let health = reqwest::get(format!("{}/healthz", server.url)).await.expect("health");
    assert_eq!(health.status(), 200);
    let anonymous = reqwest::get(format!("{}/v1/pyramid", server.url)).await.expect("an answer");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["content-type"],
        "application/problem+json",
        "refused with a problem"
    );

    let (status, body) = server
        .post("/v1/interactions", interaction("bb-1", "ada@example.com", "newsletter_subscribed"))
        .await;
    assert_eq!(status, 202, "{body}");
    let customer = body["interactions"][0]["customer_id"].as_str().expect("an id").to_string();
    let path = format!("/v1/customers/{customer}");
    server
        .until("she is following", async |s: &Server| s.get(&path).await.1["level"] == "following")
        .await;
    let (status, problem) = server.post("/v1/interactions", json!({"interactions": []})).await;
    assert_eq!((status, &problem["errors"][0]["path"]), (400, &json!("interactions")));

    // Acknowledged batches, then SIGKILL: every acknowledged interaction is there after restart.
    let mut acknowledged = Vec::new();
    for batch in 0..5 {
        let items: Vec<Value> = (0..100)
            .map(|n| interaction(&format!("k-{batch}-{n}"), &format!("c{n}@example.com"), "page_viewed"))
            .collect();
        let (status, _) = server.post("/v1/interactions", json!({ "interactions": items })).await;
        assert_eq!(status, 202);
        acknowledged.extend(items);
    }
    server.kill();

    let server = Server::start(&data, &[]);
    assert_eq!(server.get(&path).await.1["level"], "following", "data survived the restart");
    for chunk in acknowledged.chunks(500) {
        let (_, body) = server.post("/v1/interactions", json!({ "interactions": chunk })).await;
        let statuses: Vec<&str> = body["interactions"]
            .as_array()
            .expect("outcomes")
            .iter()
            .map(|o| o["status"].as_str().unwrap_or_default())
            .collect();
        assert!(statuses.iter().all(|s| *s == "duplicate"), "lost after kill -9: {statuses:?}");
    }
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_the_rules_it_was_given_behind_the_token() {
    let data = temp_dir("rules");
    let custom = data.join("custom.toml");
    std::fs::write(
        &custom,
        engagement::rules::DEFAULT_RULES_TOML.replacen("threshold = 6 ", "threshold = 8.5 ", 1)
            + "\n[kinds.hackathon_won]\nlevel = \"leading\"\nweight = 9\n",
    )
    .expect("rules");
    let server = Server::start(&data.join("db"), &["--rules", custom.to_str().expect("a UTF-8 path")]);
    let anonymous = reqwest::get(format!("{}/v1/rules", server.url)).await.expect("an answer");
    assert_eq!(anonymous.status(), 401, "the rules are read with the token, like every read");
    let (status, rules) = server.get("/v1/rules").await;
    assert_eq!(status, 200, "{rules}");
    assert_eq!(rules["levels"]["owning"], json!({"threshold": 8.5, "half_life_days": 180.0}));
    assert_eq!(rules["kinds"]["hackathon_won"], json!({"level": "leading", "weight": 9.0}));
    let (status, refused) = server.send(reqwest::Method::DELETE, "/v1/rules", None).await;
    assert_eq!((status, &refused["status"]), (405, &json!(405)));
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_data_directory_has_its_own_secrets_and_cursors_are_not_sealed_with_the_salt() {
    let (one, two) = (temp_dir("secrets-1"), temp_dir("secrets-2"));
    let server = Server::start(&one, &[]);
    drop(Server::start(&two, &[]));
    let read = |dir: &Path, name: &str| std::fs::read_to_string(dir.join(name)).expect(name).trim().to_string();
    for name in ["token", "identity-salt", "cursor-key", "webhook-secret", "contact-key"] {
        assert_ne!(read(&one, name), read(&two, name), "{name} is the same in two data directories");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(one.join(name)).expect(name).permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name} is readable by others");
        }
    }
    let (salt, key) = (read(&one, "identity-salt"), read(&one, "cursor-key"));
    assert_ne!(salt, key);
    // One key per purpose: the erasures' sealed contacts have their own.
    let contact_key = read(&one, "contact-key");
    assert!(contact_key != salt && contact_key != key);

    for (n, email) in ["ida@example.com", "jo@example.com"].into_iter().enumerate() {
        let (status, _) = server
            .post("/v1/interactions", interaction(&format!("s-{n}"), email, "page_viewed"))
            .await;
        assert_eq!(status, 202);
    }
    let first_page = async |s: &Server| s.get("/v1/customers?limit=1").await.1["cursor"].as_str().map(str::to_string);
    server
        .until("two customers are listed", async |s: &Server| first_page(s).await.is_some())
        .await;
    let cursor = first_page(&server).await.expect("a cursor");
    let listing = "customers:all:false:any:default";
    let inner = engagement_http::CursorSigner::new(&key)
        .open(listing, &cursor)
        .expect("sealed with the cursor key");
    let sealed_with_salt = engagement_http::CursorSigner::new(&salt).seal(listing, &inner);
    assert_eq!(server.get(&format!("/v1/customers?limit=1&cursor={cursor}")).await.0, 200);
    let (status, problem) = server.get(&format!("/v1/customers?limit=1&cursor={sealed_with_salt}")).await;
    assert_eq!((status, &problem["errors"][0]["path"]), (400, &json!("query.cursor")));

    // A data directory from before cursor keys: the key is made, the salt kept, the data there.
    server.kill();
    std::fs::remove_file(one.join("cursor-key")).expect("removed");
    let server = Server::start(&one, &[]);
    assert_eq!(read(&one, "identity-salt"), salt, "the salt is never made anew");
    assert_ne!(read(&one, "cursor-key"), key);
    assert_eq!(server.get("/v1/customers").await.1["customers"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        server.get(&format!("/v1/customers?limit=1&cursor={cursor}")).await.0,
        400,
        "cursors of the old key are refused"
    );
    drop(server);
    let _ = (std::fs::remove_dir_all(&one), std::fs::remove_dir_all(&two));
}

/// The count on one level's line of the summary's pyramid.
fn customers_at(summary: &str, level: &str) -> Option<u64> {
    summary
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(level))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
}

#[test]
fn import_reports_bad_lines_and_a_second_run_changes_nothing() {
    let data = temp_dir("import");
    let file = data.join("history.jsonl");
    let lines = [
        interaction("i-1", "bo@example.com", "newsletter_subscribed").to_string(),
        interaction("i-2", "bo@example.com", "review_posted").to_string(),
        "{not json".to_string(),
        interaction("i-3", "cy@example.com", "page_viewed").to_string(),
        json!({"id": "i-4", "source": "x", "customer": {"channel": "email", "handle": "dee@example.com"}, "kind": "page_viewed", "occurred_at": "soon"}).to_string(),
    ];
    std::fs::write(&file, lines.join("\n")).expect("a file");
    let csv = data.join("events.csv");
    std::fs::write(
        &csv,
        format!("id,source,channel,handle,kind,occurred_at,name\nc-1,eventbrite,email,eve@example.com,event_attended,{},Eve\nc-2,eventbrite,email,,event_attended,{},\n", now_text(), now_text()),
    )
    .expect("a csv");
    let run = || {
        Command::new(binary())
            .args(["import", "--data"])
            .arg(data.join("db"))
            .arg(&file)
            .arg(&csv)
            .env("PYRAMID_LOG", "error")
            .output()
            .expect("pyramid import runs")
    };
    let first = run();
    let (stdout, stderr) = (String::from_utf8_lossy(&first.stdout), String::from_utf8_lossy(&first.stderr));
    assert!(first.status.success(), "{stderr}");
    assert!(stderr.contains("history.jsonl:3: not valid JSON"), "{stderr}");
    assert!(stderr.contains("history.jsonl:5: occurred_at"), "{stderr}");
    assert!(stderr.contains("events.csv:3: customer.handle"), "{stderr}");
    assert!(
        stdout.contains("4 recorded, 0 duplicate, 0 conflict, 0 erased, 3 rejected"),
        "{stdout}"
    );
    // One subscription and one review: an endorser (the review reaches the threshold).
    assert_eq!(customers_at(&stdout, "endorsing"), Some(1), "customers by level: {stdout}");
    let second = run();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(stdout.contains("0 recorded, 4 duplicate"), "{stdout}");

    // Two years on, with nothing new, everyone has faded: reported, not written.
    let later = (chrono::Utc::now() + chrono::Duration::days(730)).to_rfc3339();
    let report = Command::new(binary())
        .args(["rescore", "--at", &later, "--data"])
        .arg(data.join("db"))
        .env("PYRAMID_LOG", "error")
        .output()
        .expect("pyramid rescore runs");
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    assert!(text.contains("3 customers, 0 would move up, 1 down"), "{text}");
    let stricter = data.join("stricter.toml");
    let rules = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/rules/default.toml")).expect("the rules");
    std::fs::write(
        &stricter,
        rules
            .replacen("threshold = 2 ", "threshold = 20 ", 1)
            .replacen("threshold = 3 ", "threshold = 30 ", 1),
    )
    .expect("rules");
    let whatif = Command::new(binary())
        .args(["whatif", "--with"])
        .arg(&stricter)
        .arg("--data")
        .arg(data.join("db"))
        .env("PYRAMID_LOG", "error")
        .output()
        .expect("pyramid whatif runs");
    let text = String::from_utf8_lossy(&whatif.stdout);
    assert!(
        text.contains("0 would move up, 1 down"),
        "an endorser falls back to observing: {text}"
    );
    let unchanged = run();
    assert_eq!(
        customers_at(&String::from_utf8_lossy(&unchanged.stdout), "endorsing"),
        Some(1),
        "nothing was written"
    );
    let _ = std::fs::remove_dir_all(&data);
}

/// A marketing tool's webhook endpoint that is down for the first `failures` deliveries.
#[derive(Default)]
struct Receiver {
    failures_left: Mutex<u32>,
    accepted: Mutex<Vec<(String, Value)>>,
    bad_signatures: Mutex<u32>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nudges_reach_a_flaky_webhook_signed_and_exactly_once() {
    let data = temp_dir("webhook");
    let receiver = Arc::new(Receiver {
        failures_left: Mutex::new(3),
        ..Receiver::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let hook = format!("http://{}/hooks", listener.local_addr().expect("an address"));
    let secret_path = data.join("webhook-secret");
    let state = Arc::clone(&receiver);
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: http::HeaderMap, body: String| {
            let state = Arc::clone(&state);
            let secret_path = secret_path.clone();
            async move {
                {
                    let mut left = state.failures_left.lock().expect("lock");
                    if *left > 0 {
                        *left -= 1;
                        return http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                }
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
                let secret = std::fs::read_to_string(&secret_path).unwrap_or_default();
                let expected =
                    engagement_deliver::sign_standard_webhook(secret.trim(), &id, timestamp.parse().unwrap_or(0), body.as_bytes())
                        .unwrap_or_default();
                if header("webhook-signature") != expected || expected.is_empty() {
                    *state.bad_signatures.lock().expect("lock") += 1;
                    return http::StatusCode::UNAUTHORIZED;
                }
                let parsed = serde_json::from_str(&body).unwrap_or(Value::Null);
                state.accepted.lock().expect("lock").push((id, parsed));
                http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    // A known salt, so the test knows who is in the welcome playbook's holdout.
    let salt = "blackbox-salt-blackbox-salt-blackbox-salt";
    std::fs::write(data.join("identity-salt"), salt).expect("a salt");
    let rules = engagement::Rules::default_rules();
    let welcome = rules.playbook("welcome_follower").expect("the welcome playbook");
    let expected = (0..10)
        .filter(|n| {
            let email = format!("w{n}@example.com");
            let identity = engagement::Identity::new(
                engagement::Channel::parse("email").expect("a channel"),
                engagement::HandleStyle::Email,
                &email,
            )
            .expect("an identity");
            !engagement::in_holdout(engagement_aws::keys::customer_id_for(salt, &identity).as_str(), welcome)
        })
        .count();
    assert!(expected > 0);
    let server = Server::start(&data, &["--webhook", &hook, "--webhook-backoff-ms", "20"]);
    // Ten subscribers: each is welcomed, unless in the holdout.
    let items: Vec<Value> = (0..10)
        .map(|n| interaction(&format!("w-{n}"), &format!("w{n}@example.com"), "newsletter_subscribed"))
        .collect();
    assert_eq!(server.post("/v1/interactions", json!({ "interactions": items })).await.0, 202);
    let nudges_file = data.join("nudges.jsonl");
    server
        .until("the nudges are requested and delivered", async |_s: &Server| {
            let requested = std::fs::read_to_string(&nudges_file).unwrap_or_default().lines().count();
            let outbox_empty = std::fs::read_dir(data.join("outbox")).map(|d| d.count() == 0).unwrap_or(false);
            requested == expected && outbox_empty && receiver.accepted.lock().map(|a| a.len() >= expected).unwrap_or(false)
        })
        .await;
    let requested: Vec<Value> = std::fs::read_to_string(&nudges_file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a nudge per line"))
        .collect();
    let accepted = receiver.accepted.lock().expect("lock").clone();
    assert_eq!(*receiver.bad_signatures.lock().expect("lock"), 0);
    assert_eq!(*receiver.failures_left.lock().expect("lock"), 0, "the first deliveries failed");
    let mut ids: Vec<&str> = accepted.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(before, ids.len(), "each webhook-id arrived once");
    assert_eq!(accepted.len(), requested.len(), "every nudge arrived");
    for (_, body) in &accepted {
        assert_eq!(body["type"], "Nudge Requested");
        assert_eq!(body["data"]["action"], "send_welcome_series");
        assert!(body["data"]["handle"].as_str().is_some_and(|h| h.ends_with("@example.com")));
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

/// Nudges of one playbook in a customer's view.
fn nudges_of(view: &Value, playbook: &str) -> usize {
    view["nudges"]
        .as_array()
        .map_or(0, |nudges| nudges.iter().filter(|n| n["playbook"] == playbook).count())
}

/// Lines of `nudges.jsonl` (every nudge requested) of one playbook.
fn requested_of(data: &Path, playbook: &str) -> usize {
    std::fs::read_to_string(data.join("nudges.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|line| serde_json::from_str::<Value>(line).is_ok_and(|n| n["playbook"] == playbook))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complaint_in_flight_at_a_kill_is_answered_once_after_the_restart() {
    let data = temp_dir("in-flight");
    let journal = data.join("bus-journal.jsonl");
    // Deliveries held: the complaint's Interaction Recorded is journaled, and stays in flight.
    let held = Server::start(&data, &["--hold-deliveries"]);
    let batch = json!({"interactions": [
        interaction("cf-0", "ora@example.com", "newsletter_subscribed"),
        interaction("cf-1", "ora@example.com", "complaint_opened"),
    ]});
    let (status, body) = held.post("/v1/interactions", batch).await;
    assert_eq!(status, 202, "{body}");
    let customer = body["interactions"][0]["customer_id"].as_str().expect("an id").to_string();
    let path = format!("/v1/customers/{customer}");
    assert!(std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0), "acknowledged, so journaled");
    assert_eq!(nudges_of(&held.get(&path).await.1, "service_recovery"), 0, "not delivered yet");
    held.kill();

    let server = Server::start(&data, &[]);
    server
        .until("the complaint's service recovery is decided and requested", async |s: &Server| {
            nudges_of(&s.get(&path).await.1, "service_recovery") == 1 && requested_of(&data, "service_recovery") == 1
        })
        .await;
    // Killed again at once: whatever the journal still holds is delivered again, and the
    // handlers recognize it.
    server.kill();
    let server = Server::start(&data, &[]);
    server
        .until("the journal is drained", async |_s: &Server| {
            std::fs::metadata(&journal).is_ok_and(|m| m.len() == 0)
        })
        .await;
    let view = server.get(&path).await.1;
    assert_eq!(nudges_of(&view, "service_recovery"), 1, "decided exactly once: {view}");
    assert_eq!(requested_of(&data, "service_recovery"), 1, "requested exactly once");
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}
