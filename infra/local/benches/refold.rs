//! `pyramid refold`'s figure, printed: `cargo bench -p pyramid --bench refold`.
//!
//! A synthetic community (default 100 000 customers, about 1 M interactions) is imported under
//! the shipped rules (not timed), then re-folded under changed ones through the embedded store:
//! every customer's history read, replayed in parallel (rayon) and written. Target: < 120 s on
//! 2 cores. `PYRAMID_BENCH_CUSTOMERS` scales it down for a quick look; `PYRAMID_BENCH_CACHE=DIR`
//! keeps the imported store under DIR (per customer count) so a re-run times the refold alone.

use engagement::{Rules, Timestamp};
use engagement_aws::SystemClock;
use pyramid::bulk::import_into;
use pyramid::import::{Format, ImportPath, LiveOptions};
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
    // The imported store, kept between runs when `PYRAMID_BENCH_CACHE` names a directory (the
    // refold is what is timed).
    let cache = std::env::var_os("PYRAMID_BENCH_CACHE").map(|dir| std::path::PathBuf::from(dir).join(format!("refold-{customers}")));
    let lines = match cache.as_ref().filter(|cache| cache.join("done").exists()) {
        Some(cache) => {
            copy_dir(&cache.join("data"), &root.join("data"))?;
            let lines: u64 = std::fs::read_to_string(cache.join("done"))?.trim().parse()?;
            eprintln!("setup: {lines} interactions copied from {}", cache.display());
            lines
        }
        None => {
            let lines = import_community(&root, customers).await?;
            if let Some(cache) = &cache {
                let _ = std::fs::remove_dir_all(cache);
                copy_dir(&root.join("data"), &cache.join("data"))?;
                std::fs::write(cache.join("done"), lines.to_string())?;
            }
            lines
        }
    };
    let text = engagement::rules::DEFAULT_RULES_TOML
        .replace("hysteresis = 0.8", "hysteresis = 0.7")
        .replace("threshold = 3.5 ", "threshold = 2.5 ")
        .replace("half_life_days = 270", "half_life_days = 200");
    let rules = Arc::new(Rules::from_toml(&text)?);
    // The store as `pyramid refold --data` opens it (synchronous = NORMAL: this is live data).
    let dir = DataDir::open(&root.join("data"))?;
    let store = embedded_store(&dir, Arc::clone(&rules)).await?;
    let report = refold(&store, &rules, &SystemClock, RefoldOptions::embedded()).await?;
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

/// The synthetic community imported under the shipped rules into `root/data` (not timed).
async fn import_community(root: &std::path::Path, customers: usize) -> anyhow::Result<u64> {
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
    let dir = DataDir::open(&root.join("data"))?;
    let (store, bulk_load) = embedded_store_for_bulk_load(&dir, Arc::clone(&old)).await?;
    // The bulk path: the store it leaves equals the live path's (infra/local/tests/bulk.rs), in a
    // minute instead of a quarter of an hour.
    let report = import_into(
        &dir,
        &store,
        &bulk_load,
        &old,
        std::slice::from_ref(&file),
        Some(Format::Jsonl),
        ImportPath::Bulk,
        LiveOptions::default(),
    )
    .await?;
    bulk_load.finish()?;
    eprintln!("setup: {lines} interactions imported in {:.1} s", report.seconds);
    std::fs::remove_file(&file)?;
    Ok(lines)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
