//! Destinations as configured: `[destinations.<name>]` tables naming a tool, its settings and
//! which events it takes. Checked when read, with errors that name the destination and field.

use engagement::events::{CUSTOMER_ERASED, DETAIL_TYPES, ENGAGEMENT_AT_RISK, LEVEL_CHANGED, NUDGE_REQUESTED};
use engagement::Level;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The playbook a Zendesk destination takes when it names neither playbooks nor actions.
pub const ZENDESK_DEFAULT_PLAYBOOK: &str = "service_recovery";

/// The tools a destination can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tool {
    #[serde(rename = "hubspot")]
    HubSpot,
    #[serde(rename = "mailchimp")]
    Mailchimp,
    #[serde(rename = "klaviyo")]
    Klaviyo,
    #[serde(rename = "customerio")]
    CustomerIo,
    #[serde(rename = "slack")]
    Slack,
    #[serde(rename = "zendesk")]
    Zendesk,
    #[serde(rename = "standard-webhooks")]
    StandardWebhooks,
}

impl Tool {
    pub const ALL: [Tool; 7] = [
        Tool::HubSpot,
        Tool::Mailchimp,
        Tool::Klaviyo,
        Tool::CustomerIo,
        Tool::Slack,
        Tool::Zendesk,
        Tool::StandardWebhooks,
    ];

    /// The name configuration uses (`tool = "hubspot"`).
    pub fn name(self) -> &'static str {
        match self {
            Tool::HubSpot => "hubspot",
            Tool::Mailchimp => "mailchimp",
            Tool::Klaviyo => "klaviyo",
            Tool::CustomerIo => "customerio",
            Tool::Slack => "slack",
            Tool::Zendesk => "zendesk",
            Tool::StandardWebhooks => "standard-webhooks",
        }
    }

    pub fn parse(text: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|tool| tool.name() == text)
    }

    /// The detail-types a destination of this tool takes when its configuration names none
    /// (the issue's table: what each tool does something with).
    pub fn default_detail_types(self) -> &'static [&'static str] {
        match self {
            Tool::HubSpot | Tool::Mailchimp | Tool::Klaviyo | Tool::CustomerIo | Tool::StandardWebhooks => {
                &[NUDGE_REQUESTED, LEVEL_CHANGED, ENGAGEMENT_AT_RISK, CUSTOMER_ERASED]
            }
            // Level changes to Slack are opt-in (`detail_types`); Slack keeps nothing to erase.
            Tool::Slack => &[NUDGE_REQUESTED],
            Tool::Zendesk => &[NUDGE_REQUESTED],
        }
    }

    /// The detail-types this tool can do something with at all.
    pub fn handled_detail_types(self) -> &'static [&'static str] {
        match self {
            Tool::Slack => &[NUDGE_REQUESTED, LEVEL_CHANGED, ENGAGEMENT_AT_RISK],
            Tool::Zendesk => &[NUDGE_REQUESTED],
            _ => &[NUDGE_REQUESTED, LEVEL_CHANGED, ENGAGEMENT_AT_RISK, CUSTOMER_ERASED],
        }
    }

    /// Whether the tool reaches the customer by e-mail, so their e-mail consent governs it.
    pub fn is_email_tool(self) -> bool {
        matches!(
            self,
            Tool::HubSpot | Tool::Mailchimp | Tool::Klaviyo | Tool::CustomerIo | Tool::Zendesk
        )
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Customer.io's data centre (the Track API host differs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    Us,
    Eu,
}

/// Each tool's own settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settings {
    HubSpot,
    Mailchimp {
        list_id: String,
        /// The data-centre prefix of the account (`us21`), the API host's first label.
        server: String,
    },
    Klaviyo,
    CustomerIo {
        region: Region,
    },
    Slack {
        include_names: bool,
        /// Where a customer's page is: the link is this followed by the customer id.
        customer_url_base: Option<String>,
    },
    Zendesk {
        subdomain: String,
        /// The agent whose API token the secret is (`<email>/token:<token>`).
        email: String,
    },
    StandardWebhooks {
        url: String,
    },
}

/// Which events go to a destination. Empty lists take everything (detail-types: the tool's defaults).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routing {
    pub detail_types: Vec<String>,
    pub playbooks: Vec<String>,
    pub actions: Vec<String>,
    pub levels: Vec<Level>,
}

/// One configured destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The name in `[destinations.<name>]`: lowercase `[a-z0-9_-]`, names its secret.
    pub name: String,
    pub tool: Tool,
    pub settings: Settings,
    /// Replaces the tool's API origin (`https://api.hubapi.com`): tests, EU hosts, proxies.
    pub base_url: Option<String>,
    pub routing: Routing,
}

/// Why a destination's configuration was refused: the destination, the field, the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("destinations: {0}")]
    Syntax(String),
    #[error("destination `{destination}`: `{field}` {reason}")]
    Field {
        destination: String,
        field: String,
        reason: String,
    },
}

fn field_error(destination: &str, field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        destination: destination.to_string(),
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// A destination's table as written; every tool's fields, checked per tool afterwards.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    pub tool: Option<String>,
    pub base_url: Option<String>,
    pub list_id: Option<String>,
    pub server: Option<String>,
    pub region: Option<String>,
    pub include_names: Option<bool>,
    pub customer_url_base: Option<String>,
    pub subdomain: Option<String>,
    pub email: Option<String>,
    pub url: Option<String>,
    #[serde(default)]
    pub detail_types: Vec<String>,
    #[serde(default)]
    pub playbooks: Vec<String>,
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub levels: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationsFile {
    #[serde(default)]
    destinations: BTreeMap<String, toml::Value>,
}

/// Parses a TOML document's `[destinations.<name>]` tables (the document may hold nothing else).
pub fn parse_destinations(text: &str) -> Result<Vec<Destination>, ConfigError> {
    let file: DestinationsFile = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.message().to_string()))?;
    file.destinations
        .into_iter()
        .map(|(name, table)| {
            let raw: RawDestination = table
                .try_into()
                .map_err(|e: toml::de::Error| field_error(&name, "", e.message().to_string()))?;
            Destination::from_raw(&name, raw)
        })
        .collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn is_http_url(text: &str) -> bool {
    (text.starts_with("https://") || text.starts_with("http://"))
        && text.len() > "http://".len()
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A host label: letters, digits and dashes (Mailchimp's `us21`, a Zendesk subdomain).
fn valid_label(text: &str) -> bool {
    !text.is_empty() && text.len() <= 63 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Destination {
    /// Checks one destination's table; the error names the destination and the field.
    pub fn from_raw(name: &str, raw: RawDestination) -> Result<Destination, ConfigError> {
        if !valid_name(name) {
            return Err(field_error(name, "name", "must be 1..64 characters of a-z, 0-9, '_' or '-'"));
        }
        let tool_name = raw.tool.as_deref().ok_or_else(|| field_error(name, "tool", "is missing"))?;
        let tool = Tool::parse(tool_name).ok_or_else(|| {
            let known: Vec<&str> = Tool::ALL.iter().map(|t| t.name()).collect();
            field_error(name, "tool", format!("`{tool_name}` is not one of {}", known.join(", ")))
        })?;
        let required = |field: &str, value: &Option<String>| -> Result<String, ConfigError> {
            match value.as_deref().map(str::trim) {
                Some(text) if !text.is_empty() => Ok(text.to_string()),
                _ => Err(field_error(name, field, format!("is required for {tool}"))),
            }
        };
        // A setting of another tool is a mistake worth saying (a typo'd tool, a copied table).
        let foreign: &[(&str, bool)] = &[
            ("list_id", raw.list_id.is_some() && tool != Tool::Mailchimp),
            ("server", raw.server.is_some() && tool != Tool::Mailchimp),
            ("region", raw.region.is_some() && tool != Tool::CustomerIo),
            ("include_names", raw.include_names.is_some() && tool != Tool::Slack),
            ("customer_url_base", raw.customer_url_base.is_some() && tool != Tool::Slack),
            ("subdomain", raw.subdomain.is_some() && tool != Tool::Zendesk),
            ("email", raw.email.is_some() && tool != Tool::Zendesk),
            ("url", raw.url.is_some() && tool != Tool::StandardWebhooks),
        ];
        if let Some((field, _)) = foreign.iter().find(|(_, present)| *present) {
            return Err(field_error(name, field, format!("is not a setting of {tool}")));
        }
        let settings = match tool {
            Tool::HubSpot => Settings::HubSpot,
            Tool::Klaviyo => Settings::Klaviyo,
            Tool::Mailchimp => {
                let list_id = required("list_id", &raw.list_id)?;
                if !list_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(field_error(name, "list_id", "must be letters and digits (the audience id)"));
                }
                let server = required("server", &raw.server)?;
                if !valid_label(&server) {
                    return Err(field_error(name, "server", "must be the data-centre prefix, e.g. \"us21\""));
                }
                Settings::Mailchimp { list_id, server }
            }
            Tool::CustomerIo => {
                let region = match raw.region.as_deref() {
                    None | Some("us") => Region::Us,
                    Some("eu") => Region::Eu,
                    Some(_) => return Err(field_error(name, "region", "must be \"us\" or \"eu\"")),
                };
                Settings::CustomerIo { region }
            }
            Tool::Slack => {
                if let Some(base) = &raw.customer_url_base {
                    if !is_http_url(base) {
                        return Err(field_error(name, "customer_url_base", "must be an http(s) URL"));
                    }
                }
                Settings::Slack {
                    include_names: raw.include_names.unwrap_or(false),
                    customer_url_base: raw.customer_url_base.clone(),
                }
            }
            Tool::Zendesk => {
                let subdomain = required("subdomain", &raw.subdomain)?;
                if !valid_label(&subdomain) {
                    return Err(field_error(name, "subdomain", "must be the account's subdomain, e.g. \"acme\""));
                }
                let email = required("email", &raw.email)?;
                if !email.contains('@') {
                    return Err(field_error(
                        name,
                        "email",
                        "must be the e-mail of the agent whose token the secret is",
                    ));
                }
                Settings::Zendesk { subdomain, email }
            }
            Tool::StandardWebhooks => {
                let url = required("url", &raw.url)?;
                if !is_http_url(&url) {
                    return Err(field_error(name, "url", "must be an http(s) URL"));
                }
                Settings::StandardWebhooks { url }
            }
        };
        if let Some(base) = &raw.base_url {
            if !is_http_url(base) {
                return Err(field_error(name, "base_url", "must be an http(s) URL"));
            }
        }
        for detail_type in &raw.detail_types {
            if !DETAIL_TYPES.contains(&detail_type.as_str()) {
                return Err(field_error(
                    name,
                    "detail_types",
                    format!("`{detail_type}` is not a detail-type the engine publishes"),
                ));
            }
            if !tool.handled_detail_types().contains(&detail_type.as_str()) {
                return Err(field_error(
                    name,
                    "detail_types",
                    format!("{tool} does nothing with `{detail_type}`"),
                ));
            }
        }
        let levels = raw
            .levels
            .iter()
            .map(|text| {
                Level::ALL
                    .into_iter()
                    .find(|level| level.name() == text)
                    .ok_or_else(|| field_error(name, "levels", format!("`{text}` is not a level")))
            })
            .collect::<Result<Vec<Level>, ConfigError>>()?;
        // Zendesk opens tickets for service recovery unless told otherwise.
        let playbooks = if tool == Tool::Zendesk && raw.playbooks.is_empty() && raw.actions.is_empty() {
            vec![ZENDESK_DEFAULT_PLAYBOOK.to_string()]
        } else {
            raw.playbooks
        };
        Ok(Destination {
            name: name.to_string(),
            tool,
            settings,
            base_url: raw.base_url.map(|base| base.trim_end_matches('/').to_string()),
            routing: Routing {
                detail_types: raw.detail_types,
                playbooks,
                actions: raw.actions,
                levels,
            },
        })
    }

    /// The detail-types this destination takes.
    pub fn detail_types(&self) -> Vec<&str> {
        if self.routing.detail_types.is_empty() {
            self.tool.default_detail_types().to_vec()
        } else {
            self.routing.detail_types.iter().map(String::as_str).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_parses_with_its_settings() {
        let text = r#"
[destinations.crm]
tool = "hubspot"
[destinations.newsletter]
tool = "mailchimp"
list_id = "57afe96172"
server = "us21"
playbooks = ["reengage_following"]
[destinations.flows]
tool = "klaviyo"
[destinations.journeys]
tool = "customerio"
region = "eu"
[destinations.team]
tool = "slack"
customer_url_base = "https://pyramid.example.com/customers/"
detail_types = ["Nudge Requested", "Level Changed"]
levels = ["leading"]
[destinations.support]
tool = "zendesk"
subdomain = "acme"
email = "agent@acme.example"
actions = ["open_priority_support_case"]
[destinations.hooks]
tool = "standard-webhooks"
url = "https://hooks.example.com/pyramid"
"#;
        let destinations = parse_destinations(text).expect("valid");
        let tools: Vec<Tool> = destinations.iter().map(|d| d.tool).collect();
        assert_eq!(tools.len(), 7);
        let team = destinations.iter().find(|d| d.name == "team").expect("slack");
        assert_eq!(team.routing.levels, [Level::Leading]);
        assert_eq!(team.detail_types(), ["Nudge Requested", "Level Changed"]);
        let journeys = destinations.iter().find(|d| d.name == "journeys").expect("customerio");
        assert_eq!(journeys.settings, Settings::CustomerIo { region: Region::Eu });
    }

    fn error_of(text: &str) -> String {
        parse_destinations(text).expect_err("refused").to_string()
    }

    #[test]
    fn mistakes_name_the_destination_and_the_field() {
        assert_eq!(
            error_of("[destinations.news]\ntool = \"mailchimp\"\nserver = \"us21\""),
            "destination `news`: `list_id` is required for mailchimp"
        );
        assert!(error_of("[destinations.x]\ntool = \"hubspto\"").starts_with("destination `x`: `tool` `hubspto` is not one of hubspot,"));
        assert_eq!(
            error_of("[destinations.x]\ntool = \"hubspot\"\nlist_id = \"a\""),
            "destination `x`: `list_id` is not a setting of hubspot"
        );
        assert_eq!(
            error_of("[destinations.x]\ntool = \"zendesk\"\nsubdomain = \"acme\"\nemail = \"a@b.c\"\ndetail_types = [\"Customer Erased\"]"),
            "destination `x`: `detail_types` zendesk does nothing with `Customer Erased`"
        );
        assert_eq!(
            error_of("[destinations.x]\ntool = \"slack\"\nlevels = [\"gold\"]"),
            "destination `x`: `levels` `gold` is not a level"
        );
        assert!(error_of("[destinations.x]\ntool = \"slack\"\nchannel = \"#team\"").contains("destination `x`"));
        assert_eq!(
            error_of("[destinations.x]\ntool = \"standard-webhooks\"\nurl = \"ftp://x\""),
            "destination `x`: `url` must be an http(s) URL"
        );
    }
}
