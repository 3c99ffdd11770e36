//! The engine end to end, one test binary (one moto, one dynoxide) for every function: HTTP in
//! through API Gateway v2 payloads, events out through EventBridge (moto) to the functions.

mod agreement;
mod api;
mod failures;
mod ingest;
mod nudges;
mod openapi;
mod story;

use engagement::{in_holdout, Channel, HandleStyle, Identity, Rules};
use engagement_aws::keys::customer_id_for;
use engagement_e2e::SALT;

fn customer_of(email: &str) -> engagement::ports::CustomerId {
    let identity = Identity::new(Channel::parse("email").expect("a channel"), HandleStyle::Email, email).expect("an email");
    customer_id_for(SALT, &identity)
}

/// An email address whose customer is in the playbook's holdout.
pub fn held_out_email(prefix: &str, playbook: &str) -> String {
    let rules = Rules::default_rules();
    let playbook = rules.playbook(playbook).expect("a shipped playbook");
    (0..1000)
        .map(|n| format!("{prefix}{n}@example.com"))
        .find(|email| in_holdout(customer_of(email).as_str(), playbook))
        .expect("one in ten is held out")
}

/// An email address whose customer is in none of the named playbooks' holdouts (the holdout is
/// a deterministic 10 % bucket per customer and playbook), so the story's nudges are sent.
pub fn treated_email(prefix: &str, playbooks: &[&str]) -> String {
    let rules = Rules::default_rules();
    (0..1000)
        .map(|n| format!("{prefix}{n}@example.com"))
        .find(|email| {
            let id = customer_of(email);
            playbooks
                .iter()
                .all(|name| !in_holdout(id.as_str(), rules.playbook(name).expect("a shipped playbook")))
        })
        .expect("one in a thousand is treated")
}
