//! Who an erasure was about, as the local logs know them: what the scrub of `nudges.jsonl`, the
//! dead letters and the outbox looks for.

use engagement::ports::StoredCustomer;

/// What identifies an erased person in the local logs: their customer ids (merged-away ones
/// included) and their handles. Taken before the erasure, which leaves neither in the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErasedPerson {
    pub customer_ids: Vec<String>,
    pub handles: Vec<String>,
}

impl ErasedPerson {
    pub fn of(customer: &StoredCustomer) -> ErasedPerson {
        let mut customer_ids = vec![customer.id.to_string()];
        customer_ids.extend(customer.merged_ids.iter().map(ToString::to_string));
        ErasedPerson {
            customer_ids,
            handles: customer.identities.iter().map(|identity| identity.handle.clone()).collect(),
        }
    }

    /// Whether a nudge (its `customer_id` and `handle`) is about this person.
    pub fn owns(&self, customer_id: Option<&str>, handle: Option<&str>) -> bool {
        customer_id.is_some_and(|id| self.customer_ids.iter().any(|c| c == id))
            || handle.is_some_and(|h| self.handles.iter().any(|mine| mine == h))
    }

    /// Whether `text` mentions this person anywhere (for lines too damaged to parse).
    pub fn mentioned_in(&self, text: &str) -> bool {
        self.customer_ids
            .iter()
            .chain(&self.handles)
            .any(|needle| !needle.is_empty() && text.contains(needle.as_str()))
    }
}
