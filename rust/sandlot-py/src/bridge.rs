//! Handing Rust futures to asyncio.
//!
//! Every native coroutine goes through [`awaitable`]. A future that can finish
//! without waiting (a connected client's `connect`, the next line of a log
//! already buffered) finishes on the caller's thread and comes
//! back as an awaitable that is already finished: no trip to the runtime's
//! threads and back, no event loop involved. Anything that has to wait goes on
//! as a task on the shared tokio runtime (`pyo3_async_runtimes`' runtime),
//! which resolves an asyncio future through the loop's `call_soon_threadsafe`.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use futures::FutureExt;
use pyo3::IntoPyObjectExt;
use pyo3::exceptions::{PyRuntimeError, PyStopIteration};
use pyo3::prelude::*;

/// What a call that returns nothing resolves to: Python's `None` (a Rust `()`
/// would become an empty tuple).
pub const NONE: Option<()> = None;

/// An asyncio awaitable for `future`, which is polled once right here (inside
/// the runtime, holding the GIL) and, if it is not finished, spawned on the
/// runtime. Fails, before `future` is polled, unless an event loop runs in
/// this thread: a call must not start what nobody can await.
pub fn awaitable<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let event_loop = pyo3_async_runtimes::get_running_loop(py)?;
    let mut future = Box::pin(future);
    let first = {
        let _runtime = pyo3_async_runtimes::tokio::get_runtime().enter();
        // The no-op waker is never needed: a pending future is polled again
        // by the task it is spawned into, which registers that task's waker.
        future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    };
    match first {
        Poll::Pending => spawned(event_loop, future),
        Poll::Ready(result) => finished(py, result.and_then(|value| value.into_py_any(py))),
    }
}

/// An asyncio future resolved by a runtime task that drives `future`.
/// Cancelling the asyncio future aborts the task (dropping `future`); a panic
/// in `future` becomes a `PanicException`.
fn spawned<'py, F, T>(event_loop: Bound<'py, PyAny>, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let py = event_loop.py();
    let pending = event_loop.call_method0(pyo3::intern!(py, "create_future"))?;
    let (event_loop, target) = (event_loop.unbind(), pending.clone().unbind());
    let task = pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
        let result = AssertUnwindSafe(future)
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(panic_error(panic.as_ref())));
        // Taken on a blocking thread: waiting for the GIL must not stall a
        // runtime worker (and the tasks queued on it).
        tokio::task::spawn_blocking(move || {
            Python::attach(|py| {
                let (ok, value) = match result.and_then(|value| value.into_py_any(py)) {
                    Ok(value) => (true, value),
                    Err(err) => (false, err.into_value(py).into_any()),
                };
                let resolve = Resolve { ok };
                // The loop may be closed already (its owner gave up on the call):
                // then there is nobody to tell.
                let _ = event_loop.call_method1(
                    py,
                    pyo3::intern!(py, "call_soon_threadsafe"),
                    (resolve, target, value),
                );
            });
        });
    });
    pending.call_method1(
        pyo3::intern!(py, "add_done_callback"),
        (Abort {
            task: task.abort_handle(),
        },),
    )?;
    Ok(pending)
}

/// The Python exception for a panic's payload.
fn panic_error(payload: &(dyn std::any::Any + Send)) -> PyErr {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a native task panicked".to_owned());
    pyo3::panic::PanicException::new_err(message)
}

/// Sets an asyncio future's outcome on its loop, unless it was cancelled.
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

/// A native call that finished without waiting; awaitable once.
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

/// Awaits one turn of the runtime and returns: the cost of a call that must
/// cross to the runtime's threads and back (for `make bench`).
#[pyfunction]
pub fn yield_once(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    awaitable(py, async {
        tokio::task::yield_now().await;
        Ok(NONE)
    })
}
