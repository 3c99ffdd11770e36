//! Value types the core, the ports and the events share: ids, what became of a recorded
//! interaction, the pyramid's counts. They depend on nothing but the level, so no module that
//! uses them needs the ports.

use crate::level::{Level, LEVEL_COUNT};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A customer's id, assigned by the engine (`cus_…`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomerId(pub String);

impl CustomerId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What became of one interaction of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    /// Stored and folded into the customer's evidence, exactly once.
    Recorded,
    /// Already recorded with the same content: nothing changed.
    Duplicate,
    /// Already recorded with other content under the same id: nothing changed.
    Conflict,
    /// The identity was erased: accepted, not stored.
    Erased,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordOutcome {
    pub id: String,
    pub status: RecordStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<CustomerId>,
}

/// Customers per level, maintained with every level change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PyramidCounts(pub [u64; LEVEL_COUNT]);

impl PyramidCounts {
    pub fn at(&self, level: Level) -> u64 {
        self.0[level.index()]
    }
}

/// Level changes per direction and level, over a period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movers {
    /// Customers who rose *to* each level.
    pub up: [u64; LEVEL_COUNT],
    /// Customers who dropped *from* each level.
    pub down: [u64; LEVEL_COUNT],
}
