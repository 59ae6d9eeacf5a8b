//! sandlot's Python bindings (`sandlot._native`): conversions, errors and async
//! bridging only. Every operation is one `sandlot_core` future, handed to
//! asyncio with `pyo3_async_runtimes::tokio::future_into_py`.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

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

/// Waits, with the GIL released, until no task of the async runtime is alive or
/// `timeout` seconds passed; true if idle. Called at interpreter exit: a task
/// still handing a result to asyncio then would otherwise race finalization.
#[pyfunction]
fn wait_idle(py: Python<'_>, timeout: f64) -> bool {
    let metrics = pyo3_async_runtimes::tokio::get_runtime().metrics();
    let deadline = Instant::now() + Duration::from_secs_f64(timeout.clamp(0.0, 60.0));
    py.detach(|| {
        loop {
            if metrics.num_alive_tasks() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })
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
    m.add_function(wrap_pyfunction!(wait_idle, m)?)?;
    m.add_function(wrap_pyfunction!(runtime_task_count, m)?)?;
    m.add_function(wrap_pyfunction!(sandboxes_html, m)?)?;
    Ok(())
}
