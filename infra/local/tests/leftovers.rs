//! What a crash or an erasure leaves behind, seen from outside with the real `pyramid` binary: an
//! import killed partway settles everyone on its re-run; an erased person leaves nothing readable
//! in the data directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pyramid")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pyramid-{name}-{}-{}", std::process::id(), fastrand::u32(..)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}

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
    let clean_summary = succeeded(pyramid(&["import"], &clean).arg(&file).output().expect("import runs"));

    // The same file, killed (SIGKILL) once its first batches are in the database's log.
    let mut child = pyramid(&["import"], &crashed)
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

    let rerun = succeeded(pyramid(&["import"], &crashed).arg(&file).output().expect("import runs"));
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
