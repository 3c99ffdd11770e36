//! A synthetic community for `pyramid demo`: customers over two years on realistic channels,
//! most of them observing or following, some endorsing and contributing, a few who climb to
//! owning and leading, and a few who were active and are now flagging. Deterministic per seed.

use engagement::Timestamp;
use serde_json::{json, Value};

const DAY_MS: i64 = 86_400_000;

const FIRST: [&str; 24] = [
    "maya", "liam", "ana", "noah", "zoe", "omar", "ivy", "leo", "mila", "ravi", "sara", "tom", "yuki", "ines", "kofi", "lea", "arjun",
    "nora", "eli", "hana", "jon", "priya", "sam", "wen",
];
const LAST: [&str; 16] = [
    "garcia", "smith", "kim", "okafor", "rossi", "novak", "silva", "tanaka", "dubois", "khan", "berg", "lopez", "moreau", "patel", "weber",
    "ng",
];

/// A persona: how far up the pyramid this customer goes, and whether they are fading now.
#[derive(Clone, Copy)]
enum Persona {
    Lurker,
    Subscriber,
    Advocate,
    Contributor,
    Owner,
    Leader,
    /// Was contributing a year ago, silent since.
    Fading,
}

fn persona(roll: u32) -> Persona {
    match roll {
        0..=44 => Persona::Lurker,
        45..=69 => Persona::Subscriber,
        70..=81 => Persona::Advocate,
        82..=91 => Persona::Contributor,
        92..=94 => Persona::Owner,
        95..=96 => Persona::Leader,
        _ => Persona::Fading,
    }
}

/// The interactions of `customers` people over the two years before `until`, oldest first per
/// customer. Each is a JSON object as clients send them to `POST /v1/interactions`.
pub fn synthetic(seed: u64, customers: usize, until: Timestamp) -> impl Iterator<Item = Value> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let start = until.millis() - 730 * DAY_MS;
    (0..customers).flat_map(move |n| {
        let name = format!(
            "{} {}",
            capitalize(FIRST[rng.usize(..FIRST.len())]),
            capitalize(LAST[rng.usize(..LAST.len())])
        );
        let email = format!("{}{n}@example.com", name.to_lowercase().replace(' ', "."));
        let social = format!("@{}{n}", name.split(' ').next().unwrap_or("fan").to_lowercase());
        let persona = persona(rng.u32(0..100));
        let joined = start + rng.i64(0..600 * DAY_MS);
        let active_until = match persona {
            Persona::Fading => (joined + 200 * DAY_MS).min(until.millis() - 300 * DAY_MS),
            _ => until.millis() - rng.i64(0..20 * DAY_MS),
        };
        let mut items = Vec::new();
        let mut push = |kind: &str, at: i64, channel: &str, handle: &str, rng: &mut fastrand::Rng| {
            let at = at.clamp(start, until.millis() - 60_000) + rng.i64(0..3_600_000);
            items.push((at, kind.to_string(), channel.to_string(), handle.to_string()));
        };
        let span = (active_until - joined).max(DAY_MS);
        let moments = |count: usize, rng: &mut fastrand::Rng| -> Vec<i64> { (0..count).map(|_| joined + rng.i64(0..span)).collect() };
        for at in moments(rng.usize(2..12), &mut rng) {
            push(
                ["page_viewed", "post_viewed", "email_opened"][rng.usize(..3)],
                at,
                "email",
                &email,
                &mut rng,
            );
        }
        let rank = match persona {
            Persona::Lurker => 0,
            Persona::Subscriber => 1,
            Persona::Advocate => 2,
            Persona::Contributor | Persona::Fading => 3,
            Persona::Owner => 4,
            Persona::Leader => 5,
        };
        if rank >= 1 {
            push("newsletter_subscribed", joined, "email", &email, &mut rng);
            for at in moments(rng.usize(1..4), &mut rng) {
                push("followed", at, "twitter", &social, &mut rng);
            }
        }
        if rank >= 2 {
            for at in moments(rng.usize(1..3), &mut rng) {
                push(
                    ["review_posted", "testimonial_given", "referral_made"][rng.usize(..3)],
                    at,
                    "email",
                    &email,
                    &mut rng,
                );
            }
            for at in moments(rng.usize(1..5), &mut rng) {
                push("content_shared", at, "twitter", &social, &mut rng);
            }
        }
        if rank >= 3 {
            for at in moments(rng.usize(3..8), &mut rng) {
                push(
                    ["event_attended", "forum_answered", "webinar_attended", "purchase_made"][rng.usize(..4)],
                    at,
                    "email",
                    &email,
                    &mut rng,
                );
            }
        }
        if rank >= 4 {
            push(
                ["customer_council_joined", "advisory_board_joined"][rng.usize(..2)],
                active_until - 90 * DAY_MS,
                "email",
                &email,
                &mut rng,
            );
            for at in moments(2, &mut rng) {
                push(
                    "board_meeting_attended",
                    at.max(active_until - 60 * DAY_MS),
                    "email",
                    &email,
                    &mut rng,
                );
            }
        }
        if rank >= 5 {
            push("meetup_organized", active_until - 30 * DAY_MS, "email", &email, &mut rng);
            push("talk_given", active_until - 10 * DAY_MS, "email", &email, &mut rng);
        }
        items.sort();
        let customer_name = name.clone();
        items.into_iter().enumerate().map(move |(i, (at, kind, channel, handle))| {
            let mut customer = json!({"channel": channel, "handle": handle, "name": customer_name});
            if channel != "email" {
                customer["also"] = json!([{"channel": "email", "handle": email}]);
            }
            json!({
                "id": format!("demo-{n}-{i}"),
                "source": if channel == "twitter" { "twitter" } else { "demo" },
                "customer": customer,
                "kind": kind,
                "occurred_at": Timestamp::from_millis(at).to_rfc3339(),
            })
        })
    })
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_community_is_valid_and_varied() {
        let rules = engagement::Rules::default_rules();
        let until = Timestamp::parse_rfc3339("2026-11-25T00:00:00Z").expect("a time");
        let items: Vec<Value> = synthetic(7, 300, until).collect();
        assert!(items.len() > 1_500, "{}", items.len());
        for item in &items {
            engagement::validate_interaction(item, &rules, until).unwrap_or_else(|e| panic!("{item}: {e}"));
        }
        let leaders = items.iter().filter(|i| i["kind"] == "meetup_organized").count();
        assert!(leaders >= 2, "a few climb to leading: {leaders}");
        let again: Vec<Value> = synthetic(7, 300, until).collect();
        assert_eq!(items, again, "deterministic per seed");
    }
}
