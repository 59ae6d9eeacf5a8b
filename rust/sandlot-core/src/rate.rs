//! The client's own request rate, as client-go's `QPS` and `Burst` set it: a
//! token bucket that every request to the API server takes a token from (a
//! websocket upgrade for an exec and a new watch included), waiting for one
//! when the bucket is empty. A fan-out of thousands of sandboxes then paces
//! itself instead of leaning on the server's 429s.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// Requests per second a client sends at most, on average, unless told
/// otherwise: kubectl's default (client-go's own, 5, is for controllers).
pub const DEFAULT_QPS: f64 = 50.0;
/// Requests a client may send at once after a quiet spell: kubectl's default.
pub const DEFAULT_BURST: u32 = 300;

/// How fast a client may send requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestRate {
    /// Requests per second on average; `None`: no limit.
    pub qps: Option<f64>,
    /// Requests that may go at once; the bucket's size.
    pub burst: u32,
}

impl Default for RequestRate {
    fn default() -> Self {
        RequestRate {
            qps: Some(DEFAULT_QPS),
            burst: DEFAULT_BURST,
        }
    }
}

impl RequestRate {
    /// Checks the numbers: `qps` positive and finite, `burst` at least 1.
    pub fn check(&self) -> Result<()> {
        if let Some(qps) = self.qps
            && !(qps.is_finite() && qps > 0.0)
        {
            return Err(Error::invalid(
                "qps",
                format!("{qps} is not a positive number of requests per second (None: no limit)"),
            ));
        }
        if self.burst == 0 {
            return Err(Error::invalid("burst", "must be at least 1"));
        }
        Ok(())
    }

    /// The layer that paces a client's requests, if there is a limit.
    pub(crate) fn layer(&self) -> Option<RateLimitLayer> {
        self.qps.map(|qps| RateLimitLayer {
            bucket: Arc::new(Mutex::new(Bucket::new(qps, self.burst, Instant::now()))),
        })
    }
}

/// Tokens refilled at `qps` up to `burst`.
#[derive(Debug)]
struct Bucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(qps: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst);
        Bucket {
            qps,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Takes a token for a request made `now`; how long that request must
    /// wait for it. Tokens taken ahead make later requests wait longer, so
    /// waiting requests go in the order they came.
    fn reserve(&mut self, now: Instant) -> Duration {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.qps;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.qps)
        }
    }
}

/// A tower layer pacing requests by one shared [`Bucket`].
#[derive(Debug, Clone)]
pub(crate) struct RateLimitLayer {
    bucket: Arc<Mutex<Bucket>>,
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited {
            inner,
            bucket: self.bucket.clone(),
        }
    }
}

/// A service whose requests wait for a token first.
#[derive(Debug, Clone)]
pub(crate) struct RateLimited<S> {
    inner: S,
    bucket: Arc<Mutex<Bucket>>,
}

impl<S, R> tower::Service<R> for RateLimited<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let wait = self
            .bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reserve(Instant::now());
        let sent = self.inner.call(request);
        Box::pin(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            sent.await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_and_the_rest_at_the_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(10.0, 3, start);
        let waits: Vec<Duration> = (0..5).map(|_| bucket.reserve(start)).collect();
        assert_eq!(&waits[..3], &[Duration::ZERO; 3]);
        assert_eq!(waits[3], Duration::from_millis(100));
        assert_eq!(waits[4], Duration::from_millis(200));
        // A second later the debt is paid and 8 tokens are back.
        let later = start + Duration::from_secs(1);
        assert_eq!(bucket.reserve(later), Duration::ZERO);
        // A long quiet spell refills to the burst, no further.
        let quiet = later + Duration::from_secs(3600);
        let waits: Vec<Duration> = (0..4).map(|_| bucket.reserve(quiet)).collect();
        assert_eq!(&waits[..3], &[Duration::ZERO; 3]);
        assert_eq!(waits[3], Duration::from_millis(100));
    }

    #[test]
    fn rates_that_cannot_be_kept_are_refused_naming_the_setting() {
        assert!(RequestRate::default().check().is_ok());
        let unlimited = RequestRate {
            qps: None,
            burst: 1,
        };
        assert!(unlimited.check().is_ok() && unlimited.layer().is_none());
        for qps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let rate = RequestRate {
                qps: Some(qps),
                burst: 10,
            };
            assert!(
                matches!(rate.check(), Err(Error::InvalidSpec { ref field, .. }) if field == "qps"),
                "{qps}"
            );
        }
        let rate = RequestRate {
            qps: Some(5.0),
            burst: 0,
        };
        assert!(
            matches!(rate.check(), Err(Error::InvalidSpec { ref field, .. }) if field == "burst")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requests_past_the_burst_wait_for_their_token() {
        use tower::{Layer, Service, ServiceExt};
        let rate = RequestRate {
            qps: Some(100.0),
            burst: 2,
        };
        let mut service = rate
            .layer()
            .unwrap()
            .layer(tower::service_fn(|_: ()| async {
                Ok::<_, ()>(Instant::now())
            }));
        let start = Instant::now();
        let mut answered = Vec::new();
        for _ in 0..4 {
            answered.push(service.ready().await.unwrap().call(()).await.unwrap() - start);
        }
        assert_eq!(answered[0], Duration::ZERO);
        assert_eq!(answered[1], Duration::ZERO);
        assert!(answered[2] >= Duration::from_millis(10), "{answered:?}");
        assert!(answered[3] >= Duration::from_millis(20), "{answered:?}");
    }
}
