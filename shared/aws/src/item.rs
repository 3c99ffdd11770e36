//! Converting between stored items and domain values.

use crate::keys::*;
use aws_sdk_dynamodb::types::AttributeValue;
use engagement::customer::{ConsentRecord, Consents, CustomerState, Standing};
use engagement::ports::{CustomerId, CustomerSummary, StoreError, StoredCustomer};
use engagement::rules::OTHER_KIND;
use engagement::{Channel, Direction, Evidence, Identity, KindId, Level, Rules, Timestamp};
use std::collections::HashMap;

pub type Item = HashMap<String, AttributeValue>;

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n_int(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Numbers go out in exponent notation with the shortest digits that read back the same f64.
pub fn n_float(value: f64) -> AttributeValue {
    AttributeValue::N(if value == 0.0 { "0".to_string() } else { format!("{value:e}") })
}

pub fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub fn get_f64(item: &Item, name: &str) -> Option<f64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<f64>().ok())
}

pub fn get_i64(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse::<f64>().ok())
        .map(|f| f as i64)
}

pub fn get_ts(item: &Item, name: &str) -> Option<Timestamp> {
    get_i64(item, name).map(Timestamp)
}

fn corrupt(id: &str, what: &str) -> StoreError {
    StoreError::Corrupt(format!("customer {id}: {what}"))
}

/// Consent is kept as two number sets per channel — the instants of grants and of withdrawals —
/// because set union (`ADD`) is atomic and commutative: concurrent and out-of-order consent
/// interactions all land, and the latest decision wins when read.
pub fn consent_grant_attr(channel: &Channel) -> String {
    format!("cg_{channel}")
}

pub fn consent_withdraw_attr(channel: &Channel) -> String {
    format!("cw_{channel}")
}

fn number_set_max(value: &AttributeValue) -> Option<i64> {
    value
        .as_ns()
        .ok()?
        .iter()
        .filter_map(|n| n.parse::<f64>().ok())
        .map(|f| f as i64)
        .max()
}

pub fn identity_value(identity: &Identity) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("channel".to_string(), s(identity.channel.as_str())),
        ("handle".to_string(), s(identity.handle.clone())),
    ]))
}

fn identity_of(value: &AttributeValue) -> Option<Identity> {
    let map = value.as_m().ok()?;
    let channel = Channel::parse(map.get("channel")?.as_s().ok()?).ok()?;
    let handle = map.get("handle")?.as_s().ok()?.clone();
    Some(Identity { channel, handle })
}

fn standing_of(item: &Item) -> Option<Standing> {
    Some(Standing {
        level: get_s(item, "level")?.parse::<Level>().ok()?,
        since: get_ts(item, "since")?,
        drops_at: get_ts(item, "drops_at"),
        at_risk_at: get_ts(item, "at_risk_at"),
    })
}

/// Reads a customer item (a full item, or one projected with all attributes).
pub fn customer_from_item(rules: &Rules, item: &Item) -> Result<StoredCustomer, StoreError> {
    let id = get_s(item, "customer_id")
        .ok_or_else(|| corrupt("?", "no customer_id"))?
        .to_string();
    let mut evidence = Evidence::empty(rules);
    evidence.epoch = Timestamp(get_i64(item, "epoch").unwrap_or(0));
    for (slot, name) in evidence.levels.iter_mut().zip(EVIDENCE) {
        *slot = get_f64(item, name).unwrap_or(0.0);
    }
    let mut consent = Consents::default();
    for (name, value) in item {
        if let Some(kind) = name.strip_prefix("ke_") {
            let index = kind_index(rules, kind);
            evidence.kinds[index] += get_f64(item, name).unwrap_or(0.0);
        } else if let Some(kind) = name.strip_prefix("kc_") {
            let index = kind_index(rules, kind);
            evidence.kind_counts[index] += get_i64(item, name).unwrap_or(0).max(0) as u64;
        } else if let Some(channel) = name.strip_prefix("cg_") {
            if let (Ok(channel), Some(at)) = (Channel::parse(channel), number_set_max(value)) {
                consent.record(&channel, true, Timestamp(at));
            }
        } else if let Some(channel) = name.strip_prefix("cw_") {
            if let (Ok(channel), Some(at)) = (Channel::parse(channel), number_set_max(value)) {
                consent.record(&channel, false, Timestamp(at));
            }
        }
    }
    evidence.last_interaction_at = get_ts(item, "last_at");
    if evidence.last_interaction_at.is_none() && evidence.kind_counts.iter().any(|c| *c > 0) {
        return Err(corrupt(&id, "evidence without a last interaction"));
    }
    let identities = item
        .get("identities")
        .and_then(|v| v.as_l().ok())
        .map(|list| list.iter().filter_map(identity_of).collect())
        .unwrap_or_default();
    let merged_ids = item
        .get("merged_ids")
        .and_then(|v| v.as_l().ok())
        .map(|list| list.iter().filter_map(|v| v.as_s().ok()).map(|s| CustomerId(s.clone())).collect())
        .unwrap_or_default();
    Ok(StoredCustomer {
        id: CustomerId(id),
        name: get_s(item, "name").map(str::to_string),
        identities,
        state: CustomerState {
            evidence,
            consent,
            standing: standing_of(item),
        },
        version: get_i64(item, "version").unwrap_or(0).max(0) as u64,
        created_at: get_ts(item, "created_at").unwrap_or_default(),
        at_risk_notified_for: get_ts(item, "risk_notified"),
        due_at: get_ts(item, DUE_AT),
        merged_ids,
        outbox: outbox_of(item),
        erasing: item.contains_key("erasing"),
        rules_fingerprint: get_s(item, RULES_FINGERPRINT).map(str::to_string),
    })
}

/// The outbox map: event id → `{detail_type, detail}`. Unreadable entries are skipped (and
/// logged): a malformed event must not block the customer.
fn outbox_of(item: &Item) -> Vec<(String, engagement::events::DomainEvent)> {
    let Some(map) = item.get("outbox").and_then(|v| v.as_m().ok()) else {
        return Vec::new();
    };
    let mut events: Vec<(String, engagement::events::DomainEvent)> = map
        .iter()
        .filter_map(|(id, value)| {
            let entry = value.as_m().ok()?;
            let detail_type = entry.get("detail_type")?.as_s().ok()?;
            let detail = serde_json::from_str(entry.get("detail")?.as_s().ok()?).ok()?;
            match engagement::events::DomainEvent::from_parts(detail_type, detail) {
                Ok(event) => Some((id.clone(), event)),
                Err(error) => {
                    tracing::warn!(event_id = %id, %error, "skipping an unreadable outbox entry");
                    None
                }
            }
        })
        .collect();
    events.sort_by(|a, b| a.0.cmp(&b.0));
    events
}

pub fn summary_from_item(item: &Item) -> Result<CustomerSummary, StoreError> {
    let id = get_s(item, "customer_id").ok_or_else(|| corrupt("?", "no customer_id"))?;
    Ok(CustomerSummary {
        id: CustomerId(id.to_string()),
        name: get_s(item, "name").map(str::to_string),
        standing: standing_of(item).ok_or_else(|| corrupt(id, "no standing"))?,
        moved: match get_s(item, MOVED) {
            Some("up") => Some(Direction::Up),
            Some("down") => Some(Direction::Down),
            _ => None,
        },
    })
}

/// Kinds no longer in the rules count as "other".
fn kind_index(rules: &Rules, kind: &str) -> usize {
    if kind == OTHER_KIND {
        return usize::from(rules.other_kind().0);
    }
    usize::from(rules.resolve_kind(kind).unwrap_or_else(|| rules.other_kind()).0)
}

/// The attributes holding a customer's whole evidence, as absolute values (for creation and for
/// the rare rewrite when the epoch moves).
pub fn evidence_attributes(rules: &Rules, evidence: &Evidence) -> Vec<(String, AttributeValue)> {
    let mut attributes = vec![("epoch".to_string(), n_int(evidence.epoch.millis()))];
    for (name, value) in EVIDENCE.iter().zip(evidence.levels) {
        attributes.push((name.to_string(), n_float(value)));
    }
    for (index, (&sum, &count)) in evidence.kinds.iter().zip(&evidence.kind_counts).enumerate() {
        if count == 0 && sum == 0.0 {
            continue;
        }
        let name = rules.kind_name(KindId(index as u16));
        attributes.push((kind_evidence_attr(name), n_float(sum)));
        attributes.push((kind_count_attr(name), n_int(count as i64)));
    }
    if let Some(last) = evidence.last_interaction_at {
        attributes.push(("last_at".to_string(), n_int(last.millis())));
    }
    attributes
}

/// The consent attributes of a state (one element per number set).
pub fn consent_attributes(consent: &Consents) -> Vec<(String, AttributeValue)> {
    consent
        .0
        .iter()
        .map(|(channel, ConsentRecord { granted, at })| {
            let name = if *granted {
                consent_grant_attr(channel)
            } else {
                consent_withdraw_attr(channel)
            };
            (name, AttributeValue::Ns(vec![at.millis().to_string()]))
        })
        .collect()
}

pub fn standing_attributes(id: &CustomerId, standing: &Standing) -> Vec<(String, AttributeValue)> {
    let mut attributes = vec![
        ("level".to_string(), s(standing.level.name())),
        ("since".to_string(), n_int(standing.since.millis())),
        (LEVEL_SHARD.to_string(), s(level_shard(standing.level, id))),
        (LEVEL_SINCE.to_string(), n_int(standing.since.millis())),
    ];
    if let Some(drops_at) = standing.drops_at {
        attributes.push(("drops_at".to_string(), n_int(drops_at.millis())));
    }
    if let Some(at_risk_at) = standing.at_risk_at {
        attributes.push(("at_risk_at".to_string(), n_int(at_risk_at.millis())));
    }
    attributes
}
