//! Nudges (and erasures) to marketing tools by webhook, signed per the Standard Webhooks spec
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`), from a
//! durable outbox: one file per pending delivery, written before it is attempted and removed
//! once the receiver answered 2xx; retried with exponential backoff and jitter; dead-lettered
//! after the retry budget. A receiver that is down for an hour loses nothing: the budget spans
//! about two hours, and a restart picks the outbox up where it was.

use crate::erased::ErasedPerson;
use crate::files::{append_line, os_random, rewrite_lines, write_atomically, write_private};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// Attempts before a delivery is dead-lettered: with the backoff below, about two hours.
pub const ATTEMPT_BUDGET: u32 = 20;
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    /// The `webhook-id`: stable per nudge, so receivers deduplicate on it.
    id: String,
    url: String,
    body: String,
    attempts: u32,
    next_attempt_ms: i64,
}

pub struct Webhooks {
    dir: PathBuf,
    urls: Vec<String>,
    key: Vec<u8>,
    /// Backoff base: one second, shorter in tests.
    base: Duration,
    client: reqwest::Client,
    delivered: Mutex<HashSet<String>>,
    /// People erased while this process runs. Held while `nudges.jsonl`, `dead-letter.jsonl` or
    /// the outbox is written: a nudge about someone is either written before their erasure's
    /// scrub, which then removes it, or not written at all.
    erased: Mutex<Vec<ErasedPerson>>,
    wake: Notify,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An outbox entry; one that cannot be read is set aside, not retried forever in silence.
fn read_pending(path: &Path) -> Option<Pending> {
    match std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice::<Pending>(&bytes).map_err(|e| e.to_string()))
    {
        Ok(pending) => Some(pending),
        Err(error) => {
            tracing::error!(file = %path.display(), %error, "unreadable outbox entry set aside");
            let _ = std::fs::rename(path, path.with_extension("unreadable"));
            None
        }
    }
}

/// A webhook body as its dead letter keeps it: without a sealed contact (`Customer Erased`'s
/// email), whose retries are over.
fn scrubbed_body(body: &str) -> String {
    let Ok(mut parsed) = serde_json::from_str::<Value>(body) else {
        return body.to_string();
    };
    match parsed.get_mut("data").map(engagement::erasure::scrub_json) {
        Some(true) => parsed.to_string(),
        _ => body.to_string(),
    }
}

fn digest_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// The nudge a webhook body (`{"type", "timestamp", "data"}`) carries: its customer id and handle.
fn nudge_of_body(body: &str) -> Option<(Option<String>, Option<String>)> {
    let body: Value = serde_json::from_str(body).ok()?;
    (body["type"] == engagement::events::NUDGE_REQUESTED).then(|| nudge_of_detail(&body["data"]))
}

/// The mark that a nudge is in `nudges.jsonl`: its `nudge_id`, stable per nudge.
fn nudge_logged_key(detail: &Value) -> Option<String> {
    detail["nudge_id"].as_str().map(|nudge_id| format!("logged {nudge_id}"))
}

/// How much of the nudge log's end is read at start: a kill can leave unmarked only the last
/// lines appended (each append is marked right after it), so the whole log need not be read.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// The marks of the nudges at the end of a nudge log (unreadable lines are skipped).
fn logged_nudges(log: &Path) -> Vec<String> {
    use std::io::{Read as _, Seek as _};
    let Ok(mut file) = std::fs::File::open(log) else {
        return Vec::new();
    };
    let start = file.metadata().map_or(0, |m| m.len().saturating_sub(LOG_TAIL_BYTES));
    let mut tail = Vec::new();
    if file
        .seek(std::io::SeekFrom::Start(start))
        .and_then(|_| file.read_to_end(&mut tail))
        .is_err()
    {
        return Vec::new();
    }
    // A tail that starts mid-line has a first fragment that parses as nothing.
    String::from_utf8_lossy(&tail)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|detail| nudge_logged_key(&detail))
        .collect()
}

fn nudge_of_detail(detail: &Value) -> (Option<String>, Option<String>) {
    let field = |name: &str| detail[name].as_str().map(str::to_string);
    (field("customer_id"), field("handle"))
}

/// Standard Webhooks' smallest signing key.
const MIN_SECRET_BYTES: usize = 24;

/// The signing secret of a data directory (`whsec_…`, made on first use).
pub fn secret(dir: &Path) -> std::io::Result<String> {
    let path = dir.join("webhook-secret");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let text = text.trim().to_string();
        // An empty or short key would sign with (almost) nothing: refused, as a short token is.
        let key = base64::engine::general_purpose::STANDARD
            .decode(text.trim_start_matches("whsec_"))
            .unwrap_or_default();
        if key.len() < MIN_SECRET_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} does not hold a whsec_ key of at least {MIN_SECRET_BYTES} bytes; delete it to make a new one",
                    path.display()
                ),
            ));
        }
        return Ok(text);
    }
    let bytes = os_random::<32>()?;
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes));
    write_private(&path, secret.as_bytes())?;
    Ok(secret)
}

/// `v1,<signature>` of a message, per Standard Webhooks.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap_or_default();
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return String::new();
    };
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

impl Webhooks {
    pub fn open(dir: &Path, urls: Vec<String>, base: Duration) -> std::io::Result<Webhooks> {
        std::fs::create_dir_all(dir.join("outbox"))?;
        let secret = secret(dir)?;
        let mut delivered: HashSet<String> = std::fs::read_to_string(dir.join("delivered.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        // The nudge log itself says what it holds: a kill between its append and the mark in
        // `delivered.log` must not log the nudge twice when the bus replays it.
        delivered.extend(logged_nudges(&dir.join("nudges.jsonl")));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Webhooks {
            dir: dir.to_path_buf(),
            urls,
            key: secret.into_bytes(),
            base,
            client,
            delivered: Mutex::new(delivered),
            erased: Mutex::default(),
            wake: Notify::new(),
        })
    }

    fn secret(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }

    /// Takes an event for the marketing tools: appended to `nudges.jsonl` (nudges) and put in
    /// the outbox for every webhook URL. Durable when this returns.
    pub fn enqueue(&self, envelope: &Value) -> std::io::Result<()> {
        let detail_type = envelope["detail-type"].as_str().unwrap_or_default();
        let id = format!("msg_{}", envelope["id"].as_str().unwrap_or_default());
        let body = json!({"type": detail_type, "timestamp": envelope["time"], "data": envelope["detail"]}).to_string();
        let erased = self.erased.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if detail_type == engagement::events::NUDGE_REQUESTED {
            let (customer_id, handle) = nudge_of_detail(&envelope["detail"]);
            if erased.iter().any(|person| person.owns(customer_id.as_deref(), handle.as_deref())) {
                return Ok(()); // about someone erased since it was decided: not kept anywhere
            }
            let logged = nudge_logged_key(&envelope["detail"]);
            let already = self
                .delivered
                .lock()
                .map(|d| d.contains(&format!("jsonl {id}")) || logged.as_ref().is_some_and(|key| d.contains(key)))
                .unwrap_or(false);
            if !already {
                append_line(&self.dir.join("nudges.jsonl"), &envelope["detail"].to_string())?;
                if let (Some(key), Ok(mut delivered)) = (logged, self.delivered.lock()) {
                    delivered.insert(key);
                }
                self.remember(&format!("jsonl {id}"))?;
            }
        }
        for url in &self.urls {
            let key = digest_hex(&format!("{id}|{url}"));
            let path = self.dir.join("outbox").join(format!("{key}.json"));
            let known = self.delivered.lock().map(|d| d.contains(&key)).unwrap_or(false);
            if known || path.exists() {
                continue; // a redelivered event: already delivered or on its way
            }
            let pending = Pending {
                id: id.clone(),
                url: url.clone(),
                body: body.clone(),
                attempts: 0,
                next_attempt_ms: now_ms(),
            };
            write_atomically(&path, &serde_json::to_vec(&pending).unwrap_or_default())?;
        }
        drop(erased);
        self.wake.notify_one();
        Ok(())
    }

    /// Forgets an erased person: their nudges leave `nudges.jsonl`, `dead-letter.jsonl` and the
    /// outbox (not yet delivered: now never), and later ones are dropped. `Customer Erased`
    /// notices stay: they hold only the customer id, and tell the marketing tools to erase.
    pub fn forget(&self, person: &ErasedPerson) -> std::io::Result<()> {
        let mut erased = self.erased.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !erased.contains(person) {
            erased.push(person.clone());
        }
        rewrite_lines(&self.dir.join("nudges.jsonl"), |line| match serde_json::from_str::<Value>(line) {
            Ok(detail) => {
                let (customer_id, handle) = nudge_of_detail(&detail);
                person.owns(customer_id.as_deref(), handle.as_deref())
            }
            Err(_) => person.mentioned_in(line),
        })?;
        rewrite_lines(&self.dir.join("dead-letter.jsonl"), |line| {
            let body = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|l| l["body"].as_str().map(nudge_of_body));
            match body {
                Some(Some((customer_id, handle))) => person.owns(customer_id.as_deref(), handle.as_deref()),
                Some(None) => false,
                None => person.mentioned_in(line),
            }
        })?;
        // The local bus's dead letters: `Nudge Requested` among them carries the handle.
        rewrite_lines(&self.dir.join(crate::journal::DEAD_LETTER_FILE), |line| {
            match serde_json::from_str::<Value>(line) {
                // Other events carry ids only: kept for whoever looks into the failure.
                Ok(record) if record["event"]["detail-type"] == engagement::events::NUDGE_REQUESTED => {
                    let (customer_id, handle) = nudge_of_detail(&record["event"]["detail"]);
                    person.owns(customer_id.as_deref(), handle.as_deref())
                }
                Ok(_) => person
                    .handles
                    .iter()
                    .any(|handle| !handle.is_empty() && line.contains(handle.as_str())),
                Err(_) => person.mentioned_in(line),
            }
        })?;
        for entry in std::fs::read_dir(self.dir.join("outbox"))? {
            let path = entry?.path();
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let doomed = match serde_json::from_slice::<Pending>(&bytes) {
                Ok(pending) => {
                    nudge_of_body(&pending.body).is_some_and(|(customer_id, handle)| person.owns(customer_id.as_deref(), handle.as_deref()))
                }
                // Every write holds `erased`, as this does: a temporary file is what a crash left
                // of a write, useless, and may hold part of a handle.
                Err(_) if path.extension().is_some_and(|x| x == "tmp") => true,
                // Set aside as unreadable: kept for a person to look at, unless it names them.
                Err(_) => person.mentioned_in(&String::from_utf8_lossy(&bytes)),
            };
            if doomed {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// Whether a pending delivery is a nudge about someone erased.
    fn is_erased(erased: &[ErasedPerson], pending: &Pending) -> bool {
        nudge_of_body(&pending.body)
            .is_some_and(|(customer_id, handle)| erased.iter().any(|person| person.owns(customer_id.as_deref(), handle.as_deref())))
    }

    fn remember(&self, key: &str) -> std::io::Result<()> {
        append_line(&self.dir.join("delivered.log"), key)?;
        if let Ok(mut delivered) = self.delivered.lock() {
            delivered.insert(key.to_string());
        }
        Ok(())
    }

    /// Deliveries waiting in the outbox.
    pub fn pending(&self) -> usize {
        std::fs::read_dir(self.dir.join("outbox"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Attempts every delivery that is due; returns when the next one is.
    async fn attempt_due(&self) -> Option<i64> {
        let mut next = None::<i64>;
        let Ok(entries) = std::fs::read_dir(self.dir.join("outbox")) else {
            return None;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let Some(pending) = read_pending(&path) else {
                continue;
            };
            let again_at = if pending.next_attempt_ms > now_ms() {
                Some(pending.next_attempt_ms)
            } else {
                self.attempt(&path, pending).await
            };
            if let Some(at) = again_at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        next
    }

    /// One attempt at a due delivery; returns when it is to be tried again, if it is.
    async fn attempt(&self, path: &Path, mut pending: Pending) -> Option<i64> {
        let key = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        if self.erased.lock().is_ok_and(|erased| Self::is_erased(&erased, &pending)) {
            let _ = std::fs::remove_file(path);
            return None;
        }
        if self.delivered.lock().map(|d| d.contains(&key)).unwrap_or(false) {
            // Delivered before a crash removed the file: not again.
            let _ = std::fs::remove_file(path);
            return None;
        }
        let timestamp = now_ms() / 1000;
        let result = self
            .client
            .post(&pending.url)
            .header("content-type", "application/json")
            .header("webhook-id", &pending.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sign(&self.secret(), &pending.id, timestamp, &pending.body))
            .body(pending.body.clone())
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => {
                let _ = self.remember(&key);
                let _ = std::fs::remove_file(path);
                tracing::info!(webhook_id = %pending.id, attempts = pending.attempts + 1, "webhook delivered");
                None
            }
            outcome => {
                pending.attempts += 1;
                let why = match outcome {
                    Ok(response) => format!("HTTP {}", response.status()),
                    Err(error) => error.to_string(),
                };
                self.after_failure(path, pending, &why)
            }
        }
    }

    /// A failed attempt: kept for another after a backoff (returns when), or dead-lettered once
    /// the budget is spent.
    fn after_failure(&self, path: &Path, mut pending: Pending, why: &str) -> Option<i64> {
        // Erased while this attempt was under way: the file is gone and stays gone.
        let erased = self.erased.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if Self::is_erased(&erased, &pending) {
            let _ = std::fs::remove_file(path);
            return None;
        }
        if pending.attempts >= ATTEMPT_BUDGET {
            tracing::error!(webhook_id = %pending.id, %why, "webhook dead-lettered");
            let line = json!({"webhook_id": pending.id, "url": pending.url, "body": scrubbed_body(&pending.body), "attempts": pending.attempts, "last_error": why});
            let _ = append_line(&self.dir.join("dead-letter.jsonl"), &line.to_string());
            let _ = std::fs::remove_file(path);
            return None;
        }
        // Exponential backoff with jitter: half the step plus a random half.
        let step = self.base.saturating_mul(1 << pending.attempts.min(20)).min(MAX_BACKOFF);
        let wait = step.as_millis() as i64 / 2 + fastrand::i64(0..=(step.as_millis() as i64 / 2).max(1));
        pending.next_attempt_ms = now_ms() + wait;
        tracing::warn!(webhook_id = %pending.id, attempts = pending.attempts, %why, wait_ms = wait, "webhook failed; will retry");
        let _ = write_atomically(path, &serde_json::to_vec(&pending).unwrap_or_default());
        drop(erased);
        Some(pending.next_attempt_ms)
    }

    /// Delivers forever: wakes when something is enqueued or the next retry is due.
    pub async fn run(&self) {
        loop {
            let next = self.attempt_due().await;
            let wait = next.map_or(Duration::from_secs(5), |at| {
                Duration::from_millis((at - now_ms()).clamp(10, 5_000) as u64)
            });
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nudge(id: &str, customer_id: &str, handle: &str) -> Value {
        json!({"id": id, "detail-type": engagement::events::NUDGE_REQUESTED, "time": "2026-06-01T12:00:00Z",
               "detail": {"customer_id": customer_id, "handle": handle, "action": "send_welcome_series"}})
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut texts: Vec<String> = std::fs::read_dir(dir.join("outbox"))
            .expect("the outbox")
            .map(|e| std::fs::read_to_string(e.expect("an entry").path()).expect("a file"))
            .collect();
        texts.push(std::fs::read_to_string(dir.join("nudges.jsonl")).unwrap_or_default());
        texts.push(std::fs::read_to_string(dir.join(crate::journal::DEAD_LETTER_FILE)).unwrap_or_default());
        texts
    }

    #[tokio::test]
    async fn an_erased_person_leaves_the_outbox_and_the_logs_and_is_not_logged_again() {
        let dir = std::env::temp_dir().join(format!("pyramid-forget-{}-{}", std::process::id(), fastrand::u32(..)));
        let webhooks = Webhooks::open(&dir, vec!["http://127.0.0.1:9/hooks".into()], Duration::from_secs(1)).expect("opened");
        webhooks.enqueue(&nudge("n1", "cus_a", "ann@example.com")).expect("queued");
        webhooks.enqueue(&nudge("n2", "cus_b", "bob@example.com")).expect("queued");
        let erasure = json!({"id": "e1", "detail-type": engagement::events::CUSTOMER_ERASED, "time": "2026-06-01T12:00:00Z",
                             "detail": {"customer_id": "cus_a"}});
        webhooks.enqueue(&erasure).expect("queued");
        // A delivery set aside as unreadable, and a write a crash cut short.
        std::fs::write(dir.join("outbox").join("x.unreadable"), "{\"body\": \"ann@example.com").expect("written");
        std::fs::write(dir.join("outbox").join("y.1.tmp"), "{\"id\": \"msg_n3\", \"handle\": \"ann@").expect("written");
        // The local bus gave up on deliveries: her nudge to the webhooks, and other events.
        for event in [
            nudge("n5", "cus_a", "ann@example.com"),
            nudge("n6", "cus_b", "bob@example.com"),
            erasure.clone(),
        ] {
            let record = json!({"target": "webhooks", "event": event, "error": "refused"});
            append_line(&dir.join(crate::journal::DEAD_LETTER_FILE), &record.to_string()).expect("dead-lettered");
        }
        let ann = ErasedPerson {
            customer_ids: vec!["cus_a".into()],
            handles: vec!["ann@example.com".into()],
        };
        webhooks.forget(&ann).expect("forgotten");
        let left = files(&dir);
        assert!(left.iter().all(|text| !text.contains("ann@")), "{left:?}");
        assert!(left.iter().any(|text| text.contains("bob@example.com")), "{left:?}");
        assert!(
            left.iter().any(|text| text.contains("Customer Erased")),
            "the erasure notice stays: {left:?}"
        );
        // A nudge about her decided before the erasure and delivered after it: dropped.
        webhooks.enqueue(&nudge("n4", "cus_a", "ann@example.com")).expect("dropped");
        assert!(files(&dir).iter().all(|text| !text.contains("ann@")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_nudge_logged_just_before_a_kill_is_not_logged_again_when_replayed() {
        let dir = std::env::temp_dir().join(format!("pyramid-relog-{}-{}", std::process::id(), fastrand::u32(..)));
        let mut event = nudge("n1", "cus_a", "ann@example.com");
        event["detail"]["nudge_id"] = json!("ndg_1");
        // The line made it to the log, the mark in delivered.log did not (killed in between).
        std::fs::create_dir_all(&dir).expect("a directory");
        append_line(&dir.join("nudges.jsonl"), &event["detail"].to_string()).expect("logged");
        let webhooks = Webhooks::open(&dir, Vec::new(), Duration::from_secs(1)).expect("opened");
        webhooks.enqueue(&event).expect("replayed");
        webhooks.enqueue(&event).expect("replayed again");
        let log = std::fs::read_to_string(dir.join("nudges.jsonl")).expect("the log");
        assert_eq!(log.lines().count(), 1, "{log}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_short_or_empty_signing_secret_is_refused_and_a_made_one_is_kept() {
        let dir = std::env::temp_dir().join(format!("pyramid-secret-{}-{}", std::process::id(), fastrand::u32(..)));
        std::fs::create_dir_all(&dir).expect("a directory");
        let made = secret(&dir).expect("made");
        assert_eq!(secret(&dir).expect("read again"), made);
        for short in ["", "whsec_", "whsec_c2hvcnQ="] {
            std::fs::write(dir.join("webhook-secret"), short).expect("written");
            assert!(secret(&dir).is_err(), "{short:?} was accepted");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The spec's published example.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
