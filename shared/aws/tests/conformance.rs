//! One suite of store behaviour, run against every store target: dynoxide in-process and moto.
//! Real protocol servers, real SDK, no fakes.

use engagement::ports::*;
use engagement::*;
use engagement_aws::client::local_dynamodb;
use engagement_aws::{DynamoStore, RequestCounter, StoreConfig};
use engagement_testkit::unique_name;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

const NOW: &str = "2026-06-01T12:00:00Z";

fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).expect("valid time")
}

fn now() -> Timestamp {
    at(NOW)
}

struct Target {
    store: DynamoStore,
    counter: RequestCounter,
    /// Interactions per writer in the concurrency scenario: 1 000 on dynoxide; fewer on moto,
    /// a Python server serving one request at a time, for the same behaviour in less time.
    writer_volume: usize,
    /// Ingest packs several customers per transaction (`packing_customers`).
    packing: bool,
}

async fn target(endpoint: &str, writer_volume: usize) -> Target {
    target_with(endpoint, writer_volume, false).await
}

/// A target whose ingest packs several customers per transaction and whose concurrent requests
/// take turns at an identity (the embedded store's way).
async fn packed_target(endpoint: &str, writer_volume: usize) -> Target {
    let mut target = target_with(endpoint, writer_volume, true).await;
    target.store = target.store.taking_turns();
    target
}

/// Packed, without turns: concurrent requests race, and a lost race cancels a whole pack.
async fn racing_packed_target(endpoint: &str, writer_volume: usize) -> Target {
    target_with(endpoint, writer_volume, true).await
}

async fn target_with(endpoint: &str, writer_volume: usize, packing: bool) -> Target {
    let counter = RequestCounter::default();
    let client = local_dynamodb(endpoint, Some(counter.clone()));
    let mut store = DynamoStore::new(
        client,
        Arc::new(Rules::default_rules()),
        StoreConfig {
            table: unique_name("engagement"),
            salt: "conformance-salt".into(),
            omit_request_tokens: true,
        },
    );
    if packing {
        store = store.packing_customers();
    }
    store.create_table().await.expect("the table is created");
    counter.reset();
    Target {
        store,
        counter,
        writer_volume,
        packing,
    }
}

fn interaction(id: &str, handle: &str, kind: &str, when: Timestamp) -> Interaction {
    let value = json!({
        "id": id,
        "source": "conformance",
        "customer": {"channel": "email", "handle": handle},
        "kind": kind,
        "occurred_at": when.to_rfc3339(),
    });
    validate_interaction(&value, &Rules::default_rules(), now()).expect("a valid interaction")
}

fn with_also(mut interaction: Interaction, channel: &str, handle: &str) -> Interaction {
    interaction.customer.also.push(Identity {
        channel: Channel::parse(channel).expect("channel"),
        handle: handle.into(),
    });
    interaction
}

fn email(handle: &str) -> Identity {
    Identity {
        channel: Channel::parse("email").expect("channel"),
        handle: handle.into(),
    }
}

/// The evidence the core computes from a set of interactions (the reference).
fn folded(interactions: &[Interaction]) -> CustomerState {
    let rules = Rules::default_rules();
    let mut state = CustomerState::new(&rules);
    for interaction in interactions {
        state.fold(&rules, &interaction.score(&rules).expect("scored"));
    }
    state
}

fn assert_same_evidence(stored: &CustomerState, expected: &CustomerState) {
    let rules = Rules::default_rules();
    let when = now();
    for level in Level::ALL {
        let (got, want) = (stored.evidence.at(&rules, level, when), expected.evidence.at(&rules, level, when));
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "{level}: stored {got}, folded {want}"
        );
    }
    assert_eq!(stored.evidence.kind_counts, expected.evidence.kind_counts, "kind counts");
    assert_eq!(stored.consent, expected.consent, "consent");
}

/// What a rescore writes for a decision taken from `stored`.
fn decision_write(stored: &StoredCustomer, decision: &Decision) -> StandingWrite {
    StandingWrite {
        customer_id: stored.id.clone(),
        expected_version: stored.version,
        previous: stored.state.standing,
        standing: decision.standing(),
        due_at: decision.next_transition(now()),
        at_risk_notified_for: None,
        change: Some(LevelChange {
            at: decision.since,
            from: decision.previous,
            to: decision.level,
        }),
        rebased: None,
        outbox: Vec::new(),
    }
}

async fn records_each_interaction_exactly_once(t: Target) {
    let first = interaction("evt-1", "ada@example.com", "newsletter_subscribed", at("2026-05-01T10:00:00Z"));
    let outcomes = t
        .store
        .record_interactions(std::slice::from_ref(&first), now())
        .await
        .expect("recorded");
    assert_eq!(outcomes[0].status, RecordStatus::Recorded);
    let customer = outcomes[0].customer_id.clone().expect("a customer");
    let cost = t.counter.snapshot();
    assert_eq!(cost.get("TransactWriteItems"), Some(&1), "{cost:?}");
    assert_eq!(t.counter.total(), 2, "one read and one transaction: {cost:?}");

    t.counter.reset();
    let again = t
        .store
        .record_interactions(std::slice::from_ref(&first), now())
        .await
        .expect("answered");
    assert_eq!(again[0].status, RecordStatus::Duplicate);
    assert_eq!(again[0].customer_id.as_ref(), Some(&customer));
    assert_eq!(t.counter.total(), 1, "a duplicate costs one request: {:?}", t.counter.snapshot());

    let mut changed = first.clone();
    changed.kind = "review_posted".into();
    let conflict = t.store.record_interactions(&[changed], now()).await.expect("answered");
    assert_eq!(conflict[0].status, RecordStatus::Conflict);

    // A second interaction of a known customer: one read and one transaction, too.
    t.counter.reset();
    let second = interaction("evt-2", "ada@example.com", "review_posted", at("2026-05-02T10:00:00Z"));
    t.store
        .record_interactions(std::slice::from_ref(&second), now())
        .await
        .expect("recorded");
    assert_eq!(t.counter.total(), 2, "{:?}", t.counter.snapshot());

    let stored = t.store.load_customer(&customer).await.expect("loaded").expect("exists");
    assert_same_evidence(&stored.state, &folded(&[first, second]));
    assert!(stored.state.consent.any_granted(), "the sign-up granted consent on email");
    assert_eq!(stored.identities, vec![email("ada@example.com")]);
    assert_eq!(t.store.pyramid_counts().await.expect("counts").at(Level::Observing), 1);
    assert_eq!(
        t.store.find_customer(&email("ada@example.com")).await.expect("found"),
        IdentityLookup::Customer(customer)
    );
}

async fn concurrent_writers_lose_no_update(t: Target) {
    // 8 writers × 1 000 interactions, 30 % of them repeats of others' interactions, over 10
    // customers and ~300 days (so epochs move under concurrency).
    let kinds = [
        "page_viewed",
        "event_attended",
        "review_posted",
        "forum_answered",
        "newsletter_subscribed",
        "consent_withdrawn",
    ];
    let (volume, unique_share) = (t.writer_volume, t.writer_volume * 7 / 10);
    let unique: Vec<Interaction> = (0..8 * unique_share)
        .map(|i| {
            let when = at("2025-08-01T00:00:00Z").plus_millis((i as i64 * 4_621_000) % (300 * 86_400_000));
            interaction(
                &format!("c-{i}"),
                &format!("member{}@example.com", i % 10),
                kinds[i % kinds.len()],
                when,
            )
        })
        .collect();
    let store = Arc::new(t.store);
    let mut writers = Vec::new();
    for writer in 0..8usize {
        let mut mine: Vec<Interaction> = unique[writer * unique_share..(writer + 1) * unique_share].to_vec();
        mine.extend((0..volume - unique_share).map(|k| unique[(writer * 1_337 + k * 17) % unique.len()].clone()));
        let store = Arc::clone(&store);
        writers.push(tokio::spawn(async move {
            let mut recorded = 0;
            for batch in mine.chunks(50) {
                let outcomes = store.record_interactions(batch, now()).await.expect("recorded");
                recorded += outcomes.iter().filter(|o| o.status == RecordStatus::Recorded).count();
                assert!(outcomes.iter().all(|o| o.status != RecordStatus::Conflict));
            }
            recorded
        }));
    }
    let mut recorded = 0;
    for writer in writers {
        recorded += writer.await.expect("a writer finished");
    }
    assert_eq!(recorded, unique.len(), "each unique interaction was recorded exactly once");
    for member in 0..10 {
        let handle = format!("member{member}@example.com");
        let IdentityLookup::Customer(id) = store.find_customer(&email(&handle)).await.expect("found") else {
            panic!("{handle} has no customer");
        };
        let stored = store.load_customer(&id).await.expect("loaded").expect("exists");
        let theirs: Vec<Interaction> = unique.iter().filter(|i| i.customer.identity.handle == handle).cloned().collect();
        assert_same_evidence(&stored.state, &folded(&theirs));
    }
    assert_eq!(store.pyramid_counts().await.expect("counts").at(Level::Observing), 10);
}

async fn concurrent_first_interactions_create_one_customer(t: Target) {
    let store = Arc::new(t.store);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let first = with_also(
                    interaction(&format!("first-{i}"), "new@example.com", "page_viewed", now()),
                    "twitter",
                    "newbie",
                );
                store.record_interactions(&[first], now()).await.expect("recorded")[0].clone()
            })
        })
        .collect();
    let mut customers = BTreeSet::new();
    for task in tasks {
        let outcome = task.await.expect("finished");
        assert_eq!(outcome.status, RecordStatus::Recorded);
        customers.insert(outcome.customer_id.expect("a customer"));
    }
    assert_eq!(customers.len(), 1, "one person, one customer: {customers:?}");
    let id = customers.into_iter().next().expect("one");
    let stored = store.load_customer(&id).await.expect("loaded").expect("exists");
    assert_eq!(stored.state.evidence.interaction_count(), 8);
    assert_eq!(stored.identities.len(), 2, "{:?}", stored.identities);
    assert_eq!(store.pyramid_counts().await.expect("counts").at(Level::Observing), 1);
}

async fn concurrent_merges_leave_one_survivor(t: Target) {
    let store = Arc::new(t.store);
    let mut ids = Vec::new();
    let mut all = Vec::new();
    for (n, handle) in ["a@example.com", "b@example.com", "c@example.com"].iter().enumerate() {
        let batch: Vec<Interaction> = (0..3)
            .map(|k| interaction(&format!("m-{n}-{k}"), handle, "event_attended", now().minus_millis(k * 86_400_000)))
            .collect();
        all.extend(batch.clone());
        ids.push(
            store.record_interactions(&batch, now()).await.expect("recorded")[0]
                .customer_id
                .clone()
                .expect("a customer"),
        );
    }
    // A takes B's identity while B takes A's, and C's is linked to both at once.
    let links = [
        (0, "b@example.com"),
        (1, "a@example.com"),
        (0, "c@example.com"),
        (1, "c@example.com"),
    ];
    let tasks: Vec<_> = links
        .iter()
        .map(|&(who, handle)| {
            let (store, id) = (Arc::clone(&store), ids[who].clone());
            tokio::spawn(async move { store.link_identity(&id, &email(handle), now()).await.expect("linked") })
        })
        .collect();
    for task in tasks {
        task.await.expect("finished");
    }
    let mut survivors = BTreeSet::new();
    for handle in ["a@example.com", "b@example.com", "c@example.com"] {
        match store.find_customer(&email(handle)).await.expect("found") {
            IdentityLookup::Customer(id) => survivors.insert(id),
            other => panic!("{handle}: {other:?}"),
        };
    }
    assert_eq!(survivors.len(), 1, "{survivors:?}");
    let survivor = survivors.into_iter().next().expect("one");
    for id in &ids {
        let loaded = store.load_customer(id).await.expect("loaded").expect("redirects");
        assert_eq!(loaded.id, survivor, "{id} redirects to the survivor");
    }
    let stored = store.load_customer(&survivor).await.expect("loaded").expect("exists");
    assert_same_evidence(&stored.state, &folded(&all));
    assert_eq!(stored.identities.len(), 3);
    assert_eq!(
        store.pyramid_counts().await.expect("counts").0.iter().sum::<u64>(),
        1,
        "the pyramid counts the survivor only"
    );
    let history = store.interactions(&survivor, None, 100).await.expect("listed");
    assert_eq!(history.items.len(), 9, "the losers' interactions are listed under the survivor");
}

async fn the_due_list_pages_through_every_due_customer(t: Target) {
    let batch: Vec<Interaction> = (0..25)
        .map(|i| interaction(&format!("d-{i}"), &format!("due{i}@example.com"), "page_viewed", now()))
        .collect();
    let outcomes = t.store.record_interactions(&batch, now()).await.expect("recorded");
    // One customer is rescored and not due again for a year.
    let later = outcomes[0].customer_id.clone().expect("a customer");
    let stored = t.store.load_customer(&later).await.expect("loaded").expect("exists");
    let write = StandingWrite {
        customer_id: later.clone(),
        expected_version: stored.version,
        previous: stored.state.standing,
        standing: stored.state.standing.expect("a standing"),
        due_at: Some(now().plus_days(365.0)),
        at_risk_notified_for: None,
        change: None,
        rebased: None,
        outbox: Vec::new(),
    };
    assert_eq!(t.store.write_standing(&write).await.expect("written"), WriteOutcome::Written);

    let mut seen = BTreeSet::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = t.store.due_customers(now(), cursor, 7).await.expect("a page");
        assert!(page.items.len() <= 7);
        pages += 1;
        for customer in page.items {
            assert!(seen.insert(customer.id.clone()), "{} listed twice", customer.id);
        }
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 24, "every due customer once, the rescored one not");
    assert!(!seen.contains(&later));
    assert!(pages >= 4);
    assert!(
        t.store.due_customers(now(), Some("not-a-cursor".into()), 7).await.is_err(),
        "a forged cursor is refused"
    );
}

async fn erasure_removes_everything_and_refuses_the_identity(t: Target) {
    let batch = vec![
        with_also(
            interaction("e-1", "gone@example.com", "newsletter_subscribed", now()),
            "twitter",
            "gone",
        ),
        interaction("e-2", "gone@example.com", "review_posted", now()),
    ];
    let id = t.store.record_interactions(&batch, now()).await.expect("recorded")[0]
        .customer_id
        .clone()
        .expect("a customer");
    let nudge = StoredNudge {
        nudge_id: "ndg_1".into(),
        trigger: Trigger::LevelReached(Level::Endorsing),
        trigger_id: "t1".into(),
        decision: NudgeDecision {
            playbook: "endorser_to_sponsor".into(),
            step: 1,
            action: "invite_as_event_guest".into(),
            channel: Channel::parse("email").expect("channel"),
            outcome: NudgeOutcome::Sent,
            reason: None,
        },
        decided_at: now(),
        rose_at: None,
    };
    assert!(t.store.record_nudge(&id, &nudge).await.expect("recorded"));
    assert!(t.store.erase_customer(&id, now()).await.expect("erased"));
    assert_eq!(t.store.load_customer(&id).await.expect("answered"), None);
    assert_eq!(
        t.store.find_customer(&email("gone@example.com")).await.expect("answered"),
        IdentityLookup::Erased
    );
    assert!(t.store.nudges(&id).await.expect("answered").is_empty());
    // A nudge decided from a read before the erasure and recorded after it: nothing is written.
    let late = StoredNudge {
        nudge_id: "ndg_2".into(),
        trigger_id: "t2".into(),
        ..nudge.clone()
    };
    assert!(
        !t.store.record_nudge(&id, &late).await.expect("answered"),
        "recorded after the erasure"
    );
    assert!(t.store.nudges(&id).await.expect("answered").is_empty());
    assert!(t.store.interactions(&id, None, 10).await.expect("answered").items.is_empty());
    assert_eq!(t.store.pyramid_counts().await.expect("counts").0.iter().sum::<u64>(), 0);
    let again = t
        .store
        .record_interactions(&[interaction("e-3", "gone@example.com", "page_viewed", now())], now())
        .await
        .expect("answered");
    assert_eq!(again[0].status, RecordStatus::Erased);
    let via_other_identity = with_also(interaction("e-4", "new@example.com", "page_viewed", now()), "twitter", "gone");
    let refused = t.store.record_interactions(&[via_other_identity], now()).await.expect("answered");
    assert_eq!(
        refused[0].status,
        RecordStatus::Erased,
        "an erased identity anywhere in the request refuses it"
    );
    assert!(
        !t.store.erase_customer(&id, now()).await.expect("answered"),
        "erasing twice finds nothing"
    );
}

async fn level_writes_are_conditional_and_move_the_counts(t: Target) {
    let batch = vec![interaction("l-1", "lvl@example.com", "newsletter_subscribed", now())];
    let id = t.store.record_interactions(&batch, now()).await.expect("recorded")[0]
        .customer_id
        .clone()
        .expect("a customer");
    let stored = t.store.load_customer(&id).await.expect("loaded").expect("exists");
    let rules = Rules::default_rules();
    let decision = decide(&rules, &stored.state, now());
    assert_eq!(decision.level, Level::Following);
    let write = decision_write(&stored, &decision);
    // Two rescores race from the same read: exactly one wins.
    let store = Arc::new(t.store);
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let (store, write) = (Arc::clone(&store), write.clone());
            tokio::spawn(async move { store.write_standing(&write).await.expect("answered") })
        })
        .collect();
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.expect("finished"));
    }
    outcomes.sort_by_key(|o| *o == WriteOutcome::Conflict);
    assert_eq!(outcomes, vec![WriteOutcome::Written, WriteOutcome::Conflict]);
    let counts = store.pyramid_counts().await.expect("counts");
    assert_eq!((counts.at(Level::Observing), counts.at(Level::Following)), (0, 1));
    // The day's flow has the join and the one rise (not the lost race), and undoing the flow
    // gives back an empty pyramid before anyone joined.
    let today = engagement::flow::day_of(now());
    let flows = store.flows(today - 7, today + 1).await.expect("flows");
    let movers = engagement::flow::movers(&flows, today - 7, today + 1);
    assert_eq!(movers.up[Level::Following.index()], 1);
    assert_eq!(movers.up.iter().sum::<u64>(), 1);
    let before = engagement::flow::counts_at_end_of(&counts, &flows, today - 7);
    assert_eq!(before, engagement::ports::PyramidCounts::default());
    let listed = store.customers_at_level(Level::Following, None, None, 10).await.expect("listed");
    assert_eq!(listed.items.iter().map(|c| &c.id).collect::<Vec<_>>(), vec![&id]);
    assert_eq!(listed.items[0].moved, Some(engagement::Direction::Up));
    let later = store
        .customers_at_level(Level::Following, Some(now().plus_millis(1)), None, 10)
        .await
        .expect("listed");
    assert!(later.items.is_empty(), "nobody reached following after now");
    let reloaded = store.load_customer(&id).await.expect("loaded").expect("exists");
    assert_eq!(reloaded.state.standing.map(|s| s.level), Some(Level::Following));
    assert_eq!(reloaded.due_at, decision.next_transition(now()));
    // An interaction after the read makes the stale decision conflict.
    store
        .record_interactions(&[interaction("l-2", "lvl@example.com", "page_viewed", now())], now())
        .await
        .expect("recorded");
    let stale = StandingWrite {
        expected_version: reloaded.version,
        ..write
    };
    assert_eq!(store.write_standing(&stale).await.expect("answered"), WriteOutcome::Conflict);
}

async fn nudges_are_recorded_once_per_trigger(t: Target) {
    let id = t
        .store
        .record_interactions(&[interaction("n-1", "nudge@example.com", "page_viewed", now())], now())
        .await
        .expect("recorded")[0]
        .customer_id
        .clone()
        .expect("a customer");
    let nudge = StoredNudge {
        nudge_id: "ndg_same".into(),
        trigger: Trigger::Interaction("complaint_opened".into()),
        trigger_id: "interaction:n-1".into(),
        decision: NudgeDecision {
            playbook: "service_recovery".into(),
            step: 1,
            action: "open_priority_support_case".into(),
            channel: Channel::parse("email").expect("channel"),
            outcome: NudgeOutcome::Suppressed,
            reason: Some(SuppressReason::NoConsent),
        },
        decided_at: now(),
        rose_at: None,
    };
    assert!(t.store.record_nudge(&id, &nudge).await.expect("recorded"));
    assert!(
        !t.store.record_nudge(&id, &nudge).await.expect("answered"),
        "a redelivered trigger records nothing"
    );
    assert_eq!(t.store.nudges(&id).await.expect("listed"), vec![nudge.clone()]);
    // Suppressed: no rise counts toward it, and the step's outcomes say why it was not sent.
    assert!(!t.store.record_rise_after(&id, &nudge, now()).await.expect("answered"));
    let outcomes = t.store.nudge_outcomes().await.expect("outcomes");
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].suppressed.get("no_consent"), Some(&1));

    // A held-out nudge: the first rise after it counts, a second one does not.
    let held = StoredNudge {
        nudge_id: "ndg_held".into(),
        trigger_id: "interaction:n-2".into(),
        decision: NudgeDecision {
            outcome: NudgeOutcome::HeldOut,
            reason: None,
            ..nudge.decision.clone()
        },
        ..nudge.clone()
    };
    assert!(t.store.record_nudge(&id, &held).await.expect("recorded"));
    let rose = now().plus_millis(86_400_000);
    assert!(t.store.record_rise_after(&id, &held, rose).await.expect("counted"));
    assert!(
        !t.store.record_rise_after(&id, &held, rose).await.expect("answered"),
        "once per nudge"
    );
    let outcomes = t.store.nudge_outcomes().await.expect("outcomes");
    assert_eq!((outcomes[0].held_out, outcomes[0].held_out_moved_up), (1, 1));
    let listed = t.store.nudges(&id).await.expect("listed");
    let held_back = listed.iter().find(|n| n.nudge_id == "ndg_held").expect("the held-out nudge");
    assert_eq!(held_back.rose_at, Some(rose), "the rise is on the record");
}

async fn late_and_early_interactions_fold_the_same(t: Target) {
    // Out of order, across eras: the store's epochs must give the core's evidence.
    let times = [
        "2026-05-30T00:00:00Z",
        "2024-01-01T00:00:00Z",
        "2026-01-15T00:00:00Z",
        "2025-07-01T00:00:00Z",
        "2026-05-31T00:00:00Z",
    ];
    let all: Vec<Interaction> = times
        .iter()
        .enumerate()
        .map(|(i, when)| interaction(&format!("o-{i}"), "late@example.com", "event_attended", at(when)))
        .collect();
    let mut id = None;
    for one in &all {
        id = t
            .store
            .record_interactions(std::slice::from_ref(one), now())
            .await
            .expect("recorded")[0]
            .customer_id
            .clone();
    }
    let stored = t
        .store
        .load_customer(&id.expect("a customer"))
        .await
        .expect("loaded")
        .expect("exists");
    assert_same_evidence(&stored.state, &folded(&all));
    assert_eq!(
        stored.state.evidence.last_interaction_at,
        Some(at("2026-05-31T00:00:00Z")),
        "the latest interaction, not the last to arrive"
    );
}

async fn a_merge_keeps_the_higher_standing_and_the_counts_right(t: Target) {
    let rules = Rules::default_rules();
    let follower = t
        .store
        .record_interactions(&[interaction("h-1", "follower@example.com", "newsletter_subscribed", now())], now())
        .await
        .expect("recorded")[0]
        .customer_id
        .clone()
        .expect("a customer");
    let viewer = t
        .store
        .record_interactions(&[interaction("h-2", "viewer@example.com", "page_viewed", now())], now())
        .await
        .expect("recorded")[0]
        .customer_id
        .clone()
        .expect("a customer");
    let stored = t.store.load_customer(&follower).await.expect("loaded").expect("exists");
    let decision = decide(&rules, &stored.state, now());
    let write = decision_write(&stored, &decision);
    assert_eq!(t.store.write_standing(&write).await.expect("written"), WriteOutcome::Written);
    // The observer takes the follower's identity: the follower merges into the observer.
    let outcome = t
        .store
        .link_identity(&viewer, &email("follower@example.com"), now())
        .await
        .expect("linked");
    assert_eq!(outcome, LinkOutcome::Merged { merged: follower.clone() });
    let survivor = t.store.load_customer(&viewer).await.expect("loaded").expect("exists");
    assert_eq!(
        survivor.state.standing.map(|s| s.level),
        Some(Level::Following),
        "the higher standing survives"
    );
    let counts = t.store.pyramid_counts().await.expect("counts");
    assert_eq!((counts.at(Level::Observing), counts.at(Level::Following)), (0, 1), "{counts:?}");
    assert!(survivor.state.consent.any_granted());
}

macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod dynoxide {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(super::target(engagement_testkit::dynoxide_endpoint(), 1_000).await).await
                }
            )*
        }
        mod moto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(super::target(engagement_testkit::moto_endpoint(), 100).await).await
                }
            )*
        }
    };
}

/// A new customer's whole history in one batch: more interactions than one transaction holds.
async fn a_new_customer_with_a_long_history_is_recorded_whole(t: Target) {
    let batch: Vec<Interaction> = (0..120)
        .map(|n| {
            interaction(
                &format!("long-{n}"),
                "long@example.com",
                "page_viewed",
                at("2026-01-01T00:00:00Z").plus_days(f64::from(n)),
            )
        })
        .collect();
    let outcomes = t.store.record_interactions(&batch, now()).await.expect("recorded");
    assert!(outcomes.iter().all(|o| o.status == RecordStatus::Recorded), "{outcomes:?}");
    let counts = t.store.pyramid_counts().await.expect("counts");
    assert_eq!(counts.at(Level::Observing), 1, "one customer");
}

/// One batch is resolved in its order: an alias that one interaction introduces by `also` and
/// the next uses alone belongs to the first one's customer, whether that customer was known
/// already or is new in the batch (eight people, so that no order of ids makes it pass by luck).
async fn a_batch_resolves_identities_in_its_order(t: Target) {
    let forum = |mut interaction: Interaction, handle: &str| {
        interaction.customer.identity = Identity {
            channel: Channel::parse("forum").expect("channel"),
            handle: handle.into(),
        };
        interaction
    };
    let mut known = Vec::new();
    for n in 0..4 {
        known.push(interaction(
            &format!("known-{n}"),
            &format!("known{n}@example.com"),
            "page_viewed",
            now(),
        ));
    }
    t.store.record_interactions(&known, now()).await.expect("recorded");
    let mut batch = Vec::new();
    for n in 0..8 {
        let email = if n < 4 {
            format!("known{n}@example.com")
        } else {
            format!("new{n}@example.com")
        };
        batch.push(with_also(
            interaction(&format!("also-{n}"), &email, "page_viewed", now()),
            "forum",
            &format!("alias{n}"),
        ));
        batch.push(forum(
            interaction(&format!("alone-{n}"), "unused@example.com", "page_viewed", now()),
            &format!("alias{n}"),
        ));
    }
    let outcomes = t.store.record_interactions(&batch, now()).await.expect("recorded");
    for pair in outcomes.chunks(2) {
        assert_eq!(pair[0].status, RecordStatus::Recorded);
        assert_eq!(pair[0].customer_id, pair[1].customer_id, "{pair:?}");
    }
    for (n, pair) in outcomes.chunks(2).enumerate() {
        let id = pair[0].customer_id.clone().expect("a customer");
        let email = if n < 4 {
            format!("known{n}@example.com")
        } else {
            format!("new{n}@example.com")
        };
        assert_eq!(id, t.store.customer_id_for(&self::email(&email)), "the customer of {email}");
        let stored = t.store.load_customer(&id).await.expect("loaded").expect("exists");
        assert_eq!(stored.identities.len(), 2, "{:?}", stored.identities);
    }
    assert_eq!(t.store.pyramid_counts().await.expect("counts").at(Level::Observing), 8);
}

/// A batch of first interactions, each a new customer, on two days: each is counted once in
/// the pyramid and joins on its day's flow, whether each customer has a transaction of its own
/// or (packed) newcomers sharing a counter shard share its update.
async fn a_batch_of_newcomers_is_counted_once_each(t: Target) {
    let batch: Vec<Interaction> = (0..60)
        .map(|n| {
            let day = if n % 3 == 0 {
                "2026-05-30T09:00:00Z"
            } else {
                "2026-05-31T09:00:00Z"
            };
            interaction(&format!("new-{n}"), &format!("new{n}@example.com"), "page_viewed", at(day))
        })
        .collect();
    let outcomes = t.store.record_interactions(&batch, now()).await.expect("recorded");
    assert!(outcomes.iter().all(|o| o.status == RecordStatus::Recorded), "{outcomes:?}");
    let customers: BTreeSet<_> = outcomes.iter().filter_map(|o| o.customer_id.clone()).collect();
    assert_eq!(customers.len(), 60);
    let transactions = t.counter.snapshot().get("TransactWriteItems").copied().unwrap_or(0);
    if t.packing {
        // 60 × (profile, identity, interaction) and at most 8 + 2 × 4 counter items a pack: at
        // least 28 customers to a transaction of 100 actions.
        assert!(transactions <= 3, "{transactions} transactions");
    } else {
        assert_eq!(transactions, 60);
    }
    let counts = t.store.pyramid_counts().await.expect("counts");
    assert_eq!(counts.0.iter().sum::<u64>(), 60, "{counts:?}");
    assert_eq!(counts.at(Level::Observing), 60, "{counts:?}");
    let day = engagement::flow::day_of(at("2026-05-31T09:00:00Z"));
    let flows = t.store.flows(day - 1, day).await.expect("flows");
    let joined = |d| flows.iter().filter(|f| f.day == d).map(|f| f.joined).sum::<u64>();
    assert_eq!((joined(day - 1), joined(day)), (20, 40), "{flows:?}");
}

/// Found by the contract run (a 500): newcomers first seen on different days before 1970 all
/// count on the flow's day 0, one counter item per shard; with 8 of them on 4 flow shards, two
/// share a shard, and a pack that updated that item once per day was refused outright.
async fn newcomers_before_1970_count_on_the_first_day(t: Target) {
    let batch: Vec<Interaction> = (0..8)
        .map(|n| {
            let day = format!("19{:02}-0{}-1{}T09:00:00Z", 10 + n * 7, 1 + n % 9, n);
            interaction(&format!("early-{n}"), &format!("early{n}@example.com"), "page_viewed", at(&day))
        })
        .collect();
    let outcomes = t.store.record_interactions(&batch, now()).await.expect("recorded");
    assert!(outcomes.iter().all(|o| o.status == RecordStatus::Recorded), "{outcomes:?}");
    let counts = t.store.pyramid_counts().await.expect("counts");
    assert_eq!(counts.0.iter().sum::<u64>(), 8, "{counts:?}");
    let flows = t.store.flows(0, 0).await.expect("flows");
    assert_eq!(flows.iter().map(|f| f.joined).sum::<u64>(), 8, "{flows:?}");
}

conformance!(
    newcomers_before_1970_count_on_the_first_day,
    a_batch_resolves_identities_in_its_order,
    a_batch_of_newcomers_is_counted_once_each,
    a_new_customer_with_a_long_history_is_recorded_whole,
    records_each_interaction_exactly_once,
    concurrent_writers_lose_no_update,
    concurrent_first_interactions_create_one_customer,
    concurrent_merges_leave_one_survivor,
    the_due_list_pages_through_every_due_customer,
    erasure_removes_everything_and_refuses_the_identity,
    level_writes_are_conditional_and_move_the_counts,
    nudges_are_recorded_once_per_trigger,
    late_and_early_interactions_fold_the_same,
    a_merge_keeps_the_higher_standing_and_the_counts_right,
);

/// The ingest scenarios again, several customers per transaction (`packing_customers`) with
/// turns (`taking_turns`), as the one-machine mode runs.
mod dynoxide_packed {
    macro_rules! packed {
        ($($scenario:ident),* $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(super::packed_target(engagement_testkit::dynoxide_endpoint(), 1_000).await).await
                }
            )*
        };
    }
    packed!(
        newcomers_before_1970_count_on_the_first_day,
        a_batch_resolves_identities_in_its_order,
        a_batch_of_newcomers_is_counted_once_each,
        a_new_customer_with_a_long_history_is_recorded_whole,
        records_each_interaction_exactly_once,
        concurrent_writers_lose_no_update,
        concurrent_first_interactions_create_one_customer,
        late_and_early_interactions_fold_the_same,
    );
}

/// Packed without turns: concurrent writers cancel one another's packs (turns leave such races
/// to aliases of one person), which must lose nothing.
mod dynoxide_packed_racing {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_lose_no_update() {
        super::concurrent_writers_lose_no_update(super::racing_packed_target(engagement_testkit::dynoxide_endpoint(), 1_000).await).await
    }
}
