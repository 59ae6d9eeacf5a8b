//! Handing core futures to Python: as asyncio awaitables (the async classes)
//! or as calls that block (the sync classes). Every native operation is one
//! future, handed over by [`Mode::run`].
//!
//! The rules every binding keeps:
//! - A future never touches Python. It returns Rust values, or a [`Failure`];
//!   both become Python objects only on a thread that holds the GIL for that
//!   purpose anyway (the one that resolves an asyncio future, or the caller's
//!   thread after a blocking wait). A runtime worker never waits for the GIL.
//! - Nothing of a future runs on the caller's thread while it holds the GIL: an
//!   async call is spawned on the runtime; a blocking call is driven with the
//!   GIL released. A slow kubeconfig credential plugin therefore never freezes
//!   an event loop or other Python threads.
//! - An async call raises on `await`, never when it is made: bad input becomes
//!   an awaitable that raises (still before any request is sent).
//! - A blocking call turns Ctrl-C into `KeyboardInterrupt` within
//!   [`SIGNAL_CHECK`] and drops (cancels) its future.
//! - At interpreter exit, [`quiesce`] lets results being handed to asyncio
//!   finish and stops later ones from touching Python.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Condvar, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;

use futures::FutureExt;
use pyo3::BoundObject;
use pyo3::exceptions::{PyConnectionError, PyRuntimeError, PyStopAsyncIteration, PyStopIteration};
use pyo3::prelude::*;

use crate::errors::core_error;

/// How often a blocked call on the main thread looks for Ctrl-C.
pub const SIGNAL_CHECK: Duration = Duration::from_millis(20);

/// How long [`quiesce`] waits at most for results being handed to asyncio.
const QUIESCE_LIMIT: Duration = Duration::from_secs(2);

/// How long [`quiesce`] waits at most for the kills of cancelled execs.
const KILLS_LIMIT: Duration = Duration::from_secs(20);

/// Why a native call did not produce a value. Built without the GIL; turned
/// into the Python exception by [`Failure::into_pyerr`].
#[derive(Debug)]
pub enum Failure {
    /// An error of the core, as its `sandlot` exception.
    Core(sandlot_core::Error),
    /// `exec(..., check=True)`: the command ran and exited non-zero.
    ExecFailed {
        name: String,
        command: Vec<String>,
        result: sandlot_core::ExecResult,
    },
    /// A stream has no more items: `StopAsyncIteration` or `StopIteration`.
    End,
    /// A connection broke while reading or writing a stream.
    Broken(std::io::Error),
    /// The native task panicked.
    Panic(String),
    /// A Python exception made without the GIL (lazily built).
    Python(PyErr),
}

impl From<sandlot_core::Error> for Failure {
    fn from(err: sandlot_core::Error) -> Self {
        Failure::Core(err)
    }
}

impl Failure {
    /// The Python exception; `mode` decides how the end of a stream is said.
    pub fn into_pyerr(self, py: Python<'_>, mode: Mode) -> PyErr {
        match self {
            Failure::Core(err) => core_error(py, &err),
            Failure::ExecFailed {
                name,
                command,
                result,
            } => crate::errors::exec_failed(py, &name, &command, result),
            Failure::End => match mode {
                Mode::Async => PyStopAsyncIteration::new_err(()),
                Mode::Blocking => PyStopIteration::new_err(()),
            },
            Failure::Broken(err) => PyConnectionError::new_err(err.to_string()),
            Failure::Panic(message) => pyo3::panic::PanicException::new_err(message),
            Failure::Python(err) => err,
        }
    }
}

/// What a native call ends with.
pub type Outcome<T> = Result<T, Failure>;

/// What a call that returns nothing gives Python: `None` (a Rust `()` would
/// become an empty tuple).
pub const NONE: Option<()> = None;

/// Whether a class hands its calls to asyncio or blocks on them. The async and
/// sync classes of an object share one native base class; the mode is the only
/// difference between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Calls return awaitables, resolved from the runtime.
    Async,
    /// Calls wait for their result with the GIL released.
    Blocking,
}

impl Mode {
    /// Hands `future` to the caller: an asyncio awaitable of its value, or its
    /// value after waiting for it.
    pub fn run<'py, F, T>(self, py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = Outcome<T>> + Send + 'static,
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        match self {
            Mode::Async => spawned(py, future),
            Mode::Blocking => blocked(py, future),
        }
    }

    /// Hands over an outcome that is known already, without the runtime: an
    /// awaitable that is finished (and raises on `await` if `outcome` is an
    /// error), or the value itself.
    pub fn ready<'py, T>(self, py: Python<'py>, outcome: Outcome<T>) -> PyResult<Bound<'py, PyAny>>
    where
        T: for<'a> IntoPyObject<'a>,
    {
        let converted = convert(py, outcome, self);
        match self {
            Mode::Async => finished(py, converted.map(Bound::unbind)),
            Mode::Blocking => converted,
        }
    }
}

/// `outcome` as a Python value or exception.
fn convert<'py, T>(py: Python<'py>, outcome: Outcome<T>, mode: Mode) -> PyResult<Bound<'py, PyAny>>
where
    T: for<'a> IntoPyObject<'a>,
{
    match outcome {
        Ok(value) => value
            .into_pyobject(py)
            .map(BoundObject::into_any)
            .map(BoundObject::into_bound)
            .map_err(Into::into),
        Err(failure) => Err(failure.into_pyerr(py, mode)),
    }
}

/// Runs `future` to its end, catching a panic as a [`Failure::Panic`].
async fn caught<F, T>(future: F) -> Outcome<T>
where
    F: Future<Output = Outcome<T>>,
{
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(Failure::Panic(panic_message(panic.as_ref()))))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a native task panicked".to_owned())
}

/// An asyncio future resolved by a runtime task that drives `future`. Fails,
/// before anything starts, unless an event loop runs in this thread (nothing
/// would await it). Cancelling the asyncio future aborts the task.
fn spawned<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Outcome<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let event_loop = pyo3_async_runtimes::get_running_loop(py)?;
    if EXIT_GATE.is_closed() {
        // Its result could never be handed over (an atexit handler awaiting it would hang).
        return Err(PyRuntimeError::new_err(
            "the interpreter is exiting: sandlot starts no new calls",
        ));
    }
    let pending = event_loop.call_method0(pyo3::intern!(py, "create_future"))?;
    let (event_loop, target) = (event_loop.unbind(), pending.clone().unbind());
    let task = pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
        let outcome = caught(future).await;
        // The GIL is taken on a blocking thread, never on a runtime worker.
        tokio::task::spawn_blocking(move || resolve(event_loop, target, outcome));
    });
    pending.call_method1(
        pyo3::intern!(py, "add_done_callback"),
        (Abort {
            task: task.abort_handle(),
        },),
    )?;
    Ok(pending)
}

/// Hands `outcome` to the asyncio future `target` on its loop.
fn resolve<T>(event_loop: Py<PyAny>, target: Py<PyAny>, outcome: Outcome<T>)
where
    T: for<'a> IntoPyObject<'a>,
{
    let Some(_pass) = EXIT_GATE.enter() else {
        return; // the interpreter is exiting: nobody awaits this any more
    };
    Python::attach(|py| {
        let (ok, value) = match convert(py, outcome, Mode::Async) {
            Ok(value) => (true, value.unbind()),
            Err(err) => (false, err.into_value(py).into_any()),
        };
        // The loop may be closed already (its owner gave up on the call):
        // then there is nobody to tell.
        let _ = event_loop.call_method1(
            py,
            pyo3::intern!(py, "call_soon_threadsafe"),
            (Resolve { ok }, target, value),
        );
    });
}

/// Drives `future` on this thread with the GIL released, looking for Ctrl-C
/// every [`SIGNAL_CHECK`] when this is the main thread. An interrupt drops the
/// future (cancelling its work) and raises `KeyboardInterrupt`.
fn blocked<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Outcome<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(PyRuntimeError::new_err(
            "a blocking sandlot call cannot run on sandlot's own runtime; use the async classes there",
        ));
    }
    let watch_signals = on_main_thread(py);
    let runtime = pyo3_async_runtimes::tokio::get_runtime();
    let waited: PyResult<Outcome<T>> = py.detach(|| {
        runtime.block_on(async {
            let mut future = std::pin::pin!(caught(future));
            if !watch_signals {
                return Ok(future.await);
            }
            loop {
                match tokio::time::timeout(SIGNAL_CHECK, &mut future).await {
                    Ok(outcome) => return Ok(outcome),
                    Err(_) => Python::attach(|py| py.check_signals())?,
                }
            }
        })
    });
    convert(py, waited?, Mode::Blocking)
}

/// The interpreter's main thread, the only one Python delivers signals to.
static MAIN_THREAD: OnceLock<ThreadId> = OnceLock::new();

fn on_main_thread(py: Python<'_>) -> bool {
    if let Some(main) = MAIN_THREAD.get() {
        return *main == std::thread::current().id();
    }
    let is_main = (|| -> PyResult<bool> {
        let threading = py.import("threading")?;
        let current = threading.call_method0("current_thread")?;
        Ok(current.is(&threading.call_method0("main_thread")?))
    })()
    .unwrap_or(false);
    if is_main {
        let _ = MAIN_THREAD.set(std::thread::current().id());
    }
    is_main
}

/// Counts the threads handing results to asyncio, and closes at exit.
struct ExitGate {
    /// (closed, threads inside)
    state: Mutex<(bool, usize)>,
    left: Condvar,
}

static EXIT_GATE: ExitGate = ExitGate {
    state: Mutex::new((false, 0)),
    left: Condvar::new(),
};

/// Held while a thread hands a result to Python.
struct GatePass;

impl ExitGate {
    fn is_closed(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    fn enter(&'static self) -> Option<GatePass> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.0 {
            return None;
        }
        state.1 += 1;
        Some(GatePass)
    }
}

impl Drop for GatePass {
    fn drop(&mut self) {
        let mut state = EXIT_GATE.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1 -= 1;
        if state.1 == 0 {
            EXIT_GATE.left.notify_all();
        }
    }
}

/// Called once at interpreter exit: from now on no async call starts, results
/// of native tasks are dropped instead of handed to asyncio, and those being
/// handed over now are waited for (with the GIL released, so they can
/// finish), at most [`QUIESCE_LIMIT`]: finalizing the interpreter under such a
/// thread would crash the process, and one still holding on after that long
/// is stuck in Python code of its own.
///
/// Then it waits, at most [`KILLS_LIMIT`], for the kills that cancelled
/// execs started (a Ctrl-C usually ends the program right after).
#[pyfunction]
pub fn _quiesce(py: Python<'_>) {
    py.detach(|| {
        sandlot_core::wait_for_background_kills(KILLS_LIMIT);
        let mut state = EXIT_GATE.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 = true;
        let _ = EXIT_GATE
            .left
            .wait_timeout_while(state, QUIESCE_LIMIT, |state| state.1 > 0);
    });
}

/// Sets an asyncio future's outcome on its loop, unless it was cancelled (then
/// a value's `_unreceived()` hook, if it has one, is called).
#[pyclass(frozen)]
struct Resolve {
    ok: bool,
}

#[pymethods]
impl Resolve {
    fn __call__(&self, target: &Bound<'_, PyAny>, value: Bound<'_, PyAny>) -> PyResult<()> {
        let py = target.py();
        if target
            .call_method0(pyo3::intern!(py, "done"))?
            .is_truthy()?
        {
            // Cancelled as the value came: a value with an `_unreceived` hook
            // undoes itself (a sandbox just created deletes itself).
            if self.ok
                && let Ok(hook) = value.getattr(pyo3::intern!(py, "_unreceived"))
            {
                hook.call0()?;
            }
            return Ok(());
        }
        let method = if self.ok {
            "set_result"
        } else {
            "set_exception"
        };
        target.call_method1(method, (value,))?;
        Ok(())
    }
}

/// Aborts the runtime task behind an asyncio future that was cancelled.
#[pyclass(frozen)]
struct Abort {
    task: tokio::task::AbortHandle,
}

#[pymethods]
impl Abort {
    fn __call__(&self, target: &Bound<'_, PyAny>) -> PyResult<()> {
        if target
            .call_method0(pyo3::intern!(target.py(), "cancelled"))?
            .is_truthy()?
        {
            self.task.abort();
        }
        Ok(())
    }
}

/// An awaitable that is already finished with `outcome`: awaiting it hands the
/// outcome back at once, without the event loop.
fn finished(py: Python<'_>, outcome: PyResult<Py<PyAny>>) -> PyResult<Bound<'_, PyAny>> {
    let finished = Finished {
        outcome: Mutex::new(Some(outcome)),
    };
    Ok(Bound::new(py, finished)?.into_any())
}

/// A native call whose outcome was known when it was made; awaitable once.
#[pyclass(frozen, module = "sandlot")]
struct Finished {
    outcome: Mutex<Option<PyResult<Py<PyAny>>>>,
}

#[pymethods]
impl Finished {
    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Ends the iteration with the result as `StopIteration`'s value, or
    /// raises the error.
    fn __next__(&self) -> PyResult<()> {
        let outcome = self
            .outcome
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        match outcome {
            Some(Ok(value)) => Err(PyStopIteration::new_err((value,))),
            Some(Err(err)) => Err(err),
            None => Err(PyRuntimeError::new_err(
                "cannot await a finished native call twice",
            )),
        }
    }
}

/// Test and benchmark hooks, kept out of the public module
/// (`sandlot._testing` re-exports them).
pub mod hooks {
    use super::*;

    /// One turn of the runtime and back: the cost of a call that has to wait,
    /// awaited (`blocking=False`) or blocked on (`blocking=True`).
    #[pyfunction]
    #[pyo3(signature = (*, blocking=false))]
    pub fn _yield_once(py: Python<'_>, blocking: bool) -> PyResult<Bound<'_, PyAny>> {
        let mode = if blocking {
            Mode::Blocking
        } else {
            Mode::Async
        };
        mode.run(py, async {
            tokio::task::yield_now().await;
            Ok(NONE)
        })
    }

    /// A hook's `seconds` argument as a duration.
    fn seconds_arg(py: Python<'_>, seconds: f64) -> PyResult<std::time::Duration> {
        crate::inputs::seconds("seconds", seconds)
            .map_err(|failure| failure.into_pyerr(py, Mode::Blocking))
    }

    /// Shortens how long sandlot leaves a start failure that may heal to the
    /// kubelet's retries before settling it (`LAUNCH_RETRY_WINDOW`), for this
    /// process. Returns the window it replaced, in seconds.
    #[pyfunction]
    pub fn _set_launch_retry_window(py: Python<'_>, seconds: f64) -> PyResult<f64> {
        let window = seconds_arg(py, seconds)?;
        Ok(sandlot_core::set_launch_retry_window(window).as_secs_f64())
    }

    /// Sets how long a followed log may stay silent before the follow asks
    /// again on a new connection, for follows started from now on (tests
    /// stage dead connections with a short one).
    #[pyfunction]
    pub fn _set_follow_idle(py: Python<'_>, seconds: f64) -> PyResult<()> {
        let idle = seconds_arg(py, seconds)?;
        sandlot_core::set_follow_idle(idle);
        Ok(())
    }

    /// Sets how long one wait on a file operation's agent may last before the
    /// operation fails as stalled, for operations started from now on (tests
    /// stop an agent and use a short one).
    #[pyfunction]
    pub fn _set_file_idle(py: Python<'_>, seconds: f64) -> PyResult<()> {
        let idle = seconds_arg(py, seconds)?;
        sandlot_core::set_file_idle(idle);
        Ok(())
    }

    /// Sets how old the ConfigMap of an earlier build of sandlot's programs
    /// must be before purge removes it (tests cannot make an old one).
    #[pyfunction]
    pub fn _set_stale_program_age(py: Python<'_>, seconds: f64) -> PyResult<()> {
        let age = seconds_arg(py, seconds)?;
        sandlot_core::set_stale_program_age(age);
        Ok(())
    }

    /// The number of tasks alive in the runtime (tests check that nothing is
    /// left running).
    #[pyfunction]
    pub fn _runtime_task_count() -> usize {
        pyo3_async_runtimes::tokio::get_runtime()
            .metrics()
            .num_alive_tasks()
    }
}
