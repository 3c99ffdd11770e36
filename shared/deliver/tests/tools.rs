//! Each tool's requests for each event, exactly: method, URL, headers, body.

use engagement::events::{
    CustomerErased, DomainEvent, EngagementAtRisk, EventExplanation, LevelChanged, NudgeRequested, NUDGE_REQUESTED_SCHEMA_VERSION,
    SCHEMA_VERSION,
};
use engagement::{Channel, CustomerId, Direction, Level, Timestamp, Trigger};
use engagement_deliver::{
    authorize, build, mailchimp_subscriber_hash, parse_destinations, DeliveryContext, Destination, Method, Outbound, Plan, SkipReason,
};
use serde_json::{json, Value};

/// A quote, an emoji and a backslash: they must arrive as they are.
const TRICKY: &str = "Ada \"the\" 🎉 C:\\path";
const EMAIL: &str = "ada@example.com";
const AT: Timestamp = Timestamp(1_780_315_200_000); // 2026-06-01T12:00:00Z

fn explanation() -> EventExplanation {
    EventExplanation {
        summary: format!("Contributing: {TRICKY}"),
        evidence: 3.5,
        threshold: 3.0,
        top_kinds: vec!["event_attended".into()],
    }
}

fn nudge_on(channel: &str, handle: &str) -> DomainEvent {
    DomainEvent::NudgeRequested(NudgeRequested {
        schema_version: NUDGE_REQUESTED_SCHEMA_VERSION,
        nudge_id: "nud_1".into(),
        customer_id: CustomerId("cus_1".into()),
        playbook: "service_recovery".into(),
        step: 1,
        action: "open_priority_support_case".into(),
        channel: Channel::parse(channel).expect("channel"),
        handle: handle.into(),
        level: Level::Contributing,
        trigger: Trigger::Interaction("complaint_opened".into()),
        explanation: explanation(),
        requested_at: AT,
    })
}

fn nudge() -> DomainEvent {
    nudge_on("email", EMAIL)
}

fn level_changed() -> DomainEvent {
    DomainEvent::LevelChanged(LevelChanged {
        schema_version: SCHEMA_VERSION,
        customer_id: CustomerId("cus_1".into()),
        from: Level::Endorsing,
        to: Level::Contributing,
        direction: Direction::Up,
        since: AT,
        drops_at: None,
        at_risk_at: None,
        explanation: explanation(),
    })
}

fn at_risk() -> DomainEvent {
    DomainEvent::EngagementAtRisk(EngagementAtRisk {
        schema_version: SCHEMA_VERSION,
        customer_id: CustomerId("cus_1".into()),
        level: Level::Contributing,
        drops_at: AT,
        drops_to: Level::Endorsing,
        explanation: explanation(),
    })
}

fn erased() -> DomainEvent {
    DomainEvent::CustomerErased(CustomerErased {
        schema_version: 2,
        customer_id: CustomerId("cus_1".into()),
        erased_at: AT,
        sealed_contact: Some("c2VhbGVk".into()),
    })
}

fn consented() -> DeliveryContext {
    DeliveryContext {
        email: Some(EMAIL.into()),
        email_consented: true,
        channel_consented: true,
        name: Some(TRICKY.into()),
    }
}

fn erasure_context() -> DeliveryContext {
    DeliveryContext {
        email: Some(EMAIL.into()),
        ..DeliveryContext::default()
    }
}

fn destination(table: &str) -> Destination {
    let mut destinations = parse_destinations(&format!("[destinations.d]\n{table}")).expect("valid destination");
    destinations.remove(0)
}

fn one(destination: &Destination, event: &DomainEvent, context: &DeliveryContext) -> Outbound {
    match build(destination, event, context).expect("builds") {
        Plan::Send(mut requests) => {
            assert_eq!(requests.len(), 1);
            requests.remove(0)
        }
        Plan::Skip { reason } => panic!("skipped: {reason}"),
    }
}

fn skipped(destination: &Destination, event: &DomainEvent, context: &DeliveryContext) -> SkipReason {
    match build(destination, event, context).expect("builds") {
        Plan::Skip { reason } => reason,
        Plan::Send(_) => panic!("sent"),
    }
}

fn body(outbound: &Outbound) -> Value {
    serde_json::from_slice(&outbound.body).expect("a JSON body")
}

fn headers(outbound: &Outbound) -> Vec<(&str, &str)> {
    outbound.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn summary() -> String {
    format!("Contributing: {TRICKY}")
}

fn explanation_json() -> Value {
    json!({"summary": summary(), "evidence": 3.5, "threshold": 3.0, "top_kinds": ["event_attended"]})
}

#[test]
fn mailchimp_hashes_as_its_documentation_shows() {
    // Mailchimp's docs: the subscriber hash of "Urist.McVankab@freddiesjokes.com".
    assert_eq!(
        mailchimp_subscriber_hash("Urist.McVankab@freddiesjokes.com"),
        "62eeb292278cc15f5817cb78f7790b08"
    );
}

#[test]
fn hubspot_upserts_by_email_and_gdpr_deletes() {
    let hubspot = destination("tool = \"hubspot\"");
    let request = one(&hubspot, &nudge(), &DeliveryContext::default());
    assert_eq!(request.method, Method::Post);
    assert_eq!(request.url, "https://api.hubapi.com/crm/v3/objects/contacts/batch/upsert");
    assert_eq!(headers(&request), [("content-type", "application/json")]);
    assert_eq!(
        body(&request),
        json!({"inputs": [{"id": EMAIL, "idProperty": "email", "properties": {
            "engagement_level": "contributing",
            "engagement_next_action": "open_priority_support_case",
            "engagement_playbook": "service_recovery",
        }}]})
    );
    let request = one(&hubspot, &level_changed(), &consented());
    assert_eq!(
        body(&request)["inputs"][0]["properties"],
        json!({"engagement_level": "contributing", "engagement_at_risk": "false"})
    );
    let request = one(&hubspot, &at_risk(), &consented());
    assert_eq!(
        body(&request)["inputs"][0]["properties"],
        json!({"engagement_level": "contributing", "engagement_at_risk": "true"})
    );
    let request = one(&hubspot, &erased(), &erasure_context());
    assert_eq!(request.url, "https://api.hubapi.com/crm/v3/objects/contacts/gdpr-delete");
    assert_eq!(body(&request), json!({"objectId": EMAIL, "idProperty": "email"}));

    let mut secured = one(&hubspot, &nudge(), &DeliveryContext::default());
    authorize(&hubspot, &mut secured, "pat-na1-secret", AT).expect("authorized");
    assert_eq!(secured.header("authorization"), Some("Bearer pat-na1-secret"));
}

#[test]
fn mailchimp_tags_the_member_and_deletes_it_permanently() {
    let mailchimp = destination("tool = \"mailchimp\"\nlist_id = \"57afe96172\"\nserver = \"us21\"");
    let member = format!(
        "https://us21.api.mailchimp.com/3.0/lists/57afe96172/members/{}",
        mailchimp_subscriber_hash(EMAIL)
    );
    let request = one(&mailchimp, &nudge(), &DeliveryContext::default());
    assert_eq!(
        (request.method, request.url.as_str()),
        (Method::Post, format!("{member}/tags").as_str())
    );
    assert_eq!(
        body(&request),
        json!({"tags": [{"name": "nudge:open_priority_support_case", "status": "active"}]})
    );

    let request = one(&mailchimp, &level_changed(), &consented());
    let tags = body(&request)["tags"].as_array().expect("tags").clone();
    let active: Vec<&str> = tags
        .iter()
        .filter(|t| t["status"] == "active")
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(active, ["pyramid:contributing"]);
    assert_eq!(tags.len(), 7, "every other pyramid tag inactive, and at_risk");
    assert!(tags.contains(&json!({"name": "pyramid:endorsing", "status": "inactive"})));
    assert!(tags.contains(&json!({"name": "pyramid:at_risk", "status": "inactive"})));

    let tags = body(&one(&mailchimp, &at_risk(), &consented()))["tags"].clone();
    assert!(tags
        .as_array()
        .expect("tags")
        .contains(&json!({"name": "pyramid:at_risk", "status": "active"})));

    let request = one(&mailchimp, &erased(), &erasure_context());
    assert_eq!(request.url, format!("{member}/actions/delete-permanent"));
    assert_eq!((request.method, request.body.len()), (Method::Post, 0));

    let mut secured = request;
    authorize(&mailchimp, &mut secured, "key-us21", AT).expect("authorized");
    assert_eq!(secured.header("authorization"), Some("Basic YW55c3RyaW5nOmtleS11czIx"));
    // anystring:key-us21
}

#[test]
fn klaviyo_creates_events_with_a_unique_id_and_deletion_jobs() {
    let klaviyo = destination("tool = \"klaviyo\"");
    let request = one(&klaviyo, &nudge(), &DeliveryContext::default());
    assert_eq!(
        (request.method, request.url.as_str()),
        (Method::Post, "https://a.klaviyo.com/api/events")
    );
    assert_eq!(
        headers(&request),
        [
            ("accept", "application/vnd.api+json"),
            ("content-type", "application/vnd.api+json"),
            ("revision", "2026-07-15")
        ]
    );
    assert_eq!(
        body(&request),
        json!({"data": {"type": "event", "attributes": {
            "properties": {
                "nudge_id": "nud_1", "customer_id": "cus_1", "playbook": "service_recovery", "step": 1,
                "action": "open_priority_support_case", "channel": "email", "level": "contributing",
                "trigger": "interaction:complaint_opened", "explanation": explanation_json(),
            },
            "time": "2026-06-01T12:00:00Z",
            "unique_id": "nud_1",
            "metric": {"data": {"type": "metric", "attributes": {"name": "Nudge Requested"}}},
            "profile": {"data": {"type": "profile", "attributes": {"email": EMAIL}}},
        }}})
    );
    let changed = body(&one(&klaviyo, &level_changed(), &consented()));
    assert_eq!(
        changed["data"]["attributes"]["metric"]["data"]["attributes"]["name"],
        "Level Changed"
    );
    assert_eq!(changed["data"]["attributes"]["unique_id"], level_changed().event_id());
    assert_eq!(changed["data"]["attributes"]["properties"]["to"], "contributing");
    let risk = body(&one(&klaviyo, &at_risk(), &consented()));
    assert_eq!(
        risk["data"]["attributes"]["metric"]["data"]["attributes"]["name"],
        "Engagement At Risk"
    );

    let request = one(&klaviyo, &erased(), &erasure_context());
    assert_eq!(request.url, "https://a.klaviyo.com/api/data-privacy-deletion-jobs");
    assert_eq!(
        body(&request),
        json!({"data": {"type": "data-privacy-deletion-job", "attributes": {
            "profile": {"data": {"type": "profile", "attributes": {"email": EMAIL}}}
        }}})
    );
    let mut secured = request;
    authorize(&klaviyo, &mut secured, "pk_secret", AT).expect("authorized");
    assert_eq!(secured.header("authorization"), Some("Klaviyo-API-Key pk_secret"));
}

#[test]
fn customerio_tracks_an_event_per_fact_and_deletes_the_person() {
    let customerio = destination("tool = \"customerio\"\nregion = \"eu\"");
    let request = one(
        &customerio,
        &nudge_on("email", "ada+pyramid@example.com"),
        &DeliveryContext::default(),
    );
    assert_eq!(request.method, Method::Post);
    assert_eq!(
        request.url,
        "https://track-eu.customer.io/api/v1/customers/ada%2Bpyramid%40example.com/events"
    );
    let sent = body(&request);
    assert_eq!(sent["name"], "Nudge Requested");
    assert_eq!(sent["data"]["explanation"]["summary"], summary());
    let id = sent["id"].as_str().expect("id");
    assert_eq!(id.len(), 26, "a ULID");
    assert!(id.starts_with("01KT"), "its time part is the nudge's: {id}");
    assert_eq!(request.idempotency_key.as_deref(), Some(id));
    let again = one(
        &customerio,
        &nudge_on("email", "ada+pyramid@example.com"),
        &DeliveryContext::default(),
    );
    assert_eq!(again, request, "the same nudge, the same request (Customer.io deduplicates on id)");

    let request = one(&customerio, &erased(), &erasure_context());
    assert_eq!(
        (request.method, request.url.as_str()),
        (Method::Delete, "https://track-eu.customer.io/api/v1/customers/ada%40example.com")
    );
    let mut secured = request;
    authorize(&customerio, &mut secured, "site:key", AT).expect("authorized");
    assert_eq!(secured.header("authorization"), Some("Basic c2l0ZTprZXk="));
    assert!(authorize(&customerio, &mut secured, "no-colon", AT).is_err());
}

#[test]
fn slack_says_the_level_and_the_next_step_without_names_by_default() {
    let slack = destination("tool = \"slack\"\ncustomer_url_base = \"https://pyramid.example.com/customers/\"");
    let mut request = one(&slack, &nudge(), &consented());
    let sent = body(&request);
    let text = sent["text"].as_str().expect("text");
    assert!(
        text.contains("*open_priority_support_case*") && text.contains("Level *contributing*"),
        "{text}"
    );
    assert!(text.contains("https://pyramid.example.com/customers/cus_1"), "{text}");
    assert!(text.starts_with("Next step for cus_1: "), "no name unless include_names: {text}");
    assert!(text.contains(&summary()), "the explanation intact: {text}");
    assert_eq!(
        sent["blocks"][1]["elements"][0]["text"],
        "<https://pyramid.example.com/customers/cus_1|Open the customer's page>"
    );
    authorize(&slack, &mut request, "https://hooks.slack.com/services/T0/B0/x", AT).expect("authorized");
    assert_eq!(request.url, "https://hooks.slack.com/services/T0/B0/x");
    assert_eq!(request.header("authorization"), None);

    let named = destination("tool = \"slack\"\ninclude_names = true");
    let text = body(&one(&named, &nudge(), &consented()))["text"]
        .as_str()
        .expect("text")
        .to_string();
    assert!(text.starts_with("Next step for Ada \"the\" 🎉 C:\\path (cus_1)"), "{text}");

    assert_eq!(
        skipped(&slack, &level_changed(), &consented()),
        SkipReason::NotRouted,
        "level changes are opt-in"
    );
    let opted = destination("tool = \"slack\"\ndetail_types = [\"Level Changed\"]");
    assert!(body(&one(&opted, &level_changed(), &consented()))["text"]
        .as_str()
        .expect("text")
        .starts_with("cus_1 moved up to *contributing*"));
    assert_eq!(
        skipped(&opted, &level_changed(), &DeliveryContext::default()),
        SkipReason::NoConsent
    );
    assert_eq!(skipped(&slack, &erased(), &erasure_context()), SkipReason::NotRouted);
}

#[test]
fn zendesk_opens_a_ticket_once_per_nudge() {
    let zendesk = destination("tool = \"zendesk\"\nsubdomain = \"acme\"\nemail = \"agent@acme.example\"");
    let request = one(&zendesk, &nudge(), &DeliveryContext::default());
    assert_eq!(
        (request.method, request.url.as_str()),
        (Method::Post, "https://acme.zendesk.com/api/v2/tickets")
    );
    assert_eq!(
        headers(&request),
        [("content-type", "application/json"), ("idempotency-key", "nud_1")]
    );
    let sent = body(&request);
    assert_eq!(sent["ticket"]["requester"], json!({"email": EMAIL}));
    assert_eq!(
        sent["ticket"]["comment"]["public"], false,
        "the explanation is not e-mailed to the customer"
    );
    assert!(sent["ticket"]["comment"]["body"].as_str().expect("body").ends_with(&summary()));
    assert_eq!(sent["ticket"]["external_id"], "nud_1");
    let mut secured = request;
    authorize(&zendesk, &mut secured, "tok", AT).expect("authorized");
    assert_eq!(
        secured.header("authorization"),
        Some("Basic YWdlbnRAYWNtZS5leGFtcGxlL3Rva2VuOnRvaw==")
    ); // agent@acme.example/token:tok

    let routed = destination("tool = \"zendesk\"\nsubdomain = \"acme\"\nemail = \"a@acme.example\"\nplaybooks = [\"other\"]");
    assert_eq!(skipped(&routed, &nudge(), &DeliveryContext::default()), SkipReason::NotRouted);
    // By default only service recovery opens tickets.
    let DomainEvent::NudgeRequested(mut other) = nudge() else {
        unreachable!()
    };
    other.playbook = "welcome".into();
    assert_eq!(
        skipped(&zendesk, &DomainEvent::NudgeRequested(other), &DeliveryContext::default()),
        SkipReason::NotRouted
    );
}

#[test]
fn standard_webhooks_carry_the_event_signed() {
    let hooks = destination("tool = \"standard-webhooks\"\nurl = \"https://hooks.example.com/pyramid\"");
    let mut request = one(&hooks, &nudge(), &DeliveryContext::default());
    assert_eq!(request.url, "https://hooks.example.com/pyramid");
    let sent = body(&request);
    assert_eq!(sent["type"], "Nudge Requested");
    assert_eq!(sent["timestamp"], "2026-06-01T12:00:00Z");
    assert_eq!(sent["data"], serde_json::from_str::<Value>(&nudge().detail_json()).expect("detail"));
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    authorize(&hooks, &mut request, secret, AT).expect("authorized");
    let id = format!("msg_{}", nudge().event_id());
    assert_eq!(request.header("webhook-id"), Some(id.as_str()));
    assert_eq!(request.header("webhook-timestamp"), Some("1780315200"));
    let expected = engagement_deliver::sign_standard_webhook(secret, &id, 1_780_315_200, &request.body);
    assert_eq!(request.header("webhook-signature"), expected.as_deref());

    let erasure = body(&one(&hooks, &erased(), &DeliveryContext::default()));
    assert_eq!(
        erasure["data"],
        json!({"schema_version": 2, "customer_id": "cus_1", "erased_at": "2026-06-01T12:00:00Z"}),
        "no sealed contact"
    );
}

#[test]
fn no_update_for_a_customer_without_email_consent() {
    for table in [
        "tool = \"hubspot\"",
        "tool = \"klaviyo\"",
        "tool = \"customerio\"",
        "tool = \"mailchimp\"\nlist_id = \"a1\"\nserver = \"us1\"",
    ] {
        let tool = destination(table);
        let withdrawn = DeliveryContext {
            email_consented: false,
            ..consented()
        };
        assert_eq!(skipped(&tool, &level_changed(), &withdrawn), SkipReason::NoConsent, "{table}");
        assert_eq!(skipped(&tool, &at_risk(), &withdrawn), SkipReason::NoConsent, "{table}");
        let no_email = DeliveryContext {
            email: None,
            ..consented()
        };
        assert_eq!(skipped(&tool, &level_changed(), &no_email), SkipReason::NoEmail, "{table}");
        // Consented on another channel: the e-mail tools are not that channel.
        assert_eq!(
            skipped(&tool, &nudge_on("twitter", "ada"), &consented()),
            SkipReason::NoConsent,
            "{table}"
        );
        // An erasure goes out whatever the consent, but needs the e-mail to find the person.
        assert!(matches!(build(&tool, &erased(), &erasure_context()), Ok(Plan::Send(_))), "{table}");
        assert_eq!(
            skipped(&tool, &erased(), &DeliveryContext::default()),
            SkipReason::NoEmail,
            "{table}"
        );
    }
}

#[test]
fn routing_by_level_and_action() {
    let leaders = destination("tool = \"hubspot\"\nlevels = [\"leading\"]");
    assert_eq!(skipped(&leaders, &nudge(), &consented()), SkipReason::NotRouted);
    assert_eq!(skipped(&leaders, &level_changed(), &consented()), SkipReason::NotRouted);
    assert!(
        matches!(build(&leaders, &erased(), &erasure_context()), Ok(Plan::Send(_))),
        "erasures are never filtered"
    );
    let action = destination("tool = \"klaviyo\"\nactions = [\"open_priority_support_case\"]");
    assert!(matches!(build(&action, &nudge(), &consented()), Ok(Plan::Send(_))));
    let only_nudges = destination("tool = \"klaviyo\"\ndetail_types = [\"Nudge Requested\"]");
    assert_eq!(skipped(&only_nudges, &at_risk(), &consented()), SkipReason::NotRouted);
}

#[test]
fn a_base_url_replaces_the_tools_origin() {
    let local = destination("tool = \"hubspot\"\nbase_url = \"http://127.0.0.1:4010/\"");
    assert_eq!(
        one(&local, &nudge(), &consented()).url,
        "http://127.0.0.1:4010/crm/v3/objects/contacts/batch/upsert"
    );
}
