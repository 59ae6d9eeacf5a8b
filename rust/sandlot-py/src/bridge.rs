//! Handing Rust futures to asyncio.
//!
//! Every native coroutine goes through [`awaitable`]. A future that can finish
//! without waiting (a connected client's `connect`, the next line of a log
//! already buffered, an input error) finishes on the caller's thread and comes
//! back as an asyncio future that is already done: no trip to the runtime's
//! threads and back. Anything that has to wait continues as a task on the
//! shared tokio runtime, handed over by `pyo3_async_runtimes`.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;

/// An asyncio awaitable for `future`, which is polled once right here (inside
/// the runtime, holding the GIL) and, if it is not finished, spawned on the
/// runtime. Must be called with an event loop running in this thread.
pub fn awaitable<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
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
        Poll::Pending => spawned(py, future),
        Poll::Ready(result) => finished(py, result.and_then(|value| value.into_py_any(py))),
    }
}

/// An asyncio future resolved by a runtime task that drives `future`.
/// Cancelling the asyncio future aborts the task (dropping `future`).
fn spawned<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let event_loop = pyo3_async_runtimes::get_running_loop(py)?;
    let pending = event_loop.call_method0(pyo3::intern!(py, "create_future"))?;
    let (event_loop, target) = (event_loop.unbind(), pending.clone().unbind());
    let task = pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
        let result = future.await;
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
    pending.call_method1(
        pyo3::intern!(py, "add_done_callback"),
        (Abort {
            task: task.abort_handle(),
        },),
    )?;
    Ok(pending)
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

/// An asyncio future of the running loop, already resolved with `result`.
fn finished<'py>(py: Python<'py>, result: PyResult<Py<PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    let event_loop = pyo3_async_runtimes::get_running_loop(py)?;
    let done = event_loop.call_method0(pyo3::intern!(py, "create_future"))?;
    match result {
        Ok(value) => done.call_method1(pyo3::intern!(py, "set_result"), (value,))?,
        Err(err) => done.call_method1(pyo3::intern!(py, "set_exception"), (err.into_value(py),))?,
    };
    Ok(done)
}

/// Awaits one turn of the runtime and returns: the cost of a call that must
/// cross to the runtime's threads and back (for `make bench`).
#[pyfunction]
pub fn yield_once(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    awaitable(py, async {
        tokio::task::yield_now().await;
        Ok(())
    })
}
