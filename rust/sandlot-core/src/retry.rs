//! Retries of API calls that failed for reasons that pass by themselves: the
//! server asking to slow down (429), being briefly unavailable (500, 503, 504),
//! or a dropped or refused connection. The server's Retry-After is honoured.
//! A call is retried for [`RETRY_BUDGET`], longer than an API server takes to
//! restart, so calls made while it restarts finish once it is back.

use std::future::Future;
use std::time::Duration;

use backon::{Backoff, Retryable};
use tokio::time::Instant;

use crate::error::api_status;

/// How long a call is retried: no try starts later than this after the
/// first. An API server restart takes tens of seconds (a static-pod restart
/// of kube-apiserver is typically 10 to 30 s), so a minute outlasts it with room.
pub(crate) const RETRY_BUDGET: Duration = Duration::from_secs(60);
/// How long the first request of a new client is retried: a server that
/// cannot be reached at all is more likely misconfigured than restarting.
const FIRST_CONTACT_BUDGET: Duration = Duration::from_secs(3);
/// Pause before the first retry when the server names none; it doubles per try.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest pause between two tries.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// Tries per call, the first included, for loops that count their tries
/// (create): as many as it takes for the pauses of [`backoff`] to add up to
/// [`RETRY_BUDGET`].
pub(crate) const ATTEMPTS: u32 = tries_covering(RETRY_BUDGET);

const fn tries_covering(budget: Duration) -> u32 {
    let (first, longest) = (FIRST_DELAY.as_millis(), MAX_DELAY.as_millis());
    let (mut tries, mut paused, mut pause) = (1, 0, first);
    while paused < budget.as_millis() {
        paused += pause;
        tries += 1;
        pause = if pause * 2 < longest {
            pause * 2
        } else {
            longest
        };
    }
    tries
}

/// True if trying the same request again may succeed.
pub(crate) fn is_transient(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => matches!(status.code, 429 | 500 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// The pauses between tries when the server names none: [`FIRST_DELAY`],
/// doubling, at most [`MAX_DELAY`], without end (a budget of time ends
/// them). Exact durations (backon's exponential builder computes them in `f32`).
fn backoff() -> impl Backoff {
    (0u32..).map(|retry| (FIRST_DELAY * 2u32.saturating_pow(retry.min(16))).min(MAX_DELAY))
}

/// The server's Retry-After, capped at [`MAX_DELAY`], if it sent one.
fn retry_after(err: &kube::Error) -> Option<Duration> {
    api_status(err)
        .and_then(|s| s.details.as_ref())
        .map(|d| d.retry_after_seconds)
        .filter(|&seconds| seconds > 0)
        .map(|seconds| Duration::from_secs(u64::from(seconds)).min(MAX_DELAY))
}

/// How long to pause before try `attempt + 1` (1-based `attempt`): the server's
/// Retry-After when it sent one, else 100 ms doubling per try.
pub(crate) fn delay(err: &kube::Error, attempt: u32) -> Duration {
    retry_after(err).unwrap_or_else(|| {
        backoff()
            .nth(attempt.saturating_sub(1) as usize)
            .unwrap_or(MAX_DELAY)
    })
}

/// Runs `call` until it succeeds, fails for a lasting reason, or
/// [`RETRY_BUDGET`] runs out, pausing as [`delay`] says. Only for calls that
/// are safe to repeat (reads, deletes, and patches that set values).
pub(crate) async fn retry<T, F, Fut>(call: F) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    retry_within(RETRY_BUDGET, call).await
}

/// [`retry`] for the first request of a new client, within [`FIRST_CONTACT_BUDGET`].
pub(crate) async fn retry_first_contact<T, F, Fut>(call: F) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    retry_within(FIRST_CONTACT_BUDGET, call).await
}

/// Retries `call` while the next try would start within `budget` of the first.
async fn retry_within<T, F, Fut>(budget: Duration, call: F) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    let started = Instant::now();
    call.retry(backoff())
        .when(is_transient)
        .adjust(move |err, pause| {
            let pause = retry_after(err).or(pause)?;
            (started.elapsed() + pause <= budget).then_some(pause)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16, retry_after: u32) -> kube::Error {
        let status: Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": code, "reason": "TooManyRequests", "message": "slow down",
            "details": {"retryAfterSeconds": retry_after},
        }))
        .unwrap();
        kube::Error::Api(status.boxed())
    }

    fn refused() -> kube::Error {
        kube::Error::Service(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        )))
    }

    #[test]
    fn transient_failures_are_told_apart() {
        for code in [429, 500, 503, 504] {
            assert!(is_transient(&api_error(code, 0)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 422] {
            assert!(!is_transient(&api_error(code, 0)), "{code}");
        }
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        assert_eq!(delay(&api_error(429, 2), 1), Duration::from_secs(2));
        assert_eq!(delay(&api_error(429, 600), 1), MAX_DELAY);
        assert_eq!(delay(&api_error(503, 0), 1), Duration::from_millis(100));
        assert_eq!(delay(&api_error(503, 0), 3), Duration::from_millis(400));
        assert_eq!(delay(&api_error(503, 0), 30), MAX_DELAY);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_or_a_lasting_failure() {
        let mut calls = 0;
        let result = retry(|| {
            calls += 1;
            let outcome = if calls < 3 {
                Err(api_error(503, 0))
            } else {
                Ok(calls)
            };
            async move { outcome }
        })
        .await;
        assert_eq!(result.unwrap(), 3);

        let mut calls = 0;
        let result: kube::Result<()> = retry(|| {
            calls += 1;
            async { Err(api_error(404, 0)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1, "a 404 is not retried");

        let mut calls = 0;
        let started = Instant::now();
        let result: kube::Result<()> = retry(|| {
            calls += 1;
            async { Err(api_error(429, 1)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 61, "a try every second of the budget, and the first");
        assert_eq!(
            started.elapsed(),
            RETRY_BUDGET,
            "the server's Retry-After between every two tries"
        );

        let mut tried_at = Vec::new();
        let started = Instant::now();
        let _: kube::Result<()> = retry(|| {
            tried_at.push(started.elapsed());
            async { Err(api_error(503, 0)) }
        })
        .await;
        let pauses: Vec<u128> = tried_at
            .windows(2)
            .map(|w| (w[1] - w[0]).as_millis())
            .collect();
        assert_eq!(
            pauses[..8],
            [100, 200, 400, 800, 1600, 3200, 5000, 5000],
            "100 ms doubling up to 5 s without a Retry-After"
        );
        let last = *tried_at.last().unwrap();
        assert!(
            last <= RETRY_BUDGET && last + MAX_DELAY > RETRY_BUDGET,
            "{last:?}"
        );
    }

    #[test]
    fn counted_tries_cover_the_budget() {
        let err = api_error(503, 0);
        let paused: Duration = (1..ATTEMPTS).map(|attempt| delay(&err, attempt)).sum();
        assert!(paused >= RETRY_BUDGET, "{paused:?}");
        assert!(
            paused - delay(&err, ATTEMPTS - 1) < RETRY_BUDGET,
            "no more than needed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_api_server_restart_of_30_seconds_is_outlasted() {
        let restarted_at = Instant::now() + Duration::from_secs(30);
        let result = retry(|| {
            let down = Instant::now() < restarted_at;
            async move { if down { Err(refused()) } else { Ok(()) } }
        })
        .await;
        assert!(result.is_ok(), "{result:?}");

        // The first request of a new client gives up within seconds.
        let started = Instant::now();
        let result: kube::Result<()> = retry_first_contact(|| async { Err(refused()) }).await;
        assert!(result.is_err());
        assert!(started.elapsed() <= FIRST_CONTACT_BUDGET);
    }
}
