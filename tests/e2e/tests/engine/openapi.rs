//! The OpenAPI file against the real answers: every operation the file lists is exercised, every
//! answer's status is documented for its operation, and every body validates against the
//! documented schema (JSON Schema 2020-12, `additionalProperties: false` on responses, so a field
//! the file forgot fails too).

use engagement_e2e::{interaction, Answer, Stack};
use engagement_testkit::{at, workspace_root};
use serde_json::{json, Value};
use std::collections::BTreeSet;

struct Spec {
    document: Value,
    exercised: BTreeSet<(String, String)>,
    problems: Vec<String>,
}

impl Spec {
    fn load() -> Spec {
        let text = std::fs::read_to_string(workspace_root().join("functions/api/openapi.yaml")).expect("the OpenAPI file");
        let document: Value = serde_norway::from_str(&text).expect("valid YAML");
        assert_eq!(document["openapi"].as_str().map(|v| v.starts_with("3.1")), Some(true));
        Spec {
            document,
            exercised: BTreeSet::new(),
            problems: Vec::new(),
        }
    }

    /// Checks one answer against the operation at `template` (`/v1/customers/{id}`).
    fn check(&mut self, method: &str, template: &str, answer: &Answer) {
        let operation = &self.document["paths"][template][method.to_lowercase()];
        if operation.is_null() {
            self.problems.push(format!("{method} {template} is not in the file"));
            return;
        }
        self.exercised.insert((method.to_lowercase(), template.to_string()));
        let mut response = &operation["responses"][answer.status.to_string()];
        // Answers every operation shares (401, 429…) are `$ref`s into `components/responses`.
        if let Some(name) = response["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/responses/")) {
            response = &self.document["components"]["responses"][name];
        }
        if response.is_null() {
            self.problems.push(format!(
                "{method} {template} answered {} which the file does not list",
                answer.status
            ));
            return;
        }
        if answer.body.is_null() {
            if !response["content"].is_null() {
                self.problems
                    .push(format!("{method} {template} {}: the file promises a body", answer.status));
            }
            return;
        }
        let schema = &response["content"][&answer.content_type]["schema"];
        if schema.is_null() {
            self.problems.push(format!(
                "{method} {template} {}: no schema for {}",
                answer.status, answer.content_type
            ));
            return;
        }
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.document["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::draft202012::new(&root).expect("a valid schema");
        for error in validator.iter_errors(&answer.body) {
            self.problems.push(format!(
                "{method} {template} {}: {} at {}",
                answer.status,
                error,
                error.instance_path()
            ));
        }
    }

    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut all = BTreeSet::new();
        for (path, item) in self.document["paths"].as_object().expect("paths") {
            for method in ["get", "post", "put", "delete", "patch"] {
                if item.get(method).is_some() {
                    all.insert((method.to_string(), path.clone()));
                }
            }
        }
        all
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_matches_the_openapi_file() {
    let mut spec = Spec::load();
    let start = at("2026-01-05T09:00:00Z");
    let stack = Stack::start(start.plus_days(40.0)).await;
    let social = json!({"id": "o-3", "source": "e2e", "customer": {"channel": "twitter", "handle": "@oli", "name": "Oli"}, "kind": "testimonial_given", "occurred_at": start.plus_days(2.0).to_rfc3339(), "properties": {"url": "https://example.com/r/1"}});
    let batch = json!({"interactions": [
        interaction("o-1", "oli@example.com", "newsletter_subscribed", start),
        interaction("o-2", "oli@example.com", "event_attended", start.plus_days(1.0)),
        social,
    ]});
    let accepted = stack.http("POST", "/v1/interactions", batch.clone()).await;
    spec.check("POST", "/v1/interactions", &accepted);
    spec.check("POST", "/v1/interactions", &stack.http("POST", "/v1/interactions", batch).await);
    spec.check(
        "POST",
        "/v1/interactions",
        &stack.http("POST", "/v1/interactions", json!({"interactions": []})).await,
    );
    spec.check(
        "POST",
        "/v1/interactions",
        &stack.http_raw("POST", "/v1/interactions", Some("a=1"), "text/plain").await,
    );
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(1_100_000));
    spec.check(
        "POST",
        "/v1/interactions",
        &stack.http_raw("POST", "/v1/interactions", Some(&huge), "application/json").await,
    );
    stack.deliver().await;
    let email_id = accepted.body["interactions"][0]["customer_id"].as_str().expect("an id").to_string();
    let social_id = accepted.body["interactions"][2]["customer_id"].as_str().expect("an id").to_string();

    let customer = format!("/v1/customers/{email_id}");
    spec.check("GET", "/v1/customers/{id}", &stack.http("GET", &customer, Value::Null).await);
    spec.check(
        "GET",
        "/v1/customers/{id}",
        &stack.http("GET", &format!("{customer}?limit=1"), Value::Null).await,
    );
    spec.check(
        "GET",
        "/v1/customers/{id}",
        &stack
            .http("GET", &format!("{customer}?at={}", start.plus_days(1.5).to_rfc3339()), Value::Null)
            .await,
    );
    spec.check(
        "GET",
        "/v1/customers/{id}",
        &stack.http("GET", &format!("{customer}?limit=nope"), Value::Null).await,
    );
    spec.check(
        "GET",
        "/v1/customers/{id}",
        &stack.http("GET", "/v1/customers/cus_unknown", Value::Null).await,
    );
    spec.check(
        "GET",
        "/v1/customers/by-identity",
        &stack
            .http("GET", "/v1/customers/by-identity?channel=twitter&handle=%40oli", Value::Null)
            .await,
    );
    spec.check(
        "GET",
        "/v1/customers/by-identity",
        &stack.http("GET", "/v1/customers/by-identity?channel=email", Value::Null).await,
    );
    spec.check(
        "GET",
        "/v1/customers/by-identity",
        &stack
            .http(
                "GET",
                "/v1/customers/by-identity?channel=email&handle=nobody@example.com",
                Value::Null,
            )
            .await,
    );
    let page = stack.http("GET", "/v1/customers?limit=1", Value::Null).await;
    spec.check("GET", "/v1/customers", &page);
    let cursor = page.body["cursor"].as_str().expect("a next page");
    spec.check(
        "GET",
        "/v1/customers",
        &stack
            .http("GET", &format!("/v1/customers?limit=1&cursor={cursor}"), Value::Null)
            .await,
    );
    spec.check(
        "GET",
        "/v1/customers",
        &stack.http("GET", "/v1/customers?level=following&at_risk=true", Value::Null).await,
    );
    spec.check(
        "GET",
        "/v1/customers",
        &stack.http("GET", "/v1/customers?cursor=forged", Value::Null).await,
    );
    spec.check("GET", "/v1/pyramid", &stack.http("GET", "/v1/pyramid", Value::Null).await);
    spec.check("GET", "/v1/movers", &stack.http("GET", "/v1/movers", Value::Null).await);
    spec.check(
        "GET",
        "/v1/movers",
        &stack.http("GET", "/v1/movers?direction=down", Value::Null).await,
    );
    spec.check("GET", "/v1/movers", &stack.http("GET", "/v1/movers?since=soon", Value::Null).await);
    let yesterday = start.plus_days(39.0).to_rfc3339();
    spec.check(
        "GET",
        "/v1/pyramid",
        &stack.http("GET", &format!("/v1/pyramid?at={yesterday}"), Value::Null).await,
    );
    spec.check("GET", "/v1/pyramid", &stack.http("GET", "/v1/pyramid?at=then", Value::Null).await);
    spec.check(
        "GET",
        "/v1/pyramid/weekly",
        &stack.http("GET", "/v1/pyramid/weekly", Value::Null).await,
    );
    spec.check(
        "GET",
        "/v1/pyramid/weekly",
        &stack.http("GET", "/v1/pyramid/weekly?weeks=0", Value::Null).await,
    );
    spec.check(
        "GET",
        "/v1/customers",
        &stack.http("GET", "/v1/customers?direction=up", Value::Null).await,
    );
    spec.check(
        "GET",
        "/v1/nudges/outcomes",
        &stack.http("GET", "/v1/nudges/outcomes", Value::Null).await,
    );
    spec.check(
        "GET",
        "/v1/nudges/outcomes",
        &stack.http("POST", "/v1/nudges/outcomes", Value::Null).await,
    );
    spec.check("GET", "/v1/rules", &stack.http("GET", "/v1/rules", Value::Null).await);
    spec.check("GET", "/v1/rules", &stack.http("PUT", "/v1/rules", json!({})).await);

    let identities = format!("{customer}/identities");
    let link = json!({"channel": "twitter", "handle": "@oli"});
    spec.check(
        "POST",
        "/v1/customers/{id}/identities",
        &stack.http("POST", &identities, link.clone()).await,
    );
    spec.check(
        "POST",
        "/v1/customers/{id}/identities",
        &stack.http("POST", &identities, link).await,
    );
    spec.check(
        "POST",
        "/v1/customers/{id}/identities",
        &stack
            .http("POST", &identities, json!({"channel": "sms", "handle": "+44 20 7946 0000"}))
            .await,
    );
    spec.check(
        "POST",
        "/v1/customers/{id}/identities",
        &stack.http("POST", &identities, json!({"handle": 1})).await,
    );
    spec.check(
        "POST",
        "/v1/customers/{id}/identities",
        &stack
            .http(
                "POST",
                "/v1/customers/cus_unknown/identities",
                json!({"channel": "sms", "handle": "+1 555 0100"}),
            )
            .await,
    );
    spec.check(
        "GET",
        "/v1/customers/{id}",
        &stack.http("GET", &format!("/v1/customers/{social_id}"), Value::Null).await,
    );

    let consent = format!("{customer}/consent/email");
    spec.check(
        "PUT",
        "/v1/customers/{id}/consent/{channel}",
        &stack.http("PUT", &consent, json!({"granted": false})).await,
    );
    spec.check(
        "PUT",
        "/v1/customers/{id}/consent/{channel}",
        &stack.http("PUT", &consent, json!({})).await,
    );
    spec.check(
        "PUT",
        "/v1/customers/{id}/consent/{channel}",
        &stack
            .http("PUT", &format!("{customer}/consent/whatsapp"), json!({"granted": true}))
            .await,
    );
    spec.check(
        "PUT",
        "/v1/customers/{id}/consent/{channel}",
        &stack
            .http_raw("PUT", &consent, Some("granted=true"), "application/x-www-form-urlencoded")
            .await,
    );
    stack.deliver().await;
    spec.check("GET", "/v1/customers/{id}", &stack.http("GET", &customer, Value::Null).await);
    spec.check("GET", "/v1/customers/{id}", &stack.http("POST", &customer, Value::Null).await);
    spec.check("DELETE", "/v1/customers/{id}", &stack.http("DELETE", &customer, Value::Null).await);
    spec.check("DELETE", "/v1/customers/{id}", &stack.http("DELETE", &customer, Value::Null).await);

    // After the erasure: the period's transitions show who left.
    spec.check("GET", "/v1/transitions", &stack.http("GET", "/v1/transitions", Value::Null).await);
    spec.check(
        "GET",
        "/v1/transitions",
        &stack
            .http(
                "GET",
                &format!("/v1/transitions?from={yesterday}&to=2030-01-01T00:00:00Z"),
                Value::Null,
            )
            .await,
    );

    // The channels' webhooks: recorded, redelivered, ignored, refused; the URL check; the challenge.
    let merged = std::fs::read_to_string(workspace_root().join("shared/sources/fixtures/github/pull_request.closed.merged.json"))
        .expect("the fixture");
    let github = |body: &str, event: &str| {
        let signature = engagement_testkit::sign_github(engagement_e2e::SOURCE_SECRET, body.as_bytes());
        vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("x-github-event".to_string(), event.to_string()),
            ("x-github-delivery".to_string(), "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_string()),
            ("x-hub-signature-256".to_string(), signature),
        ]
    };
    let sources = "/v1/sources/{source}";
    for (body, event) in [
        (merged.as_str(), "pull_request"),
        (merged.as_str(), "pull_request"),
        (r#"{"zen": "Design for failure.", "hook_id": 1}"#, "ping"),
        ("{not json", "pull_request"),
        ("", "ping"),
    ] {
        let headers = github(body, event);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let answer = stack.http_with_headers("POST", "/v1/sources/github", Some(body), &headers).await;
        spec.check("POST", sources, &answer);
        let answer = stack.http_with_headers("GET", "/v1/sources/github", None, &headers).await;
        spec.check("GET", sources, &answer);
    }
    let unsigned = [("content-type", "application/json")];
    for path in ["/v1/sources/github", "/v1/sources/nowhere"] {
        spec.check("POST", sources, &stack.http_with_headers("POST", path, Some("{}"), &unsigned).await);
        spec.check("GET", sources, &stack.http_with_headers("GET", path, None, &unsigned).await);
    }
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(1024 * 1024));
    spec.check(
        "POST",
        sources,
        &stack.http_with_headers("POST", "/v1/sources/github", Some(&huge), &unsigned).await,
    );

    let missing: Vec<_> = spec.operations().difference(&spec.exercised).cloned().collect();
    assert!(missing.is_empty(), "operations in the file that no request exercised: {missing:?}");
    assert!(spec.problems.is_empty(), "{}", spec.problems.join("\n"));
}
