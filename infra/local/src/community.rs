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
        let member = Member::draw(&mut rng, n, start, until.millis());
        let mut draws = Draws {
            rng: &mut rng,
            start,
            until: until.millis(),
            joined: member.joined,
            span: (member.active_until - member.joined).max(DAY_MS),
            items: Vec::new(),
        };
        draws.interactions_of(&member);
        let mut items = draws.items;
        items.sort();
        items
            .into_iter()
            .enumerate()
            .map(move |(i, (at, kind, channel, handle))| member.submission(i, at, kind, channel, handle))
    })
}

/// One synthetic customer: who they are and when they were active.
struct Member {
    n: usize,
    name: String,
    email: String,
    social: String,
    persona: Persona,
    joined: i64,
    active_until: i64,
}

impl Member {
    fn draw(rng: &mut fastrand::Rng, n: usize, start: i64, until: i64) -> Member {
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
            Persona::Fading => (joined + 200 * DAY_MS).min(until - 300 * DAY_MS),
            _ => until - rng.i64(0..20 * DAY_MS),
        };
        Member {
            n,
            name,
            email,
            social,
            persona,
            joined,
            active_until,
        }
    }

    /// How far up the pyramid the persona climbs (0 observing … 5 leading).
    fn rank(&self) -> u8 {
        match self.persona {
            Persona::Lurker => 0,
            Persona::Subscriber => 1,
            Persona::Advocate => 2,
            Persona::Contributor | Persona::Fading => 3,
            Persona::Owner => 4,
            Persona::Leader => 5,
        }
    }

    /// Their `i`th interaction as a client sends it.
    fn submission(&self, i: usize, at: i64, kind: String, channel: String, handle: String) -> Value {
        let mut customer = json!({"channel": channel, "handle": handle, "name": self.name});
        if channel != "email" {
            customer["also"] = json!([{"channel": "email", "handle": self.email}]);
        }
        json!({
            "id": format!("demo-{}-{i}", self.n),
            "source": if channel == "twitter" { "twitter" } else { "demo" },
            "customer": customer,
            "kind": kind,
            "occurred_at": Timestamp::from_millis(at).to_rfc3339(),
        })
    }
}

/// One member's interactions as they are drawn: (when, kind, channel, handle).
struct Draws<'r> {
    rng: &'r mut fastrand::Rng,
    start: i64,
    until: i64,
    joined: i64,
    /// How long the member is active (at least a day).
    span: i64,
    items: Vec<(i64, String, String, String)>,
}

impl Draws<'_> {
    fn push(&mut self, kind: &str, at: i64, channel: &str, handle: &str) {
        let at = at.clamp(self.start, self.until - 60_000) + self.rng.i64(0..3_600_000);
        self.items.push((at, kind.to_string(), channel.to_string(), handle.to_string()));
    }

    /// `count` moments while the member is active.
    fn moments(&mut self, count: usize) -> Vec<i64> {
        (0..count).map(|_| self.joined + self.rng.i64(0..self.span)).collect()
    }

    /// One of `kinds`, drawn.
    fn one_of<'k>(&mut self, kinds: &[&'k str]) -> &'k str {
        kinds[self.rng.usize(..kinds.len())]
    }

    /// Everything the member does, up to their persona's rank.
    fn interactions_of(&mut self, member: &Member) {
        let (email, social, rank) = (member.email.as_str(), member.social.as_str(), member.rank());
        let count = self.rng.usize(2..12);
        for at in self.moments(count) {
            let kind = self.one_of(&["page_viewed", "post_viewed", "email_opened"]);
            self.push(kind, at, "email", email);
        }
        if rank >= 1 {
            self.push("newsletter_subscribed", member.joined, "email", email);
            let count = self.rng.usize(1..4);
            for at in self.moments(count) {
                self.push("followed", at, "twitter", social);
            }
        }
        if rank >= 2 {
            let count = self.rng.usize(1..3);
            for at in self.moments(count) {
                let kind = self.one_of(&["review_posted", "testimonial_given", "referral_made"]);
                self.push(kind, at, "email", email);
            }
            let count = self.rng.usize(1..5);
            for at in self.moments(count) {
                self.push("content_shared", at, "twitter", social);
            }
        }
        if rank >= 3 {
            let count = self.rng.usize(3..8);
            for at in self.moments(count) {
                let kind = self.one_of(&["event_attended", "forum_answered", "webinar_attended", "purchase_made"]);
                self.push(kind, at, "email", email);
            }
        }
        if rank >= 4 {
            let kind = self.one_of(&["customer_council_joined", "advisory_board_joined"]);
            self.push(kind, member.active_until - 90 * DAY_MS, "email", email);
            for at in self.moments(2) {
                self.push("board_meeting_attended", at.max(member.active_until - 60 * DAY_MS), "email", email);
            }
        }
        if rank >= 5 {
            self.push("meetup_organized", member.active_until - 30 * DAY_MS, "email", email);
            self.push("talk_given", member.active_until - 10 * DAY_MS, "email", email);
        }
    }
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
