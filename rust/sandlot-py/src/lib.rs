//! sandlot's Python bindings (`sandlot._native`): conversions, errors and async
//! bridging only. Every operation is one `sandlot_core` future, handed to
//! asyncio by [`bridge::awaitable`].

use std::time::Duration;

use pyo3::prelude::*;

mod bridge;
mod client;
mod errors;
mod html;
mod sandbox;
mod status;
mod stream;
mod volume;

/// Runs the `sandlot` command line with `argv` (program name first) and returns
/// its exit code. The GIL is released while it runs.
#[pyfunction]
fn run_cli(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(|| sandlot_cli::run(argv))
}

/// Releases the GIL for `seconds`. Called at interpreter exit: the thread that
/// handed asyncio its last result may still be leaving Python (it releases and
/// retakes the GIL while waking the event loop), and finalizing under it would
/// crash the process. A few milliseconds are plenty.
#[pyfunction]
fn settle(py: Python<'_>, seconds: f64) {
    py.detach(|| std::thread::sleep(Duration::from_secs_f64(seconds.clamp(0.0, 1.0))));
}

/// The number of tasks alive in the async runtime (for tests that check that
/// nothing is left running).
#[pyfunction]
fn runtime_task_count() -> usize {
    pyo3_async_runtimes::tokio::get_runtime()
        .metrics()
        .num_alive_tasks()
}

/// An HTML table of sandbox statuses (for lists shown in notebooks).
#[pyfunction]
fn sandboxes_html(statuses: Vec<PyRef<'_, status::SandboxStatus>>) -> String {
    let cores: Vec<&sandlot_core::SandboxStatus> = statuses.iter().map(|s| s.core()).collect();
    html::sandboxes_table(&cores)
}

#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<client::AsyncClient>()?;
    m.add_class::<sandbox::AsyncSandboxes>()?;
    m.add_class::<sandbox::AsyncSandbox>()?;
    m.add_class::<status::SandboxStatus>()?;
    m.add_class::<status::ExecResult>()?;
    m.add_class::<status::TerminateResult>()?;
    m.add_class::<stream::AsyncProcess>()?;
    m.add_class::<stream::ByteStream>()?;
    m.add_class::<stream::LineStream>()?;
    m.add_class::<volume::AsyncVolumes>()?;
    m.add_class::<volume::AsyncVolume>()?;
    m.add_function(wrap_pyfunction!(run_cli, m)?)?;
    m.add_function(wrap_pyfunction!(settle, m)?)?;
    m.add_function(wrap_pyfunction!(runtime_task_count, m)?)?;
    m.add_function(wrap_pyfunction!(sandboxes_html, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::yield_once, m)?)?;
    Ok(())
}
