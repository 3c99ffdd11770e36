//! `NudgeLedger`: nudge decisions recorded once per trigger, with their step's outcome counters.

use super::requests::*;
use super::DynamoStore;
use crate::item::*;
use crate::keys::*;
use aws_sdk_dynamodb::types::TransactWriteItem;
use engagement::ports::*;
use engagement::{NudgeOutcome, SuppressReason, Timestamp};
use std::collections::HashMap;

impl DynamoStore {
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
            self.put_new(item)?,
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
