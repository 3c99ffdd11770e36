//! `cargo bench -p engagement-calibrate`: calibrating 10 000 labelled customers (1 M
//! interactions) without `--weights`, from the shipped rules to labels drawn from other rules.
//! Prints the figure (the target is < 60 s on a 2-core machine).

use engagement::{Level, LevelRule, Rules, Timestamp, LEVEL_COUNT};
use engagement_calibrate::{calibrate, synthetic, Label, Options};
use std::time::Instant;

fn main() {
    let customers: usize = std::env::var("CALIBRATE_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let per_customer = 100;
    let current = Rules::default_rules();
    let truth_rules = current.with_level_rules(std::array::from_fn::<LevelRule, LEVEL_COUNT, _>(|i| LevelRule {
        threshold: [0.0, 2.0, 5.0, 7.0, 8.0, 8.0][i],
        half_life_days: [365.0, 240.0, 150.0, 120.0, 90.0, 90.0][i],
    }));
    let end = Timestamp::parse_rfc3339("2026-06-01T00:00:00Z").expect("a time");
    let made = Instant::now();
    let members = synthetic::community(7, customers, per_customer, end);
    let levels = synthetic::true_levels(&truth_rules, &members);
    let labels: Vec<Label> = members
        .iter()
        .zip(&levels)
        .enumerate()
        .map(|(n, (member, level))| Label {
            line: n + 2,
            customer: member.id.clone(),
            level: *level,
            as_of: member.as_of,
            history: member.history.clone(),
        })
        .collect();
    let interactions: usize = members.iter().map(|m| m.history.len()).sum();
    eprintln!("community made in {:.1} s", made.elapsed().as_secs_f64());
    let started = Instant::now();
    let calibration = calibrate(&current, &labels, &Options::default()).expect("calibrated");
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds();
    print!("{}", calibration.render());
    println!(
        "calibrate: {customers} labelled customers, {interactions} interactions, {} candidates scored, {} threads: {seconds:.1} s wall, {cpu:.1} s CPU ({:.0} ms per candidate; levels {:?})",
        calibration.evaluations,
        rayon::current_num_threads(),
        seconds * 1000.0 / calibration.evaluations as f64,
        Level::ALL.iter().map(|l| levels.iter().filter(|x| *x == l).count()).collect::<Vec<_>>()
    );
}

/// User + system CPU time of this process so far (Linux; 0 elsewhere): on a machine other jobs
/// load, wall time says more about them than about calibration.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    ticks / 100.0
}
