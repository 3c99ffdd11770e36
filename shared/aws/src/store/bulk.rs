//! The items as a bulk load writes them (`pyramid import` on an empty store): the same
//! definitions as the live path's writes, so that the two cannot drift. Each function builds the
//! final item; the live path wraps the same items in conditional puts.

use super::requests::key;
use super::DynamoStore;
use crate::item::*;
use crate::keys::*;
use aws_sdk_dynamodb::types::AttributeValue;
use engagement::customer::CustomerState;
use engagement::events::SCHEMA_VERSION;
use engagement::flow::Day;
use engagement::ports::{CustomerId, StandingWrite, StoreError};
use engagement::{Direction, Identity, Interaction, Level, LevelChange, Timestamp, LEVEL_COUNT};
use std::collections::{BTreeMap, HashMap};

/// An interaction as stored: claimed by its id, on its customer's history. `fingerprint` is
/// `interaction.fingerprint()`, which the caller has already computed to detect a duplicate.
pub(super) fn interaction_item(
    interaction: &Interaction,
    fingerprint: String,
    customer: &CustomerId,
    now: Timestamp,
) -> Result<Item, StoreError> {
    let content = serde_json::to_string(interaction).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut item = key(interaction_pk(&interaction.id), "INTERACTION");
    item.extend([
        ("customer_id".to_string(), s(customer.as_str())),
        ("fingerprint".to_string(), s(fingerprint)),
        ("content".to_string(), s(content)),
        ("kind".to_string(), s(interaction.kind.clone())),
        ("occurred_at".to_string(), n_int(interaction.occurred_at.millis())),
        ("recorded_at".to_string(), n_int(now.millis())),
        (HISTORY_PK.to_string(), s(customer.as_str())),
        (HISTORY_SK.to_string(), n_int(interaction.occurred_at.millis())),
    ]);
    Ok(item)
}

/// An identity claimed by a customer.
pub(super) fn identity_item(salt: &str, identity: &Identity, customer: &CustomerId, now: Timestamp) -> Item {
    let mut item = key(identity_pk(salt, identity), "IDENTITY");
    item.extend([
        ("customer_id".to_string(), s(customer.as_str())),
        ("channel".to_string(), s(identity.channel.as_str())),
        ("handle".to_string(), s(identity.handle.clone())),
        ("linked_at".to_string(), n_int(now.millis())),
    ]);
    item
}

/// A level change in the customer's history.
pub(super) fn change_item(id: &CustomerId, change: &LevelChange) -> Item {
    let mut item = key(customer_pk(id), &change_sk(change.at, change.to));
    item.extend([
        ("customer_id".to_string(), s(id.as_str())),
        ("from".to_string(), s(change.from.name())),
        ("to".to_string(), s(change.to.name())),
        ("at".to_string(), n_int(change.at.millis())),
        ("schema_version".to_string(), n_int(i64::from(SCHEMA_VERSION))),
    ]);
    item
}

/// A new customer's profile: who they are, their evidence and consent, their standing, and the
/// fingerprint of the rules its evidence was folded under (so rescore does not hold it for a
/// refold; `rules_fingerprint` is `rules.fingerprint()`, computed once by the caller).
pub(super) fn profile_item(
    rules: &engagement::Rules,
    rules_fingerprint: String,
    id: &CustomerId,
    name: Option<String>,
    identities: &[Identity],
    state: &CustomerState,
    created_at: Timestamp,
) -> Item {
    let mut item = key(customer_pk(id), PROFILE);
    item.extend([
        ("customer_id".to_string(), s(id.as_str())),
        ("created_at".to_string(), n_int(created_at.millis())),
        ("version".to_string(), n_int(1)),
        ("outbox".to_string(), AttributeValue::M(HashMap::new())),
        (RULES_FINGERPRINT.to_string(), s(rules_fingerprint)),
        (
            "identities".to_string(),
            AttributeValue::L(identities.iter().map(identity_value).collect()),
        ),
    ]);
    if let Some(name) = name {
        item.insert("name".to_string(), s(name));
    }
    item.extend(evidence_attributes(rules, &state.evidence));
    item.extend(consent_attributes(&state.consent));
    if let Some(standing) = &state.standing {
        item.extend(standing_attributes(id, standing));
    }
    item
}

/// One customer of a bulk load, decided: the state folded from their whole history, the
/// rescore's write that decides it as of the load, and the level changes replay found.
pub struct BulkCustomer<'a> {
    pub id: &'a CustomerId,
    pub name: Option<String>,
    pub identities: &'a [Identity],
    /// Evidence and consent (its standing is the write's).
    pub state: &'a CustomerState,
    pub write: &'a StandingWrite,
    /// Every level change, oldest first (the write's own change included).
    pub timeline: &'a [LevelChange],
    /// `DynamoStore::rules_fingerprint()`, computed once for the whole load.
    pub rules_fingerprint: &'a str,
}

/// The pyramid and flow counters of a bulk load, summed per shard as the live writes add them.
#[derive(Default)]
pub struct BulkCounters {
    pyramid: BTreeMap<u32, [i64; LEVEL_COUNT]>,
    flow: BTreeMap<(u32, Day), BTreeMap<String, i64>>,
}

impl BulkCounters {
    /// A customer joined on the day of `first_at`, moved as `timeline` says and stands at `level`.
    pub fn count(&mut self, id: &CustomerId, first_at: Timestamp, timeline: &[LevelChange], level: Level) {
        self.pyramid.entry(shard(id, PYRAMID_SHARDS)).or_default()[level.index()] += 1;
        let flow_shard = shard(id, FLOW_SHARDS);
        *self
            .flow
            .entry((flow_shard, flow_day(first_at)))
            .or_default()
            .entry(JOINED.to_string())
            .or_default() += 1;
        for change in timeline {
            *self
                .flow
                .entry((flow_shard, flow_day(change.at)))
                .or_default()
                .entry(moved_attribute(change.from, change.to))
                .or_default() += 1;
        }
    }

    /// The counter items, as absolute values (the load starts from an empty store).
    pub fn items(&self) -> Vec<Item> {
        let mut items = Vec::new();
        for (shard, counts) in &self.pyramid {
            let mut item = key(pyramid_pk(*shard), COUNTS);
            for (level, count) in counts.iter().enumerate() {
                if *count != 0 {
                    item.insert(COUNT[level].to_string(), n_int(*count));
                }
            }
            items.push(item);
        }
        for ((shard, day), counts) in &self.flow {
            let mut item = key(flow_pk(*shard), &flow_sk(*day));
            item.insert("day".to_string(), n_int(*day));
            for (attribute, count) in counts {
                item.insert(attribute.clone(), n_int(*count));
            }
            items.push(item);
        }
        items
    }
}

impl DynamoStore {
    /// The interaction item the live path would put for `interaction` on `customer`;
    /// `fingerprint` is `interaction.fingerprint()` (the caller has it from duplicate detection).
    pub fn bulk_interaction_item(
        &self,
        interaction: &Interaction,
        fingerprint: String,
        customer: &CustomerId,
        now: Timestamp,
    ) -> Result<Item, StoreError> {
        interaction_item(interaction, fingerprint, customer, now)
    }

    /// The fingerprint of the rules this store folds under, as profiles record it.
    pub fn rules_fingerprint(&self) -> String {
        self.rules.fingerprint()
    }

    /// The id a customer first known by `identity` gets (as ingest derives it).
    pub fn customer_id_for(&self, identity: &Identity) -> CustomerId {
        customer_id_for(&self.config.salt, identity)
    }

    /// A customer's items as the live path leaves them once ingest and rescore are done: the
    /// profile (with the write's standing, due time and at-risk notice), the identities and the
    /// level changes.
    pub fn bulk_customer_items(&self, customer: &BulkCustomer<'_>, now: Timestamp) -> Vec<Item> {
        let write = customer.write;
        let id = customer.id;
        let state = CustomerState {
            standing: Some(write.standing),
            ..customer.state.clone()
        };
        let mut profile = profile_item(
            &self.rules,
            customer.rules_fingerprint.to_string(),
            id,
            customer.name.clone(),
            customer.identities,
            &state,
            now,
        );
        if let Some(at) = write.at_risk_notified_for {
            profile.insert("risk_notified".to_string(), n_int(at.millis()));
        }
        if let Some(due) = write.due_at {
            profile.insert(DUE_SHARD.to_string(), s(due_shard(id)));
            profile.insert(DUE_AT.to_string(), n_int(due.millis()));
        }
        if let Some(direction) = customer.timeline.last().and_then(|c| Direction::between(c.from, c.to)) {
            profile.insert(MOVED.to_string(), s(direction.name()));
        }
        let mut items = vec![profile];
        items.extend(
            customer
                .identities
                .iter()
                .map(|identity| identity_item(&self.config.salt, identity, id, now)),
        );
        items.extend(customer.timeline.iter().map(|change| change_item(id, change)));
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Days before 1970 share the flow's day 0: their joins are summed into one item per shard,
    /// not written as several items of one key, the last of which would win.
    #[test]
    fn early_days_are_summed_into_one_flow_item() {
        let mut counters = BulkCounters::default();
        for n in 0..8 {
            let id = CustomerId(format!("cus_early_{n}"));
            counters.count(&id, Timestamp::from_millis(-(n + 1) * 86_400_000 * 400), &[], Level::Observing);
        }
        let items = counters.items();
        let keys: BTreeSet<(String, String)> = items
            .iter()
            .map(|item| (format!("{:?}", item.get(PK)), format!("{:?}", item.get(SK))))
            .collect();
        assert_eq!(keys.len(), items.len(), "two items of one key: {items:?}");
        let joined: i64 = items
            .iter()
            .filter_map(|item| item.get(JOINED).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok()))
            .sum();
        assert_eq!(joined, 8);
    }
}
