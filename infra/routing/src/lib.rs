//! Routing by the deployed stack's own rules: the EventBridge rules of `infra/template.yaml` are
//! read (their event patterns, targets and the sweep's schedule) and matched with EventBridge
//! pattern semantics (quamina: exact, prefix, anything-but, numeric, exists…). Changing a pattern
//! in the template changes where `pyramid serve` and the e2e tests route events; there is no
//! second copy. A crate of its own (not `engagement-aws`): the Lambdas, routed by EventBridge
//! itself, need neither the template nor quamina in their binaries.

use quamina::Quamina;
use serde_json::Value as Json;
use serde_norway::Value as Yaml;
use std::collections::BTreeMap;
use std::time::Duration;

/// The template, embedded at build time so the binary works from any directory.
pub const TEMPLATE: &str = include_str!("../../template.yaml");

/// Where a rule sends matching events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Target {
    Rescore,
    Nudge,
    /// The destinations (marketing and support tools): in the cloud a rule targets each
    /// destination's SQS queue, read by the `deliver` function; here `pyramid serve`'s outbox
    /// runs the same handler for every configured destination. An API destination (the
    /// template before destinations) routes here too. Journals written before the rename say
    /// `Webhooks`.
    #[serde(alias = "Webhooks")]
    Deliver,
}

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("infra/template.yaml is not valid YAML: {0}")]
    Yaml(String),
    #[error("rule {rule}: {reason}")]
    Rule { rule: String, reason: String },
    #[error("infra/template.yaml routes no events")]
    NoRules,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub rule: String,
    /// The event pattern, as EventBridge JSON.
    pub pattern: Json,
    pub targets: Vec<Target>,
}

/// The routes and the schedule of a template.
pub struct Router {
    pub routes: Vec<Route>,
    /// How often the sweep runs (the schedule rule's rate).
    pub sweep_every: Option<Duration>,
    matcher: Quamina<String>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes)
            .field("sweep_every", &self.sweep_every)
            .finish()
    }
}

fn to_json(value: &Yaml, parameters: &BTreeMap<String, Yaml>) -> Result<Json, String> {
    Ok(match value {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::Bool(*b),
        Yaml::Number(n) => serde_json::to_value(n).map_err(|e| e.to_string())?,
        Yaml::String(s) => Json::String(s.clone()),
        Yaml::Sequence(items) => Json::Array(items.iter().map(|i| to_json(i, parameters)).collect::<Result<_, _>>()?),
        Yaml::Mapping(map) => {
            // `{Ref: Name}` in long form.
            if let (1, Some(Yaml::String(name))) = (map.len(), map.get("Ref")) {
                return resolve_ref(name, parameters);
            }
            let mut object = serde_json::Map::new();
            for (key, value) in map {
                let key = key.as_str().ok_or("a mapping key that is not text")?;
                object.insert(key.to_string(), to_json(value, parameters)?);
            }
            Json::Object(object)
        }
        Yaml::Tagged(tagged) if tagged.tag == "Ref" => match &tagged.value {
            Yaml::String(name) => resolve_ref(name, parameters)?,
            _ => return Err("!Ref of something that is not a name".into()),
        },
        Yaml::Tagged(tagged) => return Err(format!("{} in an event pattern is not supported locally", tagged.tag)),
    })
}

/// A `!Ref` to a parameter is its default (the one-machine mode deploys with the defaults); a
/// list parameter's (`CommaDelimitedList`, `List<…>`) is its comma-separated items, as
/// CloudFormation gives it (`detail-type: !Ref HubspotDetailTypes`).
fn resolve_ref(name: &str, parameters: &BTreeMap<String, Yaml>) -> Result<Json, String> {
    let parameter = parameters.get(name);
    let default = parameter
        .and_then(|p| p.get("Default"))
        .ok_or_else(|| format!("!Ref {name}: not a parameter with a default"))?;
    let is_list = parameter
        .and_then(|p| p.get("Type"))
        .and_then(Yaml::as_str)
        .is_some_and(|kind| kind == "CommaDelimitedList" || kind.starts_with("List<"));
    match (is_list, default) {
        (true, Yaml::String(items)) => Ok(Json::Array(
            items
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Json::String(item.to_string()))
                .collect(),
        )),
        _ => to_json(default, parameters),
    }
}

/// The logical id a target's `Arn` points at (`!GetAtt RescoreFunction.Arn`, `!Ref X`, or the
/// long forms).
fn target_resource(arn: &Yaml) -> Option<String> {
    match arn {
        Yaml::Tagged(tagged) if tagged.tag == "GetAtt" => match &tagged.value {
            Yaml::String(text) => text.split('.').next().map(str::to_string),
            Yaml::Sequence(items) => items.first().and_then(Yaml::as_str).map(str::to_string),
            _ => None,
        },
        Yaml::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str().map(str::to_string),
        Yaml::Mapping(map) => match (map.get("Fn::GetAtt"), map.get("Ref")) {
            (Some(Yaml::Sequence(items)), _) => items.first().and_then(Yaml::as_str).map(str::to_string),
            (Some(Yaml::String(text)), _) => text.split('.').next().map(str::to_string),
            (_, Some(Yaml::String(name))) => Some(name.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// `rate(15 minutes)` → 15 minutes.
pub fn parse_rate(expression: &str) -> Option<Duration> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (amount, unit) = inner.trim().split_once(' ')?;
    let amount: u64 = amount.parse().ok()?;
    let seconds = match unit.trim().trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(amount * seconds))
}

impl Router {
    pub fn from_template(text: &str) -> Result<Router, RoutingError> {
        let template: Yaml = serde_norway::from_str(text).map_err(|e| RoutingError::Yaml(e.to_string()))?;
        let parameters: BTreeMap<String, Yaml> = template
            .get("Parameters")
            .and_then(Yaml::as_mapping)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone()))).collect())
            .unwrap_or_default();
        let resources = template.get("Resources").and_then(Yaml::as_mapping).ok_or(RoutingError::NoRules)?;
        let kind_of = |name: &str| resources.get(name).and_then(|r| r.get("Type")).and_then(Yaml::as_str);
        let mut routes = Vec::new();
        let mut sweep_every = None;
        let mut matcher = Quamina::new();
        for (name, resource) in resources {
            let (Some(name), Some("AWS::Events::Rule")) = (name.as_str(), resource.get("Type").and_then(Yaml::as_str)) else {
                continue;
            };
            let failed = |reason: String| RoutingError::Rule {
                rule: name.to_string(),
                reason,
            };
            let properties = resource.get("Properties").ok_or_else(|| failed("no Properties".into()))?;
            if properties.get("State").and_then(Yaml::as_str) == Some("DISABLED") {
                continue;
            }
            let mut targets = Vec::new();
            for target in properties.get("Targets").and_then(Yaml::as_sequence).into_iter().flatten() {
                let Some(resource) = target.get("Arn").and_then(target_resource) else {
                    continue;
                };
                let routed = match (resource.as_str(), kind_of(&resource)) {
                    (_, Some("AWS::Events::ApiDestination" | "AWS::SQS::Queue")) => Target::Deliver,
                    (id, _) if id.starts_with("Rescore") => Target::Rescore,
                    (id, _) if id.starts_with("Nudge") && !id.contains("Requested") => Target::Nudge,
                    _ => continue,
                };
                targets.push(routed);
            }
            let schedule = match properties.get("ScheduleExpression") {
                Some(expression) => Some(to_json(expression, &parameters).map_err(failed)?),
                None => None,
            };
            if let Some(schedule) = schedule.as_ref().and_then(Json::as_str) {
                if targets.contains(&Target::Rescore) {
                    sweep_every = Some(parse_rate(schedule).ok_or_else(|| failed(format!("unsupported schedule {schedule}")))?);
                }
                continue;
            }
            let Some(pattern) = properties.get("EventPattern") else {
                continue;
            };
            let pattern = match pattern {
                // A JSON string is allowed by CloudFormation too.
                Yaml::String(text) => serde_json::from_str(text).map_err(|e| failed(e.to_string()))?,
                other => to_json(other, &parameters).map_err(failed)?,
            };
            if targets.is_empty() {
                continue;
            }
            matcher
                .add_pattern(name.to_string(), &pattern.to_string())
                .map_err(|e| failed(format!("pattern not accepted: {e}")))?;
            routes.push(Route {
                rule: name.to_string(),
                pattern,
                targets,
            });
        }
        if routes.is_empty() {
            return Err(RoutingError::NoRules);
        }
        Ok(Router {
            routes,
            sweep_every,
            matcher,
        })
    }

    /// The shipped template's routes.
    pub fn shipped() -> Result<Router, RoutingError> {
        Router::from_template(TEMPLATE)
    }

    /// The targets of every rule an EventBridge envelope matches (each target once).
    pub fn targets(&self, envelope: &Json) -> Vec<Target> {
        let bytes = envelope.to_string();
        let matched = self.matcher.matches_for_event(bytes.as_bytes()).unwrap_or_default();
        let mut targets: Vec<Target> = self
            .routes
            .iter()
            .filter(|r| matched.contains(&r.rule))
            .flat_map(|r| r.targets.iter().copied())
            .collect();
        targets.sort();
        targets.dedup();
        targets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(detail_type: &str) -> Json {
        json!({"version": "0", "id": "1", "source": "engagement", "detail-type": detail_type, "account": "000000000000",
               "time": "2026-01-01T00:00:00Z", "region": "local", "resources": [], "detail": {"schema_version": 1}})
    }

    #[test]
    fn the_shipped_template_routes_every_event_where_the_stack_does() {
        let router = Router::shipped().expect("the template routes");
        assert_eq!(router.targets(&envelope("Interaction Recorded")), [Target::Rescore, Target::Nudge]);
        // Level changes and risks also reach the destinations whose tools take them (HubSpot's
        // engagement_level, Mailchimp's pyramid tag...): here, the outbox's own routing decides.
        assert_eq!(router.targets(&envelope("Level Changed")), [Target::Nudge, Target::Deliver]);
        assert_eq!(router.targets(&envelope("Engagement At Risk")), [Target::Nudge, Target::Deliver]);
        assert_eq!(router.targets(&envelope("Nudge Requested")), [Target::Deliver]);
        assert_eq!(router.targets(&envelope("Customer Erased")), [Target::Deliver]);
        assert!(router.targets(&envelope("Something Else")).is_empty());
        let mut foreign = envelope("Level Changed");
        foreign["source"] = json!("someone.else");
        assert!(router.targets(&foreign).is_empty(), "the source is part of the pattern");
        assert!(router.sweep_every.is_some());
    }

    #[test]
    fn a_changed_pattern_in_the_template_changes_the_routing() {
        // Edit the shipped template as a user would: the nudge rule no longer takes Level Changed.
        let mut template: Yaml = serde_norway::from_str(TEMPLATE).expect("YAML");
        let detail_types = template["Resources"]["NudgeTriggersRule"]["Properties"]["EventPattern"]["detail-type"]
            .as_sequence_mut()
            .expect("the nudge rule lists detail-types");
        detail_types.retain(|t| t.as_str() != Some("Level Changed"));
        let edited = Router::from_template(&serde_norway::to_string(&template).expect("YAML")).expect("routes");
        assert_eq!(edited.targets(&envelope("Level Changed")), [Target::Deliver]);
        assert_eq!(edited.targets(&envelope("Engagement At Risk")), [Target::Nudge, Target::Deliver]);
    }

    #[test]
    fn patterns_have_eventbridge_semantics() {
        let template = r#"
Parameters:
  EventSource: {Type: String, Default: engagement}
Resources:
  Fn: {Type: AWS::Serverless::Function}
  UpOnlyRule:
    Type: AWS::Events::Rule
    Properties:
      EventPattern:
        source: [!Ref EventSource]
        detail-type: [{prefix: "Level"}]
        detail:
          direction: [{anything-but: down}]
          schema_version: [{numeric: [">=", 1]}]
      Targets: [{Id: nudge, Arn: !GetAtt NudgeFunction.Arn}]
  Schedule:
    Type: AWS::Events::Rule
    Properties:
      ScheduleExpression: rate(5 minutes)
      Targets: [{Id: sweep, Arn: {"Fn::GetAtt": [RescoreFunction, Arn]}}]
"#;
        let router = Router::from_template(template).expect("routes");
        let mut up = envelope("Level Changed");
        up["detail"]["direction"] = json!("up");
        let mut down = up.clone();
        down["detail"]["direction"] = json!("down");
        assert_eq!(router.targets(&up), [Target::Nudge]);
        assert!(router.targets(&down).is_empty());
        assert_eq!(router.sweep_every, Some(Duration::from_secs(300)));
        assert_eq!(parse_rate("rate(1 hour)"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_rate("cron(0 * * * ? *)"), None);
    }

    #[test]
    fn a_rule_to_a_destination_queue_routes_to_the_deliver_outbox() {
        // The cloud's shape: a rule (with a Condition, which is not evaluated here) per
        // destination, targeting that destination's queue.
        let template = r#"
Parameters:
  HubspotDetailTypes:
    Type: CommaDelimitedList
    Default: Nudge Requested, Level Changed
Resources:
  HubSpotQueue: {Type: AWS::SQS::Queue}
  HubSpotRule:
    Type: AWS::Events::Rule
    Condition: EnableHubSpot
    Properties:
      EventPattern:
        source: [engagement]
        detail-type: !Ref HubspotDetailTypes
      Targets: [{Id: hubspot, Arn: !GetAtt HubSpotQueue.Arn}]
"#;
        let router = Router::from_template(template).expect("routes");
        assert_eq!(router.targets(&envelope("Level Changed")), [Target::Deliver]);
        assert!(router.targets(&envelope("Interaction Recorded")).is_empty());
        // A journal written before the rename still reads.
        assert_eq!(serde_json::from_str::<Target>("\"Webhooks\"").expect("read"), Target::Deliver);
    }
}
