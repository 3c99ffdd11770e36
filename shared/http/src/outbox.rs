//! What an HTTP function does when an event it must publish cannot be: it keeps it in the
//! customer's outbox, where the sweep finds and publishes it.

use engagement::events::DomainEvent;
use engagement::ports::{BusError, InteractionLog};
use engagement::Timestamp;

/// After a failed publish, keeps the events in their customers' outboxes: the sweep publishes
/// them. If that write fails too, the levels are still caught up (the customers are due) but
/// the interactions' triggers are lost: logged as an error, with ids only.
pub async fn keep_unpublished(store: &impl InteractionLog, events: &[DomainEvent], now: Timestamp, error: &BusError) {
    match store.keep_unpublished(events, now).await {
        Ok(kept) => tracing::warn!(%error, customers = kept, "Interaction Recorded not published; kept in the outbox for the sweep"),
        Err(store_error) => {
            let customers: Vec<&str> = events.iter().map(|e| e.customer_id().as_str()).collect();
            tracing::error!(%error, %store_error, ?customers, "Interaction Recorded neither published nor kept; their triggers are lost");
        }
    }
}
