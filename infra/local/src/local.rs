//! The stack on one machine: the four functions' handlers over the embedded store (dynoxide on
//! SQLite, file-backed in the data directory, reached through the same DynamoDB adapter as in
//! the cloud) and the in-process bus routed by the template's rules.

use crate::bus::LocalBus;
use crate::channels::LocalSourceSecrets;
use crate::destinations::Configured;
use crate::dispatch::Targets;
use crate::erasure::Scrubber;
use crate::files::{os_random, write_private};
use crate::outbox::Outbox;
use crate::routing::Router;
use anyhow::Context as _;
use api::Api;
use engagement::ports::Clock;
use engagement::{Rules, Timestamp};
use engagement_aws::client::local_dynamodb_over;
use engagement_aws::{DynamoStore, StoreConfig, SystemClock};
use engagement_http::CursorSigner;
use engagement_sources::Catalog;
use ingest::Ingest;
use nudge::Nudger;
use rescore::Rescorer;
use sources::Sources;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const TABLE: &str = "engagement";

/// The address the SDK is given for the embedded store; nothing listens there, the in-process
/// transport answers every request.
const IN_PROCESS_ENDPOINT: &str = "http://embedded.dynoxide.invalid";

/// A clock fixed at one instant (`pyramid rescore --at`).
#[derive(Clone, Copy)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// The data directory: the database, the token, the secrets, the webhook outbox and logs.
pub struct DataDir {
    pub path: PathBuf,
    /// Held while this process uses the directory: a second process is refused, not corrupting.
    _lock: std::fs::File,
    /// The database once `embedded_store` opened it (erasure vacuums through it).
    database: std::sync::OnceLock<dynoxide::Database>,
}

/// The file of the data directory that holds the contact key.
pub const CONTACT_KEY_FILE: &str = "contact-key";

impl DataDir {
    pub fn open(path: &Path) -> anyhow::Result<DataDir> {
        std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join("lock"))?;
        lock.try_lock()
            .map_err(|_| anyhow::anyhow!("{} is in use by another pyramid process (stop it first)", path.display()))?;
        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: lock,
            database: std::sync::OnceLock::new(),
        })
    }

    /// A secret kept in the directory, made on first use (readable by its owner only). A
    /// secret that is there but too short is refused: an empty token would let anyone in.
    pub fn secret(&self, name: &str) -> anyhow::Result<String> {
        let path = self.path.join(name);
        if let Ok(text) = std::fs::read_to_string(&path) {
            let text = text.trim().to_string();
            anyhow::ensure!(
                text.len() >= 32,
                "{} holds fewer than 32 characters; delete it to make a new one",
                path.display()
            );
            return Ok(text);
        }
        // The identity salt keys every stored identity: a new one would orphan the data.
        anyhow::ensure!(
            name != "identity-salt" || !self.path.join("engagement.db").exists(),
            "{} is missing but the database exists: restore it from a backup (a new salt would orphan every customer)",
            path.display()
        );
        let value: String = os_random::<32>()?.iter().map(|b| format!("{b:02x}")).collect();
        write_private(&path, value.as_bytes())?;
        Ok(value)
    }

    /// The key of `Customer Erased`'s sealed contact (`contact-key`, made on first use): the
    /// api seals the erased person's email with it, the deliveries open it. A key of its own: a
    /// new one only makes the erasures still in flight unreadable to the tools.
    pub fn contact_key(&self) -> anyhow::Result<engagement::erasure::ContactKey> {
        let secret = self.secret(CONTACT_KEY_FILE)?;
        engagement::erasure::ContactKey::from_secret(&secret).with_context(|| format!("{CONTACT_KEY_FILE} is not a usable key"))
    }
}

/// Opens the embedded database for serving and hands it to the DynamoDB adapter (in process,
/// `crate::in_process`). SQLite runs in WAL mode with `synchronous = NORMAL`: every commit is in the WAL before
/// it is acknowledged, so a killed process (kill -9, a crash) loses nothing; an OS crash or a
/// power cut can lose the last commits but cannot corrupt the file (the WAL is fsynced at each
/// checkpoint).
pub async fn embedded_store(dir: &DataDir, rules: Arc<Rules>) -> anyhow::Result<DynamoStore> {
    Ok(open_embedded(dir, rules, false).await?.0)
}

/// The embedded store tuned for a bulk load that can be re-run (`pyramid import`, the demo's
/// history): no fsync at all (`synchronous = OFF`, so a power cut during it can corrupt the
/// file), a 64 MB page cache and memory-mapped reads. `BulkLoad::finish` restores the serving
/// settings.
pub async fn embedded_store_for_bulk_load(dir: &DataDir, rules: Arc<Rules>) -> anyhow::Result<(DynamoStore, BulkLoad)> {
    let (store, database) = open_embedded(dir, rules, true).await?;
    Ok((store, BulkLoad { database }))
}

/// A bulk load under way on the embedded database.
pub struct BulkLoad {
    database: dynoxide::Database,
}

impl BulkLoad {
    /// The database itself, for writes that bypass the adapter (`pyramid import`'s bulk path).
    pub fn database(&self) -> &dynoxide::Database {
        &self.database
    }

    /// Back to `synchronous = NORMAL` (and SQLite's default cache), as `embedded_store` opens it.
    pub fn finish(self) -> anyhow::Result<()> {
        self.database
            .disable_bulk_loading()
            .map_err(|e| anyhow::anyhow!("cannot restore the database's settings: {e}"))
    }
}

async fn open_embedded(dir: &DataDir, rules: Arc<Rules>, bulk: bool) -> anyhow::Result<(DynamoStore, dynoxide::Database)> {
    // Before the database file exists on a first start (a missing salt later is an error).
    let salt = dir.secret("identity-salt")?;
    let file = dir.path.join("engagement.db");
    // On dynoxide's connection too: erased rows are overwritten, not just unlinked.
    crate::erasure::secure_delete_on_every_connection().context("cannot turn on SQLite's secure_delete")?;
    let open = || dynoxide::Database::new(&file.to_string_lossy()).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()));
    let database = if bulk {
        // A bulk load copies its log at SQLite's default: fewer, longer pauses serve it better.
        open()?
    } else {
        // Serving: shorter pauses on the store's thread (see `checkpoints`).
        let (database, problem) = crate::checkpoints::opened_checkpointing_every(crate::checkpoints::CHECKPOINT_PAGES, open)?;
        if let Some(problem) = problem {
            tracing::warn!(%problem, "the store checkpoints at SQLite's default");
        }
        database
    };
    // dynoxide exposes its PRAGMAs only as these two sets.
    let tuned = if bulk {
        database.enable_bulk_loading()
    } else {
        database.disable_bulk_loading()
    };
    tuned.map_err(|e| anyhow::anyhow!("cannot tune {}: {e}", file.display()))?;
    let _ = dir.database.set(database.clone());
    // The SDK's requests reach dynoxide in process: no socket, no HTTP server.
    // A second connection, for item reads beside the writes (opened once the first has made or
    // migrated the file).
    let reader = open()?;
    let client = local_dynamodb_over(crate::in_process::http_client(database.clone(), reader)?, IN_PROCESS_ENDPOINT, None);
    let store = DynamoStore::new(
        client,
        rules,
        StoreConfig {
            table: TABLE.into(),
            salt,
            omit_request_tokens: true,
        },
    )
    // Each transaction is a SQLite commit: several customers share one.
    .packing_customers()
    // One process serves many requests at once: those naming one identity take turns.
    .taking_turns()
    .scanning_in_key_order();
    if !store.table_exists().await? {
        store.create_table().await?;
    }
    Ok((store, database))
}

pub type LocalRescorer<C = SystemClock> = Rescorer<DynamoStore, LocalBus, C>;
pub type LocalSources = Sources<DynamoStore, LocalBus, SystemClock, LocalSourceSecrets>;

/// Everything `serve` runs.
pub struct Stack {
    pub rules: Arc<Rules>,
    pub store: DynamoStore,
    pub bus: LocalBus,
    pub router: Arc<Router>,
    pub ingest: Arc<Ingest<DynamoStore, LocalBus, SystemClock>>,
    pub api: Arc<Api<DynamoStore, LocalBus, SystemClock>>,
    /// The channels' own webhooks (`/v1/sources/{source}`), recorded through ingest's path.
    pub sources: Arc<LocalSources>,
    pub rescore: Arc<LocalRescorer>,
    pub nudge: Arc<Nudger<DynamoStore, LocalBus, SystemClock>>,
    pub outbox: Arc<Outbox>,
    pub erasure: Arc<Scrubber>,
}

pub struct Options {
    /// The destinations and their secrets (`crate::destinations::load`).
    pub destinations: Configured,
    /// Scales every wait between two delivery attempts (1.0; tests make retries quick).
    pub retry_scale: f64,
    pub source: String,
    /// How long after a failed scrub of the data directory it is tried again.
    pub scrub_retry_after: Duration,
    /// Journal deliveries but dispatch none (tests: an event deterministically in flight).
    pub hold_deliveries: bool,
    /// The source files loaded (`channels::load_catalog`) and their signing secrets.
    pub catalog: Arc<Catalog>,
    pub source_secrets: LocalSourceSecrets,
}

impl Stack {
    pub async fn start(dir: &DataDir, rules: Arc<Rules>, router: Router, options: Options) -> anyhow::Result<Stack> {
        let store = embedded_store(dir, Arc::clone(&rules)).await?;
        Stack::with_store(dir, store, rules, router, options).await
    }

    /// The stack over a store already open (the demo imports first, then serves the same one).
    pub async fn with_store(
        dir: &DataDir,
        store: DynamoStore,
        rules: Arc<Rules>,
        router: Router,
        options: Options,
    ) -> anyhow::Result<Stack> {
        let router = Arc::new(router);
        let (bus, deliveries) = LocalBus::open(Arc::clone(&router), &options.source, &dir.path)?;
        // Cursors have a key of their own: a leaked cursor key forges page cursors, nothing more,
        // and it can be replaced (outstanding cursors are then refused) where the salt never can.
        let cursor_key = dir.secret("cursor-key")?;
        let contact_key = dir.contact_key()?;
        let parts = || (store.clone(), bus.clone(), SystemClock, Arc::clone(&rules));
        let (s, b, c, r) = parts();
        let ingest = Arc::new(Ingest {
            store: s,
            bus: b,
            clock: c,
            rules: r,
        });
        let (s, b, c, r) = parts();
        let sources = Arc::new(Sources {
            ingest: Ingest {
                store: s,
                bus: b,
                clock: c,
                rules: r,
            },
            catalog: options.catalog,
            secrets: options.source_secrets,
        });
        let (s, b, c, r) = parts();
        let rescore = Arc::new(Rescorer {
            store: s,
            bus: b,
            clock: c,
            rules: r,
        });
        let (s, b, c, r) = parts();
        let nudge = Arc::new(Nudger {
            store: s,
            bus: b,
            clock: c,
            rules: r,
        });
        let (s, b, c, r) = parts();
        let api = Arc::new(Api {
            store: s,
            bus: b,
            clock: c,
            rules: r,
            cursors: CursorSigner::new(&cursor_key),
            contact_key: contact_key.clone(),
        });
        // The cloud's deliver handler, over this store, with this machine's secrets.
        let Configured { destinations, secrets } = options.destinations;
        let deliver = Arc::new(deliver::Deliver {
            reads: store.clone(),
            http: deliver::ReqwestSender::new(deliver::REQUEST_TIMEOUT).map_err(|e| anyhow::anyhow!("the HTTP client: {e}"))?,
            clock: SystemClock,
            secrets,
            destinations: Arc::new(destinations.clone()),
            contacts: Arc::new(contact_key),
        });
        let outbox = Arc::new(Outbox::open(
            &dir.path,
            destinations,
            crate::outbox::handler(deliver),
            options.retry_scale,
        )?);
        let erasure = Scrubber::start(
            &dir.path,
            dir.database.get().cloned(),
            Arc::clone(&outbox),
            options.scrub_retry_after,
        );
        let stack = Stack {
            rules,
            store,
            bus,
            router,
            ingest,
            api,
            sources,
            rescore,
            nudge,
            outbox,
            erasure,
        };
        if options.hold_deliveries {
            tokio::spawn(async move {
                let _held = deliveries;
                std::future::pending::<()>().await
            });
        } else {
            let targets = Targets {
                rescore: Arc::clone(&stack.rescore),
                nudge: Arc::clone(&stack.nudge),
                outbox: Arc::clone(&stack.outbox),
            };
            crate::dispatch::run(targets, stack.bus.journal().clone(), deliveries);
        }
        let outbox = Arc::clone(&stack.outbox);
        tokio::spawn(async move { outbox.run().await });
        Ok(stack)
    }

    /// Runs the sweep at the template's rate (or `every`), forever.
    pub fn schedule(&self, every: Option<Duration>) {
        let Some(every) = every.or(self.router.sweep_every) else {
            tracing::warn!("the template has no schedule for the sweep; drops are noticed only on new interactions");
            return;
        };
        let rescore = Arc::clone(&self.rescore);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                match rescore.sweep(100, || true).await {
                    Ok(report) => tracing::info!(examined = report.examined, changed = report.changed, "swept"),
                    Err(error) => tracing::warn!(%error, "sweep stopped; the next one continues"),
                }
            }
        });
    }
}

/// The data directory's default place.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("pyramid-data")
}
