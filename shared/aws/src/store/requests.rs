//! What every operation family shares: update expressions, transactions (with their
//! cancellation reasons), batched reads and deletes, single reads and queries, redirects, and the
//! pyramid and flow counters that several families move.

use super::DynamoStore;
use crate::errors::{cancelled, store_error};
use crate::item::*;
use crate::keys::*;
use crate::retry::{backoff, MAX_ATTEMPTS};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update, WriteRequest,
};
use engagement::flow::{Day, FlowEntry};
use engagement::ports::*;
use engagement::{Evidence, Level, Rules, Timestamp};
use std::collections::{BTreeMap, HashMap};

/// DynamoDB's limit of actions per transaction.
pub(super) const MAX_TRANSACTION_ACTIONS: usize = 100;
pub(super) const MAX_REDIRECTS: usize = 8;

pub(super) fn invalid_request(error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("request could not be built: {error}"))
}

/// Why one action of a cancelled transaction failed.
#[derive(Debug)]
pub(super) struct Reason {
    pub(super) code: String,
    pub(super) item: Option<Item>,
}

impl Reason {
    pub(super) fn failed_condition(&self) -> bool {
        self.code == "ConditionalCheckFailed"
    }
}

/// Removes the SDK's ClientRequestToken before sending (see `StoreConfig::omit_request_tokens`).
#[derive(Debug)]
pub(super) struct OmitRequestToken;

impl aws_smithy_runtime_api::client::interceptors::Intercept for OmitRequestToken {
    fn name(&self) -> &'static str {
        "OmitRequestToken"
    }

    fn modify_before_serialization(
        &self,
        context: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextMut<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(input) = context
            .input_mut()
            .downcast_mut::<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput>()
        {
            input.client_request_token = None;
        }
        Ok(())
    }
}

/// An update expression under construction, with placeholder names and values.
#[derive(Default)]
pub(super) struct Expr {
    pub(super) set: Vec<String>,
    pub(super) add: Vec<String>,
    pub(super) remove: Vec<String>,
    pub(super) names: HashMap<String, String>,
    pub(super) values: HashMap<String, AttributeValue>,
}

impl Expr {
    pub(super) fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#a{}", self.names.len());
        self.names.insert(placeholder.clone(), attribute.to_string());
        placeholder
    }

    pub(super) fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder, value);
        format!(":v{}", self.values.len() - 1)
    }

    pub(super) fn set(&mut self, attribute: &str, value: AttributeValue) {
        let (name, value) = (self.name(attribute), self.value(value));
        self.set.push(format!("{name} = {value}"));
    }

    pub(super) fn increment(&mut self, attribute: &str, by: AttributeValue) {
        let name = self.name(attribute);
        let zero = self.value(n_int(0));
        let by = self.value(by);
        self.set.push(format!("{name} = if_not_exists({name}, {zero}) + {by}"));
    }

    pub(super) fn add(&mut self, attribute: &str, value: AttributeValue) {
        let (name, value) = (self.name(attribute), self.value(value));
        self.add.push(format!("{name} {value}"));
    }

    pub(super) fn remove(&mut self, attribute: &str) {
        let name = self.name(attribute);
        self.remove.push(name);
    }

    /// Sets a whole evidence as absolute values, removing per-kind attributes of `old` that it no
    /// longer has (kinds the rules dropped, now counted as "other").
    pub(super) fn replace_evidence(&mut self, rules: &Rules, evidence: &Evidence, old: Option<&Item>) {
        let attributes = evidence_attributes(rules, evidence);
        for name in old.into_iter().flat_map(|item| item.keys()) {
            if (name.starts_with("ke_") || name.starts_with("kc_")) && !attributes.iter().any(|(a, _)| a == name) {
                self.remove(name);
            }
        }
        for (name, value) in attributes {
            self.set(&name, value);
        }
    }

    pub(super) fn expression(&self) -> String {
        let mut parts = Vec::new();
        if !self.set.is_empty() {
            parts.push(format!("SET {}", self.set.join(", ")));
        }
        if !self.add.is_empty() {
            parts.push(format!("ADD {}", self.add.join(", ")));
        }
        if !self.remove.is_empty() {
            parts.push(format!("REMOVE {}", self.remove.join(", ")));
        }
        parts.join(" ")
    }

    pub(super) fn update(self, table: &str, key: Item, condition: Option<&str>) -> Result<Update, StoreError> {
        let expression = self.expression();
        Update::builder()
            .table_name(table)
            .set_key(Some(key))
            .update_expression(expression)
            .set_condition_expression(condition.map(str::to_string))
            .set_expression_attribute_names(if self.names.is_empty() { None } else { Some(self.names) })
            .set_expression_attribute_values(if self.values.is_empty() { None } else { Some(self.values) })
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(invalid_request)
    }
}

pub(super) fn key(pk: String, sk: &str) -> Item {
    HashMap::from([(PK.to_string(), s(pk)), (SK.to_string(), s(sk))])
}

pub(super) fn profile_key(id: &CustomerId) -> Item {
    key(customer_pk(id), PROFILE)
}

/// An event as the customer's outbox keeps it (read back by `item::outbox_of`).
pub(super) fn outbox_entry(event: &engagement::events::DomainEvent) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("detail_type".to_string(), s(event.detail_type())),
        ("detail".to_string(), s(event.detail_json())),
    ]))
}

/// Sets the decided standing on a profile (the times it no longer has removed) and the at-risk
/// window already announced, as the standing write and the refold both store them.
pub(super) fn set_standing(expr: &mut Expr, id: &CustomerId, standing: &engagement::Standing, at_risk_notified_for: Option<Timestamp>) {
    for (name, value) in standing_attributes(id, standing) {
        expr.set(&name, value);
    }
    if standing.drops_at.is_none() {
        expr.remove("drops_at");
    }
    if standing.at_risk_at.is_none() {
        expr.remove("at_risk_at");
    }
    match at_risk_notified_for {
        Some(at) => expr.set("risk_notified", n_int(at.millis())),
        None => expr.remove("risk_notified"),
    }
}

/// Sets the customer's place in the sparse `due` index, or takes it out of it.
pub(super) fn set_due(expr: &mut Expr, id: &CustomerId, due_at: Option<Timestamp>) {
    match due_at {
        Some(due) => {
            expr.set(DUE_SHARD, s(due_shard(id)));
            expr.set(DUE_AT, n_int(due.millis()));
        }
        None => {
            expr.remove(DUE_SHARD);
            expr.remove(DUE_AT);
        }
    }
}

impl DynamoStore {
    /// A put of an item that must not exist yet (a claim, a record made once).
    pub(super) fn put_new(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(invalid_request)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    pub(super) async fn transact(&self, actions: Vec<TransactWriteItem>) -> Result<Result<(), Vec<Reason>>, StoreError> {
        let request = self.client.transact_write_items().set_transact_items(Some(actions));
        let result = if self.config.omit_request_tokens {
            request.customize().interceptor(OmitRequestToken).send().await
        } else {
            request.send().await
        };
        match result {
            Ok(_) => Ok(Ok(())),
            Err(error) => match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => Ok(Err(cancelled
                    .cancellation_reasons()
                    .iter()
                    .map(|r| Reason {
                        code: r.code().unwrap_or("None").to_string(),
                        item: r.item().cloned(),
                    })
                    .collect())),
                _ => Err(store_error("TransactWriteItems", error)),
            },
        }
    }

    /// A transaction whose first action is conditional: true when written, false when that
    /// condition failed (already done), retried while other writers conflict.
    pub(super) async fn transact_once(&self, actions: Vec<TransactWriteItem>, what: &str) -> Result<bool, StoreError> {
        for attempt in 0..MAX_ATTEMPTS {
            match self.transact(actions.clone()).await? {
                Ok(()) => return Ok(true),
                Err(reasons) if reasons.iter().any(Reason::failed_condition) => return Ok(false),
                Err(reasons) if reasons.iter().any(|r| r.code == "TransactionConflict") => backoff(attempt).await,
                Err(reasons) => return Err(cancelled(what, reasons.iter().map(|r| r.code.as_str()))),
            }
        }
        Err(StoreError::Contention(what.to_string()))
    }

    /// A transaction whose first action is the profile's update under the version read:
    /// `Conflict` when another writer moved the version, retried while transactions collide
    /// or are throttled. `operation` names it in errors; `contention` in the give-up.
    pub(super) async fn transact_versioned(
        &self,
        actions: Vec<TransactWriteItem>,
        operation: &str,
        contention: impl FnOnce() -> String,
    ) -> Result<WriteOutcome, StoreError> {
        for attempt in 0..MAX_ATTEMPTS {
            match self.transact(actions.clone()).await? {
                Ok(()) => return Ok(WriteOutcome::Written),
                Err(reasons) if reasons.first().is_some_and(Reason::failed_condition) => return Ok(WriteOutcome::Conflict),
                Err(reasons)
                    if reasons
                        .iter()
                        .any(|r| r.code == "TransactionConflict" || r.code == "ThrottlingError") =>
                {
                    backoff(attempt).await
                }
                Err(reasons) => return Err(cancelled(operation, reasons.iter().map(|r| r.code.as_str()))),
            }
        }
        Err(StoreError::Contention(contention()))
    }

    /// Reads many items by key (100 per request), retrying unprocessed keys.
    pub(super) async fn batch_get(&self, keys: Vec<Item>, projection: Option<&str>) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(100) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .set_projection_expression(projection.map(str::to_string))
                    .build()
                    .map_err(invalid_request)?;
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(self.table(), request)
                    .send()
                    .await
                    .map_err(|e| store_error("BatchGetItem", e))?;
                if let Some(items) = output.responses().and_then(|r| r.get(self.table())) {
                    found.extend(items.iter().cloned());
                }
                pending = output
                    .unprocessed_keys()
                    .and_then(|u| u.get(self.table()))
                    .map(|k| k.keys().to_vec())
                    .unwrap_or_default();
                if !pending.is_empty() {
                    attempt += 1;
                    if attempt >= MAX_ATTEMPTS {
                        return Err(StoreError::Unavailable("BatchGetItem: keys left unprocessed after retries".into()));
                    }
                    backoff(attempt).await;
                }
            }
        }
        Ok(found)
    }

    pub(super) async fn batch_delete(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        for chunk in keys.chunks(25) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|k| {
                    Ok(WriteRequest::builder()
                        .delete_request(DeleteRequest::builder().set_key(Some(k.clone())).build().map_err(invalid_request)?)
                        .build())
                })
                .collect::<Result<_, StoreError>>()?;
            let mut attempt = 0;
            while !pending.is_empty() {
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(self.table(), pending)
                    .send()
                    .await
                    .map_err(|e| store_error("BatchWriteItem", e))?;
                pending = output
                    .unprocessed_items()
                    .and_then(|u| u.get(self.table()))
                    .cloned()
                    .unwrap_or_default();
                if !pending.is_empty() {
                    attempt += 1;
                    if attempt >= MAX_ATTEMPTS {
                        return Err(StoreError::Unavailable(
                            "BatchWriteItem: items left unprocessed after retries".into(),
                        ));
                    }
                    backoff(attempt).await;
                }
            }
        }
        Ok(())
    }

    /// Sends a built update as a single UpdateItem; false when its condition failed.
    pub(super) async fn send_update(&self, update: Update) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(self.table())
            .set_key(Some(update.key().clone()))
            .update_expression(update.update_expression())
            .set_condition_expression(update.condition_expression().map(str::to_string))
            .set_expression_attribute_names(update.expression_attribute_names().cloned())
            .set_expression_attribute_values(update.expression_attribute_values().cloned())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(error) => Err(store_error("UpdateItem", error)),
        }
    }

    pub(super) async fn get(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(self.table())
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        Ok(output.item().cloned())
    }

    /// Queries every page of a key condition (small result sets only: a customer's nudges, erasure).
    pub(super) async fn query_all(
        &self,
        index: Option<&str>,
        condition: &str,
        values: HashMap<String, AttributeValue>,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(self.table())
                .set_index_name(index.map(str::to_string))
                // On the table (a customer's nudges and level changes, the flow), read what was
                // just written: caps, ladders and past pyramids depend on it. Indexes cannot.
                .consistent_read(index.is_none())
                .key_condition_expression(condition)
                .set_expression_attribute_values(Some(values.clone()))
                .set_projection_expression(projection.map(str::to_string))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            items.extend(output.items().iter().cloned());
            start = output.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    pub(super) async fn follow_redirects(&self, id: &CustomerId) -> Result<Option<Item>, StoreError> {
        let mut current = id.clone();
        for _ in 0..MAX_REDIRECTS {
            let Some(item) = self.get(profile_key(&current)).await? else {
                return Ok(None);
            };
            match get_s(&item, "merged_into") {
                Some(next) => current = CustomerId(next.to_string()),
                None => return Ok(Some(item)),
            }
        }
        Err(StoreError::Corrupt(format!("customer {id}: too many merge redirects")))
    }

    pub(super) fn count_update(&self, id: &CustomerId, moves: &[(Level, i64)]) -> Result<TransactWriteItem, StoreError> {
        self.count_update_in(shard(id, PYRAMID_SHARDS), moves)
    }

    /// `count_update` on one shard of the pyramid's counts.
    pub(super) fn count_update_in(&self, pyramid_shard: u32, moves: &[(Level, i64)]) -> Result<TransactWriteItem, StoreError> {
        // One ADD per attribute: moves on the same level are summed first.
        let mut net: BTreeMap<Level, i64> = BTreeMap::new();
        for (level, by) in moves {
            *net.entry(*level).or_default() += by;
        }
        let mut expr = Expr::default();
        for (level, by) in net {
            if by != 0 {
                expr.add(COUNT[level.index()], n_int(by));
            }
        }
        if expr.add.is_empty() {
            // Nothing moves (e.g. a merge that keeps the level): touch the counter harmlessly.
            expr.add(COUNT[Level::Observing.index()], n_int(0));
        }
        let update = expr.update(self.table(), key(pyramid_pk(pyramid_shard), COUNTS), None)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Adds changes to the pyramid to the day's flow (one shard, chosen by `id`).
    pub(super) fn flow_update(&self, id: &CustomerId, at: Timestamp, entries: &[FlowEntry]) -> Result<TransactWriteItem, StoreError> {
        self.flow_update_in(shard(id, FLOW_SHARDS), flow_day(at), entries)
    }

    /// `flow_update` on one shard of one day's flow.
    pub(super) fn flow_update_in(&self, flow_shard: u32, day: Day, entries: &[FlowEntry]) -> Result<TransactWriteItem, StoreError> {
        let mut by_attribute: BTreeMap<String, i64> = BTreeMap::new();
        for entry in entries {
            let attribute = match *entry {
                FlowEntry::Joined => JOINED.to_string(),
                FlowEntry::Moved { from, to } => moved_attribute(from, to),
                FlowEntry::Left(level) => left_attribute(level),
            };
            *by_attribute.entry(attribute).or_default() += 1;
        }
        let mut expr = Expr::default();
        for (attribute, by) in by_attribute {
            expr.add(&attribute, n_int(by));
        }
        expr.set("day", n_int(day));
        let update = expr.update(self.table(), key(flow_pk(flow_shard), &flow_sk(day)), None)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}
