//! The store's ports (`InteractionLog`, `CustomerReads`, `Standings`, `NudgeLedger`, `Insights`,
//! `CustomerAdmin`, `Refolds`) on one DynamoDB table (see ARCHITECTURE.md, "Data model").
//!
//! One file per family of operations, each holding its port's `impl … for DynamoStore`;
//! `requests` holds what they share.

mod admin;
mod bulk;
mod ingest;
mod nudges;
mod reads;
mod refold;
mod requests;
mod standing;
mod table;
mod turns;

pub use bulk::{BulkCounters, BulkCustomer};

use aws_sdk_dynamodb::Client;
use engagement::Rules;
use std::sync::Arc;

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
    /// Ingest writes several customers' chunks in one transaction (`packing_customers`).
    packing: bool,
    /// A one-segment scan returns items in key order (`scanning_in_key_order`).
    key_ordered_scans: bool,
    /// Ingest requests of this process take turns at an identity (`taking_turns`).
    turns: Option<Arc<turns::Turns>>,
}

impl DynamoStore {
    pub fn new(client: Client, rules: Arc<Rules>, config: StoreConfig) -> DynamoStore {
        DynamoStore {
            client,
            rules,
            config: Arc::new(config),
            packing: false,
            key_ordered_scans: false,
            turns: None,
        }
    }

    /// Ingest writes the chunks of several customers in one transaction (up to 100 actions, no
    /// item twice), instead of one transaction per customer: each customer's writes stay atomic
    /// (the pack is all or nothing), and a pack cancelled by one customer's condition is packed
    /// again in the next round without that customer, whose writes then go alone. Newcomers
    /// sharing a counter shard share one update of it, with the sums. For the embedded store, where each transaction
    /// is a SQLite commit; DynamoDB bills per item either way, and the deployed stack keeps one
    /// transaction per customer (so its request counts are unchanged).
    pub fn packing_customers(mut self) -> DynamoStore {
        self.packing = true;
        self
    }

    /// Ingest requests of this process (and its clones of the store) that name one identity
    /// take turns at it instead of racing (`turns.rs`): a lost race cancels a whole pack. For a
    /// store that one process serves with many requests at once (the embedded store); a Lambda
    /// instance runs one request at a time, where turns would change nothing.
    pub fn taking_turns(mut self) -> DynamoStore {
        self.turns = Some(Arc::default());
        self
    }

    /// The store answers a scan without segments in key order (`pk`, then `sk`), as the embedded
    /// store (dynoxide, SQLite's primary key) does and DynamoDB does not: the refold's scan of
    /// customers then reads the `CUSTOMER#` items only, instead of the whole table.
    pub fn scanning_in_key_order(mut self) -> DynamoStore {
        self.key_ordered_scans = true;
        self
    }

    /// The same table under other rules (tests and tools: the rules just deployed).
    pub fn with_rules(&self, rules: Arc<Rules>) -> DynamoStore {
        DynamoStore {
            client: self.client.clone(),
            rules,
            config: Arc::clone(&self.config),
            packing: self.packing,
            key_ordered_scans: self.key_ordered_scans,
            turns: self.turns.clone(),
        }
    }

    pub fn rules(&self) -> &Arc<Rules> {
        &self.rules
    }

    fn table(&self) -> &str {
        &self.config.table
    }
}
