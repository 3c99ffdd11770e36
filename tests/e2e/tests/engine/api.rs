//! The read and admin API, as a community manager's tools use it.

use engagement::events::DomainEvent;
use engagement::rules::DEFAULT_RULES_TOML;
use engagement::Rules;
use engagement_e2e::{interaction, Stack, CONTACT_SECRET};
use engagement_testkit::at;
use serde_json::{json, Value};

async fn record(stack: &Stack, items: Vec<Value>) -> Vec<String> {
    let answer = stack.http("POST", "/v1/interactions", json!({ "interactions": items })).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    stack.deliver().await;
    answer.body["interactions"]
        .as_array()
        .expect("outcomes")
        .iter()
        .map(|o| o["customer_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_page_explains_the_level_and_travels_back_in_time() {
    let start = at("2026-01-05T09:00:00Z");
    // Her history is imported a month late, all at once.
    let stack = Stack::start(start.plus_days(32.0)).await;
    let ids = record(
        &stack,
        vec![
            interaction("c-1", "kim@example.com", "newsletter_subscribed", start),
            interaction("c-2", "kim@example.com", "testimonial_given", start.plus_days(30.0)),
            interaction("c-3", "kim@example.com", "page_viewed", start.plus_days(31.0)),
        ],
    )
    .await;
    let id = &ids[0];
    let now = stack.http("GET", &format!("/v1/customers/{id}?limit=2"), Value::Null).await;
    assert_eq!(now.status, 200);
    assert_eq!(now.body["level"], "endorsing");
    // Learned in one batch, the rise is dated at the batch's latest interaction; the replayed
    // timeline (`?at=`) dates it at the testimonial itself.
    assert_eq!(now.body["since"], start.plus_days(31.0).to_rfc3339());
    // The recorded timeline: one rise from observing, dated as decided.
    assert_eq!(
        now.body["timeline"],
        json!([{"at": start.plus_days(31.0).to_rfc3339(), "from": "observing", "to": "endorsing"}])
    );
    assert_eq!(now.body["identities"], json!([{"channel": "email", "handle": "kim@example.com"}]));
    assert_eq!(now.body["consent"]["email"]["granted"], true);
    assert!(
        now.body["summary"].as_str().is_some_and(|s| s.contains("Endorsing")),
        "{}",
        now.body["summary"]
    );
    assert!(now.body["drops_at"].is_string() && now.body["at_risk_at"].is_string());
    let page: Vec<&str> = now.body["interactions"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(page, ["c-3", "c-2"], "newest first, two per page");
    let cursor = now.body["interactions"]["cursor"].as_str().expect("a next page");
    let older = stack
        .http("GET", &format!("/v1/customers/{id}?limit=2&cursor={cursor}"), Value::Null)
        .await;
    assert_eq!(older.body["interactions"]["items"][0]["id"], "c-1");

    // As of a day after subscribing: following, before the testimonial.
    let then = stack
        .http(
            "GET",
            &format!("/v1/customers/{id}?at={}", start.plus_days(1.0).to_rfc3339()),
            Value::Null,
        )
        .await;
    assert_eq!(then.body["level"], "following");
    assert_eq!(then.body["as_of"], start.plus_days(1.0).to_rfc3339());
    assert_eq!(then.body["interactions"]["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(then.body["timeline"][0]["to"], "following");
    let replayed = stack
        .http(
            "GET",
            &format!("/v1/customers/{id}?at={}", start.plus_days(32.0).to_rfc3339()),
            Value::Null,
        )
        .await;
    assert_eq!(
        replayed.body["timeline"][1],
        json!({"at": start.plus_days(30.0).to_rfc3339(), "from": "following", "to": "endorsing"})
    );

    let unknown = stack.http("GET", "/v1/customers/cus_nobody", Value::Null).await;
    assert_eq!((unknown.status, unknown.content_type.as_str()), (404, "application/problem+json"));
    let bad_time = stack.http("GET", &format!("/v1/customers/{id}?at=last-week"), Value::Null).await;
    assert_eq!((bad_time.status, &bad_time.body["errors"][0]["path"]), (400, &json!("query.at")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_with_sealed_cursors_and_the_pyramid_counts_everyone() {
    let start = at("2026-01-05T09:00:00Z");
    let stack = Stack::start(start).await;
    let mut items = Vec::new();
    for n in 0..3 {
        items.push(interaction(
            &format!("l-{n}"),
            &format!("f{n}@example.com"),
            "newsletter_subscribed",
            start,
        ));
    }
    items.push(interaction("l-9", "lead@example.com", "meetup_organized", start));
    record(&stack, items).await;
    stack.clock.set(start.plus_days(1.0));

    let first = stack.http("GET", "/v1/customers?level=following&limit=2", Value::Null).await;
    assert_eq!(first.body["customers"].as_array().map(Vec::len), Some(2));
    let cursor = first.body["cursor"].as_str().expect("a next page").to_string();
    let second = stack
        .http(
            "GET",
            &format!("/v1/customers?level=following&limit=2&cursor={cursor}"),
            Value::Null,
        )
        .await;
    assert_eq!(second.body["customers"].as_array().map(Vec::len), Some(1));
    assert!(second.body["cursor"].is_null());
    let mut seen: Vec<String> = first.body["customers"]
        .as_array()
        .into_iter()
        .chain(second.body["customers"].as_array())
        .flatten()
        .map(|c| c["id"].as_str().unwrap_or_default().to_string())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "every follower once");

    let mut tampered = cursor.clone();
    tampered.insert(3, 'x');
    let refused = stack
        .http(
            "GET",
            &format!("/v1/customers?level=following&limit=2&cursor={tampered}"),
            Value::Null,
        )
        .await;
    assert_eq!((refused.status, &refused.body["errors"][0]["path"]), (400, &json!("query.cursor")));
    let elsewhere = stack
        .http("GET", &format!("/v1/customers?level=leading&cursor={cursor}"), Value::Null)
        .await;
    assert_eq!(elsewhere.status, 400, "a cursor belongs to its listing");

    // Without a level: everyone, from the top of the pyramid down.
    let everyone = stack.http("GET", "/v1/customers?limit=10", Value::Null).await;
    let levels: Vec<&str> = everyone.body["customers"]
        .as_array()
        .expect("customers")
        .iter()
        .map(|c| c["level"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(levels, ["leading", "following", "following", "following"]);
    let bad = stack.http("GET", "/v1/customers?level=vip&limit=0", Value::Null).await;
    assert_eq!(bad.status, 400);
    assert!(bad.body["detail"].as_str().is_some());

    let pyramid = stack.http("GET", "/v1/pyramid", Value::Null).await;
    let counts: Vec<u64> = pyramid.body["levels"]
        .as_array()
        .expect("levels")
        .iter()
        .map(|l| l["customers"].as_u64().unwrap_or(99))
        .collect();
    assert_eq!(counts, [0, 3, 0, 0, 0, 1]);
    assert_eq!(pyramid.body["total"], 4);
    assert_eq!(pyramid.body["movers"]["last_7_days"]["up"]["following"], 3);
    assert_eq!(pyramid.body["movers"]["last_30_days"]["up"]["leading"], 1);
    let movers = stack
        .http("GET", &format!("/v1/movers?since={}&direction=up", start.to_rfc3339()), Value::Null)
        .await;
    assert_eq!(movers.body["up"]["following"], 3);
    assert!(movers.body.get("down").is_none());
    let wrong = stack.http("GET", "/v1/movers?direction=sideways", Value::Null).await;
    assert_eq!(wrong.body["errors"][0]["path"], "query.direction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_an_identity_of_another_customer_merges_them() {
    let start = at("2026-01-05T09:00:00Z");
    let stack = Stack::start(start).await;
    let social = json!({"id": "m-1", "source": "e2e", "customer": {"channel": "twitter", "handle": "@lea"}, "kind": "testimonial_given", "occurred_at": start.to_rfc3339()});
    let ids = record(
        &stack,
        vec![interaction("m-0", "lea@example.com", "newsletter_subscribed", start), social],
    )
    .await;
    let (email_id, social_id) = (&ids[0], &ids[1]);
    assert_ne!(email_id, social_id);
    stack.clock.set(start.plus_days(1.0));
    let linked = stack
        .http(
            "POST",
            &format!("/v1/customers/{email_id}/identities"),
            json!({"channel": "twitter", "handle": "@Lea"}),
        )
        .await;
    assert_eq!(linked.status, 201, "{:?}", linked.body);
    assert_eq!(linked.body["outcome"], "merged");
    assert_eq!(linked.body["merged_customer_id"], social_id.as_str());
    let merged = stack.http("GET", &format!("/v1/customers/{email_id}"), Value::Null).await;
    assert_eq!(merged.body["level"], "endorsing", "the testimonial counts for her now");
    assert_eq!(merged.body["identities"].as_array().map(Vec::len), Some(2));
    let redirected = stack.http("GET", &format!("/v1/customers/{social_id}"), Value::Null).await;
    assert_eq!(redirected.body["id"], email_id.as_str(), "the old id leads to the survivor");
    let again = stack
        .http(
            "POST",
            &format!("/v1/customers/{email_id}/identities"),
            json!({"channel": "twitter", "handle": "lea"}),
        )
        .await;
    assert_eq!((again.status, &again.body["outcome"]), (200, &json!("already_linked")));
    let invalid = stack
        .http(
            "POST",
            &format!("/v1/customers/{email_id}/identities"),
            json!({"channel": "Not A Channel", "nick": 1}),
        )
        .await;
    let paths: Vec<&str> = invalid.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["path"].as_str().unwrap_or_default())
        .collect();
    assert!(paths.contains(&"channel") && paths.contains(&"handle"), "{paths:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_is_granted_and_withdrawn_per_channel() {
    let start = at("2026-01-05T09:00:00Z");
    let stack = Stack::start(start).await;
    let ids = record(&stack, vec![interaction("k-1", "max@example.com", "newsletter_subscribed", start)]).await;
    let id = &ids[0];
    stack.clock.set(start.plus_days(2.0));
    let withdrawn = stack
        .http("PUT", &format!("/v1/customers/{id}/consent/email"), json!({"granted": false}))
        .await;
    assert_eq!((withdrawn.status, &withdrawn.body["granted"]), (200, &json!(false)));
    let events = stack.deliver().await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, DomainEvent::LevelChanged(c) if c.to == engagement::Level::Observing)),
        "following needs consent: {events:?}"
    );
    let view = stack.http("GET", &format!("/v1/customers/{id}"), Value::Null).await;
    assert_eq!(view.body["consent"]["email"]["granted"], false);
    assert_eq!(
        view.body["interactions"]["items"][0]["source"], "api",
        "the change is on the record"
    );
    let missing = stack
        .http("PUT", &format!("/v1/customers/{id}/consent/sms"), json!({"granted": true}))
        .await;
    assert_eq!((missing.status, &missing.body["errors"][0]["path"]), (409, &json!("path.channel")));
    let malformed = stack
        .http("PUT", &format!("/v1/customers/{id}/consent/email"), json!({"granted": "yes"}))
        .await;
    assert_eq!((malformed.status, &malformed.body["errors"][0]["path"]), (400, &json!("granted")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_removes_the_customer_and_tells_the_marketing_tools() {
    let start = at("2026-01-05T09:00:00Z");
    let stack = Stack::start(start).await;
    let ids = record(&stack, vec![interaction("x-1", "ned@example.com", "newsletter_subscribed", start)]).await;
    let id = &ids[0];
    let erased = stack.http("DELETE", &format!("/v1/customers/{id}"), Value::Null).await;
    assert_eq!((erased.status, &erased.body), (204, &Value::Null));
    let events = stack.take_events().await;
    assert!(matches!(events.as_slice(), [DomainEvent::CustomerErased(e)] if e.customer_id.as_str() == id));
    // The tools find the person by email once the store has forgotten it: it travels sealed.
    let key = engagement::erasure::ContactKey::from_secret(CONTACT_SECRET).expect("the key");
    assert_eq!(
        engagement::erasure::open_contact(&events[0], &key),
        Ok(Some("ned@example.com".to_string()))
    );
    assert!(!events[0].detail_json().contains("ned@"), "{}", events[0].detail_json());
    assert_eq!(stack.http("GET", &format!("/v1/customers/{id}"), Value::Null).await.status, 404);
    assert_eq!(stack.http("DELETE", &format!("/v1/customers/{id}"), Value::Null).await.status, 404);
    let pyramid = stack.http("GET", "/v1/pyramid", Value::Null).await;
    assert_eq!(pyramid.body["total"], 0, "counts follow erasure");
    let nowhere = stack.http("PATCH", &format!("/v1/customers/{id}"), Value::Null).await;
    assert_eq!((nowhere.status, nowhere.allow.as_deref()), (405, Some("GET, DELETE")));
    let absurd = stack
        .http("GET", &format!("/v1/customers/cus_{}", "x".repeat(2048)), Value::Null)
        .await;
    assert_eq!(absurd.status, 404, "an id the engine never gave out is simply not found");
    let no_route = stack.http("GET", "/v1/segments", Value::Null).await;
    assert_eq!((no_route.status, no_route.content_type.as_str()), (404, "application/problem+json"));
}

fn level_counts(pyramid: &Value) -> Vec<u64> {
    pyramid["levels"]
        .as_array()
        .expect("levels")
        .iter()
        .map(|l| l["customers"].as_u64().unwrap_or(99))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pyramid_of_a_past_day_is_what_it_was_that_day() {
    let day0 = at("2026-01-05T09:00:00Z");
    let stack = Stack::start(day0).await;
    let ids = record(
        &stack,
        vec![
            interaction("p-1", "ada@example.com", "newsletter_subscribed", day0),
            interaction("p-2", "bo@example.com", "newsletter_subscribed", day0),
            interaction("p-3", "cy@example.com", "newsletter_subscribed", day0),
        ],
    )
    .await;
    stack.clock.set(day0.plus_days(0.5));
    let then = stack.http("GET", "/v1/pyramid", Value::Null).await;
    assert_eq!(level_counts(&then.body), [0, 3, 0, 0, 0, 0]);

    // Ten days later Ada endorses, Dee turns up, Bo is erased.
    let day10 = day0.plus_days(10.0);
    stack.clock.set(day10);
    record(
        &stack,
        vec![
            interaction("p-4", "ada@example.com", "testimonial_given", day10),
            interaction("p-5", "dee@example.com", "page_viewed", day10),
        ],
    )
    .await;
    assert_eq!(
        stack.http("DELETE", &format!("/v1/customers/{}", ids[1]), Value::Null).await.status,
        204
    );
    let later = stack.http("GET", "/v1/pyramid", Value::Null).await;
    assert_eq!(level_counts(&later.body), [1, 1, 1, 0, 0, 0]);

    stack.clock.set(day0.plus_days(20.0));
    let back = stack
        .http("GET", &format!("/v1/pyramid?at={}", day0.plus_days(0.5).to_rfc3339()), Value::Null)
        .await;
    assert_eq!(level_counts(&back.body), level_counts(&then.body), "day 0 as it was");
    assert_eq!(back.body["as_of"], "2026-01-05T23:59:59.999Z");
    let back10 = stack
        .http("GET", &format!("/v1/pyramid?at={}", day10.to_rfc3339()), Value::Null)
        .await;
    assert_eq!(level_counts(&back10.body), level_counts(&later.body), "day 10 as it was");
    assert_eq!(back10.body["movers"]["last_7_days"]["up"]["endorsing"], 1);
    let before = stack.http("GET", "/v1/pyramid?at=2025-12-31T12:00:00Z", Value::Null).await;
    assert_eq!(before.body["total"], 0, "nobody had joined yet");
    let future = stack.http("GET", "/v1/pyramid?at=2030-01-01T00:00:00Z", Value::Null).await;
    assert_eq!((future.status, &future.body["errors"][0]["path"]), (400, &json!("query.at")));

    // Week by week, ending today: the first week ends before anyone joined.
    let weekly = stack.http("GET", "/v1/pyramid/weekly?weeks=4", Value::Null).await;
    let weeks = weekly.body["weeks"].as_array().expect("weeks");
    assert_eq!(weeks.len(), 4);
    assert_eq!(weeks[3]["ends_at"], "2026-01-25T23:59:59.999Z");
    assert_eq!(weeks[0]["levels"]["following"], 0);
    assert_eq!(weeks[1]["levels"]["following"], 3, "the week ending 11 January: before Ada rose");
    assert_eq!(weeks[2]["levels"]["endorsing"], 1);
    let too_many = stack.http("GET", "/v1/pyramid/weekly?weeks=1000", Value::Null).await;
    assert_eq!(too_many.body["errors"][0]["path"], "query.weeks");

    // The period's transitions: who came, who moved, who left.
    let period = stack
        .http(
            "GET",
            &format!(
                "/v1/transitions?from={}&to={}",
                day0.plus_days(1.0).to_rfc3339(),
                day0.plus_days(20.0).to_rfc3339()
            ),
            Value::Null,
        )
        .await;
    assert_eq!(period.status, 200, "{:?}", period.body);
    assert_eq!(period.body["joined"], 1);
    assert_eq!(
        period.body["moves"],
        json!([{"from": "following", "to": "endorsing", "customers": 1}])
    );
    assert_eq!(period.body["left"]["following"], 1);
    assert_eq!(period.body["start"]["following"], 3);
    assert_eq!(
        period.body["end"],
        later.body["levels"].as_array().map_or(json!(null), |levels| {
            levels
                .iter()
                .map(|l| (l["level"].as_str().unwrap_or_default().to_string(), l["customers"].clone()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
    );
    let reversed = stack
        .http(
            "GET",
            "/v1/transitions?from=2026-01-20T00:00:00Z&to=2026-01-10T00:00:00Z",
            Value::Null,
        )
        .await;
    assert_eq!(reversed.body["errors"][0]["path"], "query.from");

    // Movers up, as a listing a manager can click through: `direction`, as on /v1/movers, or
    // its older alias `moved` (ignored when `direction` is given).
    let since = day0.plus_days(5.0).to_rfc3339();
    for query in [
        format!("direction=up&since={since}"),
        format!("moved=up&since={since}"),
        format!("direction=up&moved=down&since={since}"),
    ] {
        let risen = stack.http("GET", &format!("/v1/customers?{query}"), Value::Null).await;
        let risen: Vec<(&str, &str, &str)> = risen.body["customers"]
            .as_array()
            .expect("customers")
            .iter()
            .map(|c| {
                let direction = c["direction"].as_str().unwrap_or_default();
                (
                    c["id"].as_str().unwrap_or_default(),
                    direction,
                    c["moved"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(risen, [(ids[0].as_str(), "up", "up")], "only Ada rose since day 5 ({query})");
    }
    let fallen = stack
        .http("GET", &format!("/v1/customers?direction=down&since={since}"), Value::Null)
        .await;
    assert!(
        fallen.body["customers"]
            .as_array()
            .expect("customers")
            .iter()
            .all(|c| c["direction"] == "down"),
        "{:?}",
        fallen.body
    );
    let unbound = stack.http("GET", "/v1/customers?since=2026-01-01T00:00:00Z", Value::Null).await;
    assert_eq!(unbound.body["errors"][0]["path"], "query.since");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_in_force_are_answered_read_only() {
    // A deployment's own rules file, not the shipped one: the answer is what that file says.
    let custom = DEFAULT_RULES_TOML
        .replace("threshold = 5 ", "threshold = 7.5 ")
        .replace("half_life_days = 270", "half_life_days = 200")
        .replace("unknown_kinds = \"observe\"", "unknown_kinds = \"reject\"")
        + "\n[kinds.hackathon_won]\nlevel = \"leading\"\nweight = 9\nmax_weight = 12\n\n[channels.discord]\nhandle = \"exact\"\n";
    let rules = Rules::from_toml(&custom).unwrap_or_else(|e| panic!("{e}"));
    let stack = Stack::start_with(at("2026-01-05T09:00:00Z"), rules).await;
    let answer = stack.http("GET", "/v1/rules", Value::Null).await;
    assert_eq!((answer.status, answer.content_type.as_str()), (200, "application/json"));
    let body = &answer.body;
    assert_eq!(body["levels"]["leading"], json!({"threshold": 7.5, "half_life_days": 180.0}));
    assert_eq!(body["levels"]["endorsing"], json!({"threshold": 3.0, "half_life_days": 200.0}));
    assert_eq!(body["levels"]["observing"]["threshold"], 0.0);
    assert_eq!((&body["hysteresis"], &body["at_risk_horizon_days"]), (&json!(0.8), &json!(30.0)));
    assert_eq!(body["unknown_kinds"], "reject");
    assert_eq!(
        body["kinds"]["hackathon_won"],
        json!({"level": "leading", "weight": 9.0, "max_weight": 12.0})
    );
    assert_eq!(
        body["kinds"]["newsletter_subscribed"],
        json!({"level": "following", "weight": 3.0, "consent": "grant"})
    );
    assert_eq!(body["channels"]["discord"], json!({"handle": "exact"}));
    assert_eq!(body["channels"]["email"], json!({"handle": "email"}));
    assert_eq!(
        body["nudges"],
        json!({"frequency_cap": 3, "frequency_window_days": 7.0, "holdout_percent": 10})
    );
    // A playbook with every default filled in, its steps in order.
    assert_eq!(
        body["playbooks"][0],
        json!({
            "name": "endorser_to_sponsor",
            "trigger": {"level_reached": "endorsing"},
            "cool_down_days": 14.0,
            "holdout_percent": 10,
            "steps": [
                {"action": "invite_as_event_guest", "channel": "email", "outcome": ["event_attended"]},
                {"action": "ask_to_sponsor_event", "channel": "email", "outcome": ["event_sponsored"]},
            ],
        })
    );
    assert_eq!(body["playbooks"][1]["cool_down_days"], 7.0, "the default cool-down");
    // Read-only: changing the rules is a deployment.
    for method in ["POST", "PUT", "DELETE"] {
        let refused = stack.http(method, "/v1/rules", json!({"hysteresis": 0.5})).await;
        assert_eq!(
            (refused.status, refused.content_type.as_str(), refused.allow.as_deref()),
            (405, "application/problem+json", Some("GET")),
            "{method}"
        );
    }
    assert_eq!(stack.http("GET", "/v1/rules", Value::Null).await.body, answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_function_serves_the_dashboard_page_and_its_assets() {
    let stack = Stack::start(at("2026-01-05T09:00:00Z")).await;
    let page = stack.http("GET", "/", Value::Null).await;
    assert_eq!((page.status, page.content_type.as_str()), (200, "text/html; charset=utf-8"));
    let html = page.body.as_str().unwrap_or_default();
    assert!(html.contains("assets/app.js") && html.contains("assets/app.css"), "{html}");
    let script = stack.http("GET", "/assets/app.js", Value::Null).await;
    assert_eq!(
        (script.status, script.content_type.as_str()),
        (200, "text/javascript; charset=utf-8")
    );
    assert!(
        script.body.as_str().is_some_and(|js| js.contains("v1/pyramid")),
        "the page reads the API"
    );
    let style = stack.http("GET", "/assets/app.css", Value::Null).await;
    assert_eq!((style.status, style.content_type.as_str()), (200, "text/css; charset=utf-8"));
    let missing = stack.http("GET", "/assets/other.js", Value::Null).await;
    assert_eq!((missing.status, missing.content_type.as_str()), (404, "application/problem+json"));
    let post = stack.http("POST", "/", Value::Null).await;
    assert_eq!((post.status, post.allow.as_deref()), (405, Some("GET, HEAD")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_listing_is_newest_first_across_shards_and_pages() {
    let start = at("2026-02-02T09:00:00Z");
    let stack = Stack::start(start.plus_days(10.0)).await;
    // Eight followers, a day apart; their ids spread them over the index's shards.
    let items = (0..8)
        .map(|n| {
            interaction(
                &format!("n-{n}"),
                &format!("fan{n}@example.com"),
                "newsletter_subscribed",
                start.plus_days(f64::from(n)),
            )
        })
        .collect();
    record(&stack, items).await;
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/customers?level=following&limit=3".to_string(),
            Some(c) => format!("/v1/customers?level=following&limit=3&cursor={c}"),
        };
        let page = stack.http("GET", &path, Value::Null).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        seen.extend(
            page.body["customers"]
                .as_array()
                .expect("customers")
                .iter()
                .map(|c| c["since"].as_str().unwrap_or_default().to_string()),
        );
        match page.body["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..8).rev().map(|n| start.plus_days(f64::from(n)).to_rfc3339()).collect();
    assert_eq!(seen, expected, "newest first over the whole listing, each once");

    // Movers up with the default window, paged while the clock moves: the cursor keeps the
    // window its first page used.
    let mut risen = 0;
    let mut cursor: Option<String> = None;
    for page_number in 0.. {
        stack.clock.set(start.plus_days(10.0).plus_millis(page_number * 60_000));
        let path = match &cursor {
            None => "/v1/customers?direction=up&limit=3".to_string(),
            Some(c) => format!("/v1/customers?direction=up&limit=3&cursor={c}"),
        };
        let page = stack.http("GET", &path, Value::Null).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        risen += page.body["customers"].as_array().map_or(0, Vec::len);
        match page.body["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(risen, 8, "every follower rose from observing, each listed once");
}
