//! What a crash or an erasure leaves behind, seen from outside with the real `pyramid` binary: an
//! import killed partway settles everyone on its re-run; an erased person leaves nothing readable
//! in the data directory.

mod harness;

use harness::{binary, files_holding, temp_dir, Server};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A known salt, so that two data directories give the same person the same customer id.
const SALT: &str = "leftovers-salt-leftovers-salt-leftovers-salt";

fn pyramid(args: &[&str], data: &Path) -> Command {
    let mut command = Command::new(binary());
    command.args(args).arg("--data").arg(data).env("PYRAMID_LOG", "error");
    command
}

fn succeeded(output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// The lines of an import's summary from "customers by level:" on.
fn levels(summary: &str) -> String {
    summary
        .split_once("customers by level:")
        .map(|(_, counts)| counts.to_string())
        .unwrap_or_default()
}

/// A history of `customers` people, five lines each and grouped by person (as exports often
/// are), spread over four levels; dated a day back so that no evidence sits near a threshold.
fn history(customers: usize) -> String {
    let at = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut lines = Vec::new();
    for c in 0..customers {
        let kinds: &[&str] = match c % 4 {
            0 => &["page_viewed", "page_viewed", "email_opened", "page_viewed", "email_clicked"],
            1 => &["newsletter_subscribed", "page_viewed", "page_viewed", "email_opened", "post_liked"],
            2 => &[
                "newsletter_subscribed",
                "testimonial_given",
                "page_viewed",
                "email_opened",
                "content_shared",
            ],
            _ => &[
                "newsletter_subscribed",
                "testimonial_given",
                "forum_answered",
                "forum_answered",
                "page_viewed",
            ],
        };
        for (n, kind) in kinds.iter().enumerate() {
            lines.push(
                serde_json::json!({
                    "id": format!("h-{c}-{n}"),
                    "source": "export",
                    "customer": {"channel": "email", "handle": format!("p{c}@example.com")},
                    "kind": kind,
                    "occurred_at": at,
                })
                .to_string(),
            );
        }
    }
    lines.join("\n")
}

#[test]
fn an_import_killed_partway_then_rerun_settles_everyone_as_a_clean_import_does() {
    let root = temp_dir("import-kill");
    let file = root.join("history.jsonl");
    std::fs::write(&file, history(240)).expect("a file");
    let (clean, crashed) = (root.join("clean"), root.join("crashed"));
    for data in [&clean, &crashed] {
        std::fs::create_dir_all(data).expect("a data dir");
        std::fs::write(data.join("identity-salt"), SALT).expect("a salt");
    }
    let clean_summary = succeeded(pyramid(&["import", "--live"], &clean).arg(&file).output().expect("import runs"));

    // The same file, killed (SIGKILL) once its first batches are in the database's log.
    let mut child = pyramid(&["import", "--live"], &crashed)
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("import starts");
    let wal = crashed.join("engagement.db-wal");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) < 1 << 20 {
        assert!(
            child.try_wait().expect("a status").is_none(),
            "the import finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "the import wrote nothing");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("killed");
    let _ = child.wait();

    let rerun = succeeded(pyramid(&["import", "--live"], &crashed).arg(&file).output().expect("import runs"));
    assert!(
        !rerun.contains(" 0 duplicate") && !rerun.contains(" 0 recorded"),
        "the kill came partway: {rerun}"
    );
    assert_eq!(levels(&rerun), levels(&clean_summary), "customers by level");
    assert!(levels(&clean_summary).contains("contributing"), "{clean_summary}");

    // Every customer's stored level against the one their history gives, at one instant: the
    // same table for both directories, and nobody would move.
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let table = |data: &Path| succeeded(pyramid(&["rescore", "--at", &at], data).output().expect("rescore runs"));
    let (clean_table, crashed_table) = (table(&clean), table(&crashed));
    assert!(clean_table.contains("240 customers, 0 would move up, 0 down"), "{clean_table}");
    assert_eq!(
        crashed_table.replace(&crashed.display().to_string(), ""),
        clean_table.replace(&clean.display().to_string(), "")
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// An e-mail address whose customer the welcome playbook nudges (not in its holdout).
fn welcomed_email(prefix: &str) -> String {
    harness::treated_email(SALT, "welcome_follower", |n| format!("{prefix}-{n}@example.com"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_person_leaves_nothing_readable_in_the_data_directory() {
    let data = temp_dir("erasure");
    std::fs::write(data.join("identity-salt"), SALT).expect("a salt");
    // A receiver that refuses every connection: nudges are dead-lettered after the retry budget
    // (with no backoff, at once), so the dead-letter file holds them too.
    let refused = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let hook = format!("http://{}/hooks", refused.local_addr().expect("an address"));
    drop(refused);
    let server = Server::start(&data, &["--webhook", &hook, "--webhook-backoff-ms", "0"]);

    let (erased, kept) = (welcomed_email("zelda-quux"), welcomed_email("kept-person"));
    let name = "Zelda Quuxington";
    let at = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let interaction = |id: String, email: &str, kind: &str| {
        let name = if email == erased { name } else { "Kept Person" };
        serde_json::json!({"id": id, "source": "leftovers", "customer": {"channel": "email", "handle": email, "name": name}, "kind": kind, "occurred_at": at})
    };
    // Many writes of her row and her interactions, interleaved with someone else's.
    let mut interaction_ids = Vec::new();
    for round in 0..10 {
        let kind = if round == 0 { "newsletter_subscribed" } else { "page_viewed" };
        let id = format!("zq-interaction-{round}");
        let items = vec![
            interaction(id.clone(), &erased, kind),
            interaction(format!("kp-interaction-{round}"), &kept, kind),
        ];
        interaction_ids.push(id);
        let (status, body) = server
            .send(
                reqwest::Method::POST,
                "/v1/interactions",
                Some(serde_json::json!({ "interactions": items })),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let customer = {
        let (_, body) = server
            .send(
                reqwest::Method::POST,
                "/v1/interactions",
                Some(serde_json::json!({ "interactions": [interaction("zq-interaction-0".into(), &erased, "newsletter_subscribed")] })),
            )
            .await;
        body["interactions"][0]["customer_id"].as_str().expect("her id").to_string()
    };
    let mut needles = vec![erased.clone(), name.to_string()];
    needles.extend(interaction_ids);
    // Both welcomed, and both nudges dead-lettered: every log holds her now.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let read = |file: &str| std::fs::read_to_string(data.join(file)).unwrap_or_default();
        let (nudges, dead) = (read("nudges.jsonl"), read("dead-letter.jsonl"));
        if [&erased, &kept]
            .iter()
            .all(|e| nudges.contains(e.as_str()) && dead.contains(e.as_str()))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the nudges were not logged and dead-lettered: {nudges}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = files_holding(&data, &needles);
    assert!(
        before
            .iter()
            .any(|(path, _)| path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("engagement.db"))),
        "the search finds her in the database before: {before:?}"
    );

    let (status, body) = server
        .send(reqwest::Method::DELETE, &format!("/v1/customers/{customer}"), None)
        .await;
    assert_eq!(status, 204, "{body}");
    // Scrubbed before the answer.
    let after = files_holding(&data, &needles);
    assert!(after.is_empty(), "left after the erasure: {after:?}");
    // `Customer Erased` carries her email, sealed, to the marketing tools; once its delivery is
    // over (here dead-lettered: the receiver refuses), no file keeps even the ciphertext.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dead = std::fs::read_to_string(data.join("dead-letter.jsonl")).unwrap_or_default();
        let in_flight = std::fs::read_dir(data.join("outbox"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|e| e.path().extension().is_some_and(|x| x == "json"))
            })
            .unwrap_or(false);
        if dead.contains("Customer Erased") && !in_flight {
            break;
        }
        assert!(Instant::now() < deadline, "the erasure was not dead-lettered: {dead}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    needles.push(engagement::erasure::SEALED_CONTACT.to_string());
    let after = files_holding(&data, &needles);
    assert!(after.is_empty(), "left once the erasure's delivery is over: {after:?}");
    let dead = std::fs::read_to_string(data.join("dead-letter.jsonl")).unwrap_or_default();
    assert!(dead.contains(&customer), "the dead letter keeps her id: {dead}");
    // Only she was scrubbed: the other person's nudge is still logged.
    let nudges = std::fs::read_to_string(data.join("nudges.jsonl")).unwrap_or_default();
    assert!(nudges.contains(&kept), "{nudges}");

    // The database, rebuilt meanwhile, still serves the other person.
    let (status, body) = server.send(reqwest::Method::GET, "/v1/customers?level=following", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["customers"].as_array().map(Vec::len),
        Some(1),
        "the other person is still there: {body}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}
