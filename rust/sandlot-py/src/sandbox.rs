//! The sandboxes of a namespace (`AsyncSandboxes` / `Sandboxes`) and one
//! sandbox (`AsyncSandbox` / `Sandbox`). Every operation is declared once, on
//! the shared base class; see [`crate::twins`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use pyo3::prelude::*;
use pyo3::types::PyAny;
use sandlot_core::{
    Client, DEFAULT_MAX_OUTPUT, Error, ExecOptions, ExposeRequest, FileTarget, ListFilter,
    LogOptions, Mount, SandboxRequest, SandboxSpec, SpawnOptions, Ttl, check_local_port,
    check_port,
};

use crate::bridge::{Failure, Mode, NONE, Outcome};
use crate::client::LazyClient;
use crate::files::FilesBase;
use crate::inputs::{self, TtlArg};
use crate::port::{ExposedPort, PortForwardBase};
use crate::process::{Bytes, LineStream, ProcessBase};
use crate::results::{ExecResult, Metrics, ProcessInfo, SandboxStatus, TerminateResult};
use crate::twins::{InMode, class_name, twins};

/// What `AsyncSandboxes` and `Sandboxes` share: the sandboxes of a client's namespace.
#[pyclass(module = "sandlot._native", name = "_Sandboxes", subclass, frozen)]
#[derive(Debug)]
pub struct SandboxesBase {
    mode: Mode,
    connection: Arc<LazyClient>,
}

impl SandboxesBase {
    pub fn new(mode: Mode, connection: Arc<LazyClient>) -> Self {
        SandboxesBase { mode, connection }
    }
}

/// Sandboxes as handed to Python: a `sandlot.SandboxList` (a list that shows
/// as a table in notebooks).
struct SandboxList(Vec<InMode<SandboxBase>>);

impl<'py> IntoPyObject<'py> for SandboxList {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let items = self.0.into_pyobject(py)?;
        py.import(pyo3::intern!(py, "sandlot._lists"))?
            .getattr(pyo3::intern!(py, "SandboxList"))?
            .call1((items,))
    }
}

#[pymethods]
impl SandboxesBase {
    /// Creates a sandbox from `image` and returns it (usually still queued or
    /// creating; wait for "running" to use it). Without `command` and `args`
    /// it idles, accepting exec, until terminated or `ttl_seconds` run out.
    /// `ttl_seconds` omitted is the client's default lifetime; `None` is none.
    /// With `pool`, a warm sandbox of that pool is taken if one fits the
    /// other options and is ready (already running), else one is created
    /// from the pool's options with these in their place (`status.pool_fallback`
    /// says why); `image` may then be left out for the pool's.
    /// Bad input raises `InvalidSpecError`, naming the field, before any
    /// request; any later error carries the sandbox's name as `sandbox_name`.
    #[pyo3(signature = (image=None, *, name=None, command=None, args=None, env=None, tags=None, volume_mounts=None, resources=None, ttl_seconds=TtlArg(Ttl::Default), run_as_user=None, read_only_root_filesystem=false, runtime_class=None, network=None, allow_egress=None, user_namespace=None, pool=None))]
    #[allow(clippy::too_many_arguments)]
    fn create<'py>(
        &self,
        py: Python<'py>,
        image: Option<String>,
        name: Option<String>,
        command: Option<Vec<String>>,
        args: Option<Vec<String>>,
        env: Option<BTreeMap<String, String>>,
        tags: Option<BTreeMap<String, String>>,
        volume_mounts: Option<BTreeMap<String, String>>,
        resources: Option<BTreeMap<String, String>>,
        ttl_seconds: TtlArg,
        run_as_user: Option<i64>,
        read_only_root_filesystem: bool,
        runtime_class: Option<String>,
        network: Option<String>,
        allow_egress: Option<Vec<String>>,
        user_namespace: Option<bool>,
        pool: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let spec = inputs::resources(resources.unwrap_or_default()).and_then(|resources| {
            let network = network.map(|mode| mode.parse()).transpose()?;
            let volume_mounts = volume_mounts
                .unwrap_or_default()
                .into_iter()
                .map(|(path, mount)| {
                    let mount = Mount::parse(&format!("volume_mounts[{path:?}]"), &mount)?;
                    Ok((path, mount))
                })
                .collect::<sandlot_core::Result<_>>()?;
            let request = SandboxRequest {
                image: image.unwrap_or_default(),
                name,
                command,
                args,
                env: env.unwrap_or_default(),
                tags: tags.unwrap_or_default(),
                volume_mounts,
                resources,
                ttl_seconds: ttl_seconds.0,
                run_as_user,
                read_only_root_filesystem,
                runtime_class,
                network,
                allow_egress: allow_egress.unwrap_or_default(),
                user_namespace,
                pool,
            };
            Ok(SandboxSpec::try_from(request)?)
        });
        let (mode, connection) = (self.mode, self.connection.clone());
        self.mode.run(py, async move {
            let spec = spec?;
            let client = connection.get().await?;
            // An error here is create_sandbox's to report (with the sandbox's name).
            if let Ok(Some(notice)) = client.user_namespace_fallback(&spec).await {
                // On a blocking thread: the runtime's workers never take the GIL.
                tokio::task::spawn_blocking(move || {
                    Python::attach(|py| crate::errors::warn(py, &notice))
                })
                .await
                .map_err(|err| Failure::Panic(err.to_string()))?
                .map_err(Failure::Python)?;
                client.user_namespace_fallback_shown();
            }
            let status = client.create_sandbox(&spec).await?;
            Ok(SandboxBase::created(mode, client, status))
        })
    }

    /// The sandbox named `name`; raises `NotFoundError` if there is none.
    fn get<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let (mode, connection) = (self.mode, self.connection.clone());
        self.mode.run(py, async move {
            let client = connection.get().await?;
            let status = client.get_sandbox(&name).await?;
            Ok(SandboxBase::in_mode(mode, client, status))
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
        let phases = phase.map(inputs::phases).transpose();
        let (mode, connection) = (self.mode, self.connection.clone());
        self.mode.run(py, async move {
            let filter = ListFilter {
                phases: phases?.unwrap_or_default(),
                tags: tags.unwrap_or_default(),
            };
            let client = connection.get().await?;
            let statuses = client.list_sandboxes(&filter).await?;
            Ok(SandboxList(
                statuses
                    .into_iter()
                    .map(|status| SandboxBase::in_mode(mode, client.clone(), status))
                    .collect(),
            ))
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
        let names = inputs::names(sandboxes);
        let phases = inputs::phases(phase);
        let timeout = inputs::seconds("timeout", timeout);
        let connection = self.connection.clone();
        self.mode.run(py, async move {
            let (names, phases, timeout) = (names?, phases?, timeout?);
            let client = connection.get().await?;
            let statuses = client.wait_sandboxes(&names, &phases, timeout).await?;
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
        let selection = inputs::selection(names, tags, phase, all);
        let connection = self.connection.clone();
        self.mode.run(py, async move {
            let selection = selection?;
            let client = connection.get().await?;
            let outcomes = client.terminate_sandboxes(&selection).await?;
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
        let selection = inputs::selection(names, tags, None, all);
        let older_than = older_than
            .map(|s| inputs::seconds("older_than", s))
            .transpose();
        let connection = self.connection.clone();
        self.mode.run(py, async move {
            let (selection, older_than) = (selection?, older_than?);
            let client = connection.get().await?;
            Ok(client.purge_sandboxes(&selection, older_than).await?)
        })
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        format!("{}()", class_name(slf))
    }
}

/// The sandboxes of an `AsyncClient`'s namespace.
#[pyclass(module = "sandlot", extends = SandboxesBase, frozen)]
#[derive(Debug)]
pub struct AsyncSandboxes;

/// The sandboxes of a `Client`'s namespace.
#[pyclass(module = "sandlot", name = "Sandboxes", extends = SandboxesBase, frozen)]
#[derive(Debug)]
pub struct SyncSandboxes;

twins!(SandboxesBase => AsyncSandboxes, SyncSandboxes);

/// What `AsyncSandbox` and `Sandbox` share: one sandbox. `status` is the last
/// status seen; `refresh()` reads it anew.
#[pyclass(module = "sandlot._native", name = "_Sandbox", subclass, frozen)]
#[derive(Debug)]
pub struct SandboxBase {
    mode: Mode,
    client: Client,
    name: String,
    status: Arc<Mutex<sandlot_core::SandboxStatus>>,
    /// Made by `create`: if the call's caller is gone before this reaches it,
    /// the sandbox is deleted (see `_unreceived`).
    created: bool,
}

impl SandboxBase {
    /// The sandbox of `status`, as the class of `mode`.
    fn in_mode(mode: Mode, client: Client, status: sandlot_core::SandboxStatus) -> InMode<Self> {
        InMode(
            mode,
            SandboxBase {
                mode,
                client,
                name: status.name.clone(),
                status: Arc::new(Mutex::new(status)),
                created: false,
            },
        )
    }

    /// The sandbox a `create` call made, as the class of `mode`.
    fn created(mode: Mode, client: Client, status: sandlot_core::SandboxStatus) -> InMode<Self> {
        let InMode(mode, mut sandbox) = SandboxBase::in_mode(mode, client, status);
        sandbox.created = true;
        InMode(mode, sandbox)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn last_status(&self) -> sandlot_core::SandboxStatus {
        self.status
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Reads the part of the log `options` picks, handed to Python as `shape`
    /// makes it (text or bytes).
    fn read_log<'py, T>(
        &self,
        py: Python<'py>,
        options: Outcome<LogOptions>,
        shape: fn(Vec<u8>) -> T,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        let (client, name) = (self.client.clone(), self.name.clone());
        self.mode.run(py, async move {
            Ok(shape(client.sandbox_log_bytes(&name, &options?).await?))
        })
    }

    /// Terminates the sandbox at the end of a `with` block; one already
    /// purged is left alone. Hands back `False` (the block's exception, if
    /// any, goes on).
    fn terminate_on_exit<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (client, name, slot) = (self.client.clone(), self.name.clone(), self.status.clone());
        self.mode.run(py, async move {
            match client.terminate_sandbox(&name).await {
                Ok(status) => {
                    remember(&slot, status);
                    Ok(false)
                }
                Err(Error::NotFound { .. }) => Ok(false),
                Err(err) => Err(err.into()),
            }
        })
    }
}

twins!(SandboxBase => AsyncSandbox, SyncSandbox);

/// Stores `status` as the sandbox's last seen and returns it for Python.
fn remember(
    slot: &Mutex<sandlot_core::SandboxStatus>,
    status: sandlot_core::SandboxStatus,
) -> SandboxStatus {
    *slot.lock().unwrap_or_else(|poison| poison.into_inner()) = status.clone();
    SandboxStatus::from(status)
}

/// Log options from the arguments of `logs` and `stream_logs`.
fn log_options(tail: Option<u64>, since: Option<f64>, timestamps: bool) -> Outcome<LogOptions> {
    Ok(LogOptions {
        tail_lines: tail,
        since_seconds: since
            .map(|s| inputs::seconds("since", s).map(|d| d.as_secs().max(1)))
            .transpose()?,
        timestamps,
    })
}

#[pymethods]
impl SandboxBase {
    #[getter(name)]
    fn py_name(&self) -> &str {
        &self.name
    }

    #[getter]
    fn namespace(&self) -> &str {
        self.client.namespace()
    }

    /// The sandbox's files: read, write, list, and trees up and down
    /// (`AsyncFiles` or `Files`). They need the sandbox running.
    #[getter]
    fn files(&self) -> InMode<FilesBase> {
        let target = FileTarget::Sandbox(self.name.clone());
        InMode(
            self.mode,
            FilesBase::new(self.mode, self.client.clone(), target),
        )
    }

    /// The status as last seen (no request is made).
    #[getter]
    fn status(&self) -> SandboxStatus {
        SandboxStatus::from(self.last_status())
    }

    /// The phase as last seen (no request is made).
    #[getter]
    fn phase<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.status().phase(py)
    }

    /// Reads the current status.
    fn refresh<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (client, name, slot) = (self.client.clone(), self.name.clone(), self.status.clone());
        self.mode.run(py, async move {
            let status = client.get_sandbox(&name).await?;
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
        let phases = inputs::phases(phase);
        let timeout = inputs::seconds("timeout", timeout);
        let (client, name, slot) = (self.client.clone(), self.name.clone(), self.status.clone());
        self.mode.run(py, async move {
            let (phases, timeout) = (phases?, timeout?);
            match client.wait_sandbox(&name, &phases, timeout).await {
                Ok(status) => Ok(remember(&slot, status)),
                Err(Error::PhaseUnreachable { status, wanted }) => {
                    remember(&slot, (*status).clone());
                    Err(Error::PhaseUnreachable { status, wanted }.into())
                }
                Err(err) => Err(err.into()),
            }
        })
    }

    /// Runs `command` in the running sandbox and returns its `ExecResult`,
    /// stdout and stderr collected whole. A string is run by `/bin/sh -c`.
    /// `stdin` (str or bytes) is written to the command's input; `env` adds
    /// variables; `workdir` sets its directory. A non-zero exit code is a
    /// result, unless `check`: then `ExecError` is raised, carrying it.
    /// Each of stdout and stderr keeps at most `max_output` bytes (16 MiB
    /// unless given; `None` keeps all); the rest is read and dropped, and
    /// `ExecResult.truncated` says so. After `timeout` seconds the command's
    /// processes are killed and `sandlot.TimeoutError` is raised, carrying the
    /// output so far (`stdout`, `stderr`, ...); a cancelled call kills them too.
    #[pyo3(signature = (command, *, stdin=None, timeout=None, env=None, workdir=None, check=false, max_output=Some(DEFAULT_MAX_OUTPUT as i64)))]
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
        max_output: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let command = inputs::command(command);
        let stdin = stdin.map(|data| inputs::bytes("stdin", data)).transpose();
        let timeout = timeout.map(|t| inputs::seconds("timeout", t)).transpose();
        let max_output = max_output
            .map(|bytes| {
                usize::try_from(bytes).map_err(|_| {
                    Error::invalid("max_output", "must be a number of bytes >= 0, or None")
                })
            })
            .transpose();
        let (client, name) = (self.client.clone(), self.name.clone());
        self.mode.run(py, async move {
            let command = command?;
            let options = ExecOptions {
                stdin: stdin?,
                timeout: timeout?,
                env: env.unwrap_or_default().into_iter().collect(),
                workdir,
                max_output: max_output?,
            };
            let result = client.exec_sandbox(&name, &command, &options).await?;
            if check && result.exit_code != 0 {
                return Err(Failure::ExecFailed {
                    name,
                    command,
                    result,
                });
            }
            Ok(ExecResult::from(result))
        })
    }

    /// Starts `command` and returns a process whose stdout and stderr stream
    /// as the command writes them. `stdin=True` opens its input for
    /// `write()`; `tty=True` runs it on a terminal (stderr merged into stdout).
    /// After `timeout` seconds, `wait()` raises `sandlot.TimeoutError`.
    /// `detach=True` (through the sandbox agent only) keeps the command and
    /// its end listed by `processes()` for any client to `process(id)`.
    #[pyo3(signature = (command, *, stdin=false, tty=false, timeout=None, env=None, workdir=None, detach=false))]
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
        detach: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let command = inputs::command(command);
        let timeout = timeout.map(|t| inputs::seconds("timeout", t)).transpose();
        let options = SpawnOptions {
            stdin,
            tty,
            env: env.unwrap_or_default().into_iter().collect(),
            workdir,
            killable: false,
            detach,
        };
        let (mode, client, name) = (self.mode, self.client.clone(), self.name.clone());
        self.mode.run(py, async move {
            let (command, timeout) = (command?, timeout?);
            let process = client.spawn_exec(&name, &command, &options).await?;
            Ok(InMode(mode, ProcessBase::new(mode, process, timeout)))
        })
    }

    /// The processes the sandbox's agent keeps: those running (started by any
    /// client) and the last ones that ended (detached ones among them).
    fn processes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (client, name) = (self.client.clone(), self.name.clone());
        self.mode.run(py, async move {
            let list = client.list_processes(&name).await?;
            Ok(list.into_iter().map(ProcessInfo::from).collect::<Vec<_>>())
        })
    }

    /// A forward from a local address to `port` of the sandbox, not started
    /// yet: `async with` / `with` (or `start()`) starts it. Every connection
    /// to `address`:`local_port` (0: a free port the system chooses) is
    /// relayed over its own Kubernetes port-forward stream.
    #[pyo3(signature = (port, *, local_port=0, address="127.0.0.1"))]
    fn port_forward(
        &self,
        py: Python<'_>,
        port: i64,
        local_port: i64,
        address: &str,
    ) -> PyResult<InMode<PortForwardBase>> {
        let forward = check_port("port", port)
            .and_then(|port| Ok((port, check_local_port("local_port", local_port)?)))
            .and_then(|(port, local_port)| {
                PortForwardBase::new(
                    self.mode,
                    self.client.clone(),
                    self.name.clone(),
                    port,
                    address,
                    local_port,
                )
            });
        match forward {
            Ok(forward) => Ok(InMode(self.mode, forward)),
            Err(err) => Err(crate::errors::core_error(py, &err)),
        }
    }

    /// Returns once something in the sandbox listens on TCP `port` (read from
    /// its socket tables; nothing connects to the server). Raises
    /// `SandboxNotRunningError` if the sandbox stops running, and
    /// `sandlot.TimeoutError` after `timeout` seconds.
    #[pyo3(signature = (port, *, timeout=60.0))]
    fn wait_for_port<'py>(
        &self,
        py: Python<'py>,
        port: i64,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let port = check_port("port", port).map_err(Failure::from);
        let timeout = inputs::seconds("timeout", timeout);
        let (client, name) = (self.client.clone(), self.name.clone());
        self.mode.run(py, async move {
            client.wait_for_port(&name, port?, timeout?).await?;
            Ok(NONE)
        })
    }

    /// Exposes `port` inside the cluster: a ClusterIP Service (named `name`,
    /// else SANDBOX-PORT) that selects only this sandbox and goes with its
    /// record and, where its network is restricted, the ingress allowance for
    /// `allow_from` (entries "NAMESPACE" or "NAMESPACE/KEY=VALUE,..."; default:
    /// the pods of the client's namespace; sandboxes are never let in).
    /// Returns the `ExposedPort`; exposing a port again updates its callers.
    #[pyo3(signature = (port, *, name=None, allow_from=None))]
    fn expose<'py>(
        &self,
        py: Python<'py>,
        port: i64,
        name: Option<String>,
        allow_from: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let port = check_port("port", port).map_err(Failure::from);
        let (client, sandbox) = (self.client.clone(), self.name.clone());
        self.mode.run(py, async move {
            let request = ExposeRequest {
                port: port?,
                service: name,
                allow_from,
            };
            let exposed = client.expose_port(&sandbox, &request).await?;
            Ok(ExposedPort::from(exposed))
        })
    }

    /// The in-cluster URL of an exposed `port` (`NotFoundError` if it is not).
    fn url<'py>(&self, py: Python<'py>, port: i64) -> PyResult<Bound<'py, PyAny>> {
        let port = check_port("port", port).map_err(Failure::from);
        let (client, name) = (self.client.clone(), self.name.clone());
        self.mode.run(
            py,
            async move { Ok(client.sandbox_url(&name, port?).await?) },
        )
    }

    /// Stops exposing `port`: deletes its Service and ingress allowance.
    /// Whether it was exposed.
    fn unexpose<'py>(&self, py: Python<'py>, port: i64) -> PyResult<Bound<'py, PyAny>> {
        let port = check_port("port", port).map_err(Failure::from);
        let (client, name) = (self.client.clone(), self.name.clone());
        self.mode.run(
            py,
            async move { Ok(client.unexpose_port(&name, port?).await?) },
        )
    }

    /// The sandbox's resources as its agent reads them from its cgroup and
    /// `/proc`: CPU cores in use (averaged over `interval` seconds), memory
    /// (working set and limit), processes, network bytes in and out.
    #[pyo3(signature = (*, interval=0.25))]
    fn metrics<'py>(&self, py: Python<'py>, interval: f64) -> PyResult<Bound<'py, PyAny>> {
        let interval = inputs::seconds("interval", interval);
        let (client, name) = (self.client.clone(), self.name.clone());
        self.mode.run(py, async move {
            let metrics = client.sandbox_metrics(&name, interval?).await?;
            Ok(Metrics::from(metrics))
        })
    }

    /// The sandbox's resources every `interval` seconds, for `async for`
    /// (`AsyncSandbox`) or `for` (`Sandbox`): each CPU figure averaged over
    /// the time since the reading before, until the sandbox stops running.
    #[pyo3(signature = (*, interval=1.0))]
    fn stream_metrics(&self, py: Python<'_>, interval: f64) -> PyResult<MetricsStream> {
        let interval = inputs::seconds("interval", interval)
            .and_then(|every| {
                (!every.is_zero())
                    .then_some(every)
                    .ok_or_else(|| sandlot_core::Error::invalid("interval", "must be > 0").into())
            })
            .map_err(|failure: Failure| failure.into_pyerr(py, self.mode))?;
        let readings = self.client.follow_metrics(&self.name, interval);
        Ok(MetricsStream {
            readings: Arc::new(tokio::sync::Mutex::new(readings)),
        })
    }

    /// Attaches to process `id` of the sandbox's agent, from any client: its
    /// output from the given offsets (or from where the kept output begins;
    /// the process's `dropped` counts what was no longer kept), its stdin,
    /// its exit code.
    #[pyo3(signature = (id, *, stdout_offset=0, stderr_offset=0))]
    fn process<'py>(
        &self,
        py: Python<'py>,
        id: u32,
        stdout_offset: u64,
        stderr_offset: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (mode, client, name) = (self.mode, self.client.clone(), self.name.clone());
        self.mode.run(py, async move {
            let process = client
                .attach_process(&name, id, [stdout_offset, stderr_offset], true)
                .await?;
            Ok(InMode(mode, ProcessBase::new(mode, process, None)))
        })
    }

    /// The sandbox's log, line by line, as an iterator (`async for` on the
    /// async class, `for` on the sync one). With `follow` (the default) it
    /// waits for the sandbox to start and ends by itself when the sandbox
    /// ends, every line delivered.
    #[pyo3(signature = (*, follow=true, tail=None, since=None, timestamps=false))]
    fn stream_logs(
        &self,
        follow: bool,
        tail: Option<u64>,
        since: Option<f64>,
        timestamps: bool,
    ) -> LineStream {
        let options = log_options(tail, since, timestamps);
        let (client, name) = (self.client.clone(), self.name.clone());
        LineStream::new(
            async move { Ok(client.stream_logs(&name, &options?, follow).await?) }.boxed(),
        )
    }

    /// The sandbox's log text (its command's stdout and stderr), also after it
    /// ended: the last `tail` lines, lines of the last `since` seconds, with
    /// `timestamps` prefixed if asked. Undecodable bytes are replaced (see
    /// `logs_bytes()`).
    #[pyo3(signature = (*, tail=None, since=None, timestamps=false))]
    fn logs<'py>(
        &self,
        py: Python<'py>,
        tail: Option<u64>,
        since: Option<f64>,
        timestamps: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
        self.read_log(py, log_options(tail, since, timestamps), text)
    }

    /// The same part of the log as `logs()`, as the bytes the sandbox wrote.
    #[pyo3(signature = (*, tail=None, since=None, timestamps=false))]
    fn logs_bytes<'py>(
        &self,
        py: Python<'py>,
        tail: Option<u64>,
        since: Option<f64>,
        timestamps: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.read_log(py, log_options(tail, since, timestamps), Bytes)
    }

    /// Terminates the sandbox: its phase is `terminated` from now on, the
    /// workload stops within seconds, and the record (logs, name) stays.
    fn terminate<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (client, name, slot) = (self.client.clone(), self.name.clone(), self.status.clone());
        self.mode.run(py, async move {
            let status = client.terminate_sandbox(&name).await?;
            Ok(remember(&slot, status))
        })
    }

    fn _repr_html_(&self) -> String {
        crate::html::sandboxes_table(&[&self.last_status()])
    }

    /// Called by the bridge when the call that returned this was cancelled
    /// before it could hand it over: a sandbox `create` made is deleted, so
    /// only a create that returned leaves one.
    fn _unreceived(&self) {
        if self.created {
            let (client, status) = (self.client.clone(), self.last_status());
            pyo3_async_runtimes::tokio::get_runtime()
                .spawn(async move { client.discard_unreceived_sandbox(&status).await });
        }
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let this = slf.get();
        format!(
            "{}(name='{}', phase='{}')",
            class_name(slf),
            this.name,
            this.last_status().phase
        )
    }
}

/// One sandbox of an `AsyncClient`. `async with` terminates it when the
/// block ends, also on an exception.
#[pyclass(module = "sandlot", extends = SandboxBase, frozen)]
#[derive(Debug)]
pub struct AsyncSandbox;

#[pymethods]
impl AsyncSandbox {
    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Mode::Async.ready(slf.py(), Ok(slf.clone().unbind()))
    }

    #[pyo3(signature = (*_exc_info))]
    fn __aexit__<'py>(
        slf: &Bound<'py, Self>,
        _exc_info: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        slf.as_super().get().terminate_on_exit(slf.py())
    }
}

/// One sandbox of a `Client`. `with` terminates it when the block ends, also
/// on an exception.
#[pyclass(module = "sandlot", name = "Sandbox", extends = SandboxBase, frozen)]
#[derive(Debug)]
pub struct SyncSandbox;

#[pymethods]
impl SyncSandbox {
    fn __enter__<'py>(slf: &Bound<'py, Self>) -> Bound<'py, Self> {
        slf.clone()
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__<'py>(
        slf: &Bound<'py, Self>,
        _exc_info: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        slf.as_super().get().terminate_on_exit(slf.py())
    }
}

/// A sandbox's resources one interval after the other (see
/// `stream_metrics`): `async for` or `for`. It ends once the sandbox no
/// longer runs; a call cancelled while it waits loses that interval only.
#[pyclass(module = "sandlot", frozen)]
pub struct MetricsStream {
    readings: Arc<tokio::sync::Mutex<sandlot_core::MetricsFollow>>,
}

impl std::fmt::Debug for MetricsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsStream")
    }
}

impl MetricsStream {
    fn next<'py>(&self, py: Python<'py>, mode: Mode) -> PyResult<Bound<'py, PyAny>> {
        let readings = self.readings.clone();
        mode.run(py, async move {
            match readings.lock().await.next().await? {
                Some(metrics) => Ok(Metrics::from(metrics)),
                None => Err(Failure::End),
            }
        })
    }
}

#[pymethods]
impl MetricsStream {
    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Awaits the next reading; ends when the sandbox stops running.
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.next(py, Mode::Async)
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Waits for the next reading; ends when the sandbox stops running.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.next(py, Mode::Blocking)
    }
}
