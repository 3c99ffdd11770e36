//! The table exists twice: `DynamoStore::create_table` (tests, the one-machine mode) and
//! `infra/template.yaml` (AWS). These tests fail when the two differ in keys, attribute
//! definitions or indexes (their keys and projections, non-key attributes included): the table
//! is created on dynoxide, described, and compared with the template's `Properties`.

use aws_sdk_dynamodb::types::{Projection, TableDescription};
use engagement::Rules;
use engagement_aws::client::local_dynamodb;
use engagement_aws::{DynamoStore, StoreConfig};
use engagement_testkit::{dynoxide_endpoint, unique_name};
use serde_norway::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const TEMPLATE: &str = include_str!("../../../infra/template.yaml");

/// What both definitions must agree on.
#[derive(Debug, PartialEq)]
struct TableShape {
    /// Attribute name → type (`S`, `N`, `B`).
    attributes: BTreeMap<String, String>,
    /// (attribute, `HASH`/`RANGE`), in order.
    keys: Vec<(String, String)>,
    indexes: BTreeMap<String, IndexShape>,
}

#[derive(Debug, PartialEq)]
struct IndexShape {
    keys: Vec<(String, String)>,
    projection: String,
    non_key_attributes: BTreeSet<String>,
}

fn text(value: &Yaml, field: &str) -> String {
    value
        .get(field)
        .and_then(Yaml::as_str)
        .unwrap_or_else(|| panic!("{field} is not text in {value:?}"))
        .to_string()
}

fn yaml_keys(schema: &Yaml) -> Vec<(String, String)> {
    schema
        .as_sequence()
        .expect("a KeySchema list")
        .iter()
        .map(|key| (text(key, "AttributeName"), text(key, "KeyType")))
        .collect()
}

/// The table of a SAM template (its one `AWS::DynamoDB::Table`).
fn template_table(template: &str) -> TableShape {
    let template: Yaml = serde_norway::from_str(template).expect("the template is YAML");
    let resources = template["Resources"].as_mapping().expect("Resources");
    let tables: Vec<&Yaml> = resources
        .values()
        .filter(|resource| resource.get("Type").and_then(Yaml::as_str) == Some("AWS::DynamoDB::Table"))
        .collect();
    assert_eq!(tables.len(), 1, "the template declares one table");
    let properties = &tables[0]["Properties"];
    let attributes = properties["AttributeDefinitions"]
        .as_sequence()
        .expect("AttributeDefinitions")
        .iter()
        .map(|attribute| (text(attribute, "AttributeName"), text(attribute, "AttributeType")))
        .collect();
    let indexes = properties["GlobalSecondaryIndexes"]
        .as_sequence()
        .expect("GlobalSecondaryIndexes")
        .iter()
        .map(|index| {
            let projection = &index["Projection"];
            let non_key_attributes = projection
                .get("NonKeyAttributes")
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
                .map(|name| name.as_str().expect("an attribute name").to_string())
                .collect();
            let shape = IndexShape {
                keys: yaml_keys(&index["KeySchema"]),
                projection: text(projection, "ProjectionType"),
                non_key_attributes,
            };
            (text(index, "IndexName"), shape)
        })
        .collect();
    TableShape {
        attributes,
        keys: yaml_keys(&properties["KeySchema"]),
        indexes,
    }
}

fn described_keys(schema: &[aws_sdk_dynamodb::types::KeySchemaElement]) -> Vec<(String, String)> {
    schema
        .iter()
        .map(|key| (key.attribute_name().to_string(), key.key_type().as_str().to_string()))
        .collect()
}

fn described_projection(projection: Option<&Projection>) -> (String, BTreeSet<String>) {
    let projection = projection.expect("a projection");
    let kind = projection.projection_type().expect("a projection type").as_str().to_string();
    (kind, projection.non_key_attributes().iter().cloned().collect())
}

/// The table as DynamoDB describes it.
fn described_table(table: &TableDescription) -> TableShape {
    TableShape {
        attributes: table
            .attribute_definitions()
            .iter()
            .map(|a| (a.attribute_name().to_string(), a.attribute_type().as_str().to_string()))
            .collect(),
        keys: described_keys(table.key_schema()),
        indexes: table
            .global_secondary_indexes()
            .iter()
            .map(|index| {
                let (projection, non_key_attributes) = described_projection(index.projection());
                let shape = IndexShape {
                    keys: described_keys(index.key_schema()),
                    projection,
                    non_key_attributes,
                };
                (index.index_name().expect("an index name").to_string(), shape)
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_table_makes_the_table_the_template_declares() {
    let client = local_dynamodb(dynoxide_endpoint(), None);
    let table = unique_name("table");
    let store = DynamoStore::new(
        client.clone(),
        Arc::new(Rules::default_rules()),
        StoreConfig {
            table: table.clone(),
            salt: "table-salt".into(),
            omit_request_tokens: true,
        },
    );
    store.create_table().await.expect("a table");
    let described = client.describe_table().table_name(&table).send().await.expect("described");
    let created = described_table(described.table().expect("a table description"));
    assert_eq!(created, template_table(TEMPLATE), "create_table and infra/template.yaml differ");
}

#[test]
fn a_difference_in_the_template_is_seen() {
    let shipped = template_table(TEMPLATE);
    // A user edits the template as they would: one attribute fewer in the level index.
    let edited = TEMPLATE.replacen("drops_at, at_risk_at, moved]", "drops_at, at_risk_at]", 1);
    assert_ne!(edited, TEMPLATE, "the template lists the level index's attributes as expected");
    assert_ne!(template_table(&edited), shipped);
    let edited = TEMPLATE.replacen(
        "{AttributeName: due_at, AttributeType: N}",
        "{AttributeName: due_at, AttributeType: S}",
        1,
    );
    assert_ne!(template_table(&edited), shipped);
}
