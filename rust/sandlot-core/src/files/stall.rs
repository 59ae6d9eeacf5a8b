//! The idle bound of a file run: code in a sandbox can stop the agent's file
//! process (it runs as the sandbox's user), and a call waiting on it would
//! then wait forever. Every wait on the agent (a read of its output, a write
//! to its input, its exit) fails once it has lasted the bound (the exit of
//! an operation that is silent until it ends: several times the bound).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::time::Sleep;

/// How long one wait on a file run's agent may last by default.
pub const FILE_IDLE: Duration = Duration::from_secs(120);

static FILE_IDLE_MS: AtomicU64 = AtomicU64::new(FILE_IDLE.as_millis() as u64);

/// Sets how long one wait on a file run's agent may last (default
/// [`FILE_IDLE`]), for runs started from now on in this process. For tests
/// that stop an agent.
#[doc(hidden)]
pub fn set_file_idle(idle: Duration) {
    let millis = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX).max(1);
    FILE_IDLE_MS.store(millis, Ordering::Relaxed);
}

/// Whether one of a run's waits outlasted its bound, shared by its streams.
#[derive(Debug, Clone)]
pub(super) struct Stall {
    idle: Duration,
    /// How long the wait for the run's exit may last: `idle`, or longer for
    /// an operation that works without a word until it ends.
    exit_idle: Duration,
    happened: Arc<AtomicBool>,
}

/// How many times the idle bound an operation that is silent until it ends
/// (a recursive remove of a large tree) may take.
const SILENT_WORK_FACTOR: u32 = 15;

impl Stall {
    pub(super) fn new() -> Self {
        let idle = Duration::from_millis(FILE_IDLE_MS.load(Ordering::Relaxed));
        Stall {
            idle,
            exit_idle: idle,
            happened: Arc::default(),
        }
    }

    /// How long one wait may last.
    pub(super) fn idle(&self) -> Duration {
        self.idle
    }

    /// How long the wait for the run's exit may last.
    pub(super) fn exit_idle(&self) -> Duration {
        self.exit_idle
    }

    /// Lets the run work silently until its exit for longer (a recursive
    /// remove says nothing until it is done).
    pub(super) fn allow_silent_work(&mut self) {
        self.exit_idle = self.idle * SILENT_WORK_FACTOR;
    }

    pub(super) fn happened(&self) -> bool {
        self.happened.load(Ordering::Relaxed)
    }

    pub(super) fn mark(&self) {
        self.happened.store(true, Ordering::Relaxed);
    }

    /// `stream`, failing with [`io::ErrorKind::TimedOut`] (and marking the
    /// stall) once a wait on it lasts the bound.
    pub(super) fn guard(&self, stream: DuplexStream) -> Stalling {
        Stalling {
            inner: stream,
            stall: self.clone(),
            clock: None,
        }
    }
}

/// A stream to or from a file run's agent under its idle bound. The clock
/// starts when a read or write has to wait and stops when it gets its
/// answer; time the caller spends away from the stream does not count once
/// it restarts the clock before a new wait ([`Stalling::restart_clock`]).
#[derive(Debug)]
pub(super) struct Stalling {
    inner: DuplexStream,
    stall: Stall,
    clock: Option<Pin<Box<Sleep>>>,
}

impl Stalling {
    /// Forgets a wait that was given up on, so the next one has the whole bound.
    pub(super) fn restart_clock(&mut self) {
        self.clock = None;
    }

    /// After the stream answered `answer`: stops the clock, or, while it
    /// waits, runs it and turns its end into an error.
    fn timed<T>(
        &mut self,
        cx: &mut Context<'_>,
        answer: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if answer.is_ready() {
            self.clock = None;
            return answer;
        }
        let idle = self.stall.idle;
        let clock = self
            .clock
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        ready!(clock.as_mut().poll(cx));
        self.stall.mark();
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the agent made no progress",
        )))
    }
}

impl AsyncRead for Stalling {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let answer = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.timed(cx, answer)
    }
}

impl AsyncWrite for Stalling {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let answer = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.timed(cx, answer)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let answer = Pin::new(&mut this.inner).poll_flush(cx);
        this.timed(cx, answer)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let answer = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.timed(cx, answer)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn stall(idle_ms: u64) -> Stall {
        Stall {
            idle: Duration::from_millis(idle_ms),
            exit_idle: Duration::from_millis(idle_ms),
            happened: Arc::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_waits_past_the_bound_fails_and_marks_the_stall() {
        let stall = stall(500);
        let (_agent, ours) = tokio::io::duplex(64);
        let mut stream = stall.guard(ours);
        let err = stream.read_u8().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(stall.happened());
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_into_a_full_pipe_fails_at_the_bound() {
        let stall = stall(500);
        let (_agent, ours) = tokio::io::duplex(4);
        let mut stream = stall.guard(ours);
        let err = stream.write_all(b"more than four").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(stall.happened());
    }

    #[tokio::test(start_paused = true)]
    async fn answers_within_the_bound_keep_the_stream_going() {
        let stall = stall(500);
        let (mut agent, ours) = tokio::io::duplex(64);
        let mut stream = stall.guard(ours);
        let feeder = tokio::spawn(async move {
            for byte in 0..5u8 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                agent.write_all(&[byte]).await.unwrap();
            }
        });
        // Five waits of 400 ms each: 2 s in all, none of them past the bound.
        for byte in 0..5u8 {
            assert_eq!(stream.read_u8().await.unwrap(), byte);
        }
        feeder.await.unwrap();
        assert!(!stall.happened());
    }

    #[tokio::test(start_paused = true)]
    async fn time_away_from_a_restarted_stream_does_not_count() {
        let stall = stall(500);
        let (mut agent, ours) = tokio::io::duplex(64);
        let mut stream = stall.guard(ours);
        // A wait given up after 400 ms (the caller's own timeout) ...
        let mut byte = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(400), stream.read_exact(&mut byte))
                .await
                .is_err()
        );
        // ... then the caller is away for a long time.
        tokio::time::sleep(Duration::from_secs(10)).await;
        stream.restart_clock();
        let feeder = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            agent.write_all(b"x").await.unwrap();
        });
        assert_eq!(stream.read_u8().await.unwrap(), b'x');
        feeder.await.unwrap();
        assert!(!stall.happened());
    }
}
