//! Delivery to the configured destinations (HubSpot, Mailchimp, Klaviyo, Customer.io, Slack,
//! Zendesk, Standard Webhooks) from a durable outbox, by the cloud's own `deliver` handler: one
//! file per (destination, event), written before it is attempted and removed once the handler
//! says Delivered or Skipped. `Retry(after)` is attempted again after that long (a 429's
//! `Retry-After`, or the handler's backoff after a 5xx or a timeout), with jitter added, never
//! sooner; `DeadLetter` goes to `dead-letter.jsonl` with the tool's answer, counted per
//! destination, and a refused key (401/403) is also an error in the log naming the destination.
//! After the retry budget (about two hours) a delivery is dead-lettered. A restart picks the
//! outbox up where it was.
//!
//! Every nudge is also appended to `nudges.jsonl`, once.

use crate::erased::ErasedPerson;
use crate::files::{append_line, rewrite_lines, write_atomically};
use deliver::{DeliverError, HttpSender, Outcome};
use engagement::events::{DomainEvent, CUSTOMER_ERASED, NUDGE_REQUESTED};
use engagement_deliver::Destination;
use futures::future::BoxFuture;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Attempts before a delivery is dead-lettered: with the handler's backoff (1 s doubling, at
/// most 10 min), about two hours.
pub const ATTEMPT_BUDGET: u32 = 20;
/// The dead letters of every destination, one JSON line each.
pub const DEAD_LETTER_FILE: &str = "dead-letter.jsonl";
/// Deliveries attempted at once (each to its own destination or event).
const CONCURRENT_ATTEMPTS: usize = 8;

/// One delivery in the outbox: the event (as EventBridge carried it) for one destination.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    destination: String,
    /// The envelope's id (the event's stable id).
    event_id: String,
    detail_type: String,
    detail: Value,
    attempts: u32,
    next_attempt_ms: i64,
}

/// Runs the `deliver` handler for one destination, event and attempt number.
pub type Handler = Arc<dyn Fn(String, DomainEvent, u32) -> BoxFuture<'static, Result<Outcome, DeliverError>> + Send + Sync>;

/// The handler over `deliver::Deliver` (what `pyramid serve` runs).
pub fn handler<R, H, C, K>(deliver: Arc<deliver::Deliver<R, H, C, K>>) -> Handler
where
    R: engagement::ports::CustomerReads + 'static,
    H: HttpSender + 'static,
    C: engagement::ports::Clock + 'static,
    K: deliver::DestinationSecrets + 'static,
{
    Arc::new(move |destination, event, attempt| {
        let deliver = Arc::clone(&deliver);
        Box::pin(async move { deliver.deliver(&destination, &event, attempt).await })
    })
}

pub struct Outbox {
    dir: PathBuf,
    destinations: Vec<Destination>,
    handler: Handler,
    /// Scales every wait (1.0; tests make retries quick).
    wait_scale: f64,
    delivered: Mutex<HashSet<String>>,
    /// People erased while this process runs. Held while `nudges.jsonl`, `dead-letter.jsonl` or
    /// the outbox is written: a nudge about someone is either written before their erasure's
    /// scrub, which then removes it, or not written at all.
    erased: Mutex<Vec<ErasedPerson>>,
    /// Dead letters per destination (counted from the file at start).
    dead_letters: Mutex<BTreeMap<String, u64>>,
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

fn digest_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())[..12].iter().map(|b| format!("{b:02x}")).collect()
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

/// Who an event's detail is about: its customer id and handle (nudges carry one).
fn subject_of(detail: &Value) -> (Option<String>, Option<String>) {
    let field = |name: &str| detail[name].as_str().map(str::to_string);
    (field("customer_id"), field("handle"))
}

/// Whether an event is about `person` and must go with their erasure: anything but the
/// erasure itself, which tells the tools to erase them too.
fn about(person: &ErasedPerson, detail_type: &str, detail: &Value) -> bool {
    let (customer_id, handle) = subject_of(detail);
    detail_type != CUSTOMER_ERASED && person.owns(customer_id.as_deref(), handle.as_deref())
}

/// A dead letter's count per destination in `dead-letter.jsonl`.
fn count_dead_letters(path: &Path) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        if let Some(name) = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|l| l["destination"].as_str().map(str::to_string))
        {
            *counts.entry(name).or_insert(0) += 1;
        }
    }
    counts
}

/// Why a delivery ends in the dead letters.
struct Death {
    status: Option<u16>,
    tool_error_body: Option<String>,
    revoked: bool,
    reason: String,
}

impl Death {
    /// A delivery that ends without a refusal from the tool: only `reason` says why.
    fn unanswered(reason: String) -> Death {
        Death {
            status: None,
            tool_error_body: None,
            revoked: false,
            reason,
        }
    }
}

impl Outbox {
    /// The outbox of `dir` for `destinations`, delivering through `handler`.
    pub fn open(dir: &Path, destinations: Vec<Destination>, handler: Handler, wait_scale: f64) -> std::io::Result<Outbox> {
        std::fs::create_dir_all(dir.join("outbox"))?;
        let mut delivered: HashSet<String> = std::fs::read_to_string(dir.join("delivered.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        // The nudge log itself says what it holds: a kill between its append and the mark in
        // `delivered.log` must not log the nudge twice when the bus replays it.
        delivered.extend(logged_nudges(&dir.join("nudges.jsonl")));
        Ok(Outbox {
            dir: dir.to_path_buf(),
            destinations,
            handler,
            wait_scale: wait_scale.max(0.0),
            delivered: Mutex::new(delivered),
            erased: Mutex::default(),
            dead_letters: Mutex::new(count_dead_letters(&dir.join(DEAD_LETTER_FILE))),
            wake: Notify::new(),
        })
    }

    /// The configured destinations.
    pub fn destinations(&self) -> &[Destination] {
        &self.destinations
    }

    /// Dead letters so far, per destination (since the file was last emptied).
    pub fn dead_letters(&self) -> BTreeMap<String, u64> {
        self.dead_letters.lock().map(|counts| counts.clone()).unwrap_or_default()
    }

    /// Takes an event for the destinations: appended to `nudges.jsonl` (nudges) and put in the
    /// outbox for every destination that takes its detail-type. Durable when this returns.
    pub fn enqueue(&self, envelope: &Value) -> std::io::Result<()> {
        let detail_type = envelope["detail-type"].as_str().unwrap_or_default();
        let event_id = envelope["id"].as_str().unwrap_or_default();
        let id = format!("msg_{event_id}");
        let detail = &envelope["detail"];
        let erased = self.erased.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if erased.iter().any(|person| about(person, detail_type, detail)) {
            return Ok(()); // about someone erased since it was decided: not kept anywhere
        }
        if detail_type == NUDGE_REQUESTED {
            let logged = nudge_logged_key(detail);
            let already = self
                .delivered
                .lock()
                .map(|d| d.contains(&format!("jsonl {id}")) || logged.as_ref().is_some_and(|key| d.contains(key)))
                .unwrap_or(false);
            if !already {
                append_line(&self.dir.join("nudges.jsonl"), &detail.to_string())?;
                if let (Some(key), Ok(mut delivered)) = (logged, self.delivered.lock()) {
                    delivered.insert(key);
                }
                self.remember(&format!("jsonl {id}"))?;
            }
        }
        for destination in &self.destinations {
            // The rest of its routing (playbooks, actions, levels) is the handler's.
            if !destination.detail_types().contains(&detail_type) {
                continue;
            }
            let key = digest_hex(&format!("{id}|{}", destination.name));
            let path = self.dir.join("outbox").join(format!("{key}.json"));
            let known = self.delivered.lock().map(|d| d.contains(&key)).unwrap_or(false);
            if known || path.exists() {
                continue; // a redelivered event: already delivered or on its way
            }
            let pending = Pending {
                destination: destination.name.clone(),
                event_id: event_id.to_string(),
                detail_type: detail_type.to_string(),
                detail: detail.clone(),
                attempts: 0,
                next_attempt_ms: now_ms(),
            };
            write_atomically(&path, &serde_json::to_vec(&pending).unwrap_or_default())?;
        }
        drop(erased);
        self.wake.notify_one();
        Ok(())
    }

    /// Forgets an erased person: their nudges (and other events about them) leave
    /// `nudges.jsonl`, `dead-letter.jsonl` and the outbox (not yet delivered: now never), and
    /// later ones are dropped. `Customer Erased` stays: it tells the tools to erase them.
    pub fn forget(&self, person: &ErasedPerson) -> std::io::Result<()> {
        let mut erased = self.erased.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !erased.contains(person) {
            erased.push(person.clone());
        }
        rewrite_lines(&self.dir.join("nudges.jsonl"), |line| match serde_json::from_str::<Value>(line) {
            Ok(detail) => about(person, NUDGE_REQUESTED, &detail),
            Err(_) => person.mentioned_in(line),
        })?;
        rewrite_lines(&self.dir.join(DEAD_LETTER_FILE), |line| match serde_json::from_str::<Value>(line) {
            // Other events carry ids only: kept for whoever looks into the failure.
            Ok(record) => {
                let detail_type = record["event"]["detail-type"].as_str().unwrap_or_default();
                detail_type == NUDGE_REQUESTED && about(person, detail_type, &record["event"]["detail"])
                    || person.handles.iter().any(|h| !h.is_empty() && line.contains(h.as_str()))
            }
            Err(_) => person.mentioned_in(line),
        })?;
        // The local bus's dead letters: `Nudge Requested` among them carries the handle.
        rewrite_lines(
            &self.dir.join(crate::journal::DEAD_LETTER_FILE),
            |line| match serde_json::from_str::<Value>(line) {
                Ok(record) if record["event"]["detail-type"] == NUDGE_REQUESTED => {
                    about(person, NUDGE_REQUESTED, &record["event"]["detail"])
                }
                Ok(_) => person
                    .handles
                    .iter()
                    .any(|handle| !handle.is_empty() && line.contains(handle.as_str())),
                Err(_) => person.mentioned_in(line),
            },
        )?;
        for entry in std::fs::read_dir(self.dir.join("outbox"))? {
            let path = entry?.path();
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let doomed = match serde_json::from_slice::<Pending>(&bytes) {
                Ok(pending) => about(person, &pending.detail_type, &pending.detail),
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

    fn is_erased(erased: &[ErasedPerson], pending: &Pending) -> bool {
        erased.iter().any(|person| about(person, &pending.detail_type, &pending.detail))
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

    /// Attempts every delivery that is due, a few at once; returns when the next one is.
    async fn attempt_due(&self) -> Option<i64> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("outbox")) else {
            return None;
        };
        let mut next = None::<i64>;
        let mut due = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let Some(pending) = read_pending(&path) else {
                continue;
            };
            if pending.next_attempt_ms > now_ms() {
                next = Some(next.map_or(pending.next_attempt_ms, |n| n.min(pending.next_attempt_ms)));
            } else {
                due.push((path, pending));
            }
        }
        let again: Vec<Option<i64>> = futures::stream::iter(due)
            .map(|(path, pending)| async move { self.attempt(&path, pending).await })
            .buffer_unordered(CONCURRENT_ATTEMPTS)
            .collect()
            .await;
        again
            .into_iter()
            .flatten()
            .fold(next, |next, at| Some(next.map_or(at, |n| n.min(at))))
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
        let event = match DomainEvent::from_parts(&pending.detail_type, pending.detail.clone()) {
            Ok(event) => event,
            Err(error) => {
                let death = Death::unanswered(error.to_string());
                self.dead_letter(path, &key, &pending, death);
                return None;
            }
        };
        let attempt = pending.attempts;
        let outcome = (self.handler)(pending.destination.clone(), event, attempt).await;
        pending.attempts += 1;
        let (destination, event_id) = (pending.destination.as_str(), pending.event_id.as_str());
        match outcome {
            Ok(Outcome::Delivered) => {
                let _ = self.remember(&key);
                let _ = std::fs::remove_file(path);
                tracing::info!(destination, event_id, attempts = pending.attempts, "delivered");
                None
            }
            Ok(Outcome::Skipped(reason)) => {
                let _ = self.remember(&key);
                let _ = std::fs::remove_file(path);
                tracing::debug!(destination, event_id, reason = reason.code(), "skipped");
                None
            }
            Ok(Outcome::Retry(after)) => self.again(path, pending, after, "the tool asked to retry or did not answer"),
            Ok(Outcome::DeadLetter {
                status,
                tool_error_body,
                revoked,
            }) => {
                if revoked {
                    tracing::error!(
                        destination,
                        status,
                        "destination {destination} refused its key (revoked or missing a scope): fix its secret and restart; the event is dead-lettered"
                    );
                }
                let death = Death {
                    status: Some(status),
                    tool_error_body: Some(tool_error_body),
                    revoked,
                    reason: format!("the tool answered {status}"),
                };
                self.dead_letter(path, &key, &pending, death);
                None
            }
            Err(error) if error.is_retryable() => {
                let why = error.to_string();
                self.again(path, pending, engagement_deliver::backoff(attempt), &why)
            }
            Err(error) => {
                tracing::error!(destination, %error, "cannot deliver to destination {destination}; dead-lettered");
                let death = Death::unanswered(error.to_string());
                self.dead_letter(path, &key, &pending, death);
                None
            }
        }
    }

    /// Another attempt after `after` (scaled, with up to a quarter more as jitter: never sooner
    /// than a tool asked), or the dead letters once the budget is spent.
    fn again(&self, path: &Path, mut pending: Pending, after: Duration, why: &str) -> Option<i64> {
        // Erased while this attempt was under way: the file is gone and stays gone.
        let erased = self.erased.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if Self::is_erased(&erased, &pending) {
            let _ = std::fs::remove_file(path);
            return None;
        }
        drop(erased);
        if pending.attempts >= ATTEMPT_BUDGET {
            let key = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
            let death = Death::unanswered(format!("{} attempts, the last: {why}", pending.attempts));
            self.dead_letter(path, &key, &pending, death);
            return None;
        }
        let wait = after.mul_f64(self.wait_scale).as_millis() as i64;
        let wait = wait + fastrand::i64(0..=(wait / 4).max(0));
        pending.next_attempt_ms = now_ms() + wait;
        tracing::warn!(destination = %pending.destination, event_id = %pending.event_id, attempts = pending.attempts, %why, wait_ms = wait, "delivery failed; will retry");
        let erased = self.erased.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !Self::is_erased(&erased, &pending) {
            let _ = write_atomically(path, &serde_json::to_vec(&pending).unwrap_or_default());
        }
        Some(pending.next_attempt_ms)
    }

    /// Appends a delivery to the dead letters and takes it out of the outbox. `Customer Erased`
    /// keeps ids only: neither its sealed contact nor the tool's answer (which may name them).
    fn dead_letter(&self, path: &Path, key: &str, pending: &Pending, death: Death) {
        let destination = &pending.destination;
        let mut detail = pending.detail.clone();
        let erasure = pending.detail_type == CUSTOMER_ERASED;
        engagement::erasure::scrub_json(&mut detail);
        let tool = self.destinations.iter().find(|d| &d.name == destination).map(|d| d.tool.name());
        let line = json!({
            "destination": destination,
            "tool": tool,
            "event_id": pending.event_id,
            "event": {"detail-type": pending.detail_type, "detail": detail},
            "attempts": pending.attempts,
            "status": death.status,
            "tool_error_body": if erasure { None } else { death.tool_error_body },
            "revoked": death.revoked,
            "reason": death.reason,
        });
        let erased = self.erased.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let written = if Self::is_erased(&erased, pending) {
            Ok(()) // about someone erased meanwhile: kept nowhere
        } else {
            append_line(&self.dir.join(DEAD_LETTER_FILE), &line.to_string())
        };
        drop(erased);
        if let Err(error) = written {
            // Left in the outbox: tried again (and dead-lettered again) later.
            tracing::error!(%destination, %error, "the dead letter could not be written");
            return;
        }
        let count = self
            .dead_letters
            .lock()
            .map(|mut counts| {
                let count = counts.entry(destination.clone()).or_insert(0);
                *count += 1;
                *count
            })
            .unwrap_or(0);
        tracing::error!(%destination, event_id = %pending.event_id, status = death.status, reason = %death.reason, dead_letters = count, "dead-lettered");
        let _ = self.remember(key);
        let _ = std::fs::remove_file(path);
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
    use engagement_deliver::{parse_destinations, SkipReason};

    fn nudge(id: &str, customer_id: &str, handle: &str) -> Value {
        json!({"id": id, "detail-type": NUDGE_REQUESTED, "time": "2026-06-01T12:00:00Z",
               "detail": {"customer_id": customer_id, "handle": handle, "action": "send_welcome_series"}})
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut texts: Vec<String> = std::fs::read_dir(dir.join("outbox"))
            .expect("the outbox")
            .map(|e| std::fs::read_to_string(e.expect("an entry").path()).expect("a file"))
            .collect();
        texts.push(std::fs::read_to_string(dir.join("nudges.jsonl")).unwrap_or_default());
        texts.push(std::fs::read_to_string(dir.join(DEAD_LETTER_FILE)).unwrap_or_default());
        texts.push(std::fs::read_to_string(dir.join(crate::journal::DEAD_LETTER_FILE)).unwrap_or_default());
        texts
    }

    fn hook() -> Vec<Destination> {
        parse_destinations("[destinations.hook]\ntool = \"standard-webhooks\"\nurl = \"http://127.0.0.1:9/hooks\"\n").expect("parsed")
    }

    fn skipping() -> Handler {
        Arc::new(|_, _, _| Box::pin(async { Ok(Outcome::Skipped(SkipReason::Ignored)) }))
    }

    #[tokio::test]
    async fn an_erased_person_leaves_the_outbox_and_the_logs_and_is_not_logged_again() {
        let dir = std::env::temp_dir().join(format!("pyramid-forget-{}-{}", std::process::id(), fastrand::u32(..)));
        let outbox = Outbox::open(&dir, hook(), skipping(), 1.0).expect("opened");
        outbox.enqueue(&nudge("n1", "cus_a", "ann@example.com")).expect("queued");
        outbox.enqueue(&nudge("n2", "cus_b", "bob@example.com")).expect("queued");
        let erasure = json!({"id": "e1", "detail-type": CUSTOMER_ERASED, "time": "2026-06-01T12:00:00Z",
                             "detail": {"customer_id": "cus_a"}});
        outbox.enqueue(&erasure).expect("queued");
        // A delivery set aside as unreadable, and a write a crash cut short.
        std::fs::write(dir.join("outbox").join("x.unreadable"), "{\"body\": \"ann@example.com").expect("written");
        std::fs::write(dir.join("outbox").join("y.1.tmp"), "{\"id\": \"msg_n3\", \"handle\": \"ann@").expect("written");
        // The local bus gave up on deliveries: her nudge to the outbox, and other events.
        for event in [
            nudge("n5", "cus_a", "ann@example.com"),
            nudge("n6", "cus_b", "bob@example.com"),
            erasure.clone(),
        ] {
            let record = json!({"target": "Deliver", "event": event, "error": "refused"});
            append_line(&dir.join(crate::journal::DEAD_LETTER_FILE), &record.to_string()).expect("dead-lettered");
        }
        // The outbox's own dead letters: hers and his.
        for (customer_id, handle) in [("cus_a", "ann@example.com"), ("cus_b", "bob@example.com")] {
            let record = json!({"destination": "hook", "event": {"detail-type": NUDGE_REQUESTED, "detail": {"customer_id": customer_id, "handle": handle}}});
            append_line(&dir.join(DEAD_LETTER_FILE), &record.to_string()).expect("dead-lettered");
        }
        let ann = ErasedPerson {
            customer_ids: vec!["cus_a".into()],
            handles: vec!["ann@example.com".into()],
        };
        outbox.forget(&ann).expect("forgotten");
        let left = files(&dir);
        assert!(left.iter().all(|text| !text.contains("ann@")), "{left:?}");
        assert!(left.iter().any(|text| text.contains("bob@example.com")), "{left:?}");
        assert!(
            left.iter().any(|text| text.contains("Customer Erased")),
            "the erasure notice stays: {left:?}"
        );
        // A nudge about her decided before the erasure and delivered after it: dropped.
        outbox.enqueue(&nudge("n4", "cus_a", "ann@example.com")).expect("dropped");
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
        let outbox = Outbox::open(&dir, Vec::new(), skipping(), 1.0).expect("opened");
        outbox.enqueue(&event).expect("replayed");
        outbox.enqueue(&event).expect("replayed again");
        let log = std::fs::read_to_string(dir.join("nudges.jsonl")).expect("the log");
        assert_eq!(log.lines().count(), 1, "{log}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
