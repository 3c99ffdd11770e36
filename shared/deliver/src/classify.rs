//! What a tool's answer means for the delivery: done, never (dead letter), a revoked key, or
//! again later.

use engagement::Timestamp;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest wait between two attempts, and the longest `Retry-After` honoured (a larger one
/// is capped: SQS cannot hide a message longer than 12 hours, and a tool that asks for more
/// has a problem an operator should see in the dead letters).
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// The first backoff; doubled per attempt.
const BASE_BACKOFF: Duration = Duration::from_secs(1);
/// A 429 without a usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// The tool refused the request itself (400, 404, 409, 422, …): sending it again cannot
    /// help, so it is dead-lettered at once with the tool's answer.
    DeadLetter {
        reason: String,
    },
    /// 401/403: the key was revoked or lacks a scope. Dead-lettered, and an operator is told.
    Revoked,
    /// 429: as the tool asked (`Retry-After`), capped at [`MAX_BACKOFF`].
    RetryAfter(Duration),
    /// 5xx, 408: exponential backoff from the attempt number (add jitter where it is scheduled).
    Backoff(Duration),
}

/// The backoff before attempt `attempt + 1` (attempt 0 is the first): 1 s, 2 s, 4 s, … ≤ 10 min.
pub fn backoff(attempt: u32) -> Duration {
    BASE_BACKOFF.saturating_mul(1u32 << attempt.min(16)).min(MAX_BACKOFF)
}

/// `Retry-After` as seconds or an HTTP-date, relative to `now`.
fn retry_after_delay(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let now = UNIX_EPOCH + Duration::from_millis(u64::try_from(now.millis()).ok()?);
    // A date already past means "now"; the queue's next attempt is soon enough.
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// What `status` (with its `Retry-After`, on the `attempt`-th try, 0 first) means.
pub fn classify(status: u16, retry_after: Option<&str>, attempt: u32, now: Timestamp) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        401 | 403 => Verdict::Revoked,
        429 => Verdict::RetryAfter(
            retry_after
                .and_then(|value| retry_after_delay(value, now))
                .unwrap_or(DEFAULT_RETRY_AFTER)
                .min(MAX_BACKOFF),
        ),
        408 | 500..=599 => Verdict::Backoff(backoff(attempt)),
        _ => Verdict::DeadLetter {
            reason: format!("the tool answered {status}"),
        },
    }
}

/// Milliseconds since the epoch of a `SystemTime` (for callers holding one).
pub fn timestamp_of(time: SystemTime) -> Timestamp {
    Timestamp(
        time.duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_445_412_480_000); // Wed, 21 Oct 2015 07:28:00 GMT

    #[test]
    fn each_status_means_what_the_issue_says() {
        let table: &[(u16, Option<&str>, u32, Verdict)] = &[
            (200, None, 0, Verdict::Delivered),
            (201, None, 0, Verdict::Delivered),
            (202, None, 0, Verdict::Delivered),
            (204, None, 0, Verdict::Delivered),
            (
                400,
                None,
                0,
                Verdict::DeadLetter {
                    reason: "the tool answered 400".into(),
                },
            ),
            (
                404,
                None,
                0,
                Verdict::DeadLetter {
                    reason: "the tool answered 404".into(),
                },
            ),
            (
                409,
                None,
                0,
                Verdict::DeadLetter {
                    reason: "the tool answered 409".into(),
                },
            ),
            (
                422,
                None,
                0,
                Verdict::DeadLetter {
                    reason: "the tool answered 422".into(),
                },
            ),
            (401, None, 0, Verdict::Revoked),
            (403, None, 0, Verdict::Revoked),
            (429, Some("2"), 0, Verdict::RetryAfter(Duration::from_secs(2))),
            (429, Some(" 120 "), 3, Verdict::RetryAfter(Duration::from_secs(120))),
            (
                429,
                Some("Wed, 21 Oct 2015 07:28:05 GMT"),
                0,
                Verdict::RetryAfter(Duration::from_secs(5)),
            ),
            (429, Some("Wed, 21 Oct 2015 07:27:00 GMT"), 0, Verdict::RetryAfter(Duration::ZERO)),
            (429, Some("soon"), 0, Verdict::RetryAfter(DEFAULT_RETRY_AFTER)),
            (429, None, 0, Verdict::RetryAfter(DEFAULT_RETRY_AFTER)),
            (429, Some("86400"), 0, Verdict::RetryAfter(MAX_BACKOFF)),
            (500, None, 0, Verdict::Backoff(Duration::from_secs(1))),
            (502, None, 1, Verdict::Backoff(Duration::from_secs(2))),
            (503, Some("5"), 3, Verdict::Backoff(Duration::from_secs(8))),
            (504, None, 40, Verdict::Backoff(MAX_BACKOFF)),
            (408, None, 0, Verdict::Backoff(Duration::from_secs(1))),
        ];
        for (status, retry_after, attempt, expected) in table {
            assert_eq!(
                &classify(*status, *retry_after, *attempt, NOW),
                expected,
                "{status} {retry_after:?} #{attempt}"
            );
        }
    }
}
