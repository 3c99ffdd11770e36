//! Building SDK clients: against AWS from the environment, or against a local endpoint
//! (dynoxide, moto) with dummy static credentials.

use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// rustls on ring: HTTPS to AWS, plain HTTP to loopback servers, no aws-lc build.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The region local servers are addressed in; any value works, one is required.
pub const LOCAL_REGION: &str = "us-east-1";

fn local_credentials() -> Credentials {
    Credentials::new("local", "local", None, None, "static-local")
}

/// Loads region and credentials from the Lambda environment (or `~/.aws`).
pub async fn aws_config_from_env() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client())
        .load()
        .await
}

/// Counts requests sent per operation, so tests and benches can assert what an operation costs.
#[derive(Clone, Debug, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl RequestCounter {
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    pub fn reset(&self) {
        if let Ok(mut counts) = self.counts.lock() {
            counts.clear();
        }
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("unknown")
            .to_string();
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(target).or_default() += 1;
        }
        Ok(())
    }
}

/// A DynamoDB client for a local endpoint (dynoxide or moto).
pub fn local_dynamodb(endpoint: &str, counter: Option<RequestCounter>) -> aws_sdk_dynamodb::Client {
    local_dynamodb_over(http_client(), endpoint, counter)
}

/// A DynamoDB client whose requests `transport` carries (the one-machine mode hands them to the
/// embedded store in process); `endpoint` only names it.
pub fn local_dynamodb_over(transport: SharedHttpClient, endpoint: &str, counter: Option<RequestCounter>) -> aws_sdk_dynamodb::Client {
    let mut builder = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_dynamodb::config::Region::new(LOCAL_REGION))
        .credentials_provider(local_credentials())
        .http_client(transport);
    if let Some(counter) = counter {
        builder = builder.interceptor(counter);
    }
    aws_sdk_dynamodb::Client::from_conf(builder.build())
}

/// An EventBridge client for a local endpoint (moto).
pub fn local_eventbridge(endpoint: &str) -> aws_sdk_eventbridge::Client {
    let config = aws_sdk_eventbridge::Config::builder()
        .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_eventbridge::config::Region::new(LOCAL_REGION))
        .credentials_provider(local_credentials())
        .http_client(http_client())
        .build();
    aws_sdk_eventbridge::Client::from_conf(config)
}

/// A Secrets Manager client for a local endpoint (moto).
pub fn local_secretsmanager(endpoint: &str, counter: Option<RequestCounter>) -> aws_sdk_secretsmanager::Client {
    let mut builder = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_secretsmanager::config::Region::new(LOCAL_REGION))
        .credentials_provider(local_credentials())
        .http_client(http_client());
    if let Some(counter) = counter {
        builder = builder.interceptor(counter);
    }
    aws_sdk_secretsmanager::Client::from_conf(builder.build())
}
