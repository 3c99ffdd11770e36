//! Opaque page cursors: a shard number and DynamoDB's LastEvaluatedKey, as URL-safe base64 JSON.
//! (The HTTP API signs them against tampering; here they only need to round-trip.)

use crate::item::Item;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use engagement::ports::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize)]
struct Raw {
    shard: u32,
    #[serde(default)]
    key: BTreeMap<String, (char, String)>,
}

pub struct Position {
    pub shard: u32,
    pub key: Option<Item>,
}

pub fn encode(shard: u32, key: Option<&Item>) -> String {
    let key = key
        .map(|item| {
            item.iter()
                .filter_map(|(name, value)| match value {
                    AttributeValue::S(text) => Some((name.clone(), ('S', text.clone()))),
                    AttributeValue::N(number) => Some((name.clone(), ('N', number.clone()))),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let json = serde_json::to_vec(&Raw { shard, key }).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

pub fn decode(cursor: Option<&str>) -> Result<Position, StoreError> {
    let Some(cursor) = cursor else {
        return Ok(Position { shard: 0, key: None });
    };
    let invalid = || StoreError::InvalidCursor;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid())?;
    let raw: Raw = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let key: Item = raw
        .key
        .into_iter()
        .map(|(name, (kind, value))| {
            (
                name,
                if kind == 'N' {
                    AttributeValue::N(value)
                } else {
                    AttributeValue::S(value)
                },
            )
        })
        .collect();
    Ok(Position {
        shard: raw.shard,
        key: if key.is_empty() { None } else { Some(key) },
    })
}
