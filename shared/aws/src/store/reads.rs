//! `CustomerReads` and `Insights`: one customer's reads, and the listings and aggregates
//! across customers (sharded index queries, merged across shards where order matters).

use super::requests::*;
use super::DynamoStore;
use crate::cursor;
use crate::errors::store_error;
use crate::item::*;
use crate::keys::*;
use aws_sdk_dynamodb::types::AttributeValue;
use engagement::flow::{Day, DayFlow};
use engagement::ports::*;
use engagement::{Identity, Interaction, Level, LevelChange, Timestamp, LEVEL_COUNT};
use std::collections::{BTreeMap, HashMap};

/// Which partitions of which index a listing reads, in order.
pub(super) struct PartitionQuery<'a> {
    pub(super) index: &'a str,
    pub(super) hash_name: &'a str,
    pub(super) partitions: &'a [String],
    /// A range condition on the index's sort key, with its bound as `:bound`.
    pub(super) range: Option<(&'a str, AttributeValue)>,
    pub(super) newest_first: bool,
}

impl DynamoStore {
    /// The query of one shard of a partitioned listing, from `start`, at most `limit` items.
    pub(super) fn shard_query(
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
    pub(super) async fn query_merged(
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

    /// Queries an index over several partitions (shards, or a customer and those merged into
    /// it) page by page, one partition after the other.
    pub(super) async fn query_partitions(
        &self,
        query: PartitionQuery<'_>,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<Item>, StoreError> {
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
