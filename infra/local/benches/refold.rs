//! `pyramid refold`'s figure, printed: `cargo bench -p pyramid --bench refold`.
//!
//! A synthetic community (default 100 000 customers, about 1 M interactions) is imported under
//! the shipped rules (not timed), then re-folded under changed ones through the embedded store:
//! every customer's history read, replayed in parallel (rayon) and written. Target: < 120 s on
//! 2 cores. `PYRAMID_BENCH_CUSTOMERS` scales it down for a quick look.

use engagement::{Rules, Timestamp};
use engagement_aws::SystemClock;
use pyramid::import::{import, Format};
use pyramid::local::{embedded_store, embedded_store_for_bulk_load, DataDir};
use pyramid::refold::{refold, RefoldOptions};
use std::io::Write as _;
use std::sync::Arc;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let customers = env_number("PYRAMID_BENCH_CUSTOMERS", 100_000) as usize;
    let root = std::env::temp_dir().join(format!("pyramid-bench-refold-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let file = root.join("community.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
    let mut lines = 0u64;
    let now = Timestamp::from_millis(chrono::Utc::now().timestamp_millis());
    for item in pyramid::community::synthetic(1, customers, now) {
        writeln!(out, "{item}")?;
        lines += 1;
    }
    out.flush()?;
    drop(out);
    let old = Arc::new(Rules::default_rules());
    {
        let dir = DataDir::open(&root.join("data"))?;
        let (store, bulk_load) = embedded_store_for_bulk_load(&dir, Arc::clone(&old)).await?;
        let report = import(&store, &old, &[file], Some(Format::Jsonl)).await?;
        bulk_load.finish()?;
        eprintln!("setup: {lines} interactions imported in {:.1} s", report.seconds);
    }
    let text = engagement::rules::DEFAULT_RULES_TOML
        .replace("hysteresis = 0.8", "hysteresis = 0.7")
        .replace("threshold = 3.5 ", "threshold = 2.5 ")
        .replace("half_life_days = 270", "half_life_days = 200");
    let rules = Arc::new(Rules::from_toml(&text)?);
    // The store as `pyramid refold --data` opens it (synchronous = NORMAL: this is live data).
    let dir = DataDir::open(&root.join("data"))?;
    let store = embedded_store(&dir, Arc::clone(&rules)).await?;
    let report = refold(&store, &rules, &SystemClock, RefoldOptions::default()).await?;
    println!(
        "refold: {} customers ({lines} interactions) in {:.1} s = {:.0} customers/s ({} moved up, {} down, {} read again, {} left) on {} cores",
        report.refolded,
        report.seconds,
        report.refolded as f64 / report.seconds,
        report.moved_up,
        report.moved_down,
        report.retried,
        report.left,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
