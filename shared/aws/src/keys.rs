//! The single table's keys. Every item type and why its keys look so: see ARCHITECTURE.md.

use engagement::ports::CustomerId;
use engagement::{Identity, Level, Timestamp};
use sha2::{Digest, Sha256};

pub const PK: &str = "pk";
pub const SK: &str = "sk";

/// GSI over customers with a pending rescore or a foreseen transition (sparse: only those).
pub const DUE_INDEX: &str = "due";
pub const DUE_SHARD: &str = "due_shard";
pub const DUE_AT: &str = "due_at";
/// GSI over customers by level, newest `since` first.
pub const LEVEL_INDEX: &str = "level";
pub const LEVEL_SHARD: &str = "level_shard";
pub const LEVEL_SINCE: &str = "level_since";
/// `Rules::fingerprint` of the rules a customer's evidence was folded under.
pub const RULES_FINGERPRINT: &str = "rules_fp";
/// Which way the latest level change went (`up` / `down`).
pub const MOVED: &str = "moved";
/// What the level index holds of a customer (enough for a listing row).
pub const LEVEL_PROJECTION: [&str; 7] = ["customer_id", "name", "level", "since", "drops_at", "at_risk_at", MOVED];
/// GSI over interactions by customer, newest first.
pub const HISTORY_INDEX: &str = "history";
pub const HISTORY_PK: &str = "history_pk";
pub const HISTORY_SK: &str = "history_sk";

/// Write sharding: at 1 000 interactions/s every ingest rewrites the due key; 16 shards keep
/// each index partition far below its 1 000 writes/s.
pub const DUE_SHARDS: u32 = 16;
pub const LEVEL_SHARDS: u32 = 16;
/// Every level change adds to a pyramid counter and to the day's flow counter.
pub const PYRAMID_SHARDS: u32 = 8;
pub const FLOW_SHARDS: u32 = 4;
/// Every nudge decision adds to its step's outcome counter.
pub const OUTCOME_SHARDS: u32 = 4;

pub const PROFILE: &str = "PROFILE";
pub const COUNTS: &str = "COUNTS";

fn digest_hex(parts: &[&[u8]], chars: usize) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
        hasher.update([0u8]);
    }
    hasher
        .finalize()
        .iter()
        .flat_map(|b| [b >> 4, b & 15])
        .take(chars)
        .map(|n| char::from_digit(u32::from(n), 16).unwrap_or('0'))
        .collect()
}

/// Stable shard of a customer in `0..shards`.
pub fn shard(id: &CustomerId, shards: u32) -> u32 {
    let digest = Sha256::digest(id.as_str().as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % shards
}

/// What every customer's partition key starts with.
pub const CUSTOMER_PREFIX: &str = "CUSTOMER#";

pub fn customer_pk(id: &CustomerId) -> String {
    format!("{CUSTOMER_PREFIX}{id}")
}

/// Identities are keyed by a salted hash, so that an erased identity leaves only the hash
/// (its tombstone) and no key ever holds a handle in clear.
pub fn identity_pk(salt: &str, identity: &Identity) -> String {
    format!(
        "IDENTITY#{}",
        digest_hex(
            &[salt.as_bytes(), identity.channel.as_str().as_bytes(), identity.handle.as_bytes()],
            40
        )
    )
}

pub fn interaction_pk(id: &str) -> String {
    format!("INTERACTION#{id}")
}

/// A new customer's id derives from its first identity: two concurrent first interactions of
/// one person compute the same id, and one creation wins.
pub fn customer_id_for(salt: &str, identity: &Identity) -> CustomerId {
    CustomerId(format!(
        "cus_{}",
        digest_hex(
            &[
                b"customer",
                salt.as_bytes(),
                identity.channel.as_str().as_bytes(),
                identity.handle.as_bytes()
            ],
            24
        )
    ))
}

pub fn nudge_sk(nudge_id: &str) -> String {
    format!("NUDGE#{nudge_id}")
}

pub fn change_sk(at: Timestamp, to: Level) -> String {
    format!("CHANGE#{:015}#{}", at.millis().max(0), to)
}

pub fn due_shard(id: &CustomerId) -> String {
    format!("DUE#{}", shard(id, DUE_SHARDS))
}

pub fn level_shard(level: Level, id: &CustomerId) -> String {
    format!("LEVEL#{level}#{}", shard(id, LEVEL_SHARDS))
}

pub fn pyramid_pk(shard: u32) -> String {
    format!("PYRAMID#{shard}")
}

/// The flow is counted per UTC day in a few shard partitions, so a year of it is one query per
/// shard (`sk` between two days).
pub fn flow_pk(shard: u32) -> String {
    format!("FLOW#{shard}")
}

pub fn flow_sk(day: engagement::flow::Day) -> String {
    format!("DAY#{:07}", day.max(0))
}

/// The day whose flow counter counts a change at `at`. The key holds no day before 1970, so
/// earlier changes count on day 0: every writer keys its sums by this day, never by `day_of`,
/// or two early days would be two updates of one item (which a transaction refuses) or two
/// bulk items of one key (the second overwriting the first).
pub fn flow_day(at: Timestamp) -> engagement::flow::Day {
    engagement::flow::day_of(at).max(0)
}

pub fn outcomes_pk(shard: u32) -> String {
    format!("OUTCOMES#{shard}")
}

pub fn outcomes_sk(playbook: &str, step: u32) -> String {
    format!("STEP#{playbook}#{step:03}")
}

/// Attribute names of the per-level evidence sums.
pub const EVIDENCE: [&str; 6] = [
    "ev_observing",
    "ev_following",
    "ev_endorsing",
    "ev_contributing",
    "ev_owning",
    "ev_leading",
];
/// Attribute names of the pyramid counters.
pub const COUNT: [&str; 6] = [
    "n_observing",
    "n_following",
    "n_endorsing",
    "n_contributing",
    "n_owning",
    "n_leading",
];
/// Attribute names of the flow counters.
pub const JOINED: &str = "joined";

pub fn moved_attribute(from: Level, to: Level) -> String {
    format!("m_{from}_{to}")
}

pub fn left_attribute(level: Level) -> String {
    format!("left_{level}")
}

/// Per-kind evidence and count attributes: `ke_<kind>`, `kc_<kind>`.
pub fn kind_evidence_attr(kind: &str) -> String {
    format!("ke_{kind}")
}

pub fn kind_count_attr(kind: &str) -> String {
    format!("kc_{kind}")
}
