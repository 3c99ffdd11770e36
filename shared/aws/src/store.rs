//! The store's ports (`InteractionLog`, `CustomerReads`, `Standings`, `NudgeLedger`, `Insights`,
//! `CustomerAdmin`) on one DynamoDB table (see ARCHITECTURE.md, "Data model").
//!
//! The ingest path costs one `BatchGetItem` (identities and interaction claims) and one
//! `TransactWriteItems` per customer: evidence is folded by atomic adds against the stored epoch,
//! so there is no read-modify-write; only the first interaction of a new 32-day era rewrites the
//! sums (conditional on the version). A duplicate delivery is detected by the read alone.

use crate::cursor;
use crate::errors::{cancelled, store_error};
use crate::item::*;
use crate::keys::*;
use crate::retry::{backoff, MAX_ATTEMPTS};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, DeleteRequest, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    KeysAndAttributes, Projection, ProjectionType, Put, ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TransactWriteItem,
    Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use engagement::customer::{CustomerState, Standing};
use engagement::events::SCHEMA_VERSION;
use engagement::flow::{day_of, Day, DayFlow, FlowEntry};
use engagement::ports::*;
use engagement::{
    era_start, Direction, Evidence, Identity, Interaction, Level, LevelChange, NudgeOutcome, Rules, SuppressReason, Timestamp, LEVEL_COUNT,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Most identities claimed in one transaction (the rest are claimed by the next interaction).
const MAX_NEW_IDENTITIES: usize = 40;
/// DynamoDB's limit of actions per transaction.
const MAX_TRANSACTION_ACTIONS: usize = 100;
const MAX_REDIRECTS: usize = 8;

/// How the store reaches its table.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub table: String,
    /// Secret that salts identity hashes (identity keys, tombstones, customer ids).
    pub salt: String,
    /// Local servers (dynoxide) scan their idempotency-token cache on every transaction; our
    /// conditions already make retries safe, so local stores send no token.
    pub omit_request_tokens: bool,
}

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    rules: Arc<Rules>,
    config: Arc<StoreConfig>,
}

fn invalid_request(error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("request could not be built: {error}"))
}

/// Why one action of a cancelled transaction failed.
#[derive(Debug)]
struct Reason {
    code: String,
    item: Option<Item>,
}

impl Reason {
    fn failed_condition(&self) -> bool {
        self.code == "ConditionalCheckFailed"
    }
}

/// Removes the SDK's ClientRequestToken before sending (see `StoreConfig::omit_request_tokens`).
#[derive(Debug)]
struct OmitRequestToken;

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
struct Expr {
    set: Vec<String>,
    add: Vec<String>,
    remove: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#a{}", self.names.len());
        self.names.insert(placeholder.clone(), attribute.to_string());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder, value);
        format!(":v{}", self.values.len() - 1)
    }

    fn set(&mut self, attribute: &str, value: AttributeValue) {
        let (name, value) = (self.name(attribute), self.value(value));
        self.set.push(format!("{name} = {value}"));
    }

    fn increment(&mut self, attribute: &str, by: AttributeValue) {
        let name = self.name(attribute);
        let zero = self.value(n_int(0));
        let by = self.value(by);
        self.set.push(format!("{name} = if_not_exists({name}, {zero}) + {by}"));
    }

    fn add(&mut self, attribute: &str, value: AttributeValue) {
        let (name, value) = (self.name(attribute), self.value(value));
        self.add.push(format!("{name} {value}"));
    }

    fn remove(&mut self, attribute: &str) {
        let name = self.name(attribute);
        self.remove.push(name);
    }

    /// Sets a whole evidence as absolute values, removing per-kind attributes of `old` that it no
    /// longer has (kinds the rules dropped, now counted as "other").
    fn replace_evidence(&mut self, rules: &Rules, evidence: &Evidence, old: Option<&Item>) {
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

    fn expression(&self) -> String {
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

    fn update(self, table: &str, key: Item, condition: Option<&str>) -> Result<Update, StoreError> {
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

fn key(pk: String, sk: &str) -> Item {
    HashMap::from([(PK.to_string(), s(pk)), (SK.to_string(), s(sk))])
}

fn profile_key(id: &CustomerId) -> Item {
    key(customer_pk(id), PROFILE)
}

/// An event as the customer's outbox keeps it (read back by `item::outbox_of`).
fn outbox_entry(event: &engagement::events::DomainEvent) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("detail_type".to_string(), s(event.detail_type())),
        ("detail".to_string(), s(event.detail_json())),
    ]))
}

/// Which partitions of which index a listing reads, in order.
struct PartitionQuery<'a> {
    index: &'a str,
    hash_name: &'a str,
    partitions: &'a [String],
    /// A range condition on the index's sort key, with its bound as `:bound`.
    range: Option<(&'a str, AttributeValue)>,
    newest_first: bool,
}

/// One customer's share of an ingest round.
struct Chunk {
    customer: CustomerId,
    is_new: bool,
    indices: Vec<usize>,
    new_identities: Vec<Identity>,
}

/// What this request knows of a customer's stored epoch: from the ingest read, a write that
/// succeeded, or the item a failed condition returned (kept for the rare epoch move).
#[derive(Clone, Default)]
struct Hint {
    epoch: Option<Timestamp>,
    /// The stored `last_at`: it only moves forward, so a chunk older than it leaves it alone.
    last_at: Option<Timestamp>,
    item: Option<Item>,
}

type Hints = HashMap<CustomerId, Hint>;

enum ChunkResult {
    Recorded,
    /// Read again and retry (someone else wrote first).
    Retry,
}

/// An identity item as the ingest read sees it.
struct IdentityEntry {
    customer: Option<String>,
    erased: bool,
}

struct Snapshot {
    identities: HashMap<String, IdentityEntry>,
    /// interaction id → (fingerprint, customer id)
    claims: HashMap<String, (String, String)>,
    /// Epoch and `last_at` of the customers the primary identities would have created (most
    /// customers).
    epochs: HashMap<CustomerId, (Timestamp, Option<Timestamp>)>,
}

impl DynamoStore {
    pub fn new(client: Client, rules: Arc<Rules>, config: StoreConfig) -> DynamoStore {
        DynamoStore {
            client,
            rules,
            config: Arc::new(config),
        }
    }

    pub fn rules(&self) -> &Arc<Rules> {
        &self.rules
    }

    fn table(&self) -> &str {
        &self.config.table
    }

    /// Creates the table with its indexes (tests and the one-machine mode; the deployed stack
    /// declares the same in `infra/template.yaml`). An existing table is left as it is.
    /// The nudges stored under each of these customer ids.
    async fn nudges_of_owners(&self, owners: &[CustomerId]) -> Result<Vec<StoredNudge>, StoreError> {
        let mut items = Vec::new();
        for owner in owners {
            let values = HashMap::from([(":pk".to_string(), s(customer_pk(owner))), (":prefix".to_string(), s("NUDGE#"))]);
            items.extend(self.query_all(None, "pk = :pk AND begins_with(sk, :prefix)", values, None).await?);
        }
        items
            .iter()
            .map(|item| {
                let mut nudge: StoredNudge =
                    serde_json::from_str(get_s(item, "content").unwrap_or("{}")).map_err(|e| StoreError::Corrupt(format!("nudge: {e}")))?;
                // Set after the content was written, by the first rise counted toward it.
                nudge.rose_at = get_i64(item, "rose_at").map(Timestamp::from_millis);
                Ok(nudge)
            })
            .collect()
    }

    /// Whether the table exists (the one-machine mode creates it on first start).
    pub async fn table_exists(&self) -> Result<bool, StoreError> {
        match self.client.describe_table().table_name(self.table()).send().await {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(false),
            Err(error) => Err(store_error("DescribeTable", error)),
        }
    }

    pub async fn create_table(&self) -> Result<(), StoreError> {
        let attribute =
            |name: &str, kind: ScalarAttributeType| AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build();
        let key_element = |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
        let index = |name: &str, hash: &str, range: &str, projection: Projection| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key_element(hash, KeyType::Hash).map_err(invalid_request)?)
                .key_schema(key_element(range, KeyType::Range).map_err(invalid_request)?)
                .projection(projection)
                .build()
                .map_err(invalid_request)
        };
        let all = Projection::builder().projection_type(ProjectionType::All).build();
        let summary = Projection::builder()
            .projection_type(ProjectionType::Include)
            .set_non_key_attributes(Some(LEVEL_PROJECTION.iter().map(|s| s.to_string()).collect()))
            .build();
        let mut request = self
            .client
            .create_table()
            .table_name(self.table())
            .billing_mode(BillingMode::PayPerRequest);
        for (name, kind) in [
            (PK, ScalarAttributeType::S),
            (SK, ScalarAttributeType::S),
            (DUE_SHARD, ScalarAttributeType::S),
            (DUE_AT, ScalarAttributeType::N),
            (LEVEL_SHARD, ScalarAttributeType::S),
            (LEVEL_SINCE, ScalarAttributeType::N),
            (HISTORY_PK, ScalarAttributeType::S),
            (HISTORY_SK, ScalarAttributeType::N),
        ] {
            request = request.attribute_definitions(attribute(name, kind).map_err(invalid_request)?);
        }
        let result = request
            .key_schema(key_element(PK, KeyType::Hash).map_err(invalid_request)?)
            .key_schema(key_element(SK, KeyType::Range).map_err(invalid_request)?)
            .global_secondary_indexes(index(DUE_INDEX, DUE_SHARD, DUE_AT, all.clone())?)
            .global_secondary_indexes(index(LEVEL_INDEX, LEVEL_SHARD, LEVEL_SINCE, summary)?)
            .global_secondary_indexes(index(HISTORY_INDEX, HISTORY_PK, HISTORY_SK, all)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => Ok(()),
            Err(error) => Err(store_error("CreateTable", error)),
        }
    }

    async fn transact(&self, actions: Vec<TransactWriteItem>) -> Result<Result<(), Vec<Reason>>, StoreError> {
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

    /// Reads many items by key (100 per request), retrying unprocessed keys.
    async fn batch_get(&self, keys: Vec<Item>, projection: Option<&str>) -> Result<Vec<Item>, StoreError> {
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

    async fn batch_delete(&self, keys: Vec<Item>) -> Result<(), StoreError> {
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
    async fn send_update(&self, update: Update) -> Result<bool, StoreError> {
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

    async fn get(&self, key: Item) -> Result<Option<Item>, StoreError> {
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
    async fn query_all(
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

    async fn read_for_ingest(&self, batch: &[Interaction], pending: &[usize]) -> Result<Snapshot, StoreError> {
        let mut keys: Vec<Item> = Vec::new();
        let mut seen = BTreeSet::new();
        for &index in pending {
            let interaction = &batch[index];
            for identity in interaction.identities() {
                let pk = identity_pk(&self.config.salt, identity);
                if seen.insert(pk.clone()) {
                    keys.push(key(pk, "IDENTITY"));
                }
            }
            let pk = interaction_pk(&interaction.id);
            if seen.insert(pk.clone()) {
                keys.push(key(pk, "INTERACTION"));
            }
            // The same read fetches the epoch of the customer this identity created, if any, so
            // that late interactions fold against the right epoch on the first try.
            let pk = customer_pk(&customer_id_for(&self.config.salt, &interaction.customer.identity));
            if seen.insert(pk.clone()) {
                keys.push(key(pk, PROFILE));
            }
        }
        let items = self
            .batch_get(keys, Some("pk, customer_id, fingerprint, erased, epoch, last_at, merged_into"))
            .await?;
        let mut snapshot = Snapshot {
            identities: HashMap::new(),
            claims: HashMap::new(),
            epochs: HashMap::new(),
        };
        for item in items {
            let Some(pk) = get_s(&item, PK) else { continue };
            let customer = get_s(&item, "customer_id").map(str::to_string);
            if pk.starts_with("CUSTOMER#") {
                if let (Some(id), Some(epoch), false) = (customer, get_i64(&item, "epoch"), item.contains_key("merged_into")) {
                    snapshot.epochs.insert(CustomerId(id), (Timestamp(epoch), get_ts(&item, "last_at")));
                }
            } else if let Some(id) = pk.strip_prefix("INTERACTION#") {
                snapshot.claims.insert(
                    id.to_string(),
                    (get_s(&item, "fingerprint").unwrap_or("").to_string(), customer.unwrap_or_default()),
                );
            } else {
                let erased = item.get("erased").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false);
                snapshot.identities.insert(pk.to_string(), IdentityEntry { customer, erased });
            }
        }
        Ok(snapshot)
    }

    fn interaction_put(&self, interaction: &Interaction, customer: &CustomerId, now: Timestamp) -> Result<TransactWriteItem, StoreError> {
        let content = serde_json::to_string(interaction).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut item = key(interaction_pk(&interaction.id), "INTERACTION");
        item.extend([
            ("customer_id".to_string(), s(customer.as_str())),
            ("fingerprint".to_string(), s(interaction.fingerprint())),
            ("content".to_string(), s(content)),
            ("kind".to_string(), s(interaction.kind.clone())),
            ("occurred_at".to_string(), n_int(interaction.occurred_at.millis())),
            ("recorded_at".to_string(), n_int(now.millis())),
            (HISTORY_PK.to_string(), s(customer.as_str())),
            (HISTORY_SK.to_string(), n_int(interaction.occurred_at.millis())),
        ]);
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(invalid_request)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn identity_put(&self, identity: &Identity, customer: &CustomerId, now: Timestamp) -> Result<TransactWriteItem, StoreError> {
        let mut item = key(identity_pk(&self.config.salt, identity), "IDENTITY");
        item.extend([
            ("customer_id".to_string(), s(customer.as_str())),
            ("channel".to_string(), s(identity.channel.as_str())),
            ("handle".to_string(), s(identity.handle.clone())),
            ("linked_at".to_string(), n_int(now.millis())),
        ]);
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(invalid_request)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn count_update(&self, id: &CustomerId, moves: &[(Level, i64)]) -> Result<TransactWriteItem, StoreError> {
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
        let update = expr.update(self.table(), key(pyramid_pk(shard(id, PYRAMID_SHARDS)), COUNTS), None)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Adds changes to the pyramid to the day's flow (one shard, chosen by `id`).
    fn flow_update(&self, id: &CustomerId, at: Timestamp, entries: &[FlowEntry]) -> Result<TransactWriteItem, StoreError> {
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
        expr.set("day", n_int(day_of(at)));
        let update = expr.update(self.table(), key(flow_pk(shard(id, FLOW_SHARDS)), &flow_sk(day_of(at))), None)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// A transaction whose first action is conditional: true when written, false when that
    /// condition failed (already done), retried while other writers conflict.
    async fn transact_once(&self, actions: Vec<TransactWriteItem>, what: &str) -> Result<bool, StoreError> {
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

    /// Adds one to a playbook step's outcome counter (one shard, chosen by the customer).
    fn outcome_update(&self, customer: &CustomerId, nudge: &StoredNudge, outcome: &str) -> Result<TransactWriteItem, StoreError> {
        let mut expr = Expr::default();
        expr.add(outcome, n_int(1));
        expr.set("playbook", s(nudge.decision.playbook.clone()));
        expr.set("step", n_int(i64::from(nudge.decision.step)));
        let key = key(
            outcomes_pk(shard(customer, OUTCOME_SHARDS)),
            &outcomes_sk(&nudge.decision.playbook, nudge.decision.step),
        );
        Ok(TransactWriteItem::builder().update(expr.update(self.table(), key, None)?).build())
    }

    /// Writes one customer's chunk of a round.
    async fn write_chunk(
        &self,
        batch: &[Interaction],
        chunk: &Chunk,
        hints: &mut Hints,
        now: Timestamp,
    ) -> Result<ChunkResult, StoreError> {
        let interactions: Vec<&Interaction> = chunk.indices.iter().map(|&i| &batch[i]).collect();
        let scored: Vec<_> = interactions.iter().filter_map(|i| i.score(&self.rules)).collect();
        let latest = interactions.iter().map(|i| i.occurred_at).max().unwrap_or(now);
        let mut actions = Vec::new();
        let hint = hints.get(&chunk.customer).cloned().unwrap_or_default();
        let mut used_epoch = None;

        if chunk.is_new {
            let mut state = CustomerState::new(&self.rules);
            for item in &scored {
                state.fold(&self.rules, item);
            }
            let earliest = interactions.iter().map(|i| i.occurred_at).min().unwrap_or(now);
            let standing = Standing {
                level: Level::Observing,
                since: earliest,
                drops_at: None,
                at_risk_at: None,
            };
            let mut item = profile_key(&chunk.customer);
            item.extend([
                ("customer_id".to_string(), s(chunk.customer.as_str())),
                ("created_at".to_string(), n_int(now.millis())),
                ("version".to_string(), n_int(1)),
                ("outbox".to_string(), AttributeValue::M(HashMap::new())),
                (
                    "identities".to_string(),
                    AttributeValue::L(chunk.new_identities.iter().map(identity_value).collect()),
                ),
                (DUE_SHARD.to_string(), s(due_shard(&chunk.customer))),
                (DUE_AT.to_string(), n_int(now.millis())),
            ]);
            if let Some(name) = interactions.iter().find_map(|i| i.customer.name.clone()) {
                item.insert("name".to_string(), s(name));
            }
            item.extend(evidence_attributes(&self.rules, &state.evidence));
            item.extend(consent_attributes(&state.consent));
            item.extend(standing_attributes(&chunk.customer, &standing));
            let put = Put::builder()
                .table_name(self.table())
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(invalid_request)?;
            actions.push(TransactWriteItem::builder().put(put).build());
            actions.push(self.count_update(&chunk.customer, &[(Level::Observing, 1)])?);
            // Joined on the day of their first interaction, so the past pyramid has them then.
            actions.push(self.flow_update(&chunk.customer, earliest, &[FlowEntry::Joined])?);
        } else {
            let mut expr = Expr::default();
            let needed_epoch = era_start(latest);
            let condition;
            match hint.epoch {
                // Too long after the stored epoch to add against it (a customer silent for
                // 40 half-lives): rewrite the sums against the new epoch, conditional on the
                // version read. Otherwise rescores move epochs forward.
                Some(known) if !Evidence::within_lag(&self.rules, known, latest) => {
                    let item = match hint.item.clone() {
                        Some(item) => item,
                        None => match self.get(profile_key(&chunk.customer)).await? {
                            Some(item) => item,
                            None => return Ok(ChunkResult::Retry),
                        },
                    };
                    let stored = customer_from_item(&self.rules, &item)?;
                    if Evidence::within_lag(&self.rules, stored.state.evidence.epoch, latest) || item.contains_key("merged_into") {
                        // Someone moved it meanwhile: go again with what we now know.
                        hints.insert(
                            chunk.customer.clone(),
                            Hint {
                                epoch: Some(stored.state.evidence.epoch),
                                last_at: stored.state.evidence.last_interaction_at,
                                item: None,
                            },
                        );
                        return Ok(ChunkResult::Retry);
                    }
                    let mut state = stored.state.clone();
                    for item in &scored {
                        state.fold(&self.rules, item);
                    }
                    used_epoch = Some(state.evidence.epoch);
                    expr.replace_evidence(&self.rules, &state.evidence, Some(&item));
                    let version = expr.value(n_int(stored.version as i64));
                    condition = format!(
                        "{} = {version} AND attribute_not_exists(merged_into) AND attribute_not_exists(erasing)",
                        expr.name("version")
                    );
                }
                known => {
                    let epoch = known.unwrap_or(needed_epoch);
                    used_epoch = Some(epoch);
                    let mut levels = [0.0; LEVEL_COUNT];
                    let mut kinds: BTreeMap<String, (f64, i64)> = BTreeMap::new();
                    for item in &scored {
                        let delta = Evidence::delta(&self.rules, epoch, &item.contribution);
                        for (sum, term) in levels.iter_mut().zip(delta.levels) {
                            *sum += term;
                        }
                        let entry = kinds.entry(self.rules.kind_name(delta.kind).to_string()).or_default();
                        entry.0 += delta.kind_evidence;
                        entry.1 += 1;
                    }
                    for (name, sum) in EVIDENCE.iter().zip(levels) {
                        if sum != 0.0 {
                            expr.increment(name, n_float(engagement::evidence::quantize(sum)));
                        }
                    }
                    for (kind, (sum, count)) in kinds {
                        expr.increment(&kind_evidence_attr(&kind), n_float(engagement::evidence::quantize(sum)));
                        expr.increment(&kind_count_attr(&kind), n_int(count));
                    }
                    // `last_at` only moves forward: set it only when this chunk is newer than
                    // what is stored (a concurrent newer write fails the condition; we re-read).
                    let mut last_at_condition = String::new();
                    if hint.last_at.is_none_or(|stored| stored < latest) {
                        let (name, value) = (expr.name("last_at"), expr.value(n_int(latest.millis())));
                        expr.set.push(format!("{name} = {value}"));
                        last_at_condition = format!(" AND (attribute_not_exists({name}) OR {name} < {value})");
                    }
                    let epoch_value = expr.value(n_int(epoch.millis()));
                    let epoch_name = expr.name("epoch");
                    condition = format!("attribute_exists(pk) AND {epoch_name} = {epoch_value} AND attribute_not_exists(merged_into) AND attribute_not_exists(erasing){last_at_condition}");
                }
            }
            // Consent decisions go into number sets, one ADD per attribute.
            let mut consent_adds: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
            for item in &scored {
                if let Some((channel, effect)) = &item.consent {
                    let name = if *effect == engagement::ConsentEffect::Grant {
                        consent_grant_attr(channel)
                    } else {
                        consent_withdraw_attr(channel)
                    };
                    consent_adds.entry(name).or_default().insert(item.contribution.occurred_at.millis());
                }
            }
            for (name, instants) in consent_adds {
                expr.add(&name, AttributeValue::Ns(instants.iter().map(i64::to_string).collect()));
            }
            if !chunk.new_identities.is_empty() {
                let name = expr.name("identities");
                let empty = expr.value(AttributeValue::L(vec![]));
                let new = expr.value(AttributeValue::L(chunk.new_identities.iter().map(identity_value).collect()));
                expr.set
                    .push(format!("{name} = list_append(if_not_exists({name}, {empty}), {new})"));
            }
            if let Some(name) = interactions.iter().find_map(|i| i.customer.name.clone()) {
                let attribute = expr.name("name");
                let value = expr.value(s(name));
                expr.set.push(format!("{attribute} = if_not_exists({attribute}, {value})"));
            }
            expr.set(DUE_SHARD, s(due_shard(&chunk.customer)));
            expr.set(DUE_AT, n_int(now.millis()));
            expr.add("version", n_int(1));
            let update = expr.update(self.table(), profile_key(&chunk.customer), Some(&condition))?;
            actions.push(TransactWriteItem::builder().update(update).build());
        }
        for identity in &chunk.new_identities {
            actions.push(self.identity_put(identity, &chunk.customer, now)?);
        }
        for interaction in &interactions {
            actions.push(self.interaction_put(interaction, &chunk.customer, now)?);
        }

        match self.transact(actions).await? {
            Ok(()) => {
                hints.insert(
                    chunk.customer.clone(),
                    Hint {
                        epoch: used_epoch,
                        last_at: Some(hint.last_at.map_or(latest, |stored| stored.max(latest))),
                        item: None,
                    },
                );
                Ok(ChunkResult::Recorded)
            }
            Err(reasons) => {
                if let Some(first) = reasons.first() {
                    if first.failed_condition() && !chunk.is_new {
                        match &first.item {
                            Some(item) if !item.contains_key("merged_into") && !item.contains_key("erasing") => {
                                hints.insert(
                                    chunk.customer.clone(),
                                    Hint {
                                        epoch: get_i64(item, "epoch").map(Timestamp),
                                        last_at: get_ts(item, "last_at"),
                                        item: Some(item.clone()),
                                    },
                                );
                            }
                            _ => {
                                hints.remove(&chunk.customer);
                            }
                        }
                    }
                }
                let unexpected = reasons.iter().find(|r| {
                    !matches!(
                        r.code.as_str(),
                        "None" | "ConditionalCheckFailed" | "TransactionConflict" | "ThrottlingError"
                    )
                });
                if let Some(reason) = unexpected {
                    return Err(cancelled("record_interactions", [reason.code.as_str()]));
                }
                Ok(ChunkResult::Retry)
            }
        }
    }

    async fn follow_redirects(&self, id: &CustomerId) -> Result<Option<Item>, StoreError> {
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

    /// Queries an index over several partitions (shards, or a customer and those merged into
    /// it) page by page, one partition after the other.
    /// The query of one shard of a partitioned listing, from `start`, at most `limit` items.
    fn shard_query(
        &self,
        query: &PartitionQuery<'_>,
        shard: u32,
        start: Option<Item>,
        limit: usize,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let mut values = HashMap::from([(":shard".to_string(), s(query.partitions[shard as usize].clone()))]);
        let mut condition = format!("{} = :shard", query.hash_name);
        if let Some((expression, value)) = &query.range {
            condition.push_str(&format!(" AND {expression}"));
            values.insert(":bound".to_string(), value.clone());
        }
        self.client
            .query()
            .table_name(self.table())
            .index_name(query.index)
            .key_condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .scan_index_forward(!query.newest_first)
            .limit(limit as i32)
            .set_exclusive_start_key(start)
    }

    /// Like `query_partitions`, but in one order across the shards (by the index's sort key):
    /// every shard is read a page deep at once and the pages are merged, so "newest first" holds
    /// over the whole listing, not shard by shard. The cursor keeps each shard's place.
    async fn query_merged(
        &self,
        query: PartitionQuery<'_>,
        sort_key: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<Item>, StoreError> {
        let (hash_name, partitions, newest_first) = (query.hash_name, query.partitions, query.newest_first);
        let limit = limit.clamp(1, 1000);
        let mut positions = cursor::decode_merged(cursor.as_deref(), partitions.len() as u32)?;
        let reads = positions.iter().map(|(shard, start)| {
            let request = self.shard_query(&query, *shard, start.clone(), limit);
            let shard = *shard;
            async move { (shard, request.send().await) }
        });
        let mut candidates: Vec<(u32, Item)> = Vec::new();
        let mut more: BTreeMap<u32, bool> = BTreeMap::new();
        for (shard, output) in futures::future::join_all(reads).await {
            let output = output.map_err(|e| store_error("Query", e))?;
            more.insert(shard, output.last_evaluated_key().is_some());
            candidates.extend(output.items().iter().cloned().map(|item| (shard, item)));
        }
        let sort_value = |item: &Item| get_i64(item, sort_key).unwrap_or(0);
        // Stable: within a shard the store's order stands; across shards, the sort key decides.
        candidates.sort_by(|(_, a), (_, b)| {
            let order = sort_value(a).cmp(&sort_value(b));
            if newest_first {
                order.reverse()
            } else {
                order
            }
        });
        let taken_per_shard = candidates.iter().take(limit).fold(BTreeMap::new(), |mut taken, (shard, _)| {
            *taken.entry(*shard).or_insert(0usize) += 1;
            taken
        });
        let fetched_per_shard = candidates.iter().fold(BTreeMap::new(), |mut fetched, (shard, _)| {
            *fetched.entry(*shard).or_insert(0usize) += 1;
            fetched
        });
        let items: Vec<(u32, Item)> = candidates.into_iter().take(limit).collect();
        for (shard, start) in positions.iter_mut() {
            if let Some((_, last)) = items.iter().rev().find(|(s, _)| s == shard) {
                // The next page of this shard starts after the last item taken from it.
                *start = Some(
                    last.iter()
                        .filter(|(name, _)| [PK, SK, hash_name, sort_key].contains(&name.as_str()))
                        .map(|(name, value)| (name.clone(), value.clone()))
                        .collect(),
                );
            }
        }
        positions.retain(|shard, _| {
            let taken = taken_per_shard.get(shard).copied().unwrap_or(0);
            let fetched = fetched_per_shard.get(shard).copied().unwrap_or(0);
            fetched > taken || more.get(shard).copied().unwrap_or(false)
        });
        Ok(Page {
            items: items.into_iter().map(|(_, item)| item).collect(),
            cursor: (!positions.is_empty()).then(|| cursor::encode_merged(&positions)),
        })
    }

    async fn query_partitions(&self, query: PartitionQuery<'_>, cursor: Option<String>, limit: usize) -> Result<Page<Item>, StoreError> {
        let limit = limit.clamp(1, 1000);
        let position = cursor::decode(cursor.as_deref())?;
        let (mut shard_index, mut start) = (position.shard, position.key);
        let shards = query.partitions.len() as u32;
        let mut items = Vec::new();
        while shard_index < shards {
            let output = self
                .shard_query(&query, shard_index, start.take(), limit - items.len())
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            items.extend(output.items().iter().cloned());
            match output.last_evaluated_key() {
                Some(last) => {
                    if items.len() >= limit {
                        return Ok(Page {
                            items,
                            cursor: Some(cursor::encode(shard_index, Some(last))),
                        });
                    }
                    start = Some(last.clone());
                }
                None => {
                    shard_index += 1;
                    if items.len() >= limit {
                        let cursor = (shard_index < shards).then(|| cursor::encode(shard_index, None));
                        return Ok(Page { items, cursor });
                    }
                }
            }
        }
        Ok(Page { items, cursor: None })
    }
}

impl InteractionLog for DynamoStore {
    async fn record_interactions(&self, batch: &[Interaction], now: Timestamp) -> Result<Vec<RecordOutcome>, StoreError> {
        let mut outcomes: Vec<Option<RecordOutcome>> = vec![None; batch.len()];
        // Within one request, the first occurrence of an id is the one recorded.
        let mut first_index: HashMap<&str, usize> = HashMap::new();
        let mut repeats = Vec::new();
        let mut pending = Vec::new();
        for (index, interaction) in batch.iter().enumerate() {
            match first_index.get(interaction.id.as_str()) {
                Some(&first) => repeats.push((index, first)),
                None => {
                    first_index.insert(&interaction.id, index);
                    pending.push(index);
                }
            }
        }
        let mut hints = Hints::new();
        // Rounds in a row in which nothing could be written; progress resets it.
        let mut stalled = 0;
        let mut rounds = 0;
        while !pending.is_empty() {
            let snapshot = self.read_for_ingest(batch, &pending).await?;
            for (customer, epoch) in &snapshot.epochs {
                let hint = hints.entry(customer.clone()).or_default();
                if hint.item.is_none() {
                    hint.epoch = Some(epoch.0);
                    hint.last_at = epoch.1;
                }
            }
            let mut chunks: BTreeMap<CustomerId, Chunk> = BTreeMap::new();
            let mut deferred = Vec::new();
            for &index in &pending {
                let interaction = &batch[index];
                if let Some((fingerprint, customer)) = snapshot.claims.get(&interaction.id) {
                    let status = if *fingerprint == interaction.fingerprint() {
                        RecordStatus::Duplicate
                    } else {
                        RecordStatus::Conflict
                    };
                    outcomes[index] = Some(RecordOutcome {
                        id: interaction.id.clone(),
                        status,
                        customer_id: Some(CustomerId(customer.clone())),
                    });
                    continue;
                }
                let entries: Vec<(&Identity, Option<&IdentityEntry>)> = interaction
                    .identities()
                    .map(|identity| (identity, snapshot.identities.get(&identity_pk(&self.config.salt, identity))))
                    .collect();
                if entries.iter().any(|(_, entry)| entry.is_some_and(|e| e.erased)) {
                    outcomes[index] = Some(RecordOutcome {
                        id: interaction.id.clone(),
                        status: RecordStatus::Erased,
                        customer_id: None,
                    });
                    continue;
                }
                let known = entries.iter().find_map(|(_, entry)| entry.and_then(|e| e.customer.clone()));
                let (customer, is_new) = match known {
                    Some(id) => (CustomerId(id), false),
                    None => (customer_id_for(&self.config.salt, &interaction.customer.identity), true),
                };
                let chunk = chunks.entry(customer.clone()).or_insert_with(|| Chunk {
                    customer,
                    is_new,
                    indices: Vec::new(),
                    new_identities: Vec::new(),
                });
                let unclaimed: Vec<Identity> = entries
                    .iter()
                    .filter(|(_, entry)| entry.is_none())
                    .map(|(identity, _)| (*identity).clone())
                    .filter(|identity| !chunk.new_identities.contains(identity))
                    .collect();
                // Besides its interactions and identities, a chunk holds the customer and the
                // pyramid counter, and a new customer also the day's flow counter.
                let fixed = if chunk.is_new { 3 } else { 2 };
                let room = MAX_TRANSACTION_ACTIONS - fixed - chunk.indices.len() - chunk.new_identities.len();
                if chunk.new_identities.len() + unclaimed.len() > MAX_NEW_IDENTITIES || room < 1 + unclaimed.len() {
                    deferred.push(index);
                    continue;
                }
                chunk.new_identities.extend(unclaimed);
                chunk.indices.push(index);
            }
            rounds += 1;
            let mut retry = Vec::new();
            let mut progressed = false;
            for chunk in chunks.values() {
                match self.write_chunk(batch, chunk, &mut hints, now).await? {
                    ChunkResult::Recorded => {
                        progressed = true;
                        for &index in &chunk.indices {
                            outcomes[index] = Some(RecordOutcome {
                                id: batch[index].id.clone(),
                                status: RecordStatus::Recorded,
                                customer_id: Some(chunk.customer.clone()),
                            });
                        }
                    }
                    ChunkResult::Retry => retry.extend(&chunk.indices),
                }
            }
            if !retry.is_empty() {
                stalled = if progressed { 0 } else { stalled + 1 };
                if stalled >= MAX_ATTEMPTS || rounds > 20 * MAX_ATTEMPTS {
                    return Err(StoreError::Contention("interactions of one customer".into()));
                }
                backoff(stalled).await;
            }
            retry.extend(deferred);
            retry.sort_unstable();
            pending = retry;
        }
        for (index, first) in repeats {
            let same = batch[index].fingerprint() == batch[first].fingerprint();
            outcomes[index] = Some(RecordOutcome {
                id: batch[index].id.clone(),
                status: if same { RecordStatus::Duplicate } else { RecordStatus::Conflict },
                customer_id: outcomes[first].as_ref().and_then(|o| o.customer_id.clone()),
            });
        }
        outcomes
            .into_iter()
            .map(|o| o.ok_or_else(|| StoreError::Corrupt("an interaction was left without an outcome".into())))
            .collect()
    }

    async fn keep_unpublished(&self, events: &[engagement::events::DomainEvent], now: Timestamp) -> Result<usize, StoreError> {
        let mut per_customer: BTreeMap<&CustomerId, Vec<&engagement::events::DomainEvent>> = BTreeMap::new();
        for event in events {
            per_customer.entry(event.customer_id()).or_default().push(event);
        }
        let writes = per_customer.into_iter().map(|(id, events)| async move {
            let mut expr = Expr::default();
            let outbox = expr.name("outbox");
            for event in events {
                let name = expr.name(&event.event_id());
                let entry = expr.value(outbox_entry(event));
                expr.set.push(format!("{outbox}.{name} = {entry}"));
            }
            expr.set(DUE_SHARD, s(due_shard(id)));
            expr.set(DUE_AT, n_int(now.millis()));
            expr.add("version", n_int(1));
            let condition = "attribute_exists(pk) AND attribute_not_exists(merged_into) AND attribute_not_exists(erasing)";
            self.send_update(expr.update(self.table(), profile_key(id), Some(condition))?).await
        });
        let kept = futures::future::join_all(writes).await;
        let mut taken = 0;
        for result in kept {
            taken += usize::from(result?);
        }
        Ok(taken)
    }
}

impl CustomerReads for DynamoStore {
    async fn load_customer(&self, id: &CustomerId) -> Result<Option<StoredCustomer>, StoreError> {
        match self.follow_redirects(id).await? {
            Some(item) => customer_from_item(&self.rules, &item).map(Some),
            None => Ok(None),
        }
    }

    async fn find_customer(&self, identity: &Identity) -> Result<IdentityLookup, StoreError> {
        let item = self.get(key(identity_pk(&self.config.salt, identity), "IDENTITY")).await?;
        Ok(match item {
            None => IdentityLookup::Unknown,
            Some(item) if item.get("erased").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false) => IdentityLookup::Erased,
            Some(item) => match get_s(&item, "customer_id") {
                Some(id) => IdentityLookup::Customer(CustomerId(id.to_string())),
                None => IdentityLookup::Unknown,
            },
        })
    }

    async fn interactions(&self, id: &CustomerId, cursor: Option<String>, limit: usize) -> Result<Page<Interaction>, StoreError> {
        // Merges re-point the loser's interactions to the survivor; listing the merged ids too
        // keeps the history complete while (or if) that is still under way.
        let mut owners = vec![id.as_str().to_string()];
        if let Some(customer) = self.load_customer(id).await? {
            owners = vec![customer.id.as_str().to_string()];
            owners.extend(customer.merged_ids.iter().map(|m| m.as_str().to_string()));
        }
        let page = self
            .query_partitions(
                PartitionQuery {
                    index: HISTORY_INDEX,
                    hash_name: HISTORY_PK,
                    partitions: &owners,
                    range: None,
                    newest_first: true,
                },
                cursor,
                limit,
            )
            .await?;
        let items = page
            .items
            .iter()
            .map(|item| {
                let content = get_s(item, "content").unwrap_or("{}");
                serde_json::from_str::<Interaction>(content).map_err(|e| StoreError::Corrupt(format!("interaction: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            cursor: page.cursor,
        })
    }

    async fn level_changes(&self, customer: &StoredCustomer) -> Result<Vec<LevelChange>, StoreError> {
        let mut changes = Vec::new();
        for owner in std::iter::once(&customer.id).chain(&customer.merged_ids) {
            let values = HashMap::from([(":pk".to_string(), s(customer_pk(owner))), (":prefix".to_string(), s("CHANGE#"))]);
            for item in self.query_all(None, "pk = :pk AND begins_with(sk, :prefix)", values, None).await? {
                let level = |name: &str| get_s(&item, name).and_then(|l| l.parse::<Level>().ok());
                let (Some(from), Some(to), Some(at)) = (level("from"), level("to"), get_i64(&item, "at")) else {
                    return Err(StoreError::Corrupt(format!("a level change of {owner}")));
                };
                changes.push(LevelChange {
                    at: Timestamp::from_millis(at),
                    from,
                    to,
                });
            }
        }
        changes.sort_by_key(|c| c.at);
        Ok(changes)
    }
}

impl Standings for DynamoStore {
    async fn write_standing(&self, write: &StandingWrite) -> Result<WriteOutcome, StoreError> {
        let id = &write.customer_id;
        let mut expr = Expr::default();
        for (name, value) in standing_attributes(id, &write.standing) {
            expr.set(&name, value);
        }
        if write.standing.drops_at.is_none() {
            expr.remove("drops_at");
        }
        if write.standing.at_risk_at.is_none() {
            expr.remove("at_risk_at");
        }
        match write.at_risk_notified_for {
            Some(at) => expr.set("risk_notified", n_int(at.millis())),
            None => expr.remove("risk_notified"),
        }
        match write.due_at {
            Some(due) => {
                expr.set(DUE_SHARD, s(due_shard(id)));
                expr.set(DUE_AT, n_int(due.millis()));
            }
            None => {
                expr.remove(DUE_SHARD);
                expr.remove(DUE_AT);
            }
        }
        if let Some(evidence) = &write.rebased {
            expr.replace_evidence(&self.rules, evidence, None);
        }
        if let Some(direction) = write.change.as_ref().and_then(|c| Direction::between(c.from, c.to)) {
            // Projected into the level index: "who moved up lately" is a listing, not a scan.
            expr.set(MOVED, s(direction.name()));
        }
        if !write.outbox.is_empty() {
            let outbox = expr.name("outbox");
            for event in &write.outbox {
                let id = expr.name(&event.event_id());
                let entry = expr.value(outbox_entry(event));
                expr.set.push(format!("{outbox}.{id} = {entry}"));
            }
        }
        expr.add("version", n_int(1));
        let version = expr.value(n_int(write.expected_version as i64));
        let condition = format!(
            "{} = {version} AND attribute_not_exists(merged_into) AND attribute_not_exists(erasing)",
            expr.name("version")
        );
        let update = expr.update(self.table(), profile_key(id), Some(&condition))?;
        let previous_level = write.previous.map(|p| p.level);
        let level_moved = previous_level != Some(write.standing.level);

        if !level_moved && write.change.is_none() {
            let result = self.send_update(update).await;
            return Ok(match result? {
                true => WriteOutcome::Written,
                false => WriteOutcome::Conflict,
            });
        }

        let mut actions = vec![TransactWriteItem::builder().update(update).build()];
        if level_moved {
            let mut moves = vec![(write.standing.level, 1)];
            if let Some(from) = previous_level {
                moves.push((from, -1));
            }
            actions.push(self.count_update(id, &moves)?);
        }
        if let Some(change) = &write.change {
            let mut item = key(customer_pk(id), &change_sk(change.at, change.to));
            item.extend([
                ("customer_id".to_string(), s(id.as_str())),
                ("from".to_string(), s(change.from.name())),
                ("to".to_string(), s(change.to.name())),
                ("at".to_string(), n_int(change.at.millis())),
                ("schema_version".to_string(), n_int(i64::from(SCHEMA_VERSION))),
            ]);
            actions.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(self.table())
                            .set_item(Some(item))
                            .build()
                            .map_err(invalid_request)?,
                    )
                    .build(),
            );
            actions.push(self.flow_update(
                id,
                change.at,
                &[FlowEntry::Moved {
                    from: change.from,
                    to: change.to,
                }],
            )?);
        }
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
                Err(reasons) => return Err(cancelled("write_standing", reasons.iter().map(|r| r.code.as_str()))),
            }
        }
        Err(StoreError::Contention(format!("level of {id}")))
    }

    async fn clear_outbox(
        &self,
        id: &CustomerId,
        event_ids: &[String],
        written_version: u64,
        due_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let removal = |expr: &mut Expr| {
            let outbox = expr.name("outbox");
            for event_id in event_ids {
                let name = expr.name(event_id);
                expr.remove.push(format!("{outbox}.{name}"));
            }
        };
        let mut expr = Expr::default();
        removal(&mut expr);
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
        let version = expr.value(n_int(written_version as i64));
        let condition = format!("attribute_exists(pk) AND {} = {version}", expr.name("version"));
        if self
            .send_update(expr.update(self.table(), profile_key(id), Some(&condition))?)
            .await?
        {
            return Ok(());
        }
        // Written since (an ingest marked it due, say): leave `due_at` to that writer.
        let mut expr = Expr::default();
        removal(&mut expr);
        self.send_update(expr.update(self.table(), profile_key(id), Some("attribute_exists(pk)"))?)
            .await?;
        Ok(())
    }

    async fn due_customers(&self, before: Timestamp, cursor: Option<String>, limit: usize) -> Result<Page<StoredCustomer>, StoreError> {
        let page = self
            .query_partitions(
                PartitionQuery {
                    index: DUE_INDEX,
                    hash_name: DUE_SHARD,
                    partitions: &(0..DUE_SHARDS).map(|k| format!("DUE#{k}")).collect::<Vec<_>>(),
                    range: Some(("due_at <= :bound", n_int(before.millis()))),
                    newest_first: false,
                },
                cursor,
                limit,
            )
            .await?;
        Ok(Page {
            items: page
                .items
                .iter()
                .map(|item| customer_from_item(&self.rules, item))
                .collect::<Result<_, _>>()?,
            cursor: page.cursor,
        })
    }
}

impl NudgeLedger for DynamoStore {
    async fn nudges_of(&self, customer: &StoredCustomer) -> Result<Vec<StoredNudge>, StoreError> {
        // A merged customer keeps the nudge history of those merged into it: ladders and caps
        // carry over, so no step is sent twice.
        let mut owners = vec![customer.id.clone()];
        owners.extend(customer.merged_ids.iter().cloned());
        self.nudges_of_owners(&owners).await
    }

    async fn record_nudge(&self, customer: &CustomerId, nudge: &StoredNudge) -> Result<bool, StoreError> {
        let content = serde_json::to_string(nudge).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut item = key(customer_pk(customer), &nudge_sk(&nudge.nudge_id));
        item.extend([
            ("customer_id".to_string(), s(customer.as_str())),
            ("content".to_string(), s(content)),
            ("playbook".to_string(), s(nudge.decision.playbook.clone())),
            ("decided_at".to_string(), n_int(nudge.decided_at.millis())),
        ]);
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(invalid_request)?;
        // The step's outcome counter moves in the same transaction: counted once per nudge.
        let outcome = match (nudge.decision.outcome, nudge.decision.reason) {
            (NudgeOutcome::Sent, _) => "sent".to_string(),
            (NudgeOutcome::HeldOut, _) => "held_out".to_string(),
            (NudgeOutcome::Suppressed, reason) => format!("s_{}", reason.map_or("other", SuppressReason::name)),
        };
        let counter = self.outcome_update(customer, nudge, &outcome)?;
        // Decided from a read that an erasure may have overtaken: nothing is recorded about a
        // customer gone or being erased (the record names the step, the erasure removed the rest).
        let still_there = aws_sdk_dynamodb::types::ConditionCheck::builder()
            .table_name(self.table())
            .set_key(Some(profile_key(customer)))
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(erasing)")
            .build()
            .map_err(invalid_request)?;
        let actions = vec![
            TransactWriteItem::builder().put(put).build(),
            counter,
            TransactWriteItem::builder().condition_check(still_there).build(),
        ];
        self.transact_once(actions, &format!("nudge outcomes of {}", nudge.decision.playbook))
            .await
    }

    async fn record_rise_after(&self, customer: &CustomerId, nudge: &StoredNudge, rose_at: Timestamp) -> Result<bool, StoreError> {
        let outcome = match nudge.decision.outcome {
            NudgeOutcome::Sent => "sent_moved_up",
            NudgeOutcome::HeldOut => "held_out_moved_up",
            NudgeOutcome::Suppressed => return Ok(false),
        };
        let mut expr = Expr::default();
        expr.set("rose_at", n_int(rose_at.millis()));
        let mark = expr.update(
            self.table(),
            key(customer_pk(customer), &nudge_sk(&nudge.nudge_id)),
            Some("attribute_exists(pk) AND attribute_not_exists(rose_at)"),
        )?;
        let actions = vec![
            TransactWriteItem::builder().update(mark).build(),
            self.outcome_update(customer, nudge, outcome)?,
        ];
        self.transact_once(actions, &format!("nudge outcomes of {}", nudge.decision.playbook))
            .await
    }
}

impl Insights for DynamoStore {
    async fn customers_at_level(
        &self,
        level: Level,
        since_from: Option<Timestamp>,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<CustomerSummary>, StoreError> {
        let page = self
            .query_merged(
                PartitionQuery {
                    index: LEVEL_INDEX,
                    hash_name: LEVEL_SHARD,
                    partitions: &(0..LEVEL_SHARDS).map(|k| format!("LEVEL#{level}#{k}")).collect::<Vec<_>>(),
                    range: since_from.map(|from| ("level_since >= :bound", n_int(from.millis()))),
                    newest_first: true,
                },
                LEVEL_SINCE,
                cursor,
                limit,
            )
            .await?;
        Ok(Page {
            items: page.items.iter().map(summary_from_item).collect::<Result<_, _>>()?,
            cursor: page.cursor,
        })
    }

    async fn pyramid_counts(&self) -> Result<PyramidCounts, StoreError> {
        let keys = (0..PYRAMID_SHARDS).map(|k| key(pyramid_pk(k), COUNTS)).collect();
        let mut counts = [0u64; LEVEL_COUNT];
        for item in self.batch_get(keys, None).await? {
            for (slot, name) in counts.iter_mut().zip(COUNT) {
                *slot = (*slot as i64 + get_i64(&item, name).unwrap_or(0)).max(0) as u64;
            }
        }
        Ok(PyramidCounts(counts))
    }

    async fn flows(&self, first: Day, last: Day) -> Result<Vec<DayFlow>, StoreError> {
        let mut by_day: BTreeMap<Day, DayFlow> = BTreeMap::new();
        for k in 0..FLOW_SHARDS {
            let values = HashMap::from([
                (":pk".to_string(), s(flow_pk(k))),
                (":first".to_string(), s(flow_sk(first))),
                (":last".to_string(), s(flow_sk(last))),
            ]);
            for item in self
                .query_all(None, "pk = :pk AND sk BETWEEN :first AND :last", values, None)
                .await?
            {
                let Some(day) = get_i64(&item, "day") else {
                    return Err(StoreError::Corrupt("a flow counter without its day".into()));
                };
                let count = |name: &str| get_i64(&item, name).unwrap_or(0).max(0) as u64;
                let mut flow = DayFlow::empty(day);
                flow.joined = count(JOINED);
                for from in Level::ALL {
                    flow.left[from.index()] = count(&left_attribute(from));
                    for to in Level::ALL {
                        flow.moved[from.index()][to.index()] = count(&moved_attribute(from, to));
                    }
                }
                by_day.entry(day).or_insert_with(|| DayFlow::empty(day)).add(&flow);
            }
        }
        Ok(by_day.into_values().collect())
    }

    async fn nudge_outcomes(&self) -> Result<Vec<StepOutcomes>, StoreError> {
        let mut steps: BTreeMap<(String, u32), StepOutcomes> = BTreeMap::new();
        for k in 0..OUTCOME_SHARDS {
            let values = HashMap::from([(":pk".to_string(), s(outcomes_pk(k)))]);
            for item in self.query_all(None, "pk = :pk", values, None).await? {
                let (Some(playbook), Some(step)) = (get_s(&item, "playbook"), get_i64(&item, "step")) else {
                    return Err(StoreError::Corrupt("an outcome counter without its step".into()));
                };
                let step = u32::try_from(step).map_err(|_| StoreError::Corrupt("a step out of range".into()))?;
                let count = |name: &str| get_i64(&item, name).unwrap_or(0).max(0) as u64;
                let entry = steps.entry((playbook.to_string(), step)).or_insert_with(|| StepOutcomes {
                    playbook: playbook.to_string(),
                    step,
                    ..StepOutcomes::default()
                });
                entry.sent += count("sent");
                entry.held_out += count("held_out");
                entry.sent_moved_up += count("sent_moved_up");
                entry.held_out_moved_up += count("held_out_moved_up");
                for (name, _) in item.iter().filter(|(name, _)| name.starts_with("s_")) {
                    *entry.suppressed.entry(name["s_".len()..].to_string()).or_default() += count(name);
                }
            }
        }
        Ok(steps.into_values().collect())
    }
}

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
    /// The nudge history under a customer id, read or not: an erased customer's must be empty
    /// (the conformance tests check it).
    pub async fn nudges(&self, customer: &CustomerId) -> Result<Vec<StoredNudge>, StoreError> {
        match self.load_customer(customer).await? {
            Some(stored) => self.nudges_of(&stored).await,
            // Unknown or erased: whatever is left under the id itself.
            None => self.nudges_of_owners(std::slice::from_ref(customer)).await,
        }
    }
}

impl DynamoStore {
    /// The transaction that merges `loser` into `survivor`: the survivor takes the merged
    /// evidence, the union of identities and the strictest consent; the loser becomes a redirect;
    /// the loser's identities point at the survivor; the pyramid no longer counts the loser.
    fn merge_actions(
        &self,
        survivor: &StoredCustomer,
        survivor_item: &Item,
        loser: &StoredCustomer,
        now: Timestamp,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let merged = survivor.state.merge(&self.rules, &loser.state);
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
        // Consent: union of both sides' decisions, then a withdrawal wherever the strictest merge
        // says withdrawn (dated at the latest decision on that channel, so it wins when read).
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
        for (name, numbers) in adds {
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
        let survivor_update = expr.update(self.table(), profile_key(&survivor.id), Some(&condition))?;

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
        let loser_update = expr.update(self.table(), profile_key(&loser.id), Some(&condition))?;

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

    /// Every item about a customer (and those merged into it) but its profile: interactions,
    /// nudges, level changes, redirects. Deduplicated (a re-pointed interaction can show under
    /// two owners for a moment; BatchWriteItem refuses duplicate keys).
    async fn erasable_items(&self, customer: &StoredCustomer) -> Result<Vec<Item>, StoreError> {
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
    async fn history_keys(&self, owner: &CustomerId) -> Result<Vec<Item>, StoreError> {
        let values = HashMap::from([(":c".to_string(), s(owner.as_str()))]);
        self.query_all(Some(HISTORY_INDEX), &format!("{HISTORY_PK} = :c"), values, Some("pk, sk"))
            .await
    }

    /// After a merge, the loser's interactions are listed under the survivor. Idempotent: a
    /// retry after a failure finishes the job.
    async fn repoint_history(&self, loser: &CustomerId, survivor: &CustomerId) -> Result<(), StoreError> {
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
