//! Business metrics, said through `tracing`: a handler counts something with an event on the
//! target [`METRICS`], and the deployment decides what becomes of it. In Lambda an adapter
//! (`engagement_aws::metrics::EmfLayer`) turns each such event into a CloudWatch Embedded
//! Metric Format line; elsewhere it is an ordinary `info` event, which `pyramid`'s default
//! filter leaves out. Handlers so depend on no metrics backend and on no type parameter for one.
//!
//! The fields of a metrics event:
//! - `function`: the function counting (`ingest`, `rescore`, `nudge`, `api`), a dimension;
//! - any other text field: a dimension (`Direction = "up"`);
//! - any integer field: a count (`LevelChanges = 1`); counts of zero are left out.
//!
//! ```
//! tracing::info!(target: engagement::metrics::METRICS, function = "rescore", Direction = "up", LevelChanges = 1u64);
//! ```

/// The `tracing` target of metrics events.
pub const METRICS: &str = "engagement::metrics";
