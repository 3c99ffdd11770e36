//! The seeds' story, told as a community manager would see it.

use engagement::*;
use serde_json::json;

fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).expect("valid time")
}

fn interaction(rules: &Rules, id: &str, kind: &str, when: &str) -> Interaction {
    let value = json!({
        "id": id,
        "source": "test",
        "customer": {"channel": "email", "handle": "maya@example.com", "name": "Maya"},
        "kind": kind,
        "occurred_at": when,
    });
    validate_interaction(&value, rules, at("2030-01-01T00:00:00Z")).expect("valid interaction")
}

/// Folds one interaction and decides, as ingest + rescore do.
fn step(rules: &Rules, state: &mut CustomerState, item: &Interaction) -> Decision {
    state.fold(rules, &item.score(rules).expect("known kind"));
    let decision = decide(rules, state, item.occurred_at);
    state.standing = Some(decision.standing());
    decision
}

#[test]
fn a_subscriber_who_reviews_attends_and_sponsors_climbs_to_contributing_then_drops_when_foretold() {
    let rules = Rules::default_rules();
    let mut state = CustomerState::new(&rules);

    let viewed = step(&rules, &mut state, &interaction(&rules, "1", "page_viewed", "2026-01-05T09:00:00Z"));
    assert_eq!(viewed.level, Level::Observing);

    let subscribed = step(
        &rules,
        &mut state,
        &interaction(&rules, "2", "newsletter_subscribed", "2026-01-10T09:00:00Z"),
    );
    assert_eq!(subscribed.level, Level::Following);
    assert_eq!(subscribed.direction(), Some(Direction::Up));
    assert_eq!(subscribed.since, at("2026-01-10T09:00:00Z"));

    let reviewed = step(
        &rules,
        &mut state,
        &interaction(&rules, "3", "review_posted", "2026-02-01T09:00:00Z"),
    );
    assert_eq!(reviewed.level, Level::Endorsing);

    let first_event = step(
        &rules,
        &mut state,
        &interaction(&rules, "4", "event_attended", "2026-03-03T18:00:00Z"),
    );
    assert_eq!(first_event.level, Level::Endorsing, "one event is not yet contributing");
    let next = first_event.explanation.next_step.as_ref().expect("a next step");
    assert_eq!(next.level, Level::Contributing);
    assert!(
        first_event.summary().contains("more contributing evidence would move them up"),
        "{}",
        first_event.summary()
    );

    let second_event = step(
        &rules,
        &mut state,
        &interaction(&rules, "5", "event_attended", "2026-04-14T18:00:00Z"),
    );
    assert_eq!(second_event.level, Level::Contributing);
    let sponsored = step(
        &rules,
        &mut state,
        &interaction(&rules, "6", "event_sponsored", "2026-05-20T10:00:00Z"),
    );
    assert_eq!(sponsored.level, Level::Contributing);
    assert_eq!(
        sponsored.since,
        at("2026-04-14T18:00:00Z"),
        "still contributing since the second event"
    );
    assert_eq!(sponsored.explanation.top_kinds[0].kind, "event_sponsored");
    assert_eq!(sponsored.explanation.top_kinds[1].kind, "event_attended");
    assert_eq!(sponsored.explanation.top_kinds[1].count, 2);
    let summary = sponsored.summary();
    assert!(
        summary.starts_with("Contributing since 14 April 2026: 1 event_sponsored, 2 event_attended."),
        "{summary}"
    );

    // Then silence. The decision foretold the drop; it happens exactly then.
    let drops_at = sponsored.drops_at.expect("a contributing customer can drop");
    assert_eq!(sponsored.drops_to, Some(Level::Endorsing));
    assert!(
        drops_at > at("2026-11-01T00:00:00Z") && drops_at < at("2027-05-20T00:00:00Z"),
        "{drops_at}"
    );
    let just_before = decide(&rules, &state, drops_at.minus_millis(1_000));
    assert_eq!(just_before.level, Level::Contributing);
    assert!(just_before.is_at_risk(drops_at.minus_millis(1_000)));
    let at_risk_at = sponsored.at_risk_at.expect("at risk before the drop");
    assert_eq!(drops_at.millis() - at_risk_at.millis(), 30 * 86_400_000);
    assert!(!decide(&rules, &state, at_risk_at.minus_millis(1_000)).is_at_risk(at_risk_at.minus_millis(1_000)));
    let after = decide(&rules, &state, drops_at.plus_millis(1_000));
    assert_eq!(after.level, Level::Endorsing);
    assert_eq!(after.direction(), Some(Direction::Down));
    assert_eq!(after.since, drops_at, "the drop is dated when it happened, not when it was noticed");

    // A year of silence: she is no longer contributing.
    let replayed = replay(&rules, &[], at("2027-05-20T10:00:00Z"));
    assert_eq!(replayed.decision.level, Level::Observing);
    let a_year_later = {
        let mut settled = state.clone();
        let mut timeline = Vec::new();
        settle_drops(&rules, &mut settled, at("2027-05-20T10:00:00Z"), &mut timeline);
        assert!(timeline.iter().all(|change| change.to < change.from), "{timeline:?}");
        decide(&rules, &settled, at("2027-05-20T10:00:00Z"))
    };
    assert!(a_year_later.level < Level::Contributing, "{:?}", a_year_later.level);
}

#[test]
fn replay_tells_the_same_story_with_its_timeline_at_any_instant() {
    let rules = Rules::default_rules();
    let history = vec![
        interaction(&rules, "6", "event_sponsored", "2026-05-20T10:00:00Z"),
        interaction(&rules, "2", "newsletter_subscribed", "2026-01-10T09:00:00Z"),
        interaction(&rules, "3", "review_posted", "2026-02-01T09:00:00Z"),
        interaction(&rules, "4", "event_attended", "2026-03-03T18:00:00Z"),
        interaction(&rules, "5", "event_attended", "2026-04-14T18:00:00Z"),
    ];
    let in_march = replay(&rules, &history, at("2026-03-10T00:00:00Z"));
    assert_eq!(in_march.decision.level, Level::Endorsing, "time travel ignores what came later");
    let later = replay(&rules, &history, at("2027-12-31T00:00:00Z"));
    let moves: Vec<(Level, Level)> = later.timeline.iter().map(|c| (c.from, c.to)).collect();
    assert_eq!(
        &moves[..3],
        &[
            (Level::Observing, Level::Following),
            (Level::Following, Level::Endorsing),
            (Level::Endorsing, Level::Contributing)
        ]
    );
    assert!(moves[3..].iter().all(|(from, to)| to < from), "then only drops: {moves:?}");
}

#[test]
fn without_consent_evidence_of_following_is_not_enough() {
    let rules = Rules::default_rules();
    let mut state = CustomerState::new(&rules);
    for (i, day) in ["01", "02", "03", "04", "05", "06"].iter().enumerate() {
        step(
            &rules,
            &mut state,
            &interaction(&rules, &i.to_string(), "post_liked", &format!("2026-01-{day}T09:00:00Z")),
        );
    }
    let decision = decide(&rules, &state, at("2026-01-06T10:00:00Z"));
    assert!(decision.explanation.rungs[1].evidence >= rules.threshold(Level::Following));
    assert_eq!(decision.level, Level::Observing);
    assert!(decision.explanation.next_step.as_ref().is_some_and(|n| n.needs_consent));
    assert!(
        decision.summary().contains("Consent on any channel would make them following"),
        "{}",
        decision.summary()
    );

    let withdrawn = {
        let mut s = state.clone();
        step(&rules, &mut s, &interaction(&rules, "g", "consent_granted", "2026-01-07T09:00:00Z"));
        assert_eq!(decide(&rules, &s, at("2026-01-07T09:00:00Z")).level, Level::Following);
        step(
            &rules,
            &mut s,
            &interaction(&rules, "w", "consent_withdrawn", "2026-01-08T09:00:00Z"),
        )
    };
    assert_eq!(withdrawn.level, Level::Observing, "withdrawing consent drops a follower at once");
}

#[test]
fn the_endorser_is_invited_as_a_guest_then_asked_to_sponsor() {
    let rules =
        Rules::from_toml(&engagement::rules::DEFAULT_RULES_TOML.replace("holdout_percent = 10", "holdout_percent = 0")).expect("valid");
    let mut consent = Consents::default();
    consent.record(&Channel::parse("email").expect("channel"), true, at("2026-01-10T09:00:00Z"));
    let mut history: Vec<NudgeRecord> = Vec::new();
    let decide_and_record = |trigger: Trigger, now: &str, history: &mut Vec<NudgeRecord>| {
        let decisions = select_nudges(&rules, "cus_maya", &consent, history, &trigger, at(now));
        for d in &decisions {
            history.push(NudgeRecord {
                playbook: d.playbook.clone(),
                step: d.step,
                outcome: d.outcome,
                decided_at: at(now),
            });
        }
        decisions
    };

    let reached = decide_and_record(Trigger::LevelReached(Level::Endorsing), "2026-02-01T09:00:00Z", &mut history);
    assert_eq!(reached.len(), 1);
    assert_eq!(
        (reached[0].playbook.as_str(), reached[0].action.as_str(), reached[0].outcome),
        ("endorser_to_sponsor", "invite_as_event_guest", NudgeOutcome::Sent)
    );

    // An unrelated interaction does not climb the ladder.
    assert!(decide_and_record(Trigger::Interaction("review_posted".into()), "2026-02-10T09:00:00Z", &mut history).is_empty());

    // She came to the event as a guest: next, she is asked to sponsor it.
    let attended = decide_and_record(Trigger::Interaction("event_attended".into()), "2026-03-03T18:00:00Z", &mut history);
    assert_eq!(attended.len(), 1);
    assert_eq!(
        (attended[0].action.as_str(), attended[0].step, attended[0].outcome),
        ("ask_to_sponsor_event", 2, NudgeOutcome::Sent)
    );

    // Reaching endorsing again later finds the ladder finished.
    let again = decide_and_record(Trigger::LevelReached(Level::Endorsing), "2026-09-01T09:00:00Z", &mut history);
    assert_eq!(again[0].reason, Some(SuppressReason::LadderFinished));
}

#[test]
fn nudges_respect_consent_cool_down_the_frequency_cap_and_the_holdout() {
    let rules = Rules::default_rules();
    let email = Channel::parse("email").expect("channel");
    let now = at("2026-06-01T12:00:00Z");
    let none = select_nudges(
        &rules,
        "c1",
        &Consents::default(),
        &[],
        &Trigger::LevelReached(Level::Endorsing),
        now,
    );
    assert_eq!(none[0].reason, Some(SuppressReason::NoConsent));

    let mut consent = Consents::default();
    consent.record(&email, true, at("2026-01-01T00:00:00Z"));
    let recent = |playbook: &str, days_ago: i64| NudgeRecord {
        playbook: playbook.into(),
        step: 1,
        outcome: NudgeOutcome::Sent,
        decided_at: now.minus_millis(days_ago * 86_400_000),
    };
    let capped = select_nudges(
        &rules,
        "c1",
        &consent,
        &[recent("a", 1), recent("b", 2), recent("c", 3)],
        &Trigger::LevelReached(Level::Endorsing),
        now,
    );
    assert_eq!(capped[0].reason, Some(SuppressReason::FrequencyCap));

    let cooling = select_nudges(
        &rules,
        "c1",
        &consent,
        &[recent("endorser_to_sponsor", 3)],
        &Trigger::Interaction("event_attended".into()),
        now,
    );
    assert_eq!(cooling[0].reason, Some(SuppressReason::CoolDown));

    // The holdout is deterministic and close to the configured 10 %.
    let playbook = rules.playbook("endorser_to_sponsor").expect("shipped");
    let held = (0..10_000).filter(|i| in_holdout(&format!("cus_{i}"), playbook)).count();
    assert!((800..1200).contains(&held), "{held} of 10000 held out");
    let held_out_customer = (0..100)
        .map(|i| format!("cus_{i}"))
        .find(|c| in_holdout(c, playbook))
        .expect("someone is held out");
    let decision = select_nudges(
        &rules,
        &held_out_customer,
        &consent,
        &[],
        &Trigger::LevelReached(Level::Endorsing),
        now,
    );
    assert_eq!(decision[0].outcome, NudgeOutcome::HeldOut);
    assert!(
        !in_holdout(&held_out_customer, rules.playbook("service_recovery").expect("shipped")),
        "nobody is held out of service recovery"
    );
}

#[test]
fn an_interaction_just_before_a_foreseen_drop_keeps_the_level_even_if_noticed_late() {
    let rules = Rules::default_rules();
    let mut state = CustomerState::new(&rules);
    for (id, kind, when) in [
        ("1", "newsletter_subscribed", "2026-01-10T09:00:00Z"),
        ("2", "event_attended", "2026-03-03T18:00:00Z"),
        ("3", "event_attended", "2026-04-14T18:00:00Z"),
    ] {
        step(&rules, &mut state, &interaction(&rules, id, kind, when));
    }
    let contributing = decide(&rules, &state, at("2026-04-14T18:00:00Z"));
    assert_eq!(contributing.level, Level::Contributing);
    let drops_at = contributing.drops_at.expect("a foreseen drop");
    // A forum answer the day before the drop is folded, but the rescore runs two days late.
    let answer = interaction(&rules, "4", "forum_answered", &drops_at.minus_millis(86_400_000).to_rfc3339());
    state.fold(&rules, &answer.score(&rules).expect("scored"));
    let late = decide(&rules, &state, drops_at.plus_millis(2 * 86_400_000));
    assert_eq!(late.level, Level::Contributing, "the level held: the answer came in time");
    assert_eq!(late.since, contributing.since);
}

#[test]
fn the_holdout_group_gets_the_same_cadence_as_the_treated_group() {
    let rules = Rules::default_rules();
    let playbook = rules.playbook("endorser_to_sponsor").expect("shipped");
    let held_out = (0..200)
        .map(|i| format!("cus_{i}"))
        .find(|c| in_holdout(c, playbook))
        .expect("someone is held out");
    let mut consent = Consents::default();
    consent.record(&Channel::parse("email").expect("channel"), true, at("2026-01-01T00:00:00Z"));
    let now = at("2026-06-01T12:00:00Z");
    let history = [NudgeRecord {
        playbook: "endorser_to_sponsor".into(),
        step: 1,
        outcome: NudgeOutcome::HeldOut,
        decided_at: now.minus_millis(86_400_000),
    }];
    let next = select_nudges(
        &rules,
        &held_out,
        &consent,
        &history,
        &Trigger::Interaction("event_attended".into()),
        now,
    );
    assert_eq!(
        next[0].reason,
        Some(SuppressReason::CoolDown),
        "held out a day ago: cooling down like a sent nudge"
    );
}

/// Folds one interaction and decides a moment later, as ingest and then rescore do in production.
fn step_late(rules: &Rules, state: &mut CustomerState, item: &Interaction, later_millis: i64) -> Decision {
    state.fold(rules, &item.score(rules).expect("known kind"));
    let decision = decide(rules, state, item.occurred_at.plus_millis(later_millis));
    state.standing = Some(decision.standing());
    decision
}

#[test]
fn one_review_rescored_a_second_later_makes_an_endorser_as_replay_says() {
    let rules = Rules::default_rules();
    let mut state = CustomerState::new(&rules);
    let subscribe = interaction(&rules, "1", "newsletter_subscribed", "2026-01-10T09:00:00Z");
    let review = interaction(&rules, "2", "review_posted", "2026-01-12T09:00:00Z");
    assert_eq!(step_late(&rules, &mut state, &subscribe, 1_000).level, Level::Following);
    // The review's weight equals the endorsing threshold: at its own instant it reaches it, and a
    // rescore ten minutes later must not see the decay since then as a missed rise.
    let live = step_late(&rules, &mut state, &review, 600_000);
    assert_eq!(live.level, Level::Endorsing, "{}", live.summary());
    assert_eq!(live.since, review.occurred_at);
    let replayed = replay(&rules, &[subscribe, review], live.since.plus_millis(600_000));
    assert_eq!((replayed.decision.level, replayed.decision.since), (live.level, live.since));
    assert_eq!(live.drops_at, replayed.decision.drops_at);
}

#[test]
fn missing_evidence_never_reads_as_zero() {
    let rules = Rules::default_rules();
    let mut state = CustomerState::new(&rules);
    // Two shares a few hours apart, no consent: following evidence is 2 less a sliver of decay,
    // a hair short of its threshold of 2 (and consent is missing too).
    for (id, when) in [("1", "2026-01-10T09:00:00Z"), ("2", "2026-01-10T15:00:00Z")] {
        step_late(&rules, &mut state, &interaction(&rules, id, "content_shared", when), 0);
    }
    let later = decide(&rules, &state, at("2026-01-10T15:00:01Z"));
    assert_eq!(later.level, Level::Observing);
    let summary = later.summary();
    assert!(summary.contains(" 0.1 more following evidence would move them up"), "{summary}");
    assert!(!summary.contains(" 0.0 more"), "{summary}");
    // Evidence a hair below the bar at a level not reached reads as the smallest step shown.
    assert_eq!(engagement::decide::shown_missing(2.5e-7), 0.1);
    assert_eq!(engagement::decide::shown_missing(1.4000000001), 1.4);
    assert_eq!(engagement::decide::shown_missing(1.41), 1.5);
}
