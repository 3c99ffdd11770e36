//! `pyramid calibrate`, driven as a user would: labels in a CSV file, histories from the local
//! store (imported first) or from a table read through the DynamoDB API (dynoxide).

mod harness;

use engagement::ports::InteractionLog;
use engagement::{Level, LevelRule, Rules, Timestamp, LEVEL_COUNT};
use engagement_aws::{DynamoStore, StoreConfig};
use engagement_calibrate::synthetic;
use harness::{binary, temp_dir};
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

fn truth_rules() -> Rules {
    Rules::default_rules().with_level_rules(std::array::from_fn::<LevelRule, LEVEL_COUNT, _>(|i| LevelRule {
        threshold: [0.0, 2.0, 5.0, 7.0, 8.0, 8.0][i],
        half_life_days: [365.0, 240.0, 150.0, 120.0, 90.0, 90.0][i],
    }))
}

fn wrong_rules() -> Rules {
    Rules::default_rules().with_level_rules(std::array::from_fn::<LevelRule, LEVEL_COUNT, _>(|i| LevelRule {
        threshold: [0.0, 1.0, 1.5, 2.0, 2.5, 2.5][i],
        half_life_days: [900.0, 900.0, 700.0, 600.0, 500.0, 500.0][i],
    }))
}

fn yesterday() -> Timestamp {
    Timestamp::from_millis(chrono::Utc::now().timestamp_millis() - 86_400_000)
}

/// A community whose labels come from the true rules, as an import file and a labels file; the
/// labels file ends with the bad rows every test expects (lines after the good ones).
fn community(dir: &Path, customers: usize) -> (Vec<synthetic::Member>, String) {
    let members = synthetic::community(21, customers, 24, yesterday());
    let mut lines = String::new();
    for member in &members {
        for interaction in member.history.iter() {
            let _ = writeln!(lines, "{}", serde_json::to_string(interaction).expect("json"));
        }
    }
    std::fs::write(dir.join("history.jsonl"), lines).expect("written");
    let levels = synthetic::true_levels(&truth_rules(), &members);
    let mut labels = String::from("channel,handle,level,as_of\n");
    for (member, level) in members.iter().zip(&levels) {
        let identity = &member.history[0].customer.identity;
        let _ = writeln!(
            labels,
            "{},{},{level},{}",
            identity.channel,
            identity.handle,
            member.as_of.to_rfc3339()
        );
    }
    (members, labels)
}

const BAD_ROWS: &str = "email,nobody@example.com,following,\n\
                        email,member0@example.com,sponsor,\n\
                        email,member1@example.com,owning,last tuesday\n";

fn calibrate(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let output = Command::new(binary())
        .arg("calibrate")
        .args(args)
        .envs(envs.iter().copied())
        .env("PYRAMID_LOG", "error")
        .output()
        .expect("pyramid runs");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

#[test]
fn calibrate_proposes_rules_from_the_local_store_and_reports_every_bad_row_by_line() {
    let dir = temp_dir("calibrate");
    let data = dir.join("data");
    let (members, mut labels) = community(&dir, 300);
    // A leading label for someone who only ever looked: no rules can satisfy it.
    let looker = members
        .iter()
        .position(|m| m.history.iter().all(|i| i.kind.ends_with("viewed") || i.kind.starts_with("email_")))
        .expect("someone who only looked");
    let looker_line = labels.lines().count() + 1;
    let _ = writeln!(labels, "email,member{looker}@example.com,leading,");
    let first_bad = labels.lines().count() + 1;
    labels.push_str(BAD_ROWS);
    std::fs::write(dir.join("labels.csv"), &labels).expect("written");
    std::fs::write(dir.join("wrong.toml"), wrong_rules().to_toml()).expect("written");

    let import = Command::new(binary())
        .args(["import", "--data"])
        .arg(&data)
        .arg(dir.join("history.jsonl"))
        .env("PYRAMID_LOG", "error")
        .output()
        .expect("import runs");
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));

    let out = dir.join("proposed.toml");
    let labels_path = dir.join("labels.csv");
    let output = calibrate(
        &[
            "--labels",
            labels_path.to_str().expect("utf-8"),
            "--rules",
            dir.join("wrong.toml").to_str().expect("utf-8"),
            "--data",
            data.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
        ],
        &[],
    );
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(report.contains(&format!("line {first_bad}: unknown identity: nobody")), "{report}");
    assert!(
        report.contains(&format!("line {}: unknown level \"sponsor\"", first_bad + 1)),
        "{report}"
    );
    assert!(report.contains(&format!("line {}: bad date", first_bad + 2)), "{report}");
    assert!(
        report.contains(&format!("line {looker_line}: no interaction of a kind at or above leading")),
        "{report}"
    );
    assert!(
        report.contains("proposed changes:") && report.contains("levels.contributing.threshold: 2 -> "),
        "{report}"
    );
    assert!(
        report.contains("macro-F1") && report.contains("95 % bootstrap interval"),
        "{report}"
    );
    assert!(!report.contains("@example.com"), "no handle in the report: {report}");
    let proposed = Rules::from_toml(&std::fs::read_to_string(&out).expect("the proposal")).expect("valid rules");
    assert!(proposed.threshold(Level::Contributing) > 4.0, "moved towards the truth (7)");

    // An empty file is an error, and nothing is proposed.
    std::fs::write(dir.join("empty.csv"), "").expect("written");
    let empty = calibrate(
        &[
            "--labels",
            dir.join("empty.csv").to_str().expect("utf-8"),
            "--data",
            data.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(!empty.status.success());
    assert!(
        String::from_utf8_lossy(&empty.stderr).contains("no rows"),
        "{}",
        String::from_utf8_lossy(&empty.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibrate_reads_a_deployed_table_through_the_history_index() {
    let dir = temp_dir("calibrate-table");
    let endpoint = engagement_testkit::dynoxide_endpoint();
    let table = engagement_testkit::unique_name("calibrate");
    let salt = "a-salt-of-at-least-32-characters-for-tests";
    let rules = Arc::new(truth_rules());
    let store = DynamoStore::new(
        engagement_aws::client::local_dynamodb(endpoint, None),
        Arc::clone(&rules),
        StoreConfig {
            table: table.clone(),
            salt: salt.into(),
            omit_request_tokens: true,
        },
    );
    store.create_table().await.expect("a table");
    let (members, mut labels) = community(&dir, 120);
    let interactions: Vec<_> = members.iter().flat_map(|m| m.history.iter().cloned()).collect();
    for batch in interactions.chunks(100) {
        store.record_interactions(batch, yesterday()).await.expect("recorded");
    }
    labels.push_str(BAD_ROWS);
    std::fs::write(dir.join("labels.csv"), &labels).expect("written");
    std::fs::write(dir.join("truth.toml"), truth_rules().to_toml()).expect("written");
    let output = calibrate(
        &[
            "--labels",
            dir.join("labels.csv").to_str().expect("utf-8"),
            "--rules",
            dir.join("truth.toml").to_str().expect("utf-8"),
            "--table",
            &table,
            "--folds",
            "3",
        ],
        &[
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_ACCESS_KEY_ID", "local"),
            ("AWS_SECRET_ACCESS_KEY", "local"),
            ("AWS_REGION", "us-east-1"),
            ("IDENTITY_SALT", salt),
        ],
    );
    let report = String::from_utf8_lossy(&output.stdout);
    // The current rules are the true ones here: nothing better to propose, and it says so.
    assert!(report.contains("120 labels, 3-fold cross-validated"), "{report}");
    assert!(report.contains("unknown identity: nobody"), "{report}");
    assert!(report.contains("no proposal"), "{report}");
    assert!(!output.status.success(), "a refusal exits non-zero");
    // Without the salt nobody can be found: said, not guessed.
    let unsalted = calibrate(
        &["--labels", dir.join("labels.csv").to_str().expect("utf-8"), "--table", &table],
        &[("AWS_ENDPOINT_URL", endpoint), ("AWS_REGION", "us-east-1")],
    );
    assert!(String::from_utf8_lossy(&unsalted.stderr).contains("IDENTITY_SALT"));
    let _ = std::fs::remove_dir_all(&dir);
}
