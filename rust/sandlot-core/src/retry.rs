//! Retries of API calls that failed for reasons that pass by themselves: the
//! server asking to slow down (429), being briefly unavailable (500, 503, 504),
//! or a dropped connection. The server's Retry-After is honoured.

use std::future::Future;
use std::time::Duration;

use backon::{Backoff, Retryable};

use crate::error::api_status;

/// Tries per call, the first included.
pub(crate) const ATTEMPTS: u32 = 6;
/// Pause before the first retry when the server names none; it doubles per try.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest pause between two tries.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// True if trying the same request again may succeed.
pub(crate) fn is_transient(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => matches!(status.code, 429 | 500 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// The pauses between tries when the server names none: [`FIRST_DELAY`],
/// doubling, at most [`MAX_DELAY`]; one fewer than [`ATTEMPTS`]. Exact
/// durations (backon's exponential builder computes them in `f32`).
fn backoff() -> impl Backoff {
    (0..ATTEMPTS - 1).map(|retry| (FIRST_DELAY * 2u32.saturating_pow(retry)).min(MAX_DELAY))
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

/// Runs `call` until it succeeds, fails for a lasting reason, or [`ATTEMPTS`] run out,
/// pausing as [`delay`] says. Only for calls that are safe to repeat (reads,
/// deletes, and patches that set values).
pub(crate) async fn retry<T, F, Fut>(call: F) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    call.retry(backoff())
        .when(is_transient)
        .adjust(|err, pause| pause.map(|pause| retry_after(err).unwrap_or(pause)))
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
        let started = tokio::time::Instant::now();
        let result: kube::Result<()> = retry(|| {
            calls += 1;
            async { Err(api_error(429, 1)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, ATTEMPTS);
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(u64::from(ATTEMPTS - 1)),
            "the server's Retry-After between every two tries"
        );

        let started = tokio::time::Instant::now();
        let _: kube::Result<()> = retry(|| async { Err(api_error(503, 0)) }).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(100 + 200 + 400 + 800 + 1600),
            "100 ms doubling without a Retry-After"
        );
    }
}
