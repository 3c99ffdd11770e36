//! The verification schemes.

use crate::source::Source;
use crate::{Delivery, Rejected};
use engagement::Timestamp;

impl Source {
    /// Checks the delivery's signature with the source's secret (`None` when not connected).
    pub fn verify(&self, delivery: &Delivery, secret: Option<&str>, now: Timestamp) -> Result<(), Rejected> {
        let _ = (delivery, secret, now);
        Err(Rejected {
            header: String::new(),
            reason: "not implemented yet".into(),
        })
    }
}
