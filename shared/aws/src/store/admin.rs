//! `CustomerAdmin`: identity links that merge customers, and erasure.

use super::requests::*;
use super::DynamoStore;
use crate::errors::{cancelled, store_error};
use crate::item::*;
use crate::keys::*;
use crate::retry::{backoff, MAX_ATTEMPTS};
use aws_sdk_dynamodb::types::{AttributeValue, Delete, TransactWriteItem, Update};
use engagement::customer::CustomerState;
use engagement::flow::FlowEntry;
use engagement::ports::*;
use engagement::{Identity, Level, Timestamp};
use std::collections::{BTreeMap, BTreeSet, HashMap};

impl CustomerAdmin for DynamoStore {
    async fn link_identity(&self, customer: &CustomerId, identity: &Identity, now: Timestamp) -> Result<LinkOutcome, StoreError> {
        for attempt in 0..MAX_ATTEMPTS {
            let Some(survivor_item) = self.follow_redirects(customer).await? else {
                return Err(StoreError::NotFound(format!("customer {customer}")));
            };
            let survivor = customer_from_item(&self.rules, &survivor_item)?;
            let owner = match self.find_customer(identity).await? {
                IdentityLookup::Erased => return Err(StoreError::Erased(identity.to_string())),
                IdentityLookup::Customer(owner) if owner == survivor.id => return Ok(LinkOutcome::AlreadyLinked),
                IdentityLookup::Customer(owner) => Some(owner),
                IdentityLookup::Unknown => None,
            };
            let actions = match &owner {
                None => {
                    let mut expr = Expr::default();
                    let name = expr.name("identities");
                    let empty = expr.value(AttributeValue::L(vec![]));
                    let new = expr.value(AttributeValue::L(vec![identity_value(identity)]));
                    expr.set
                        .push(format!("{name} = list_append(if_not_exists({name}, {empty}), {new})"));
                    expr.add("version", n_int(1));
                    let update = expr.update(
                        self.table(),
                        profile_key(&survivor.id),
                        Some("attribute_exists(pk) AND attribute_not_exists(merged_into) AND attribute_not_exists(erasing)"),
                    )?;
                    vec![
                        TransactWriteItem::builder().update(update).build(),
                        self.identity_put(identity, &survivor.id, now)?,
                    ]
                }
                Some(owner) => {
                    let Some(loser_item) = self.get(profile_key(owner)).await? else {
                        backoff(attempt).await;
                        continue;
                    };
                    if loser_item.contains_key("merged_into") {
                        backoff(attempt).await;
                        continue;
                    }
                    let loser = customer_from_item(&self.rules, &loser_item)?;
                    self.merge_actions(&survivor, &survivor_item, &loser, now)?
                }
            };
            match self.transact(actions).await? {
                Ok(()) => {
                    return match owner {
                        None => Ok(LinkOutcome::Linked),
                        Some(merged) => {
                            self.repoint_history(&merged, &survivor.id).await?;
                            Ok(LinkOutcome::Merged { merged })
                        }
                    };
                }
                Err(_) => backoff(attempt).await,
            }
        }
        Err(StoreError::Contention(format!("identities of {customer}")))
    }

    async fn erase_customer(&self, id: &CustomerId, now: Timestamp) -> Result<bool, StoreError> {
        // First the customer is marked as being erased (conditional on the version read): from
        // then on ingest, links, merges and level writes on it fail their conditions, so the
        // identities and the level read next are final.
        let mut marked = None;
        for attempt in 0..MAX_ATTEMPTS {
            let Some(item) = self.follow_redirects(id).await? else {
                return Ok(false);
            };
            let customer = customer_from_item(&self.rules, &item)?;
            if item.contains_key("erasing") {
                marked = Some(customer);
                break;
            }
            let mut expr = Expr::default();
            expr.set("erasing", n_int(now.millis()));
            expr.add("version", n_int(1));
            let version = expr.value(n_int(customer.version as i64));
            let condition = format!("{} = {version} AND attribute_not_exists(merged_into)", expr.name("version"));
            if self
                .send_update(expr.update(self.table(), profile_key(&customer.id), Some(&condition))?)
                .await?
            {
                marked = self.load_customer(&customer.id).await?;
                break;
            }
            backoff(attempt).await;
        }
        let Some(customer) = marked else {
            return Err(StoreError::Contention(format!("erasure of {id}")));
        };
        // Then the identities become tombstones, so nothing new is recorded for this person.
        for identity in &customer.identities {
            let mut expr = Expr::default();
            expr.set("erased", AttributeValue::Bool(true));
            expr.set("erased_at", n_int(now.millis()));
            for attribute in ["customer_id", "channel", "handle"] {
                expr.remove(attribute);
            }
            let update = expr.update(self.table(), key(identity_pk(&self.config.salt, identity), "IDENTITY"), None)?;
            self.send_update(update).await?;
        }
        // Twice: the history index is eventually consistent, and the second pass catches
        // interactions written just before the mark that the first did not see yet.
        for _ in 0..2 {
            let doomed = self.erasable_items(&customer).await?;
            self.batch_delete(doomed).await?;
        }
        let delete = Delete::builder()
            .table_name(self.table())
            .set_key(Some(profile_key(&customer.id)))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(invalid_request)?;
        let mut actions = vec![TransactWriteItem::builder().delete(delete).build()];
        if let Some(standing) = customer.state.standing {
            actions.push(self.count_update(&customer.id, &[(standing.level, -1)])?);
            actions.push(self.flow_update(&customer.id, now, &[FlowEntry::Left(standing.level)])?);
        }
        match self.transact(actions).await? {
            Ok(()) => Ok(true),
            // Erased concurrently: the other erasure moved the count.
            Err(reasons) if reasons.first().is_some_and(Reason::failed_condition) => Ok(true),
            Err(reasons) => Err(cancelled("erase_customer", reasons.iter().map(|r| r.code.as_str()))),
        }
    }
}

impl DynamoStore {
    /// The transaction that merges `loser` into `survivor`: the survivor takes the merged
    /// evidence, the union of identities and the strictest consent; the loser becomes a redirect;
    /// the loser's identities point at the survivor; the pyramid no longer counts the loser.
    pub(super) fn merge_actions(
        &self,
        survivor: &StoredCustomer,
        survivor_item: &Item,
        loser: &StoredCustomer,
        now: Timestamp,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let merged = survivor.state.merge(&self.rules, &loser.state);
        let survivor_update = self.survivor_update(survivor, survivor_item, loser, &merged, now)?;
        let loser_update = self.loser_update(survivor, loser, now)?;
        let mut actions = vec![
            TransactWriteItem::builder().update(survivor_update).build(),
            TransactWriteItem::builder().update(loser_update).build(),
        ];
        for identity in &loser.identities {
            let mut expr = Expr::default();
            expr.set("customer_id", s(survivor.id.as_str()));
            let owner = expr.value(s(loser.id.as_str()));
            let update = expr.update(
                self.table(),
                key(identity_pk(&self.config.salt, identity), "IDENTITY"),
                Some(&format!("customer_id = {owner}")),
            )?;
            actions.push(TransactWriteItem::builder().update(update).build());
        }
        // The pyramid: both sides leave their levels, the survivor enters the merged one.
        let mut survivor_moves: Vec<(Level, i64)> = survivor.state.standing.iter().map(|s| (s.level, -1)).collect();
        survivor_moves.extend(merged.standing.iter().map(|s| (s.level, 1)));
        let loser_moves: Vec<(Level, i64)> = loser.state.standing.iter().map(|s| (s.level, -1)).collect();
        if shard(&survivor.id, PYRAMID_SHARDS) == shard(&loser.id, PYRAMID_SHARDS) {
            survivor_moves.extend(loser_moves);
            actions.push(self.count_update(&survivor.id, &survivor_moves)?);
        } else {
            actions.push(self.count_update(&survivor.id, &survivor_moves)?);
            actions.push(self.count_update(&loser.id, &loser_moves)?);
        }
        // The flow: the loser leaves the pyramid; the survivor moves if the merge lifted it.
        let mut entries: Vec<FlowEntry> = loser.state.standing.iter().map(|s| FlowEntry::Left(s.level)).collect();
        if let (Some(before), Some(after)) = (&survivor.state.standing, &merged.standing) {
            if before.level != after.level {
                entries.push(FlowEntry::Moved {
                    from: before.level,
                    to: after.level,
                });
            }
        }
        if !entries.is_empty() {
            actions.push(self.flow_update(&survivor.id, now, &entries)?);
        }
        if actions.len() > MAX_TRANSACTION_ACTIONS {
            return Err(StoreError::Contention(format!(
                "merging {}: too many identities for one transaction",
                loser.id
            )));
        }
        Ok(actions)
    }

    /// The survivor's side of a merge, conditional on the version read.
    fn survivor_update(
        &self,
        survivor: &StoredCustomer,
        survivor_item: &Item,
        loser: &StoredCustomer,
        merged: &CustomerState,
        now: Timestamp,
    ) -> Result<Update, StoreError> {
        let mut expr = Expr::default();
        expr.replace_evidence(&self.rules, &merged.evidence, Some(survivor_item));
        // The survivor takes the higher standing (the core's merge), so hysteresis protects what
        // either side had earned; the next rescore decides from the merged evidence.
        if let Some(standing) = merged.standing {
            for (name, value) in standing_attributes(&survivor.id, &standing) {
                expr.set(&name, value);
            }
            if standing.drops_at.is_none() {
                expr.remove("drops_at");
            }
            if standing.at_risk_at.is_none() {
                expr.remove("at_risk_at");
            }
        }
        for (name, numbers) in merged_consent_adds(survivor, loser, merged) {
            expr.add(&name, AttributeValue::Ns(numbers.iter().map(|n| n.to_string()).collect()));
        }
        let mut identities = survivor.identities.clone();
        identities.extend(loser.identities.iter().filter(|i| !survivor.identities.contains(i)).cloned());
        expr.set("identities", AttributeValue::L(identities.iter().map(identity_value).collect()));
        let mut merged_ids = survivor.merged_ids.clone();
        merged_ids.push(loser.id.clone());
        merged_ids.extend(loser.merged_ids.iter().cloned());
        expr.set(
            "merged_ids",
            AttributeValue::L(merged_ids.iter().map(|id| s(id.as_str())).collect()),
        );
        if survivor.name.is_none() {
            if let Some(name) = &loser.name {
                expr.set("name", s(name.clone()));
            }
        }
        expr.set(DUE_SHARD, s(due_shard(&survivor.id)));
        expr.set(DUE_AT, n_int(now.millis()));
        expr.add("version", n_int(1));
        let version = expr.value(n_int(survivor.version as i64));
        let condition = format!(
            "{} = {version} AND attribute_not_exists(merged_into) AND attribute_not_exists(erasing)",
            expr.name("version")
        );
        expr.update(self.table(), profile_key(&survivor.id), Some(&condition))
    }

    /// The loser's side of a merge: a redirect to the survivor, out of the due and level indexes.
    fn loser_update(&self, survivor: &StoredCustomer, loser: &StoredCustomer, now: Timestamp) -> Result<Update, StoreError> {
        let mut expr = Expr::default();
        expr.set("merged_into", s(survivor.id.as_str()));
        expr.set("merged_at", n_int(now.millis()));
        for attribute in [DUE_SHARD, DUE_AT, LEVEL_SHARD, LEVEL_SINCE] {
            expr.remove(attribute);
        }
        expr.add("version", n_int(1));
        let version = expr.value(n_int(loser.version as i64));
        let condition = format!(
            "{} = {version} AND attribute_not_exists(merged_into) AND attribute_not_exists(erasing)",
            expr.name("version")
        );
        expr.update(self.table(), profile_key(&loser.id), Some(&condition))
    }

    /// Every item about a customer (and those merged into it) but its profile: interactions,
    /// nudges, level changes, redirects. Deduplicated (a re-pointed interaction can show under
    /// two owners for a moment; BatchWriteItem refuses duplicate keys).
    pub(super) async fn erasable_items(&self, customer: &StoredCustomer) -> Result<Vec<Item>, StoreError> {
        let mut owners = vec![customer.id.clone()];
        owners.extend(customer.merged_ids.iter().cloned());
        let mut doomed: BTreeSet<(String, String)> = BTreeSet::new();
        let pair = |i: &Item| {
            (
                get_s(i, PK).unwrap_or_default().to_string(),
                get_s(i, SK).unwrap_or_default().to_string(),
            )
        };
        for owner in &owners {
            doomed.extend(self.history_keys(owner).await?.iter().map(pair));
            let partition = self
                .query_all(
                    None,
                    "pk = :pk",
                    HashMap::from([(":pk".to_string(), s(customer_pk(owner)))]),
                    Some("pk, sk"),
                )
                .await?;
            doomed.extend(partition.iter().map(pair));
        }
        doomed.remove(&(customer_pk(&customer.id), PROFILE.to_string()));
        Ok(doomed.into_iter().map(|(pk, sk)| key(pk, &sk)).collect())
    }

    /// The keys of every interaction listed under a customer in the history index.
    pub(super) async fn history_keys(&self, owner: &CustomerId) -> Result<Vec<Item>, StoreError> {
        let values = HashMap::from([(":c".to_string(), s(owner.as_str()))]);
        self.query_all(Some(HISTORY_INDEX), &format!("{HISTORY_PK} = :c"), values, Some("pk, sk"))
            .await
    }

    /// After a merge, the loser's interactions are listed under the survivor. Idempotent: a
    /// retry after a failure finishes the job.
    pub(super) async fn repoint_history(&self, loser: &CustomerId, survivor: &CustomerId) -> Result<(), StoreError> {
        for item in self.history_keys(loser).await? {
            self.client
                .update_item()
                .table_name(self.table())
                .set_key(Some(key(
                    get_s(&item, PK).unwrap_or_default().to_string(),
                    get_s(&item, SK).unwrap_or_default(),
                )))
                .update_expression("SET history_pk = :s, customer_id = :s")
                .expression_attribute_values(":s", s(survivor.as_str()))
                .send()
                .await
                .map_err(|e| store_error("UpdateItem", e))?;
        }
        Ok(())
    }
}

/// Consent after a merge: the union of both sides' decisions, then a withdrawal wherever the
/// strictest merge says withdrawn (dated at the latest decision on that channel, so it wins when
/// read). Attribute name → instants to add.
fn merged_consent_adds(survivor: &StoredCustomer, loser: &StoredCustomer, merged: &CustomerState) -> BTreeMap<String, BTreeSet<i64>> {
    let mut adds: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (name, value) in consent_attributes(&loser.state.consent) {
        if let AttributeValue::Ns(numbers) = value {
            adds.entry(name)
                .or_default()
                .extend(numbers.iter().filter_map(|n| n.parse::<i64>().ok()));
        }
    }
    for (channel, record) in &merged.consent.0 {
        if !record.granted {
            let latest = [survivor.state.consent.0.get(channel), loser.state.consent.0.get(channel)]
                .into_iter()
                .flatten()
                .map(|r| r.at.millis())
                .max()
                .unwrap_or(record.at.millis());
            adds.entry(consent_withdraw_attr(channel)).or_default().insert(latest);
        }
    }
    adds
}
