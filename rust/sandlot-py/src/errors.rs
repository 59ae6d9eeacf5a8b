//! Core errors as the exceptions of `sandlot.errors`. The classes are defined in
//! Python (so they can also derive from builtins such as `TimeoutError`); each
//! carries the error's data as attributes. Built only where the GIL is held
//! anyway: see [`crate::bridge`].

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use sandlot_core::Error;

use crate::results::{ExecResult, SandboxStatus};

/// The `sandlot` exception for a core error.
pub fn core_error(py: Python<'_>, err: &Error) -> PyErr {
    build(py, err).unwrap_or_else(|failure| failure)
}

fn build(py: Python<'_>, err: &Error) -> PyResult<PyErr> {
    let attrs = PyDict::new(py);
    if let Error::Create { name, .. } = err {
        attrs.set_item("sandbox_name", name)?;
    }
    let underlying = err.underlying();
    let class = match underlying {
        Error::NotFound {
            kind,
            name,
            namespace,
        }
        | Error::NameConflict {
            kind,
            name,
            namespace,
        } => {
            attrs.set_item("kind", kind.to_string())?;
            attrs.set_item("name", name)?;
            attrs.set_item("namespace", namespace)?;
            if matches!(underlying, Error::NotFound { .. }) {
                "NotFoundError"
            } else {
                "NameConflictError"
            }
        }
        Error::InvalidSpec { field, rule } => {
            attrs.set_item("field", field)?;
            attrs.set_item("rule", rule)?;
            "InvalidSpecError"
        }
        Error::NotRunning { name, phase } => {
            attrs.set_item("name", name)?;
            attrs.set_item("phase", phase)?;
            "SandboxNotRunningError"
        }
        Error::PortNotOpen { name, port } => {
            attrs.set_item("name", name)?;
            attrs.set_item("port", *port)?;
            "PortNotOpenError"
        }
        Error::PhaseUnreachable { status, wanted } => {
            attrs.set_item("status", SandboxStatus::from((**status).clone()))?;
            attrs.set_item("wanted", wanted)?;
            "PhaseUnreachableError"
        }
        Error::Timeout { what, after } => {
            attrs.set_item("what", what)?;
            attrs.set_item("after", after.as_secs_f64())?;
            "TimeoutError"
        }
        Error::ExecTimeout {
            what,
            after,
            output,
        } => {
            attrs.set_item("what", what)?;
            attrs.set_item("after", after.as_secs_f64())?;
            attrs.set_item("stdout", String::from_utf8_lossy(&output.stdout))?;
            attrs.set_item("stderr", String::from_utf8_lossy(&output.stderr))?;
            attrs.set_item("stdout_bytes", PyBytes::new(py, &output.stdout))?;
            attrs.set_item("stderr_bytes", PyBytes::new(py, &output.stderr))?;
            attrs.set_item("truncated", output.truncated)?;
            "TimeoutError"
        }
        Error::VolumeInUse { name, sandboxes } => {
            attrs.set_item("name", name)?;
            attrs.set_item("sandboxes", sandboxes.clone())?;
            "VolumeInUseError"
        }
        Error::VolumeDeleting { name, namespace } => {
            attrs.set_item("kind", "volume")?;
            attrs.set_item("name", name)?;
            attrs.set_item("namespace", namespace)?;
            "VolumeDeletingError"
        }
        Error::QuotaExceeded { namespace, .. } => {
            attrs.set_item("namespace", namespace)?;
            "QuotaExceededError"
        }
        // Not met: `underlying()` looks through every create's context.
        Error::Create { .. } => "SandlotError",
        Error::PermissionDenied {
            namespace,
            namespace_source,
            ..
        } => {
            attrs.set_item("namespace", namespace)?;
            attrs.set_item("namespace_source", namespace_source.to_string())?;
            "PermissionDeniedError"
        }
        Error::ClusterUnreachable { .. } => "ClusterUnreachableError",
        Error::Exec { name, .. } => {
            attrs.set_item("name", name)?;
            "ExecError"
        }
        Error::File {
            target,
            path_bytes,
            errno,
            message,
            ..
        } => {
            let path = crate::results::path_text(py, path_bytes)?;
            attrs.set_item("target", target)?;
            attrs.set_item("path", &path)?;
            attrs.set_item("path_bytes", PyBytes::new(py, path_bytes))?;
            attrs.set_item("errno", *errno)?;
            attrs.set_item("strerror", message)?;
            attrs.set_item("filename", path)?;
            file_error_class(*errno)
        }
        Error::LogStream { name, .. } => {
            attrs.set_item("name", name)?;
            "LogStreamError"
        }
        Error::Api { status, reason, .. } => {
            attrs.set_item("status", *status)?;
            attrs.set_item("reason", reason)?;
            "ApiError"
        }
    };
    raise(py, class, err.to_string(), &attrs)
}

/// The `sandlot.errors` class for a file error with `errno` (Linux's numbers;
/// the same on this machine for these).
fn file_error_class(errno: i32) -> &'static str {
    match errno {
        1 | 13 => "PermissionError",     // EPERM, EACCES
        2 => "FileNotFoundError",        // ENOENT
        17 => "FileExistsError",         // EEXIST
        20 => "NotADirectoryError",      // ENOTDIR
        21 => "IsADirectoryError",       // EISDIR
        30 => "ReadOnlyFileSystemError", // EROFS
        _ => "SandboxFileError",
    }
}

/// The `ExecError` of `exec(..., check=True)`: the command ran and exited non-zero.
pub fn exec_failed(
    py: Python<'_>,
    name: &str,
    command: &[String],
    result: sandlot_core::ExecResult,
) -> PyErr {
    let message = format!(
        "command {:?} in sandbox {name:?} exited with code {}",
        command.join(" "),
        result.exit_code
    );
    let build = || -> PyResult<PyErr> {
        let attrs = PyDict::new(py);
        attrs.set_item("name", name)?;
        attrs.set_item("result", ExecResult::from(result))?;
        raise(py, "ExecError", message, &attrs)
    };
    build().unwrap_or_else(|failure| failure)
}

/// An instance of `sandlot.errors.<class>(message, **attrs)`.
fn raise(
    py: Python<'_>,
    class: &str,
    message: String,
    attrs: &Bound<'_, PyDict>,
) -> PyResult<PyErr> {
    let exception = py
        .import(pyo3::intern!(py, "sandlot.errors"))?
        .getattr(class)?
        .call((message,), Some(attrs))?;
    Ok(PyErr::from_value(exception))
}

/// Shows `message` as a `sandlot.errors.SandlotWarning`; an error if the
/// warning filters turn it into one.
pub fn warn(py: Python<'_>, message: &str) -> PyResult<()> {
    let class = py
        .import(pyo3::intern!(py, "sandlot.errors"))?
        .getattr(pyo3::intern!(py, "SandlotWarning"))?;
    let message = std::ffi::CString::new(message.replace('\0', " "))?;
    PyErr::warn(py, &class, &message, 1)
}
