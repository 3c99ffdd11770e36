//! Each tool's requests, against its documented API (see each function). Bodies are typed
//! `serde_json` values: a quote, an emoji or a backslash in a name or an explanation is encoded,
//! never spliced.

use crate::destination::{Region, Settings, Tool};
use crate::{BuildError, DeliveryContext, Destination, Method, Outbound, Plan, SkipReason};
use engagement::events::{DomainEvent, EngagementAtRisk, LevelChanged, NudgeRequested};
use engagement::{Level, Timestamp};
use md5::{Digest, Md5};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

/// The Klaviyo API revision these requests are written against (a required header): the one of
/// shared/contracts/vendors/klaviyo/openapi.json, which the contract test checks them against.
/// Klaviyo retires a revision two years after its release (2026-07-15: mid-2028).
pub const KLAVIYO_REVISION: &str = "2026-07-15";

/// Path segments: everything but RFC 3986's unreserved characters is escaped (an e-mail's `@`
/// and `+` included, so no server reads them as anything but data).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn segment(text: &str) -> String {
    utf8_percent_encode(text, PATH_SEGMENT).to_string()
}

/// Mailchimp's id of a list member: the MD5 of the lower-cased e-mail, in hex.
pub fn mailchimp_subscriber_hash(email: &str) -> String {
    hex(&Md5::digest(email.trim().to_lowercase().as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A ULID made from a fact, not from randomness: its time part is `at`, its 80 "random" bits
/// the SHA-256 of `fact`. Customer.io deduplicates events on an `id` that is a ULID, so the same
/// event delivered twice carries the same one.
pub fn ulid_of(fact: &str, at: Timestamp) -> String {
    use sha2::{Digest as _, Sha256};
    let millis = u128::from(u64::try_from(at.millis()).unwrap_or(0) & 0xFFFF_FFFF_FFFF);
    let digest = Sha256::digest(fact.as_bytes());
    let random = digest[..10].iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    let value = (millis << 80) | random;
    (0..26)
        .map(|i| CROCKFORD[((value >> (5 * (25 - i))) & 0x1F) as usize] as char)
        .collect()
}

/// When the fact an event states happened (for At Risk: the drop it warns of).
fn event_time(event: &DomainEvent) -> Timestamp {
    match event {
        DomainEvent::InteractionRecorded(e) => e.recorded_at,
        DomainEvent::LevelChanged(e) => e.since,
        DomainEvent::EngagementAtRisk(e) => e.drops_at,
        DomainEvent::NudgeRequested(e) => e.requested_at,
        DomainEvent::CustomerErased(e) => e.erased_at,
    }
}

fn detail_value(event: &DomainEvent) -> Value {
    serde_json::from_str(&event.detail_json()).unwrap_or(Value::Null)
}

fn origin(destination: &Destination, default: String) -> String {
    destination.base_url.clone().unwrap_or(default)
}

fn json_request(method: Method, url: String, body: &Value, idempotency_key: Option<String>) -> Outbound {
    Outbound {
        method,
        url,
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        // A `Value` serializes infallibly.
        body: serde_json::to_vec(body).unwrap_or_default(),
        idempotency_key,
    }
}

fn skip(reason: SkipReason) -> Result<Plan, BuildError> {
    Ok(Plan::Skip { reason })
}

/// Whether the destination's routing takes the event (erasures always pass: whatever a tool
/// was sent, it must be able to erase).
fn routed(destination: &Destination, event: &DomainEvent) -> bool {
    if !destination.detail_types().contains(&event.detail_type()) {
        return false;
    }
    let routing = &destination.routing;
    let level = match event {
        DomainEvent::NudgeRequested(nudge) => {
            if !routing.playbooks.is_empty() && !routing.playbooks.contains(&nudge.playbook) {
                return false;
            }
            if !routing.actions.is_empty() && !routing.actions.contains(&nudge.action) {
                return false;
            }
            Some(nudge.level)
        }
        DomainEvent::LevelChanged(change) => Some(change.to),
        DomainEvent::EngagementAtRisk(risk) => Some(risk.level),
        DomainEvent::CustomerErased(_) | DomainEvent::InteractionRecorded(_) => None,
    };
    level.is_none_or(|level| routing.levels.is_empty() || routing.levels.contains(&level))
}

/// Who the tool is about, once routing and consent allow it.
enum Subject {
    /// By e-mail (e-mail tools), with consent checked.
    Email(String),
    /// A tool that does not reach the customer itself (Slack, Standard Webhooks).
    Team,
    /// The person's e-mail, opened from the erasure, if it carried one.
    Erasure(Option<String>),
}

fn subject(tool: Tool, event: &DomainEvent, context: &DeliveryContext) -> Result<Subject, SkipReason> {
    match event {
        DomainEvent::CustomerErased(_) => Ok(Subject::Erasure(context.email.clone())),
        // The nudge was decided under consent on its own channel, with the handle it carries.
        DomainEvent::NudgeRequested(nudge) if tool.is_email_tool() => {
            if nudge.channel.as_str() == "email" {
                Ok(Subject::Email(nudge.handle.clone()))
            } else {
                Err(SkipReason::NoConsent) // consented on another channel, not by e-mail
            }
        }
        DomainEvent::NudgeRequested(_) => Ok(Subject::Team),
        _ if tool.is_email_tool() => {
            if !context.email_consented {
                return Err(SkipReason::NoConsent);
            }
            context.email.clone().map(Subject::Email).ok_or(SkipReason::NoEmail)
        }
        _ if context.channel_consented => Ok(Subject::Team),
        _ => Err(SkipReason::NoConsent),
    }
}

pub(crate) fn build(destination: &Destination, event: &DomainEvent, context: &DeliveryContext) -> Result<Plan, BuildError> {
    if !routed(destination, event) {
        return skip(SkipReason::NotRouted);
    }
    if !destination.tool.handled_detail_types().contains(&event.detail_type()) {
        return skip(SkipReason::Ignored);
    }
    let subject = match subject(destination.tool, event, context) {
        Ok(subject) => subject,
        Err(reason) => return skip(reason),
    };
    let requests = match (&destination.settings, subject) {
        (Settings::HubSpot, subject) => hubspot(destination, event, subject),
        (Settings::Mailchimp { list_id, server }, subject) => mailchimp(destination, list_id, server, event, subject),
        (Settings::Klaviyo, subject) => klaviyo(destination, event, subject),
        (Settings::CustomerIo { region }, subject) => customerio(destination, *region, event, subject),
        (
            Settings::Slack {
                include_names,
                customer_url_base,
            },
            _,
        ) => slack(destination, *include_names, customer_url_base.as_deref(), event, context),
        (Settings::Zendesk { subdomain, .. }, Subject::Email(email)) => zendesk(destination, subdomain, event, &email),
        (Settings::StandardWebhooks { url }, _) => Some(standard_webhook(url, event)),
        (Settings::Zendesk { .. }, _) => None,
    };
    match requests {
        Some(outbound) => Ok(Plan::Send(vec![outbound])),
        None => match event {
            DomainEvent::CustomerErased(_) if destination.tool.is_email_tool() => skip(SkipReason::NoEmail),
            _ => skip(SkipReason::Ignored),
        },
    }
}

/// HubSpot CRM v3: contacts upserted by e-mail (`POST /crm/v3/objects/contacts/batch/upsert`,
/// `idProperty: email`); an erasure is a GDPR delete (`POST /crm/v3/objects/contacts/gdpr-delete`).
/// Both are idempotent on the e-mail.
fn hubspot(destination: &Destination, event: &DomainEvent, subject: Subject) -> Option<Outbound> {
    let base = origin(destination, "https://api.hubapi.com".to_string());
    let key = Some(event.event_id());
    let email = match subject {
        Subject::Erasure(email) => {
            let body = json!({"objectId": email?, "idProperty": "email"});
            return Some(json_request(
                Method::Post,
                format!("{base}/crm/v3/objects/contacts/gdpr-delete"),
                &body,
                key,
            ));
        }
        Subject::Email(email) => email,
        Subject::Team => return None,
    };
    let properties = match event {
        DomainEvent::NudgeRequested(nudge) => json!({
            "engagement_level": nudge.level.name(),
            "engagement_next_action": nudge.action,
            "engagement_playbook": nudge.playbook,
        }),
        DomainEvent::LevelChanged(change) => json!({"engagement_level": change.to.name(), "engagement_at_risk": "false"}),
        DomainEvent::EngagementAtRisk(risk) => json!({"engagement_level": risk.level.name(), "engagement_at_risk": "true"}),
        _ => return None,
    };
    let body = json!({"inputs": [{"id": email, "idProperty": "email", "properties": properties}]});
    Some(json_request(
        Method::Post,
        format!("{base}/crm/v3/objects/contacts/batch/upsert"),
        &body,
        key,
    ))
}

fn pyramid_tag(level: Level) -> String {
    format!("pyramid:{}", level.name())
}

/// Mailchimp Marketing API 3.0: member tags (`POST /3.0/lists/{list_id}/members/{hash}/tags`,
/// idempotent: a tag set active twice is active); an erasure is
/// `POST /3.0/lists/{list_id}/members/{hash}/actions/delete-permanent`.
fn mailchimp(destination: &Destination, list_id: &str, server: &str, event: &DomainEvent, subject: Subject) -> Option<Outbound> {
    let base = origin(destination, format!("https://{server}.api.mailchimp.com"));
    let key = Some(event.event_id());
    let email = match subject {
        Subject::Erasure(email) => email?,
        Subject::Email(email) => email,
        Subject::Team => return None,
    };
    let member = format!(
        "{base}/3.0/lists/{}/members/{}",
        segment(list_id),
        mailchimp_subscriber_hash(&email)
    );
    let tag = |name: String, active: bool| json!({"name": name, "status": if active { "active" } else { "inactive" }});
    // One level tag active, the others inactive: journeys start on "tag added".
    let level_tags = |level: Level| Level::ALL.into_iter().map(move |l| tag(pyramid_tag(l), l == level));
    let tags: Vec<Value> = match event {
        DomainEvent::CustomerErased(_) => {
            return Some(Outbound {
                method: Method::Post,
                url: format!("{member}/actions/delete-permanent"),
                headers: Vec::new(),
                body: Vec::new(),
                idempotency_key: key,
            })
        }
        DomainEvent::NudgeRequested(nudge) => vec![tag(format!("nudge:{}", nudge.action), true)],
        DomainEvent::LevelChanged(change) => level_tags(change.to).chain([tag("pyramid:at_risk".to_string(), false)]).collect(),
        DomainEvent::EngagementAtRisk(risk) => level_tags(risk.level).chain([tag("pyramid:at_risk".to_string(), true)]).collect(),
        DomainEvent::InteractionRecorded(_) => return None,
    };
    Some(json_request(Method::Post, format!("{member}/tags"), &json!({"tags": tags}), key))
}

fn explanation(summary: &str, evidence: f64, threshold: f64, top_kinds: &[String]) -> Value {
    json!({"summary": summary, "evidence": evidence, "threshold": threshold, "top_kinds": top_kinds})
}

/// The properties an event carries into Klaviyo and Customer.io (ids, levels, the step).
fn event_properties(event: &DomainEvent) -> Option<Value> {
    Some(match event {
        DomainEvent::NudgeRequested(NudgeRequested {
            nudge_id,
            customer_id,
            playbook,
            step,
            action,
            channel,
            level,
            trigger,
            explanation: e,
            ..
        }) => json!({
            "nudge_id": nudge_id,
            "customer_id": customer_id.as_str(),
            "playbook": playbook,
            "step": step,
            "action": action,
            "channel": channel.as_str(),
            "level": level.name(),
            "trigger": trigger.to_string(),
            "explanation": explanation(&e.summary, e.evidence, e.threshold, &e.top_kinds),
        }),
        DomainEvent::LevelChanged(LevelChanged {
            customer_id,
            from,
            to,
            direction,
            since,
            explanation: e,
            ..
        }) => json!({
            "customer_id": customer_id.as_str(),
            "from": from.name(),
            "to": to.name(),
            "direction": direction.name(),
            "since": since.to_rfc3339(),
            "explanation": explanation(&e.summary, e.evidence, e.threshold, &e.top_kinds),
        }),
        DomainEvent::EngagementAtRisk(EngagementAtRisk {
            customer_id,
            level,
            drops_at,
            drops_to,
            explanation: e,
            ..
        }) => json!({
            "customer_id": customer_id.as_str(),
            "level": level.name(),
            "drops_at": drops_at.to_rfc3339(),
            "drops_to": drops_to.name(),
            "explanation": explanation(&e.summary, e.evidence, e.threshold, &e.top_kinds),
        }),
        DomainEvent::CustomerErased(_) | DomainEvent::InteractionRecorded(_) => return None,
    })
}

/// Klaviyo (JSON:API, `revision` header): an event per fact (`POST /api/events`, the metric
/// named by the detail-type, `unique_id` the event id so a redelivery is not counted twice); an
/// erasure is a data-privacy deletion job (`POST /api/data-privacy-deletion-jobs`).
fn klaviyo(destination: &Destination, event: &DomainEvent, subject: Subject) -> Option<Outbound> {
    let base = origin(destination, "https://a.klaviyo.com".to_string());
    let (path, body, key) = match subject {
        Subject::Erasure(email) => (
            "/api/data-privacy-deletion-jobs",
            json!({"data": {"type": "data-privacy-deletion-job", "attributes": {
                "profile": {"data": {"type": "profile", "attributes": {"email": email?}}}
            }}}),
            event.event_id(),
        ),
        Subject::Email(email) => {
            let unique_id = match event {
                DomainEvent::NudgeRequested(nudge) => nudge.nudge_id.clone(),
                _ => event.event_id(),
            };
            (
                "/api/events",
                json!({"data": {"type": "event", "attributes": {
                    "properties": event_properties(event)?,
                    "time": event_time(event).to_rfc3339(),
                    "unique_id": unique_id,
                    "metric": {"data": {"type": "metric", "attributes": {"name": event.detail_type()}}},
                    "profile": {"data": {"type": "profile", "attributes": {"email": email}}},
                }}}),
                unique_id,
            )
        }
        Subject::Team => return None,
    };
    let mut outbound = json_request(Method::Post, format!("{base}{path}"), &body, Some(key));
    outbound.headers = vec![
        ("accept".to_string(), "application/vnd.api+json".to_string()),
        ("content-type".to_string(), "application/vnd.api+json".to_string()),
        ("revision".to_string(), KLAVIYO_REVISION.to_string()),
    ];
    Some(outbound)
}

/// Customer.io Track API v1: an event for the person identified by e-mail
/// (`POST /api/v1/customers/{email}/events`, `id` a ULID derived from the event, which
/// Customer.io deduplicates on); an erasure deletes the person (`DELETE /api/v1/customers/{email}`).
/// The workspace must identify people by e-mail (README).
fn customerio(destination: &Destination, region: Region, event: &DomainEvent, subject: Subject) -> Option<Outbound> {
    let host = match region {
        Region::Us => "https://track.customer.io",
        Region::Eu => "https://track-eu.customer.io",
    };
    let base = origin(destination, host.to_string());
    let key = event.event_id();
    match subject {
        Subject::Erasure(email) => Some(Outbound {
            method: Method::Delete,
            url: format!("{base}/api/v1/customers/{}", segment(&email?)),
            headers: Vec::new(),
            body: Vec::new(),
            idempotency_key: Some(key),
        }),
        Subject::Email(email) => {
            let id = ulid_of(&key, event_time(event));
            let body = json!({"name": event.detail_type(), "id": id, "data": event_properties(event)?});
            Some(json_request(
                Method::Post,
                format!("{base}/api/v1/customers/{}/events", segment(&email)),
                &body,
                Some(id),
            ))
        }
        Subject::Team => None,
    }
}

/// Slack's mrkdwn: `&`, `<` and `>` escaped, so a name cannot make a link or a mention.
fn mrkdwn(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Slack incoming webhook (the secret is its URL): a message to the community team with the
/// level, the next step and a link to the customer's page. Names only with `include_names`:
/// Slack keeps messages out of erasure's reach.
fn slack(
    destination: &Destination,
    include_names: bool,
    customer_url_base: Option<&str>,
    event: &DomainEvent,
    context: &DeliveryContext,
) -> Option<Outbound> {
    let customer_id = event.customer_id().as_str();
    let who = match (include_names, &context.name) {
        (true, Some(name)) => format!("{} ({customer_id})", mrkdwn(name)),
        _ => customer_id.to_string(),
    };
    let (headline, detail) = match event {
        DomainEvent::NudgeRequested(nudge) => (
            format!("Next step for {who}: *{}*", mrkdwn(&nudge.action)),
            format!(
                "Level *{}* · playbook `{}` step {} · by {}\n{}",
                nudge.level.name(),
                mrkdwn(&nudge.playbook),
                nudge.step,
                mrkdwn(nudge.channel.as_str()),
                mrkdwn(&nudge.explanation.summary)
            ),
        ),
        DomainEvent::LevelChanged(change) => (
            format!("{who} moved {} to *{}*", change.direction.name(), change.to.name()),
            format!("From {} · {}", change.from.name(), mrkdwn(&change.explanation.summary)),
        ),
        DomainEvent::EngagementAtRisk(risk) => (
            format!("{who} is at risk of dropping from *{}*", risk.level.name()),
            format!(
                "Drops to {} on {} · {}",
                risk.drops_to.name(),
                risk.drops_at.human_date(),
                mrkdwn(&risk.explanation.summary)
            ),
        ),
        DomainEvent::CustomerErased(_) | DomainEvent::InteractionRecorded(_) => return None,
    };
    let link = customer_url_base.map(|base| format!("{base}{}", segment(customer_id)));
    let mut text = format!("{headline}\n{detail}");
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("{headline}\n{detail}")}})];
    if let Some(link) = &link {
        text.push_str(&format!("\n{link}"));
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("<{link}|Open the customer's page>")}]}));
    }
    // The URL is the secret's; `authorize` sets it (a `base_url` stands in for it in tests).
    let url = destination.base_url.clone().unwrap_or_default();
    Some(json_request(
        Method::Post,
        url,
        &json!({"text": text, "blocks": blocks}),
        Some(event.event_id()),
    ))
}

/// Zendesk Support: a ticket for the step (`POST /api/v2/tickets`), the customer as requester,
/// the explanation as a private note (a public comment would e-mail it to the customer),
/// `Idempotency-Key` the nudge id so a retry creates no second ticket.
fn zendesk(destination: &Destination, subdomain: &str, event: &DomainEvent, email: &str) -> Option<Outbound> {
    let DomainEvent::NudgeRequested(nudge) = event else {
        return None;
    };
    let base = origin(destination, format!("https://{subdomain}.zendesk.com"));
    let tag = |text: &str| -> String {
        text.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .collect()
    };
    let body = json!({"ticket": {
        "subject": format!("{} ({} step {})", nudge.action.replace('_', " "), nudge.playbook, nudge.step),
        "comment": {
            "body": format!(
                "Pyramid asks for this step: {} (playbook {}, step {}).\nCustomer {} is at level {}.\n{}",
                nudge.action, nudge.playbook, nudge.step, nudge.customer_id, nudge.level.name(), nudge.explanation.summary
            ),
            "public": false,
        },
        "requester": {"email": email},
        "priority": "high",
        "external_id": nudge.nudge_id,
        "tags": ["pyramid", format!("pyramid_{}", tag(&nudge.playbook)), format!("pyramid_{}", tag(&nudge.action))],
    }});
    let mut outbound = json_request(Method::Post, format!("{base}/api/v2/tickets"), &body, Some(nudge.nudge_id.clone()));
    outbound.headers.push(("idempotency-key".to_string(), nudge.nudge_id.clone()));
    Some(outbound)
}

/// Standard Webhooks: the event as `{"type", "timestamp", "data"}` (the detail-type, when the
/// fact happened, the detail), `webhook-id` `msg_<event id>` (receivers deduplicate on it);
/// `authorize` signs it.
fn standard_webhook(url: &str, event: &DomainEvent) -> Outbound {
    let body = json!({
        "type": event.detail_type(),
        "timestamp": event_time(event).to_rfc3339(),
        // The sealed e-mail is for the tools this crate builds for; a receiver cannot open it.
        "data": detail_value(&engagement::erasure::scrubbed(event)),
    });
    json_request(Method::Post, url.to_string(), &body, Some(format!("msg_{}", event.event_id())))
}
