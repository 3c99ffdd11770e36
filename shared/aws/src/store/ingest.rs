//! `InteractionLog`: recording interactions exactly once, and keeping unpublished events.
//!
//! The ingest path costs one `BatchGetItem` (identities and interaction claims) and one
//! `TransactWriteItems` per customer: evidence is folded by atomic adds against the stored epoch,
//! so there is no read-modify-write; only the first interaction of a new 32-day era rewrites the
//! sums (conditional on the version). A duplicate delivery is detected by the read alone.

use super::requests::*;
use super::DynamoStore;
use crate::errors::cancelled;
use crate::item::*;
use crate::keys::*;
use crate::retry::{backoff, MAX_ATTEMPTS};
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem};
use engagement::customer::ScoredInteraction;
use engagement::evidence::quantize;
use engagement::flow::{Day, FlowEntry};
use engagement::ports::*;
use engagement::recording::{consent_marks, evidence_adds, newcomer, Newcomer};
use engagement::{era_start, Evidence, Identity, Interaction, Level, Rules, Timestamp};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Most identities claimed in one transaction (the rest are claimed by the next interaction).
const MAX_NEW_IDENTITIES: usize = 40;

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

/// A chunk's actions, and what the store knows of its customer once they are written.
struct Prepared {
    /// The chunk's own items: its customer, identities and interactions.
    actions: Vec<TransactWriteItem>,
    /// What it adds to the shared counters, written after `actions` in the same transaction.
    counts: Counts,
    written: Hint,
}

/// What chunks add to the shared counter items (a newcomer's level on a shard of the pyramid,
/// the day's `joined` on a shard of the flow), kept apart from their own actions so that a pack
/// writes each counter item once with the sums: a transaction touches an item at most once, and
/// with a few shards, newcomers would otherwise rarely share a transaction.
#[derive(Default)]
struct Counts {
    /// Pyramid shard → the level moves on it.
    pyramid: BTreeMap<u32, Vec<(Level, i64)>>,
    /// (Flow shard, day) → the entries on it.
    flow: BTreeMap<(u32, Day), Vec<FlowEntry>>,
}

impl Counts {
    /// The counter items written.
    fn items(&self) -> usize {
        self.pyramid.len() + self.flow.len()
    }

    /// The counter items written once `other` is added.
    fn items_with(&self, other: &Counts) -> usize {
        self.items()
            + other.pyramid.keys().filter(|k| !self.pyramid.contains_key(k)).count()
            + other.flow.keys().filter(|k| !self.flow.contains_key(k)).count()
    }

    fn add(&mut self, other: &Counts) {
        for (shard, moves) in &other.pyramid {
            self.pyramid.entry(*shard).or_default().extend(moves);
        }
        for (key, entries) in &other.flow {
            self.flow.entry(*key).or_default().extend(entries);
        }
    }
}

enum ChunkResult {
    Recorded,
    /// Its pack was cancelled by another customer's write: read again and retry, packed again.
    CancelledAlong,
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
        let item = super::bulk::interaction_item(interaction, interaction.fingerprint(), customer, now)?;
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(invalid_request)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    pub(super) fn identity_put(&self, identity: &Identity, customer: &CustomerId, now: Timestamp) -> Result<TransactWriteItem, StoreError> {
        self.put_new(super::bulk::identity_item(&self.config.salt, identity, customer, now))
    }

    /// Groups a round's pending interactions by customer: those already recorded or erased get
    /// their outcome now; those that would overflow a transaction wait for the next round.
    fn chunks_of(
        &self,
        batch: &[Interaction],
        pending: &[usize],
        snapshot: &Snapshot,
        outcomes: &mut [Option<RecordOutcome>],
    ) -> (BTreeMap<CustomerId, Chunk>, Vec<usize>) {
        let mut chunks: BTreeMap<CustomerId, Chunk> = BTreeMap::new();
        let mut deferred = Vec::new();
        // Identities are resolved in the batch's order, as if each interaction were recorded
        // before the next is read: an identity an earlier interaction of this round claims
        // belongs to that interaction's customer (an alias introduced by `also` and then used
        // alone is one customer, not two); an interaction that names an identity of a deferred
        // one waits for the next round with it.
        let mut claimed: HashMap<String, CustomerId> = HashMap::new();
        let mut waiting: BTreeSet<String> = BTreeSet::new();
        for &index in pending {
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
            let keys: Vec<String> = interaction
                .identities()
                .map(|identity| identity_pk(&self.config.salt, identity))
                .collect();
            if keys.iter().any(|key| waiting.contains(key)) {
                waiting.extend(keys);
                deferred.push(index);
                continue;
            }
            let entries: Vec<(&Identity, Option<&IdentityEntry>, Option<&CustomerId>)> = interaction
                .identities()
                .zip(&keys)
                .map(|(identity, key)| (identity, snapshot.identities.get(key), claimed.get(key)))
                .collect();
            if entries.iter().any(|(_, entry, _)| entry.is_some_and(|e| e.erased)) {
                outcomes[index] = Some(RecordOutcome {
                    id: interaction.id.clone(),
                    status: RecordStatus::Erased,
                    customer_id: None,
                });
                continue;
            }
            let known = entries.iter().find_map(|(_, entry, in_round)| match entry {
                Some(entry) => entry.customer.clone().map(CustomerId),
                None => in_round.map(|id| (*id).clone()),
            });
            let (customer, is_new) = match known {
                Some(id) => {
                    let is_new = chunks.get(&id).is_some_and(|chunk| chunk.is_new);
                    (id, is_new)
                }
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
                .filter(|(_, entry, in_round)| entry.is_none() && in_round.is_none())
                .map(|(identity, _, _)| (*identity).clone())
                .filter(|identity| !chunk.new_identities.contains(identity))
                .collect();
            // Besides its interactions and identities, a chunk holds the customer and the
            // pyramid counter, and a new customer also the day's flow counter.
            let fixed = if chunk.is_new { 3 } else { 2 };
            let room = MAX_TRANSACTION_ACTIONS - fixed - chunk.indices.len() - chunk.new_identities.len();
            if chunk.new_identities.len() + unclaimed.len() > MAX_NEW_IDENTITIES || room < 1 + unclaimed.len() {
                waiting.extend(keys);
                deferred.push(index);
                continue;
            }
            for identity in &unclaimed {
                claimed.insert(identity_pk(&self.config.salt, identity), chunk.customer.clone());
            }
            chunk.new_identities.extend(unclaimed);
            chunk.indices.push(index);
        }
        (chunks, deferred)
    }

    /// A chunk's actions, ready to send; `None` to read again and retry.
    async fn prepare_chunk(
        &self,
        batch: &[Interaction],
        chunk: &Chunk,
        hints: &Hints,
        now: Timestamp,
    ) -> Result<Option<Prepared>, StoreError> {
        let interactions: Vec<&Interaction> = chunk.indices.iter().map(|&i| &batch[i]).collect();
        let scored: Vec<_> = interactions.iter().filter_map(|i| i.score(&self.rules)).collect();
        let latest = interactions.iter().map(|i| i.occurred_at).max().unwrap_or(now);
        let hint = hints.get(&chunk.customer).cloned().unwrap_or_default();
        let name = interactions.iter().find_map(|i| i.customer.name.clone());
        let mut counts = Counts::default();
        let (mut actions, used_epoch) = if chunk.is_new {
            let first_at = interactions.iter().map(|i| i.occurred_at).min().unwrap_or(now);
            let newcomer = newcomer(&self.rules, &scored, first_at);
            counts
                .pyramid
                .insert(shard(&chunk.customer, PYRAMID_SHARDS), vec![(newcomer.standing.level, 1)]);
            counts.flow.insert(
                (shard(&chunk.customer, FLOW_SHARDS), flow_day(newcomer.standing.since)),
                vec![FlowEntry::Joined],
            );
            (vec![self.newcomer_put(chunk, &newcomer, name, now)?], None)
        } else {
            let Some((mut expr, condition, epoch)) = self.fold_expression(chunk, &scored, &hint, latest).await? else {
                return Ok(None);
            };
            known_customer_sets(&mut expr, chunk, &scored, name, now);
            let update = expr.update(self.table(), profile_key(&chunk.customer), Some(&condition))?;
            (vec![TransactWriteItem::builder().update(update).build()], Some(epoch))
        };
        for identity in &chunk.new_identities {
            actions.push(self.identity_put(identity, &chunk.customer, now)?);
        }
        for interaction in &interactions {
            actions.push(self.interaction_put(interaction, &chunk.customer, now)?);
        }
        let last_at = Some(hint.last_at.map_or(latest, |stored| stored.max(latest)));
        Ok(Some(Prepared {
            actions,
            counts,
            written: Hint {
                epoch: used_epoch,
                last_at,
                item: None,
            },
        }))
    }

    /// Writes one customer's chunk of a round.
    async fn write_chunk(
        &self,
        batch: &[Interaction],
        chunk: &Chunk,
        hints: &mut Hints,
        now: Timestamp,
    ) -> Result<ChunkResult, StoreError> {
        let Some(mut prepared) = self.prepare_chunk(batch, chunk, hints, now).await? else {
            return Ok(ChunkResult::Retry);
        };
        prepared.actions.extend(self.count_actions(&prepared.counts)?);
        match self.transact(prepared.actions).await? {
            Ok(()) => {
                hints.insert(chunk.customer.clone(), prepared.written);
                Ok(ChunkResult::Recorded)
            }
            Err(reasons) => chunk_failed(chunk, &reasons, hints),
        }
    }

    /// Writes a round's chunks packed several customers to a transaction (`packing_customers`),
    /// except those of the customers `alone`, one transaction each.
    async fn write_packed<'c>(
        &self,
        batch: &[Interaction],
        chunks: &'c BTreeMap<CustomerId, Chunk>,
        alone: &BTreeSet<CustomerId>,
        hints: &mut Hints,
        now: Timestamp,
    ) -> Result<Vec<(&'c Chunk, ChunkResult)>, StoreError> {
        let mut results = Vec::with_capacity(chunks.len());
        // Each pack: its chunks, and the sums of what they add to the counters.
        let mut packs: Vec<(Vec<(&Chunk, Prepared)>, Counts)> = Vec::new();
        let (mut size, mut keys) = (0, BTreeSet::new());
        for chunk in chunks.values() {
            if alone.contains(&chunk.customer) {
                results.push((chunk, self.write_chunk(batch, chunk, hints, now).await?));
                continue;
            }
            let Some(prepared) = self.prepare_chunk(batch, chunk, hints, now).await? else {
                results.push((chunk, ChunkResult::Retry));
                continue;
            };
            let chunk_keys: Vec<(String, String)> = prepared.actions.iter().filter_map(action_key).collect();
            // DynamoDB refuses a transaction that touches an item twice (two newcomers claiming
            // one identity): such a chunk starts the next pack. Counters are summed instead.
            let fits = packs.last().is_some_and(|(_, counts)| {
                size + prepared.actions.len() + counts.items_with(&prepared.counts) <= MAX_TRANSACTION_ACTIONS
                    && chunk_keys.iter().all(|k| !keys.contains(k))
            });
            if !fits {
                packs.push((Vec::new(), Counts::default()));
                size = 0;
                keys.clear();
            }
            size += prepared.actions.len();
            keys.extend(chunk_keys);
            if let Some((pack, counts)) = packs.last_mut() {
                counts.add(&prepared.counts);
                pack.push((chunk, prepared));
            }
        }
        for (pack, counts) in packs {
            // The chunks' own actions first, in order (the cancellation reasons are read by
            // position), then the counters.
            let mut actions: Vec<TransactWriteItem> = pack.iter().flat_map(|(_, p)| p.actions.iter().cloned()).collect();
            actions.extend(self.count_actions(&counts)?);
            match self.transact(actions).await? {
                Ok(()) => {
                    for (chunk, prepared) in pack {
                        hints.insert(chunk.customer.clone(), prepared.written);
                        results.push((chunk, ChunkResult::Recorded));
                    }
                }
                Err(reasons) => {
                    // Each customer's share of the reasons: the one whose condition failed
                    // learns from it; the others were only cancelled along. When none of them
                    // failed (a conflict on a counter), each goes alone.
                    let own_actions: usize = pack.iter().map(|(_, p)| p.actions.len()).sum();
                    let blamed = reasons.iter().take(own_actions).any(|r| r.code != "None");
                    let mut offset = 0;
                    for (chunk, prepared) in pack {
                        let end = (offset + prepared.actions.len()).min(reasons.len());
                        let own = &reasons[offset.min(end)..end];
                        offset += prepared.actions.len();
                        let result = if own.iter().any(|r| r.code != "None") {
                            chunk_failed(chunk, own, hints)?
                        } else if blamed {
                            ChunkResult::CancelledAlong
                        } else {
                            refuse_unexpected(&reasons[own_actions.min(reasons.len())..])?;
                            ChunkResult::Retry
                        };
                        results.push((chunk, result));
                    }
                }
            }
        }
        Ok(results)
    }

    /// A new customer's profile as the core decided it (`prepare_chunk` counts them at its level
    /// and as joined on the day of its first interaction, so the past pyramid has them then).
    fn newcomer_put(
        &self,
        chunk: &Chunk,
        newcomer: &Newcomer,
        name: Option<String>,
        now: Timestamp,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = super::bulk::profile_item(
            &self.rules,
            self.rules.fingerprint(),
            &chunk.customer,
            name,
            &chunk.new_identities,
            &newcomer.state,
            now,
        );
        item.extend([
            (DUE_SHARD.to_string(), s(due_shard(&chunk.customer))),
            (DUE_AT.to_string(), n_int(now.millis())),
        ]);
        self.put_new(item)
    }

    /// The counter updates that add `counts`: one per counter item.
    fn count_actions(&self, counts: &Counts) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut actions = Vec::with_capacity(counts.items());
        for (shard, moves) in &counts.pyramid {
            actions.push(self.count_update_in(*shard, moves)?);
        }
        for ((shard, day), entries) in &counts.flow {
            actions.push(self.flow_update_in(*shard, *day, entries)?);
        }
        Ok(actions)
    }

    /// Folds a known customer's chunk into its stored evidence: the update, its condition and the
    /// epoch used; `None` to read again and retry.
    async fn fold_expression(
        &self,
        chunk: &Chunk,
        scored: &[ScoredInteraction],
        hint: &Hint,
        latest: Timestamp,
    ) -> Result<Option<(Expr, String, Timestamp)>, StoreError> {
        let mut expr = Expr::default();
        match hint.epoch {
            // Too long after the stored epoch to add against it (a customer silent for
            // 40 half-lives): rewrite the sums against the new epoch, conditional on the
            // version read. Otherwise rescores move epochs forward.
            Some(known) if !Evidence::within_lag(&self.rules, known, latest) => {
                let item = match hint.item.clone() {
                    Some(item) => item,
                    None => match self.get(profile_key(&chunk.customer)).await? {
                        Some(item) => item,
                        None => return Ok(None),
                    },
                };
                let Some((condition, epoch)) = self.rewrite_evidence(&mut expr, &item, scored, latest)? else {
                    // Someone moved it meanwhile: go again with what we now know.
                    return Ok(None);
                };
                Ok(Some((expr, condition, epoch)))
            }
            known => {
                let epoch = known.unwrap_or(era_start(latest));
                let condition = add_evidence(&self.rules, &mut expr, epoch, scored, hint, latest);
                Ok(Some((expr, condition, epoch)))
            }
        }
    }

    /// Rewrites the whole evidence against a new epoch, conditional on the version read; `None`
    /// when the stored customer moved meanwhile.
    fn rewrite_evidence(
        &self,
        expr: &mut Expr,
        item: &Item,
        scored: &[ScoredInteraction],
        latest: Timestamp,
    ) -> Result<Option<(String, Timestamp)>, StoreError> {
        let stored = customer_from_item(&self.rules, item)?;
        if Evidence::within_lag(&self.rules, stored.state.evidence.epoch, latest) || item.contains_key("merged_into") {
            return Ok(None);
        }
        let mut state = stored.state.clone();
        for item in scored {
            state.fold(&self.rules, item);
        }
        expr.replace_evidence(&self.rules, &state.evidence, Some(item));
        let version = expr.value(n_int(stored.version as i64));
        let condition = format!(
            "{} = {version} AND attribute_not_exists(merged_into) AND attribute_not_exists(erasing)",
            expr.name("version")
        );
        Ok(Some((condition, state.evidence.epoch)))
    }
}

impl InteractionLog for DynamoStore {
    async fn record_interactions(&self, batch: &[Interaction], now: Timestamp) -> Result<Vec<RecordOutcome>, StoreError> {
        let mut outcomes: Vec<Option<RecordOutcome>> = vec![None; batch.len()];
        let (mut pending, repeats) = first_occurrences(batch);
        let mut hints = Hints::new();
        // Rounds in a row in which nothing could be written; progress resets it.
        let mut stalled = 0;
        let mut rounds = 0;
        // The customers whose write cancelled a pack: theirs go alone from then on, so that a
        // contended customer does not hold the others back.
        let mut alone = BTreeSet::new();
        while !pending.is_empty() {
            // With turns, this round writes the interactions whose identities no other request
            // holds; the others wait for a later round.
            let (turn, mut waiting) = match &self.turns {
                Some(turns) => {
                    let wanted: Vec<(usize, Vec<String>)> = pending
                        .iter()
                        .map(|&index| {
                            let keys = batch[index]
                                .identities()
                                .map(|identity| identity_pk(&self.config.salt, identity))
                                .collect();
                            (index, keys)
                        })
                        .collect();
                    let (turn, taken) = turns.take(&wanted).await;
                    let waiting = pending.iter().copied().filter(|index| !taken.contains(index)).collect();
                    pending = taken;
                    (Some(turn), waiting)
                }
                None => (None, Vec::new()),
            };
            let snapshot = self.read_for_ingest(batch, &pending).await?;
            for (customer, epoch) in &snapshot.epochs {
                let hint = hints.entry(customer.clone()).or_default();
                if hint.item.is_none() {
                    hint.epoch = Some(epoch.0);
                    hint.last_at = epoch.1;
                }
            }
            let (chunks, deferred) = self.chunks_of(batch, &pending, &snapshot, &mut outcomes);
            rounds += 1;
            let mut retry = Vec::new();
            let mut progressed = false;
            let results = if self.packing {
                self.write_packed(batch, &chunks, &alone, &mut hints, now).await?
            } else {
                let mut results = Vec::with_capacity(chunks.len());
                for chunk in chunks.values() {
                    results.push((chunk, self.write_chunk(batch, chunk, &mut hints, now).await?));
                }
                results
            };
            for (chunk, result) in results {
                match result {
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
                    ChunkResult::Retry => {
                        alone.insert(chunk.customer.clone());
                        retry.extend(&chunk.indices);
                    }
                    ChunkResult::CancelledAlong => retry.extend(&chunk.indices),
                }
            }
            // Written or not, the identities are given back before any backoff.
            drop(turn);
            if !retry.is_empty() {
                stalled = if progressed { 0 } else { stalled + 1 };
                if stalled >= MAX_ATTEMPTS || rounds > 20 * MAX_ATTEMPTS {
                    return Err(StoreError::Contention("interactions of one customer".into()));
                }
                backoff(stalled).await;
            }
            retry.extend(deferred);
            retry.append(&mut waiting);
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

/// Adds a chunk's sums to the stored ones (atomic adds against the stored epoch); returns the
/// condition that the epoch is still the one added against.
fn add_evidence(rules: &Rules, expr: &mut Expr, epoch: Timestamp, scored: &[ScoredInteraction], hint: &Hint, latest: Timestamp) -> String {
    let adds = evidence_adds(rules, epoch, scored);
    for (name, sum) in EVIDENCE.iter().zip(adds.levels) {
        if sum != 0.0 {
            expr.increment(name, n_float(quantize(sum)));
        }
    }
    for (kind, (sum, count)) in adds.kinds {
        expr.increment(&kind_evidence_attr(&kind), n_float(quantize(sum)));
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
    format!("attribute_exists(pk) AND {epoch_name} = {epoch_value} AND attribute_not_exists(merged_into) AND attribute_not_exists(erasing){last_at_condition}")
}

/// What a known customer's update sets besides its evidence: consent marks, new identities, a
/// first name, and due for rescoring now.
fn known_customer_sets(expr: &mut Expr, chunk: &Chunk, scored: &[ScoredInteraction], name: Option<String>, now: Timestamp) {
    // Consent decisions go into number sets, one ADD per attribute.
    for ((channel, granted), instants) in consent_marks(scored) {
        let attribute = if granted {
            consent_grant_attr(&channel)
        } else {
            consent_withdraw_attr(&channel)
        };
        expr.add(
            &attribute,
            AttributeValue::Ns(instants.iter().map(|t| t.millis().to_string()).collect()),
        );
    }
    if !chunk.new_identities.is_empty() {
        let name = expr.name("identities");
        let empty = expr.value(AttributeValue::L(vec![]));
        let new = expr.value(AttributeValue::L(chunk.new_identities.iter().map(identity_value).collect()));
        expr.set
            .push(format!("{name} = list_append(if_not_exists({name}, {empty}), {new})"));
    }
    if let Some(name) = name {
        let attribute = expr.name("name");
        let value = expr.value(s(name));
        expr.set.push(format!("{attribute} = if_not_exists({attribute}, {value})"));
    }
    expr.set(DUE_SHARD, s(due_shard(&chunk.customer)));
    expr.set(DUE_AT, n_int(now.millis()));
    expr.add("version", n_int(1));
}

/// A chunk's transaction was cancelled: keeps what the failed condition returned (for the next
/// try) and retries, unless the cancellation is one no retry mends.
fn chunk_failed(chunk: &Chunk, reasons: &[Reason], hints: &mut Hints) -> Result<ChunkResult, StoreError> {
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
    refuse_unexpected(reasons)?;
    Ok(ChunkResult::Retry)
}

/// An error for a cancellation no retry mends.
fn refuse_unexpected(reasons: &[Reason]) -> Result<(), StoreError> {
    let unexpected = reasons.iter().find(|r| {
        !matches!(
            r.code.as_str(),
            "None" | "ConditionalCheckFailed" | "TransactionConflict" | "ThrottlingError"
        )
    });
    match unexpected {
        Some(reason) => Err(cancelled("record_interactions", [reason.code.as_str()])),
        None => Ok(()),
    }
}

/// The item an action writes (pk, sk).
fn action_key(action: &TransactWriteItem) -> Option<(String, String)> {
    let key = if let Some(put) = action.put() {
        put.item()
    } else if let Some(update) = action.update() {
        update.key()
    } else if let Some(delete) = action.delete() {
        delete.key()
    } else {
        action.condition_check()?.key()
    };
    Some((get_s(key, PK)?.to_string(), get_s(key, SK)?.to_string()))
}

/// The indices of each id's first occurrence (recorded), and the repeats with their first.
fn first_occurrences(batch: &[Interaction]) -> (Vec<usize>, Vec<(usize, usize)>) {
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
    (pending, repeats)
}
