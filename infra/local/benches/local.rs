//! The one-machine mode's figures, printed: `cargo bench -p pyramid --bench local`.
//!
//! 1. `import` of a synthetic community (default 100 000 customers, about 1 M interactions) into
//!    a fresh embedded store, levels decided included, by the bulk path then the live path;
//!    peak memory before and after.
//! 2. `serve` over loopback: interactions per second posted in batches of 100 by 8 clients, and
//!    the latency of single posts sent at 500 requests per second.
//!
//! `PYRAMID_BENCH_CUSTOMERS` and `PYRAMID_BENCH_SECONDS` scale it down for a quick look;
//! `PYRAMID_BENCH_BULK_ONLY=1` stops after the bulk import (for `/usr/bin/time -v`),
//! `PYRAMID_BENCH_SKIP_LIVE_IMPORT=1` skips the live import.

use engagement::{Rules, Timestamp};
use pyramid::bulk::import_into;
use pyramid::import::{import, Format, ImportPath, LiveOptions};
use pyramid::local::{embedded_store_for_bulk_load, DataDir, Options, Stack};
use pyramid::routing::Router;
use pyramid::serve::{app, Served};
use serde_json::json;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn peak_memory_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now() -> Timestamp {
    Timestamp::from_millis(chrono::Utc::now().timestamp_millis())
}

async fn bench_import(customers: usize, bulk: bool) -> anyhow::Result<()> {
    let root = std::env::temp_dir().join(format!("pyramid-bench-import-{}-{bulk}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let file = root.join("community.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
    let mut lines = 0u64;
    for item in pyramid::community::synthetic(1, customers, now()) {
        writeln!(out, "{item}")?;
        lines += 1;
    }
    out.flush()?;
    drop(out);
    let rules = Arc::new(Rules::default_rules());
    let dir = DataDir::open(&root.join("data"))?;
    let (store, _bulk_load) = embedded_store_for_bulk_load(&dir, Arc::clone(&rules)).await?;
    let memory_before = peak_memory_mib();
    let report = if bulk {
        import_into(
            &dir,
            &store,
            &_bulk_load,
            &rules,
            &[file],
            Some(Format::Jsonl),
            ImportPath::Bulk,
            LiveOptions::default(),
        )
        .await?
    } else {
        import(&store, &rules, &[file], Some(Format::Jsonl)).await?
    };
    println!(
        "import ({} path): {lines} interactions of {customers} customers in {:.1} s = {:.0} interactions/s ({} recorded, {} customers rescored); peak memory {:.0} MiB before, {:.0} MiB after",
        report.path,
        report.seconds,
        lines as f64 / report.seconds,
        report.recorded,
        report.rescored,
        memory_before,
        peak_memory_mib()
    );
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

async fn bench_serve(seconds: u64) -> anyhow::Result<()> {
    let root = std::env::temp_dir().join(format!("pyramid-bench-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = DataDir::open(&root)?;
    let rules = Arc::new(Rules::default_rules());
    let stack = Stack::start(
        &dir,
        rules,
        Router::shipped()?,
        Options {
            destinations: Default::default(),
            retry_scale: 1.0,
            source: "engagement".into(),
            scrub_retry_after: Duration::from_secs(60),
            hold_deliveries: false,
            catalog: Arc::new(engagement_sources::Catalog::builtin()),
            source_secrets: pyramid::channels::LocalSourceSecrets::default(),
        },
    )
    .await?;
    let token = dir.secret("token")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/interactions", listener.local_addr()?);
    let served = Served {
        stack: Arc::new(stack),
        token: Arc::new(token.clone()),
    };
    tokio::spawn(async move { axum::serve(listener, app(served)).await });
    let target = Target {
        client: reqwest::Client::new(),
        url,
        token,
    };
    batches_from_eight_clients(&target, seconds).await?;
    single_posts_at_500_per_second(&target, seconds).await?;
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

/// Where the serve benches post.
#[derive(Clone)]
struct Target {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl Target {
    /// Posts a body; true when it was accepted (202).
    async fn accepted(&self, body: String) -> bool {
        self.client
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 202)
    }
}

/// Batches of 100 from 8 clients, for `seconds`: the throughput.
async fn batches_from_eight_clients(target: &Target, seconds: u64) -> anyhow::Result<()> {
    let recorded = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut clients = Vec::new();
    for worker in 0..8u64 {
        let (target, recorded) = (target.clone(), Arc::clone(&recorded));
        clients.push(tokio::spawn(async move {
            let mut batch_number = 0u64;
            while Instant::now() < deadline {
                let items: Vec<_> = (0..100u64)
                    .map(|n| {
                        json!({"id": format!("b-{worker}-{batch_number}-{n}"), "source": "bench",
                               "customer": {"channel": "email", "handle": format!("c{}@example.com", fastrand::u32(..5000))},
                               "kind": "page_viewed", "occurred_at": now().to_rfc3339()})
                    })
                    .collect();
                batch_number += 1;
                if target.accepted(json!({ "interactions": items }).to_string()).await {
                    recorded.fetch_add(100, Ordering::Relaxed);
                }
            }
        }));
    }
    for client in clients {
        client.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "serve, batches of 100 from 8 clients: {:.0} interactions/s over {elapsed:.1} s",
        recorded.load(Ordering::Relaxed) as f64 / elapsed
    );
    Ok(())
}

/// Single posts at 500 per second, for `seconds`: the latency.
async fn single_posts_at_500_per_second(target: &Target, seconds: u64) -> anyhow::Result<()> {
    let mut ticks = tokio::time::interval(Duration::from_millis(2));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut n = 0u64;
    while Instant::now() < deadline {
        ticks.tick().await;
        n += 1;
        let target = target.clone();
        requests.push(tokio::spawn(async move {
            let body = json!({"id": format!("s-{n}"), "source": "bench",
                              "customer": {"channel": "email", "handle": format!("s{}@example.com", n % 20_000)},
                              "kind": "email_opened", "occurred_at": now().to_rfc3339()});
            let sent = Instant::now();
            let ok = target.accepted(body.to_string()).await;
            (sent.elapsed(), ok)
        }));
    }
    let mut latencies = Vec::new();
    let mut failed = 0;
    for request in requests {
        let (latency, ok) = request.await?;
        latencies.push(latency);
        failed += usize::from(!ok);
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "serve, single posts at 500/s: {} requests, {failed} failed, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        at(0.50),
        at(0.99),
        at(1.0)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test` builds benches and passes nothing: run small.
    let benching = std::env::args().any(|a| a == "--bench");
    let customers = env_number("PYRAMID_BENCH_CUSTOMERS", if benching { 100_000 } else { 200 }) as usize;
    let seconds = env_number("PYRAMID_BENCH_SECONDS", if benching { 10 } else { 1 });
    // The bulk path (an empty store's default), then the live path the shared adapter takes.
    bench_import(customers, true).await?;
    if std::env::var("PYRAMID_BENCH_BULK_ONLY").is_ok() {
        // The bulk figure alone (run under `/usr/bin/time -v` for the process's peak memory).
        return Ok(());
    }
    if std::env::var("PYRAMID_BENCH_SKIP_LIVE_IMPORT").is_err() {
        bench_import(customers, false).await?;
    }
    bench_serve(seconds).await?;
    Ok(())
}
