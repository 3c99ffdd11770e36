//! The store's ports (`InteractionLog`, `CustomerReads`, `Standings`, `NudgeLedger`, `Insights`,
//! `CustomerAdmin`) on one DynamoDB table (see ARCHITECTURE.md, "Data model").
//!
//! One file per family of operations, each holding its port's `impl … for DynamoStore`;
//! `requests` holds what they share.

mod admin;
mod bulk;
mod ingest;
mod nudges;
mod reads;
mod requests;
mod standing;
mod table;

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
}
