//! `EventBus` on EventBridge: PutEvents in chunks of at most 10 entries and 256 KB; entries that
//! fail inside a successful call (`FailedEntryCount`) are retried with backoff, never dropped.
//! What a retry cannot fix (a missing bus, denied access, an invalid entry) is not retried: it is
//! reported at once as `BusError::Rejected`.

use crate::errors::{classify, transient_code, Failure};
use crate::retry::{backoff, MAX_ATTEMPTS};
use aws_sdk_eventbridge::error::DisplayErrorContext;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;
use engagement::events::DomainEvent;
use engagement::ports::{BusError, EventBus};

/// EventBridge's limits on one PutEvents call.
pub const MAX_ENTRIES_PER_CALL: usize = 10;
pub const MAX_BYTES_PER_CALL: usize = 256 * 1024;

#[derive(Clone)]
pub struct EventBridgeBus {
    client: Client,
    bus_name: String,
    source: String,
}

impl EventBridgeBus {
    pub fn new(client: Client, bus_name: impl Into<String>, source: impl Into<String>) -> EventBridgeBus {
        EventBridgeBus {
            client,
            bus_name: bus_name.into(),
            source: source.into(),
        }
    }

    /// The size EventBridge counts for an entry (source, detail-type, detail, resources, time).
    fn entry_size(&self, event: &DomainEvent, detail: &str) -> usize {
        self.source.len() + event.detail_type().len() + detail.len() + resource(event).len() + 14
    }

    fn entry(&self, event: &DomainEvent, detail: String) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus_name)
            .source(&self.source)
            .detail_type(event.detail_type())
            .detail(detail)
            .resources(resource(event))
            .build()
    }
}

fn resource(event: &DomainEvent) -> String {
    format!("customer/{}", event.customer_id())
}

/// Whether an entry that failed inside a successful call can pass on a retry.
fn transient_entry(code: &str) -> bool {
    code == "InternalFailure" || transient_code(code)
}

/// Splits entries (with their sizes) into calls within both limits.
pub fn chunk_by_limits(sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, size) in sizes.iter().enumerate() {
        if index > start && (index - start == MAX_ENTRIES_PER_CALL || bytes + size > MAX_BYTES_PER_CALL) {
            chunks.push(start..index);
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        chunks.push(start..sizes.len());
    }
    chunks
}

impl EventBus for EventBridgeBus {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), BusError> {
        let details: Vec<String> = events.iter().map(DomainEvent::detail_json).collect();
        let sizes: Vec<usize> = events.iter().zip(&details).map(|(e, d)| self.entry_size(e, d)).collect();
        if let Some(size) = sizes.iter().find(|s| **s > MAX_BYTES_PER_CALL) {
            return Err(BusError::NotPublished {
                failed: 1,
                total: events.len(),
                reason: format!("an event of {size} bytes exceeds EventBridge's 256 KB"),
            });
        }
        let mut failed_total = 0;
        let mut last_reason = String::new();
        for range in chunk_by_limits(&sizes) {
            let unsent_after = events.len() - range.end;
            let mut pending: Vec<PutEventsRequestEntry> = range.map(|i| self.entry(&events[i], details[i].clone())).collect();
            // Not known to be published: what failed before, this chunk's pending, the chunks after.
            let refused = |pending: usize, reason: String| BusError::Rejected {
                failed: failed_total + pending + unsent_after,
                total: events.len(),
                reason,
            };
            for attempt in 0..MAX_ATTEMPTS {
                match self.client.put_events().set_entries(Some(pending.clone())).send().await {
                    Ok(output) if output.failed_entry_count() == 0 => {
                        pending.clear();
                        break;
                    }
                    Ok(output) => {
                        // Results are positional: keep exactly the entries that failed.
                        let results = output.entries();
                        let retry: Vec<PutEventsRequestEntry> = pending
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| results.get(*i).is_none_or(|r| r.error_code().is_some()))
                            .map(|(_, entry)| entry.clone())
                            .collect();
                        if let Some(code) = results.iter().find_map(|r| r.error_code()) {
                            last_reason = code.to_string();
                        }
                        if let Some(code) = results.iter().filter_map(|r| r.error_code()).find(|c| !transient_entry(c)) {
                            return Err(refused(retry.len(), code.to_string()));
                        }
                        tracing::warn!(failed = retry.len(), attempt, reason = %last_reason, "PutEvents entries failed; retrying them");
                        pending = retry;
                    }
                    Err(error) => {
                        last_reason = DisplayErrorContext(&error).to_string();
                        if classify(&error) == Failure::Permanent {
                            return Err(refused(pending.len(), last_reason));
                        }
                        tracing::warn!(attempt, reason = %last_reason, "PutEvents failed; retrying");
                    }
                }
                backoff(attempt).await;
            }
            failed_total += pending.len();
        }
        if failed_total > 0 {
            return Err(BusError::NotPublished {
                failed: failed_total,
                total: events.len(),
                reason: last_reason,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_hold_at_most_ten_entries_and_256_kb() {
        assert_eq!(chunk_by_limits(&[1; 25]), vec![0..10, 10..20, 20..25]);
        let big = MAX_BYTES_PER_CALL / 3 + 1;
        assert_eq!(chunk_by_limits(&[big, big, big, 10]), vec![0..2, 2..4]);
        assert!(chunk_by_limits(&[]).is_empty());
    }
}
