//! Hot paths of the core. Targets on one core of a 2-core machine: ≥ 10 M folds/s, ≥ 2 M decides/s.
//! Run: `cargo bench -p engagement --bench core`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use engagement::*;
use std::hint::black_box;

const DAY: i64 = 86_400_000;
const START: i64 = 1_700_000_000_000;

fn contribution(rules: &Rules, kind: &str, day: i64) -> Contribution {
    let id = rules.resolve_kind(kind).expect("known kind");
    let (level, weight) = rules.kind_level_and_weight(id);
    Contribution {
        kind: id,
        level,
        weight,
        occurred_at: Timestamp(START + day * DAY),
    }
}

fn a_contributor(rules: &Rules) -> CustomerState {
    let mut state = CustomerState::new(rules);
    let email = Channel::parse("email").expect("channel");
    state.consent.record(&email, true, Timestamp(START));
    for (i, kind) in [
        "newsletter_subscribed",
        "review_posted",
        "event_attended",
        "forum_answered",
        "event_attended",
        "page_viewed",
        "event_sponsored",
    ]
    .iter()
    .enumerate()
    {
        state.evidence.fold(rules, &contribution(rules, kind, 10 * i as i64));
    }
    let decision = decide(rules, &state, Timestamp(START + 70 * DAY));
    state.standing = Some(decision.standing());
    state
}

fn benches(c: &mut Criterion) {
    let rules = Rules::default_rules();

    let mut group = c.benchmark_group("fold");
    group.throughput(Throughput::Elements(1_000));
    let contributions: Vec<Contribution> = (0..1_000)
        .map(|i| {
            contribution(
                &rules,
                ["event_attended", "page_viewed", "review_posted", "investment_made"][i % 4],
                (i % 30) as i64,
            )
        })
        .collect();
    group.bench_function("1000 interactions into one customer", |b| {
        b.iter_batched_ref(
            || Evidence::empty(&rules),
            |evidence| {
                for c in &contributions {
                    evidence.fold(&rules, black_box(c));
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(1));
    let state = a_contributor(&rules);
    let now = Timestamp(START + 100 * DAY);
    group.bench_function("a contributor with consent", |b| {
        b.iter(|| decide(&rules, black_box(&state), black_box(now)))
    });
    group.finish();

    let mut group = c.benchmark_group("playbook");
    group.throughput(Throughput::Elements(1));
    let history = vec![NudgeRecord {
        playbook: "endorser_to_sponsor".into(),
        step: 1,
        outcome: NudgeOutcome::Sent,
        decided_at: Timestamp(START),
    }];
    let trigger = Trigger::Interaction("event_attended".into());
    group.bench_function("select on an outcome interaction", |b| {
        b.iter(|| select_nudges(&rules, "cus_01", black_box(&state.consent), black_box(&history), &trigger, now))
    });
    group.finish();
}

criterion_group! {
    name = core;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = benches
}
criterion_main!(core);
