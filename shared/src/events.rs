//! The domain events the functions publish to each other and to marketing tools.
//! Detail-types are exactly the names below; every detail carries `schema_version`.

use crate::decide::Decision;
use crate::identity::Channel;
use crate::level::{Direction, Level};
use crate::rules::Trigger;
use crate::time::Timestamp;
use crate::values::{CustomerId, RecordOutcome, RecordStatus};
use serde::{Deserialize, Serialize};

/// Bumped when a detail changes incompatibly; consumers check it. Per detail-type: this is the
/// version of every detail but `Nudge Requested`'s and `Customer Erased`'s.
pub const SCHEMA_VERSION: u32 = 1;
/// `Nudge Requested`'s version. 2: `explanation` is the object every event carries
/// ([`EventExplanation`]); in version 1 it was the sentence alone, now `explanation.summary`.
pub const NUDGE_REQUESTED_SCHEMA_VERSION: u32 = 2;
/// `Customer Erased`'s version. 2: `sealed_contact`, the person's email sealed for the marketing
/// tools (`crate::erasure`); version 1 had only the id, and still parses (without it).
pub const CUSTOMER_ERASED_SCHEMA_VERSION: u32 = 2;
/// The default EventBridge `source` of every event (configurable per deployment).
pub const DEFAULT_SOURCE: &str = "engagement";

pub const INTERACTION_RECORDED: &str = "Interaction Recorded";
pub const LEVEL_CHANGED: &str = "Level Changed";
pub const ENGAGEMENT_AT_RISK: &str = "Engagement At Risk";
pub const NUDGE_REQUESTED: &str = "Nudge Requested";
pub const CUSTOMER_ERASED: &str = "Customer Erased";

/// Every detail-type the engine publishes.
pub const DETAIL_TYPES: [&str; 5] = [
    INTERACTION_RECORDED,
    LEVEL_CHANGED,
    ENGAGEMENT_AT_RISK,
    NUDGE_REQUESTED,
    CUSTOMER_ERASED,
];

/// New interactions were recorded for a customer (one event per customer per request).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InteractionRecorded {
    pub schema_version: u32,
    pub customer_id: CustomerId,
    pub interaction_ids: Vec<String>,
    /// The kinds recorded, in request order (nudge triggers on kinds read these).
    pub kinds: Vec<String>,
    pub recorded_at: Timestamp,
}

/// The explanation as events carry it: the sentence, and the numbers behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventExplanation {
    pub summary: String,
    pub evidence: f64,
    pub threshold: f64,
    pub top_kinds: Vec<String>,
}

impl EventExplanation {
    pub fn of(decision: &Decision) -> EventExplanation {
        let rung = decision.explanation.rungs.get(decision.level.index());
        EventExplanation {
            summary: decision.summary(),
            evidence: rung.map_or(0.0, |r| r.evidence),
            threshold: rung.map_or(0.0, |r| r.threshold),
            top_kinds: decision.explanation.top_kinds.iter().map(|k| k.kind.clone()).collect(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelChanged {
    pub schema_version: u32,
    pub customer_id: CustomerId,
    pub from: Level,
    pub to: Level,
    pub direction: Direction,
    /// When the change happened (a drop is dated when it was due, not when it was noticed).
    pub since: Timestamp,
    pub drops_at: Option<Timestamp>,
    pub at_risk_at: Option<Timestamp>,
    pub explanation: EventExplanation,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngagementAtRisk {
    pub schema_version: u32,
    pub customer_id: CustomerId,
    pub level: Level,
    pub drops_at: Timestamp,
    pub drops_to: Level,
    pub explanation: EventExplanation,
}

/// A nudge for a marketing or support tool to act on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NudgeRequested {
    pub schema_version: u32,
    /// Stable per (trigger, playbook, step): receivers deduplicate on it.
    pub nudge_id: String,
    pub customer_id: CustomerId,
    pub playbook: String,
    pub step: u32,
    pub action: String,
    pub channel: Channel,
    /// The customer's consented handle on that channel.
    pub handle: String,
    pub level: Level,
    pub trigger: Trigger,
    /// Why the customer stands where they do (as in `Level Changed`).
    pub explanation: EventExplanation,
    pub requested_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerErased {
    pub schema_version: u32,
    pub customer_id: CustomerId,
    pub erased_at: Timestamp,
    /// The email the tools find the person by, sealed with the contact key (base64 of nonce and
    /// XChaCha20-Poly1305 ciphertext; `crate::erasure::open_contact`). Absent in version 1 and
    /// for a customer without an email address; removed once the deliveries are over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_contact: Option<String>,
}

/// One `Interaction Recorded` per customer, with its newly recorded interactions in request
/// order (`kinds` parallel to `outcomes`). Duplicates, conflicts and erased identities are left out.
pub fn recorded_events(outcomes: &[RecordOutcome], kinds: &[&str], now: Timestamp) -> Vec<DomainEvent> {
    let mut per_customer: Vec<InteractionRecorded> = Vec::new();
    for (outcome, kind) in outcomes.iter().zip(kinds) {
        let (RecordStatus::Recorded, Some(customer_id)) = (outcome.status, &outcome.customer_id) else {
            continue;
        };
        let position = match per_customer.iter().position(|e| &e.customer_id == customer_id) {
            Some(position) => position,
            None => {
                per_customer.push(InteractionRecorded {
                    schema_version: SCHEMA_VERSION,
                    customer_id: customer_id.clone(),
                    interaction_ids: Vec::new(),
                    kinds: Vec::new(),
                    recorded_at: now,
                });
                per_customer.len() - 1
            }
        };
        per_customer[position].interaction_ids.push(outcome.id.clone());
        per_customer[position].kinds.push(kind.to_string());
    }
    per_customer.into_iter().map(DomainEvent::InteractionRecorded).collect()
}

/// One event, typed.
#[derive(Clone, Debug, PartialEq)]
pub enum DomainEvent {
    InteractionRecorded(InteractionRecorded),
    LevelChanged(LevelChanged),
    EngagementAtRisk(EngagementAtRisk),
    NudgeRequested(NudgeRequested),
    CustomerErased(CustomerErased),
}

impl DomainEvent {
    pub fn detail_type(&self) -> &'static str {
        match self {
            DomainEvent::InteractionRecorded(_) => INTERACTION_RECORDED,
            DomainEvent::LevelChanged(_) => LEVEL_CHANGED,
            DomainEvent::EngagementAtRisk(_) => ENGAGEMENT_AT_RISK,
            DomainEvent::NudgeRequested(_) => NUDGE_REQUESTED,
            DomainEvent::CustomerErased(_) => CUSTOMER_ERASED,
        }
    }

    pub fn customer_id(&self) -> &CustomerId {
        match self {
            DomainEvent::InteractionRecorded(e) => &e.customer_id,
            DomainEvent::LevelChanged(e) => &e.customer_id,
            DomainEvent::EngagementAtRisk(e) => &e.customer_id,
            DomainEvent::NudgeRequested(e) => &e.customer_id,
            DomainEvent::CustomerErased(e) => &e.customer_id,
        }
    }

    /// The detail as JSON text.
    pub fn detail_json(&self) -> String {
        let result = match self {
            DomainEvent::InteractionRecorded(e) => serde_json::to_string(e),
            DomainEvent::LevelChanged(e) => serde_json::to_string(e),
            DomainEvent::EngagementAtRisk(e) => serde_json::to_string(e),
            DomainEvent::NudgeRequested(e) => serde_json::to_string(e),
            DomainEvent::CustomerErased(e) => serde_json::to_string(e),
        };
        // These types serialize infallibly (no maps with non-string keys, no failing impls).
        result.unwrap_or_else(|_| "{}".to_string())
    }

    /// A stable id per fact, not per rendering: the same level change (customer, from, to, since),
    /// the same foreseen drop, the same recorded interactions always get the same id, even if
    /// the explanation's numbers differ between two runs. EventBridge delivers at least once and a
    /// rescore may publish again after a crash, so receivers (and the nudge function) deduplicate
    /// on it; outbox entries are keyed by it.
    pub fn event_id(&self) -> String {
        use sha2::{Digest, Sha256};
        let fact = match self {
            DomainEvent::InteractionRecorded(e) => format!("{}|{}", e.customer_id, e.interaction_ids.join(",")),
            DomainEvent::LevelChanged(e) => format!("{}|{}|{}|{}", e.customer_id, e.from, e.to, e.since.millis()),
            DomainEvent::EngagementAtRisk(e) => format!("{}|{}|{}", e.customer_id, e.level, e.drops_at.millis()),
            DomainEvent::NudgeRequested(e) => e.nudge_id.clone(),
            DomainEvent::CustomerErased(e) => e.customer_id.to_string(),
        };
        let digest = Sha256::new()
            .chain_update(self.detail_type())
            .chain_update([0u8])
            .chain_update(fact)
            .finalize();
        digest[..12].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads an event back from its detail-type and detail (as delivered by EventBridge).
    pub fn from_parts(detail_type: &str, detail: serde_json::Value) -> Result<DomainEvent, EventError> {
        let parsed = match detail_type {
            INTERACTION_RECORDED => serde_json::from_value(detail).map(DomainEvent::InteractionRecorded),
            LEVEL_CHANGED => serde_json::from_value(detail).map(DomainEvent::LevelChanged),
            ENGAGEMENT_AT_RISK => serde_json::from_value(detail).map(DomainEvent::EngagementAtRisk),
            NUDGE_REQUESTED => serde_json::from_value(detail).map(DomainEvent::NudgeRequested),
            CUSTOMER_ERASED => serde_json::from_value(detail).map(DomainEvent::CustomerErased),
            other => return Err(EventError::UnknownDetailType(other.to_string())),
        };
        parsed.map_err(|error| EventError::InvalidDetail(detail_type.to_string(), error.to_string()))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("unknown detail-type {0:?}")]
    UnknownDetailType(String),
    #[error("invalid {0} detail: {1}")]
    InvalidDetail(String, String),
}
