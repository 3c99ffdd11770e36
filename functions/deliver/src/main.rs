//! The deliver Lambda: drains the destination queues (one per enabled tool; an SQS event source
//! mapping each, with partial batch responses) and hands each event to `Deliver::deliver` for
//! its queue's destination. Wires the DynamoDB store (read-only: a customer's e-mail and
//! consent), HTTPS by reqwest, the system clock, each tool's credential from its Secrets Manager
//! secret, and the contact key that opens `Customer Erased`'s sealed e-mail (`CONTACT_KEY`).
//! The destinations come from the `DESTINATION_<TOOL>` variables the template builds.

#![recursion_limit = "256"]

use aws_lambda_events::sqs::SqsEvent;
use deliver::sqs::{destinations_from_env, handle_batch};
use deliver::ReqwestSender;
use deliver::{Deliver, ErasedContacts, NoErasedContacts};
use engagement::erasure::ContactKey;
use engagement_aws::delivery::{SecretsManagerDestinationSecrets, SqsDeliveryQueues};
use engagement_aws::{wiring, DynamoStore, StoreConfig, SystemClock};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::sync::Arc;

fn variable(name: &str) -> Result<String, Error> {
    std::env::var(name).map_err(|_| Error::from(format!("{name} is not set")))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    wiring::init_tracing();
    let config = engagement_aws::client::aws_config_from_env().await;
    let rules = Arc::new(wiring::load_rules(std::env::var("RULES_FILE").ok().as_deref())?);
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        rules,
        StoreConfig {
            table: variable("TABLE_NAME")?,
            salt: variable("IDENTITY_SALT")?,
            omit_request_tokens: false,
        },
    );
    // A bad destination fails the start, naming its variable and field: every batch then fails
    // (the Errors alarm) and is received again, nothing is lost.
    let cloud = destinations_from_env()?;
    if cloud.destinations.is_empty() {
        return Err(Error::from("no DESTINATION_<TOOL> variable: no destination is enabled"));
    }
    let contacts: Arc<dyn ErasedContacts> = match std::env::var("CONTACT_KEY") {
        Ok(secret) => Arc::new(ContactKey::from_secret(&secret).map_err(|e| Error::from(format!("CONTACT_KEY: {e}")))?),
        Err(_) => {
            tracing::warn!("CONTACT_KEY is not set: erasures reach the tools without the e-mail they need");
            Arc::new(NoErasedContacts)
        }
    };
    tracing::info!(destinations = ?cloud.destinations.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), "destinations configured");
    let routes = Arc::new(cloud.queues);
    let deliver = Arc::new(Deliver {
        reads: store,
        http: ReqwestSender::new(deliver::REQUEST_TIMEOUT)?,
        clock: SystemClock,
        secrets: SecretsManagerDestinationSecrets::new(aws_sdk_secretsmanager::Client::new(&config), cloud.secrets),
        destinations: Arc::new(cloud.destinations),
        contacts,
    });
    let queues = Arc::new(SqsDeliveryQueues::new(aws_sdk_sqs::Client::new(&config)));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let (deliver, queues, routes) = (Arc::clone(&deliver), Arc::clone(&queues), Arc::clone(&routes));
        async move { Ok::<_, Error>(handle_batch(&deliver, queues.as_ref(), &routes, event.payload).await) }
    }))
    .await
}
