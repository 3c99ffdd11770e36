//! Backoff with full jitter for throttling and transaction conflicts.

use std::time::Duration;

/// Attempts before a conflict or throttle surfaces as an error.
pub const MAX_ATTEMPTS: u32 = 10;

/// Sleeps a random time up to `min(10 ms × 2^attempt, 1 s)` (full jitter: concurrent writers
/// that collided do not collide again in lockstep).
pub async fn backoff(attempt: u32) {
    let cap_ms = (10u64 << attempt.min(7)).min(1_000);
    tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=cap_ms))).await;
}
