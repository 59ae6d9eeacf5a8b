//! `AsyncSandboxes` (the collection) and `AsyncSandbox` (one sandbox).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyAny, PyBytes, PyString};
use sandlot_core::{
    Client, Error, ExecOptions, ListFilter, LogOptions, Mount, Phase, Resources, SandboxRequest,
    SandboxSpec, Selection, SpawnOptions,
};

use crate::client::LazyClient;
use crate::errors::exec_failed;
use crate::errors::{IntoPyResult, to_py};
use crate::status::{ExecResult, SandboxStatus, TerminateResult};
use crate::stream::{AsyncProcess, LineStream};
use futures::FutureExt;

/// The sandboxes of a client's namespace.
#[pyclass(module = "sandlot", frozen)]
#[derive(Debug)]
pub struct AsyncSandboxes {
    connection: Arc<LazyClient>,
}

impl AsyncSandboxes {
    pub fn new(connection: Arc<LazyClient>) -> Self {
        AsyncSandboxes { connection }
    }
}

#[pymethods]
impl AsyncSandboxes {
    /// Creates a sandbox from `image` and returns it (usually still queued or
    /// creating; `await sandbox.wait("running")` to use it). Without `command`
    /// and `args` it idles, accepting exec, until terminated or `ttl_seconds`.
    #[pyo3(signature = (image, *, name=None, command=None, args=None, env=None, tags=None, volume_mounts=None, resources=None, ttl_seconds=None, run_as_user=None, read_only_root_filesystem=false, runtime_class=None))]
    #[allow(clippy::too_many_arguments)]
    fn create<'py>(
        &self,
        py: Python<'py>,
        image: String,
        name: Option<String>,
        command: Option<Vec<String>>,
        args: Option<Vec<String>>,
        env: Option<BTreeMap<String, String>>,
        tags: Option<BTreeMap<String, String>>,
        volume_mounts: Option<BTreeMap<String, String>>,
        resources: Option<BTreeMap<String, String>>,
        ttl_seconds: Option<i64>,
        run_as_user: Option<i64>,
        read_only_root_filesystem: bool,
        runtime_class: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let volume_mounts = volume_mounts
            .unwrap_or_default()
            .into_iter()
            .map(|(path, mount)| {
                let field = format!("volume_mounts[{path:?}]");
                Ok((path, Mount::parse(&field, &mount)?))
            })
            .collect::<sandlot_core::Result<_>>()
            .into_py_result()?;
        let request = SandboxRequest {
            image,
            name,
            command,
            args,
            env: env.unwrap_or_default(),
            tags: tags.unwrap_or_default(),
            volume_mounts,
            resources: resources_from(resources.unwrap_or_default())?,
            ttl_seconds,
            run_as_user,
            read_only_root_filesystem,
            runtime_class,
        };
        // Checked here, so bad input fails before any connection is made.
        let spec = SandboxSpec::try_from(request).into_py_result()?;
        let connection = self.connection.clone();
        crate::bridge::awaitable(py, async move {
            let client = connection.get().await?;
            let status = client.create_sandbox(&spec).await.into_py_result()?;
            Ok(AsyncSandbox::new(client, status))
        })
    }

    /// The sandbox named `name`; raises `NotFoundError` if there is none.
    fn get<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let connection = self.connection.clone();
        crate::bridge::awaitable(py, async move {
            let client = connection.get().await?;
            let status = client.get_sandbox(&name).await.into_py_result()?;
            Ok(AsyncSandbox::new(client, status))
        })
    }

    /// The sandboxes in `phase` (one phase or several) carrying all of `tags`,
    /// oldest first.
    #[pyo3(signature = (*, phase=None, tags=None))]
    fn list<'py>(
        &self,
        py: Python<'py>,
        phase: Option<&Bound<'py, PyAny>>,
        tags: Option<BTreeMap<String, String>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let filter = ListFilter {
            phases: match phase {
                Some(phase) => phases_from(phase)?,
                None => Vec::new(),
            },
            tags: tags.unwrap_or_default(),
        };
        let connection = self.connection.clone();
        crate::bridge::awaitable(py, async move {
            let client = connection.get().await?;
            let statuses = client.list_sandboxes(&filter).await.into_py_result()?;
            Ok(statuses
                .into_iter()
                .map(|status| AsyncSandbox::new(client.clone(), status))
                .collect::<Vec<_>>())
        })
    }

    /// Waits until every sandbox in `sandboxes` (sandboxes or names) is in
    /// `phase` (one or several) and returns their statuses in order. All waits
    /// read the client's one shared watch. Raises `PhaseUnreachableError` as soon
    /// as one ends elsewhere, `sandlot.TimeoutError` after `timeout` seconds.
    #[pyo3(signature = (sandboxes, phase, *, timeout=300.0))]
    fn wait_all<'py>(
        &self,
        py: Python<'py>,
        sandboxes: &Bound<'py, PyAny>,
        phase: &Bound<'py, PyAny>,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let names = names_from(sandboxes)?;
        let phases = phases_from(phase)?;
        let timeout = seconds("timeout", timeout)?;
        let connection = self.connection.clone();
        crate::bridge::awaitable(py, async move {
            let client = connection.get().await?;
            let statuses = client
                .wait_sandboxes(&names, &phases, timeout)
                .await
                .into_py_result()?;
            Ok(statuses
                .into_iter()
                .map(SandboxStatus::from)
                .collect::<Vec<_>>())
        })
    }

    /// Terminates many sandboxes at once, a bounded number at a time: those
    /// named, or those carrying `tags` and/or in `phase`, or `all`. Returns one
    /// `TerminateResult` per sandbox; one that already ended is left as it is.
    #[pyo3(signature = (names=None, *, tags=None, phase=None, all=false))]
    fn terminate_many<'py>(
        &self,
        py: Python<'py>,
        names: Option<&Bound<'py, PyAny>>,
        tags: Option<BTreeMap<String, String>>,
        phase: Option<&Bound<'py, PyAny>>,
        all: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let selection = selection_from(names, tags, phase, all)?;
        let connection = self.connection.clone();
        crate::bridge::awaitable(py, async move {
            let client = connection.get().await?;
            let outcomes = client
                .terminate_sandboxes(&selection)
                .await
                .into_py_result()?;
            Ok(outcomes
                .into_iter()
                .map(TerminateResult::from)
                .collect::<Vec<_>>())
        })
    }

    /// Deletes the records of ended sandboxes (succeeded, failed, terminated):
    /// those named, or carrying `tags`, or `all`; with `older_than`, only those
    /// that ended at least that many seconds ago. Their names are free again.
    /// Returns the names purged; active sandboxes are never purged.
    #[pyo3(signature = (names=None, *, tags=None, older_than=None, all=false))]
    fn purge<'py>(
        &self,
        py: Python<'py>,
        names: Option<&Bound<'py, PyAny>>,
        tags: Option<BTreeMap<String, String>>,
        older_than: Option<f64>,
        all: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let selection = selection_from(names, tags, None, all)?;
        let older_than = older_than.map(|s| seconds("older_than", s)).transpose()?;
        let connection = self.connection.clone();
        crate::bridge::awaitable(py, async move {
            let client = connection.get().await?;
            client
                .purge_sandboxes(&selection, older_than)
                .await
                .into_py_result()
        })
    }

    fn __repr__(&self) -> String {
        "AsyncSandboxes()".to_owned()
    }
}

/// One sandbox. `status` is the last status seen; `refresh()` reads it anew.
#[pyclass(module = "sandlot", frozen)]
#[derive(Debug)]
pub struct AsyncSandbox {
    client: Client,
    name: String,
    status: Arc<Mutex<sandlot_core::SandboxStatus>>,
}

impl AsyncSandbox {
    fn new(client: Client, status: sandlot_core::SandboxStatus) -> Self {
        AsyncSandbox {
            client,
            name: status.name.clone(),
            status: Arc::new(Mutex::new(status)),
        }
    }

    fn last_status(&self) -> sandlot_core::SandboxStatus {
        self.status
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

/// Stores `status` as the sandbox's last seen and returns it for Python.
fn remember(
    slot: &Mutex<sandlot_core::SandboxStatus>,
    status: sandlot_core::SandboxStatus,
) -> SandboxStatus {
    *slot.lock().unwrap_or_else(|poison| poison.into_inner()) = status.clone();
    SandboxStatus::from(status)
}

#[pymethods]
impl AsyncSandbox {
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn namespace(&self) -> &str {
        self.client.namespace()
    }

    /// The status as last seen (no request is made).
    #[getter]
    fn status(&self) -> SandboxStatus {
        SandboxStatus::from(self.last_status())
    }

    /// The phase as last seen (no request is made).
    #[getter]
    fn phase<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.status().into_pyobject(py)?.getattr("phase")
    }

    /// Reads the current status.
    fn refresh<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (client, name, slot) = (self.client.clone(), self.name.clone(), self.status.clone());
        crate::bridge::awaitable(py, async move {
            let status = client.get_sandbox(&name).await.into_py_result()?;
            Ok(remember(&slot, status))
        })
    }

    /// Waits until the sandbox is in `phase` (a phase or a list of phases) and
    /// returns its status. Raises `PhaseUnreachableError` as soon as it ends in
    /// another phase, and `sandlot.TimeoutError` after `timeout` seconds.
    #[pyo3(signature = (phase, *, timeout=300.0))]
    fn wait<'py>(
        &self,
        py: Python<'py>,
        phase: &Bound<'py, PyAny>,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let phases = phases_from(phase)?;
        let timeout = seconds("timeout", timeout)?;
        let (client, name, slot) = (self.client.clone(), self.name.clone(), self.status.clone());
        crate::bridge::awaitable(py, async move {
            match client.wait_sandbox(&name, &phases, timeout).await {
                Ok(status) => Ok(remember(&slot, status)),
                Err(Error::PhaseUnreachable { status, wanted }) => {
                    remember(&slot, (*status).clone());
                    Err(to_py(Error::PhaseUnreachable { status, wanted }))
                }
                Err(err) => Err(to_py(err)),
            }
        })
    }

    /// Runs `command` in the running sandbox and returns its `ExecResult`,
    /// stdout and stderr collected whole. A string is run by `/bin/sh -c`.
    /// `stdin` (str or bytes) is written to the command's input; `env` adds
    /// variables; `workdir` sets its directory. A non-zero exit code is a
    /// result, unless `check`: then `ExecError` is raised, carrying it.
    /// After `timeout` seconds `sandlot.TimeoutError` is raised; the command
    /// itself keeps running in the sandbox (Kubernetes cannot stop an exec).
    #[pyo3(signature = (command, *, stdin=None, timeout=None, env=None, workdir=None, check=false))]
    #[allow(clippy::too_many_arguments)]
    fn exec<'py>(
        &self,
        py: Python<'py>,
        command: &Bound<'py, PyAny>,
        stdin: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
        env: Option<BTreeMap<String, String>>,
        workdir: Option<String>,
        check: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let command = command_from(command)?;
        let options = ExecOptions {
            stdin: stdin.map(bytes_from).transpose()?,
            timeout: timeout.map(|t| seconds("timeout", t)).transpose()?,
            env: env.unwrap_or_default().into_iter().collect(),
            workdir,
        };
        let (client, name) = (self.client.clone(), self.name.clone());
        crate::bridge::awaitable(py, async move {
            let result = client
                .exec_sandbox(&name, &command, &options)
                .await
                .into_py_result()?;
            if check && result.exit_code != 0 {
                return Err(exec_failed(&name, &command, result));
            }
            Ok(ExecResult::from(result))
        })
    }

    /// Starts `command` and returns an `AsyncProcess` whose stdout and stderr
    /// stream as the command writes them. `stdin=True` opens its input for
    /// `write()`; `tty=True` runs it on a terminal (stderr merged into stdout).
    /// After `timeout` seconds, `wait()` raises `sandlot.TimeoutError`.
    #[pyo3(signature = (command, *, stdin=false, tty=false, timeout=None, env=None, workdir=None))]
    #[allow(clippy::too_many_arguments)]
    fn spawn<'py>(
        &self,
        py: Python<'py>,
        command: &Bound<'py, PyAny>,
        stdin: bool,
        tty: bool,
        timeout: Option<f64>,
        env: Option<BTreeMap<String, String>>,
        workdir: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let command = command_from(command)?;
        let options = SpawnOptions {
            stdin,
            tty,
            env: env.unwrap_or_default().into_iter().collect(),
            workdir,
        };
        let timeout = timeout.map(|t| seconds("timeout", t)).transpose()?;
        let (client, name) = (self.client.clone(), self.name.clone());
        crate::bridge::awaitable(py, async move {
            let process = client
                .spawn_exec(&name, &command, &options)
                .await
                .into_py_result()?;
            Python::attach(|py| AsyncProcess::new(py, process, timeout))
        })
    }

    /// The sandbox's log, line by line, as an async iterator. With `follow`
    /// (the default) it waits for the sandbox to start and ends by itself when
    /// the sandbox ends, every line delivered.
    #[pyo3(signature = (*, follow=true, tail=None, since=None, timestamps=false))]
    fn stream_logs(
        &self,
        follow: bool,
        tail: Option<u64>,
        since: Option<f64>,
        timestamps: bool,
    ) -> PyResult<LineStream> {
        let options = LogOptions {
            tail_lines: tail,
            since_seconds: since
                .map(|s| seconds("since", s).map(|d| d.as_secs().max(1)))
                .transpose()?,
            timestamps,
        };
        let (client, name) = (self.client.clone(), self.name.clone());
        Ok(LineStream::new(
            async move { client.stream_logs(&name, &options, follow).await }.boxed(),
        ))
    }

    /// The sandbox's log text (its command's stdout and stderr), also after it
    /// ended: the last `tail` lines, lines of the last `since` seconds, with
    /// `timestamps` prefixed if asked.
    #[pyo3(signature = (*, tail=None, since=None, timestamps=false))]
    fn logs<'py>(
        &self,
        py: Python<'py>,
        tail: Option<u64>,
        since: Option<f64>,
        timestamps: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = LogOptions {
            tail_lines: tail,
            since_seconds: since
                .map(|s| seconds("since", s).map(|d| d.as_secs().max(1)))
                .transpose()?,
            timestamps,
        };
        let (client, name) = (self.client.clone(), self.name.clone());
        crate::bridge::awaitable(py, async move {
            client.sandbox_logs(&name, &options).await.into_py_result()
        })
    }

    /// Terminates the sandbox: its phase is `terminated` from now on, the
    /// workload stops within seconds, and the record (logs, name) stays.
    fn terminate<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (client, name, slot) = (self.client.clone(), self.name.clone(), self.status.clone());
        crate::bridge::awaitable(py, async move {
            let status = client.terminate_sandbox(&name).await.into_py_result()?;
            Ok(remember(&slot, status))
        })
    }

    fn _repr_html_(&self) -> String {
        crate::html::sandboxes_table(&[&self.last_status()])
    }

    /// `async with await client.sandboxes.create(...) as sandbox:` terminates
    /// the sandbox when the block ends, also on an exception.
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
        let (client, name, slot) = (self.client.clone(), self.name.clone(), self.status.clone());
        crate::bridge::awaitable(py, async move {
            match client.terminate_sandbox(&name).await {
                Ok(status) => {
                    remember(&slot, status);
                    Ok(false)
                }
                // Already purged by the block: nothing left to terminate.
                Err(Error::NotFound { .. }) => Ok(false),
                Err(err) => Err(to_py(err)),
            }
        })
    }

    fn __repr__(&self) -> String {
        let status = self.last_status();
        format!(
            "AsyncSandbox(name='{}', phase='{}')",
            self.name, status.phase
        )
    }
}

/// Names from an iterable of names or sandboxes.
fn names_from(value: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    let invalid = || {
        to_py(Error::invalid(
            "names",
            "must be a list of sandbox names or sandboxes",
        ))
    };
    if value.is_instance_of::<PyString>() {
        return Err(invalid());
    }
    value
        .try_iter()
        .map_err(|_| invalid())?
        .map(|item| {
            let item = item?;
            match item.cast::<AsyncSandbox>() {
                Ok(sandbox) => Ok(sandbox.get().name.clone()),
                Err(_) => item.extract::<String>().map_err(|_| invalid()),
            }
        })
        .collect()
}

fn selection_from(
    names: Option<&Bound<'_, PyAny>>,
    tags: Option<BTreeMap<String, String>>,
    phase: Option<&Bound<'_, PyAny>>,
    all: bool,
) -> PyResult<Selection> {
    let selection = Selection {
        names: names.map(names_from).transpose()?.unwrap_or_default(),
        tags: tags.unwrap_or_default(),
        phases: phase.map(phases_from).transpose()?.unwrap_or_default(),
        all,
    };
    Ok(selection)
}

fn resources_from(mut given: BTreeMap<String, String>) -> PyResult<Resources> {
    let resources = Resources {
        cpu: given.remove("cpu"),
        memory: given.remove("memory"),
    };
    if let Some(key) = given.keys().next() {
        return Err(to_py(Error::invalid(
            format!("resources[{key:?}]"),
            "only \"cpu\" and \"memory\" can be set",
        )));
    }
    Ok(resources)
}

/// One phase (a `Phase` or its name) or an iterable of them.
fn phases_from(value: &Bound<'_, PyAny>) -> PyResult<Vec<Phase>> {
    let names: Vec<String> = if value.is_instance_of::<PyString>() {
        vec![value.extract()?]
    } else {
        value
            .try_iter()
            .and_then(|items| items.map(|item| item?.extract::<String>()).collect())
            .map_err(|_| {
                to_py(Error::invalid(
                    "phase",
                    "must be a phase name or a list of phase names",
                ))
            })?
    };
    names
        .iter()
        .map(|name| name.parse().into_py_result())
        .collect()
}

/// A list of strings, or one string run by `/bin/sh -c`.
fn command_from(value: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if value.is_instance_of::<PyString>() {
        return Ok(vec!["/bin/sh".into(), "-c".into(), value.extract()?]);
    }
    value.extract::<Vec<String>>().map_err(|_| {
        to_py(Error::invalid(
            "command",
            "must be a list of strings or one shell command string",
        ))
    })
}

pub fn bytes_from(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(text.to_str()?.as_bytes().to_vec());
    }
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return Ok(bytes.as_bytes().to_vec());
    }
    Err(to_py(Error::invalid("stdin", "must be str or bytes")))
}

pub fn seconds(field: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        to_py(Error::invalid(
            field,
            format!("{value} is not a number of seconds >= 0"),
        ))
    })
}
