//! The local bus's journal: every routed delivery is appended to `DATA/bus-journal.jsonl` and
//! fsynced before `publish` returns, so an event acknowledged to a handler (and a 202 to a
//! client) survives a crash, a `kill -9` or Ctrl-C; at start the deliveries not marked done are
//! handed to the dispatcher again. The handlers are idempotent per event id, so a delivery done
//! just before a crash and replayed after it changes nothing.
//!
//! One thread owns the files: appends are group-committed (one write and one fsync for whatever
//! arrived meanwhile); done marks stay in memory, and the file is emptied whenever nothing is
//! pending (rewritten with only the pending lines once it passes `COMPACT_BYTES` and is mostly
//! done deliveries), so it holds only deliveries in flight. A delivery that can never succeed is
//! appended to `DATA/bus-dead-letter.jsonl` (event, target, error) and marked done.
//!
//! `Customer Erased` carries the person's email, sealed (`engagement::erasure`): once such a
//! delivery is done or dead-lettered, the journal is rewritten without its line at once, and its
//! dead letter keeps the ids only.

use crate::delivery::Delivery;
use crate::routing::Target;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tokio::sync::{mpsc::UnboundedSender, oneshot};

pub const JOURNAL_FILE: &str = "bus-journal.jsonl";
pub const DEAD_LETTER_FILE: &str = "bus-dead-letter.jsonl";
/// A journal larger than this is rewritten with only its pending lines.
const COMPACT_BYTES: u64 = 1 << 20;

/// One line of the journal.
#[derive(Serialize, Deserialize)]
struct Entry {
    seq: u64,
    target: Target,
    /// The envelope EventBridge would deliver.
    event: Value,
}

enum Command {
    Append {
        entries: Vec<(Target, Value)>,
        written: oneshot::Sender<std::io::Result<()>>,
    },
    Done(u64),
    DeadLetter {
        seq: u64,
        error: String,
    },
}

/// The handle the bus and the dispatcher talk to the journal's thread through.
#[derive(Clone)]
pub struct Journal {
    commands: mpsc::Sender<Command>,
}

impl Journal {
    /// Opens the journal of a data directory and starts its thread. Deliveries left pending by
    /// an earlier process are sent to `queue` first, in their order.
    pub fn open(dir: &Path, queue: UnboundedSender<Delivery>) -> std::io::Result<Journal> {
        let path = dir.join(JOURNAL_FILE);
        let mut pending = PendingLines::default();
        let mut sealed = BTreeSet::new();
        let mut next_seq = 1;
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                // A line torn by a crash was never acknowledged: nobody waits for it.
                let Ok(entry) = serde_json::from_str::<Entry>(line) else {
                    tracing::warn!("skipping a torn line of the bus journal");
                    continue;
                };
                next_seq = next_seq.max(entry.seq + 1);
                pending.insert(entry.seq, line.to_string());
                if holds_sealed_contact(&entry.event) {
                    sealed.insert(entry.seq);
                }
                match serde_json::from_value::<EventBridgeEvent<Value>>(entry.event) {
                    Ok(event) => {
                        let _ = queue.send(Delivery {
                            seq: entry.seq,
                            target: entry.target,
                            event,
                        });
                    }
                    Err(error) => tracing::warn!(seq = entry.seq, %error, "skipping an unreadable journal entry"),
                }
            }
            if !pending.is_empty() {
                tracing::info!(deliveries = pending.len(), "replaying the bus journal");
            }
        }
        let mut thread = Writer {
            dir: dir.to_path_buf(),
            path: path.clone(),
            file: rewrite(&path, &pending)?,
            size: 0,
            pending,
            sealed,
            unseal: false,
            next_seq,
            queue,
        };
        thread.size = thread.file.metadata()?.len();
        let (commands, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("bus-journal".into())
            .spawn(move || thread.run(receiver))?;
        Ok(Journal { commands })
    }

    /// Appends deliveries, durably; once written they go to the dispatcher.
    pub async fn append(&self, entries: Vec<(Target, Value)>) -> std::io::Result<()> {
        let (written, done) = oneshot::channel();
        self.commands
            .send(Command::Append { entries, written })
            .map_err(|_| std::io::Error::other("the bus journal has stopped"))?;
        done.await.map_err(|_| std::io::Error::other("the bus journal has stopped"))?
    }

    /// The target took the delivery: it is not replayed.
    pub fn done(&self, seq: u64) {
        let _ = self.commands.send(Command::Done(seq));
    }

    /// The delivery can never succeed: kept in the dead-letter file, not replayed.
    pub fn dead_letter(&self, seq: u64, error: String) {
        let _ = self.commands.send(Command::DeadLetter { seq, error });
    }
}

/// The lines of the deliveries not yet done, by seq, and the bytes they take in the file (kept
/// as they change: summing them at every group commit cost a backlog's length each time).
#[derive(Default)]
struct PendingLines {
    lines: BTreeMap<u64, String>,
    bytes: u64,
}

impl PendingLines {
    fn insert(&mut self, seq: u64, line: String) {
        self.bytes += line.len() as u64 + 1;
        if let Some(old) = self.lines.insert(seq, line) {
            self.bytes -= old.len() as u64 + 1;
        }
    }

    fn remove(&mut self, seq: &u64) -> Option<String> {
        let line = self.lines.remove(seq)?;
        self.bytes -= line.len() as u64 + 1;
        Some(line)
    }

    fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    fn len(&self) -> usize {
        self.lines.len()
    }
}

/// Writes the pending lines as the whole journal (atomically) and opens it for appending.
fn rewrite(path: &Path, pending: &PendingLines) -> std::io::Result<std::fs::File> {
    let temporary = path.with_extension("jsonl.tmp");
    let mut file = std::fs::File::create(&temporary)?;
    for line in pending.lines.values() {
        file.write_all(line.as_bytes())?;
        file.write_all(b"\n")?;
    }
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(parent) = path.parent() {
        // The rename itself, durable.
        std::fs::File::open(parent)?.sync_all()?;
    }
    std::fs::OpenOptions::new().append(true).open(path)
}

struct Writer {
    dir: PathBuf,
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    /// seq → its line, for every delivery not yet done.
    pending: PendingLines,
    /// The pending deliveries whose event holds a sealed contact.
    sealed: BTreeSet<u64>,
    /// A delivery with a sealed contact is over: its line leaves the file at the next compaction.
    unseal: bool,
    next_seq: u64,
    queue: UnboundedSender<Delivery>,
}

/// Whether an event (an envelope) holds a sealed contact.
fn holds_sealed_contact(event: &Value) -> bool {
    event["detail"].get(engagement::erasure::SEALED_CONTACT).is_some()
}

impl Writer {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        while let Ok(first) = commands.recv() {
            // Group commit: whatever arrived meanwhile shares one write and one fsync.
            let mut batch = vec![first];
            batch.extend(commands.try_iter());
            let mut text = String::new();
            let mut deliveries = Vec::new();
            let mut waiting = Vec::new();
            for command in batch {
                match command {
                    Command::Append { entries, written } => {
                        for (target, event) in entries {
                            let seq = self.next_seq;
                            self.next_seq += 1;
                            let line = serde_json::to_string(&Entry {
                                seq,
                                target,
                                event: event.clone(),
                            })
                            .unwrap_or_default();
                            text.push_str(&line);
                            text.push('\n');
                            self.pending.insert(seq, line);
                            if holds_sealed_contact(&event) {
                                self.sealed.insert(seq);
                            }
                            if let Ok(event) = serde_json::from_value::<EventBridgeEvent<Value>>(event) {
                                deliveries.push(Delivery { seq, target, event });
                            }
                        }
                        waiting.push(written);
                    }
                    Command::Done(seq) => {
                        self.pending.remove(&seq);
                        self.unseal |= self.sealed.remove(&seq);
                    }
                    Command::DeadLetter { seq, error } => {
                        if let Some(line) = self.pending.remove(&seq) {
                            self.dead_letter(&line, &error);
                        }
                        self.unseal |= self.sealed.remove(&seq);
                    }
                }
            }
            if !text.is_empty() {
                let written = self.file.write_all(text.as_bytes()).and_then(|()| self.file.sync_data());
                match written {
                    Ok(()) => {
                        self.size += text.len() as u64;
                        for delivery in deliveries {
                            // The dispatcher stopped: the process is ending, the journal keeps it.
                            let _ = self.queue.send(delivery);
                        }
                        for written in waiting {
                            let _ = written.send(Ok(()));
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "the bus journal cannot be written; events not published");
                        for delivery in deliveries {
                            self.pending.remove(&delivery.seq);
                            self.sealed.remove(&delivery.seq);
                        }
                        for written in waiting {
                            let _ = written.send(Err(std::io::Error::new(error.kind(), error.to_string())));
                        }
                    }
                }
            }
            if let Err(error) = self.compact() {
                tracing::warn!(%error, "the bus journal could not be compacted; it is replayed in full at start");
            }
        }
    }

    /// Keeps the file to the deliveries in flight: emptied when none is, rewritten when large
    /// or when a delivery with a sealed contact is over.
    fn compact(&mut self) -> std::io::Result<()> {
        if self.size == 0 {
            self.unseal = false;
            return Ok(());
        }
        if self.pending.is_empty() {
            self.file.set_len(0)?;
            // Otherwise not fsynced: if a crash undoes it, done deliveries are replayed, which is
            // harmless; but a sealed contact whose deliveries are over must not come back.
            if self.unseal {
                self.file.sync_data()?;
            }
            self.unseal = false;
            self.size = 0;
        } else if self.unseal || (self.size > COMPACT_BYTES && self.size > 4 * self.pending.bytes) {
            // Only once most of the file is done deliveries: under a backlog the pending lines
            // alone pass the bound, and rewriting them at every batch would cost more than it
            // saves. A sealed contact leaves at once (a rename, durable): erasures are rare.
            self.file = rewrite(&self.path, &self.pending)?;
            self.unseal = false;
            self.size = self.file.metadata()?.len();
        }
        Ok(())
    }

    fn dead_letter(&self, line: &str, error: &str) {
        let mut entry = serde_json::from_str::<Value>(line).unwrap_or(Value::Null);
        // Kept for whoever looks into the failure, but not the sealed contact: its retries are over.
        engagement::erasure::scrub_json(&mut entry["event"]);
        let record = serde_json::json!({"target": entry["target"], "event": entry["event"], "error": error});
        // Through the webhooks' appender: an erasure rewriting this file holds the same lock.
        let appended = crate::files::append_line(&self.dir.join(DEAD_LETTER_FILE), &record.to_string());
        if let Err(error) = appended {
            tracing::error!(%error, "a dead-lettered bus delivery could not be written down");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_lines_count_the_bytes_they_take_in_the_file() {
        let mut pending = PendingLines::default();
        pending.insert(1, "a".repeat(10));
        pending.insert(2, "b".repeat(20));
        pending.insert(2, "c".repeat(5));
        assert_eq!(pending.bytes, 11 + 6);
        assert_eq!(pending.remove(&1).as_deref(), Some("aaaaaaaaaa"));
        assert_eq!(pending.remove(&1), None);
        assert_eq!((pending.bytes, pending.len()), (6, 1));
    }

    fn envelope(id: &str, detail_type: &str, detail: Value) -> Value {
        serde_json::json!({"version": "0", "id": id, "detail-type": detail_type, "source": "engagement", "account": "local",
                           "time": "2026-06-01T12:00:00Z", "region": "local", "resources": [], "detail": detail})
    }

    fn read(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).unwrap_or_default()
    }

    #[tokio::test]
    async fn an_erasure_over_leaves_no_sealed_contact_in_the_journal_or_its_dead_letters() {
        let dir = std::env::temp_dir().join(format!("pyramid-journal-{}-{}", std::process::id(), fastrand::u32(..)));
        std::fs::create_dir_all(&dir).expect("a directory");
        let (queue, mut deliveries) = tokio::sync::mpsc::unbounded_channel();
        let journal = Journal::open(&dir, queue).expect("opened");
        let erased = |id: &str, customer_id: &str| {
            envelope(
                id,
                engagement::events::CUSTOMER_ERASED,
                serde_json::json!({"schema_version": 2, "customer_id": customer_id, "erased_at": "2026-06-01T12:00:00Z", "sealed_contact": format!("SEALED-{customer_id}")}),
            )
        };
        let other = envelope(
            "e2",
            engagement::events::INTERACTION_RECORDED,
            serde_json::json!({"customer_id": "cus_b"}),
        );
        // Another delivery stays in flight throughout: the journal is never simply emptied.
        journal
            .append(vec![
                (Target::Deliver, erased("e1", "cus_a")),
                (Target::Rescore, other),
                (Target::Deliver, erased("e3", "cus_c")),
            ])
            .await
            .expect("appended");
        let mut seqs = Vec::new();
        for _ in 0..3 {
            seqs.push(deliveries.recv().await.expect("a delivery").seq);
        }
        assert!(read(&dir, JOURNAL_FILE).contains("SEALED-cus_a"));
        journal.done(seqs[0]);
        journal.dead_letter(seqs[2], "refused".into());
        // Each batch is compacted before the next is taken: after the second append returns,
        // the batch with the marks above is compacted.
        for id in ["e4", "e5"] {
            let filler = envelope(
                id,
                engagement::events::INTERACTION_RECORDED,
                serde_json::json!({"customer_id": "cus_d"}),
            );
            journal.append(vec![(Target::Rescore, filler)]).await.expect("appended");
        }
        let (kept, dead) = (read(&dir, JOURNAL_FILE), read(&dir, DEAD_LETTER_FILE));
        assert!(!kept.contains("SEALED-") && kept.contains("cus_b"), "{kept}");
        assert!(
            !dead.contains("SEALED-") && !dead.contains(engagement::erasure::SEALED_CONTACT),
            "{dead}"
        );
        assert!(
            dead.contains("cus_c") && dead.contains("refused"),
            "the dead letter keeps the ids: {dead}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
