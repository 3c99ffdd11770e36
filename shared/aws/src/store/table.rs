//! The table and its indexes, as the one-machine mode and the tests create it.

use super::requests::*;
use super::DynamoStore;
use crate::errors::store_error;
use crate::keys::*;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType, ScalarAttributeType,
};
use engagement::ports::*;

impl DynamoStore {
    /// Whether the table exists (the one-machine mode creates it on first start).
    pub async fn table_exists(&self) -> Result<bool, StoreError> {
        match self.client.describe_table().table_name(self.table()).send().await {
            Ok(_) => Ok(true),
            Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(false),
            Err(error) => Err(store_error("DescribeTable", error)),
        }
    }

    /// Creates the table with its indexes (tests and the one-machine mode; the deployed stack
    /// declares the same in `infra/template.yaml`). An existing table is left as it is.
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
}
