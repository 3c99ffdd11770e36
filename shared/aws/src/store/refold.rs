//! `Refolds`: the customers still folded under other rules (a parallel, consistent scan), a
//! customer's whole history (the history index), and the refold's write: the profile under its
//! version condition, the pyramid counts, and the stored level changes replaced by the replayed
//! timeline with the daily flow moved to match (so the past pyramid follows the new rules too).

use super::requests::*;
use super::DynamoStore;
use crate::cursor;
use crate::errors::store_error;
use crate::item::*;
use crate::keys::*;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};
use engagement::flow::Day;
use engagement::ports::*;
use engagement::{Interaction, Level, LevelChange, Timestamp};
use std::collections::{BTreeMap, HashMap};

/// The writes of one UTC day of the timeline: its change items and its net flow.
#[derive(Default)]
struct DayWrites {
    items: Vec<TransactWriteItem>,
    flow: BTreeMap<String, i64>,
}

impl DynamoStore {
    fn change_put(&self, id: &CustomerId, change: &LevelChange) -> Result<TransactWriteItem, StoreError> {
        let item = super::bulk::change_item(id, change);
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(item))
            .build()
            .map_err(invalid_request)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn change_delete(&self, id: &CustomerId, sk: &str) -> Result<TransactWriteItem, StoreError> {
        let delete = Delete::builder()
            .table_name(self.table())
            .set_key(Some(key(customer_pk(id), sk)))
            .build()
            .map_err(invalid_request)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Adds signed amounts to one day's flow counter (the customer's flow shard).
    fn flow_delta(&self, id: &CustomerId, day: Day, deltas: &BTreeMap<String, i64>) -> Result<Option<TransactWriteItem>, StoreError> {
        self.flow_delta_on(shard(id, FLOW_SHARDS), day, deltas)
    }

    /// Adds signed amounts to one day's counter on one flow shard.
    fn flow_delta_on(&self, flow_shard: u32, day: Day, deltas: &BTreeMap<String, i64>) -> Result<Option<TransactWriteItem>, StoreError> {
        let mut expr = Expr::default();
        for (attribute, by) in deltas.iter().filter(|(_, by)| **by != 0) {
            expr.add(attribute, n_int(*by));
        }
        if expr.add.is_empty() {
            return Ok(None);
        }
        expr.set("day", n_int(day));
        let update = expr.update(self.table(), key(flow_pk(flow_shard), &flow_sk(day)), None)?;
        Ok(Some(TransactWriteItem::builder().update(update).build()))
    }

    /// The change items to delete and put, grouped by day with the flow that moves with them:
    /// the stored changes not in the timeline leave the flow, the new ones enter it.
    fn timeline_writes(
        &self,
        id: &CustomerId,
        stored: &BTreeMap<String, LevelChange>,
        timeline: &[LevelChange],
    ) -> Result<BTreeMap<Day, DayWrites>, StoreError> {
        let wanted: BTreeMap<String, LevelChange> = timeline.iter().map(|c| (change_sk(c.at, c.to), *c)).collect();
        let mut days: BTreeMap<Day, DayWrites> = BTreeMap::new();
        for (sk, old) in stored {
            match wanted.get(sk) {
                Some(new) if new.from == old.from => {}
                // Same key, another origin: the put below overwrites it.
                Some(_) => {
                    let day = days.entry(flow_day(old.at)).or_default();
                    *day.flow.entry(moved_attribute(old.from, old.to)).or_default() -= 1;
                }
                None => {
                    let day = days.entry(flow_day(old.at)).or_default();
                    day.items.push(self.change_delete(id, sk)?);
                    *day.flow.entry(moved_attribute(old.from, old.to)).or_default() -= 1;
                }
            }
        }
        for (sk, new) in &wanted {
            if stored.get(sk).is_some_and(|old| old.from == new.from) {
                continue;
            }
            let day = days.entry(flow_day(new.at)).or_default();
            day.items.push(self.change_put(id, new)?);
            *day.flow.entry(moved_attribute(new.from, new.to)).or_default() += 1;
        }
        Ok(days)
    }

    /// The profile's update: everything replay decided, under the version condition.
    fn refold_update(&self, write: &RefoldWrite, stored: &Item, expected_version: u64) -> Result<TransactWriteItem, StoreError> {
        let id = &write.customer_id;
        let mut expr = Expr::default();
        expr.replace_evidence(&self.rules, &write.state.evidence, Some(stored));
        let consent = consent_attributes(&write.state.consent);
        for name in stored.keys() {
            if (name.starts_with("cg_") || name.starts_with("cw_")) && !consent.iter().any(|(a, _)| a == name) {
                expr.remove(name);
            }
        }
        for (name, value) in consent {
            expr.set(&name, value);
        }
        set_standing(&mut expr, id, &write.standing, write.at_risk_notified_for);
        match write.moved {
            Some(direction) => expr.set(MOVED, s(direction.name())),
            None => expr.remove(MOVED),
        }
        set_due(&mut expr, id, write.due_at);
        expr.set(RULES_FINGERPRINT, s(write.rules_fingerprint.clone()));
        self.version_step(expr, id, expected_version)
    }

    /// Bumps the version under the condition that it is still `expected` (a step of a long
    /// timeline, or the profile's update itself).
    fn version_step(&self, mut expr: Expr, id: &CustomerId, expected: u64) -> Result<TransactWriteItem, StoreError> {
        expr.add("version", n_int(1));
        let version = expr.value(n_int(expected as i64));
        let condition = format!(
            "{} = {version} AND attribute_not_exists(merged_into) AND attribute_not_exists(erasing)",
            expr.name("version")
        );
        let update = expr.update(self.table(), profile_key(id), Some(&condition))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// One transaction whose first action is the profile's conditional update.
    async fn refold_transaction(&self, actions: Vec<TransactWriteItem>, id: &CustomerId) -> Result<WriteOutcome, StoreError> {
        self.transact_versioned(actions, "write_refold", || format!("refold of {id}")).await
    }
}

impl Refolds for DynamoStore {
    async fn customers_to_refold(
        &self,
        fingerprint: &str,
        segment: u32,
        segments: u32,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<Page<StoredCustomer>, StoreError> {
        let mut start = cursor::decode(cursor.as_deref())?.key;
        // In key order, the customers' partitions are one range: start at it, stop past it.
        let customers_only = self.key_ordered_scans && segments <= 1;
        if customers_only && start.is_none() {
            start = Some(key(CUSTOMER_PREFIX.to_string(), "~"));
        }
        let values = HashMap::from([(":profile".to_string(), s(PROFILE)), (":fingerprint".to_string(), s(fingerprint))]);
        let names = HashMap::from([("#fp".to_string(), RULES_FINGERPRINT.to_string())]);
        let mut scan = self.client.scan().table_name(self.table());
        // One segment is a plain scan: key order, which the embedded store serves from its
        // primary key (a parallel scan there sorts the whole table by hash for every page).
        if segments > 1 {
            scan = scan.segment(segment as i32).total_segments(segments as i32);
        }
        let output = scan
            // The version read here conditions the write: read what was last written.
            .consistent_read(true)
            .filter_expression(
                "sk = :profile AND attribute_not_exists(merged_into) AND attribute_not_exists(erasing) \
                 AND (attribute_not_exists(#fp) OR #fp <> :fingerprint)",
            )
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .limit(limit.clamp(1, 1000) as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| store_error("Scan", e))?;
        Ok(Page {
            items: output
                .items()
                .iter()
                .map(|item| customer_from_item(&self.rules, item))
                .collect::<Result<_, _>>()?,
            cursor: output
                .last_evaluated_key()
                .filter(|last| !customers_only || get_s(last, PK).is_some_and(|pk| pk.starts_with(CUSTOMER_PREFIX)))
                .map(|last| cursor::encode(segment, Some(last))),
        })
    }

    async fn history(&self, customer: &StoredCustomer) -> Result<Vec<Interaction>, StoreError> {
        let mut history = Vec::new();
        for owner in std::iter::once(&customer.id).chain(&customer.merged_ids) {
            let values = HashMap::from([(":owner".to_string(), s(owner.as_str()))]);
            let condition = format!("{HISTORY_PK} = :owner");
            for item in self.query_all(Some(HISTORY_INDEX), &condition, values, Some("content")).await? {
                let content = get_s(&item, "content").unwrap_or("{}");
                history.push(serde_json::from_str::<Interaction>(content).map_err(|e| StoreError::Corrupt(format!("interaction: {e}")))?);
            }
        }
        Ok(history)
    }

    async fn write_refold(&self, write: &RefoldWrite) -> Result<WriteOutcome, StoreError> {
        let Some(prepared) = self.prepare_refold(write).await? else {
            return Ok(WriteOutcome::Conflict);
        };
        self.write_prepared(write, prepared).await
    }

    async fn write_refolds(&self, writes: &[RefoldWrite]) -> Result<Vec<WriteOutcome>, StoreError> {
        if !self.packing || writes.len() < 2 {
            let mut outcomes = Vec::with_capacity(writes.len());
            for write in writes {
                outcomes.push(self.write_refold(write).await?);
            }
            return Ok(outcomes);
        }
        self.write_packed_refolds(writes).await
    }
}

/// What a customer's refold writes besides its profile: the level changes to delete and put,
/// and the flow they move, by day.
struct PreparedRefold {
    /// The profile as read (its attributes decide what the update removes).
    profile: Item,
    days: BTreeMap<Day, DayWrites>,
}

impl PreparedRefold {
    /// The actions of its one transaction, were it written alone.
    fn actions(&self, write: &RefoldWrite) -> usize {
        let moves = usize::from(write.previous_level != write.standing.level);
        1 + moves
            + self
                .days
                .values()
                .map(|day| day.items.len() + usize::from(day.flow.values().any(|by| *by != 0)))
                .sum::<usize>()
    }
}

/// A transaction of several customers' refolds: the shared counters summed, so no item is
/// written twice.
#[derive(Default)]
struct Pack {
    /// The indices of the writes in it.
    members: Vec<usize>,
    /// Each member's own actions (its profile's conditional update first, then its changes).
    own: Vec<TransactWriteItem>,
    counts: BTreeMap<u32, BTreeMap<Level, i64>>,
    flows: BTreeMap<(u32, Day), BTreeMap<String, i64>>,
}

impl Pack {
    fn size(&self) -> usize {
        self.own.len() + self.counts.len() + self.flows.len()
    }
}

impl DynamoStore {
    /// Reads the customer's profile and level changes (one consistent query): `None` when the
    /// version moved since the write was planned.
    async fn prepare_refold(&self, write: &RefoldWrite) -> Result<Option<PreparedRefold>, StoreError> {
        let id = &write.customer_id;
        // The profile and its level changes in one consistent read (nudges sort between them).
        let values = HashMap::from([
            (":pk".to_string(), s(customer_pk(id))),
            (":first".to_string(), s("CHANGE#")),
            (":last".to_string(), s(PROFILE)),
        ]);
        let mut items = self
            .query_all(None, "pk = :pk AND sk BETWEEN :first AND :last", values, None)
            .await?;
        let Some(at) = items.iter().position(|item| get_s(item, SK) == Some(PROFILE)) else {
            return Ok(None);
        };
        let profile = items.swap_remove(at);
        if get_i64(&profile, "version").unwrap_or(-1) != write.expected_version as i64 {
            return Ok(None);
        }
        let mut stored = BTreeMap::new();
        for item in items
            .iter()
            .filter(|item| get_s(item, SK).is_some_and(|sk| sk.starts_with("CHANGE#")))
        {
            let level = |name: &str| get_s(item, name).and_then(|l| l.parse::<Level>().ok());
            let (Some(sk), Some(from), Some(to), Some(at)) = (get_s(item, SK), level("from"), level("to"), get_i64(item, "at")) else {
                return Err(StoreError::Corrupt(format!("a level change of {id}")));
            };
            let change = LevelChange {
                at: Timestamp::from_millis(at),
                from,
                to,
            };
            stored.insert(sk.to_string(), change);
        }
        let days = self.timeline_writes(id, &stored, &write.timeline)?;
        Ok(Some(PreparedRefold { profile, days }))
    }

    /// One customer's refold, alone: in steps of at most a transaction each, every one under
    /// the version condition; the profile's update (with the pyramid counts) goes last.
    async fn write_prepared(&self, write: &RefoldWrite, prepared: PreparedRefold) -> Result<WriteOutcome, StoreError> {
        let id = &write.customer_id;
        let room = MAX_TRANSACTION_ACTIONS - 2;
        let mut steps: Vec<Vec<TransactWriteItem>> = vec![Vec::new()];
        for (day, writes) in prepared.days {
            let mut actions = writes.items;
            actions.extend(self.flow_delta(id, day, &writes.flow)?);
            let current = steps.last().map_or(0, Vec::len);
            if current + actions.len() > room {
                steps.push(Vec::new());
            }
            if let Some(step) = steps.last_mut() {
                step.extend(actions);
            }
        }
        let last = steps.len() - 1;
        // Each step bumps the version the next one is conditioned on.
        for (version, (index, step)) in (write.expected_version..).zip(steps.into_iter().enumerate()) {
            let mut actions = Vec::with_capacity(step.len() + 2);
            if index == last {
                actions.push(self.refold_update(write, &prepared.profile, version)?);
                if write.previous_level != write.standing.level {
                    actions.push(self.count_update(id, &[(write.standing.level, 1), (write.previous_level, -1)])?);
                }
            } else {
                actions.push(self.version_step(Expr::default(), id, version)?);
            }
            actions.extend(step);
            if self.refold_transaction(actions, id).await? == WriteOutcome::Conflict {
                return Ok(WriteOutcome::Conflict);
            }
        }
        Ok(WriteOutcome::Written)
    }

    /// Several customers' refolds in as few transactions as fit (`packing_customers`): each
    /// customer's profile update keeps its own version condition, and the pyramid and flow
    /// counters they share are summed into one update each. A pack that does not commit (one
    /// customer's version moved) is written again one customer at a time, each read afresh.
    async fn write_packed_refolds(&self, writes: &[RefoldWrite]) -> Result<Vec<WriteOutcome>, StoreError> {
        let prepared = futures::future::try_join_all(writes.iter().map(|write| self.prepare_refold(write))).await?;
        let mut outcomes = vec![WriteOutcome::Conflict; writes.len()];
        let mut packs: Vec<Pack> = vec![Pack::default()];
        let mut alone = Vec::new();
        for (index, (write, prepared)) in writes.iter().zip(prepared).enumerate() {
            let Some(prepared) = prepared else {
                continue;
            };
            if prepared.actions(write) > MAX_TRANSACTION_ACTIONS / 2 {
                alone.push((index, prepared));
                continue;
            }
            let id = &write.customer_id;
            let mut own = vec![self.refold_update(write, &prepared.profile, write.expected_version)?];
            let mut counts = Vec::new();
            if write.previous_level != write.standing.level {
                counts.push((write.standing.level, 1));
                counts.push((write.previous_level, -1));
            }
            let flow_shard = shard(id, FLOW_SHARDS);
            let mut flows = Vec::new();
            for (day, writes) in prepared.days {
                own.extend(writes.items);
                if writes.flow.values().any(|by| *by != 0) {
                    flows.push(((flow_shard, day), writes.flow));
                }
            }
            let count_shard = shard(id, PYRAMID_SHARDS);
            let pack = packs.last_mut().ok_or_else(|| StoreError::Unavailable("no pack".into()))?;
            let grows = own.len()
                + usize::from(!counts.is_empty() && !pack.counts.contains_key(&count_shard))
                + flows.iter().filter(|(at, _)| !pack.flows.contains_key(at)).count();
            if pack.size() + grows > MAX_TRANSACTION_ACTIONS {
                packs.push(Pack::default());
            }
            let pack = packs.last_mut().ok_or_else(|| StoreError::Unavailable("no pack".into()))?;
            pack.members.push(index);
            pack.own.extend(own);
            if !counts.is_empty() {
                let net = pack.counts.entry(count_shard).or_default();
                for (level, by) in counts {
                    *net.entry(level).or_default() += by;
                }
            }
            for (at, flow) in flows {
                let net = pack.flows.entry(at).or_default();
                for (attribute, by) in flow {
                    *net.entry(attribute).or_default() += by;
                }
            }
        }
        for pack in packs.into_iter().filter(|pack| !pack.members.is_empty()) {
            let mut actions = pack.own;
            for (count_shard, net) in &pack.counts {
                let mut expr = Expr::default();
                for (level, by) in net.iter().filter(|(_, by)| **by != 0) {
                    expr.add(COUNT[level.index()], n_int(*by));
                }
                if !expr.add.is_empty() {
                    let update = expr.update(self.table(), key(pyramid_pk(*count_shard), COUNTS), None)?;
                    actions.push(TransactWriteItem::builder().update(update).build());
                }
            }
            for ((flow_shard, day), net) in &pack.flows {
                actions.extend(self.flow_delta_on(*flow_shard, *day, net)?);
            }
            if self.transact(actions).await?.is_err() {
                // One at a time, read afresh: as `write_refold`.
                for index in pack.members {
                    outcomes[index] = self.write_refold(&writes[index]).await?;
                }
            } else {
                for index in pack.members {
                    outcomes[index] = WriteOutcome::Written;
                }
            }
        }
        for (index, prepared) in alone {
            outcomes[index] = self.write_prepared(&writes[index], prepared).await?;
        }
        Ok(outcomes)
    }
}
