//! Ports: what the functions need from the outside world, in domain terms. Adapters (DynamoDB,
//! EventBridge, the local bus) implement them; handlers are generic
//! over them, so they run the same in Lambda, in `pyramid serve` and in tests.

use crate::customer::{CustomerState, Standing};
use crate::events::DomainEvent;
use crate::evidence::Evidence;
use crate::flow::{Day, DayFlow};
use crate::identity::Identity;
use crate::interaction::Interaction;
use crate::level::{Direction, Level};
use crate::playbook::{NudgeDecision, NudgeRecord};
use crate::replay::LevelChange;
use crate::rules::Trigger;
use crate::time::Timestamp;
pub use crate::values::{CustomerId, Movers, PyramidCounts, RecordOutcome, RecordStatus};
use serde::{Deserialize, Serialize};
use std::future::Future;

/// A customer as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredCustomer {
    pub id: CustomerId,
    pub name: Option<String>,
    pub identities: Vec<Identity>,
    pub state: CustomerState,
    /// Bumped by every write; level writes are conditional on it.
    pub version: u64,
    pub created_at: Timestamp,
    /// The `drops_at` for which "Engagement At Risk" was already published (once per window).
    pub at_risk_notified_for: Option<Timestamp>,
    /// When the sweep should look at this customer again.
    pub due_at: Option<Timestamp>,
    /// Customers merged into this one (their ids redirect here).
    pub merged_ids: Vec<CustomerId>,
    /// Events decided but not yet known to be published (the outbox), by event id.
    pub outbox: Vec<(String, DomainEvent)>,
    /// An erasure is under way: nothing may be decided, published or sent about this customer.
    pub erasing: bool,
    /// `Rules::fingerprint` of the rules its evidence was folded under (set at creation and by a
    /// refold); `None` for customers stored before fingerprints, taken as the rules in force.
    pub rules_fingerprint: Option<String>,
}

/// What listings show of a customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerSummary {
    pub id: CustomerId,
    pub name: Option<String>,
    pub standing: Standing,
    /// Which way the latest level change went (none yet: still at observing since joining).
    pub moved: Option<Direction>,
}

/// A level decision to store, conditional on the version it was decided from.
#[derive(Clone, Debug, PartialEq)]
pub struct StandingWrite {
    pub customer_id: CustomerId,
    pub expected_version: u64,
    /// The standing before (the pyramid counts move from its level).
    pub previous: Option<Standing>,
    pub standing: Standing,
    /// Next time the sweep must rescore (entering the at-risk window, or the drop).
    pub due_at: Option<Timestamp>,
    pub at_risk_notified_for: Option<Timestamp>,
    /// Present when the level changed: recorded in the customer's history and the movers.
    pub change: Option<LevelChange>,
    /// The evidence rebased to a newer epoch, when the stored one had fallen behind
    /// (`Evidence::epoch_is_stale`); written under the same version condition.
    pub rebased: Option<Evidence>,
    /// Events this decision publishes, stored with it (the outbox) so that a publish that fails
    /// after the write is retried, not lost. Cleared by `clear_outbox` once published.
    pub outbox: Vec<DomainEvent>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    /// Someone wrote since the version read: decide again from a fresh read.
    Conflict,
}

/// What an identity points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityLookup {
    Customer(CustomerId),
    Erased,
    Unknown,
}

/// What linking an identity to a customer did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkOutcome {
    Linked,
    AlreadyLinked,
    /// The identity belonged to another customer; it was merged into this one.
    Merged {
        merged: CustomerId,
    },
}

/// One page of a listing; `cursor` fetches the next one.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub cursor: Option<String>,
}

/// What became of one playbook step's nudges, counted as they are decided.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOutcomes {
    pub playbook: String,
    pub step: u32,
    pub sent: u64,
    pub held_out: u64,
    /// Suppressed, by reason (`no_consent`, `cool_down`, …).
    pub suppressed: std::collections::BTreeMap<String, u64>,
    /// Customers who rose a level within the attribution window after a sent nudge…
    pub sent_moved_up: u64,
    /// …and after a held-out one: the baseline the uplift is measured against.
    pub held_out_moved_up: u64,
}

/// A recorded nudge decision with its id and trigger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredNudge {
    pub nudge_id: String,
    pub trigger: Trigger,
    pub trigger_id: String,
    pub decision: NudgeDecision,
    pub decided_at: Timestamp,
    /// When a rise after this nudge was counted toward its step (once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rose_at: Option<Timestamp>,
}

impl StoredNudge {
    pub fn record(&self) -> NudgeRecord {
        NudgeRecord {
            playbook: self.decision.playbook.clone(),
            step: self.decision.step,
            outcome: self.decision.outcome,
            decided_at: self.decided_at,
        }
    }
}

/// What went wrong in a store. Retryable errors were already retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttled, a 5xx, a timeout or unreachable, after retries: a later attempt can pass.
    #[error("the store is unavailable or throttling after retries: {0}")]
    Unavailable(String),
    /// The store refused the request and would refuse it again (a missing table, denied access,
    /// an invalid request): not retryable, an operator has to act.
    #[error("the store refused the request: {0}")]
    Rejected(String),
    #[error("too many concurrent writers on {0}; gave up after retries")]
    Contention(String),
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("the identity {0} was erased")]
    Erased(String),
    #[error("invalid cursor: not one this listing gave")]
    InvalidCursor,
}

impl StoreError {
    /// Whether the whole invocation may be retried (Lambda retries, SQS redrives).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Contention(_))
    }
}

// The store's ports, one per family of operations. A handler is generic over the ones it calls
// (ingest: `InteractionLog`; rescore: `CustomerReads + Standings`; nudge: `CustomerReads +
// NudgeLedger`; the API: those and `Insights`, `CustomerAdmin`), so its bounds say what it
// touches. `DynamoStore` implements them all.

/// Interactions in: what ingest writes (and the consent route, which records one).
pub trait InteractionLog: Send + Sync {
    /// Records interactions (all of one request) exactly once each: resolves or creates each
    /// customer by identity, stores each new interaction, folds it into the evidence and marks
    /// the customer due for rescoring, atomically per customer. Outcomes are in input order.
    fn record_interactions(
        &self,
        batch: &[Interaction],
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<RecordOutcome>, StoreError>> + Send;

    /// Keeps events that could not be published (ingest's `Interaction Recorded`) in their
    /// customers' outboxes and marks those customers due now, one write per customer, each
    /// bumping the version (a rescore that read before writes nothing and reads again): the
    /// sweep publishes them. Returns how many customers took them (an erased or merged-away
    /// customer takes none).
    fn keep_unpublished(&self, events: &[DomainEvent], now: Timestamp) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

/// One customer read: its profile, its identities, its interactions and its level history.
pub trait CustomerReads: Send + Sync {
    /// Loads a customer, following merge redirects. `None` if unknown or erased.
    fn load_customer(&self, id: &CustomerId) -> impl Future<Output = Result<Option<StoredCustomer>, StoreError>> + Send;

    fn find_customer(&self, identity: &Identity) -> impl Future<Output = Result<IdentityLookup, StoreError>> + Send;

    /// The customer's interactions, newest first.
    fn interactions(
        &self,
        id: &CustomerId,
        cursor: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<Interaction>, StoreError>> + Send;

    /// The level changes recorded for a customer already read (and those merged into it),
    /// oldest first.
    fn level_changes(&self, customer: &StoredCustomer) -> impl Future<Output = Result<Vec<LevelChange>, StoreError>> + Send;
}

/// Level decisions out, and the sweep's work list.
pub trait Standings: Send + Sync {
    /// Writes a decision if the customer is still at `expected_version`; moves the pyramid counts
    /// in the same transaction when the level changed.
    fn write_standing(&self, write: &StandingWrite) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;

    /// Removes published events from a customer's outbox. If nothing was written since
    /// `written_version`, also sets `due_at` (while events are pending the customer stays due).
    fn clear_outbox(
        &self,
        id: &CustomerId,
        event_ids: &[String],
        written_version: u64,
        due_at: Option<Timestamp>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Customers whose `due_at` is at or before `before`, a page at a time.
    fn due_customers(
        &self,
        before: Timestamp,
        cursor: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<StoredCustomer>, StoreError>> + Send;
}

/// A customer re-folded under new rules, to store if it is still at `expected_version`: the
/// evidence and consent replayed from its whole history, the standing replay decides now, and
/// its level timeline (which replaces the stored one, in the daily flow too).
#[derive(Clone, Debug, PartialEq)]
pub struct RefoldWrite {
    pub customer_id: CustomerId,
    pub expected_version: u64,
    /// The stored level (the pyramid counts move from it).
    pub previous_level: Level,
    pub state: CustomerState,
    pub standing: Standing,
    pub due_at: Option<Timestamp>,
    pub at_risk_notified_for: Option<Timestamp>,
    /// Which way the latest change of the timeline went (none: observing since joining).
    pub moved: Option<Direction>,
    /// Every change of level, oldest first, as replay dates them.
    pub timeline: Vec<LevelChange>,
    /// `Rules::fingerprint` of the rules folded under.
    pub rules_fingerprint: String,
}

/// Re-folding stored customers under new rules (`pyramid refold`).
pub trait Refolds: Send + Sync {
    /// One page of one segment (of `segments`, read in parallel) of the customers whose evidence
    /// was not folded under the rules with `fingerprint`; merged-away and erasing ones left out.
    fn customers_to_refold(
        &self,
        fingerprint: &str,
        segment: u32,
        segments: u32,
        cursor: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<StoredCustomer>, StoreError>> + Send;

    /// A customer's whole history (its own interactions and those of customers merged into it),
    /// once each, as the store's history shows it now (in AWS an index that may lag behind).
    fn history(&self, customer: &StoredCustomer) -> impl Future<Output = Result<Vec<Interaction>, StoreError>> + Send;

    /// Stores a refold if the customer is still at `expected_version`: evidence, consent, standing,
    /// the due and level indexes, the fingerprint, the pyramid counts, and the level changes with
    /// the daily flow (the stored ones replaced by the timeline). A timeline too long for one
    /// transaction is written in several, each bumping the version, the profile last: a run killed
    /// in between leaves the fingerprint unstamped, and the next run finishes the difference.
    fn write_refold(&self, write: &RefoldWrite) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;

    /// Stores several refolds, each as `write_refold` would (its own version condition, its own
    /// outcome, in order). A store may write them in fewer transactions; by default one after
    /// the other.
    fn write_refolds(&self, writes: &[RefoldWrite]) -> impl Future<Output = Result<Vec<WriteOutcome>, StoreError>> + Send {
        async move {
            let mut outcomes = Vec::with_capacity(writes.len());
            for write in writes {
                outcomes.push(self.write_refold(write).await?);
            }
            Ok(outcomes)
        }
    }
}

/// Nudge decisions, recorded once per trigger, and the rises counted toward them.
pub trait NudgeLedger: Send + Sync {
    /// The nudge history of a customer already read: its own and that of those merged into it.
    fn nudges_of(&self, customer: &StoredCustomer) -> impl Future<Output = Result<Vec<StoredNudge>, StoreError>> + Send;

    /// Records a nudge decision once per (trigger_id, playbook): returns false if it was already
    /// recorded (a redelivered event), and then nothing is written.
    fn record_nudge(&self, customer: &CustomerId, nudge: &StoredNudge) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Counts a rise of the customer after one of its nudges (sent or held out) toward that
    /// step's outcomes, once per nudge: returns false if this nudge already counted a rise.
    fn record_rise_after(
        &self,
        customer: &CustomerId,
        nudge: &StoredNudge,
        rose_at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Aggregates across customers: listings by level, the pyramid, its flow, nudge outcomes.
pub trait Insights: Send + Sync {
    /// Customers at a level, newest `since` first, a page at a time; with `since_from`, only
    /// those at the level since then.
    fn customers_at_level(
        &self,
        level: Level,
        since_from: Option<Timestamp>,
        cursor: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<CustomerSummary>, StoreError>> + Send;

    fn pyramid_counts(&self) -> impl Future<Output = Result<PyramidCounts, StoreError>> + Send;

    /// What moved in the pyramid on each UTC day of `first..=last` (days with nothing left out),
    /// oldest first.
    fn flows(&self, first: Day, last: Day) -> impl Future<Output = Result<Vec<DayFlow>, StoreError>> + Send;

    /// Outcomes per playbook step, over every nudge decided so far.
    fn nudge_outcomes(&self) -> impl Future<Output = Result<Vec<StepOutcomes>, StoreError>> + Send;
}

/// Changes to who a customer is: identity links (merges) and erasure.
pub trait CustomerAdmin: Send + Sync {
    /// Links an identity to a customer; if it belongs to another, merges that one into this one.
    fn link_identity(
        &self,
        customer: &CustomerId,
        identity: &Identity,
        now: Timestamp,
    ) -> impl Future<Output = Result<LinkOutcome, StoreError>> + Send;

    /// Erases everything about a customer; its identities become salted-hash tombstones.
    /// Returns false if there was no such customer.
    fn erase_customer(&self, id: &CustomerId, now: Timestamp) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// What went wrong publishing events.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Throttled, a 5xx, a timeout or unreachable, after retries: a later attempt can pass.
    #[error("{failed} of {total} events could not be published after retries: {reason}")]
    NotPublished { failed: usize, total: usize, reason: String },
    /// The bus refused the events and would refuse them again (a missing bus, denied access, an
    /// invalid entry): not retryable, an operator has to act.
    #[error("{failed} of {total} events were refused by the bus: {reason}")]
    Rejected { failed: usize, total: usize, reason: String },
}

impl BusError {
    /// Whether publishing again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BusError::NotPublished { .. })
    }
}

/// Publishes domain events to the other functions and to marketing tools.
pub trait EventBus: Send + Sync {
    /// Publishes all events or fails naming how many were not published.
    fn publish(&self, events: &[DomainEvent]) -> impl Future<Output = Result<(), BusError>> + Send;
}

/// The time, injected so tests and replays can set it.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}
