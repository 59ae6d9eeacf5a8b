//! sandlot's Python bindings (`sandlot._native`): conversions, errors and the
//! bridge only. Every operation is one `sandlot_core` future, declared once on
//! a base class shared by the async and the sync class of its object
//! ([`twins`]), and handed to Python by [`bridge::Mode::run`].

use pyo3::prelude::*;

mod bridge;
mod client;
mod errors;
mod files;
mod html;
mod inputs;
mod pool;
mod port;
mod process;
mod results;
mod sandbox;
mod twins;
mod volume;

/// The allocator of every Rust allocation in this module, the CLI's (through
/// [`run_cli`]) included. Python's objects stay on Python's allocator: values
/// are copied into them, so no memory passes from one allocator to the other.
/// Chosen for its CPU cost against glibc's malloc on bulk work (figures in
/// benchmarks/results.md, scale).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs the `sandlot` command line with `argv` (program name first) and returns
/// its exit code. The GIL is released while it runs.
#[pyfunction]
fn run_cli(py: Python<'_>, argv: Vec<std::ffi::OsString>) -> i32 {
    py.detach(|| sandlot_cli::run(argv))
}

/// An HTML table of sandbox statuses (for lists shown in notebooks).
#[pyfunction]
fn _sandboxes_html(statuses: Vec<PyRef<'_, results::SandboxStatus>>) -> String {
    let cores: Vec<&sandlot_core::SandboxStatus> = statuses.iter().map(|s| s.core()).collect();
    html::sandboxes_table(&cores)
}

#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<client::AsyncClient>()?;
    m.add_class::<client::SyncClient>()?;
    m.add_class::<sandbox::AsyncSandboxes>()?;
    m.add_class::<sandbox::SyncSandboxes>()?;
    m.add_class::<sandbox::AsyncSandbox>()?;
    m.add_class::<sandbox::SyncSandbox>()?;
    m.add_class::<process::AsyncProcess>()?;
    m.add_class::<process::SyncProcess>()?;
    m.add_class::<process::ByteStream>()?;
    m.add_class::<process::LineStream>()?;
    m.add_class::<files::AsyncFiles>()?;
    m.add_class::<files::SyncFiles>()?;
    m.add_class::<files::AsyncFileUpload>()?;
    m.add_class::<files::SyncFileUpload>()?;
    m.add_class::<files::FileChunks>()?;
    m.add_class::<sandbox::MetricsStream>()?;
    m.add_class::<volume::AsyncVolumes>()?;
    m.add_class::<volume::SyncVolumes>()?;
    m.add_class::<volume::AsyncVolume>()?;
    m.add_class::<volume::SyncVolume>()?;
    m.add_class::<pool::AsyncPools>()?;
    m.add_class::<pool::SyncPools>()?;
    m.add_class::<results::SandboxStatus>()?;
    m.add_class::<results::PoolStatus>()?;
    m.add_class::<port::AsyncPortForward>()?;
    m.add_class::<port::SyncPortForward>()?;
    m.add_class::<port::ExposedPort>()?;
    m.add_class::<results::ExecResult>()?;
    m.add_class::<results::ProcessInfo>()?;
    m.add_class::<results::Metrics>()?;
    m.add_class::<results::TerminateResult>()?;
    m.add_class::<results::FileInfo>()?;
    m.add_function(wrap_pyfunction!(run_cli, m)?)?;
    m.add_function(wrap_pyfunction!(_sandboxes_html, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::_quiesce, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::hooks::_yield_once, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::hooks::_runtime_task_count, m)?)?;
    m.add_function(wrap_pyfunction!(
        bridge::hooks::_set_launch_retry_window,
        m
    )?)?;
    m.add_function(wrap_pyfunction!(client::_stop_pod_watch, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::hooks::_set_follow_idle, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::hooks::_set_file_idle, m)?)?;
    m.add_function(wrap_pyfunction!(bridge::hooks::_set_stale_program_age, m)?)?;
    Ok(())
}
