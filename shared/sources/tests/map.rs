//! Mapping a verified delivery: matching, emitting, bots, bounds, form bodies, challenges.

mod common;

use common::ignored_reason as ignored;
use engagement::Timestamp;
use engagement_sources::{Delivery, Mapped, Source};
use serde_json::{json, Value};

const FORGE: &str = r#"
name = "forge"
channel = "forge"
delivery_id = { header = "X-Forge-Delivery" }
[verification]
scheme = "github"

[bots]
actor = "/sender/login"
actor_type = "/sender/type"
logins = ["Release-Robot"]

[[mappings]]
name = "merged"
[mappings.match]
headers = { "X-Forge-Event" = "pull_request" }
equals = { "/action" = "closed", "/pull_request/merged" = true }
present = ["/pull_request/merged_by/login"]

[[mappings.emit]]
kind = "forge.merged"
id = "forge:pr:{/pull_request/id}:merged:author"
occurred_at = "/pull_request/merged_at"
handle = "/pull_request/user/login"
name = "/pull_request/user/name"
also = [{ channel = "email", handle = "/pull_request/user/email" }]
properties = { repository = "/repository/full_name", number = "/pull_request/number", title = "/pull_request/title", labels = "/pull_request/labels", absent = "/nowhere" }

[[mappings.emit]]
kind = "forge.merged_by"
id = "forge:pr:{/pull_request/id}:merged:merger"
occurred_at = "/pull_request/merged_at"
handle = "/pull_request/merged_by/login"

[[mappings]]
name = "any_pull_request"
[mappings.match]
headers = { "X-Forge-Event" = "pull_request" }
one_of = { "/action" = ["opened", "closed"] }
[[mappings.emit]]
kind = "forge.pull_request_activity"
id = "forge:pr:{/pull_request/id}:{/action}:{delivery}"
occurred_at = "/at"
time_format = "unix"
handle = "/sender/login"
channel = "forge-users"
"#;

fn forge() -> Source {
    Source::from_file("forge.toml", FORGE).expect("the test source loads")
}

fn received() -> Timestamp {
    common::at("2026-03-03T09:30:00Z")
}

fn map_with(source: &Source, headers: &[(&str, &str)], body: &[u8]) -> Mapped {
    common::map(source, &common::headers(headers), body, received())
}

fn merged_pull_request() -> Value {
    json!({
        "action": "closed",
        "at": 1772530200,
        "pull_request": {
            "id": 42, "number": 7, "merged": true, "merged_at": "2026-03-02T10:00:00+01:00",
            "title": "x".repeat(300), "labels": ["a"],
            "user": {"login": "ann", "name": "  Ann Lee ", "email": "ann@example.com"},
            "merged_by": {"login": "bob"}
        },
        "repository": {"full_name": "acme/widget"},
        "sender": {"login": "bob", "type": "User"}
    })
}

fn interactions(mapped: Mapped) -> Vec<Value> {
    common::interactions_of(mapped).0
}

const PR: [(&str, &str); 2] = [("X-Forge-Event", "pull_request"), ("X-Forge-Delivery", "d-1")];

#[test]
fn every_matching_mapping_emits_all_its_interactions() {
    let body = merged_pull_request().to_string();
    let mapped = map_with(&forge(), &PR, body.as_bytes());
    let Mapped::Interactions { interactions, delivery_id } = mapped else {
        panic!("expected interactions")
    };
    assert_eq!(delivery_id.as_deref(), Some("d-1"));
    assert_eq!(
        interactions[0],
        json!({
            "id": "forge:pr:42:merged:author",
            "source": "forge",
            "customer": {
                "channel": "forge", "handle": "ann", "name": "Ann Lee",
                "also": [{"channel": "email", "handle": "ann@example.com"}]
            },
            "kind": "forge.merged",
            "occurred_at": "2026-03-02T09:00:00Z",
            // Scalars only; strings cut to 256 characters; absent ones left out.
            "properties": {"repository": "acme/widget", "number": 7, "title": "x".repeat(256)}
        })
    );
    assert_eq!(interactions[1]["id"], "forge:pr:42:merged:merger");
    assert_eq!(interactions[1]["customer"], json!({"channel": "forge", "handle": "bob"}));
    // The second mapping fires too: its own channel, a {delivery} id, a Unix time.
    assert_eq!(interactions[2]["id"], "forge:pr:42:closed:d-1");
    assert_eq!(interactions[2]["customer"]["channel"], "forge-users");
    assert_eq!(interactions[2]["occurred_at"], "2026-03-03T09:30:00Z");
    assert_eq!(interactions.len(), 3);
}

#[test]
fn the_same_fact_delivered_twice_maps_to_the_same_interactions() {
    let body = merged_pull_request().to_string();
    let first = interactions(map_with(&forge(), &PR, body.as_bytes()));
    let again = interactions(map_with(
        &forge(),
        &[("X-Forge-Event", "pull_request"), ("X-Forge-Delivery", "d-2")],
        body.as_bytes(),
    ));
    assert_eq!(first[..2], again[..2], "ids from the payload, not the delivery");
}

#[test]
fn an_unmatched_event_is_ignored_naming_the_event_but_no_personal_data() {
    let body = json!({"action": "started", "sender": {"login": "ann"}}).to_string();
    let reason = ignored(map_with(&forge(), &[("X-Forge-Event", "star")], body.as_bytes()));
    assert_eq!(reason, "no mapping for this event (X-Forge-Event: star, /action: started)");
    assert!(!reason.contains("ann"));
}

#[test]
fn a_missing_required_field_ignores_the_whole_delivery() {
    let mut body = merged_pull_request();
    body["pull_request"]["user"]["login"] = Value::Null;
    let reason = ignored(map_with(&forge(), &PR, body.to_string().as_bytes()));
    assert_eq!(reason, "missing /pull_request/user/login in mapping merged");

    let mut body = merged_pull_request();
    body["pull_request"]["merged_at"] = json!("yesterday");
    let reason = ignored(map_with(&forge(), &PR, body.to_string().as_bytes()));
    assert_eq!(reason, "/pull_request/merged_at is not a time in format rfc3339 in mapping merged");

    // {delivery} without a delivery id.
    let mut body = merged_pull_request();
    body["pull_request"]["merged"] = json!(false);
    let reason = ignored(map_with(
        &forge(),
        &[("X-Forge-Event", "pull_request")],
        body.to_string().as_bytes(),
    ));
    assert_eq!(reason, "missing the delivery id in mapping any_pull_request");
}

#[test]
fn present_makes_an_emit_conditional() {
    let mut body = merged_pull_request();
    body["pull_request"]["merged_by"] = Value::Null;
    let emitted = interactions(map_with(&forge(), &PR, body.to_string().as_bytes()));
    assert_eq!(emitted.len(), 1);
    assert_eq!(emitted[0]["kind"], "forge.pull_request_activity");
}

#[test]
fn a_bots_delivery_is_ignored_and_bot_customers_are_dropped() {
    for sender in [
        json!({"login": "dependabot[bot]", "type": "Bot"}),
        json!({"login": "renovate[bot]", "type": "User"}),
        json!({"login": "someone", "type": "Bot"}),
        json!({"login": "release-robot", "type": "User"}),
    ] {
        let mut body = merged_pull_request();
        body["sender"] = sender.clone();
        assert_eq!(ignored(map_with(&forge(), &PR, body.to_string().as_bytes())), "bot", "{sender}");
    }
    // A human's delivery about a bot's pull request: the bot author is dropped, the merger kept.
    let mut body = merged_pull_request();
    body["pull_request"]["user"]["login"] = json!("Release-Robot");
    let emitted = interactions(map_with(&forge(), &PR, body.to_string().as_bytes()));
    let handles: Vec<&Value> = emitted.iter().map(|i| &i.get("customer").expect("a customer")["handle"]).collect();
    assert_eq!(handles, [&json!("bob"), &json!("bob")]);
}

#[test]
fn properties_are_bounded() {
    let mut source = String::from(
        r#"name = "wide"
channel = "wide"
[verification]
scheme = "none"
unverified = true
[[mappings]]
name = "all"
[[mappings.emit]]
kind = "wide.event"
id = "wide:{/id}"
occurred_at = "received"
handle = "/user"
[mappings.emit.properties]
"#,
    );
    for n in 0..17 {
        source.push_str(&format!("p{n:02} = \"/v\"\n"));
    }
    let error = Source::from_file("wide.toml", &source).expect_err("17 properties");
    assert_eq!(
        error.to_string(),
        "source file wide.toml: mapping \"all\": emit 1: 17 properties: at most 16"
    );

    let source = Source::from_toml(&source.replace("p16 = \"/v\"\n", "")).expect("16 properties");
    let body = json!({"id": 1, "user": "ann", "v": "é".repeat(1000)}).to_string();
    let emitted = interactions(map_with(&source, &[], body.as_bytes()));
    let properties = emitted[0]["properties"].as_object().expect("properties");
    // 256 two-byte characters each: ingest's 4 KiB of JSON holds only some of the 16.
    assert!(properties.len() < 16 && !properties.is_empty());
    assert!(serde_json::to_vec(properties).expect("json").len() <= 4096);
    assert!(properties.values().all(|v| v.as_str().expect("text").chars().count() == 256));
}

#[test]
fn times_read_in_each_format() {
    let file = |format: &str| {
        Source::from_toml(&format!(
            r#"name = "times"
channel = "times"
[verification]
scheme = "none"
unverified = true
[[mappings]]
name = "all"
[[mappings.emit]]
kind = "times.event"
id = "times:{{/id}}"
occurred_at = "/at"
time_format = "{format}"
handle = "/user"
"#
        ))
        .expect("a valid source")
    };
    let cases = [
        ("rfc3339", json!("2026-03-03T10:30:00+01:00")),
        ("unix", json!(1772530200)),
        ("unix", json!("1772530200.000000")),
        ("unix_ms", json!(1772530200000_i64)),
        ("%Y-%m-%d %H:%M:%S", json!("2026-03-03 09:30:00")),
    ];
    for (format, at) in cases {
        let body = json!({"id": 1, "user": "ann", "at": at}).to_string();
        let emitted = interactions(map_with(&file(format), &[], body.as_bytes()));
        assert_eq!(emitted[0]["occurred_at"], "2026-03-03T09:30:00Z", "{format} {at}");
    }
}

#[test]
fn form_encoded_bodies_are_read_as_nested_objects() {
    let source = Source::from_toml(
        r#"name = "letters"
channel = "email"
[verification]
scheme = "secret-in-url"
parameter = "secret"
[[mappings]]
name = "subscribe"
[mappings.match]
equals = { "/type" = "subscribe" }
[[mappings.emit]]
kind = "letters.subscribed"
id = "letters:{/data/list_id}:{/data/id}:subscribe:{/fired_at}"
occurred_at = "/fired_at"
time_format = "%Y-%m-%d %H:%M:%S"
handle = "/data/email"
name = "/data/merges/FNAME"
"#,
    )
    .expect("a valid source");
    let body = b"type=subscribe&fired_at=2009-03-26+21%3A35%3A57&data%5Bid%5D=8a25ff1d98&data%5Blist_id%5D=a6b5da1054&data%5Bemail%5D=api%40mailchimp.com&data%5Bmerges%5D%5BFNAME%5D=Mailchimp";
    let emitted = interactions(map_with(&source, &[("Content-Type", "application/x-www-form-urlencoded")], body));
    assert_eq!(
        emitted[0],
        json!({
            "id": "letters:a6b5da1054:8a25ff1d98:subscribe:2009-03-26 21:35:57",
            "source": "letters",
            "customer": {"channel": "email", "handle": "api@mailchimp.com", "name": "Mailchimp"},
            "kind": "letters.subscribed",
            "occurred_at": "2009-03-26T21:35:57Z",
            "properties": {}
        })
    );
}

#[test]
fn a_malformed_body_is_a_bad_body() {
    let headers = http::HeaderMap::new();
    let error = forge()
        .map(
            &Delivery {
                headers: &headers,
                query: &[],
                body: b"{not json",
            },
            received(),
        )
        .expect_err("not JSON");
    assert!(error.reason.starts_with("the body is not valid JSON"), "{}", error.reason);
}

#[test]
fn slacks_url_verification_is_a_challenge() {
    let slack = Source::from_toml(
        r#"name = "chat"
channel = "slack"
[verification]
scheme = "slack"
[[mappings]]
name = "message"
[mappings.match]
equals = { "/event/type" = "message" }
[[mappings.emit]]
kind = "chat.message"
id = "chat:{/event_id}"
occurred_at = "/event_time"
time_format = "unix"
handle = "/event/user"
"#,
    )
    .expect("a valid source");
    let body = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    assert_eq!(
        map_with(&slack, &[], body),
        Mapped::Challenge("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".into())
    );
}
