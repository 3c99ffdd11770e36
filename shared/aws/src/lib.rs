//! Adapters of the engagement ports for AWS: the DynamoDB single-table store, the
//! EventBridge bus, and the sources' signing secrets in Secrets Manager.
//! The same store runs against dynoxide (tests, one-machine mode) and moto.

pub mod bus;
pub mod client;
pub mod clock;
pub mod cursor;
pub mod delivery;
pub mod envelope;
pub mod errors;
pub mod item;
pub mod keys;
pub mod metrics;
pub mod retry;
pub mod source_secrets;
pub mod store;
pub mod wiring;

pub use bus::EventBridgeBus;
pub use client::RequestCounter;
pub use clock::SystemClock;
pub use delivery::{SecretsManagerDestinationSecrets, SqsDeliveryQueues};
pub use source_secrets::SecretsManagerSourceSecrets;
pub use store::{DynamoStore, StoreConfig};
