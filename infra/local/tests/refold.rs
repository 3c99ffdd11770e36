//! `pyramid refold`: after new rules, every customer stands where replay under them says, with
//! the timeline, the pyramid and the daily flow to match; a run killed with `kill -9` and run
//! again ends the same; interactions recorded during a refold are all there afterwards.

mod harness;

use engagement::flow::{day_of, DayFlow};
use engagement::ports::{CustomerReads, Insights, InteractionLog, Refolds, WriteOutcome};
use engagement::{replay, CustomerId, Interaction, Level, Rules, Timestamp, LEVEL_COUNT};
use engagement_aws::{DynamoStore, SystemClock};
use harness::{binary, temp_dir};
use pyramid::local::{embedded_store, DataDir};
use pyramid::refold::{refold, RefoldOptions};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

const CUSTOMERS: usize = 150;

fn now() -> Timestamp {
    Timestamp::from_millis(chrono::Utc::now().timestamp_millis())
}

/// The shipped rules with a lower bar for contributing, a faster-fading endorsing and less
/// hysteresis: many customers stand elsewhere under them.
fn new_rules_toml() -> String {
    let text = engagement::rules::DEFAULT_RULES_TOML
        .replace("hysteresis = 0.8", "hysteresis = 0.7")
        .replace("threshold = 3.5 ", "threshold = 2.5 ")
        .replace("half_life_days = 270", "half_life_days = 200");
    assert_ne!(text, engagement::rules::DEFAULT_RULES_TOML);
    text
}

fn new_rules() -> Arc<Rules> {
    Arc::new(Rules::from_toml(&new_rules_toml()).expect("valid rules"))
}

/// The community file under `root`, imported (under the shipped rules) into a data directory
/// there: the file, the directory (held open) and the store.
async fn imported_community(root: &Path) -> (PathBuf, DataDir, DynamoStore) {
    let file = community_file(root);
    let dir = DataDir::open(&root.join("data")).expect("the data dir");
    let old = Arc::new(Rules::default_rules());
    let store = embedded_store(&dir, Arc::clone(&old)).await.expect("the store");
    pyramid::import::import(&store, &old, std::slice::from_ref(&file), None)
        .await
        .expect("imported");
    (file, dir, store)
}

/// A synthetic community as a JSON-lines file.
fn community_file(root: &Path) -> PathBuf {
    let file = root.join("community.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("a file"));
    for item in pyramid::community::synthetic(7, CUSTOMERS, now()) {
        writeln!(out, "{item}").expect("written");
    }
    out.flush().expect("flushed");
    file
}

fn pyramid(args: &[&str], data: &Path) -> Command {
    let mut command = Command::new(binary());
    command.args(args).arg("--data").arg(data).env("PYRAMID_LOG", "error");
    command
}

/// Every customer id, from the level listings.
async fn all_customers(store: &DynamoStore) -> Vec<CustomerId> {
    let mut ids = Vec::new();
    for level in Level::ALL {
        let mut cursor = None;
        loop {
            let page = store.customers_at_level(level, None, cursor, 500).await.expect("a listing");
            ids.extend(page.items.into_iter().map(|s| s.id));
            cursor = page.cursor;
            if cursor.is_none() {
                break;
            }
        }
    }
    ids
}

/// What a refold must leave: each customer at replay's level, since replay's date, with replay's
/// timeline and its history all counted; the pyramid and the flow in agreement with them.
async fn assert_as_replayed(store: &DynamoStore, rules: &Rules, check_timeline: bool) -> [u64; LEVEL_COUNT] {
    let at = now();
    let mut levels = [0u64; LEVEL_COUNT];
    let ids = all_customers(store).await;
    assert!(!ids.is_empty());
    for id in &ids {
        let customer = store.load_customer(id).await.expect("a read").expect("the customer");
        let history = store.history(&customer).await.expect("its history");
        assert!(
            engagement::refold::history_matches(rules, &customer, &history),
            "{id}: the stored evidence counts its whole history"
        );
        assert_eq!(customer.rules_fingerprint.as_deref(), Some(rules.fingerprint().as_str()), "{id}");
        let replayed = replay(rules, &history, at);
        let standing = customer.state.standing.expect("a standing");
        assert_eq!(standing.level, replayed.decision.level, "{id}: the level replay decides");
        assert_eq!(standing.since, replayed.decision.since, "{id}: since when replay says");
        let stored = customer.state.evidence.at(rules, standing.level, at);
        let expected = replayed.state.evidence.at(rules, standing.level, at);
        assert!(
            (stored - expected).abs() <= 1e-9 * expected.abs().max(1.0),
            "{id}: evidence {stored} vs {expected}"
        );
        if check_timeline {
            assert_eq!(
                store.level_changes(&customer).await.expect("its changes"),
                replayed.timeline,
                "{id}: the timeline"
            );
        }
        levels[standing.level.index()] += 1;
    }
    let counts = store.pyramid_counts().await.expect("the pyramid");
    assert_eq!(counts.0, levels, "the pyramid counts the customers at each level");
    // The past pyramid is today's minus the flow since: all the flow adds up to today's.
    let flows: Vec<DayFlow> = store.flows(0, day_of(at) + 1).await.expect("the flow");
    let mut net = [0i64; LEVEL_COUNT];
    for flow in &flows {
        for (sum, n) in net.iter_mut().zip(flow.net()) {
            *sum += n;
        }
    }
    assert_eq!(net, levels.map(|n| n as i64), "the daily flow adds up to the pyramid");
    levels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refold_killed_midway_and_run_again_leaves_every_customer_as_replay_decides() {
    let root = temp_dir("refold-kill");
    let file = community_file(&root);
    let data = root.join("data");
    let status = pyramid(&["import"], &data)
        .arg(&file)
        .stdout(Stdio::null())
        .status()
        .expect("import runs");
    assert!(status.success());
    let rules_file = root.join("new.toml");
    std::fs::write(&rules_file, new_rules_toml()).expect("written");
    let rules = new_rules();
    // An uninterrupted refold of the same store, to compare with.
    let copy = root.join("copy");
    std::fs::create_dir_all(&copy).expect("a dir");
    for entry in std::fs::read_dir(&data).expect("the data dir") {
        let path = entry.expect("an entry").path();
        if path.is_file() && path.file_name().is_some_and(|n| n != "lock") {
            std::fs::copy(&path, copy.join(path.file_name().expect("a name"))).expect("copied");
        }
    }

    let rules_arg = rules_file.to_str().expect("a UTF-8 path");
    let mut child = pyramid(&["refold", "--rules", rules_arg], &data)
        .args(["--segments", "1", "--page-size", "5", "--report-pages"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("refold starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut pages = 0;
    while let Some(Ok(line)) = lines.next() {
        if line.starts_with("refolded ") {
            pages += 1;
            if pages == 3 {
                break;
            }
        }
    }
    assert_eq!(pages, 3, "the refold reported its progress");
    child.kill().expect("kill -9");
    child.wait().expect("reaped");

    {
        let dir = DataDir::open(&data).expect("the data dir is free again");
        let store = embedded_store(&dir, Arc::clone(&rules)).await.expect("the store");
        let left = store
            .customers_to_refold(&rules.fingerprint(), 0, 1, None, 1000)
            .await
            .expect("a scan");
        assert!(!left.items.is_empty(), "killed before it finished");
    }
    for dir in [&data, &copy] {
        let output = pyramid(&["refold", "--rules", rules_arg], dir).output().expect("refold runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let again = pyramid(&["refold", "--rules", rules_arg], &data).output().expect("refold runs");
    assert!(
        String::from_utf8_lossy(&again.stdout).starts_with("0 customers refolded"),
        "a third run has nothing left to do: {}",
        String::from_utf8_lossy(&again.stdout)
    );

    let resumed = {
        let dir = DataDir::open(&data).expect("the data dir");
        let store = embedded_store(&dir, Arc::clone(&rules)).await.expect("the store");
        assert_as_replayed(&store, &rules, true).await
    };
    let uninterrupted = {
        let dir = DataDir::open(&copy).expect("the copy");
        let store = embedded_store(&dir, Arc::clone(&rules)).await.expect("the store");
        assert_as_replayed(&store, &rules, true).await
    };
    assert_eq!(resumed, uninterrupted);
    let old = Rules::default_rules();
    assert_ne!(resumed, {
        // What the old rules decided, for contrast: the new rules moved people.
        let dir = DataDir::open(&root.join("fresh")).expect("a dir");
        let store = embedded_store(&dir, Arc::new(old.clone())).await.expect("the store");
        pyramid::import::import(&store, &Arc::new(old), &[file], None)
            .await
            .expect("imported");
        store.pyramid_counts().await.expect("the pyramid").0
    });
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactions_recorded_while_a_refold_runs_are_all_counted_and_decided() {
    let root = temp_dir("refold-ingest");
    let (file, _dir, before) = imported_community(&root).await;
    // The new rules are deployed: ingest records under them while the refold runs.
    let rules = new_rules();
    let store = before.with_rules(Arc::clone(&rules));
    let posted_at = now();
    let handles: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .expect("the file")
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|value| value["customer"].to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter_map(|text| serde_json::from_str(&text).ok())
        .collect();
    // One handle per customer: a request names each customer once, as rescore sees it once.
    let mut seen = BTreeSet::new();
    let mut handles_once = Vec::new();
    for handle in handles {
        let value = serde_json::json!({"id": "probe", "source": "test", "customer": handle, "kind": "newsletter_subscribed", "occurred_at": posted_at.to_rfc3339()});
        let probe = engagement::validate_interaction(&value, &rules, posted_at).expect("valid");
        if seen.insert(customer_of(&store, &probe).await) {
            handles_once.push(handle);
        }
    }
    let handles = handles_once;
    let kinds = ["event_attended", "review_posted", "forum_answered", "newsletter_subscribed"];
    let batches: Vec<Vec<Interaction>> = (0..12)
        .map(|b| {
            (0..25)
                .map(|i| {
                    let n = b * 25 + i;
                    // Mostly known customers, a few new ones.
                    let customer = if n % 10 == 0 {
                        serde_json::json!({"channel": "email", "handle": format!("new{n}@example.com")})
                    } else {
                        handles[(n * 7) % handles.len()].clone()
                    };
                    let value = serde_json::json!({
                        "id": format!("during-{n}"), "source": "test", "customer": customer,
                        "kind": kinds[n % kinds.len()], "occurred_at": posted_at.minus_millis((300 - n as i64) * 1000).to_rfc3339(),
                    });
                    engagement::validate_interaction(&value, &rules, posted_at).expect("valid")
                })
                .collect()
        })
        .collect();
    // As deployed: each request's customers are rescored after it (`Interaction Recorded`);
    // those not refolded yet are left for the refold.
    let ingest = async {
        for batch in &batches {
            let mut touched = BTreeSet::new();
            for outcome in store.record_interactions(batch, now()).await.expect("recorded") {
                assert_eq!(outcome.status, engagement::RecordStatus::Recorded);
                touched.extend(outcome.customer_id);
            }
            pyramid::import::settle(&store, &rules, &touched).await.expect("rescored");
        }
    };
    let options = RefoldOptions {
        segments: 2,
        page_size: 10,
        in_flight: 4,
        pack: 8,
        pages_in_flight: 2,
        report_pages: false,
    };
    let (report, ()) = tokio::join!(refold(&store, &rules, &SystemClock, options), ingest);
    let report = report.expect("the refold ran");
    assert_eq!(report.left, 0);
    assert!(report.refolded as usize >= CUSTOMERS / 2, "{report:?}");
    assert_as_replayed(&store, &rules, false).await;
    for batch in &batches {
        for interaction in batch {
            let stored = store
                .interactions(&customer_of(&store, interaction).await, None, 1000)
                .await
                .expect("its history");
            assert!(stored.items.iter().any(|i| i.id == interaction.id), "{} is kept", interaction.id);
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

async fn customer_of(store: &DynamoStore, interaction: &Interaction) -> CustomerId {
    match store.find_customer(&interaction.customer.identity).await.expect("a lookup") {
        engagement::ports::IdentityLookup::Customer(id) => id,
        other => panic!("{}: {other:?}", interaction.id),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_of_refolds_with_one_stale_customer_writes_the_others_and_refuses_that_one() {
    let root = temp_dir("refold-pack");
    let (_file, _dir, before) = imported_community(&root).await;
    let rules = new_rules();
    let store = before.with_rules(Arc::clone(&rules));
    let page = store
        .customers_to_refold(&rules.fingerprint(), 0, 1, None, 1000)
        .await
        .expect("a scan");
    let customers: Vec<_> = page.items.into_iter().take(6).collect();
    assert_eq!(customers.len(), 6);
    let mut writes = Vec::new();
    for customer in &customers {
        let history = store.history(customer).await.expect("its history");
        writes.push(engagement::refold::plan_refold(&rules, customer, &history, now()).expect("a matching history"));
    }
    // Ingest writes one of them after the plan: its version moves.
    let stale = &customers[2];
    let history = store.history(stale).await.expect("its history");
    let mut late = history[0].clone();
    late.id = "late".into();
    late.occurred_at = now();
    store.record_interactions(&[late], now()).await.expect("recorded");

    let outcomes = store.write_refolds(&writes).await.expect("written");
    let expected: Vec<_> = (0..6)
        .map(|i| if i == 2 { WriteOutcome::Conflict } else { WriteOutcome::Written })
        .collect();
    assert_eq!(outcomes, expected);
    for (i, customer) in customers.iter().enumerate() {
        let stored = store.load_customer(&customer.id).await.expect("a read").expect("the customer");
        assert_eq!(
            stored.rules_fingerprint.as_deref() == Some(rules.fingerprint().as_str()),
            i != 2,
            "{}: refolded unless stale",
            customer.id
        );
    }
    // The rest, and the stale one read afresh: the counters the pack summed add up.
    let report = refold(&store, &rules, &SystemClock, RefoldOptions::embedded())
        .await
        .expect("the refold ran");
    assert_eq!(report.left, 0);
    assert_as_replayed(&store, &rules, true).await;
    let _ = std::fs::remove_dir_all(&root);
}
