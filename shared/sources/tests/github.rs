//! The built-in GitHub source on real deliveries (`fixtures/github`, from
//! `@octokit/webhooks-examples`; see its PROVENANCE.md): every mapped event gives exactly the
//! interactions the rules expect, the rest is ignored with a reason, bots record nothing, and a
//! repository hook and an organisation hook reporting the same merge record the same thing.

mod common;

use common::at;
use engagement::interaction::parse_submission;
use engagement::{Rules, Timestamp};
use engagement_sources::{Mapped, Source};
use serde_json::{json, Value};

const DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

fn github() -> Source {
    common::builtin("github")
}

fn fixture(file: &str) -> Vec<u8> {
    common::fixture("github", file)
}

fn received() -> Timestamp {
    at("2026-01-01T00:00:00Z")
}

fn map_with(source: &Source, event: &str, delivery: &str, body: &[u8]) -> Mapped {
    let headers = common::headers(&[
        ("x-github-event", event),
        ("x-github-delivery", delivery),
        ("content-type", "application/json"),
    ]);
    common::map(source, &headers, body, received())
}

fn map(event: &str, file: &str) -> Mapped {
    map_with(&github(), event, DELIVERY, &fixture(file))
}

fn interactions(mapped: Mapped) -> Vec<Value> {
    let (interactions, delivery_id) = common::interactions_of(mapped);
    assert_eq!(delivery_id.as_deref(), Some(DELIVERY), "the delivery id is GitHub's");
    interactions
}

fn ignored(mapped: Mapped) -> String {
    let (reason, delivery_id) = common::ignored_of(mapped);
    assert_eq!(delivery_id.as_deref(), Some(DELIVERY), "the delivery id is GitHub's");
    reason
}

/// What an interaction says: (kind, id, handle, occurred_at).
type Fact = (String, String, String, Timestamp);

/// The facts of each interaction, every one on the `github` channel.
fn facts(interactions: &[Value]) -> Vec<Fact> {
    interactions
        .iter()
        .map(|interaction| {
            assert_eq!(interaction["source"], "github");
            assert_eq!(interaction["customer"]["channel"], "github", "{interaction}");
            let text = |field: &Value| field.as_str().unwrap_or_else(|| panic!("a string in {interaction}")).to_string();
            (
                text(&interaction["kind"]),
                text(&interaction["id"]),
                text(&interaction["customer"]["handle"]),
                at(&text(&interaction["occurred_at"])),
            )
        })
        .collect()
}

fn fact(kind: &str, id: &str, handle: &str, occurred_at: &str) -> Fact {
    (kind.to_string(), id.to_string(), handle.to_string(), at(occurred_at))
}

/// Every mapped fixture: (X-GitHub-Event, file, the interactions it must give).
fn mapped_fixtures() -> Vec<(&'static str, &'static str, Vec<Fact>)> {
    vec![
        (
            "issues",
            "issues.opened.json",
            vec![fact(
                "github.issue_opened",
                "github:issue:444500041:opened:author",
                "Codertocat",
                "2019-05-15T15:20:18Z",
            )],
        ),
        (
            "issue_comment",
            "issue_comment.created.json",
            vec![fact(
                "github.comment_created",
                "github:issue_comment:492700400:author",
                "Codertocat",
                "2019-05-15T15:20:21Z",
            )],
        ),
        (
            "issue_comment",
            "issue_comment.created.pull_request.json",
            vec![fact(
                "github.comment_created",
                "github:issue_comment:492700400:author",
                "Codertocat",
                "2019-05-15T15:20:21Z",
            )],
        ),
        (
            "pull_request",
            "pull_request.opened.json",
            vec![fact(
                "github.pull_request_opened",
                "github:pull_request:279147437:opened:author",
                "Codertocat",
                "2019-05-15T15:20:33Z",
            )],
        ),
        (
            "pull_request",
            "pull_request.closed.merged.json",
            vec![
                fact(
                    "github.pull_request_merged",
                    "github:pull_request:279147437:merged:author",
                    "Codertocat",
                    "2019-05-15T15:21:18Z",
                ),
                fact(
                    "github.pull_request_merge_performed",
                    "github:pull_request:279147437:merged:merger",
                    "Codertocat",
                    "2019-05-15T15:21:18Z",
                ),
            ],
        ),
        (
            "pull_request_review",
            "pull_request_review.submitted.json",
            vec![fact(
                "github.review_submitted",
                "github:pull_request_review:237895671:author",
                "Codertocat",
                "2019-05-15T15:20:38Z",
            )],
        ),
        (
            "release",
            "release.published.json",
            vec![fact(
                "github.release_published",
                "github:release:17372790:published:author",
                "Codertocat",
                "2019-05-15T15:20:53Z",
            )],
        ),
        (
            "star",
            "star.created.json",
            vec![fact(
                "github.starred",
                "github:star:186853002:21031067:2019-05-15T15:20:40Z",
                "Codertocat",
                "2019-05-15T15:20:40Z",
            )],
        ),
        (
            "fork",
            "fork.json",
            vec![fact("github.forked", "github:fork:186853261", "Octocoders", "2019-05-15T15:20:42Z")],
        ),
        (
            "discussion",
            "discussion.created.json",
            vec![fact(
                "github.discussion_created",
                "github:discussion:3297442:created:author",
                "Codertocat",
                "2021-03-29T14:16:08Z",
            )],
        ),
        (
            "discussion_comment",
            "discussion_comment.created.json",
            vec![fact(
                "github.discussion_comment_created",
                "github:discussion_comment:544078:author",
                "Codertocat",
                "2021-03-29T14:16:31Z",
            )],
        ),
        (
            // The answer's author is credited (dan2wik), when it was chosen (-04:00 in the payload).
            "discussion",
            "discussion.answered.json",
            vec![fact(
                "github.discussion_answered",
                "github:discussion_comment:550561:answer:author",
                "dan2wik",
                "2021-03-30T23:17:18Z",
            )],
        ),
        (
            "sponsorship",
            "sponsorship.created.json",
            vec![fact(
                "github.sponsorship_created",
                "github:sponsorship:MDExOlNwb25zb3JzaGlwMQ==:created:sponsor",
                "monalisa",
                "2019-12-20T19:24:46Z",
            )],
        ),
    ]
}

#[test]
fn every_mapped_event_gives_exactly_its_interactions() {
    for (event, file, expected) in mapped_fixtures() {
        let got = facts(&interactions(map(event, file)));
        assert_eq!(got, expected, "{file}");
    }
}

#[test]
fn properties_are_the_small_public_facts() {
    let merged = interactions(map("pull_request", "pull_request.closed.merged.json"));
    let url = "https://github.com/Codertocat/Hello-World/pull/2";
    for interaction in &merged {
        assert_eq!(
            interaction["properties"],
            json!({"repository": "Codertocat/Hello-World", "number": 2, "url": url})
        );
    }
    let on_pull_request = interactions(map("issue_comment", "issue_comment.created.pull_request.json"));
    assert_eq!(
        on_pull_request[0]["properties"]["url"],
        "https://github.com/Codertocat/Hello-World/pull/1#issuecomment-492700400"
    );
    let sponsorship = interactions(map("sponsorship", "sponsorship.created.json"));
    assert_eq!(
        sponsorship[0]["properties"],
        json!({"sponsored": "octocat", "tier": "$5 a month", "monthly_price_in_dollars": 5})
    );
    // GitHub's payloads carry no e-mail: nothing to link.
    for (event, file, _) in mapped_fixtures() {
        for interaction in interactions(map(event, file)) {
            let also = interaction["customer"].get("also").cloned().unwrap_or(json!([]));
            assert_eq!(also, json!([]), "{file}");
        }
    }
}

#[test]
fn a_merge_without_a_named_merger_still_credits_the_author() {
    let mut body = common::json_fixture("github", "pull_request.closed.merged.json");
    body["pull_request"]["merged_by"] = Value::Null;
    let body = serde_json::to_vec(&body).expect("JSON");
    let got = facts(&interactions(map_with(&github(), "pull_request", DELIVERY, &body)));
    assert_eq!(
        got,
        [fact(
            "github.pull_request_merged",
            "github:pull_request:279147437:merged:author",
            "Codertocat",
            "2019-05-15T15:21:18Z"
        )]
    );
}

#[test]
fn events_without_a_mapping_are_ignored_with_the_reason() {
    let reason = ignored(map("ping", "ping.json"));
    assert!(reason.contains("no mapping"), "{reason}");
    // Closed without merging: nobody's contribution was accepted.
    let reason = ignored(map("pull_request", "pull_request.closed.json"));
    assert!(reason.contains("no mapping"), "{reason}");
    // The right body under another event name matches nothing either.
    let reason = ignored(map("push", "pull_request.opened.json"));
    assert!(reason.contains("no mapping"), "{reason}");
}

#[test]
fn bots_record_nothing() {
    // A real delivery from a GitHub App (sender.type "Bot", login "octocoders-linter[bot]").
    assert_eq!(ignored(map("check_suite", "check_suite.rerequested.bot.json")), "bot");
    // A mapped event sent by a bot (renovate[bot] opening a pull request).
    assert_eq!(ignored(map("pull_request", "pull_request.opened.bot.json")), "bot");
    // A machine account of type "User" named in the file's list.
    let mut body = common::json_fixture("github", "issues.opened.json");
    body["sender"]["login"] = json!("ghost");
    body["issue"]["user"]["login"] = json!("ghost");
    let body = serde_json::to_vec(&body).expect("JSON");
    assert_eq!(ignored(map_with(&github(), "issues", DELIVERY, &body)), "bot");
}

#[test]
fn a_repository_hook_and_an_organisation_hook_record_the_same_merge_once() {
    let repository = fixture("pull_request.closed.merged.json");
    let organisation = fixture("pull_request.closed.merged.organization.json");
    assert_ne!(repository, organisation, "the organisation's hook says more (`organization`)");
    let source = github();
    let from_repository = map_with(&source, "pull_request", "1d4d5a9e-0000-11f0-8000-000000000001", &repository);
    let from_organisation = map_with(&source, "pull_request", "1d4d5a9e-0000-11f0-8000-000000000002", &organisation);
    let strip = |mapped: Mapped| match mapped {
        Mapped::Interactions { interactions, .. } => interactions,
        other => panic!("expected interactions, got {other:?}"),
    };
    let (from_repository, from_organisation) = (strip(from_repository), strip(from_organisation));
    assert_eq!(from_repository.len(), 2, "author and merger");
    assert_eq!(
        from_repository, from_organisation,
        "same ids and same content: the second is a duplicate"
    );
}

#[test]
fn every_interaction_is_accepted_by_ingest_under_the_default_rules() {
    let rules = Rules::default_rules();
    let known: Vec<&str> = rules.kinds().iter().map(|kind| kind.name.as_str()).collect();
    for kind in github().kinds() {
        assert!(known.contains(&kind), "the default rules place {kind} on a level");
    }
    for kind in known.iter().filter(|kind| kind.starts_with("github.")) {
        assert!(
            github().kinds().any(|emitted| emitted == *kind),
            "{kind} is in the rules but no mapping emits it"
        );
    }
    for (event, file, _) in mapped_fixtures() {
        let emitted = interactions(map(event, file));
        let body = serde_json::to_vec(&json!({ "interactions": emitted })).expect("JSON");
        let parsed = parse_submission(&body, &rules, received()).unwrap_or_else(|errors| panic!("{file}: {errors}"));
        assert_eq!(parsed.len(), emitted.len(), "{file}");
    }
}
