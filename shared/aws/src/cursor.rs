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
    let key = key.map(to_raw_key).unwrap_or_default();
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
    Ok(Position {
        shard: raw.shard,
        key: from_raw_key(raw.key),
    })
}

/// Where a merged listing stands in each shard: the key to start after (none: from the start).
/// Shards left out are exhausted.
#[derive(Serialize, Deserialize)]
struct RawMerged {
    merged: BTreeMap<u32, BTreeMap<String, (char, String)>>,
}

fn to_raw_key(item: &Item) -> BTreeMap<String, (char, String)> {
    item.iter()
        .filter_map(|(name, value)| match value {
            AttributeValue::S(text) => Some((name.clone(), ('S', text.clone()))),
            AttributeValue::N(number) => Some((name.clone(), ('N', number.clone()))),
            _ => None,
        })
        .collect()
}

fn from_raw_key(raw: BTreeMap<String, (char, String)>) -> Option<Item> {
    let key: Item = raw
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
    (!key.is_empty()).then_some(key)
}

pub fn encode_merged(positions: &BTreeMap<u32, Option<Item>>) -> String {
    let merged = positions
        .iter()
        .map(|(shard, key)| (*shard, key.as_ref().map(to_raw_key).unwrap_or_default()))
        .collect();
    let json = serde_json::to_vec(&RawMerged { merged }).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// The positions of a merged listing; without a cursor, every shard from its start.
pub fn decode_merged(cursor: Option<&str>, shards: u32) -> Result<BTreeMap<u32, Option<Item>>, StoreError> {
    let Some(cursor) = cursor else {
        return Ok((0..shards).map(|shard| (shard, None)).collect());
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::InvalidCursor)?;
    let raw: RawMerged = serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidCursor)?;
    if raw.merged.keys().any(|shard| *shard >= shards) {
        return Err(StoreError::InvalidCursor);
    }
    Ok(raw.merged.into_iter().map(|(shard, key)| (shard, from_raw_key(key))).collect())
}
