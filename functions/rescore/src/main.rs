//! The rescore Lambda: wires the DynamoDB store, the EventBridge bus and the system clock, and
//! hands each event to `Rescorer::handle`.
//!
//! Environment: `TABLE_NAME`, `EVENT_BUS_NAME`, `IDENTITY_SALT` (a secret), optional
//! `EVENT_SOURCE` (default `engagement`) and `RULES_FILE` (default: the shipped rules).

// The handler's futures nest deeply (SDK calls inside retries inside the sweep).
#![recursion_limit = "256"]

use aws_lambda_events::eventbridge::EventBridgeEvent;
use engagement::Rules;
use engagement_aws::{DynamoStore, EventBridgeBus, StoreConfig, SystemClock};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use rescore::Rescorer;
use std::sync::Arc;
use std::time::SystemTime;

fn env(name: &str) -> Result<String, Error> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set").into())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_current_span(true)
        .without_time()
        .init();
    let rules = match std::env::var("RULES_FILE") {
        Ok(path) => Rules::from_toml(&std::fs::read_to_string(&path)?)?,
        Err(_) => Rules::default_rules(),
    };
    let rules = Arc::new(rules);
    let config = engagement_aws::client::aws_config_from_env().await;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        Arc::clone(&rules),
        StoreConfig {
            table: env("TABLE_NAME")?,
            salt: env("IDENTITY_SALT")?,
            omit_request_tokens: false,
        },
    );
    let source = std::env::var("EVENT_SOURCE").unwrap_or_else(|_| engagement::events::DEFAULT_SOURCE.to_string());
    let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&config), env("EVENT_BUS_NAME")?, source);
    let rescorer = Arc::new(Rescorer {
        store,
        bus,
        clock: SystemClock,
        rules,
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| {
        let rescorer = Arc::clone(&rescorer);
        async move {
            let deadline = event.context.deadline();
            let time_left = move || deadline.duration_since(SystemTime::now()).unwrap_or_default();
            rescorer.handle(&event.payload, time_left).await.map_err(Error::from)
        }
    }))
    .await
}
