//! `pyramid import`'s bulk path against replay, against the live path, and across kill -9.

use engagement::ports::{CustomerReads, IdentityLookup, Insights, StoredCustomer};
use engagement::{replay, Interaction, Level, Rules, Timestamp, MILLIS_PER_DAY};
use pyramid::bulk::bulk_import;
use pyramid::import::{import, Format};
use pyramid::local::{embedded_store_for_bulk_load, DataDir};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const NOW: i64 = 1_780_000_000_000;

/// A history as an onboarding brings it: the synthetic community, plus identities introduced by
/// `also` and then used alone, consent withdrawn and granted again, repeated lines, a conflicting
/// repeat, and bad lines.
fn history(customers: usize, path: &Path) -> u64 {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("file"));
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    let mut lines = 0u64;
    let mut put = |out: &mut std::io::BufWriter<std::fs::File>, line: String| {
        writeln!(out, "{line}").expect("write");
        lines += 1;
    };
    for (n, mut value) in pyramid::community::synthetic(3, customers, Timestamp(NOW)).enumerate() {
        let email = value["customer"]["handle"].as_str().unwrap_or_default().to_string();
        let seen = first_seen.len();
        let index = *first_seen.entry(email.clone()).or_insert(seen);
        let alias = json!({"channel": "forum", "handle": format!("alias{index}")});
        if index.is_multiple_of(7) && value["customer"]["channel"] == "email" {
            if seen == index {
                // The first line of this customer introduces the alias ...
                value["customer"]["also"] = json!([alias]);
            } else if rng.bool() {
                // ... which later lines use alone.
                value["customer"] = alias;
            }
        }
        if index.is_multiple_of(5) && seen == index {
            let at = value["occurred_at"].clone();
            let customer = value["customer"].clone();
            put(
                &mut out,
                json!({"id": format!("withdraw-{index}"), "source": "crm", "customer": customer, "kind": "consent_withdrawn", "occurred_at": at})
                    .to_string(),
            );
            if index.is_multiple_of(10) {
                put(
                    &mut out,
                    json!({"id": format!("grant-{index}"), "source": "crm", "customer": customer, "kind": "consent_granted", "occurred_at": at})
                        .to_string(),
                );
            }
        }
        put(&mut out, value.to_string());
        if n.is_multiple_of(50) {
            put(&mut out, value.to_string());
        }
        if n.is_multiple_of(97) {
            let mut conflicting = value.clone();
            conflicting["kind"] = json!("page_viewed");
            conflicting["source"] = json!("elsewhere");
            put(&mut out, conflicting.to_string());
        }
        if n.is_multiple_of(200) {
            put(&mut out, "not json".to_string());
            put(&mut out, json!({"id": format!("bad-{n}"), "source": "crm"}).to_string());
        }
    }
    out.flush().expect("flush");
    lines
}

fn temp(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("pyramid-bulk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).expect("temp dir");
    path
}

/// Every customer of a store, once, under the first identity the file names them by.
async fn customers_of(store: &engagement_aws::DynamoStore, file: &Path) -> BTreeMap<String, StoredCustomer> {
    let rules = Rules::default_rules();
    let mut found = BTreeMap::new();
    let mut keys = std::collections::BTreeSet::new();
    let mut ids = std::collections::BTreeSet::new();
    for line in std::fs::read_to_string(file).expect("read").lines() {
        let Ok(value) = serde_json::from_str::<Value>(line) else { continue };
        let (Some(channel), Some(handle)) = (value["customer"]["channel"].as_str(), value["customer"]["handle"].as_str()) else {
            continue;
        };
        let key = format!("{channel}:{handle}");
        if !keys.insert(key.clone()) {
            continue;
        }
        let Ok(channel) = engagement::Channel::parse(channel) else {
            continue;
        };
        let Ok(identity) = engagement::Identity::new(channel.clone(), rules.handle_style(&channel), handle) else {
            continue;
        };
        if let IdentityLookup::Customer(id) = store.find_customer(&identity).await.expect("lookup") {
            if ids.insert(id.clone()) {
                found.insert(key, store.load_customer(&id).await.expect("load").expect("present"));
            }
        }
    }
    found
}

async fn history_of(store: &engagement_aws::DynamoStore, customer: &StoredCustomer) -> Vec<Interaction> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.interactions(&customer.id, cursor, 500).await.expect("history");
        all.extend(page.items);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_import_equals_replay_per_customer_and_its_counters_equal_the_decisions_and_the_live_path_agrees() {
    let customers = std::env::var("PYRAMID_BULK_TEST_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let root = temp("differential");
    let file = root.join("history.jsonl");
    let lines = history(customers, &file);
    let rules = Arc::new(Rules::default_rules());
    let now = Timestamp(NOW);

    let dir = DataDir::open(&root.join("bulk")).expect("dir");
    let (store, load) = embedded_store_for_bulk_load(&dir, Arc::clone(&rules)).await.expect("store");
    // A small budget: the grouping spills to disk and must give the same store.
    let report = bulk_import(
        &dir.path,
        &store,
        load.database(),
        &rules,
        std::slice::from_ref(&file),
        Some(Format::Jsonl),
        now,
        1 << 20,
    )
    .expect("bulk import");
    assert_eq!(report.lines, lines);
    assert!(report.duplicate > 0 && report.conflict > 0 && report.rejected > 0, "{report:?}");

    // Every customer equals replay of their stored history, as of the import.
    let stored = customers_of(&store, &file).await;
    let mut by_level: BTreeMap<Level, u64> = BTreeMap::new();
    let mut timelines = Vec::new();
    let mut aliases = 0;
    for (key, customer) in &stored {
        let interactions = history_of(&store, customer).await;
        let replayed = replay(&rules, &interactions, now);
        let standing = customer.state.standing.expect("a standing");
        assert_eq!(standing.level, replayed.decision.level, "{key}");
        assert_eq!(standing.since, replayed.decision.since, "{key}");
        assert_eq!(standing.drops_at, replayed.decision.drops_at, "{key}");
        for level in Level::ALL {
            let (a, b) = (
                customer.state.evidence.at(&rules, level, now),
                replayed.state.evidence.at(&rules, level, now),
            );
            assert!(close(a, b), "{key}: {level} evidence {a} vs {b}");
        }
        assert_eq!(customer.state.consent, replayed.state.consent, "{key}");
        let changes = store.level_changes(customer).await.expect("changes");
        assert_eq!(changes, replayed.timeline, "{key}");
        aliases += usize::from(customer.identities.len() > 1);
        *by_level.entry(standing.level).or_default() += 1;
        timelines.push((interactions.iter().map(|i| i.occurred_at).min().expect("one"), replayed.timeline));
    }
    assert!(aliases > 0, "some customers were linked by also");
    let distinct: std::collections::BTreeSet<_> = stored.values().map(|c| c.id.clone()).collect();
    assert_eq!(distinct.len() as u64, report.rescored);

    // The pyramid now and at 5 past dates equals the decisions; so does every day's flow.
    let counts = store.pyramid_counts().await.expect("counts");
    for level in Level::ALL {
        assert_eq!(counts.0[level.index()], by_level.get(&level).copied().unwrap_or(0), "{level}");
    }
    let today = NOW.div_euclid(MILLIS_PER_DAY);
    let flows = store.flows(today - 800, today).await.expect("flows");
    for back in [30, 90, 180, 365, 600] {
        let day = today - back;
        let end_of_day = Timestamp((day + 1) * MILLIS_PER_DAY - 1);
        let mut expected = [0i64; 6];
        for (first, timeline) in &timelines {
            if *first > end_of_day {
                continue;
            }
            let level = timeline
                .iter()
                .rev()
                .find(|c| c.at <= end_of_day)
                .map_or(Level::Observing, |c| c.to);
            expected[level.index()] += 1;
        }
        let past: Vec<i64> = engagement::flow::counts_at_end_of(&counts, &flows, day)
            .0
            .iter()
            .map(|c| *c as i64)
            .collect();
        assert_eq!(past, expected.to_vec(), "the pyramid {back} days ago");
    }

    // The live path's import of the same file (PYRAMID_BULK_TEST_LIVE=1: it still finds more
    // customers on the live side; see the report of issue 19). One batch
    // in flight: with several, a later batch can read an alias before an earlier one claims it
    // and make it a customer of its own (the live path's order is the file's only then).
    // SAFETY: this test binary holds only this test; nothing else reads the environment now.
    if std::env::var("PYRAMID_BULK_TEST_LIVE").is_err() {
        let _ = std::fs::remove_dir_all(&root);
        return;
    }
    unsafe { std::env::set_var("PYRAMID_IMPORT_IN_FLIGHT", "1") };
    let live_dir = DataDir::open(&root.join("live")).expect("dir");
    let (live, live_load) = embedded_store_for_bulk_load(&live_dir, Arc::clone(&rules)).await.expect("store");
    let live_report = import(&live, &rules, std::slice::from_ref(&file), Some(Format::Jsonl))
        .await
        .expect("live import");
    live_load.finish().expect("finish");
    assert_eq!(live_report.recorded, report.recorded);
    let live_customers = customers_of(&live, &file).await;
    assert_eq!(live_customers.len(), stored.len());
    let mut held_by_hysteresis = 0;
    for (key, bulk) in &stored {
        let other = &live_customers[key];
        for level in Level::ALL {
            let (x, y) = (
                bulk.state.evidence.at(&rules, level, now),
                other.state.evidence.at(&rules, level, now),
            );
            assert!(close(x, y), "{key}: {level} evidence {x} vs {y}");
        }
        let (bulk_level, live_level) = (bulk.state.standing.expect("s").level, other.state.standing.expect("s").level);
        if bulk_level != live_level {
            // Only where replay holds a level by hysteresis that one end-of-import decision, with
            // no standing to hold, cannot see: the live level is what the evidence reaches now.
            held_by_hysteresis += 1;
            assert!(bulk_level > live_level, "{key}: bulk {bulk_level} live {live_level}");
            let fresh = engagement::CustomerState {
                standing: None,
                ..bulk.state.clone()
            };
            assert_eq!(engagement::decide(&rules, &fresh, now).level, live_level, "{key}");
        }
    }
    println!(
        "{held_by_hysteresis} of {} customers held by hysteresis (bulk) but not by the live import",
        stored.len()
    );
    let _ = std::fs::remove_dir_all(&root);
}
