//! A synthetic community whose levels come from known rules: the tests' and the bench's ground
//! truth. Seeded, so a failure reproduces.

use engagement::{Channel, CustomerRef, Identity, Interaction, Level, Rules, Timestamp, MILLIS_PER_DAY};
use std::sync::Arc;

/// One synthetic customer: an id, a history, and when it is looked at.
pub struct Member {
    pub id: String,
    pub history: Arc<Vec<Interaction>>,
    pub as_of: Timestamp,
}

/// Kinds of the shipped rules per rung, the way people do them: the cheap ones often.
const KINDS: [&[&str]; 6] = [
    &["page_viewed", "email_opened", "email_clicked"],
    &["followed", "post_liked"],
    &["review_posted", "content_shared", "referral_made"],
    &["forum_answered", "event_attended", "forum_posted", "webinar_attended"],
    &["board_meeting_attended", "advisory_board_joined", "customer_council_joined"],
    &["talk_given", "meetup_organized", "initiative_led"],
];

/// `customers` members, each with about `interactions` interactions over two years before `end`,
/// engaged up to a rung drawn per member, some lapsed long ago, some recently active.
pub fn community(seed: u64, customers: usize, interactions: usize, end: Timestamp) -> Vec<Member> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let email = Channel::parse("email").unwrap_or_else(|_| unreachable!("a valid channel"));
    (0..customers)
        .map(|n| {
            let id = format!("cus_syn{n:06}");
            let identity = Identity {
                channel: email.clone(),
                handle: format!("member{n}@example.com"),
            };
            let customer = CustomerRef {
                identity,
                also: Vec::new(),
                name: None,
            };
            // How high they engage, and how long ago.
            let top = rng.usize(0..6);
            let span_days = 30 + rng.i64(0..700);
            let quiet_days = if rng.bool() { 0 } else { rng.i64(0..400) };
            let as_of = end.minus_millis(rng.i64(0..120) * MILLIS_PER_DAY);
            let last = as_of.minus_millis(quiet_days * MILLIS_PER_DAY);
            let mut history = Vec::with_capacity(interactions);
            let push = |kind: &str, at: Timestamp, history: &mut Vec<Interaction>| {
                history.push(Interaction {
                    id: format!("{id}-{}", history.len()),
                    source: "synthetic".into(),
                    customer: customer.clone(),
                    kind: kind.to_string(),
                    occurred_at: at,
                    properties: None,
                    weight: None,
                });
            };
            let when = |rng: &mut fastrand::Rng| last.minus_millis(rng.i64(0..span_days * MILLIS_PER_DAY));
            if top >= 1 && rng.f64() < 0.9 {
                let at = when(&mut rng);
                push("newsletter_subscribed", at, &mut history);
            }
            // Most interactions are looks; the rest on the rungs up to `top`.
            let engaged = if top == 0 {
                0
            } else {
                ((interactions as f64 * 0.3 * rng.f64()).round() as usize).max(1)
            };
            for _ in 0..engaged {
                // Half at their top rung, the rest anywhere below it.
                let rung = if rng.bool() { top } else { rng.usize(1..=top) };
                let kinds = KINDS[rung];
                let at = when(&mut rng);
                push(kinds[rng.usize(..kinds.len())], at, &mut history);
            }
            while history.len() < interactions {
                let at = when(&mut rng);
                push(KINDS[0][rng.usize(..KINDS[0].len())], at, &mut history);
            }
            Member {
                id,
                history: Arc::new(history),
                as_of,
            }
        })
        .collect()
}

/// Where each member stands under `rules`, by replay.
pub fn true_levels(rules: &Rules, members: &[Member]) -> Vec<Level> {
    members
        .iter()
        .map(|m| engagement::replay(rules, &m.history, m.as_of).decision.level)
        .collect()
}
