//! What the local bus hands its dispatcher: one journaled event for one target.

use crate::routing::Target;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde_json::Value;

/// One event on its way to one target.
pub struct Delivery {
    /// Its line in the journal: marked done once the target took it.
    pub seq: u64,
    pub target: Target,
    pub event: EventBridgeEvent<Value>,
}
