//! Streaming objects: `AsyncProcess` (a command whose streams Python reads and
//! writes), `ByteStream` (its stdout or stderr) and `LineStream` (log lines).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{StreamExt, TryFutureExt};
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use pyo3::types::{PyAny, PyBytes};
use sandlot_core::{Error, ExecProcess, LogLines};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, SimplexStream, WriteHalf};

use crate::errors::{IntoPyResult, to_py};

/// Largest chunk one read of a stream returns.
const CHUNK: usize = 64 * 1024;

/// Log lines read ahead of Python: the reading goes on on the runtime while
/// Python takes lines that are already there, without a trip to the runtime.
const LINES_AHEAD: usize = 4096;

/// When Python had to wait for a line, how long it waits on for more lines to
/// bring back in the same trip (a line arriving alone is this much later).
const LINE_BATCH_WINDOW: Duration = Duration::from_millis(2);

type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// The exit code, or the sandbox name and message of the exec error.
type ExitCode = Shared<BoxFuture<'static, Result<i32, (String, String)>>>;

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

fn broken(err: std::io::Error) -> PyErr {
    PyErr::new::<pyo3::exceptions::PyConnectionError, _>(err.to_string())
}

/// The bytes a command writes to stdout or stderr, as they arrive:
/// `async for chunk in process.stdout`.
#[pyclass(module = "sandlot", frozen)]
pub struct ByteStream {
    reader: Arc<tokio::sync::Mutex<Option<Reader>>>,
    connection: Arc<Connection>,
}

impl std::fmt::Debug for ByteStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ByteStream")
    }
}

impl ByteStream {
    fn new(reader: Option<Reader>, connection: Arc<Connection>) -> Self {
        ByteStream {
            reader: Arc::new(tokio::sync::Mutex::new(reader)),
            connection,
        }
    }
}

#[pymethods]
impl ByteStream {
    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// The next chunk (at most 64 KiB); ends when the stream does.
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (reader, connection) = (self.reader.clone(), self.connection.clone());
        crate::bridge::awaitable(py, async move {
            let mut guard = reader.lock().await;
            let Some(stream) = guard.as_mut() else {
                return Err(PyStopAsyncIteration::new_err(()));
            };
            let mut buf = vec![0; CHUNK];
            let read = tokio::select! {
                read = stream.read(&mut buf) => read.map_err(broken)?,
                () = connection.wait_closed() => 0,
            };
            if read == 0 {
                *guard = None;
                return Err(PyStopAsyncIteration::new_err(()));
            }
            buf.truncate(read);
            Ok(Python::attach(|py| PyBytes::new(py, &buf).unbind()))
        })
    }

    /// Everything left in the stream, until it ends.
    fn read_all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (reader, connection) = (self.reader.clone(), self.connection.clone());
        crate::bridge::awaitable(py, async move {
            let mut buf = Vec::new();
            if let Some(mut stream) = reader.lock().await.take() {
                tokio::select! {
                    read = stream.read_to_end(&mut buf) => {
                        read.map_err(broken)?;
                    }
                    () = connection.wait_closed() => {}
                }
            }
            Ok(Python::attach(|py| PyBytes::new(py, &buf).unbind()))
        })
    }
}

/// A command running in a sandbox, started by `sandbox.spawn(...)`.
///
/// Read `stdout` and `stderr` (both, or a chatty one can stall the other),
/// `write()` to stdin and `close_stdin()`, then `wait()` for the exit code.
/// `close()` (or leaving `async with`) tears the connection down; the command
/// itself may keep running in the sandbox.
#[pyclass(module = "sandlot", frozen)]
pub struct AsyncProcess {
    process: Arc<Mutex<Option<ExecProcess>>>,
    stdout: Py<ByteStream>,
    stderr: Py<ByteStream>,
    stdin: Arc<tokio::sync::Mutex<Option<WriteHalf<SimplexStream>>>>,
    connection: Arc<Connection>,
    sandbox: String,
    deadline: Option<tokio::time::Instant>,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for AsyncProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AsyncProcess")
    }
}

impl AsyncProcess {
    pub fn new(
        py: Python<'_>,
        mut process: ExecProcess,
        timeout: Option<Duration>,
    ) -> PyResult<Self> {
        let stdout = process.take_stdout().map(|r| Box::new(r) as Reader);
        let stderr = process.take_stderr().map(|r| Box::new(r) as Reader);
        let stdin = process.take_stdin();
        let sandbox = process.sandbox().to_owned();
        let exit: ExitCode = process
            .wait()
            .map_err(|err| match err {
                Error::Exec { name, message } => (name, message),
                other => (String::new(), other.to_string()),
            })
            .boxed()
            .shared();
        let connection = Arc::new(Connection {
            exit: Mutex::new(Some(exit)),
            closed: tokio::sync::watch::Sender::new(false),
        });
        Ok(AsyncProcess {
            process: Arc::new(Mutex::new(Some(process))),
            stdout: Py::new(py, ByteStream::new(stdout, connection.clone()))?,
            stderr: Py::new(py, ByteStream::new(stderr, connection.clone()))?,
            stdin: Arc::new(tokio::sync::Mutex::new(stdin)),
            connection,
            sandbox,
            deadline: timeout.map(|t| tokio::time::Instant::now() + t),
            timeout,
        })
    }
}

#[pymethods]
impl AsyncProcess {
    /// The command's output (on a TTY, everything it prints).
    #[getter]
    fn stdout(&self, py: Python<'_>) -> Py<ByteStream> {
        self.stdout.clone_ref(py)
    }

    /// The command's error output (empty on a TTY).
    #[getter]
    fn stderr(&self, py: Python<'_>) -> Py<ByteStream> {
        self.stderr.clone_ref(py)
    }

    /// Writes `data` (bytes or str) to the command's stdin.
    fn write<'py>(&self, py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let data = crate::sandbox::bytes_from(data)?;
        let stdin = self.stdin.clone();
        crate::bridge::awaitable(py, async move {
            let mut guard = stdin.lock().await;
            let writer = guard.as_mut().ok_or_else(|| {
                to_py(Error::invalid(
                    "stdin",
                    "is not open: spawn with stdin=True, and write before close_stdin()",
                ))
            })?;
            writer.write_all(&data).await.map_err(|err| {
                PyErr::new::<pyo3::exceptions::PyConnectionError, _>(err.to_string())
            })
        })
    }

    /// Closes the command's stdin, so it sees end of input.
    fn close_stdin<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let stdin = self.stdin.clone();
        crate::bridge::awaitable(py, async move {
            if let Some(mut writer) = stdin.lock().await.take() {
                let _ = writer.shutdown().await;
            }
            Ok(crate::bridge::NONE)
        })
    }

    /// Waits for the command to end and returns its exact exit code. Raises
    /// `ExecError` if the connection broke first, `sandlot.TimeoutError` once the
    /// spawn's timeout has passed. May be awaited more than once.
    fn wait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let exit = self
            .connection
            .exit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let sandbox = self.sandbox.clone();
        let (deadline, timeout) = (self.deadline, self.timeout);
        crate::bridge::awaitable(py, async move {
            let Some(exit) = exit else {
                return Err(to_py(Error::Exec {
                    name: sandbox,
                    message: "the process was closed before it ended".into(),
                }));
            };
            let outcome = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, exit).await.map_err(|_| {
                    to_py(Error::Timeout {
                        what: "the spawned command".into(),
                        after: timeout.unwrap_or_default(),
                    })
                })?,
                None => exit.await,
            };
            outcome.map_err(|(name, message)| to_py(Error::Exec { name, message }))
        })
    }

    /// Sends a new terminal size (TTY only).
    fn resize(&self, width: u16, height: u16) -> PyResult<()> {
        let mut guard = self.process.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            Some(process) => process.resize(width, height).into_py_result(),
            None => Err(to_py(Error::invalid("resize", "the process is closed"))),
        }
    }

    /// Tears the connection down. Streams end; `wait()` raises `ExecError`.
    fn close(&self) {
        self.process
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.connection.close();
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.clone().unbind();
        crate::bridge::awaitable(slf.py(), async move { Ok(this) })
    }

    #[pyo3(signature = (*_exc_info))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc_info: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.close();
        crate::bridge::awaitable(py, async move { Ok(false) })
    }
}

/// Log lines as they arrive: `async for line in sandbox.stream_logs()`. Lines
/// come without their line ending.
#[pyclass(module = "sandlot", frozen)]
pub struct LineStream {
    state: Arc<tokio::sync::Mutex<LineState>>,
    /// Lines taken from the channel in one go, handed out before the channel
    /// is asked again: one trip to the runtime brings every line waiting.
    taken: Arc<Mutex<std::collections::VecDeque<sandlot_core::Result<String>>>>,
}

impl std::fmt::Debug for LineStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LineStream")
    }
}

/// A log stream opens on the first `__anext__`; from then on a runtime task
/// reads lines ahead into a channel ([`LINES_AHEAD`] at most).
pub enum LineState {
    Unopened(BoxFuture<'static, sandlot_core::Result<LogLines>>),
    Open(tokio::sync::mpsc::Receiver<sandlot_core::Result<String>>),
    Done,
}

impl LineStream {
    pub fn new(open: BoxFuture<'static, sandlot_core::Result<LogLines>>) -> Self {
        LineStream {
            state: Arc::new(tokio::sync::Mutex::new(LineState::Unopened(open))),
            taken: Arc::default(),
        }
    }
}

/// Reads `lines` into a channel until they end or the stream is dropped.
fn read_ahead(mut lines: LogLines) -> tokio::sync::mpsc::Receiver<sandlot_core::Result<String>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(LINES_AHEAD);
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                _ = sender.closed() => return,
                line = lines.next() => line,
            };
            let Some(line) = line else { return };
            if sender.send(line).await.is_err() {
                return;
            }
        }
    });
    receiver
}

#[pymethods]
impl LineStream {
    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let taken = self.taken.clone();
        let next = taken.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        if let Some(line) = next {
            return crate::bridge::awaitable(py, async move { line.into_py_result() });
        }
        let state = self.state.clone();
        crate::bridge::awaitable(py, async move {
            let mut guard = state.lock().await;
            if let LineState::Unopened(open) = &mut *guard {
                match open.await {
                    Ok(lines) => *guard = LineState::Open(read_ahead(lines)),
                    Err(err) => {
                        *guard = LineState::Done;
                        return Err(to_py(err));
                    }
                }
            }
            let LineState::Open(lines) = &mut *guard else {
                return Err(PyStopAsyncIteration::new_err(()));
            };
            let waited = lines.is_empty();
            let Some(line) = lines.recv().await else {
                *guard = LineState::Done;
                return Err(PyStopAsyncIteration::new_err(()));
            };
            let mut batch = Vec::new();
            if waited {
                // This call crosses back to Python anyway: let more lines join it.
                let more = async {
                    while batch.len() < LINES_AHEAD {
                        match lines.recv().await {
                            Some(line) => batch.push(line),
                            None => break,
                        }
                    }
                };
                let _ = tokio::time::timeout(LINE_BATCH_WINDOW, more).await;
            }
            let mut taken = taken.lock().unwrap_or_else(|p| p.into_inner());
            taken.extend(batch);
            while let Ok(more) = lines.try_recv() {
                taken.push_back(more);
            }
            line.into_py_result()
        })
    }
}
