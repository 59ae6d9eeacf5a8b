//! A sandbox's log: read whole or in part, or followed until the sandbox ends.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, FutureExt, Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;

use crate::client::Client;
use crate::error::{Error, Result, error_chain};
use crate::labels::CONTAINER_NAME;
use crate::retry::{delay, is_transient, retry};
use crate::status::Phase;

/// Which part of a sandbox's log to read.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Only the last this many lines.
    pub tail_lines: Option<u64>,
    /// Only lines written in the last this many seconds.
    pub since_seconds: Option<u64>,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
}

/// Lines of a log that arrived together, in order, each without its line
/// ending and as the bytes the sandbox wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogBatch {
    bytes: Vec<u8>,
    /// Where each line ends in `bytes` (the next one starts there).
    ends: Vec<usize>,
}

impl LogBatch {
    /// How many lines.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Line `index` (from 0), if there is one.
    pub fn line(&self, index: usize) -> Option<&[u8]> {
        let end = *self.ends.get(index)?;
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        Some(&self.bytes[start..end])
    }

    /// The lines in order.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.bytes[start..end])
    }

    /// How many bytes its lines take, line endings not counted.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Adds the lines of `later` after its own.
    pub fn append(&mut self, later: LogBatch) {
        if self.is_empty() {
            *self = later;
            return;
        }
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&later.bytes);
        self.ends.extend(later.ends.iter().map(|end| base + end));
    }

    fn push(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.ends.push(self.bytes.len());
    }
}

/// A log as it arrives, in batches of whole lines.
pub type LogBatches = Pin<Box<dyn Stream<Item = Result<LogBatch>> + Send>>;

/// How long a follow waits for a sandbox to start before it gives up.
const FOLLOW_START_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// How long a followed log may stay silent before the follow asks again on a
/// new connection: a connection that died without a word (a partition, a
/// peer gone) looks the same as a quiet sandbox, and only a new request tells.
pub const FOLLOW_IDLE: Duration = Duration::from_secs(30);

/// How long a follow keeps asking for the log while the API server cannot
/// be reached or answers only with errors that pass by themselves, before it
/// gives up with that error.
const RECONNECT_BUDGET: Duration = Duration::from_secs(300);

/// Pauses between two requests of a follow that brought nothing: the first,
/// doubling up to the last.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(2);

/// Once the sandbox has ended: how long after a read of the end of its log
/// that brought new lines the follow reads again (the runtime may still have
/// been copying the last output into the log), and how many such reads at most.
const SETTLE_PAUSE: Duration = Duration::from_millis(250);
const FINAL_READS: u32 = 20;

/// How many lines at the end of the log a follow asks for when it reads on
/// from its place (see [`Reading::request`]).
const REST_TAIL: i64 = 1000;

/// How long a follow that has taken everything that arrived waits before it
/// asks the connection for more. What arrives meanwhile is then read at once:
/// the kubelet sends a log a line at a time, and a reader that takes each
/// line as it lands makes the API server pass it on alone too (a write and a
/// flush per line), while one that reads every 20 ms lets it pass on many
/// lines per write. On the local cluster (a probe on this crate, medians of
/// 5 per setting, 2026-12-01) that cut the API server's CPU per 200k-line
/// follow from about 1.7 s to 1.3 s and raised the rate from about 68k to
/// 83k-89k lines/s, kubectl's 86k-90k beside it; `make bench`'s figures are
/// in benchmarks/results.md (log_follow). A line that
/// arrives alone is not delayed; one that arrives during the wait is at most
/// this much later.
const GATHER: Duration = Duration::from_millis(20);

/// Bytes of lines after which a follow hands over what it gathered even if
/// more is waiting.
const BATCH_BYTES: usize = 64 * 1024;

/// Bytes asked of the connection per read.
const READ_CHUNK: usize = 64 * 1024;

impl LogOptions {
    fn params(&self, follow: bool) -> Result<LogParams> {
        let to_i64 = |field: &str, value: u64| {
            i64::try_from(value).map_err(|_| Error::invalid(field, "is too large"))
        };
        Ok(LogParams {
            container: Some(CONTAINER_NAME.to_owned()),
            follow,
            tail_lines: self
                .tail_lines
                .map(|n| to_i64("tail_lines", n))
                .transpose()?,
            since_seconds: self
                .since_seconds
                .map(|n| to_i64("since_seconds", n))
                .transpose()?,
            timestamps: self.timestamps,
            ..LogParams::default()
        })
    }
}

type LogReader = Pin<Box<dyn AsyncBufRead + Send>>;

impl Client {
    /// The log of sandbox `name` (its command's stdout and stderr), also after
    /// it ended. Empty while the sandbox has not started. Undecodable bytes
    /// are replaced (U+FFFD); [`Client::sandbox_log_bytes`] has them as written.
    pub async fn sandbox_logs(&self, name: &str, options: &LogOptions) -> Result<String> {
        let bytes = self.sandbox_log_bytes(name, options).await?;
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned()))
    }

    /// The log of sandbox `name` as the bytes the sandbox wrote (see
    /// [`Client::sandbox_logs`] for what is read).
    pub async fn sandbox_log_bytes(&self, name: &str, options: &LogOptions) -> Result<Vec<u8>> {
        let params = options.params(false)?;
        let status = self.get_sandbox(name).await?;
        if matches!(status.phase, Phase::Queued | Phase::Creating)
            || status.started_at.is_none() && status.exit_code.is_none()
        {
            return Ok(Vec::new());
        }
        let read = || async {
            let mut log = Vec::new();
            let mut stream = self.pods().log_stream(name, &params).await?;
            stream
                .read_to_end(&mut log)
                .await
                .map_err(kube::Error::ReadEvents)?;
            Ok(log)
        };
        retry(read)
            .await
            .map_err(|err| self.sandbox_error(err, name))
    }

    /// The log of sandbox `name`, in batches of whole lines as they arrive,
    /// the last line included when it has no line ending.
    ///
    /// With `follow`, it waits for the sandbox to start, then keeps
    /// delivering lines until the sandbox has ended and its log is read to
    /// the end. A follow survives broken, ended and silent connections (it
    /// reads on from the last line it delivered, each line once) and API
    /// server outages of up to [`RECONNECT_BUDGET`]; lines that log rotation
    /// moved out of the current log file before they were read are beyond
    /// its reach.
    pub async fn stream_logs(
        &self,
        name: &str,
        options: &LogOptions,
        follow: bool,
    ) -> Result<LogBatches> {
        let params = options.params(follow)?;
        let started = [
            Phase::Running,
            Phase::Succeeded,
            Phase::Failed,
            Phase::Terminated,
        ];
        // A sandbox that has started needs no watch to wait on.
        let mut status = self.get_sandbox(name).await?;
        if follow && !started.contains(&status.phase) {
            status = self
                .wait_sandbox(name, &started, FOLLOW_START_TIMEOUT)
                .await?;
        }
        if status.started_at.is_none() && status.exit_code.is_none() {
            return Ok(Box::pin(futures::stream::empty()));
        }
        let reading = Reading {
            client: self.clone(),
            name: name.to_owned(),
            asked: params,
            place: Place::new(options.timestamps),
        };
        if follow {
            Ok(on_own_task(reading.follow(follow_idle())))
        } else {
            Ok(Box::pin(reading.once()))
        }
    }
}

/// Batches a follow's task reads ahead of its consumer at most.
const BATCHES_AHEAD: usize = 4;

/// `batches`, driven by a task of its own on the runtime (stopped when the
/// stream is dropped). A follow runs there, not on whatever polls the stream
/// (a `block_on` thread): [`arrived_now`] tells what the connection has
/// ready by giving the connection's task its turn, which only a runtime
/// worker does before coming back to the follow.
fn on_own_task(batches: impl Stream<Item = Result<LogBatch>> + Send + 'static) -> LogBatches {
    let (sender, receiver) = tokio::sync::mpsc::channel(BATCHES_AHEAD);
    let task = tokio::spawn(async move {
        let mut batches = std::pin::pin!(batches);
        while let Some(batch) = batches.next().await {
            if sender.send(batch).await.is_err() {
                return;
            }
        }
    });
    let stop = AbortOnDrop(task.abort_handle());
    Box::pin(futures::stream::unfold(
        (receiver, stop),
        |(mut receiver, stop)| async move {
            let batch = receiver.recv().await?;
            Some((batch, (receiver, stop)))
        },
    ))
}

/// Aborts a task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The silence after which follows ask again, in milliseconds, when not
/// [`FOLLOW_IDLE`].
static FOLLOW_IDLE_MS: AtomicU64 = AtomicU64::new(FOLLOW_IDLE.as_millis() as u64);

/// Sets how long a followed log may stay silent before the follow asks again
/// (default [`FOLLOW_IDLE`]), for follows started from now on in this
/// process. For tests that stage a dead connection.
#[doc(hidden)]
pub fn set_follow_idle(idle: Duration) {
    let millis = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX).max(1);
    FOLLOW_IDLE_MS.store(millis, Ordering::Relaxed);
}

fn follow_idle() -> Duration {
    Duration::from_millis(FOLLOW_IDLE_MS.load(Ordering::Relaxed))
}

/// One reading of one sandbox's log: once, or followed.
struct Reading {
    client: Client,
    name: String,
    /// The part of the log the caller asked for.
    asked: LogParams,
    place: Place,
}

/// How a request for the log came to an end.
enum Cut {
    /// The server ended the response.
    Ended,
    /// Nothing arrived for the follow's idle time.
    Silent,
    /// The connection broke.
    Broken,
    /// The end of the log that was asked for does not reach back to the
    /// follow's place: lines may be missing between them.
    Short,
}

impl Reading {
    /// The log once, as asked, in batches as it arrives.
    fn once(self) -> impl Stream<Item = Result<LogBatch>> + Send {
        async_stream::stream! {
            let mut reader = match self.open(&self.asked).await {
                Ok(reader) => reader,
                Err(err) => {
                    yield Err(err);
                    return;
                }
            };
            let mut lines = Lines::default();
            let mut buf = vec![0; READ_CHUNK];
            loop {
                let read = match reader.read(&mut buf).await {
                    Ok(read) => read,
                    Err(err) => {
                        yield Err(self.broken(&err));
                        return;
                    }
                };
                let mut batch = LogBatch::default();
                if read == 0 {
                    if let Some(last) = lines.rest() {
                        batch.push(&last);
                        yield Ok(batch);
                    }
                    return;
                }
                lines.feed(&buf[..read], |line| batch.push(line));
                if !batch.is_empty() {
                    yield Ok(batch);
                }
            }
        }
    }

    /// The follow: requests that follow the log, one after another from the
    /// last line delivered, until the sandbox has ended; then reads of the
    /// rest of the log until one brings nothing new.
    fn follow(mut self, idle: Duration) -> impl Stream<Item = Result<LogBatch>> + Send {
        async_stream::stream! {
            let mut pause = FIRST_PAUSE;
            // Whether the next request may ask for the end of the log only.
            let mut tail = true;
            loop {
                let params = self.request(true, tail);
                tail = true;
                let mut reader = match self.open(&params).await {
                    Ok(reader) => reader,
                    Err(err) => {
                        yield Err(err);
                        return;
                    }
                };
                let mut lines = Lines::default();
                let mut batch = LogBatch::default();
                let cut = loop {
                    match arrived_now(&mut reader).await {
                        Some(Ok(())) => {}
                        Some(Err(_)) => break Cut::Broken,
                        None => {
                            // Hand over what was gathered before waiting; then let
                            // what comes next gather in the connection for a moment.
                            if !batch.is_empty() {
                                yield Ok(std::mem::take(&mut batch));
                            }
                            tokio::time::sleep(GATHER).await;
                            match tokio::time::timeout(idle, reader.as_mut().fill_buf()).await {
                                Ok(Ok(_)) => {}
                                Ok(Err(_)) => break Cut::Broken,
                                Err(_) => break Cut::Silent,
                            }
                        }
                    }
                    // Ready now: what arrived, or the end.
                    let taken = match reader.as_mut().fill_buf().await {
                        Ok([]) => break Cut::Ended,
                        Ok(arrived) => {
                            let place = &mut self.place;
                            lines.feed(arrived, |line| place.deliver(line, &mut batch));
                            arrived.len()
                        }
                        Err(_) => break Cut::Broken,
                    };
                    if self.place.missed() {
                        break Cut::Short;
                    }
                    reader.as_mut().consume(taken);
                    // Only new lines: lines read again (an end of the log
                    // asked for at once after the last one) do not count.
                    if !batch.is_empty() {
                        pause = FIRST_PAUSE;
                    }
                    if batch.byte_len() >= BATCH_BYTES {
                        yield Ok(std::mem::take(&mut batch));
                    }
                };
                if !batch.is_empty() {
                    yield Ok(batch);
                }
                // A line without its ending is left to the next request.
                drop(reader);
                if let Cut::Short = cut {
                    tail = false;
                    continue;
                }
                // The kubelet ends a follow once the container has stopped, but
                // an API server going away can end it as well; and a silent
                // connection may be a quiet sandbox, a dead connection, or a
                // follow the kubelet failed to end.
                if let Cut::Ended | Cut::Silent = cut {
                    match self.workload_stopped().await {
                        Ok(true) => break,
                        Ok(false) => {}
                        Err(err @ Error::NotFound { .. }) => {
                            yield Err(err);
                            return;
                        }
                        // Not known now: the next request tells, within its budget.
                        Err(_) => {}
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
            for _ in 0..FINAL_READS {
                let batch = match self.read_rest().await {
                    Ok(batch) => batch,
                    Err(err) => {
                        yield Err(err);
                        return;
                    }
                };
                if batch.is_empty() {
                    return;
                }
                yield Ok(batch);
                tokio::time::sleep(SETTLE_PAUSE).await;
            }
        }
    }

    /// The next request for the log, with timestamps: before the first line,
    /// as the caller's options pick it; after, from the whole second of the
    /// follow's place on, and with `tail` only the last [`REST_TAIL`] lines
    /// of that (after a burst, the second can hold most of the log). The
    /// place is set to skip what it delivered already, and to tell when the
    /// end of the log asked for does not reach back to it ([`Place::missed`]).
    fn request(&mut self, follow: bool, tail: bool) -> LogParams {
        let Some(since) = self.place.since() else {
            return LogParams {
                follow,
                timestamps: true,
                ..self.asked.clone()
            };
        };
        self.place.resume(tail);
        LogParams {
            container: Some(CONTAINER_NAME.to_owned()),
            follow,
            timestamps: true,
            since_time: Some(since),
            tail_lines: tail.then_some(REST_TAIL),
            ..LogParams::default()
        }
    }

    /// The new lines of the ended sandbox's log after the follow's place,
    /// the last one also without its ending; read again while the
    /// connection breaks, within the budget. The end of the log is asked for
    /// first; the log from the place's second on only when that end does
    /// not reach back to the place.
    async fn read_rest(&mut self) -> Result<LogBatch> {
        let mut tail = true;
        loop {
            let params = self.request(false, tail);
            let log = self.read_to_end(&params).await?;
            let mut batch = LogBatch::default();
            let mut lines = Lines::default();
            let place = &mut self.place;
            lines.feed(&log, |line| place.deliver(line, &mut batch));
            if let Some(last) = lines.rest() {
                place.deliver(&last, &mut batch);
            }
            if !place.missed() {
                return Ok(batch);
            }
            tail = false;
        }
    }

    /// The whole response to a request that does not follow; asked again
    /// while the connection breaks, within the budget.
    async fn read_to_end(&self, params: &LogParams) -> Result<Vec<u8>> {
        let began = tokio::time::Instant::now();
        let mut pause = FIRST_PAUSE;
        loop {
            let mut reader = self.open(params).await?;
            let mut log = Vec::new();
            match reader.read_to_end(&mut log).await {
                Ok(_) => return Ok(log),
                Err(_) if began.elapsed() < RECONNECT_BUDGET => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(LONGEST_PAUSE);
                }
                Err(err) => return Err(self.broken(&err)),
            }
        }
    }

    /// Opens a request for the log; failures that pass by themselves are
    /// tried again for up to [`RECONNECT_BUDGET`].
    async fn open(&self, params: &LogParams) -> Result<LogReader> {
        let began = tokio::time::Instant::now();
        let mut attempt = 0;
        loop {
            match self.client.pods().log_stream(&self.name, params).await {
                Ok(reader) => return Ok(Box::pin(reader)),
                Err(err) if is_transient(&err) && began.elapsed() < RECONNECT_BUDGET => {
                    attempt += 1;
                    tokio::time::sleep(delay(&err, attempt)).await;
                }
                Err(err) => return Err(self.client.sandbox_error(err, &self.name)),
            }
        }
    }

    /// Whether the sandbox's workload has stopped for good, so its log can
    /// grow no more.
    async fn workload_stopped(&self) -> Result<bool> {
        let pod = retry(|| self.client.pods().get(&self.name))
            .await
            .map_err(|err| self.client.sandbox_error(err, &self.name))?;
        Ok(workload_stopped(&pod))
    }

    fn broken(&self, err: &std::io::Error) -> Error {
        Error::LogStream {
            name: self.name.clone(),
            message: error_chain(err),
        }
    }
}

/// True once the sandbox has ended as users see it (its phase is terminal)
/// and its workload has stopped (the pod's phase is final or its container has
/// exited), so nothing more is written to its log and a status read after the
/// follow shows the end.
fn workload_stopped(pod: &Pod) -> bool {
    if !crate::status::SandboxStatus::from_pod(pod)
        .phase
        .is_terminal()
    {
        return false;
    }
    let status = pod.status.as_ref();
    let final_phase = matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    let exited = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|all| all.iter().find(|c| c.name == CONTAINER_NAME))
        .and_then(|c| c.state.as_ref())
        .is_some_and(|state| state.terminated.is_some());
    final_phase || exited
}

/// Whether `reader` has something to hand over (a piece or its end: `Ok`,
/// left in `reader`) or has failed (the error), without waiting; `None` when
/// nothing has arrived. The connection hands a response over one piece at a
/// time and has to run to cut the next one from what it read: it gets that
/// turn first (on a runtime worker, a task that yields runs again only after
/// the tasks it woke; see [`on_own_task`]).
async fn arrived_now(reader: &mut LogReader) -> Option<std::io::Result<()>> {
    let now = |reader: &mut LogReader| {
        reader
            .as_mut()
            .fill_buf()
            .now_or_never()
            .map(|ready| ready.map(drop))
    };
    if let Some(ready) = now(reader) {
        return Some(ready);
    }
    tokio::task::yield_now().await;
    now(reader)
}

/// Cuts whole lines out of the successive chunks of one response.
#[derive(Debug, Default)]
struct Lines {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
}

impl Lines {
    /// Hands each line that `chunk` completes to `each`, without its ending.
    fn feed(&mut self, chunk: &[u8], mut each: impl FnMut(&[u8])) {
        let mut rest = chunk;
        if !self.partial.is_empty() {
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                self.partial.extend_from_slice(rest);
                return;
            };
            self.partial.extend_from_slice(&rest[..end]);
            each(&self.partial);
            self.partial.clear();
            rest = &rest[end + 1..];
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            each(&rest[..end]);
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
    }

    /// A last line without an ending, if the response left one.
    fn rest(&mut self) -> Option<Vec<u8>> {
        (!self.partial.is_empty()).then(|| std::mem::take(&mut self.partial))
    }
}

/// Where a follow is in the log: what it delivered last, so that the next
/// request can start there and skip what was delivered. Lines come with the
/// kubelet's timestamps, which are fixed-width (equal texts, equal times).
#[derive(Debug)]
struct Place {
    /// Deliver lines with their timestamps.
    keep_stamps: bool,
    /// The timestamp of the last line delivered; empty before the first.
    stamp: Vec<u8>,
    /// How many delivered lines carried exactly that timestamp.
    same: usize,
    /// While a new request reads again what was delivered: what to skip.
    skip: Option<Skip>,
    /// The request asked for the end of the log only, and its first line
    /// came after the last one delivered: lines between may be missing.
    missed: bool,
}

/// The lines a new request reads again before the first new one: it asks
/// from the second of the last delivered line (`sinceTime` has whole
/// seconds), so it skips lines up to that one's time and the `left` lines
/// carrying exactly its timestamp.
#[derive(Debug)]
struct Skip {
    stamp: Vec<u8>,
    at: Timestamp,
    left: usize,
    /// The request asks for the end of the log only: its first line must be
    /// earlier than `stamp`, or lines between may be missing from it.
    reach_back: bool,
}

impl Place {
    fn new(keep_stamps: bool) -> Self {
        Place {
            keep_stamps,
            stamp: Vec::new(),
            same: 0,
            skip: None,
            missed: false,
        }
    }

    /// Adds `line` (with its timestamp) to `batch` unless it was delivered
    /// already; adds nothing once the request [`Place::missed`] lines.
    fn deliver(&mut self, line: &[u8], batch: &mut LogBatch) {
        if self.missed {
            return;
        }
        let (stamp, text) = match line.iter().position(|&b| b == b' ') {
            Some(space) => (&line[..space], &line[space + 1..]),
            None => (line, &line[line.len()..]),
        };
        if let Some(skip) = &mut self.skip {
            if std::mem::take(&mut skip.reach_back)
                && (stamp == skip.stamp.as_slice() || later(stamp, &skip.stamp, skip.at))
            {
                self.missed = true;
                return;
            }
            if stamp == skip.stamp.as_slice() {
                skip.left = skip.left.saturating_sub(1);
                if skip.left == 0 {
                    self.skip = None;
                }
                return;
            }
            if !later(stamp, &skip.stamp, skip.at) {
                return;
            }
            // A later line: the ones delivered are behind.
            self.skip = None;
        }
        if stamp == self.stamp.as_slice() {
            self.same += 1;
        } else {
            self.stamp.clear();
            self.stamp.extend_from_slice(stamp);
            self.same = 1;
        }
        batch.push(if self.keep_stamps { line } else { text });
    }

    /// Whether the request asked for the end of the log only and it does
    /// not reach back before the last line delivered (lines of that line's
    /// timestamp may come before it, too): then it delivered nothing, and the
    /// log has to be asked for whole from [`Place::since`].
    fn missed(&self) -> bool {
        self.missed
    }

    /// Prepares for a new request, which reads from [`Place::since`]; with
    /// `tail`, only the end of the log.
    fn resume(&mut self, tail: bool) {
        self.missed = false;
        self.skip = parse_stamp(&self.stamp).map(|at| Skip {
            stamp: self.stamp.clone(),
            at,
            left: self.same,
            reach_back: tail,
        });
    }

    /// Where the next request starts: the whole second of the last line
    /// delivered (rounded down: the API server drops fractions, and kube
    /// would round them to the nearest second); `None` before the first.
    fn since(&self) -> Option<Timestamp> {
        parse_stamp(&self.stamp).and_then(|at| Timestamp::from_second(at.as_second()).ok())
    }
}

/// Whether timestamp `stamp` is later than `than` (which reads `at`): the
/// kubelet's timestamps have a fixed width, so two with the same offset
/// compare as text; others are parsed. One that does not parse counts as later.
fn later(stamp: &[u8], than: &[u8], at: Timestamp) -> bool {
    let offset = |text: &[u8]| text.iter().rposition(|&b| matches!(b, b'Z' | b'+' | b'-'));
    let comparable = stamp.len() == than.len()
        && offset(stamp)
            .is_some_and(|o| o >= 19 && stamp[o..] == than[o..] && offset(than) == Some(o));
    if comparable {
        return stamp > than;
    }
    parse_stamp(stamp).is_none_or(|parsed| parsed > at)
}

fn parse_stamp(stamp: &[u8]) -> Option<Timestamp> {
    std::str::from_utf8(stamp).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use futures::TryStreamExt;
    use http::{Request, Response};
    use http_body::Frame;
    use http_body_util::combinators::UnsyncBoxBody;
    use http_body_util::{BodyExt, StreamBody};
    use kube::client::Body;
    use serde_json::json;
    use tower_test::mock;

    use super::*;
    use crate::spec::{SandboxRequest, SandboxSpec};

    /// Sandbox pod "sb" in namespace "test": running, or `stopped` (its
    /// command exited 0).
    fn pod(stopped: bool) -> serde_json::Value {
        let spec = SandboxSpec::try_from(SandboxRequest::new("busybox:1.36")).unwrap();
        let mut pod = serde_json::to_value(spec.to_pod("sb")).unwrap();
        pod["metadata"]["namespace"] = json!("test");
        let started = "2026-01-01T00:00:00Z";
        let (phase, state) = if stopped {
            let exited =
                json!({"exitCode": 0, "startedAt": started, "finishedAt": "2026-01-01T00:00:09Z"});
            ("Succeeded", json!({"terminated": exited}))
        } else {
            ("Running", json!({"running": {"startedAt": started}}))
        };
        pod["status"] = json!({"phase": phase, "containerStatuses": [{"name": "sandbox",
            "image": "busybox:1.36", "imageID": "", "ready": !stopped, "restartCount": 0,
            "state": state}]});
        pod
    }

    /// How a scripted log response goes on after its text.
    #[derive(Clone, Copy)]
    enum End {
        /// The response ends.
        Clean,
        /// The connection breaks.
        Broken,
        /// Nothing more ever arrives, and the connection stays open.
        Silent,
    }

    /// One scripted answer to a log request: its text, how it ends, and
    /// whether the sandbox's workload has stopped once it is sent.
    struct Answer {
        text: String,
        end: End,
        stops: bool,
    }

    fn answer(lines: &[(u32, &str)], end: End, stops: bool) -> Answer {
        Answer {
            text: log(lines),
            end,
            stops,
        }
    }

    /// Log text with kubelet timestamps: second `s` of the test's minute.
    fn log(lines: &[(u32, &str)]) -> String {
        lines
            .iter()
            .map(|(s, text)| format!("{} {text}", stamp(*s)))
            .collect()
    }

    fn stamp(second: u32) -> String {
        format!("2026-01-01T00:00:{second:02}.500000000Z")
    }

    type Reply = Response<UnsyncBoxBody<Bytes, std::io::Error>>;

    /// A response that sends `text` a line at a time, all at once.
    fn reply(text: String, end: End) -> Reply {
        let pieces: Vec<_> = text
            .split_inclusive('\n')
            .map(|piece| Ok(Frame::data(Bytes::from(piece.to_owned()))))
            .collect();
        let data = futures::stream::iter(pieces);
        let rest: Pin<Box<dyn Stream<Item = std::io::Result<Frame<Bytes>>> + Send>> = match end {
            End::Clean => Box::pin(futures::stream::empty()),
            End::Broken => Box::pin(futures::stream::iter([Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset",
            ))])),
            End::Silent => Box::pin(futures::stream::pending()),
        };
        Response::new(StreamBody::new(data.chain(rest)).boxed_unsync())
    }

    /// A client whose API server has sandbox "sb" and answers its log
    /// requests with `answers` in turn; the queries of those requests are
    /// collected in the list handed back.
    fn scripted(answers: Vec<Answer>) -> (Client, Arc<Mutex<Vec<String>>>) {
        let (service, mut handle) = mock::pair::<Request<Body>, Reply>();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let seen = queries.clone();
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            let mut stopped = false;
            let mut open_watches = Vec::new();
            while let Some((request, respond)) = handle.next_request().await {
                let query = request.uri().query().unwrap_or_default().to_owned();
                let json = |value: serde_json::Value| reply(value.to_string(), End::Clean);
                let response = match request.uri().path() {
                    "/api/v1/namespaces/test/pods/sb/log" => {
                        seen.lock().unwrap().push(query.clone());
                        let Some(answer) = answers.next() else {
                            panic!("log request {query} beyond the script");
                        };
                        stopped |= answer.stops;
                        reply(answer.text, answer.end)
                    }
                    "/api/v1/namespaces/test/pods/sb" => json(pod(stopped)),
                    "/api/v1/namespaces/test/pods" if query.contains("watch=true") => {
                        open_watches.push(respond);
                        continue;
                    }
                    "/api/v1/namespaces/test/pods" => json(json!({"kind": "PodList",
                        "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                        "items": [pod(stopped)]})),
                    other => panic!("unexpected request {other}?{query}"),
                };
                respond.send_response(response);
            }
        });
        let client = Client::from_kube(kube::Client::new(service, "test"), "test".into());
        (client, queries)
    }

    /// Every line of a follow of "sb", as text; fails if it has not ended
    /// within an hour (of the test's paused clock).
    async fn follow(client: &Client, options: &LogOptions) -> Vec<String> {
        let lines = async {
            let batches: Vec<LogBatch> = client
                .stream_logs("sb", options, true)
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            batches
                .iter()
                .flat_map(|batch| {
                    batch
                        .lines()
                        .map(|l| String::from_utf8_lossy(l).into_owned())
                })
                .collect()
        };
        tokio::time::timeout(Duration::from_secs(3600), lines)
            .await
            .expect("the follow ended")
    }

    fn since(second: u32) -> String {
        format!("sinceTime=2026-01-01T00%3A00%3A{second:02}Z")
    }

    #[tokio::test(start_paused = true)]
    async fn a_log_is_read_line_by_line_including_a_last_line_without_ending() {
        let (client, _) = scripted(vec![Answer {
            text: "a\nb\nc".into(),
            end: End::Clean,
            stops: false,
        }]);
        let batches: Vec<LogBatch> = client
            .stream_logs("sb", &LogOptions::default(), false)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let lines: Vec<&[u8]> = batches.iter().flat_map(LogBatch::lines).collect();
        assert_eq!(lines, [b"a", b"b", b"c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_follow_reads_on_when_the_response_ends_while_the_sandbox_runs() {
        // An API server restart ends the response; the sandbox writes on.
        // Each end of the log asked for starts at the last line delivered, so
        // lines of its timestamp may come before it: the log is asked for from
        // that line's second.
        let (client, queries) = scripted(vec![
            answer(&[(1, "a\n")], End::Clean, false),
            answer(&[(1, "a\n"), (2, "b\n")], End::Clean, false),
            answer(&[(1, "a\n"), (2, "b\n")], End::Clean, false),
            answer(&[(2, "b\n"), (3, "c\n")], End::Clean, false),
            answer(&[(2, "b\n"), (3, "c\n")], End::Clean, true),
            answer(&[(2, "b\n"), (3, "c\n")], End::Clean, false),
        ]);
        assert_eq!(
            follow(&client, &LogOptions::default()).await,
            ["a", "b", "c"]
        );
        let queries = queries.lock().unwrap();
        let tail = "tailLines=1000";
        assert!(queries[1].contains("follow=true") && queries[1].contains(tail));
        assert!(queries[2].contains("follow=true") && queries[2].contains(&since(1)));
        assert!(!queries[2].contains(tail) && queries[4].contains(&since(2)));
        assert!(!queries[5].contains("follow") && queries[5].contains(&since(3)));
        // The end of the log reached back before the last line: no more was read.
        assert!(queries[5].contains(tail));
        assert_eq!(queries.len(), 6);
    }

    /// Lines at second 1 of the test's minute, at the given milliseconds.
    fn at_millis(lines: &[(u32, &str)]) -> String {
        lines
            .iter()
            .map(|(ms, text)| format!("2026-01-01T00:00:01.{ms:03}000000Z {text}"))
            .collect()
    }

    fn answer_text(text: String, end: End, stops: bool) -> Answer {
        Answer { text, end, stops }
    }

    #[tokio::test(start_paused = true)]
    async fn a_follow_reads_on_from_the_end_of_the_log_when_it_reaches_back() {
        // A burst: the second of the last line delivered holds the whole log.
        let (client, queries) = scripted(vec![
            answer_text(
                at_millis(&[(100, "a\n"), (200, "b\n"), (300, "c\n")]),
                End::Clean,
                false,
            ),
            answer_text(
                at_millis(&[(200, "b\n"), (300, "c\n"), (400, "d\n")]),
                End::Clean,
                true,
            ),
            answer_text(at_millis(&[(300, "c\n"), (400, "d\n")]), End::Clean, false),
        ]);
        assert_eq!(
            follow(&client, &LogOptions::default()).await,
            ["a", "b", "c", "d"]
        );
        let queries = queries.lock().unwrap();
        assert!(queries[1].contains("follow=true") && queries[1].contains(&since(1)));
        assert!(queries[1].contains("tailLines=1000"));
        assert_eq!(queries.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_follow_asks_for_the_whole_second_when_the_end_of_the_log_falls_short() {
        // More lines came meanwhile than the end of the log asked for holds.
        let (client, queries) = scripted(vec![
            answer_text(at_millis(&[(100, "a\n")]), End::Clean, false),
            answer_text(at_millis(&[(500, "x\n"), (600, "y\n")]), End::Broken, false),
            answer_text(
                at_millis(&[(100, "a\n"), (300, "b\n"), (500, "x\n"), (600, "y\n")]),
                End::Clean,
                true,
            ),
            answer_text(at_millis(&[(500, "x\n"), (600, "y\n")]), End::Clean, false),
        ]);
        assert_eq!(
            follow(&client, &LogOptions::default()).await,
            ["a", "b", "x", "y"]
        );
        let queries = queries.lock().unwrap();
        assert!(queries[1].contains("tailLines=1000"));
        assert!(queries[2].contains("follow=true") && !queries[2].contains("tailLines"));
        assert_eq!(queries.len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn lines_that_arrived_together_are_handed_over_together() {
        let texts: Vec<String> = (0..100).map(|i| format!("{i}\n")).collect();
        let lines: Vec<(u32, &str)> = texts.iter().map(|text| (1, text.as_str())).collect();
        let (client, _) = scripted(vec![
            answer(&lines, End::Clean, true),
            answer(&lines, End::Clean, false),
            answer(&lines, End::Clean, false),
        ]);
        let batches: Vec<LogBatch> = client
            .stream_logs("sb", &LogOptions::default(), true)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].len(), 100);
        assert_eq!(batches[0].line(99), Some(&b"99"[..]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_follow_reads_on_after_a_broken_connection_without_splitting_a_line() {
        let (client, _) = scripted(vec![
            answer(&[(1, "a\n"), (2, "b\n"), (3, "par")], End::Broken, false),
            // The end of the log, then the log from the second on.
            answer(
                &[(2, "b\n"), (3, "partial\n"), (4, "d\n")],
                End::Clean,
                false,
            ),
            answer(
                &[(2, "b\n"), (3, "partial\n"), (4, "d\n")],
                End::Clean,
                true,
            ),
            answer(&[(3, "partial\n"), (4, "d\n")], End::Clean, false),
        ]);
        let lines = follow(&client, &LogOptions::default()).await;
        assert_eq!(lines, ["a", "b", "partial", "d"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_given_up_and_the_log_asked_for_again() {
        let (client, queries) = scripted(vec![
            answer(&[(1, "a\n")], End::Silent, false),
            answer(&[(1, "a\n"), (2, "b\n")], End::Clean, false),
            answer(&[(1, "a\n"), (2, "b\n")], End::Clean, true),
            answer(&[(1, "a\n"), (2, "b\n")], End::Clean, false),
        ]);
        assert_eq!(follow(&client, &LogOptions::default()).await, ["a", "b"]);
        assert_eq!(queries.lock().unwrap().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_follow_of_a_stopped_sandbox_ends_with_a_last_read() {
        // The response should have ended with the workload, but stays open.
        let (client, queries) = scripted(vec![
            answer(&[(1, "a\n")], End::Silent, true),
            // The end of the log does not reach back before the last line
            // delivered, so the log is read from that line's second.
            answer(&[(1, "a\n"), (2, "b\n")], End::Clean, false),
            answer(&[(1, "a\n"), (2, "b\n")], End::Clean, false),
            answer(&[(1, "a\n"), (2, "b\n")], End::Clean, false),
        ]);
        assert_eq!(follow(&client, &LogOptions::default()).await, ["a", "b"]);
        let queries = queries.lock().unwrap();
        assert!(!queries[1].contains("follow") && queries[1].contains("tailLines=1000"));
        assert!(!queries[2].contains("tailLines") && queries[2].contains(&since(1)));
        assert!(queries[3].contains("tailLines=1000"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_tail_follow_reads_the_rest_of_the_log_once_the_sandbox_ended() {
        // The kubelet ended the follow before the runtime wrote the last lines.
        let (client, queries) = scripted(vec![
            answer(&[(2, "b\n"), (3, "par")], End::Clean, true),
            answer(
                &[(1, "a\n"), (2, "b\n"), (3, "partial\n"), (4, "d")],
                End::Clean,
                false,
            ),
            answer(&[(3, "partial\n"), (4, "d")], End::Clean, false),
        ]);
        let options = LogOptions {
            tail_lines: Some(1),
            ..LogOptions::default()
        };
        assert_eq!(follow(&client, &options).await, ["b", "partial", "d"]);
        assert!(queries.lock().unwrap()[0].contains("tailLines=1"));
    }

    #[tokio::test(start_paused = true)]
    async fn lines_of_one_timestamp_are_delivered_once_each() {
        let (client, _) = scripted(vec![
            answer(&[(1, "a\n"), (1, "b\n")], End::Broken, false),
            // Each time: the end of the log, then the log from the second on.
            answer(&[(1, "a\n"), (1, "b\n"), (1, "c\n")], End::Clean, false),
            answer(&[(1, "a\n"), (1, "b\n"), (1, "c\n")], End::Clean, true),
            answer(&[(1, "a\n"), (1, "b\n"), (1, "c\n")], End::Clean, false),
            answer(&[(1, "a\n"), (1, "b\n"), (1, "c\n")], End::Clean, false),
        ]);
        assert_eq!(
            follow(&client, &LogOptions::default()).await,
            ["a", "b", "c"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn lines_written_after_a_log_rotation_are_delivered() {
        // The log file was rotated: the last line delivered is no longer in it.
        let (client, _) = scripted(vec![
            answer(&[(1, "a\n"), (2, "b\n")], End::Clean, true),
            // The end of the log, then the log from the second on.
            answer(&[(5, "e\n"), (6, "f\n")], End::Clean, false),
            answer(&[(5, "e\n"), (6, "f\n")], End::Clean, false),
            answer(&[(5, "e\n"), (6, "f\n")], End::Clean, false),
        ]);
        assert_eq!(
            follow(&client, &LogOptions::default()).await,
            ["a", "b", "e", "f"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn timestamps_are_kept_when_asked_for() {
        let (client, _) = scripted(vec![
            answer(&[(1, "a\n")], End::Clean, true),
            answer(&[(1, "a\n")], End::Clean, false),
            answer(&[(1, "a\n")], End::Clean, false),
        ]);
        let options = LogOptions {
            timestamps: true,
            ..LogOptions::default()
        };
        assert_eq!(follow(&client, &options).await, [format!("{} a", stamp(1))]);
    }

    fn cut(text: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for piece in text.chunks(chunk) {
            lines.feed(piece, |line| out.push(line.to_vec()));
        }
        out.extend(lines.rest());
        out
    }

    #[test]
    fn lines_are_cut_whole_whatever_the_chunks() {
        let text = b"one\n\ntwo \xff\nthree";
        for chunk in 1..=text.len() {
            let lines = cut(text, chunk);
            assert_eq!(
                lines,
                [&b"one"[..], b"", b"two \xff", b"three"],
                "chunk {chunk}"
            );
        }
        assert!(cut(b"", 1).is_empty());
    }

    #[test]
    fn a_batch_hands_out_its_lines_in_order() {
        let mut batch = LogBatch::default();
        for line in [&b"a"[..], b"", b"ccc"] {
            batch.push(line);
        }
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.lines().collect::<Vec<_>>(), [&b"a"[..], b"", b"ccc"]);
        assert_eq!(batch.line(1), Some(&b""[..]));
        assert_eq!(batch.line(2), Some(&b"ccc"[..]));
        assert_eq!(batch.line(3), None);
        let mut more = LogBatch::default();
        more.push(b"dd");
        batch.append(more);
        assert_eq!(
            batch.lines().collect::<Vec<_>>(),
            [&b"a"[..], b"", b"ccc", b"dd"]
        );
        assert_eq!(batch.byte_len(), 6);
        let mut empty = LogBatch::default();
        empty.append(batch.clone());
        assert_eq!(empty, batch);
    }

    #[test]
    fn timestamps_compare_as_text_only_with_the_same_width_and_offset() {
        let than = b"2026-01-01T00:00:01.500000000Z";
        let at = parse_stamp(than).unwrap();
        assert!(later(b"2026-01-01T00:00:01.500000001Z", than, at));
        assert!(!later(b"2026-01-01T00:00:01.499999999Z", than, at));
        assert!(!later(than, than, at));
        // Another offset or width: parsed.
        assert!(later(b"2026-01-01T02:00:01.6+02:00", than, at));
        assert!(!later(b"2026-01-01T02:00:01.4+02:00", than, at));
        assert!(later(b"not a time", than, at));
    }

    #[test]
    fn the_end_of_a_log_is_used_only_when_it_reaches_back_before_the_last_line() {
        let mut place = Place::new(false);
        let mut batch = LogBatch::default();
        place.deliver(format!("{} b", stamp(2)).as_bytes(), &mut batch);
        let read = |place: &mut Place, lines: &[(u32, &str)]| {
            place.resume(true);
            let mut batch = LogBatch::default();
            for line in log(lines).lines() {
                place.deliver(line.as_bytes(), &mut batch);
            }
            let lines: Vec<_> = batch.lines().map(<[u8]>::to_vec).collect();
            (place.missed(), lines)
        };
        assert_eq!(read(&mut place, &[(1, "a\n"), (2, "b\n")]), (false, vec![]));
        // Starting at the last line: lines of its timestamp may come before.
        assert_eq!(read(&mut place, &[(2, "b\n"), (3, "c\n")]), (true, vec![]));
        // Starting after it (a rotated log file, or more lines than asked for).
        assert_eq!(read(&mut place, &[(3, "c\n")]), (true, vec![]));
        assert_eq!(read(&mut place, &[]), (false, vec![]));
        assert_eq!(
            read(&mut place, &[(1, "a\n"), (2, "b\n"), (3, "c\n")]),
            (false, vec![b"c".to_vec()])
        );
        // An unreadable timestamp counts as later.
        place.resume(true);
        place.deliver(b"garbled", &mut batch);
        assert!(place.missed());
        // Read whole, the log is not checked.
        place.resume(false);
        place.deliver(format!("{} d", stamp(4)).as_bytes(), &mut batch);
        assert!(!place.missed());
        assert_eq!(batch.lines().collect::<Vec<_>>(), [&b"b"[..], b"d"]);
    }

    #[test]
    fn a_new_request_starts_at_the_whole_second_of_the_last_line() {
        let mut place = Place::new(false);
        assert_eq!(place.since(), None);
        let mut batch = LogBatch::default();
        place.deliver(b"2026-01-01T00:00:07.999999999Z x", &mut batch);
        assert_eq!(place.since(), Some("2026-01-01T00:00:07Z".parse().unwrap()));
        // Also from a kubelet that writes its local offset.
        place.deliver(b"2026-01-01T02:00:08.1+02:00 y", &mut batch);
        assert_eq!(place.since(), Some("2026-01-01T00:00:08Z".parse().unwrap()));
        assert_eq!(batch.lines().collect::<Vec<_>>(), [&b"x"[..], b"y"]);
    }
}
