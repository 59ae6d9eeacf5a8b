//! Retries of API calls that failed for reasons that pass by themselves: the
//! server asking to slow down (429), being briefly unavailable (500, 503, 504),
//! or a dropped connection. The server's Retry-After is honoured.

use std::future::Future;
use std::time::Duration;

use crate::error::api_status;

/// Tries per call, the first included.
pub(crate) const ATTEMPTS: u32 = 6;
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

/// How long to pause before try `attempt + 1` (1-based `attempt`): the server's
/// Retry-After when it sent one, else 100 ms doubling per try.
pub(crate) fn delay(err: &kube::Error, attempt: u32) -> Duration {
    let retry_after = api_status(err)
        .and_then(|s| s.details.as_ref())
        .map(|d| d.retry_after_seconds)
        .filter(|&seconds| seconds > 0);
    match retry_after {
        Some(seconds) => Duration::from_secs(u64::from(seconds)).min(MAX_DELAY),
        None => (Duration::from_millis(100) * 2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(MAX_DELAY),
    }
}

/// Runs `call` until it succeeds, fails for a lasting reason, or [`ATTEMPTS`] run out.
/// Only for calls that are safe to repeat (reads, deletes, and patches that set values).
pub(crate) async fn retry<T, F, Fut>(mut call: F) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(err) if attempt < ATTEMPTS && is_transient(&err) => {
                tokio::time::sleep(delay(&err, attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
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
        let result: kube::Result<()> = retry(|| {
            calls += 1;
            async { Err(api_error(429, 1)) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, ATTEMPTS);
    }
}
