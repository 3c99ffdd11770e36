//! What every Lambda's `main` does before handling anything: JSON logs, and the store, bus and
//! rules from the environment. One place, so the four functions are wired alike.
//!
//! Environment: `TABLE_NAME`, `EVENT_BUS_NAME`, `IDENTITY_SALT` (a secret), optional
//! `EVENT_SOURCE` (default `engagement`) and `RULES_FILE` (default: the shipped rules); the api
//! function also `CURSOR_KEY` (a secret of its own: see `cursor_key`); the sources function also
//! `SOURCE_SECRETS_ARN` (the secret that holds each source's signing secret) and, optionally,
//! `SOURCES_DIR` (a directory of the user's source files, `*.toml`, beside the rules file).

use crate::{DynamoStore, EventBridgeBus, StoreConfig};
use crate::SecretsManagerSourceSecrets;
use engagement::Rules;
use engagement_sources::Catalog;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("environment variable {0} is not set")]
    MissingVariable(&'static str),
    #[error("the rules file {path} could not be read: {reason}")]
    Rules { path: String, reason: String },
    #[error("the source files in {path} could not be read: {reason}")]
    Sources { path: String, reason: String },
}

/// The adapters of a deployment.
pub struct Deployment {
    pub rules: Arc<Rules>,
    pub store: DynamoStore,
    pub bus: EventBridgeBus,
    /// The deployment's identity salt (identity keys, tombstones, customer ids).
    pub salt: String,
    /// Region and credentials, for the clients only some functions need.
    pub config: aws_config::SdkConfig,
}

/// JSON logs for CloudWatch, one object per line, with the invocation's span fields; and the
/// handlers' metrics events as EMF lines (`crate::metrics`), whatever the log level.
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let level = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .without_time()
        .with_filter(level)
        // Metrics go out as EMF lines, not again as log lines.
        .with_filter(tracing_subscriber::filter::filter_fn(|metadata| {
            metadata.target() != engagement::metrics::METRICS
        }));
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    tracing_subscriber::registry()
        .with(logs)
        .with(in_lambda.then(crate::metrics::EmfLayer::stdout))
        .init();
}

fn variable(name: &'static str) -> Result<String, WiringError> {
    std::env::var(name).map_err(|_| WiringError::MissingVariable(name))
}

/// Reads rules from `path`, or the shipped rules.
pub fn load_rules(path: Option<&str>) -> Result<Rules, WiringError> {
    let Some(path) = path else {
        return Ok(Rules::default_rules());
    };
    let failed = |reason: String| WiringError::Rules {
        path: path.to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
    Rules::from_toml(&text).map_err(|e| failed(e.to_string()))
}

/// The shipped sources, and the user's `*.toml` files in `dir` (a user file replaces a shipped
/// source of the same name). Read in name order, so two starts build the same catalog.
pub fn load_catalog(dir: Option<&str>) -> Result<Catalog, WiringError> {
    let Some(dir) = dir else {
        return Ok(Catalog::builtin());
    };
    let failed = |reason: String| WiringError::Sources {
        path: dir.to_string(),
        reason,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| failed(e.to_string()))? {
        let path = entry.map_err(|e| failed(e.to_string()))?.path();
        if path.extension().is_some_and(|extension| extension == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| failed(format!("{}: {e}", path.display())))?;
        files.push((path.display().to_string(), text));
    }
    Catalog::with_files(files).map_err(|e| failed(e.to_string()))
}

/// The sources' signing secrets, from the secret `SOURCE_SECRETS_ARN` names (nothing read yet).
pub fn source_secrets(config: &aws_config::SdkConfig) -> Result<SecretsManagerSourceSecrets, WiringError> {
    Ok(SecretsManagerSourceSecrets::new(
        aws_sdk_secretsmanager::Client::new(config),
        variable("SOURCE_SECRETS_ARN")?,
    ))
}

/// The key that seals page cursors (`CURSOR_KEY`): only the api function gives out cursors.
/// Not the identity salt: a cursor key can be replaced (outstanding cursors are then refused),
/// the salt never can, so a key derived from it would not survive a leak of either.
pub fn cursor_key() -> Result<String, WiringError> {
    variable("CURSOR_KEY")
}

pub async fn from_env() -> Result<Deployment, WiringError> {
    let rules = Arc::new(load_rules(std::env::var("RULES_FILE").ok().as_deref())?);
    let config = crate::client::aws_config_from_env().await;
    let salt = variable("IDENTITY_SALT")?;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        Arc::clone(&rules),
        StoreConfig {
            table: variable("TABLE_NAME")?,
            salt: salt.clone(),
            omit_request_tokens: false,
        },
    );
    let source = std::env::var("EVENT_SOURCE").unwrap_or_else(|_| engagement::events::DEFAULT_SOURCE.to_string());
    let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&config), variable("EVENT_BUS_NAME")?, source);
    Ok(Deployment {
        rules,
        store,
        bus,
        salt,
        config,
    })
}
