//! The DynamoDB adapter against in-process dynoxide: ingest rates, requests per interaction,
//! and what the sweep reads per due customer. Prints its figures.
//! Run: `cargo bench -p engagement-aws --bench store`

use engagement::ports::{InteractionLog, Standings};
use engagement::{validate_interaction, Interaction, Rules, Timestamp};
use engagement_aws::client::local_dynamodb;
use engagement_aws::{DynamoStore, RequestCounter, StoreConfig};
use engagement_testkit::{serve_dynoxide, unique_name};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

const DAY: i64 = 86_400_000;

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-06-01T12:00:00Z").expect("valid")
}

fn interaction(rules: &Rules, id: usize, customer: usize, minutes_ago: i64) -> Interaction {
    let kinds = ["page_viewed", "event_attended", "forum_answered", "email_opened"];
    let value = json!({
        "id": format!("bench-{id}"),
        "source": "bench",
        "customer": {"channel": "email", "handle": format!("member{customer}@example.com")},
        "kind": kinds[id % kinds.len()],
        "occurred_at": now().minus_millis(minutes_ago * 60_000).to_rfc3339(),
    });
    validate_interaction(&value, rules, now()).expect("valid")
}

async fn store(endpoint: &str) -> (DynamoStore, RequestCounter) {
    let counter = RequestCounter::default();
    let store = DynamoStore::new(
        local_dynamodb(endpoint, Some(counter.clone())),
        Arc::new(Rules::default_rules()),
        StoreConfig {
            table: unique_name("bench"),
            salt: "bench".into(),
            omit_request_tokens: true,
        },
    );
    store.create_table().await.expect("table");
    counter.reset();
    (store, counter)
}

async fn ingest_rates(label: &str, endpoint: &str) {
    let rules = Rules::default_rules();
    let (store, counter) = store(endpoint).await;
    // Single: one interaction per request, 200 customers.
    let singles: Vec<Interaction> = (0..2_000).map(|i| interaction(&rules, i, i % 200, (i % 500) as i64)).collect();
    let started = Instant::now();
    for one in &singles {
        store.record_interactions(std::slice::from_ref(one), now()).await.expect("recorded");
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{label}: single   {:>7.0} interactions/s   {:.2} requests/interaction {:?}",
        singles.len() as f64 / seconds,
        counter.total() as f64 / singles.len() as f64,
        counter.snapshot()
    );
    // Batched: requests of 100 interactions, 25 for each of 4 customers.
    counter.reset();
    let batched: Vec<Interaction> = (0..20_000)
        .map(|i| interaction(&rules, 10_000 + i, 1_000 + (i / 25) % 400, (i % 500) as i64))
        .collect();
    let started = Instant::now();
    for batch in batched.chunks(100) {
        store.record_interactions(batch, now()).await.expect("recorded");
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{label}: batched  {:>7.0} interactions/s   {:.3} requests/interaction {:?}",
        batched.len() as f64 / seconds,
        counter.total() as f64 / batched.len() as f64,
        counter.snapshot()
    );
    counter.reset();
    for one in &singles[..500] {
        store.record_interactions(std::slice::from_ref(one), now()).await.expect("answered");
    }
    println!(
        "{label}: duplicate {:.2} requests/duplicate {:?}",
        counter.total() as f64 / 500.0,
        counter.snapshot()
    );
}

async fn sweep(endpoint: &str) {
    let rules = Rules::default_rules();
    let (store, counter) = store(endpoint).await;
    // 100 000 customers: 99 % were last touched a year from "now" (not due), 1 % are due.
    let total = 100_000;
    let started = Instant::now();
    let all: Vec<Interaction> = (0..total).map(|i| interaction(&rules, 500_000 + i, 100_000 + i, 10)).collect();
    for (n, batch) in all.chunks(100).enumerate() {
        let clock = if n % 100 == 0 { now() } else { now().plus_millis(365 * DAY) };
        store.record_interactions(batch, clock).await.expect("recorded");
    }
    println!("sweep: loaded {total} customers in {:.0} s", started.elapsed().as_secs_f64());
    counter.reset();
    let started = Instant::now();
    let (mut due, mut cursor, mut pages) = (0, None, 0);
    loop {
        let page = store.due_customers(now().plus_millis(DAY), cursor, 100).await.expect("a page");
        due += page.items.len();
        pages += 1;
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    let queries = counter.snapshot().get("Query").copied().unwrap_or(0);
    let expected_due = total / 100;
    println!(
        "sweep: {due} items read for {expected_due} due customers of {total}: {pages} pages, {queries} queries, {:.2} items read per due customer, {:.0} ms",
        due as f64 / expected_due as f64,
        started.elapsed().as_secs_f64() * 1000.0
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let memory = serve_dynoxide(|| dynoxide::Database::memory().expect("memory"));
    let directory = std::env::temp_dir().join(unique_name("dynoxide-bench"));
    std::fs::create_dir_all(&directory).expect("a temp dir");
    let path = directory.join("bench.db");
    let file = serve_dynoxide(move || dynoxide::Database::new(path.to_str().expect("utf-8 path")).expect("file-backed"));
    runtime.block_on(async {
        ingest_rates("dynoxide in memory ", &memory).await;
        ingest_rates("dynoxide file-backed", &file).await;
        sweep(&memory).await;
    });
    let _ = std::fs::remove_dir_all(directory);
}
