//! The rescore function against real protocol servers: the store on dynoxide, the bus on moto's
//! EventBridge, events read back from the SQS queue a rule routes them to.

use engagement::events::{DomainEvent, DEFAULT_SOURCE};
use engagement::ports::{Clock, CustomerReads, Insights, InteractionLog};
use engagement::*;
use engagement_aws::client::{local_dynamodb, local_eventbridge};
use engagement_aws::{DynamoStore, EventBridgeBus, RequestCounter, StoreConfig};
use engagement_testkit::{drain_queue, dynoxide_endpoint, local_sqs, moto_endpoint, route_to_queue, unique_name};
use rescore::Rescorer;
use serde_json::json;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tracing_subscriber::layer::SubscriberExt as _;

/// The clock tests move by hand.
#[derive(Clone)]
struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn set(&self, at: Timestamp) {
        self.0.store(at.millis(), Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).expect("valid time")
}

struct World {
    rescorer: Rescorer<DynamoStore, EventBridgeBus, TestClock>,
    clock: TestClock,
    counter: RequestCounter,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

async fn world(bus_exists: bool) -> World {
    let rules = Arc::new(Rules::default_rules());
    let counter = RequestCounter::default();
    let store = DynamoStore::new(
        local_dynamodb(dynoxide_endpoint(), Some(counter.clone())),
        Arc::clone(&rules),
        StoreConfig {
            table: unique_name("rescore"),
            salt: "rescore-tests".into(),
            omit_request_tokens: true,
        },
    );
    store.create_table().await.expect("table");
    let (events, sqs) = (local_eventbridge(moto_endpoint()), local_sqs(moto_endpoint()));
    let bus_name = unique_name("engagement");
    let queue_url = if bus_exists {
        route_to_queue(&events, &sqs, &bus_name, r#"{"source": ["engagement"]}"#).await
    } else {
        String::new()
    };
    let clock = TestClock(Arc::new(AtomicI64::new(0)));
    World {
        rescorer: Rescorer {
            store,
            bus: EventBridgeBus::new(events, bus_name, DEFAULT_SOURCE),
            clock: clock.clone(),
            rules,
        },
        clock,
        counter,
        sqs,
        queue_url,
    }
}

impl World {
    async fn record(&self, id: &str, kind: &str, when: Timestamp) -> ports::CustomerId {
        let value = json!({"id": id, "source": "test", "customer": {"channel": "email", "handle": "maya@example.com"}, "kind": kind, "occurred_at": when.to_rfc3339()});
        let interaction = validate_interaction(&value, &self.rescorer.rules, when).expect("valid");
        self.rescorer
            .store
            .record_interactions(&[interaction], when)
            .await
            .expect("recorded")[0]
            .customer_id
            .clone()
            .expect("a customer")
    }

    /// Events that reached the queue since the last call.
    async fn received(&self) -> Vec<DomainEvent> {
        drain_queue(&self.sqs, &self.queue_url)
            .await
            .into_iter()
            .map(|envelope| {
                DomainEvent::from_parts(envelope["detail-type"].as_str().expect("type"), envelope["detail"].clone()).expect("event")
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_rises_is_warned_then_drops_and_each_event_goes_out_once() {
    let w = world(true).await;
    let subscribed = at("2026-01-10T09:00:00Z");
    let id = w.record("s-1", "newsletter_subscribed", subscribed).await;
    w.clock.set(subscribed.plus_millis(60_000));
    let rose = w.rescorer.rescore(&id).await.expect("rescored").expect("known");
    assert_eq!((rose.level, rose.direction), (Level::Following, Some(Direction::Up)));
    let events = w.received().await;
    let [DomainEvent::LevelChanged(changed)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(
        (changed.from, changed.to, changed.since),
        (Level::Observing, Level::Following, subscribed)
    );
    let drops_at = changed.drops_at.expect("a follower can drop");
    let at_risk_at = changed.at_risk_at.expect("and is warned first");

    // Running it again changes nothing, publishes nothing and writes nothing.
    w.counter.reset();
    let again = w.rescorer.rescore(&id).await.expect("rescored").expect("known");
    assert!(!again.wrote && again.published.is_empty());
    assert!(w.received().await.is_empty());
    assert_eq!(
        w.counter.snapshot().keys().cloned().collect::<Vec<_>>(),
        vec!["GetItem".to_string()],
        "{:?}",
        w.counter.snapshot()
    );

    // In the at-risk window: one warning, however often the sweep runs.
    w.clock.set(at_risk_at.plus_millis(60_000));
    let report = w.rescorer.sweep(50, || true).await.expect("swept");
    assert_eq!(report.published, 1, "{report:?}");
    w.rescorer.sweep(50, || true).await.expect("swept");
    let events = w.received().await;
    let [DomainEvent::EngagementAtRisk(risk)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(
        (risk.level, risk.drops_at, risk.drops_to),
        (Level::Following, drops_at, Level::Observing)
    );

    // After the drop, the sweep demotes her, dated when it happened.
    w.clock.set(drops_at.plus_millis(3_600_000));
    let report = w.rescorer.sweep(50, || true).await.expect("swept");
    assert_eq!(report.changed, 1, "{report:?}");
    let events = w.received().await;
    let [DomainEvent::LevelChanged(dropped)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(
        (dropped.from, dropped.to, dropped.since),
        (Level::Following, Level::Observing, drops_at)
    );
    let counts = w.rescorer.store.pyramid_counts().await.expect("counts");
    assert_eq!((counts.at(Level::Observing), counts.at(Level::Following)), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_could_not_be_published_go_out_on_the_next_run() {
    let broken = world(false).await;
    let subscribed = at("2026-01-10T09:00:00Z");
    let id = broken.record("s-1", "newsletter_subscribed", subscribed).await;
    broken.clock.set(subscribed.plus_millis(60_000));
    let error = broken.rescorer.rescore(&id).await.expect_err("the bus does not exist");
    // A missing bus is not an outage that an immediate retry outlasts; the outbox keeps the events.
    assert!(!error.is_retryable());
    let stored = broken.rescorer.store.load_customer(&id).await.expect("loaded").expect("known");
    assert_eq!(
        stored.state.standing.map(|s| s.level),
        Some(Level::Following),
        "the decision is stored"
    );
    assert_eq!(stored.outbox.len(), 1, "with its event pending");
    assert_eq!(stored.due_at, Some(subscribed.plus_millis(60_000)), "and the customer stays due");

    // The same table, now with a working bus: the sweep publishes the pending event once.
    let fixed = world(true).await;
    let rescorer = Rescorer {
        store: broken.rescorer.store,
        bus: fixed.rescorer.bus.clone(),
        clock: fixed.clock.clone(),
        rules: Arc::clone(&fixed.rescorer.rules),
    };
    fixed.clock.set(subscribed.plus_millis(120_000));
    let report = rescorer.sweep(50, || true).await.expect("swept");
    assert_eq!(report.published, 1, "{report:?}");
    let events = fixed.received().await;
    assert!(
        matches!(events.as_slice(), [DomainEvent::LevelChanged(e)] if e.to == Level::Following),
        "{events:?}"
    );
    let stored = rescorer.store.load_customer(&id).await.expect("loaded").expect("known");
    assert!(stored.outbox.is_empty());
    assert!(
        rescorer.sweep(50, || true).await.expect("swept").published == 0,
        "nothing goes out twice"
    );
    assert!(fixed.received().await.is_empty());
}

/// The EMF lines of this test binary: the layer is the process's subscriber, as in Lambda (a
/// scoped subscriber races the other tests' threads over the callsites' cached interest).
fn emf_lines() -> EmfLines {
    static LINES: std::sync::OnceLock<EmfLines> = std::sync::OnceLock::new();
    LINES
        .get_or_init(|| {
            let lines = EmfLines::default();
            let subscriber = tracing_subscriber::registry().with(engagement_aws::metrics::EmfLayer::new(lines.clone()));
            tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this binary");
            lines
        })
        .clone()
}

/// EMF lines as Lambda's log pipeline would read them from stdout.
#[derive(Clone, Default)]
struct EmfLines(Arc<std::sync::Mutex<Vec<u8>>>);

impl EmfLines {
    fn documents(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().expect("the lines").clone();
        String::from_utf8(bytes)
            .expect("UTF-8")
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON"))
            .collect()
    }
}

impl std::io::Write for EmfLines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for EmfLines {
    type Writer = EmfLines;
    fn make_writer(&'a self) -> EmfLines {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_the_schedule_drive_the_handler() {
    let w = world(true).await;
    let subscribed = at("2026-01-10T09:00:00Z");
    let id = w.record("s-1", "newsletter_subscribed", subscribed).await;
    w.clock.set(subscribed.plus_millis(60_000));
    let recorded = DomainEvent::from_parts(
        "Interaction Recorded",
        json!({"schema_version": 1, "customer_id": id, "interaction_ids": ["s-1"], "kinds": ["newsletter_subscribed"], "recorded_at": "2026-01-10T09:00:00Z"}),
    )
    .expect("an event");
    // As in Lambda: the EMF layer turns the handler's metrics events into EMF lines.
    let emf = emf_lines();
    let before = emf.documents().len();
    let done = w.rescorer.handle(&recorded).await.expect("handled").expect("a known customer");
    assert_eq!((done.level, done.direction), (Level::Following, Some(Direction::Up)), "{done:?}");
    // Other tests of this binary may count their own rises meanwhile: this one's is among them.
    let lines = emf.documents().split_off(before);
    assert!(
        lines
            .iter()
            .any(|line| (&line["Function"], &line["Direction"], &line["LevelChanges"]) == (&json!("rescore"), &json!("up"), &json!(1))),
        "{lines:?}"
    );

    // The schedule: with time left it sweeps to the end; at the deadline it stops, unfinished.
    let report = w
        .rescorer
        .handle_schedule(|| std::time::Duration::from_secs(60))
        .await
        .expect("handled");
    assert!(!report.unfinished, "{report:?}");
    let report = w
        .rescorer
        .handle_schedule(|| std::time::Duration::from_secs(1))
        .await
        .expect("handled");
    assert!(report.unfinished, "{report:?}");

    let changed = w.received().await;
    assert!(!changed.is_empty() && changed.iter().all(|e| matches!(e, DomainEvent::LevelChanged(_))));
    let error = w.rescorer.handle(&changed[0]).await.expect_err("not rescore's");
    assert!(!error.is_retryable(), "a wrong event is not retried");
}
