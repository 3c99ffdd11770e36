//! `pyramid import`: streams files of interactions (JSON lines or CSV) into the store in batches,
//! with constant memory; every bad line is reported with its number and reason and skipped; the
//! levels are then decided by the sweep, quietly (a history import nudges nobody).

use crate::bus::QuietBus;
use crate::local::FixedClock;
use engagement::ports::{CustomerId, InteractionLog, RecordStatus};
use engagement::{validate_interaction, Interaction, Rules, Timestamp};
use engagement_aws::{DynamoStore, SystemClock};
use futures::StreamExt as _;
use rescore::Rescorer;
use serde_json::{json, Value};
use std::cell::Cell;
use std::io::{BufRead, BufReader, IsTerminal as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Interactions per `record_interactions` call (ingest's own limit).
const BATCH: usize = 500;
/// Batches in flight at once: enough to keep the store busy, few enough to keep memory flat.
const IN_FLIGHT: usize = 4;

fn in_flight() -> usize {
    std::env::var("PYRAMID_IMPORT_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(IN_FLIGHT)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ImportReport {
    pub lines: u64,
    pub recorded: u64,
    pub duplicate: u64,
    pub conflict: u64,
    pub erased: u64,
    pub rejected: u64,
    pub rescored: u64,
    pub seconds: f64,
    /// Which path loaded it: `bulk` or `live`.
    pub path: &'static str,
}

/// Which path `pyramid import` takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImportPath {
    /// Bulk into an empty store (or to finish an interrupted bulk load), live otherwise.
    #[default]
    Auto,
    /// Bulk; on a store that already holds data, the live path (see ARCHITECTURE.md).
    Bulk,
    /// The live path: the shared adapter's ingest, then a quiet rescore.
    Live,
}

/// What a live import can be told besides its files.
#[derive(Clone, Copy, Debug)]
pub struct LiveOptions {
    /// A pinned instant (tests): validation, `recorded_at` and the rescore's clock. Otherwise
    /// the clock's, read at the start (the rescore then reads the clock too).
    pub now: Option<Timestamp>,
    /// Batches recorded at once.
    pub in_flight: usize,
}

impl Default for LiveOptions {
    /// `PYRAMID_IMPORT_NOW` (milliseconds since 1970) and `PYRAMID_IMPORT_IN_FLIGHT`, for tests.
    fn default() -> LiveOptions {
        LiveOptions {
            now: pinned_now(),
            in_flight: in_flight(),
        }
    }
}

/// The instant tests pin (`PYRAMID_IMPORT_NOW`), so that two loads can be compared item for item.
fn pinned_now() -> Option<Timestamp> {
    std::env::var("PYRAMID_IMPORT_NOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Timestamp::from_millis)
}

pub(crate) fn clock_now() -> Timestamp {
    Timestamp::from_millis(chrono::Utc::now().timestamp_millis())
}

/// One line turned into an interaction, or why not.
fn parse_line(
    format: Format,
    line: &str,
    headers: Option<&csv::StringRecord>,
    rules: &Rules,
    now: Timestamp,
) -> Result<Interaction, String> {
    let value: Value = match format {
        Format::Jsonl => serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?,
        Format::Csv => {
            let headers = headers.ok_or("no header line")?;
            let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(line.as_bytes());
            let record = reader
                .records()
                .next()
                .ok_or("empty line")?
                .map_err(|e| format!("not valid CSV: {e}"))?;
            let field = |name: &str| {
                headers
                    .iter()
                    .position(|h| h == name)
                    .and_then(|i| record.get(i))
                    .filter(|v| !v.is_empty())
            };
            let mut customer = json!({"channel": field("channel"), "handle": field("handle")});
            if let Some(name) = field("name") {
                customer["name"] = json!(name);
            }
            let mut value = json!({
                "id": field("id"),
                "source": field("source"),
                "customer": customer,
                "kind": field("kind"),
                "occurred_at": field("occurred_at"),
            });
            if let Some(weight) = field("weight") {
                value["weight"] = json!(weight.parse::<f64>().map_err(|_| "weight: not a number")?);
            }
            if let Some(properties) = field("properties") {
                value["properties"] = serde_json::from_str(properties).map_err(|e| format!("properties: not JSON: {e}"))?;
            }
            value
        }
    };
    validate_interaction(&value, rules, now).map_err(|errors| errors.to_string())
}

pub(crate) fn format_of(path: &Path, forced: Option<Format>) -> Format {
    forced.unwrap_or(if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
        Format::Csv
    } else {
        Format::Jsonl
    })
}

/// Progress on a terminal (a bar with rate and ETA) or as plain lines (logs, CI).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
    started: Instant,
}

impl Progress {
    fn new(total_bytes: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total_bytes);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({eta}) {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            bar,
            last_line: Instant::now(),
            started: Instant::now(),
        }
    }

    fn update(&mut self, bytes: u64, report: &ImportReport) {
        let rate = report.lines as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        match &self.bar {
            Some(bar) => {
                bar.set_position(bytes);
                bar.set_message(format!("{} lines, {:.0}/s, {} rejected", report.lines, rate, report.rejected));
            }
            None if self.last_line.elapsed() >= Duration::from_secs(5) => {
                eprintln!(
                    "imported {} lines ({:.0}/s): {} recorded, {} duplicate, {} rejected",
                    report.lines, rate, report.recorded, report.duplicate, report.rejected
                );
                self.last_line = Instant::now();
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Imports files into the store, then decides the level of every customer the files name
/// (recorded or already there) quietly.
pub async fn import(store: &DynamoStore, rules: &Arc<Rules>, files: &[PathBuf], forced: Option<Format>) -> anyhow::Result<ImportReport> {
    import_with(store, rules, files, forced, LiveOptions::default()).await
}

/// [`import`] with its options given.
pub async fn import_with(
    store: &DynamoStore,
    rules: &Arc<Rules>,
    files: &[PathBuf],
    forced: Option<Format>,
    options: LiveOptions,
) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    let now = options.now.unwrap_or_else(clock_now);
    let total_bytes = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let mut progress = Progress::new(total_bytes);
    let mut report = ImportReport::default();
    let counts = ReadCounts::default();
    let mut touched = std::collections::BTreeSet::new();
    for path in files {
        let batches = batches_of_file(path, format_of(path, forced), rules, now, &counts)?;
        let mut recorded = futures::stream::iter(batches)
            .map(|batch| async move { store.record_interactions(&batch, now).await })
            .buffered(options.in_flight.max(1));
        while let Some(outcomes) = recorded.next().await {
            for outcome in outcomes? {
                match outcome.status {
                    RecordStatus::Recorded => report.recorded += 1,
                    RecordStatus::Duplicate => report.duplicate += 1,
                    RecordStatus::Conflict => report.conflict += 1,
                    RecordStatus::Erased => report.erased += 1,
                }
                // Duplicates too: a run killed before it settled left their customers undecided.
                touched.extend(outcome.customer_id);
            }
            report.lines = counts.lines.get();
            report.rejected = counts.rejected.get();
            progress.update(counts.bytes.get(), &report);
        }
    }
    report.lines = counts.lines.get();
    report.rejected = counts.rejected.get();
    progress.finish();
    report.rescored = match options.now {
        Some(now) => settle_with(store, rules, &touched, FixedClock(now)).await?,
        None => settle(store, rules, &touched).await?,
    };
    report.seconds = started.elapsed().as_secs_f64();
    report.path = "live";
    Ok(report)
}

/// What the reading side has counted so far, for the recording side's report and progress.
#[derive(Default)]
pub(crate) struct ReadCounts {
    bytes: Cell<u64>,
    pub(crate) lines: Cell<u64>,
    pub(crate) rejected: Cell<u64>,
}

/// A file's interactions in batches of `BATCH`, validated as they are read (the recording side
/// records `IN_FLIGHT` batches at a time). A bad line is reported with its number, and skipped.
pub(crate) fn batches_of_file<'c>(
    path: &Path,
    format: Format,
    rules: &Arc<Rules>,
    now: Timestamp,
    counts: &'c ReadCounts,
) -> anyhow::Result<impl Iterator<Item = Vec<Interaction>> + 'c> {
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut lines = BufReader::with_capacity(1 << 20, file).lines();
    let headers = match format {
        Format::Csv => {
            let header = lines.next().transpose()?.unwrap_or_default();
            counts.bytes.set(counts.bytes.get() + header.len() as u64 + 1);
            let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(header.as_bytes());
            Some(reader.records().next().transpose()?.unwrap_or_default())
        }
        Format::Jsonl => None,
    };
    let first_line = if headers.is_some() { 2 } else { 1 };
    let rules = Arc::clone(rules);
    let path = path.display().to_string();
    let mut numbered = lines.enumerate();
    Ok(std::iter::from_fn(move || {
        let mut batch = Vec::with_capacity(BATCH);
        for (index, line) in numbered.by_ref() {
            let number = index + first_line;
            let line = match line {
                Ok(line) => line,
                Err(error) => {
                    eprintln!("{path}:{number}: unreadable: {error}");
                    counts.rejected.set(counts.rejected.get() + 1);
                    continue;
                }
            };
            counts.bytes.set(counts.bytes.get() + line.len() as u64 + 1);
            if line.trim().is_empty() {
                continue;
            }
            counts.lines.set(counts.lines.get() + 1);
            match parse_line(format, &line, headers.as_ref(), &rules, now) {
                Ok(interaction) => batch.push(interaction),
                Err(reason) => {
                    eprintln!("{path}:{number}: {reason}");
                    counts.rejected.set(counts.rejected.get() + 1);
                }
            }
            if batch.len() == BATCH {
                break;
            }
        }
        (!batch.is_empty()).then_some(batch)
    }))
}

/// Decides the level of the customers the files named, publishing nothing. (Not a sweep:
/// other customers' pending events and at-risk notices are left for `serve` to send.)
pub async fn settle(store: &DynamoStore, rules: &Arc<Rules>, touched: &std::collections::BTreeSet<CustomerId>) -> anyhow::Result<u64> {
    settle_with(store, rules, touched, SystemClock).await
}

/// [`settle`] on a given clock.
async fn settle_with<C: engagement::ports::Clock>(
    store: &DynamoStore,
    rules: &Arc<Rules>,
    touched: &std::collections::BTreeSet<CustomerId>,
    clock: C,
) -> anyhow::Result<u64> {
    let quiet = Rescorer {
        store: store.clone(),
        bus: QuietBus::default(),
        clock,
        rules: Arc::clone(rules),
    };
    let ids: Vec<&CustomerId> = touched.iter().collect();
    let mut rescored = 0;
    for group in ids.chunks(IN_FLIGHT) {
        for done in futures::future::join_all(group.iter().map(|id| quiet.rescore(id))).await {
            rescored += u64::from(done?.is_some());
        }
    }
    Ok(rescored)
}
