//! Read-only result objects: `SandboxStatus`, `PoolStatus`, `ExecResult`,
//! `TerminateResult`, `Metrics`, `ProcessInfo` and `FileInfo`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

/// Calls the Python enum `sandlot.<class>` with `value`.
pub fn python_enum<'py>(py: Python<'py>, class: &str, value: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("sandlot._enums")?.getattr(class)?.call1((value,))
}

/// A path's bytes as a `str`: UTF-8, undecodable bytes as lone surrogates
/// (as `os.fsdecode` does; `os.fsencode` gives the bytes back).
pub fn path_text<'py>(py: Python<'py>, path: &[u8]) -> PyResult<Bound<'py, PyString>> {
    match std::str::from_utf8(path) {
        Ok(text) => Ok(PyString::new(py, text)),
        Err(_) => PyString::from_encoded_object(
            PyBytes::new(py, path).as_any(),
            Some(c"utf-8"),
            Some(c"surrogateescape"),
        ),
    }
}

/// A sandbox as last seen: phase, exit code, reason, times, and what it was
/// created with.
#[pyclass(module = "sandlot", frozen)]
#[derive(Debug, Clone)]
pub struct SandboxStatus {
    inner: sandlot_core::SandboxStatus,
}

impl From<sandlot_core::SandboxStatus> for SandboxStatus {
    fn from(inner: sandlot_core::SandboxStatus) -> Self {
        SandboxStatus { inner }
    }
}

impl SandboxStatus {
    /// The core status inside.
    pub fn core(&self) -> &sandlot_core::SandboxStatus {
        &self.inner
    }

    fn phase_name(&self) -> &'static str {
        self.inner.phase.as_str()
    }
}

#[pymethods]
impl SandboxStatus {
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    #[getter]
    fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The phase, a `sandlot.Phase`.
    #[getter]
    pub fn phase<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        python_enum(py, "Phase", self.inner.phase.as_str())
    }

    #[getter]
    fn exit_code(&self) -> Option<i32> {
        self.inner.exit_code
    }

    /// Why the sandbox stopped, a `sandlot.TerminationReason`, once it has.
    #[getter]
    fn termination_reason<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.inner
            .termination_reason
            .map(|reason| python_enum(py, "TerminationReason", reason.as_str()))
            .transpose()
    }

    #[getter]
    fn message(&self) -> Option<&str> {
        self.inner.message.as_deref()
    }

    #[getter]
    fn created_at(&self) -> Option<Timestamp> {
        self.inner.created_at
    }

    #[getter]
    fn started_at(&self) -> Option<Timestamp> {
        self.inner.started_at
    }

    #[getter]
    fn finished_at(&self) -> Option<Timestamp> {
        self.inner.finished_at
    }

    #[getter]
    fn image(&self) -> &str {
        &self.inner.image
    }

    #[getter]
    fn tags(&self) -> BTreeMap<&str, &str> {
        self.inner.tags.iter().collect()
    }

    /// Mount path -> volume name.
    #[getter]
    fn volume_mounts(&self) -> BTreeMap<String, String> {
        self.inner
            .volume_mounts
            .iter()
            .map(|(path, mount)| (path.clone(), mount.to_string()))
            .collect()
    }

    /// Which destinations the sandbox may connect to: "internet", "none",
    /// "allowlist" or "unrestricted".
    #[getter]
    fn network(&self) -> &'static str {
        self.inner.network.as_str()
    }

    /// The allowlist's entries, as given at create.
    #[getter]
    fn allow_egress(&self) -> Vec<String> {
        self.inner.allow_egress.clone()
    }

    /// Whether it runs in a user namespace: uid 0 inside is an unprivileged
    /// uid of the node.
    #[getter]
    fn user_namespace(&self) -> bool {
        self.inner.user_namespace
    }

    /// The pool it was created from (or, while `warm`, waits in); None if
    /// the create named no pool.
    #[getter]
    fn pool(&self) -> Option<&str> {
        self.inner.pool.as_deref()
    }

    /// True for a pool's warm sandbox that no create has taken yet.
    #[getter]
    fn warm(&self) -> bool {
        self.inner.warm
    }

    /// Why a create from a pool was served by a new sandbox instead of a warm
    /// one (none fitted its options, or none was ready); None otherwise.
    #[getter]
    fn pool_fallback(&self) -> Option<&str> {
        self.inner.pool_fallback.as_deref()
    }

    fn _repr_html_(&self) -> String {
        crate::html::sandboxes_table(&[&self.inner])
    }

    fn __repr__(&self) -> String {
        let s = &self.inner;
        let mut text = format!("SandboxStatus(name='{}', phase='{}'", s.name, s.phase);
        if let Some(code) = s.exit_code {
            text.push_str(&format!(", exit_code={code}"));
        }
        if let Some(reason) = s.termination_reason {
            text.push_str(&format!(", termination_reason='{reason}'"));
        }
        if let Some(message) = &s.message {
            text.push_str(&format!(", message={message:?}"));
        }
        text.push(')');
        text
    }
}

/// A warm pool as last seen: its options and how many of its warm sandboxes
/// are ready.
#[pyclass(module = "sandlot", frozen)]
#[derive(Debug, Clone)]
pub struct PoolStatus {
    inner: sandlot_core::PoolStatus,
}

impl From<sandlot_core::PoolStatus> for PoolStatus {
    fn from(inner: sandlot_core::PoolStatus) -> Self {
        PoolStatus { inner }
    }
}

#[pymethods]
impl PoolStatus {
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    #[getter]
    fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The image of its warm sandboxes.
    #[getter]
    fn image(&self) -> &str {
        &self.inner.image
    }

    /// How many warm sandboxes the pool keeps.
    #[getter]
    fn size(&self) -> u32 {
        self.inner.size
    }

    /// Warm sandboxes of the current options, running and ready to be taken.
    #[getter]
    fn ready(&self) -> u32 {
        self.inner.ready
    }

    /// Warm sandboxes of the current options still starting.
    #[getter]
    fn starting(&self) -> u32 {
        self.inner.starting
    }

    /// Warm sandboxes of earlier options, or idle too long, not yet replaced
    /// (taken only while no current one is ready).
    #[getter]
    fn stale(&self) -> u32 {
        self.inner.stale
    }

    /// Which destinations its sandboxes may connect to: "internet", "none",
    /// "allowlist" or "unrestricted".
    #[getter]
    fn network(&self) -> &'static str {
        self.inner.network.as_str()
    }

    /// How long a warm sandbox waits to be taken before it is replaced.
    #[getter]
    fn idle_seconds(&self) -> i64 {
        self.inner.idle_seconds
    }

    /// The longest `ttl_seconds` a create from the pool may ask for.
    #[getter]
    fn max_ttl_seconds(&self) -> i64 {
        self.inner.max_ttl_seconds
    }

    #[getter]
    fn created_at(&self) -> Option<Timestamp> {
        self.inner.created_at
    }

    /// The version of its options (a hash), as on its warm sandboxes.
    #[getter]
    fn version(&self) -> &str {
        &self.inner.version
    }

    /// The options its warm sandboxes are made with (a new dict each time).
    #[getter]
    fn template<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import(pyo3::intern!(py, "json"))?
            .call_method1(pyo3::intern!(py, "loads"), (&self.inner.template,))
    }

    fn _repr_html_(&self) -> String {
        crate::html::pools_table(&[&self.inner])
    }

    fn __repr__(&self) -> String {
        let s = &self.inner;
        format!(
            "PoolStatus(name='{}', image={:?}, size={}, ready={}, starting={}, stale={})",
            s.name, s.image, s.size, s.ready, s.starting, s.stale
        )
    }
}

/// A sandbox's resources as its agent reads them (`Sandbox.metrics()`);
/// `None` where a figure could not be read.
#[pyclass(module = "sandlot", frozen)]
#[derive(Debug)]
pub struct Metrics {
    inner: sandlot_core::SandboxMetrics,
}

impl From<sandlot_core::SandboxMetrics> for Metrics {
    fn from(inner: sandlot_core::SandboxMetrics) -> Self {
        Metrics { inner }
    }
}

#[pymethods]
impl Metrics {
    /// CPU cores in use, averaged over the sampling interval.
    #[getter]
    fn cpu_cores(&self) -> Option<f64> {
        self.inner.cpu_cores
    }

    /// CPU time used since the sandbox started, in seconds.
    #[getter]
    fn cpu_seconds(&self) -> Option<f64> {
        self.inner.cpu_seconds
    }

    /// The working set: memory in use less what the kernel can reclaim at once.
    #[getter]
    fn memory_bytes(&self) -> Option<u64> {
        self.inner.memory_bytes
    }

    #[getter]
    fn memory_limit_bytes(&self) -> Option<u64> {
        self.inner.memory_limit_bytes
    }

    #[getter]
    fn processes(&self) -> Option<u64> {
        self.inner.processes
    }

    /// Bytes received since the sandbox started (loopback left out).
    #[getter]
    fn network_rx_bytes(&self) -> Option<u64> {
        self.inner.network_rx_bytes
    }

    /// Bytes sent since the sandbox started (loopback left out).
    #[getter]
    fn network_tx_bytes(&self) -> Option<u64> {
        self.inner.network_tx_bytes
    }

    /// Disk in use: what changed on the root filesystem since the sandbox
    /// started (its writable layer) and what its scratch volumes hold.
    #[getter]
    fn disk_used_bytes(&self) -> Option<u64> {
        self.inner.disk_used_bytes
    }

    /// The sandbox's disk limit (Kubernetes' `ephemeral-storage`).
    #[getter]
    fn disk_limit_bytes(&self) -> Option<u64> {
        self.inner.disk_limit_bytes
    }

    fn __repr__(&self) -> String {
        fn shown<T: std::fmt::Display>(value: Option<T>) -> String {
            value.map_or_else(|| "None".to_owned(), |v| v.to_string())
        }
        let m = &self.inner;
        format!(
            "Metrics(cpu_cores={}, memory_bytes={}, memory_limit_bytes={}, processes={}, \
             network_rx_bytes={}, network_tx_bytes={}, disk_used_bytes={}, disk_limit_bytes={})",
            shown(m.cpu_cores.map(|c| format!("{c:.3}"))),
            shown(m.memory_bytes),
            shown(m.memory_limit_bytes),
            shown(m.processes),
            shown(m.network_rx_bytes),
            shown(m.network_tx_bytes),
            shown(m.disk_used_bytes),
            shown(m.disk_limit_bytes)
        )
    }
}

/// A process the sandbox's agent keeps, as `Sandbox.processes()` lists it.
#[pyclass(module = "sandlot", frozen)]
#[derive(Debug)]
pub struct ProcessInfo {
    inner: sandlot_core::AgentProcessInfo,
}

impl From<sandlot_core::AgentProcessInfo> for ProcessInfo {
    fn from(inner: sandlot_core::AgentProcessInfo) -> Self {
        ProcessInfo { inner }
    }
}

#[pymethods]
impl ProcessInfo {
    /// Its id at the agent: `Sandbox.process(id)` attaches to it.
    #[getter]
    fn id(&self) -> u32 {
        self.inner.id
    }

    /// Its process id in the sandbox.
    #[getter]
    fn pid(&self) -> u32 {
        self.inner.pid
    }

    #[getter]
    fn command(&self) -> Vec<String> {
        self.inner.command.clone()
    }

    /// True until it ends.
    #[getter]
    fn running(&self) -> bool {
        self.inner.exit_code.is_none()
    }

    /// Its exit code once it ended (128 + the signal if a signal ended it).
    #[getter]
    fn exit_code(&self) -> Option<i32> {
        self.inner.exit_code
    }

    /// Started with `detach=True`.
    #[getter]
    fn detached(&self) -> bool {
        self.inner.detached
    }

    #[getter]
    fn tty(&self) -> bool {
        self.inner.tty
    }

    /// Bytes it has written to stdout so far (the agent keeps the last 4 MiB).
    #[getter]
    fn stdout_size(&self) -> u64 {
        self.inner.stdout_end
    }

    /// Bytes it has written to stderr so far (the agent keeps the last 4 MiB).
    #[getter]
    fn stderr_size(&self) -> u64 {
        self.inner.stderr_end
    }

    fn __repr__(&self) -> String {
        let state = match self.inner.exit_code {
            None => "running".to_owned(),
            Some(code) => format!("exit_code={code}"),
        };
        format!(
            "ProcessInfo(id={}, pid={}, {state}, command={:?})",
            self.inner.id, self.inner.pid, self.inner.command
        )
    }
}

/// The output and exact exit code of a finished command. A non-zero exit code
/// is a result, not an error.
#[pyclass(module = "sandlot", frozen)]
#[derive(Debug)]
pub struct ExecResult {
    inner: sandlot_core::ExecResult,
}

impl From<sandlot_core::ExecResult> for ExecResult {
    fn from(inner: sandlot_core::ExecResult) -> Self {
        ExecResult { inner }
    }
}

#[pymethods]
impl ExecResult {
    /// stdout decoded as UTF-8 (undecodable bytes replaced; see `stdout_bytes`).
    #[getter]
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.inner.stdout).into_owned()
    }

    /// stderr decoded as UTF-8 (undecodable bytes replaced; see `stderr_bytes`).
    #[getter]
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.inner.stderr).into_owned()
    }

    #[getter]
    fn stdout_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.stdout)
    }

    #[getter]
    fn stderr_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.stderr)
    }

    #[getter]
    fn exit_code(&self) -> i32 {
        self.inner.exit_code
    }

    /// True when the exit code is 0.
    #[getter]
    fn ok(&self) -> bool {
        self.inner.exit_code == 0
    }

    /// True when output beyond `max_output` was dropped from stdout or stderr.
    #[getter]
    fn truncated(&self) -> bool {
        self.inner.truncated
    }

    /// How the command ran: "agent" (through the sandbox's agent) or
    /// "kubernetes" (a Kubernetes exec of its own).
    #[getter]
    fn path(&self) -> &'static str {
        if self.inner.through_agent {
            "agent"
        } else {
            "kubernetes"
        }
    }

    fn _repr_html_(&self) -> String {
        crate::html::exec_result(&self.inner)
    }

    fn __repr__(&self) -> String {
        let preview = |bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes);
            if text.chars().count() > 60 {
                format!("{:?}...", text.chars().take(60).collect::<String>())
            } else {
                format!("{text:?}")
            }
        };
        format!(
            "ExecResult(exit_code={}, stdout={}, stderr={}{})",
            self.inner.exit_code,
            preview(&self.inner.stdout),
            preview(&self.inner.stderr),
            if self.inner.truncated {
                ", truncated=True"
            } else {
                ""
            }
        )
    }
}

/// What a bulk terminate did to one sandbox.
#[pyclass(module = "sandlot", frozen)]
#[derive(Debug)]
pub struct TerminateResult {
    name: String,
    terminated: bool,
    status: Option<SandboxStatus>,
    error: Option<String>,
}

impl From<sandlot_core::TerminateOutcome> for TerminateResult {
    fn from(outcome: sandlot_core::TerminateOutcome) -> Self {
        TerminateResult {
            terminated: outcome.terminated(),
            name: outcome.name,
            status: outcome.status.map(SandboxStatus::from),
            error: outcome.error.map(|e| e.to_string()),
        }
    }
}

#[pymethods]
impl TerminateResult {
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// True if the sandbox is terminated now (also if it already was).
    #[getter]
    fn terminated(&self) -> bool {
        self.terminated
    }

    /// The status afterwards; None if it could not be read.
    #[getter]
    fn status(&self) -> Option<SandboxStatus> {
        self.status.clone()
    }

    /// Why it was not terminated: an error, or None.
    #[getter]
    fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    fn __repr__(&self) -> String {
        match (&self.error, &self.status) {
            (Some(error), _) => format!(
                "TerminateResult(name='{}', terminated=False, error={error:?})",
                self.name
            ),
            (None, Some(status)) => format!(
                "TerminateResult(name='{}', terminated={}, phase='{}')",
                self.name,
                if self.terminated { "True" } else { "False" },
                status.phase_name()
            ),
            (None, None) => format!("TerminateResult(name='{}')", self.name),
        }
    }
}

/// One entry of a sandbox's or a volume's files, as `stat()` and `list()`
/// give it. A symlink is described itself, not what it points to.
#[pyclass(module = "sandlot", frozen)]
#[derive(Debug)]
pub struct FileInfo {
    inner: sandlot_core::FileEntry,
}

impl From<sandlot_core::FileEntry> for FileInfo {
    fn from(inner: sandlot_core::FileEntry) -> Self {
        FileInfo { inner }
    }
}

/// The last component of `path` ("/" for the root).
fn last_component(path: &[u8]) -> &[u8] {
    let end = path.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    if end == 0 {
        return if path.is_empty() { b"" } else { b"/" };
    }
    let trimmed = &path[..end];
    let start = trimmed
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(0, |i| i + 1);
    &trimmed[start..]
}

#[pymethods]
impl FileInfo {
    /// `stat()`: the path asked about; `list()`: the path below the listed
    /// directory, components joined by "/". Bytes that are not UTF-8 become
    /// lone surrogates (`os.fsencode(path)` gives them back).
    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        path_text(py, &self.inner.path)
    }

    /// The path's bytes.
    #[getter]
    fn path_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.path)
    }

    /// The path's last component.
    #[getter]
    fn name<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        path_text(py, last_component(&self.inner.path))
    }

    /// "file", "directory", "symlink" or "other" (a fifo, socket or device).
    #[getter]
    #[pyo3(name = "type")]
    fn kind(&self) -> &'static str {
        self.inner.kind.as_str()
    }

    /// Bytes, for a file; the length of its target, for a symlink; else 0.
    #[getter]
    fn size(&self) -> u64 {
        self.inner.size
    }

    /// Permission bits (`st_mode & 0o7777`).
    #[getter]
    fn mode(&self) -> u32 {
        self.inner.mode
    }

    /// Last modification, in seconds since the epoch.
    #[getter]
    fn mtime(&self) -> f64 {
        let (seconds, nanos) = self.inner.mtime;
        seconds as f64 + f64::from(nanos) / 1e9
    }

    /// A symlink's target (decoded as `path` is); `None` for anything else.
    #[getter]
    fn target<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyString>>> {
        self.inner
            .target
            .as_deref()
            .map(|target| path_text(py, target))
            .transpose()
    }

    #[getter]
    fn is_dir(&self) -> bool {
        self.inner.kind == sandlot_core::EntryKind::Directory
    }

    #[getter]
    fn is_file(&self) -> bool {
        self.inner.kind == sandlot_core::EntryKind::File
    }

    #[getter]
    fn is_symlink(&self) -> bool {
        self.inner.kind == sandlot_core::EntryKind::Symlink
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let mut text = format!(
            "FileInfo(path={}, type='{}', size={}, mode=0o{:o}",
            path_text(py, &self.inner.path)?.repr()?,
            self.inner.kind.as_str(),
            self.inner.size,
            self.inner.mode
        );
        if let Some(target) = self.target(py)? {
            text.push_str(&format!(", target={}", target.repr()?));
        }
        text.push(')');
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::last_component;

    #[test]
    fn last_components() {
        assert_eq!(last_component(b"a/b/c"), b"c");
        assert_eq!(last_component(b"/etc/"), b"etc");
        assert_eq!(last_component(b"name"), b"name");
        assert_eq!(last_component(b"/"), b"/");
        assert_eq!(last_component(b"//"), b"/");
        assert_eq!(last_component(b"."), b".");
    }
}
