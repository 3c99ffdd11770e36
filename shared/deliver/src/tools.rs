//! Each tool's requests.

use crate::{BuildError, DeliveryContext, Destination, Plan, SkipReason};
use engagement::events::DomainEvent;
use md5::{Digest, Md5};

/// Mailchimp's id of a list member: the MD5 of the lower-cased e-mail, in hex.
pub fn mailchimp_subscriber_hash(email: &str) -> String {
    Md5::digest(email.trim().to_lowercase().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn build(_destination: &Destination, _event: &DomainEvent, _context: &DeliveryContext) -> Result<Plan, BuildError> {
    Ok(Plan::Skip {
        reason: SkipReason::Ignored,
    })
}
