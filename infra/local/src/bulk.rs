//! `pyramid import`'s bulk path: a history loaded into an empty store at the speed of the disk.
//!
//! The lines are read and validated as ingest does, and identities resolved in file order as
//! ingest resolves them (a line belongs to the customer of its first known identity, primary then
//! `also`; its unknown identities are claimed for that customer). Each interaction item is written
//! at once (it depends only on its customer); each customer's interactions are kept grouped, as
//! what scoring needs, in memory or beyond the budget in spill files. Then every customer is
//! replayed (`engagement::replay`) and decided as a rescore at the end of the import would
//! decide them, and their final items are written once, with the whole level timeline and the
//! counters it implies. Every write goes through dynoxide's `import_items` in chunks: one SQLite
//! transaction per chunk, no HTTP, no conditions.
//!
//! Crash-safe by determinism: before writing anything a marker (`DATA/bulk-import.json`) records
//! the files and the instant the load counts as "now" (`recorded_at`, `created_at`, `linked_at`,
//! the decisions). A run that finds the marker redoes the load with the same instant; every item
//! is a put of the same value, so the finished store is identical to a clean bulk import. The
//! marker goes once the last chunk is committed.

use crate::import::{batches_of_file, format_of, Format, ImportPath, ImportReport, LiveOptions, ReadCounts};
use crate::local::TABLE;
use anyhow::Context as _;
use engagement::ports::{CustomerId, StoredCustomer};
use engagement::rescoring::plan_rescore;
use engagement::{
    replay_scored, ConsentEffect, Contribution, Identity, Interaction, KindId, Level, Rules, ScoredInteraction, Standing, Timestamp,
};
use engagement_aws::store::{BulkCounters, BulkCustomer};
use engagement_aws::DynamoStore;
use std::collections::HashMap;
use std::io::{BufRead as _, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The marker of a bulk load under way, in the data directory.
pub const MARKER_FILE: &str = "bulk-import.json";
/// Items per `import_items` call (one SQLite transaction each): fewer, larger transactions mean
/// fewer commits and WAL checkpoints. Three chunks are held at most (one filling, one queued, one
/// being written).
const CHUNK: usize = 20_000;
/// Spill files when the grouped interactions outgrow the memory budget.
const SPILL_BUCKETS: usize = 16;
/// The default memory budget for grouped interactions.
pub const DEFAULT_BUDGET: usize = 512 << 20;

#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct Marker {
    /// The instant the load counts as now, kept so that a re-run writes the same items.
    now: i64,
    /// The files loaded (absolute) and their sizes.
    files: Vec<(PathBuf, u64)>,
}

/// Whether `pyramid import` takes the bulk path by itself: the store holds nothing yet, or a bulk
/// load was interrupted.
pub fn bulk_applies(dir: &crate::local::DataDir, database: &dynoxide::Database) -> anyhow::Result<bool> {
    if dir.path.join(MARKER_FILE).exists() {
        return Ok(true);
    }
    let scanned = database
        .scan(dynoxide::actions::scan::ScanRequest {
            table_name: TABLE.to_string(),
            limit: Some(1),
            ..Default::default()
        })
        .map_err(|e| anyhow::anyhow!("cannot read the store: {e}"))?;
    Ok(scanned.count == 0)
}

/// One interaction as the grouping keeps it: what scoring and replay's order need.
struct Held {
    occurred_at: Timestamp,
    id: Box<str>,
    scored: Option<ScoredInteraction>,
}

impl Held {
    /// A rough size in memory, for the budget.
    fn footprint(&self) -> usize {
        std::mem::size_of::<Held>() + self.id.len() + 48
    }

    /// One line of a spill file (tab-separated; ids and channels hold no tabs or newlines).
    fn spill_line(&self, customer: u32) -> String {
        let scored = match &self.scored {
            None => "-".to_string(),
            Some(s) => {
                let consent = match &s.consent {
                    None => "-".to_string(),
                    Some((channel, effect)) => format!("{}:{}", if *effect == ConsentEffect::Grant { 'g' } else { 'w' }, channel),
                };
                format!(
                    "{} {} {:x} {}",
                    s.contribution.kind.0,
                    s.contribution.level.index(),
                    s.contribution.weight.to_bits(),
                    consent
                )
            }
        };
        format!("{customer}\t{}\t{}\t{scored}\n", self.occurred_at.millis(), self.id)
    }

    fn from_spill_line(line: &str) -> Option<(u32, Held)> {
        let mut fields = line.splitn(4, '\t');
        let customer = fields.next()?.parse().ok()?;
        let occurred_at = Timestamp(fields.next()?.parse().ok()?);
        let id = fields.next()?.into();
        let scored = match fields.next()? {
            "-" => None,
            text => {
                let mut parts = text.split(' ');
                let kind = KindId(parts.next()?.parse().ok()?);
                let level = *Level::ALL.get(parts.next()?.parse::<usize>().ok()?)?;
                let weight = f64::from_bits(u64::from_str_radix(parts.next()?, 16).ok()?);
                let consent = match parts.next()? {
                    "-" => None,
                    text => {
                        let (effect, channel) = text.split_once(':')?;
                        let effect = if effect == "g" {
                            ConsentEffect::Grant
                        } else {
                            ConsentEffect::Withdraw
                        };
                        Some((engagement::Channel::parse(channel).ok()?, effect))
                    }
                };
                Some(ScoredInteraction {
                    contribution: Contribution {
                        kind,
                        level,
                        weight,
                        occurred_at,
                    },
                    consent,
                })
            }
        };
        Some((customer, Held { occurred_at, id, scored }))
    }
}

/// A customer found in the files.
struct Found {
    id: CustomerId,
    identities: Vec<Identity>,
    name: Option<String>,
    first_at: Timestamp,
}

/// The grouped interactions: in memory, or (past the budget) in spill files by customer.
enum Groups {
    Memory {
        lists: Vec<Vec<Held>>,
        bytes: usize,
    },
    Spilled {
        dir: PathBuf,
        files: Vec<BufWriter<std::fs::File>>,
    },
}

impl Groups {
    fn add(&mut self, customer: u32, held: Held, budget: usize, spill_dir: &Path) -> anyhow::Result<()> {
        match self {
            Groups::Memory { lists, bytes } => {
                *bytes += held.footprint();
                let index = customer as usize;
                if lists.len() <= index {
                    lists.resize_with(index + 1, Vec::new);
                }
                lists[index].push(held);
                if *bytes > budget {
                    self.spill(spill_dir)?;
                }
            }
            Groups::Spilled { files, .. } => {
                files[customer as usize % SPILL_BUCKETS].write_all(held.spill_line(customer).as_bytes())?;
            }
        }
        Ok(())
    }

    /// Moves what is held to the spill files; everything after goes there too.
    fn spill(&mut self, dir: &Path) -> anyhow::Result<()> {
        let Groups::Memory { lists, .. } = self else { return Ok(()) };
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut files = (0..SPILL_BUCKETS)
            .map(|bucket| Ok(BufWriter::new(std::fs::File::create(dir.join(format!("{bucket}")))?)))
            .collect::<std::io::Result<Vec<_>>>()?;
        for (customer, list) in std::mem::take(lists).into_iter().enumerate() {
            for held in list {
                files[customer % SPILL_BUCKETS].write_all(held.spill_line(customer as u32).as_bytes())?;
            }
        }
        *self = Groups::Spilled {
            dir: dir.to_path_buf(),
            files,
        };
        Ok(())
    }

    /// Every customer with their interactions, a bucket at a time.
    fn for_each(self, mut each: impl FnMut(u32, Vec<Held>) -> anyhow::Result<()>) -> anyhow::Result<()> {
        match self {
            Groups::Memory { lists, .. } => {
                for (customer, list) in lists.into_iter().enumerate() {
                    each(customer as u32, list)?;
                }
            }
            Groups::Spilled { dir, files } => {
                for file in files {
                    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                }
                for bucket in 0..SPILL_BUCKETS {
                    let path = dir.join(format!("{bucket}"));
                    let mut lists: std::collections::BTreeMap<u32, Vec<Held>> = std::collections::BTreeMap::new();
                    for line in std::io::BufReader::new(std::fs::File::open(&path)?).lines() {
                        let line = line?;
                        let (customer, held) = Held::from_spill_line(&line).context("a spill file line is unreadable")?;
                        lists.entry(customer).or_default().push(held);
                    }
                    for (customer, list) in lists {
                        each(customer, list)?;
                    }
                }
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        Ok(())
    }
}

/// Sends chunks of items to a thread that imports them, so that reading and deciding overlap
/// SQLite's work.
struct Writer {
    pending: Vec<dynoxide::Item>,
    sender: Option<std::sync::mpsc::SyncSender<Vec<dynoxide::Item>>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<u64>>>,
}

impl Writer {
    fn start(database: dynoxide::Database) -> Writer {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<dynoxide::Item>>(1);
        let thread = std::thread::spawn(move || {
            let mut written = 0u64;
            for chunk in receiver {
                written += chunk.len() as u64;
                database
                    .import_items(TABLE, chunk, dynoxide::ImportOptions::default())
                    .map_err(|e| anyhow::anyhow!("bulk write failed: {e}"))?;
            }
            Ok(written)
        });
        Writer {
            pending: Vec::with_capacity(CHUNK),
            sender: Some(sender),
            thread: Some(thread),
        }
    }

    fn put(&mut self, item: engagement_aws::item::Item) -> anyhow::Result<()> {
        self.pending.push(to_dynoxide_item(item)?);
        if self.pending.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK));
        if let Some(sender) = &self.sender {
            if sender.send(chunk).is_err() {
                // The thread stopped on an error: `finish` reports it.
                return self.finish().map(|_| ());
            }
        }
        Ok(())
    }

    /// Writes what is left and waits for every chunk to be committed.
    fn finish(&mut self) -> anyhow::Result<u64> {
        if !self.pending.is_empty() {
            let chunk = std::mem::take(&mut self.pending);
            if let Some(sender) = &self.sender {
                let _ = sender.send(chunk);
            }
        }
        self.sender = None;
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| anyhow::anyhow!("the bulk writer panicked"))?,
            None => anyhow::bail!("the bulk writer stopped"),
        }
    }
}

fn to_dynoxide_value(value: aws_sdk_dynamodb::types::AttributeValue) -> anyhow::Result<dynoxide::AttributeValue> {
    use aws_sdk_dynamodb::types::AttributeValue as Sdk;
    use dynoxide::AttributeValue as Dyn;
    Ok(match value {
        Sdk::S(s) => Dyn::S(s),
        Sdk::N(n) => Dyn::N(n),
        Sdk::B(b) => Dyn::B(b.into_inner()),
        Sdk::Bool(b) => Dyn::BOOL(b),
        Sdk::Null(n) => Dyn::NULL(n),
        Sdk::Ss(v) => Dyn::SS(v),
        Sdk::Ns(v) => Dyn::NS(v),
        Sdk::Bs(v) => Dyn::BS(v.into_iter().map(|b| b.into_inner()).collect()),
        Sdk::L(v) => Dyn::L(v.into_iter().map(to_dynoxide_value).collect::<anyhow::Result<_>>()?),
        Sdk::M(m) => Dyn::M(
            m.into_iter()
                .map(|(k, v)| Ok((k, to_dynoxide_value(v)?)))
                .collect::<anyhow::Result<_>>()?,
        ),
        other => anyhow::bail!("an attribute type the bulk path cannot write: {other:?}"),
    })
}

fn to_dynoxide_item(item: engagement_aws::item::Item) -> anyhow::Result<dynoxide::Item> {
    item.into_iter().map(|(k, v)| Ok((k, to_dynoxide_value(v)?))).collect()
}

/// The marker for this load: a new one, or the interrupted load's (same files required).
fn claim_marker(dir: &Path, files: &[PathBuf], now: Timestamp) -> anyhow::Result<Marker> {
    let mut listed = Vec::new();
    for file in files {
        let path = std::fs::canonicalize(file).with_context(|| format!("{}", file.display()))?;
        let size = std::fs::metadata(&path)?.len();
        listed.push((path, size));
    }
    let path = dir.join(MARKER_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let marker: Marker = serde_json::from_str(&text).with_context(|| format!("{} is unreadable", path.display()))?;
        anyhow::ensure!(
            marker.files == listed,
            "a bulk import of other files was interrupted here ({}); re-run it with the same files to finish it",
            path.display()
        );
        tracing::info!("finishing an interrupted bulk import");
        return Ok(marker);
    }
    let marker = Marker {
        now: now.millis(),
        files: listed,
    };
    crate::files::write_private(&path, serde_json::to_string(&marker)?.as_bytes())?;
    Ok(marker)
}

/// Loads `files` into the store by the bulk path (see the module). `now` is when the load
/// counts as done, unless an interrupted load's marker says otherwise.
#[allow(clippy::too_many_arguments)]
pub fn bulk_import(
    dir: &Path,
    store: &DynamoStore,
    database: &dynoxide::Database,
    rules: &Arc<Rules>,
    files: &[PathBuf],
    forced: Option<Format>,
    now: Timestamp,
    budget: usize,
) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    let marker = claim_marker(dir, files, now)?;
    let now = Timestamp(marker.now);
    let spill_dir = dir.join("bulk-spill");
    let mut report = ImportReport::default();
    let mut writer = Writer::start(database.clone());
    let mut seen: HashMap<Box<str>, u128> = HashMap::new();
    let mut owners: HashMap<Identity, u32> = HashMap::new();
    let mut customers: Vec<Found> = Vec::new();
    let mut groups = Groups::Memory {
        lists: Vec::new(),
        bytes: 0,
    };
    let counts = ReadCounts::default();
    for path in files {
        for batch in batches_of_file(path, format_of(path, forced), rules, now, &counts)? {
            for interaction in batch {
                let fingerprint = interaction.fingerprint();
                let short = u128::from_str_radix(fingerprint.get(..32).unwrap_or_default(), 16).unwrap_or(0);
                if let Some(first) = seen.get(interaction.id.as_str()) {
                    if *first == short {
                        report.duplicate += 1;
                    } else {
                        report.conflict += 1;
                    }
                    continue;
                }
                seen.insert(interaction.id.as_str().into(), short);
                let customer = resolve(store, &mut owners, &mut customers, &interaction);
                let found = &mut customers[customer as usize];
                found.first_at = found.first_at.min(interaction.occurred_at);
                if found.name.is_none() {
                    found.name.clone_from(&interaction.customer.name);
                }
                writer.put(store.bulk_interaction_item(&interaction, fingerprint, &found.id, now)?)?;
                let held = Held {
                    occurred_at: interaction.occurred_at,
                    id: interaction.id.as_str().into(),
                    scored: interaction.score(rules),
                };
                groups.add(customer, held, budget, &spill_dir)?;
                report.recorded += 1;
            }
        }
    }
    report.lines = counts.lines.get();
    report.rejected = counts.rejected.get();
    drop(seen);
    drop(owners);
    let mut counters = BulkCounters::default();
    // Once for the load, not once per customer.
    let store_fingerprint = store.rules_fingerprint();
    let fingerprint = rules.fingerprint();
    groups.for_each(|customer, mut held| {
        let found = &customers[customer as usize];
        held.sort_by(|a, b| (a.occurred_at, &a.id).cmp(&(b.occurred_at, &b.id)));
        let scored: Vec<ScoredInteraction> = held.into_iter().filter_map(|h| h.scored).collect();
        let decided = decide_customer(rules, &fingerprint, found, &scored, now);
        let write = decided.write;
        for item in store.bulk_customer_items(
            &BulkCustomer {
                id: &found.id,
                name: found.name.clone(),
                identities: &found.identities,
                state: &decided.state,
                write: &write,
                timeline: &decided.timeline,
                rules_fingerprint: &store_fingerprint,
            },
            now,
        ) {
            writer.put(item)?;
        }
        counters.count(&found.id, found.first_at, &decided.timeline, write.standing.level);
        report.rescored += 1;
        Ok(())
    })?;
    for item in counters.items() {
        writer.put(item)?;
    }
    writer.finish()?;
    std::fs::remove_file(dir.join(MARKER_FILE)).context("cannot remove the bulk import's marker")?;
    report.seconds = started.elapsed().as_secs_f64();
    report.path = "bulk";
    Ok(report)
}

/// The customer a line belongs to, as ingest resolves it: the owner of its first known identity
/// (primary, then `also`), else a new customer named by its primary identity. Its unknown
/// identities are claimed for that customer.
fn resolve(store: &DynamoStore, owners: &mut HashMap<Identity, u32>, customers: &mut Vec<Found>, interaction: &Interaction) -> u32 {
    let customer = match interaction.identities().find_map(|identity| owners.get(identity)) {
        Some(&known) => known,
        None => {
            customers.push(Found {
                id: store.customer_id_for(&interaction.customer.identity),
                identities: Vec::new(),
                name: None,
                first_at: interaction.occurred_at,
            });
            (customers.len() - 1) as u32
        }
    };
    for identity in interaction.identities() {
        if !owners.contains_key(identity) {
            owners.insert(identity.clone(), customer);
            customers[customer as usize].identities.push(identity.clone());
        }
    }
    customer
}

/// A customer decided from their whole history.
struct Decided {
    state: engagement::CustomerState,
    write: engagement::ports::StandingWrite,
    timeline: Vec<engagement::LevelChange>,
}

/// Replays the history, then decides it as the rescore at the end of a live import would:
/// the standing, due time and at-risk notice a quiet rescore writes, on replay's state.
fn decide_customer(rules: &Rules, rules_fingerprint: &str, found: &Found, scored: &[ScoredInteraction], now: Timestamp) -> Decided {
    let replayed = replay_scored(rules, scored, now);
    let mut state = replayed.state;
    // No interaction that scores: observing since the first, as ingest creates them.
    state.standing.get_or_insert(Standing {
        level: Level::Observing,
        since: found.first_at,
        drops_at: None,
        at_risk_at: None,
    });
    let stored = StoredCustomer {
        id: found.id.clone(),
        name: found.name.clone(),
        identities: found.identities.clone(),
        state: state.clone(),
        version: 1,
        created_at: now,
        at_risk_notified_for: None,
        due_at: None,
        merged_ids: Vec::new(),
        outbox: Vec::new(),
        erasing: false,
        rules_fingerprint: Some(rules_fingerprint.to_string()),
    };
    let plan = plan_rescore(rules, &stored, now);
    let write = plan.write(&stored, false, now);
    let mut timeline = replayed.timeline;
    timeline.extend(write.change);
    if let Some(rebased) = &write.rebased {
        state.evidence = rebased.clone();
    }
    Decided { state, write, timeline }
}

/// `pyramid import` on a store opened for a bulk load: the bulk path where it applies (see
/// this module), else the live path.
#[allow(clippy::too_many_arguments)]
pub async fn import_into(
    dir: &crate::local::DataDir,
    store: &DynamoStore,
    load: &crate::local::BulkLoad,
    rules: &Arc<Rules>,
    files: &[PathBuf],
    forced: Option<Format>,
    path: ImportPath,
    options: LiveOptions,
) -> anyhow::Result<ImportReport> {
    let bulk = match path {
        ImportPath::Live => false,
        ImportPath::Auto | ImportPath::Bulk => bulk_applies(dir, load.database())?,
    };
    if path == ImportPath::Bulk && !bulk {
        eprintln!("the store already holds data: importing by the live path");
    }
    if !bulk {
        return crate::import::import_with(store, rules, files, forced, options).await;
    }
    let now = options.now.unwrap_or_else(crate::import::clock_now);
    let (store, database, rules) = (store.clone(), load.database().clone(), Arc::clone(rules));
    let files = files.to_vec();
    let dir_path = dir.path.clone();
    let budget = std::env::var("PYRAMID_IMPORT_MEMORY_BUDGET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_BUDGET);
    // Reading, deciding and SQLite are all blocking work.
    tokio::task::spawn_blocking(move || bulk_import(&dir_path, &store, &database, &rules, &files, forced, now, budget)).await?
}
