//! Matching a verified delivery against the mappings, and emitting interactions.

use crate::source::Source;
use crate::{BadBody, Delivery, Mapped};
use engagement::Timestamp;

impl Source {
    /// Maps a verified delivery to interactions (or ignores it, with the reason).
    pub fn map(&self, delivery: &Delivery, received_at: Timestamp) -> Result<Mapped, BadBody> {
        let _ = received_at;
        let _body = crate::body::parse(delivery)?;
        Ok(Mapped::Ignored {
            reason: "not implemented yet".into(),
            delivery_id: None,
        })
    }
}
