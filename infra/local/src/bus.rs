//! The in-process event bus: `EventBus` for the handlers, routing each event by the template's
//! rules to the rescore and nudge handlers and to the webhooks, as EventBridge would. Every
//! routed delivery is journaled durably before `publish` returns (`crate::journal`), so events
//! in flight survive a crash and are delivered at the next start.

use crate::delivery::Delivery;
use crate::journal::Journal;
use crate::routing::Router;
use engagement::events::DomainEvent;
use engagement::ports::{BusError, EventBus};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

#[derive(Clone)]
pub struct LocalBus {
    router: Arc<Router>,
    source: String,
    journal: Journal,
    published: Arc<AtomicU64>,
}

impl LocalBus {
    /// A bus journaling into `dir`, and the receiving end its dispatcher reads (first the
    /// deliveries an earlier process left pending).
    pub fn open(router: Arc<Router>, source: &str, dir: &Path) -> std::io::Result<(LocalBus, mpsc::UnboundedReceiver<Delivery>)> {
        let (queue, receiver) = mpsc::unbounded_channel();
        let journal = Journal::open(dir, queue)?;
        Ok((
            LocalBus {
                router,
                source: source.to_string(),
                journal,
                published: Arc::default(),
            },
            receiver,
        ))
    }

    /// The journal, for the dispatcher to mark deliveries done.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Events published so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// The envelope EventBridge would deliver.
    pub fn envelope(&self, event: &DomainEvent) -> Value {
        json!({
            "version": "0",
            "id": event.event_id(),
            "detail-type": event.detail_type(),
            "source": self.source,
            "account": "000000000000",
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": "local",
            "resources": [format!("customer/{}", event.customer_id())],
            "detail": serde_json::from_str::<Value>(&event.detail_json()).unwrap_or(Value::Null),
        })
    }
}

impl EventBus for LocalBus {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), BusError> {
        let mut entries = Vec::new();
        for event in events {
            let envelope = self.envelope(event);
            for target in self.router.targets(&envelope) {
                entries.push((target, envelope.clone()));
            }
        }
        if !entries.is_empty() {
            self.journal.append(entries).await.map_err(|error| BusError::NotPublished {
                failed: events.len(),
                total: events.len(),
                reason: format!("the bus journal: {error}"),
            })?;
        }
        self.published.fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// A bus that publishes nothing: history imports set levels without nudging anyone.
#[derive(Clone, Default)]
pub struct QuietBus {
    pub swallowed: Arc<AtomicU64>,
}

impl EventBus for QuietBus {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), BusError> {
        self.swallowed.fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// A bus that keeps what is published, for a caller to hand on (history played week by week).
#[derive(Clone, Default)]
pub struct CollectingBus {
    events: Arc<std::sync::Mutex<Vec<DomainEvent>>>,
}

impl CollectingBus {
    /// Everything published since the last take.
    pub fn take(&self) -> Vec<DomainEvent> {
        self.events
            .lock()
            .map(|mut events| std::mem::take(&mut *events))
            .unwrap_or_default()
    }
}

impl EventBus for CollectingBus {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), BusError> {
        match self.events.lock() {
            Ok(mut kept) => {
                kept.extend_from_slice(events);
                Ok(())
            }
            Err(_) => Err(BusError::NotPublished {
                failed: events.len(),
                total: events.len(),
                reason: "the collecting bus was poisoned".into(),
            }),
        }
    }
}
