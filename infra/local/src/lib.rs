//! The one-machine mode: `pyramid serve`, `import`, `demo`, `rescore --at`, `whatif`,
//! `calibrate` and `refold`, running
//! the Lambda functions' handlers over the embedded store and an in-process bus routed by the
//! deployed stack's own rules (`infra/template.yaml`).

/// The embedded store's work is allocation-heavy (every item goes to and from JSON in dynoxide);
/// mimalloc serves it faster than the system allocator. Set here, it covers the binary, its tests
/// and benches.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod bulk;
pub mod bus;
pub mod calibrate;
pub mod channels;
pub mod checkpoints;
pub mod community;
pub mod delivery;
pub mod destinations;
pub mod dispatch;
pub mod erased;
pub mod erasure;
pub mod files;
pub mod history;
pub mod import;
pub mod in_process;
pub mod journal;
pub mod local;
pub mod outbox;
pub mod refold;
pub mod report;
/// The template's routing, shared with the e2e tests (the `engagement-routing` crate).
pub use engagement_routing as routing;
pub mod secrets;
pub mod serve;
pub mod webhooks;
