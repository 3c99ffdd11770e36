//! Properties of scoring that must hold for every history, not just the ones we thought of.

use engagement::*;
use proptest::prelude::*;
use serde_json::{json, Value};

const DAY: i64 = 86_400_000;
const START: i64 = 1_700_000_000_000;

fn rules_with_hysteresis(hysteresis: f64) -> Rules {
    let text = engagement::rules::DEFAULT_RULES_TOML.replace("hysteresis = 0.8", &format!("hysteresis = {hysteresis}"));
    Rules::from_toml(&text).expect("valid rules")
}

/// A history: (kind index into the rules' kinds, offset in ms from START), up to three years.
fn history() -> impl Strategy<Value = Vec<(usize, i64)>> {
    prop::collection::vec((0usize..64, 0i64..3 * 365 * DAY), 1..40)
}

fn scored(rules: &Rules, raw: &[(usize, i64)]) -> Vec<ScoredInteraction> {
    let kinds = rules.kinds();
    raw.iter()
        .map(|&(k, offset)| {
            let kind = &kinds[k % kinds.len()];
            let id = rules.resolve_kind(&kind.name).expect("named kind");
            ScoredInteraction {
                contribution: Contribution {
                    kind: id,
                    level: kind.level,
                    weight: kind.weight,
                    occurred_at: Timestamp(START + offset),
                },
                consent: kind.consent.map(|effect| (Channel::parse("email").expect("channel"), effect)),
            }
        })
        .collect()
}

fn fold_all(rules: &Rules, items: &[ScoredInteraction]) -> CustomerState {
    let mut state = CustomerState::new(rules);
    for item in items {
        state.fold(rules, item);
    }
    state
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-9
}

fn same_evidence(rules: &Rules, a: &CustomerState, b: &CustomerState, at: Timestamp) -> Result<(), TestCaseError> {
    for level in Level::ALL {
        let (x, y) = (a.evidence.at(rules, level, at), b.evidence.at(rules, level, at));
        prop_assert!(close(x, y), "{level}: {x} vs {y}");
    }
    for id in 0..rules.kind_count() {
        let kind = KindId(id as u16);
        prop_assert!(close(a.evidence.kind_at(rules, kind, at), b.evidence.kind_at(rules, kind, at)));
    }
    prop_assert_eq!(&a.evidence.kind_counts, &b.evidence.kind_counts);
    prop_assert_eq!(&a.consent, &b.consent);
    Ok(())
}

fn sorted(mut items: Vec<ScoredInteraction>) -> Vec<ScoredInteraction> {
    items.sort_by_key(|i| i.contribution.occurred_at);
    items
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_order_of_a_history_gives_the_same_evidence_and_decision(raw in history(), seed in any::<u64>()) {
        let rules = Rules::default_rules();
        let items = scored(&rules, &raw);
        let mut shuffled = items.clone();
        // A deterministic shuffle driven by the seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let now = Timestamp(START + 3 * 365 * DAY + DAY);
        let (a, b) = (fold_all(&rules, &sorted(items)), fold_all(&rules, &shuffled));
        same_evidence(&rules, &a, &b, now)?;
        prop_assert_eq!(decide(&rules, &a, now).level, decide(&rules, &b, now).level);
    }

    #[test]
    fn incremental_folds_equal_replay(raw in history(), hours_after in 0i64..(400 * 24)) {
        // Without hysteresis the level depends only on the evidence at the instant, so the
        // incremental state, decided once, must agree with the replay that decided all along.
        let rules = rules_with_hysteresis(1.0);
        let items = scored(&rules, &raw);
        let last = items.iter().map(|i| i.contribution.occurred_at).max().expect("non-empty");
        let now = last.plus_millis(hours_after * 3_600_000);
        let incremental = fold_all(&rules, &items);
        let replayed = replay_scored(&rules, &sorted(items), now);
        same_evidence(&rules, &incremental, &replayed.state, now)?;
        let decision = decide(&rules, &incremental, now);
        prop_assert_eq!(decision.level, replayed.decision.level);
        prop_assert_eq!(decision.drops_at.map(|t| t.0 / 1000), replayed.decision.drops_at.map(|t| t.0 / 1000));
    }

    #[test]
    fn the_store_path_of_deltas_equals_folding(raw in history(), short_half_life in any::<bool>()) {
        // The DynamoDB adapter adds `Evidence::delta` terms against the stored epoch, moves it
        // only beyond the lag, and rescores move stale epochs forward.
        let rules = if short_half_life {
            Rules::from_toml(&engagement::rules::DEFAULT_RULES_TOML.replace("half_life_days = 365", "half_life_days = 1")).expect("valid")
        } else {
            Rules::default_rules()
        };
        let items = scored(&rules, &raw);
        let mut stored = CustomerState::new(&rules);
        for item in &items {
            let at = item.contribution.occurred_at;
            // Add against the stored epoch while within the lag; move it only beyond.
            let epoch = if stored.evidence.last_interaction_at.is_none() {
                era_start(at)
            } else if Evidence::within_lag(&rules, stored.evidence.epoch, at) {
                stored.evidence.epoch
            } else {
                let epoch = era_start(at);
                stored.evidence.rebase(&rules, epoch);
                epoch
            };
            stored.evidence.epoch = epoch;
            let delta = Evidence::delta(&rules, epoch, &item.contribution);
            stored.evidence.apply(&delta, at);
            if let Some((channel, effect)) = &item.consent {
                stored.consent.record(channel, *effect == ConsentEffect::Grant, at);
            }
            // Now and then a rescore moves a stale epoch forward.
            if stored.evidence.epoch_is_stale() && at.0 % 3 == 0 {
                let target = era_start(stored.evidence.last_interaction_at.expect("folded"));
                stored.evidence.rebase(&rules, target);
            }
        }
        same_evidence(&rules, &stored, &fold_all(&rules, &items), Timestamp(START + 4 * 365 * DAY))?;
    }

    #[test]
    fn merging_two_customers_equals_folding_both_histories(raw in history(), split in any::<u64>()) {
        let rules = Rules::default_rules();
        let items = scored(&rules, &raw);
        let (left, right): (Vec<_>, Vec<_>) = items.iter().cloned().enumerate().partition(|(i, _)| split >> (i % 64) & 1 == 1);
        let left: Vec<_> = left.into_iter().map(|(_, x)| x).collect();
        let right: Vec<_> = right.into_iter().map(|(_, x)| x).collect();
        let merged = fold_all(&rules, &left).merge(&rules, &fold_all(&rules, &right));
        let all = fold_all(&rules, &items);
        let now = Timestamp(START + 3 * 365 * DAY);
        for level in Level::ALL {
            prop_assert!(close(merged.evidence.at(&rules, level, now), all.evidence.at(&rules, level, now)));
        }
        prop_assert_eq!(&merged.evidence.kind_counts, &all.evidence.kind_counts);
    }

    #[test]
    fn the_level_holds_until_drops_at_and_is_lower_after(raw in history()) {
        let rules = Rules::default_rules();
        let items = sorted(scored(&rules, &raw));
        let now = items.last().expect("non-empty").contribution.occurred_at;
        let mut state = replay_scored(&rules, &items, now).state;
        let decision = decide(&rules, &state, now);
        state.standing = Some(decision.standing());
        if let Some(drops_at) = decision.drops_at {
            prop_assume!(drops_at.0 - 1_000 > now.0);
            prop_assert_eq!(decide(&rules, &state, drops_at.minus_millis(1_000)).level, decision.level);
            let after = decide(&rules, &state, drops_at.plus_millis(1_000));
            prop_assert!(after.level < decision.level);
            prop_assert_eq!(Some(after.level), decision.drops_to);
            let at_risk_at = decision.at_risk_at.expect("a drop has an at-risk time");
            prop_assert!(decision.is_at_risk(at_risk_at.max(now)));
        } else {
            prop_assert_eq!(decision.level, Level::Observing);
        }
    }

    #[test]
    fn levels_rise_only_at_the_threshold_and_drop_only_below_the_hold_bar(raw in prop::collection::vec((0usize..64, 0i64..3 * 365 * DAY), 1..80)) {
        let rules = Rules::default_rules();
        let items = sorted(scored(&rules, &raw));
        let end = Timestamp(START + 4 * 365 * DAY);
        let replayed = replay_scored(&rules, &items, end);
        for change in &replayed.timeline {
            // Evidence at the instant of the change, from the interactions up to then.
            let upto: Vec<_> = items.iter().filter(|i| i.contribution.occurred_at <= change.at).cloned().collect();
            let state = fold_all(&rules, &upto);
            if change.to > change.from {
                let evidence = state.evidence.at(&rules, change.to, change.at);
                prop_assert!(evidence >= rules.threshold(change.to) * (1.0 - 1e-9), "rose to {} with {evidence}", change.to);
            } else {
                let evidence = state.evidence.at(&rules, change.from, change.at);
                let consent_lost = change.from == Level::Following && !state.consent.any_granted();
                prop_assert!(consent_lost || evidence <= rules.hold_threshold(change.from) * (1.0 + 1e-9), "dropped from {} with {evidence}", change.from);
            }
        }
    }

    #[test]
    fn validation_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let rules = Rules::default_rules();
        let _ = parse_submission(&bytes, &rules, Timestamp(START));
    }

    #[test]
    fn validation_never_panics_on_any_json(value in json_value(), field in 0usize..8) {
        let rules = Rules::default_rules();
        let now = Timestamp(START);
        let _ = parse_submission(value.to_string().as_bytes(), &rules, now);
        // Also every field of an otherwise valid interaction replaced by anything.
        let mut interaction = json!({
            "id": "x", "source": "s", "kind": "forum_posted", "occurred_at": "2023-11-14T00:00:00Z",
            "customer": {"channel": "email", "handle": "a@b.c", "also": [{"channel": "x", "handle": "y"}]},
        });
        let fields = ["id", "source", "kind", "occurred_at", "customer", "properties", "weight", "also"];
        if fields[field] == "also" {
            interaction["customer"]["also"] = value.clone();
        } else {
            interaction[fields[field]] = value.clone();
        }
        let _ = validate_interaction(&interaction, &rules, now);
        let _ = parse_submission(json!({"interactions": [interaction, value]}).to_string().as_bytes(), &rules, now);
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,40}".prop_map(Value::String),
        Just(json!("2023-11-14T00:00:00+99:00")),
        Just(json!("@")),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,12}", inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
