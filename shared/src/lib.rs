//! The engagement core: where a customer stands on the Engagement Pyramid, why, when that
//! changes, and which nudge to send next.
//!
//! Pure: no I/O, no clock (every function takes `now`), no AWS types. The functions, the store
//! adapters and the one-machine mode build on these types.

pub mod customer;
pub mod decide;
pub mod erasure;
pub mod events;
pub mod evidence;
pub mod flow;
pub mod identity;
pub mod interaction;
pub mod level;
pub mod metrics;
pub mod playbook;
pub mod ports;
pub mod recording;
pub mod refold;
pub mod replay;
pub mod rescoring;
pub mod rules;
pub mod time;
pub mod values;

pub use customer::{ConsentRecord, Consents, CustomerState, ScoredInteraction, Standing};
pub use decide::{decide, decide_unexplained, Decision, Explanation, KindContribution, NextStep, RungEvidence};
pub use evidence::{era_start, Contribution, Evidence, EvidenceDelta};
pub use identity::{Channel, HandleStyle, Identity, IdentityError};
pub use interaction::{parse_submission, validate_interaction, CustomerRef, FieldError, Interaction, ValidationErrors};
pub use level::{Direction, Level, LEVEL_COUNT};
pub use playbook::{
    in_holdout, may_offer, nudge_id, rise_follows, select_nudges, NudgeDecision, NudgeOutcome, NudgeRecord, SuppressReason,
    ATTRIBUTION_DAYS,
};
pub use replay::{level_at, replay, replay_scored, settle_drops, LevelChange, Replay};
pub use rules::{ConsentEffect, KindId, KindRule, LevelRule, Playbook, Rules, RulesError, Step, Trigger, UnknownKinds};
pub use time::{Timestamp, MILLIS_PER_DAY};
pub use values::{CustomerId, Movers, PyramidCounts, RecordOutcome, RecordStatus};
