//! Every tool's requests against the tool's published contract. For each tool with an OpenAPI
//! description (shared/contracts/vendors/<tool>/, PROVENANCE.md there), a Prism mock validates
//! what `engagement_deliver` builds for every event type the tool handles, with the credentials
//! `authorize` adds (Prism checks the security scheme too): any non-2xx fails, with Prism's
//! findings. Slack (no OpenAPI) is checked against a JSON Schema written from its docs. A quote,
//! an emoji and a backslash in the customer's name and the explanation must arrive intact.

use engagement::events::{CustomerErased, DomainEvent, EngagementAtRisk, EventExplanation, LevelChanged, NudgeRequested};
use engagement::events::{CUSTOMER_ERASED, CUSTOMER_ERASED_SCHEMA_VERSION, NUDGE_REQUESTED_SCHEMA_VERSION, SCHEMA_VERSION};
use engagement::{Channel, CustomerId, Direction, Level, Timestamp, Trigger};
use engagement_deliver::{authorize, build, parse_destinations, DeliveryContext, Destination, Outbound, Plan, Tool};
use engagement_testkit::prism::Prism;
use engagement_testkit::workspace_root;
use serde_json::Value;

const SUMMARY: &str = "Rose to \"leading\" 🚀 after 12 answers in C:\\forum\\help";
const NAME: &str = "Zoë \"Z\" O'Brien 🎉 \\o/";
const EMAIL: &str = "zoe.obrien+pyramid@example.com";
/// MD5 of `EMAIL` (already lower-case), computed apart: Mailchimp's subscriber hash.
const EMAIL_MD5: &str = "9c285caa50da4880c32cd33b932de741";
const NOW: Timestamp = Timestamp(1_780_000_000_000);
const DAY: i64 = 86_400_000;

fn explanation() -> EventExplanation {
    EventExplanation {
        summary: SUMMARY.to_string(),
        evidence: 12.5,
        threshold: 10.0,
        top_kinds: vec!["forum_answer".to_string()],
    }
}

/// One event of each type a tool can be sent.
fn events() -> Vec<DomainEvent> {
    let customer_id = CustomerId("c-7f3a".to_string());
    vec![
        DomainEvent::NudgeRequested(NudgeRequested {
            schema_version: NUDGE_REQUESTED_SCHEMA_VERSION,
            nudge_id: "n-4b1d".to_string(),
            customer_id: customer_id.clone(),
            playbook: "service_recovery".to_string(),
            step: 1,
            action: "open_priority_support_case".to_string(),
            channel: Channel::parse("email").expect("a channel"),
            handle: EMAIL.to_string(),
            level: Level::Leading,
            trigger: Trigger::LevelReached(Level::Leading),
            explanation: explanation(),
            requested_at: NOW,
        }),
        DomainEvent::LevelChanged(LevelChanged {
            schema_version: SCHEMA_VERSION,
            customer_id: customer_id.clone(),
            from: Level::Owning,
            to: Level::Leading,
            direction: Direction::Up,
            since: NOW,
            drops_at: Some(Timestamp(NOW.0 + 90 * DAY)),
            at_risk_at: Some(Timestamp(NOW.0 + 60 * DAY)),
            explanation: explanation(),
        }),
        DomainEvent::EngagementAtRisk(EngagementAtRisk {
            schema_version: SCHEMA_VERSION,
            customer_id: customer_id.clone(),
            level: Level::Leading,
            drops_at: Timestamp(NOW.0 + 30 * DAY),
            drops_to: Level::Owning,
            explanation: explanation(),
        }),
        DomainEvent::CustomerErased(CustomerErased {
            schema_version: CUSTOMER_ERASED_SCHEMA_VERSION,
            customer_id,
            erased_at: NOW,
            // The handler opens it into the context's e-mail; `build` reads the context.
            sealed_contact: None,
        }),
    ]
}

/// What the handler would have read (or opened from the erasure): consented, with e-mail and name.
fn context() -> DeliveryContext {
    DeliveryContext {
        email: Some(EMAIL.to_string()),
        email_consented: true,
        channel_consented: true,
        name: Some(NAME.to_string()),
    }
}

/// A tool, its contract and a secret of the shape its `authorize` takes.
struct Contract {
    tool: Tool,
    spec: &'static str,
    settings: &'static str,
    secret: &'static str,
    /// Whether its bodies carry the explanation (and so must carry it intact).
    carries_explanation: bool,
}

const CONTRACTS: &[Contract] = &[
    Contract {
        tool: Tool::HubSpot,
        spec: "shared/contracts/vendors/hubspot/openapi.yaml",
        settings: "",
        secret: "pat-na1-11111111-2222-3333-4444-555555555555",
        carries_explanation: false,
    },
    Contract {
        tool: Tool::Mailchimp,
        spec: "shared/contracts/vendors/mailchimp/openapi.json",
        settings: "list_id = \"57afe96172\"\nserver = \"us21\"\n",
        secret: "0123456789abcdef0123456789abcdef-us21",
        carries_explanation: false,
    },
    Contract {
        tool: Tool::Klaviyo,
        spec: "shared/contracts/vendors/klaviyo/openapi.json",
        settings: "",
        secret: "pk_0123456789abcdef0123456789abcdef01",
        carries_explanation: true,
    },
    Contract {
        tool: Tool::CustomerIo,
        spec: "shared/contracts/vendors/customerio/openapi.yaml",
        settings: "region = \"eu\"\n",
        secret: "a1b2c3d4e5:0123456789abcdef0123",
        carries_explanation: true,
    },
    Contract {
        tool: Tool::Zendesk,
        spec: "shared/contracts/vendors/zendesk/openapi.yaml",
        settings: "subdomain = \"acme\"\nemail = \"agent@acme.example\"\n",
        secret: "0123456789abcdefghijABCDEFGHIJ0123456789",
        carries_explanation: true,
    },
];

/// `detail_types = [...]`: every event type `tool` handles.
fn all_handled(tool: Tool) -> String {
    let types: Vec<String> = tool.handled_detail_types().iter().map(|t| format!("{t:?}")).collect();
    format!("detail_types = [{}]", types.join(", "))
}

/// The destination of `tool` pointed at `base_url`, routed every event type the tool handles.
fn destination(tool: Tool, settings: &str, base_url: &str) -> Destination {
    let text = format!(
        "[destinations.under_test]\ntool = \"{}\"\nbase_url = \"{base_url}\"\n{}\n{settings}",
        tool.name(),
        all_handled(tool)
    );
    parse_destinations(&text).unwrap_or_else(|e| panic!("{text}\n{e}")).remove(0)
}

/// The authorized requests `destination` sends for every event it handles; each must be sent.
fn requests(destination: &Destination, secret: &str) -> Vec<(&'static str, Outbound)> {
    let mut all = Vec::new();
    for event in events() {
        if !destination.tool.handled_detail_types().contains(&event.detail_type()) {
            continue;
        }
        match build(destination, &event, &context()) {
            Ok(Plan::Send(outbounds)) => {
                assert!(
                    !outbounds.is_empty(),
                    "{}: nothing to send for {}",
                    destination.tool,
                    event.detail_type()
                );
                for mut outbound in outbounds {
                    authorize(destination, &mut outbound, secret, NOW).expect("a secret of the right shape");
                    all.push((event.detail_type(), outbound));
                }
            }
            other => panic!("{} handles {} but built {other:?}", destination.tool, event.detail_type()),
        }
    }
    all
}

fn strings(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(text) => found.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, found)),
        Value::Object(map) => map.values().for_each(|v| strings(v, found)),
        _ => {}
    }
}

/// Re-parses a body and checks the explanation arrived intact (quote, emoji and backslash).
fn check_content(tool: Tool, detail_type: &str, outbound: &Outbound, carries_explanation: bool) -> Result<(), String> {
    if outbound.body.is_empty() {
        return Ok(());
    }
    let body: Value = serde_json::from_slice(&outbound.body).map_err(|e| format!("{tool} {detail_type}: the body is not JSON ({e})"))?;
    let mut found = Vec::new();
    strings(&body, &mut found);
    // An erasure carries only whom to erase.
    let explained = carries_explanation && detail_type != CUSTOMER_ERASED;
    if explained && !found.iter().any(|s| s.contains(SUMMARY)) {
        return Err(format!("{tool} {detail_type}: the explanation did not arrive intact in {body}"));
    }
    Ok(())
}

/// Sends a request as it is; returns the status, Prism's `sl-violations` and the answer's body.
async fn send(client: &reqwest::Client, outbound: &Outbound) -> (u16, String, String) {
    let method = reqwest::Method::from_bytes(outbound.method.as_str().as_bytes()).expect("an HTTP method");
    let mut request = client.request(method, &outbound.url).body(outbound.body.clone());
    for (name, value) in &outbound.headers {
        request = request.header(name, value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{} {}: {e}", outbound.method, outbound.url));
    let status = response.status().as_u16();
    let violations = response
        .headers()
        .get("sl-violations")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response.text().await.unwrap_or_default();
    (status, violations, body)
}

#[tokio::test]
async fn every_tool_request_passes_its_vendor_contract() {
    let started = std::time::Instant::now();
    // Start-ups overlap: spawn every mock, then wait for each.
    let spawned: Vec<Prism> = CONTRACTS.iter().map(|c| Prism::spawn(c.spec)).collect();
    let mocks: Vec<Prism> = spawned.into_iter().map(Prism::ready).collect();
    eprintln!("{} Prism mocks listening after {:?}", mocks.len(), started.elapsed());
    let client = reqwest::Client::new();
    let mut failures = Vec::new();
    let mut sent = 0;
    for (contract, mock) in CONTRACTS.iter().zip(&mocks) {
        let destination = destination(contract.tool, contract.settings, &mock.base_url());
        for (detail_type, outbound) in requests(&destination, contract.secret) {
            if let Err(problem) = check_content(contract.tool, detail_type, &outbound, contract.carries_explanation) {
                failures.push(problem);
            }
            let (status, violations, body) = send(&client, &outbound).await;
            sent += 1;
            if !(200..300).contains(&status) {
                failures.push(format!(
                    "{} {detail_type}: {} {} -> {status}\n  violations: {violations}\n  answer: {body}\n  sent: {}",
                    contract.tool,
                    outbound.method,
                    outbound.url,
                    String::from_utf8_lossy(&outbound.body)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {sent} requests broke their contract:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{sent} requests passed their contracts after {:?}", started.elapsed());
}

/// The contracts can fail: Prism refuses a request without credentials and a body of the wrong
/// shape (so a pass above means the requests were checked, not waved through).
#[tokio::test]
async fn prism_refuses_what_breaks_a_contract() {
    let contract = &CONTRACTS[0];
    let mock = Prism::start(contract.spec);
    let destination = destination(contract.tool, contract.settings, &mock.base_url());
    let (_, good) = requests(&destination, contract.secret).remove(0);
    let client = reqwest::Client::new();

    let mut anonymous = good.clone();
    anonymous.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("authorization"));
    let (status, violations, _) = send(&client, &anonymous).await;
    assert_eq!(status, 401, "{violations}");

    let mut body: Value = serde_json::from_slice(&good.body).expect("JSON");
    body["inputs"][0]["properties"]["engagement_level"] = Value::from(6); // HubSpot takes strings only
    let mut wrong = good.clone();
    wrong.body = serde_json::to_vec(&body).expect("JSON");
    let (status, violations, _) = send(&client, &wrong).await;
    assert_eq!(status, 422, "{violations}");
    assert!(violations.contains("engagement_level"), "{violations}");
}

fn slack_schema() -> jsonschema::Validator {
    let path = workspace_root().join("shared/contracts/vendors/slack/incoming-webhook.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("the Slack schema")).expect("JSON");
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

/// Slack publishes no OpenAPI for incoming webhooks: each message must match the JSON Schema
/// written from its docs, go to the webhook URL (the secret), and show the name and the
/// explanation intact (with `include_names`).
#[test]
fn slack_messages_match_the_incoming_webhook_schema() {
    let validator = slack_schema();
    let webhook = "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX";
    let text = format!(
        "[destinations.team]\ntool = \"slack\"\ninclude_names = true\ncustomer_url_base = \"https://pyramid.example.com/customers/\"\n{}\n",
        all_handled(Tool::Slack)
    );
    let destination = parse_destinations(&text).expect("valid").remove(0);
    let sent = requests(&destination, webhook);
    assert_eq!(sent.len(), Tool::Slack.handled_detail_types().len());
    for (detail_type, outbound) in sent {
        assert_eq!(outbound.url, webhook, "{detail_type}: Slack's webhook URL is the secret");
        assert_eq!(outbound.header("content-type"), Some("application/json"));
        let body: Value = serde_json::from_slice(&outbound.body).expect("JSON");
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{detail_type}: {body}\n{}", errors.join("\n"));
        let message = body["text"].as_str().expect("text");
        assert!(message.contains(SUMMARY), "{detail_type}: {message}");
        assert!(message.contains(NAME), "{detail_type}: {message}");
    }
}

/// The Slack schema is strict enough to catch a mistake: a misspelt block type, a field Slack
/// does not know, a section over Slack's 3000 characters.
#[test]
fn the_slack_schema_refuses_what_slack_refuses() {
    let validator = slack_schema();
    let section =
        |kind: &str, text: &str| serde_json::json!({"text": "ok", "blocks": [{"type": kind, "text": {"type": "mrkdwn", "text": text}}]});
    assert!(validator.is_valid(&section("section", "ok")));
    assert!(!validator.is_valid(&section("sektion", "ok")));
    assert!(!validator.is_valid(&section("section", &"x".repeat(3001))));
    assert!(!validator.is_valid(&serde_json::json!({"txt": "ok"})));
}

/// Klaviyo validates a request against the revision its `revision` header names: the header must
/// be the revision of the description the requests are checked against (and a supported one).
#[test]
fn klaviyo_requests_name_the_revision_of_their_contract() {
    let contract = &CONTRACTS[2];
    let path = workspace_root().join(contract.spec);
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("the Klaviyo description")).expect("JSON");
    let revision = spec["info"]["version"].as_str().expect("info.version");
    let destination = destination(contract.tool, contract.settings, "http://127.0.0.1:9");
    for (detail_type, outbound) in requests(&destination, contract.secret) {
        assert_eq!(outbound.header("revision"), Some(revision), "{detail_type}");
    }
}

/// Mailchimp finds the member by the MD5 of the lower-cased e-mail (computed apart here).
#[test]
fn mailchimp_addresses_the_member_by_the_md5_of_the_email() {
    let contract = &CONTRACTS[1];
    let destination = destination(contract.tool, contract.settings, "http://127.0.0.1:9");
    for (detail_type, outbound) in requests(&destination, contract.secret) {
        let member = format!("http://127.0.0.1:9/3.0/lists/57afe96172/members/{EMAIL_MD5}/");
        assert!(outbound.url.starts_with(&member), "{detail_type}: {}", outbound.url);
    }
}
