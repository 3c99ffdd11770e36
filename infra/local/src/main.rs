//! `pyramid`: the engagement engine on one machine. See `pyramid --help`.

// The handlers' futures nest deeply (SDK calls inside retries inside the sweep).
#![recursion_limit = "256"]

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use engagement::ports::Insights;
use engagement::{Level, Rules, Timestamp};
use engagement_aws::DynamoStore;
use pyramid::bulk::import_into;
use pyramid::channels;
use pyramid::import::{Format, ImportPath, LiveOptions};
use pyramid::local::{embedded_store, embedded_store_for_bulk_load, DataDir, Options, Stack};
use pyramid::routing::Router;
use pyramid::serve::{app, Served};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "pyramid",
    version,
    about = "The engagement engine on one machine: places every customer on the Engagement Pyramid from what they do, and nudges them up.",
    long_about = "The engagement engine on one machine. It runs the same handlers as the AWS Lambda functions, with an embedded store (SQLite, in --data) and an in-process event bus routed by the rules of infra/template.yaml.\n\nStart with `pyramid demo`: a synthetic community, served on http://127.0.0.1:8080."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Common {
    /// The data directory: database, token, secrets, webhook outbox, nudges.jsonl.
    #[arg(long, default_value = "pyramid-data", env = "PYRAMID_DATA")]
    data: PathBuf,
    /// Rules (TOML) instead of the shipped ones.
    #[arg(long, env = "PYRAMID_RULES")]
    rules: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    common: Common,
    /// Where to listen (loopback by default: the API holds personal data).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Destinations (TOML `[destinations.<name>]` tables), besides DATA/destinations.toml.
    #[arg(long, value_name = "FILE", env = "PYRAMID_DESTINATIONS")]
    destinations: Option<PathBuf>,
    /// A URL to deliver nudges (and erasures) to, signed per Standard Webhooks with
    /// DATA/webhook-secret (a `standard-webhooks` destination named `webhook`); repeatable.
    #[arg(long = "webhook", value_name = "URL")]
    webhooks: Vec<String>,
    /// More source files (`*.toml`) for `POST /v1/sources/{source}`, besides the shipped ones and
    /// DATA/sources/*.toml; a file replaces a shipped source of the same name.
    #[arg(long = "sources", value_name = "DIR", env = "PYRAMID_SOURCES")]
    sources: Option<PathBuf>,
    /// Run the sweep this often (seconds) instead of the template's schedule.
    #[arg(long, value_name = "SECONDS")]
    sweep_every: Option<u64>,
    /// Scales every wait between delivery attempts: 1000 waits as the handler says (tests
    /// make retries quick with less).
    #[arg(long, default_value_t = 1000, hide = true)]
    webhook_backoff_ms: u64,
    /// A scrub of the data directory that failed after an erasure is tried again this long
    /// (seconds) after, and at the next erasure or start.
    #[arg(long, default_value_t = 60, hide = true)]
    scrub_retry_secs: u64,
    /// Journal events but deliver none (tests: an event in flight when the process is killed).
    #[arg(long, hide = true)]
    hold_deliveries: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the same routes, JSON and problems as the Lambda functions).
    Serve(ServeArgs),
    /// Import interactions from JSON-lines or CSV files (re-running it changes nothing).
    Import {
        #[command(flatten)]
        common: Common,
        /// Files to import; `.csv` files are read as CSV, anything else as JSON lines.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Read every file in this format, whatever its name.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Take the bulk path (the default on an empty store); on a store that already holds
        /// data, the file goes the live path.
        #[arg(long, conflicts_with = "live")]
        bulk: bool,
        /// Take the live path (the shared adapter's ingest, then a quiet rescore) even on an
        /// empty store.
        #[arg(long)]
        live: bool,
    },
    /// Serve a synthetic community (made on first run) to look around in.
    Demo {
        #[command(flatten)]
        serve: ServeArgs,
        /// How many customers the synthetic community has.
        #[arg(long, default_value_t = 3000)]
        customers: usize,
    },
    /// How levels would stand at another time (replayed from history; nothing is written).
    Rescore {
        #[command(flatten)]
        common: Common,
        /// The instant, RFC 3339 (e.g. 2027-01-01T00:00:00Z).
        #[arg(long)]
        at: String,
    },
    /// Apply new rules to the stored customers: replay each one's history under them and store
    /// evidence, level, timeline and counters, quietly (no nudges). Deploy the rules first (restart
    /// `pyramid serve --rules NEW.toml`, or `sam deploy`), then refold. Re-runnable: it resumes.
    Refold {
        /// The rules now in force (the ones just deployed).
        #[arg(long, value_name = "NEW.toml")]
        rules: PathBuf,
        /// The data directory (while `pyramid serve` is stopped: it holds the directory).
        #[arg(long, default_value = "pyramid-data", env = "PYRAMID_DATA")]
        data: PathBuf,
        /// A deployed table instead, with the caller's AWS credentials and region; safe while
        /// the stack ingests.
        #[arg(long, value_name = "NAME", conflicts_with = "data")]
        table: Option<String>,
        /// The DynamoDB endpoint for `--table` (a local DynamoDB, tests).
        #[arg(long, hide = true, requires = "table")]
        endpoint: Option<String>,
        /// Parallel scan segments (default: 4 for `--table`, 1 for the embedded store).
        #[arg(long)]
        segments: Option<u32>,
        /// Items each scan request reads.
        #[arg(long, hide = true)]
        page_size: Option<usize>,
        /// A progress line after every page (tests).
        #[arg(long, hide = true)]
        report_pages: bool,
    },
    /// How levels would change under other rules (replayed from history; nothing is written).
    Whatif {
        #[command(flatten)]
        common: Common,
        /// The rules to compare with the current ones.
        #[arg(long = "with", value_name = "NEW.toml")]
        with: PathBuf,
        /// As of this instant instead of now.
        #[arg(long)]
        at: Option<String>,
    },
    /// Fit the rules' thresholds and half-lives to levels you know people stood at (read-only).
    Calibrate(CalibrateArgs),
}

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("store").required(true).args(["data", "table"]))]
struct CalibrateArgs {
    /// CSV with the columns channel, handle, level and optionally as_of (RFC 3339; default now).
    #[arg(long, value_name = "FILE")]
    labels: PathBuf,
    /// The rules to start from (default: the shipped ones).
    #[arg(long, env = "PYRAMID_RULES")]
    rules: Option<PathBuf>,
    /// Also fit the kinds' default weights.
    #[arg(long)]
    weights: bool,
    /// Write the proposed rules here, as a complete TOML file (only when a proposal is made).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The local data directory to read histories from.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A deployed table to read histories from, with your AWS credentials (read-only; needs
    /// IDENTITY_SALT, the stack's identity salt, to find people).
    #[arg(long, value_name = "NAME")]
    table: Option<String>,
    /// Folds of the cross-validation.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Seeds the folds and the bootstrap (the same labels and seed give the same report).
    #[arg(long, default_value_t = 18)]
    seed: u64,
}

fn load_rules(path: Option<&Path>) -> anyhow::Result<Arc<Rules>> {
    let rules = engagement_aws::wiring::load_rules(path.map(|p| p.to_string_lossy()).as_deref())?;
    Ok(Arc::new(rules))
}

fn now() -> Timestamp {
    Timestamp::from_millis(chrono::Utc::now().timestamp_millis())
}

fn parse_time(text: &str) -> anyhow::Result<Timestamp> {
    Timestamp::parse_rfc3339(text).with_context(|| format!("{text:?} is not an RFC 3339 time (e.g. 2027-01-01T00:00:00Z)"))
}

async fn print_pyramid(store: &impl Insights) -> anyhow::Result<()> {
    let counts = store.pyramid_counts().await?;
    for level in Level::ALL.iter().rev() {
        println!("  {:>2} {:<13}{:>9}", level.rung(), level.name(), counts.at(*level));
    }
    Ok(())
}

async fn serve(
    args: ServeArgs,
    dir: DataDir,
    store: Option<DynamoStore>,
    banner: impl FnOnce(&str, &str, &[String]),
) -> anyhow::Result<()> {
    let rules = load_rules(args.common.rules.as_deref())?;
    let router = Router::shipped()?;
    let catalog = Arc::new(channels::load_catalog(&dir.path, args.sources.as_deref())?);
    let source_secrets = channels::LocalSourceSecrets::load(&dir.path, &catalog, |name| std::env::var(name).ok())?;
    channels::warn_unverified(&catalog);
    let destinations = pyramid::destinations::load(&dir.path, args.destinations.as_deref(), &args.webhooks, |name| {
        std::env::var(name).ok()
    })?;
    let described = destinations.describe();
    let options = Options {
        destinations,
        retry_scale: args.webhook_backoff_ms as f64 / 1000.0,
        source: engagement::events::DEFAULT_SOURCE.to_string(),
        scrub_retry_after: Duration::from_secs(args.scrub_retry_secs),
        hold_deliveries: args.hold_deliveries,
        catalog: Arc::clone(&catalog),
        source_secrets: source_secrets.clone(),
    };
    let stack = match store {
        Some(store) => Stack::with_store(&dir, store, rules, router, options).await?,
        None => Stack::start(&dir, rules, router, options).await?,
    };
    stack.schedule(args.sweep_every.map(Duration::from_secs));
    let token = dir.secret("token")?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let url = format!("http://{}", listener.local_addr()?);
    if described.is_empty() {
        println!("destinations: none (DATA/destinations.toml or --destinations FILE: see README, \"Destinations\")");
    } else {
        let dead = stack.outbox.dead_letters();
        println!("destinations:");
        for (line, destination) in described.iter().zip(stack.outbox.destinations()) {
            match dead.get(&destination.name) {
                Some(count) => println!("  {line}  [{count} dead letters]"),
                None => println!("  {line}"),
            }
        }
    }
    banner(&url, &token, &channels::describe(&catalog, &source_secrets, &url));
    let served = Served {
        stack: Arc::new(stack),
        token: Arc::new(token),
    };
    axum::serve(listener, app(served)).await?;
    Ok(())
}

fn serve_banner(url: &str, token: &str, dir: &Path, sources: &[String]) {
    println!("pyramid is serving {url}  (data in {})", dir.display());
    println!("token: {token}  (also in {})", dir.join("token").display());
    // The token travels in the fragment, which browsers never send to the server.
    println!("dashboard: {url}/#token={token}");
    for line in sources {
        println!("{line}");
    }
    // Tests and scripts read this line.
    println!("listening on {url}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PYRAMID_LOG").unwrap_or_else(|_| "warn,pyramid=info,dynoxide=error".into()),
        )
        .with_writer(std::io::stderr)
        .compact()
        .init();
    match Cli::parse().command {
        Command::Serve(args) => {
            let dir = DataDir::open(&args.common.data)?;
            let path = dir.path.clone();
            serve(args, dir, None, |url, token, sources| serve_banner(url, token, &path, sources)).await
        }
        Command::Import {
            common,
            files,
            format,
            bulk,
            live,
        } => {
            let path = match (bulk, live) {
                (true, _) => ImportPath::Bulk,
                (_, true) => ImportPath::Live,
                _ => ImportPath::Auto,
            };
            run_import(common, &files, format, path).await
        }
        Command::Demo { serve: args, customers } => run_demo(args, customers).await,
        Command::Rescore { common, at } => {
            let at = parse_time(&at)?;
            let dir = DataDir::open(&common.data)?;
            let rules = load_rules(common.rules.as_deref())?;
            let store = embedded_store(&dir, Arc::clone(&rules)).await?;
            let transitions = pyramid::report::compare(&store, &rules, at).await?;
            print!("{}", transitions.render(&format!("levels at {}", at.to_rfc3339())));
            Ok(())
        }
        Command::Calibrate(args) => run_calibrate(args).await,
        Command::Refold {
            rules,
            data,
            table,
            endpoint,
            segments,
            page_size,
            report_pages,
        } => {
            let defaults = if table.is_some() {
                pyramid::refold::RefoldOptions::default()
            } else {
                pyramid::refold::RefoldOptions::embedded()
            };
            let options = pyramid::refold::RefoldOptions {
                segments: segments.unwrap_or(defaults.segments),
                page_size: page_size.unwrap_or(defaults.page_size),
                report_pages,
                ..defaults
            };
            run_refold(&rules, &data, table, endpoint, options).await
        }
        Command::Whatif { common, with, at } => {
            let at = at.as_deref().map(parse_time).transpose()?.unwrap_or_else(now);
            let dir = DataDir::open(&common.data)?;
            let rules = load_rules(common.rules.as_deref())?;
            let new_rules = load_rules(Some(&with))?;
            let store = embedded_store(&dir, rules).await?;
            let transitions = pyramid::report::compare(&store, &new_rules, at).await?;
            print!("{}", transitions.render(&format!("under {}", with.display())));
            Ok(())
        }
    }
}

/// `pyramid calibrate`: the report on stdout; the proposal in `--out` unless refused (then exit 1).
async fn run_calibrate(args: CalibrateArgs) -> anyhow::Result<()> {
    let rules = load_rules(args.rules.as_deref())?;
    let text = std::fs::read_to_string(&args.labels).with_context(|| format!("cannot read {}", args.labels.display()))?;
    let (rows, mut problems) = pyramid::calibrate::parse_labels(&text, &rules, now())?;
    let (store, _dir) = match (&args.data, &args.table) {
        (Some(data), _) => {
            anyhow::ensure!(
                data.join("engagement.db").exists(),
                "{} holds no store (engagement.db): import or serve there first",
                data.display()
            );
            let dir = DataDir::open(data)?;
            (embedded_store(&dir, Arc::clone(&rules)).await?, Some(dir))
        }
        (None, Some(table)) => {
            let salt = std::env::var("IDENTITY_SALT").context(
                "--table needs IDENTITY_SALT: the stack's identity salt (its Secrets Manager secret), to find people by their handles",
            )?;
            let config = engagement_aws::client::aws_config_from_env().await;
            let store = DynamoStore::new(
                aws_sdk_dynamodb::Client::new(&config),
                Arc::clone(&rules),
                engagement_aws::StoreConfig {
                    table: table.clone(),
                    salt,
                    omit_request_tokens: false,
                },
            );
            (store, None)
        }
        (None, None) => anyhow::bail!("either --data or --table"),
    };
    eprintln!("reading the histories of {} labelled people…", rows.len());
    let (labels, unknown) = pyramid::calibrate::load_labels(&store, rows).await?;
    problems.extend(unknown);
    problems.sort_by_key(|p| p.line);
    if !problems.is_empty() {
        println!("rows refused:");
        for problem in &problems {
            println!("  line {}: {}", problem.line, problem.reason);
        }
        println!();
    }
    let options = engagement_calibrate::Options {
        folds: args.folds,
        weights: args.weights,
        seed: args.seed,
        ..engagement_calibrate::Options::default()
    };
    let started = std::time::Instant::now();
    let calibration = engagement_calibrate::calibrate(&rules, &labels, &options)?;
    print!("{}", calibration.render());
    eprintln!("calibrated in {:.1} s", started.elapsed().as_secs_f64());
    if let engagement_calibrate::Verdict::Refuse(reason) = &calibration.verdict {
        anyhow::bail!("no proposal: {reason}");
    }
    if let Some(out) = &args.out {
        std::fs::write(out, calibration.proposed.to_toml()).with_context(|| format!("cannot write {}", out.display()))?;
        println!(
            "\nthe proposed rules: {} (apply them with `pyramid refold --rules {}`)",
            out.display(),
            out.display()
        );
    }
    Ok(())
}

/// `pyramid import`.
async fn run_import(common: Common, files: &[PathBuf], format: Option<Format>, path: ImportPath) -> anyhow::Result<()> {
    let dir = DataDir::open(&common.data)?;
    let rules = load_rules(common.rules.as_deref())?;
    // Re-runnable: no fsync while it loads.
    let (store, bulk_load) = embedded_store_for_bulk_load(&dir, Arc::clone(&rules)).await?;
    let report = import_into(&dir, &store, &bulk_load, &rules, files, format, path, LiveOptions::default()).await?;
    bulk_load.finish()?;
    println!(
        "{} lines in {:.1} s ({} path): {} recorded, {} duplicate, {} conflict, {} erased, {} rejected; {} customers rescored",
        report.lines,
        report.seconds,
        report.path,
        report.recorded,
        report.duplicate,
        report.conflict,
        report.erased,
        report.rejected,
        report.rescored
    );
    println!("customers by level:");
    print_pyramid(&store).await
}

/// `pyramid refold`: on the embedded store, or on a deployed table.
async fn run_refold(
    rules_path: &Path,
    data: &Path,
    table: Option<String>,
    endpoint: Option<String>,
    options: pyramid::refold::RefoldOptions,
) -> anyhow::Result<()> {
    let rules = load_rules(Some(rules_path))?;
    let clock = engagement_aws::SystemClock;
    let (report, store, _dir) = match table {
        Some(table) => {
            let client = match endpoint {
                Some(endpoint) => engagement_aws::client::local_dynamodb(&endpoint, None),
                None => aws_sdk_dynamodb::Client::new(&engagement_aws::client::aws_config_from_env().await),
            };
            // A refold hashes no identity: it needs no salt.
            let config = engagement_aws::StoreConfig {
                table,
                salt: String::new(),
                omit_request_tokens: false,
            };
            let store = DynamoStore::new(client, Arc::clone(&rules), config);
            (pyramid::refold::refold(&store, &rules, &clock, options).await?, store, None)
        }
        None => {
            let dir = DataDir::open(data)?;
            let store = embedded_store(&dir, Arc::clone(&rules)).await?;
            (pyramid::refold::refold(&store, &rules, &clock, options).await?, store, Some(dir))
        }
    };
    println!(
        "{} customers refolded in {:.1} s: {} moved up, {} down; {} read again, {} left for the next run",
        report.refolded, report.seconds, report.moved_up, report.moved_down, report.retried, report.left
    );
    println!("customers by level:");
    print_pyramid(&store).await?;
    anyhow::ensure!(
        report.left == 0,
        "{} customers are not refolded yet: run `pyramid refold` again",
        report.left
    );
    Ok(())
}

/// `pyramid demo`: the synthetic community (made on first run), then `serve`.
async fn run_demo(args: ServeArgs, customers: usize) -> anyhow::Result<()> {
    let dir = DataDir::open(&args.common.data)?;
    let rules = load_rules(args.common.rules.as_deref())?;
    // The synthetic history is made again if it did not finish: no fsync while it loads.
    let (store, bulk_load) = embedded_store_for_bulk_load(&dir, Arc::clone(&rules)).await?;
    if store.pyramid_counts().await?.0.iter().sum::<u64>() == 0 {
        make_community(&store, &rules, customers).await?;
    }
    bulk_load.finish()?;
    println!("the community:");
    print_pyramid(&store).await?;
    let path = dir.path.clone();
    serve(args, dir, Some(store), |url, token, sources| {
        serve_banner(url, token, &path, sources);
        println!("\ntry:");
        println!("  curl -s -H 'Authorization: Bearer {token}' {url}/v1/pyramid");
        println!("  curl -s -H 'Authorization: Bearer {token}' '{url}/v1/customers?level=leading&limit=5'");
        println!(
            "  curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' {url}/v1/interactions \\\n    -d '{{\"id\": \"try-1\", \"source\": \"curl\", \"customer\": {{\"channel\": \"email\", \"handle\": \"you@example.com\"}}, \"kind\": \"newsletter_subscribed\", \"occurred_at\": \"{}\"}}'",
            now().to_rfc3339()
        );
    })
    .await
}

/// Plays a synthetic community's two years into `store`, week by week, reporting progress.
async fn make_community(store: &DynamoStore, rules: &Arc<Rules>, customers: usize) -> anyhow::Result<()> {
    eprintln!("making a synthetic community of {customers} customers, two years played week by week…");
    let started = std::time::Instant::now();
    let until = now();
    let history = pyramid::community::synthetic(42, customers, until).collect();
    let report = pyramid::history::play(store, rules, history, until, |week_end, so_far| {
        if so_far.weeks % 13 == 0 {
            eprintln!(
                "  up to {}: {} interactions, {} level changes, {} nudges",
                week_end.human_date(),
                so_far.recorded,
                so_far.level_changes,
                so_far.nudges
            );
        }
    })
    .await?;
    eprintln!(
        "{} interactions recorded, {} level changes and {} nudges over {} weeks, in {:.1} s",
        report.recorded,
        report.level_changes,
        report.nudges,
        report.weeks,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
