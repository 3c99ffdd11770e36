//! Bodies: JSON, or form-encoded (Mailchimp) read as a JSON object of strings.

use crate::{BadBody, Delivery};
use serde_json::Value;

/// The body as JSON.
pub(crate) fn parse(delivery: &Delivery) -> Result<Value, BadBody> {
    serde_json::from_slice(delivery.body).map_err(|error| BadBody {
        reason: format!("the body is not valid JSON: {error}"),
    })
}
