//! Calibration against a synthetic community whose levels come from known rules.

use engagement::{Level, LevelRule, Rules, Timestamp, LEVEL_COUNT};
use engagement_calibrate::metrics_of;
use engagement_calibrate::{calibrate, synthetic, Label, Options, Verdict};

fn truth_rules() -> Rules {
    Rules::default_rules().with_level_rules(std::array::from_fn::<LevelRule, LEVEL_COUNT, _>(|i| LevelRule {
        threshold: [0.0, 2.0, 5.0, 7.0, 8.0, 8.0][i],
        half_life_days: [365.0, 240.0, 150.0, 120.0, 90.0, 90.0][i],
    }))
}

/// Deliberately wrong: thresholds far too low for the upper rungs, half-lives far too long.
fn wrong_rules() -> Rules {
    Rules::default_rules().with_level_rules(std::array::from_fn::<LevelRule, LEVEL_COUNT, _>(|i| LevelRule {
        threshold: [0.0, 1.0, 1.5, 2.0, 2.5, 2.5][i],
        half_life_days: [900.0, 900.0, 700.0, 600.0, 500.0, 500.0][i],
    }))
}

fn end() -> Timestamp {
    Timestamp::parse_rfc3339("2026-06-01T00:00:00Z").expect("a time")
}

fn labels(members: &[synthetic::Member], levels: impl Iterator<Item = Level>) -> Vec<Label> {
    members
        .iter()
        .zip(levels)
        .enumerate()
        .map(|(n, (member, level))| Label {
            line: n + 2,
            customer: member.id.clone(),
            level,
            as_of: member.as_of,
            history: member.history.clone(),
        })
        .collect()
}

#[test]
fn calibration_from_wrong_rules_recovers_levels_of_customers_it_never_saw() {
    let truth = truth_rules();
    let members = synthetic::community(11, 1600, 40, end());
    let levels = synthetic::true_levels(&truth, &members);
    let (labelled, unseen) = members.split_at(1000);
    println!("true levels: {:?}", Level::ALL.map(|l| levels.iter().filter(|x| **x == l).count()));
    // 10 % label noise: a random other level.
    let mut rng = fastrand::Rng::with_seed(5);
    let noisy = levels[..1000].iter().map(|level| {
        if rng.f64() < 0.1 {
            let other = Level::ALL.iter().copied().filter(|l| l != level).collect::<Vec<_>>();
            other[rng.usize(..other.len())]
        } else {
            *level
        }
    });
    let wrong = wrong_rules();
    let noisy: Vec<Level> = noisy.collect();
    println!(
        "the true rules on the noisy labels: macro-F1 {:.3}",
        metrics_of(&noisy, &synthetic::true_levels(&truth, labelled))
    );
    let calibration = calibrate(&wrong, &labels(labelled, noisy.into_iter()), &Options::default()).expect("calibrated");
    println!("{}", calibration.render());
    assert_eq!(calibration.verdict, Verdict::Propose, "{}", calibration.render());

    let unseen_truth = &levels[1000..];
    let before = metrics_of(unseen_truth, &synthetic::true_levels(&wrong, unseen));
    let after = metrics_of(unseen_truth, &synthetic::true_levels(&calibration.proposed, unseen));
    println!("unseen customers: macro-F1 {before:.3} under the wrong rules, {after:.3} under the proposed ones");
    assert!(before < 0.75, "the start must be wrong to show anything: {before}");
    assert!(after >= 0.9, "macro-F1 on customers not in the labels: {after}");
    // The proposal is a complete rules file that reads back to the same levels.
    let read = Rules::from_toml(&calibration.proposed.to_toml()).expect("a valid file");
    assert_eq!(
        synthetic::true_levels(&read, unseen),
        synthetic::true_levels(&calibration.proposed, unseen)
    );
    for r in 1..LEVEL_COUNT {
        assert!(
            read.level(Level::ALL[r]).half_life_days <= read.level(Level::ALL[r - 1]).half_life_days,
            "half-lives step down going up"
        );
    }
}

#[test]
fn random_labels_are_refused() {
    let members = synthetic::community(12, 600, 30, end());
    let mut rng = fastrand::Rng::with_seed(9);
    let random = (0..members.len()).map(|_| Level::ALL[rng.usize(..LEVEL_COUNT)]);
    let calibration = calibrate(&Rules::default_rules(), &labels(&members, random), &Options::default()).expect("ran");
    let Verdict::Refuse(reason) = &calibration.verdict else {
        panic!("random labels gave a proposal:\n{}", calibration.render());
    };
    assert!(reason.contains("bootstrap interval"), "{reason}");
    assert!(calibration.render().contains("no proposal"), "{}", calibration.render());
}
