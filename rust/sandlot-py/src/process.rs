//! Streaming objects: a spawned command (`AsyncProcess` / `Process`) whose
//! streams Python reads and writes, `ByteStream` (its stdout or stderr) and
//! `LineStream` (log lines). The streams iterate both ways: `async for` and
//! `for`.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{StreamExt, TryFutureExt};
use pyo3::exceptions::PyBrokenPipeError;
use pyo3::prelude::*;
use pyo3::types::{PyAny, PyBytes, PyString};
use sandlot_core::{Error, ExecKiller, ExecProcess, LogBatch, LogBatches};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::Notify;

use crate::bridge::{Failure, Mode, NONE, Outcome};
use crate::errors::core_error;
use crate::inputs;
use crate::twins::twins;

/// Largest chunk one read of a stream returns.
const CHUNK: usize = 64 * 1024;

/// Bytes of log lines read ahead of Python at most: the reading goes on on
/// the runtime while Python takes lines that are already there, without a
/// trip to the runtime, and pauses while this much waits.
const READ_AHEAD: usize = 1 << 20;

/// When Python had to wait for a line, how long it waits on for more lines to
/// bring back in the same trip (a line arriving alone is this much later).
const LINE_BATCH_WINDOW: Duration = Duration::from_millis(2);

type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// The exit code, or the message of the exec error.
type ExitCode = Shared<BoxFuture<'static, Result<i32, String>>>;

/// The connection of a spawned command, shared by the process object and its
/// streams: it stays open while any of them is in use, and `close()` ends it
/// for all (readers then see the end of their stream).
struct Connection {
    /// Owns the exec's websocket task; `None` once closed.
    exit: Mutex<Option<ExitCode>>,
    closed: tokio::sync::watch::Sender<bool>,
}

impl Connection {
    fn close(&self) {
        self.exit.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.closed.send_replace(true);
    }

    /// Resolves once `close()` was called.
    async fn wait_closed(&self) {
        let mut closed = self.closed.subscribe();
        let _ = closed.wait_for(|closed| *closed).await;
    }
}

/// The bytes a command writes to stdout or stderr, as they arrive: `async
/// for chunk in process.stdout` (async process) or `for chunk in
/// process.stdout` (sync process).
#[pyclass(module = "sandlot", frozen)]
pub struct ByteStream {
    shared: Arc<SharedStream>,
    connection: Arc<Connection>,
}

/// One output stream of a command, shared by every `ByteStream` object made
/// of it and the process's `read_stdout`/`read_stderr`.
struct SharedStream {
    /// `None` once the stream ended.
    reader: tokio::sync::Mutex<Option<Reader>>,
    /// A chunk read and not taken yet (its call was cancelled before it took
    /// it): handed out next, so no byte is lost.
    arrived: Mutex<Option<Vec<u8>>>,
}

impl SharedStream {
    fn new(reader: Option<Reader>) -> Arc<Self> {
        Arc::new(SharedStream {
            reader: tokio::sync::Mutex::new(reader),
            arrived: Mutex::default(),
        })
    }

    /// The chunk read ahead, if there is one.
    fn take_arrived(&self) -> Option<Vec<u8>> {
        self.arrived
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Reads the next chunk (at most [`CHUNK`] bytes) into `arrived`, unless
    /// one is there already; `false` once the stream ended or the
    /// connection was closed.
    async fn arrive(&self, connection: &Connection) -> Outcome<bool> {
        let mut guard = self.reader.lock().await;
        if self
            .arrived
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return Ok(true);
        }
        let Some(stream) = guard.as_mut() else {
            return Ok(false);
        };
        let mut buf = vec![0; CHUNK];
        let read = tokio::select! {
            read = stream.read(&mut buf) => read.map_err(Failure::Broken)?,
            () = connection.wait_closed() => 0,
        };
        if read == 0 {
            *guard = None;
            return Ok(false);
        }
        buf.truncate(read);
        *self.arrived.lock().unwrap_or_else(|p| p.into_inner()) = Some(buf);
        Ok(true)
    }
}

impl std::fmt::Debug for ByteStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ByteStream")
    }
}

impl ByteStream {
    /// The next chunk; [`Failure::End`] once the stream ended or the
    /// connection was closed. An async call waits in
    /// `sandlot._streams.next_chunk` and takes the chunk on the event loop's
    /// thread after its wait, so a call cancelled before it returned takes
    /// none.
    fn next_chunk<'py>(slf: &Bound<'py, Self>, mode: Mode) -> PyResult<Bound<'py, PyAny>> {
        let (py, this) = (slf.py(), slf.get());
        if let Some(chunk) = this.shared.take_arrived() {
            return mode.ready(py, Ok(Bytes(chunk)));
        }
        if mode == Mode::Async {
            return py
                .import(pyo3::intern!(py, "sandlot._streams"))?
                .getattr(pyo3::intern!(py, "next_chunk"))?
                .call1((slf,));
        }
        let (shared, connection) = (this.shared.clone(), this.connection.clone());
        mode.run(py, async move {
            while shared.arrive(&connection).await? {
                if let Some(chunk) = shared.take_arrived() {
                    return Ok(Bytes(chunk));
                }
            }
            Err(Failure::End)
        })
    }
}

#[pymethods]
impl ByteStream {
    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Awaits the next chunk (at most 64 KiB); ends when the stream does.
    fn __anext__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::next_chunk(slf, Mode::Async)
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Waits for the next chunk (at most 64 KiB); ends when the stream does.
    fn __next__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::next_chunk(slf, Mode::Blocking)
    }

    /// The chunk read ahead if there is one, else `None`; raises
    /// `StopAsyncIteration` once the stream ended.
    fn _chunk_now(&self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        if let Some(chunk) = self.shared.take_arrived() {
            return Ok(Some(PyBytes::new(py, &chunk).unbind()));
        }
        let ended = self
            .shared
            .reader
            .try_lock()
            .is_ok_and(|reader| reader.is_none());
        if ended {
            return Err(Failure::End.into_pyerr(py, Mode::Async));
        }
        Ok(None)
    }

    /// Awaits a chunk read ahead, or the end (see
    /// `sandlot._streams.next_chunk`).
    fn _arrival<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (shared, connection) = (self.shared.clone(), self.connection.clone());
        Mode::Async.run(py, async move {
            shared.arrive(&connection).await?;
            Ok(NONE)
        })
    }

    /// Awaits everything left in the stream, until it ends (a sync process
    /// has `read_stdout()` and `read_stderr()`).
    fn read_all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        read_all(py, Mode::Async, &self.shared, &self.connection)
    }
}

/// Everything left in `reader`, until it ends or the connection is closed.
fn read_all<'py>(
    py: Python<'py>,
    mode: Mode,
    shared: &Arc<SharedStream>,
    connection: &Arc<Connection>,
) -> PyResult<Bound<'py, PyAny>> {
    let (shared, connection) = (shared.clone(), connection.clone());
    mode.run(py, async move {
        let mut guard = shared.reader.lock().await;
        let mut buf = shared.take_arrived().unwrap_or_default();
        if let Some(mut stream) = guard.take() {
            tokio::select! {
                read = stream.read_to_end(&mut buf) => {
                    read.map_err(Failure::Broken)?;
                }
                () = connection.wait_closed() => {}
            }
        }
        Ok(Bytes(buf))
    })
}

/// What `AsyncProcess` and `Process` share: a command running in a sandbox,
/// started by `spawn(...)`.
///
/// Read `stdout` and `stderr` (both, or a chatty one can stall the other),
/// `write()` to stdin and `close_stdin()`, then `wait()` for the exit code.
/// `close()` (or leaving `with`) tears the connection down; the command
/// itself may keep running in the sandbox (unlike `exec`, whose command is
/// killed on timeout and cancellation).
#[pyclass(module = "sandlot._native", name = "_Process", subclass, frozen)]
pub struct ProcessBase {
    mode: Mode,
    process: Mutex<Option<ExecProcess>>,
    /// Dropped before `stdin` (fields drop in order): the connection goes
    /// first, so letting go of the object never closes the command's stdin.
    connection: Arc<Connection>,
    stdout: Arc<SharedStream>,
    stderr: Arc<SharedStream>,
    stdin: Arc<tokio::sync::Mutex<Option<DuplexStream>>>,
    sandbox: String,
    deadline: Option<tokio::time::Instant>,
    timeout: Option<Duration>,
    /// Its id at the sandbox's agent, if it runs through it.
    id: Option<u32>,
    killer: Option<ExecKiller>,
}

impl std::fmt::Debug for ProcessBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProcessBase")
    }
}

twins!(ProcessBase => AsyncProcess, SyncProcess);

impl ProcessBase {
    pub fn new(mode: Mode, mut process: ExecProcess, timeout: Option<Duration>) -> Self {
        let stdout = SharedStream::new(process.take_stdout().map(|r| Box::new(r) as Reader));
        let stderr = SharedStream::new(process.take_stderr().map(|r| Box::new(r) as Reader));
        let stdin = process.take_stdin();
        let sandbox = process.sandbox().to_owned();
        let (id, killer) = (process.id(), process.killer());
        let exit: ExitCode = process
            .wait()
            .map_err(|err| match err {
                Error::Exec { message, .. } => message,
                other => other.to_string(),
            })
            .boxed()
            .shared();
        ProcessBase {
            mode,
            process: Mutex::new(Some(process)),
            stdout,
            stderr,
            connection: Arc::new(Connection {
                exit: Mutex::new(Some(exit)),
                closed: tokio::sync::watch::Sender::new(false),
            }),
            stdin: Arc::new(tokio::sync::Mutex::new(stdin)),
            sandbox,
            deadline: timeout.map(sandlot_core::deadline_after),
            timeout,
            id,
            killer,
        }
    }

    fn stream(&self, shared: &Arc<SharedStream>) -> ByteStream {
        ByteStream {
            shared: shared.clone(),
            connection: self.connection.clone(),
        }
    }
}

#[pymethods]
impl ProcessBase {
    /// The command's output (on a TTY, everything it prints).
    #[getter]
    fn stdout(&self) -> ByteStream {
        self.stream(&self.stdout)
    }

    /// The command's error output (empty on a TTY).
    #[getter]
    fn stderr(&self) -> ByteStream {
        self.stream(&self.stderr)
    }

    /// Everything left on stdout, until it ends.
    fn read_stdout<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        read_all(py, self.mode, &self.stdout, &self.connection)
    }

    /// Everything left on stderr, until it ends.
    fn read_stderr<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        read_all(py, self.mode, &self.stderr, &self.connection)
    }

    /// Writes `data` (bytes or str) to the command's stdin; waits while the
    /// command does not read. Raises `BrokenPipeError` once the command has
    /// ended (also in a write that was waiting) or the connection is closed.
    fn write<'py>(&self, py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let data = inputs::bytes("data", data);
        let (stdin, connection) = (self.stdin.clone(), self.connection.clone());
        self.mode.run(py, async move {
            let data = data?;
            let mut guard = stdin.lock().await;
            let writer = guard.as_mut().ok_or_else(|| {
                Error::invalid(
                    "stdin",
                    "is not open: spawn with stdin=True, and write before close_stdin()",
                )
            })?;
            let written = tokio::select! {
                written = writer.write_all(&data) => written,
                () = connection.wait_closed() => Err(std::io::ErrorKind::BrokenPipe.into()),
            };
            written.map_err(|err| match err.kind() {
                std::io::ErrorKind::BrokenPipe => Failure::Python(PyBrokenPipeError::new_err(
                    "the command's stdin is closed: the command has ended or the process was closed",
                )),
                _ => Failure::Broken(err),
            })?;
            Ok(NONE)
        })
    }

    /// Closes the command's stdin, so it sees end of input. Returns at once
    /// if the command has already ended.
    fn close_stdin<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stdin = self.stdin.clone();
        self.mode.run(py, async move {
            if let Some(mut writer) = stdin.lock().await.take() {
                let _ = writer.shutdown().await;
            }
            Ok(NONE)
        })
    }

    /// Waits for the command to end and returns its exact exit code. Raises
    /// `ExecError` if the connection broke first, `sandlot.TimeoutError` once the
    /// spawn's timeout has passed. May be called more than once.
    fn wait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let exit = self
            .connection
            .exit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (sandbox, connection) = (self.sandbox.clone(), self.connection.clone());
        let (deadline, timeout) = (self.deadline, self.timeout);
        self.mode.run(py, async move {
            const CLOSED: &str = "the process was closed before it ended";
            let exit = async {
                let Some(exit) = exit else {
                    return Err(CLOSED.to_owned());
                };
                // close() ends a wait that is already waiting, too.
                tokio::select! {
                    outcome = exit => outcome,
                    () = connection.wait_closed() => Err(CLOSED.to_owned()),
                }
            };
            let outcome = match deadline {
                Some(deadline) => {
                    tokio::time::timeout_at(deadline, exit)
                        .await
                        .map_err(|_| Error::Timeout {
                            what: "the spawned command".into(),
                            after: timeout.unwrap_or_default(),
                        })?
                }
                None => exit.await,
            };
            outcome.map_err(|message| {
                Error::Exec {
                    name: sandbox,
                    message,
                }
                .into()
            })
        })
    }

    /// Its id at the sandbox's agent (for `Sandbox.process(id)` from any
    /// client); `None` for a command run by a Kubernetes exec of its own.
    #[getter]
    fn id(&self) -> Option<u32> {
        self.id
    }

    /// Bytes of output that were dropped before they could be read (an
    /// attach to a process whose earlier output the agent no longer kept);
    /// 0 for a process read from its start.
    #[getter]
    fn dropped(&self) -> u64 {
        self.process
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, ExecProcess::dropped)
    }

    /// Sends signal `signum` to the command, its process group and every
    /// process it started (through the sandbox's agent only).
    fn signal<'py>(&self, py: Python<'py>, signum: i32) -> PyResult<Bound<'py, PyAny>> {
        let killer = self.killer.clone();
        self.mode.run(py, async move {
            let killer = killer.ok_or_else(|| {
                Error::invalid(
                    "signal",
                    "the command does not run through the sandbox's agent",
                )
            })?;
            killer.signal(signum).await?;
            Ok(NONE)
        })
    }

    /// Kills the command and every process it started.
    fn kill<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let killer = self.killer.clone();
        self.mode.run(py, async move {
            let killer = killer
                .ok_or_else(|| Error::invalid("kill", "the command was not started killable"))?;
            killer.kill().await?;
            Ok(NONE)
        })
    }

    /// Sends a new terminal size (TTY only).
    fn resize(&self, py: Python<'_>, width: u16, height: u16) -> PyResult<()> {
        let mut guard = self.process.lock().unwrap_or_else(|p| p.into_inner());
        let resized = match guard.as_mut() {
            Some(process) => process.resize(width, height),
            None => Err(Error::invalid("resize", "the process is closed")),
        };
        resized.map_err(|err| core_error(py, &err))
    }

    /// Tears the connection down. Streams end; `wait()` raises `ExecError`.
    fn close(&self) {
        self.process
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.connection.close();
    }
}

/// A command running in a sandbox of an `AsyncClient`; `async with` closes
/// its connection when the block ends.
#[pyclass(module = "sandlot", extends = ProcessBase, frozen)]
#[derive(Debug)]
pub struct AsyncProcess;

#[pymethods]
impl AsyncProcess {
    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Mode::Async.ready(slf.py(), Ok(slf.clone().unbind()))
    }

    #[pyo3(signature = (*_exc_info))]
    fn __aexit__<'py>(
        slf: &Bound<'py, Self>,
        _exc_info: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        slf.as_super().get().close();
        Mode::Async.ready(slf.py(), Ok(false))
    }
}

/// A command running in a sandbox of a `Client`; `with` closes its
/// connection when the block ends.
#[pyclass(module = "sandlot", name = "Process", extends = ProcessBase, frozen)]
#[derive(Debug)]
pub struct SyncProcess;

#[pymethods]
impl SyncProcess {
    fn __enter__<'py>(slf: &Bound<'py, Self>) -> Bound<'py, Self> {
        slf.clone()
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(slf: &Bound<'_, Self>, _exc_info: &Bound<'_, PyAny>) -> bool {
        slf.as_super().get().close();
        false
    }
}

/// Bytes handed to Python as `bytes`.
pub struct Bytes(pub Vec<u8>);

impl<'py> IntoPyObject<'py> for Bytes {
    type Target = PyBytes;
    type Output = Bound<'py, PyBytes>;
    type Error = std::convert::Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Bound<'py, PyBytes>, Self::Error> {
        Ok(PyBytes::new(py, &self.0))
    }
}

/// Log lines as they arrive, without their line endings: `async for line in
/// sandbox.stream_logs()` (async sandbox) or `for line in ...` (sync sandbox).
/// One stream is for one consumer: lines taken by calls that overlap may be
/// handed out in another order.
#[pyclass(module = "sandlot", frozen)]
pub struct LineStream {
    /// The request for the log, made by the first call that needs a line.
    open: Arc<tokio::sync::Mutex<Option<BoxFuture<'static, Outcome<LogBatches>>>>>,
    /// The reading ahead, once the log is open.
    reading: Arc<OnceLock<Reading>>,
    /// Lines taken from the reading in one go, handed out one by one before
    /// it is asked again.
    taken: Arc<Mutex<Taken>>,
}

impl std::fmt::Debug for LineStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LineStream")
    }
}

/// A runtime task reading a log ahead of Python, into [`Ahead`]; it stops
/// when this is dropped.
struct Reading {
    ahead: Arc<Ahead>,
    task: tokio::task::AbortHandle,
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Lines read ahead and not taken yet: every batch that arrived merged into
/// one, so that one call takes them all, at most [`READ_AHEAD`] bytes.
#[derive(Default)]
struct Ahead {
    waiting: Mutex<Waiting>,
    /// Told when lines or the end arrive.
    arrived: Notify,
    /// Told when lines are taken.
    taken: Notify,
}

#[derive(Default)]
struct Waiting {
    lines: LogBatch,
    /// How the log ended, after these lines.
    end: Option<End>,
}

/// How the reading of a log ended.
enum End {
    /// The log ended.
    Ended,
    /// The reading failed.
    Failed(sandlot_core::Error),
}

/// The memory `batch` holds: its text and where its lines end.
fn held(batch: &LogBatch) -> usize {
    batch.byte_len() + batch.len() * std::mem::size_of::<usize>()
}

impl Ahead {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads `batches` in until they end or fail, pausing while
    /// [`READ_AHEAD`] bytes wait to be taken.
    async fn read(&self, mut batches: LogBatches) {
        loop {
            // Registered before looking, so that no take goes unnoticed.
            let taken = self.taken.notified();
            let mut taken = std::pin::pin!(taken);
            taken.as_mut().enable();
            if held(&self.waiting().lines) >= READ_AHEAD {
                taken.await;
                continue;
            }
            let next = batches.next().await;
            let mut waiting = self.waiting();
            let end = match next {
                Some(Ok(batch)) => {
                    waiting.lines.append(batch);
                    None
                }
                Some(Err(err)) => Some(End::Failed(err)),
                None => Some(End::Ended),
            };
            let ended = end.is_some();
            waiting.end = end;
            drop(waiting);
            self.arrived.notify_waiters();
            if ended {
                return;
            }
        }
    }

    /// Waits until lines or the end have arrived and are not taken.
    async fn arrival(&self) {
        loop {
            let arrived = self.arrived.notified();
            let mut arrived = std::pin::pin!(arrived);
            arrived.as_mut().enable();
            if self.has_arrived() {
                return;
            }
            arrived.await;
        }
    }

    fn has_arrived(&self) -> bool {
        let waiting = self.waiting();
        !waiting.lines.is_empty() || waiting.end.is_some()
    }

    fn ended(&self) -> bool {
        self.waiting().end.is_some()
    }

    /// Moves every line waiting, and the end once all lines are taken, into
    /// `taken`, which has handed out all it had.
    fn take_into(&self, taken: &mut Taken) {
        let mut waiting = self.waiting();
        if taken.end.is_none() {
            taken.end = waiting.end.take();
        }
        taken.lines = std::mem::take(&mut waiting.lines);
        taken.next = 0;
        drop(waiting);
        self.taken.notify_waiters();
    }
}

/// Lines taken from [`Ahead`], the place of the next one, and the end of the
/// log once it is among them.
#[derive(Default)]
struct Taken {
    lines: LogBatch,
    next: usize,
    end: Option<End>,
}

impl Taken {
    fn handed_out(&self) -> bool {
        self.next >= self.lines.len()
    }

    /// The next line, or how the log ended (an error is raised once, then
    /// the stream ends); `None` when everything taken was handed out.
    fn pop(&mut self) -> Option<Outcome<&[u8]>> {
        if !self.handed_out() {
            self.next += 1;
            return self.lines.line(self.next - 1).map(Ok);
        }
        let end = self.end.take()?;
        self.end = Some(End::Ended);
        match end {
            End::Ended => Some(Err(Failure::End)),
            End::Failed(err) => Some(Err(err.into())),
        }
    }
}

/// A line as text, undecodable bytes replaced.
fn text(line: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(line)
}

impl LineStream {
    pub fn new(open: BoxFuture<'static, Outcome<LogBatches>>) -> Self {
        LineStream {
            open: Arc::new(tokio::sync::Mutex::new(Some(open))),
            reading: Arc::default(),
            taken: Arc::default(),
        }
    }

    /// The next line (or how the log ended) if one was taken or read ahead,
    /// as a str made here, where the GIL is held anyway; `None` when the
    /// caller has to wait for lines to arrive.
    fn line_now(&self, py: Python<'_>) -> Option<Outcome<Py<PyString>>> {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        if taken.handed_out()
            && let Some(reading) = self.reading.get()
        {
            reading.ahead.take_into(&mut taken);
        }
        taken
            .pop()
            .map(|line| line.map(|line| PyString::new(py, &text(line)).unbind()))
    }

    /// Resolves once lines or the end of the log have arrived, opening the
    /// log first if no call did; then, unless the log ended, waits
    /// [`LINE_BATCH_WINDOW`] for more lines to join them.
    fn arrival(&self) -> impl Future<Output = Outcome<Arc<Ahead>>> + Send + 'static {
        let (open, reading) = (self.open.clone(), self.reading.clone());
        async move {
            let ahead = match reading.get() {
                Some(reading) => reading.ahead.clone(),
                None => start_reading(&open, &reading).await?,
            };
            ahead.arrival().await;
            // The caller crosses back to Python anyway: let more lines join it.
            if !ahead.ended() {
                tokio::time::sleep(LINE_BATCH_WINDOW).await;
            }
            Ok(ahead)
        }
    }

    /// The next line: one already taken or read ahead is handed over at
    /// once, without the runtime; else the call waits for lines to arrive.
    /// An async call takes its line on the event loop's thread after its
    /// wait (`sandlot._streams.next_line`), so one cancelled before it
    /// returned takes none.
    fn next_line<'py>(slf: &Bound<'py, Self>, mode: Mode) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        if let Some(line) = this.line_now(py) {
            return mode.ready(py, line);
        }
        if mode == Mode::Async {
            return py
                .import(pyo3::intern!(py, "sandlot._streams"))?
                .getattr(pyo3::intern!(py, "next_line"))?
                .call1((slf,));
        }
        let (arrival, taken) = (this.arrival(), this.taken.clone());
        mode.run(py, async move {
            let ahead = arrival.await?;
            loop {
                let line = {
                    let mut taken = taken.lock().unwrap_or_else(|p| p.into_inner());
                    if taken.handed_out() {
                        ahead.take_into(&mut taken);
                    }
                    taken
                        .pop()
                        .map(|line| line.map(|line| text(line).into_owned()))
                };
                // None when a call that overlapped took them first.
                if let Some(line) = line {
                    return line;
                }
                ahead.arrival().await;
            }
        })
    }
}

/// Opens the log, if no other call did, and starts reading it ahead;
/// [`Failure::End`] once opening it failed.
async fn start_reading(
    open: &tokio::sync::Mutex<Option<BoxFuture<'static, Outcome<LogBatches>>>>,
    reading: &OnceLock<Reading>,
) -> Outcome<Arc<Ahead>> {
    let mut open = open.lock().await;
    if let Some(reading) = reading.get() {
        return Ok(reading.ahead.clone());
    }
    // Awaited in place: a call cancelled meanwhile leaves it to the next one.
    let Some(opening) = open.as_mut() else {
        return Err(Failure::End);
    };
    let batches = opening.await;
    *open = None;
    let batches = batches?;
    let ahead = Arc::new(Ahead::default());
    let reader = ahead.clone();
    let task = tokio::spawn(async move { reader.read(batches).await });
    let _ = reading.set(Reading {
        ahead: ahead.clone(),
        task: task.abort_handle(),
    });
    Ok(ahead)
}

#[pymethods]
impl LineStream {
    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Awaits the next line; ends when the log does.
    fn __anext__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::next_line(slf, Mode::Async)
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Waits for the next line; ends when the log does.
    fn __next__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::next_line(slf, Mode::Blocking)
    }

    /// The next line if one has arrived, else `None`; raises how the log
    /// ended (`StopAsyncIteration`, or its error once).
    fn _line_now(&self, py: Python<'_>) -> PyResult<Option<Py<PyString>>> {
        self.line_now(py)
            .transpose()
            .map_err(|failure| failure.into_pyerr(py, Mode::Async))
    }

    /// Awaits the arrival of lines or the end of the log (see
    /// `sandlot._streams.next_line`).
    fn _arrival<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let arrival = self.arrival();
        Mode::Async.run(py, async move {
            arrival.await?;
            Ok(NONE)
        })
    }
}
