//! Retries of API calls that failed for reasons that pass by themselves: the
//! server asking to slow down (429), being briefly unavailable (500, 503, 504),
//! or a dropped or refused connection. The server's Retry-After is honoured,
//! from the answer's `Status` or, where kube-apiserver sends it only as a
//! header (its own throttling), from the header (see [`status_with_retry_after`]).
//! A call is retried for [`RETRY_BUDGET`], longer than an API server takes to
//! restart, so calls made while it restarts finish once it is back.

use std::future::Future;
use std::time::Duration;

use backon::{Backoff, Retryable};
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use kube::core::Status;
use kube::core::response::StatusDetails;
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
/// Longest pause between two tries, before [`spread`] (the server's
/// Retry-After is capped to it too).
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

/// Most bytes of an error answer [`status_with_retry_after`] reads
/// (kube-apiserver's own throttling answers are one line of text).
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// A response's body: the server's as it came, or the one
/// [`status_with_retry_after`] wrote.
pub(crate) type ResponseBody<B> = Either<B, Full<Bytes>>;

/// Puts a throttling answer's `Retry-After` header where [`delay`] reads it.
/// kube makes an error answer's `Status` from its body alone, and
/// kube-apiserver's own 429s (API Priority and Fairness, the in-flight
/// limits) are plain text with the pause only in that header. So a 429 or
/// 503 with a `Retry-After` of whole seconds, whose body names no
/// `retryAfterSeconds`, gets as its body the `Status` it means (its own, if
/// it was one) with the header's pause. Every other response passes as it is.
pub(crate) async fn status_with_retry_after<B>(
    res: http::Response<B>,
) -> Result<http::Response<ResponseBody<B>>, tower::BoxError>
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<tower::BoxError>,
{
    let code = res.status().as_u16();
    let header_seconds = res
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u32>().ok())
        .filter(|&seconds| seconds > 0 && matches!(code, 429 | 503));
    let Some(seconds) = header_seconds else {
        return Ok(res.map(Either::Left));
    };
    let (mut parts, body) = res.into_parts();
    let bytes = Limited::new(body, ERROR_BODY_LIMIT)
        .collect()
        .await?
        .to_bytes();
    let mut status = serde_json::from_slice::<Status>(&bytes).unwrap_or_else(|_| {
        let reason = if code == 429 {
            "TooManyRequests"
        } else {
            "ServiceUnavailable"
        };
        Status::failure(String::from_utf8_lossy(&bytes).trim(), reason).with_code(code)
    });
    // Any JSON object reads as a Status; one that names no code gets the answer's.
    if status.code == 0 {
        status.code = code;
    }
    let details = status.details.get_or_insert_with(|| StatusDetails {
        name: String::new(),
        group: String::new(),
        kind: String::new(),
        uid: String::new(),
        causes: Vec::new(),
        retry_after_seconds: 0,
    });
    if details.retry_after_seconds == 0 {
        details.retry_after_seconds = seconds;
    }
    parts.headers.remove(http::header::CONTENT_LENGTH);
    parts.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let body = Full::new(Bytes::from(serde_json::to_vec(&status)?));
    Ok(http::Response::from_parts(parts, Either::Right(body)))
}

/// How long to pause before try `attempt + 1` (1-based `attempt`): the server's
/// Retry-After when it sent one, else 100 ms doubling per try; before [`spread`].
fn base_delay(err: &kube::Error, attempt: u32) -> Duration {
    retry_after(err).unwrap_or_else(|| {
        backoff()
            .nth(attempt.saturating_sub(1) as usize)
            .unwrap_or(MAX_DELAY)
    })
}

/// How long to pause before try `attempt + 1` (1-based `attempt`): the server's
/// Retry-After when it sent one, else 100 ms doubling per try, and a random
/// share of up to half of that more ([`spread`]).
pub(crate) fn delay(err: &kube::Error, attempt: u32) -> Duration {
    spread(base_delay(err, attempt))
}

/// `pause` and a random share of up to half of it more. Requests refused
/// together (a burst the server throttled at once) then come back spread
/// over that extra, not all at the same instant to be refused together
/// again, and never sooner than the server asked (up to [`MAX_DELAY`]).
fn spread(pause: Duration) -> Duration {
    pause + pause.mul_f64(rand::random::<f64>() / 2.0)
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
            let pause = spread(retry_after(err).or(pause)?);
            (started.elapsed() + pause <= budget).then_some(pause)
        })
        .await
}

/// The tries of a call that loops by itself, where [`retry`] cannot wrap it
/// (a create that must tell a lost answer from a conflict, an exec
/// connection): it pauses as [`delay`] says, within [`RETRY_BUDGET`] of its
/// first try, as [`retry`] does.
#[derive(Debug)]
pub(crate) struct Tries {
    started: Instant,
    failures: u32,
}

impl Tries {
    /// The first try starts now.
    pub(crate) fn start() -> Tries {
        Tries {
            started: Instant::now(),
            failures: 0,
        }
    }

    /// Counts a transient failure, `err`: the pause before the next try, or
    /// `None` if that try would start past the budget.
    pub(crate) fn pause_after(&mut self, err: &kube::Error) -> Option<Duration> {
        self.failures += 1;
        let pause = delay(err, self.failures);
        (self.started.elapsed() + pause <= RETRY_BUDGET).then_some(pause)
    }

    /// How many tries have failed so far.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
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

    /// Whether `pause` is `base` spread: at least it, less than half again.
    /// (Under paused time tokio rounds a sleep up to a whole millisecond.)
    fn spread_from(pause: Duration, base: Duration) -> bool {
        base <= pause && pause <= base.mul_f64(1.5) + Duration::from_millis(1)
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        for _ in 0..100 {
            for (err, attempt, base) in [
                (api_error(429, 2), 1, Duration::from_secs(2)),
                (api_error(429, 600), 1, MAX_DELAY),
                (api_error(503, 0), 1, Duration::from_millis(100)),
                (api_error(503, 0), 3, Duration::from_millis(400)),
                (api_error(503, 0), 30, MAX_DELAY),
            ] {
                assert_eq!(base_delay(&err, attempt), base);
                let pause = delay(&err, attempt);
                assert!(spread_from(pause, base), "{pause:?} from {base:?}");
            }
        }
    }

    #[test]
    fn pauses_are_spread_so_a_burst_refused_at_once_does_not_return_at_once() {
        let pauses: std::collections::BTreeSet<Duration> =
            (0..100).map(|_| delay(&api_error(429, 1), 1)).collect();
        assert!(pauses.len() > 50, "{} distinct pauses of 100", pauses.len());
        let (first, last) = (*pauses.first().unwrap(), *pauses.last().unwrap());
        assert!(
            last - first > Duration::from_millis(250),
            "spread over {:?}",
            last - first
        );
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
        assert!(
            (41..61).contains(&calls),
            "a try every 1 to 1.5 s of the budget (spread: not every 1 s), and the first: {calls}"
        );
        assert!(started.elapsed() <= RETRY_BUDGET);
        assert!(
            started.elapsed() >= Duration::from_secs(u64::try_from(calls - 1).unwrap()),
            "at least the server's Retry-After between every two tries"
        );

        let mut tried_at = Vec::new();
        let started = Instant::now();
        let _: kube::Result<()> = retry(|| {
            tried_at.push(started.elapsed());
            async { Err(api_error(503, 0)) }
        })
        .await;
        let pauses: Vec<Duration> = tried_at.windows(2).map(|w| w[1] - w[0]).collect();
        for (pause, base_ms) in pauses
            .iter()
            .zip([100, 200, 400, 800, 1600, 3200, 5000, 5000])
        {
            assert!(
                spread_from(*pause, Duration::from_millis(base_ms)),
                "100 ms doubling up to 5 s without a Retry-After, spread: {pauses:?}"
            );
        }
        assert!(
            pauses
                .iter()
                .zip([100, 200, 400, 800, 1600, 3200, 5000, 5000])
                .any(|(pause, base_ms)| *pause > Duration::from_millis(base_ms + 2)),
            "spread, not the bare backoff: {pauses:?}"
        );
        let last = *tried_at.last().unwrap();
        assert!(
            last <= RETRY_BUDGET && last + MAX_DELAY.mul_f64(1.5) > RETRY_BUDGET,
            "{last:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_counts_its_tries_keeps_trying_for_the_budget() {
        // The server asks for a second's pause each time (APF's own 429s
        // start there): the tries go on for the whole budget, not for a count.
        let err = api_error(429, 1);
        let mut tries = Tries::start();
        let mut last = Duration::ZERO;
        while let Some(pause) = tries.pause_after(&err) {
            assert!(spread_from(pause, Duration::from_secs(1)), "{pause:?}");
            tokio::time::sleep(pause).await;
            last = tries.started.elapsed();
        }
        assert!(
            last <= RETRY_BUDGET && last + Duration::from_millis(1500) > RETRY_BUDGET,
            "{last:?}"
        );
        assert!(tries.failures() > 40, "{}", tries.failures());
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

    /// A kube client whose every request is answered by `answer`, through the
    /// rewrite of throttling answers the real client has.
    fn client_answering(
        answer: impl Fn() -> http::Response<Full<Bytes>> + Clone + Send + 'static,
    ) -> kube::Client {
        let service = tower::ServiceBuilder::new()
            .and_then(status_with_retry_after)
            .service(tower::service_fn(
                move |_: http::Request<kube::client::Body>| {
                    let answer = answer.clone();
                    async move { Ok::<_, tower::BoxError>(answer()) }
                },
            ));
        kube::Client::new(service, "default")
    }

    fn answer(code: u16, headers: &[(&str, &str)], body: &str) -> http::Response<Full<Bytes>> {
        let mut builder = http::Response::builder().status(code);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap()
    }

    async fn error_of(client: kube::Client) -> kube::Error {
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::default_namespaced(client);
        pods.get("p").await.expect_err("the answer is an error")
    }

    #[tokio::test]
    async fn the_api_servers_own_throttling_answer_is_paused_for_as_its_header_says() {
        // What kube-apiserver's API Priority and Fairness sends.
        let client = client_answering(|| {
            answer(
                429,
                &[
                    ("Retry-After", "3"),
                    ("Content-Type", "text/plain; charset=utf-8"),
                ],
                "Too many requests, please try again later.\n",
            )
        });
        let err = error_of(client).await;
        let status = api_status(&err).expect("a Status");
        assert_eq!(status.code, 429);
        assert_eq!(status.reason, "TooManyRequests");
        assert_eq!(status.message, "Too many requests, please try again later.");
        assert!(is_transient(&err));
        assert_eq!(base_delay(&err, 1), Duration::from_secs(3));
    }

    #[tokio::test]
    async fn a_status_that_names_its_pause_keeps_it_and_other_answers_pass_as_they_are() {
        let named = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":429,
            "reason":"TooManyRequests","message":"slow down","details":{"retryAfterSeconds":2}}"#;
        let err = error_of(client_answering(move || {
            answer(429, &[("Retry-After", "5")], named)
        }))
        .await;
        assert_eq!(base_delay(&err, 1), Duration::from_secs(2));
        assert_eq!(api_status(&err).unwrap().message, "slow down");

        // A Status without a pause gets the header's.
        let unnamed = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":503,
            "reason":"ServiceUnavailable","message":"shutting down"}"#;
        let err = error_of(client_answering(move || {
            answer(503, &[("Retry-After", "4")], unnamed)
        }))
        .await;
        assert_eq!(base_delay(&err, 1), Duration::from_secs(4));
        assert_eq!(api_status(&err).unwrap().message, "shutting down");

        // No header, a header that is not whole seconds, or a code that is
        // not throttling: as kube reads them itself.
        for (code, headers) in [
            (429, vec![]),
            (429, vec![("Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT")]),
            (404, vec![("Retry-After", "3")]),
        ] {
            let err = error_of(client_answering(move || answer(code, &headers, "plain"))).await;
            let status = api_status(&err).unwrap();
            assert_eq!((status.code, status.details.as_ref()), (code, None));
            assert_eq!(status.message, "plain");
        }

        // A success is not touched.
        let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}"#;
        let client = client_answering(move || answer(200, &[("Retry-After", "3")], pod));
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::default_namespaced(client);
        assert_eq!(
            pods.get("p").await.unwrap().metadata.name.as_deref(),
            Some("p")
        );
    }
}
