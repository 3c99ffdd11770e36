//! The destinations `pyramid serve` delivers to, configured on one machine: the
//! `[destinations.<name>]` tables (`engagement_deliver::parse_destinations`) of
//! `DATA/destinations.toml` and of `--destinations FILE`, plus one Standard Webhooks destination
//! per `--webhook URL` (today's flag, signed with `DATA/webhook-secret` as before). Every
//! destination's secret is read and checked at start: a bad configuration stops `serve` with
//! an error that names the destination, not its first delivery.
//!
//! This is the local equivalent of the template's `Enable<Tool>` parameters: a destination
//! configured here is enabled; events reach the outbox by the template's rules (Conditions are
//! not evaluated locally) and each destination's own routing decides what it takes.

use crate::secrets::{self, LocalSecrets, SecretFileError};
use engagement_deliver::{authorize, parse_destinations, ConfigError, Destination, Method, Outbound, RawDestination};
use std::path::{Path, PathBuf};

/// The configuration file read from the data directory when it exists.
pub const FILE: &str = "destinations.toml";

#[derive(Debug, thiserror::Error)]
pub enum DestinationsError {
    #[error("cannot read {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Invalid { path: PathBuf, source: ConfigError },
    #[error("destination `{name}` is configured twice ({})", files.join(" and "))]
    Twice { name: String, files: Vec<String> },
    #[error("--webhook {url}: {source}")]
    Webhook { url: String, source: ConfigError },
    #[error(transparent)]
    Secret(#[from] SecretFileError),
    #[error("{0}")]
    BadSecret(String),
    #[error("the webhook signing secret: {0}")]
    WebhookSecret(std::io::Error),
}

/// The destinations, each with its secret.
#[derive(Debug, Default)]
pub struct Configured {
    pub destinations: Vec<Destination>,
    pub secrets: LocalSecrets,
}

impl Configured {
    /// One line per destination for the banner: its name, tool and the detail-types it takes
    /// (never a secret).
    pub fn describe(&self) -> Vec<String> {
        self.destinations
            .iter()
            .map(|d| format!("{} ({}: {})", d.name, d.tool, d.detail_types().join(", ")))
            .collect()
    }
}

/// The name of the destination made from the `n`-th (0-based) of `count` `--webhook` URLs.
fn webhook_name(n: usize, count: usize) -> String {
    if count == 1 {
        "webhook".to_string()
    } else {
        format!("webhook-{}", n + 1)
    }
}

/// Reads the destinations of `data` (its `destinations.toml`, if any), of `file` (must exist)
/// and of `webhooks`, with their secrets (`env` looks up an environment variable).
pub fn load(
    data: &Path,
    file: Option<&Path>,
    webhooks: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Configured, DestinationsError> {
    let mut named: Vec<(Destination, String)> = Vec::new();
    let in_data = data.join(FILE);
    let mut files = Vec::new();
    if in_data.exists() {
        files.push(in_data);
    }
    if let Some(file) = file {
        // The same file named twice is read once.
        if !files.iter().any(|f| same_file(f, file)) {
            files.push(file.to_path_buf());
        }
    }
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|source| DestinationsError::Unreadable {
            path: path.clone(),
            source,
        })?;
        let parsed = parse_destinations(&text).map_err(|source| DestinationsError::Invalid {
            path: path.clone(),
            source,
        })?;
        named.extend(parsed.into_iter().map(|d| (d, path.display().to_string())));
    }
    for (n, url) in webhooks.iter().enumerate() {
        // Today's flag, as before: nudges and erasures, signed with DATA/webhook-secret.
        let raw = RawDestination {
            tool: Some("standard-webhooks".into()),
            url: Some(url.clone()),
            detail_types: vec![
                engagement::events::NUDGE_REQUESTED.into(),
                engagement::events::CUSTOMER_ERASED.into(),
            ],
            ..RawDestination::default()
        };
        let destination = Destination::from_raw(&webhook_name(n, webhooks.len()), raw)
            .map_err(|source| DestinationsError::Webhook { url: url.clone(), source })?;
        named.push((destination, "--webhook".into()));
    }
    // Made at every start, as before destinations: a receiver can be given it ahead of `--webhook`.
    let webhook_secret = crate::webhooks::secret(data).map_err(DestinationsError::WebhookSecret)?;
    let mut configured = Configured::default();
    for (index, (destination, origin)) in named.iter().enumerate() {
        if let Some((_, first)) = named[..index].iter().find(|(d, _)| d.name == destination.name) {
            return Err(DestinationsError::Twice {
                name: destination.name.clone(),
                files: vec![first.clone(), origin.clone()],
            });
        }
        let secret = if origin == "--webhook" {
            webhook_secret.clone()
        } else {
            secrets::read(data, &destination.name, &env)?
        };
        check_secret(destination, &secret)?;
        configured.secrets.insert(&destination.name, secret);
        configured.destinations.push(destination.clone());
    }
    Ok(configured)
}

/// A secret of the wrong shape (a Customer.io secret without its site id, a Slack secret that is
/// not a webhook URL, a short `whsec_` key) is refused now, as it would be at every delivery.
fn check_secret(destination: &Destination, secret: &str) -> Result<(), DestinationsError> {
    let mut probe = Outbound {
        method: Method::Post,
        url: String::new(),
        headers: Vec::new(),
        body: Vec::new(),
        idempotency_key: Some("probe".into()),
    };
    authorize(destination, &mut probe, secret, engagement::Timestamp(0)).map_err(|e| DestinationsError::BadSecret(e.to_string()))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pyramid-destinations-{}-{}", std::process::id(), fastrand::u32(..)));
        std::fs::create_dir_all(&dir).expect("a dir");
        dir
    }

    fn error(data: &Path, toml: &str, env: impl Fn(&str) -> Option<String>) -> String {
        std::fs::write(data.join(FILE), toml).expect("written");
        load(data, None, &[], env).expect_err("refused").to_string()
    }

    #[test]
    fn a_bad_configuration_is_refused_at_start_naming_the_destination() {
        let data = data_dir();
        let none = |_: &str| None;
        let unknown = error(&data, "[destinations.crm]\ntool = \"salesforce\"\n", none);
        assert!(unknown.contains("`crm`") && unknown.contains("salesforce"), "{unknown}");
        let no_list = error(&data, "[destinations.news]\ntool = \"mailchimp\"\nserver = \"us21\"\n", none);
        assert!(no_list.contains("`news`") && no_list.contains("list_id"), "{no_list}");
        let no_secret = error(&data, "[destinations.crm]\ntool = \"hubspot\"\n", none);
        assert!(
            no_secret.contains("\"crm\"") && no_secret.contains("PYRAMID_DESTINATION_SECRET_CRM"),
            "{no_secret}"
        );
        let slack = |name: &str| (name == "PYRAMID_DESTINATION_SECRET_TEAM").then(|| "not-a-url".to_string());
        let bad_secret = error(&data, "[destinations.team]\ntool = \"slack\"\n", slack);
        assert!(bad_secret.contains("`team`") && bad_secret.contains("webhook URL"), "{bad_secret}");
        let _ = std::fs::remove_dir_all(&data);
    }

    #[test]
    fn the_data_directory_the_flag_and_webhook_urls_add_up_and_a_name_is_taken_once() {
        let data = data_dir();
        std::fs::write(data.join(FILE), "[destinations.crm]\ntool = \"hubspot\"\n").expect("written");
        let other = data.join("more.toml");
        std::fs::write(&other, "[destinations.team]\ntool = \"slack\"\n").expect("written");
        let env = |name: &str| match name {
            "PYRAMID_DESTINATION_SECRET_CRM" => Some("pat-na1-secret".to_string()),
            "PYRAMID_DESTINATION_SECRET_TEAM" => Some("https://hooks.slack.com/services/T/B/x".to_string()),
            _ => None,
        };
        let configured = load(&data, Some(&other), &["http://127.0.0.1:9/hook".to_string()], env).expect("loaded");
        let names: Vec<&str> = configured.destinations.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["crm", "team", "webhook"]);
        assert!(configured.secrets.get("webhook").is_some_and(|s| s.starts_with("whsec_")));
        let banner = configured.describe().join("\n");
        assert!(
            !banner.contains("pat-na1") && banner.contains("webhook (standard-webhooks"),
            "{banner}"
        );
        std::fs::write(&other, "[destinations.crm]\ntool = \"klaviyo\"\n").expect("written");
        let twice = load(&data, Some(&other), &[], env).expect_err("twice").to_string();
        assert!(twice.contains("`crm` is configured twice"), "{twice}");
        let _ = std::fs::remove_dir_all(&data);
    }
}
