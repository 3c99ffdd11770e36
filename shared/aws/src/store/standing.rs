//! `Standings`: level decisions written conditionally, outboxes cleared, the due customers.

use super::reads::PartitionQuery;
use super::requests::*;
use super::DynamoStore;
use crate::item::*;
use crate::keys::*;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use engagement::flow::FlowEntry;
use engagement::ports::*;
use engagement::{Direction, LevelChange, Timestamp};

impl DynamoStore {
    /// The profile's update for a standing write, conditional on the version it was decided from.
    fn standing_update(&self, write: &StandingWrite) -> Result<Update, StoreError> {
        let id = &write.customer_id;
        let mut expr = Expr::default();
        set_standing(&mut expr, id, &write.standing, write.at_risk_notified_for);
        set_due(&mut expr, id, write.due_at);
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
        expr.update(self.table(), profile_key(id), Some(&condition))
    }

    /// A level change: recorded in the customer's history and in the day's flow.
    fn change_actions(&self, id: &CustomerId, change: &LevelChange) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut actions = Vec::new();
        let item = super::bulk::change_item(id, change);
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
        Ok(actions)
    }
}

impl Standings for DynamoStore {
    async fn write_standing(&self, write: &StandingWrite) -> Result<WriteOutcome, StoreError> {
        let id = &write.customer_id;
        let update = self.standing_update(write)?;
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
            actions.extend(self.change_actions(id, change)?);
        }
        self.transact_versioned(actions, "write_standing", || format!("level of {id}"))
            .await
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
        set_due(&mut expr, id, due_at);
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
