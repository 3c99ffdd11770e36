//! What the black-box tests share: the real `pyramid` binary, a temporary data directory, and
//! `pyramid serve` started on a free port and driven over HTTP.
#![allow(dead_code)] // each test binary uses its own part of it

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pyramid")
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pyramid-{name}-{}-{}", std::process::id(), fastrand::u32(..)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}

pub struct Server {
    pub child: Child,
    pub url: String,
    pub token: String,
    pub client: reqwest::Client,
    /// What `pyramid` printed before it said where it listens.
    pub banner: String,
}

impl Server {
    /// Starts `pyramid serve` and waits for the line that says it listens (its readiness).
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(data, extra, &[])
    }

    /// `start`, with these environment variables set for `pyramid`.
    pub fn start_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(binary())
            .args(["serve", "--addr", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .envs(env.iter().copied())
            .env("PYRAMID_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("pyramid starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut url = None;
        let mut line = String::new();
        let mut banner = String::new();
        while reader.read_line(&mut line).expect("a line") > 0 {
            if let Some(rest) = line.trim().strip_prefix("listening on ") {
                url = Some(rest.to_string());
                break;
            }
            banner.push_str(&line);
            line.clear();
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        let token = std::fs::read_to_string(data.join("token")).expect("the token file");
        Server {
            child,
            url: url.expect("pyramid said where it listens"),
            token: token.trim().to_string(),
            client: reqwest::Client::new(),
            banner,
        }
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.url)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.expect("an answer");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// Polls until `check` holds (the engine works asynchronously after a 202).
    pub async fn until(&self, what: &str, mut check: impl AsyncFnMut(&Server) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check(self).await {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill(); // SIGKILL: no shutdown, no flush
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn interaction(id: &str, email: &str, kind: &str) -> Value {
    json!({"id": id, "source": "blackbox", "customer": {"channel": "email", "handle": email}, "kind": kind, "occurred_at": now_text()})
}

/// The first e-mail address `address(n)` (n = 0, 1, ...) whose customer, under `salt`, the
/// shipped `playbook` does not hold out.
pub fn treated_email(salt: &str, playbook: &str, address: impl Fn(u32) -> String) -> String {
    let rules = engagement::Rules::default_rules();
    let playbook = rules.playbook(playbook).expect("a shipped playbook");
    (0..)
        .map(address)
        .find(|email| {
            let identity = engagement::Identity::new(
                engagement::Channel::parse("email").expect("a channel"),
                engagement::HandleStyle::Email,
                email,
            )
            .expect("an identity");
            !engagement::in_holdout(engagement_aws::keys::customer_id_for(salt, &identity).as_str(), playbook)
        })
        .expect("someone is treated")
}

/// Every file under `dir` (recursively) that holds one of `needles`, byte for byte, with the
/// needle it holds.
pub fn files_holding(dir: &Path, needles: &[String]) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("a readable dir").map(|e| e.expect("an entry")) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap_or_default();
            for needle in needles {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push((path.clone(), needle.clone()));
                }
            }
        }
    }
    found
}
