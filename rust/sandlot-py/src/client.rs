//! `AsyncClient` and `Client`: the entry points.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyAny;
use sandlot_core::{
    Client, ConnectOptions, DEFAULT_BURST, DEFAULT_QPS, ExecPath, Placement, RequestRate,
    ResolvedNamespace, Ttl,
};
use tokio::sync::OnceCell;

use crate::bridge::{Mode, NONE, Outcome};
use crate::errors::core_error;
use crate::inputs::TtlArg;
use crate::pool::PoolsBase;
use crate::sandbox::SandboxesBase;
use crate::twins::{InMode, class_name};
use crate::volume::VolumesBase;

/// A client connection made on first use and shared by everything derived from it.
#[derive(Debug)]
pub struct LazyClient {
    options: ConnectOptions,
    /// Decided once, when the Python client is made.
    placement: Placement,
    client: OnceCell<Client>,
}

impl LazyClient {
    /// The connected client, connecting on the first call.
    pub async fn get(&self) -> Outcome<Client> {
        let client = self
            .client
            .get_or_try_init(|| {
                Client::connect_placed(self.options.clone(), self.placement.clone())
            })
            .await?;
        Ok(client.clone())
    }

    /// True once connected.
    fn is_connected(&self) -> bool {
        self.client.initialized()
    }
}

/// What `AsyncClient` and `Client` share: one namespace of one cluster.
///
/// Connects on first use (or on `async with` / `with`) with the kubeconfig or,
/// inside a pod, the in-cluster service account. The namespace is the
/// argument, else `$SANDLOT_NAMESPACE`, else (inside a pod with no kubeconfig)
/// the pod's own namespace, else "sandlot"; it is created if missing.
/// Sandboxes live `default_ttl_seconds` unless their create says otherwise:
/// the argument (`None`: no lifetime), else `$SANDLOT_DEFAULT_TTL`, else one
/// hour. With `owned_by_pod`, the pod the application runs in owns them.
/// Commands run as `exec_path` says: "auto" (through the sandbox agent where
/// it answers, else Kubernetes exec), "agent" or "kubernetes"; else
/// `$SANDLOT_EXEC_PATH`, else "auto". Requests to the API server go at most
/// `qps` per second on average (`None`: no limit), `burst` at once.
#[pyclass(module = "sandlot._native", name = "_Client", subclass, frozen)]
#[derive(Debug)]
pub struct ClientBase {
    mode: Mode,
    connection: Arc<LazyClient>,
    namespace: ResolvedNamespace,
}

/// A client constructor's arguments.
struct Settings {
    namespace: Option<String>,
    context: Option<String>,
    default_ttl: TtlArg,
    owned_by_pod: bool,
    exec_path: Option<String>,
    request_rate: RequestRate,
}

impl ClientBase {
    /// A client as its constructor's arguments say; settings that break a
    /// rule raise `InvalidSpecError` here, before any request.
    fn new(py: Python<'_>, mode: Mode, settings: Settings) -> PyResult<Self> {
        let Settings {
            namespace,
            context,
            default_ttl,
            owned_by_pod,
            exec_path,
            request_rate,
        } = settings;
        let exec_path = match exec_path
            .map(|p| ExecPath::parse("exec_path", &p))
            .transpose()
        {
            Ok(path) => path,
            Err(err) => return Err(core_error(py, &err)),
        };
        let options = ConnectOptions {
            namespace,
            context,
            kubeconfig: None,
            default_ttl: default_ttl.0,
            owned_by_pod,
            exec_path,
            request_rate,
        };
        let placement = options.placement();
        let checked = request_rate
            .check()
            .and_then(|()| options.default_ttl_seconds())
            .and_then(|_| options.owner_pod(&placement.namespace))
            .and_then(|_| options.exec_path());
        if let Err(err) = checked {
            return Err(core_error(py, &err));
        }
        Ok(ClientBase {
            mode,
            namespace: placement.namespace.clone(),
            connection: Arc::new(LazyClient {
                options,
                placement,
                client: OnceCell::new(),
            }),
        })
    }

    /// Connects (once), then hands `this` back.
    fn connected<'py, T>(&self, py: Python<'py>, this: T) -> PyResult<Bound<'py, PyAny>>
    where
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        if self.connection.is_connected() {
            return self.mode.ready(py, Ok(this));
        }
        let connection = self.connection.clone();
        self.mode.run(py, async move {
            connection.get().await?;
            Ok(this)
        })
    }

    /// The end of a `with` block: the volume file helpers this client
    /// started are deleted (a client that never connected has none).
    fn closed<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if !self.connection.is_connected() {
            return self.mode.ready(py, Ok(NONE));
        }
        let connection = self.connection.clone();
        self.mode.run(py, async move {
            connection.get().await?.release_helpers().await;
            Ok(NONE)
        })
    }
}

/// Stops the task behind the client's shared pod watch as if it had died; the
/// watch restarts by itself (a test hook, `sandlot._testing.stop_pod_watch`).
/// False if the client has not connected or no wait has started the watch.
#[pyfunction]
pub fn _stop_pod_watch(client: &Bound<'_, ClientBase>) -> bool {
    client
        .get()
        .connection
        .client
        .get()
        .is_some_and(Client::stop_pod_watch_task)
}

#[pymethods]
impl ClientBase {
    /// The namespace this client works in.
    #[getter]
    fn namespace(&self) -> &str {
        &self.namespace.name
    }

    /// Where the namespace came from: "argument", "environment"
    /// ($SANDLOT_NAMESPACE), "service_account" (inside a pod, its own) or "default".
    #[getter]
    fn namespace_source(&self) -> String {
        self.namespace.source.to_string()
    }

    /// Sandbox operations.
    #[getter]
    fn sandboxes(&self) -> InMode<SandboxesBase> {
        InMode(
            self.mode,
            SandboxesBase::new(self.mode, self.connection.clone()),
        )
    }

    /// Volume operations.
    #[getter]
    fn volumes(&self) -> InMode<VolumesBase> {
        InMode(
            self.mode,
            VolumesBase::new(self.mode, self.connection.clone()),
        )
    }

    /// Warm pool operations.
    #[getter]
    fn pools(&self) -> InMode<PoolsBase> {
        InMode(
            self.mode,
            PoolsBase::new(self.mode, self.connection.clone()),
        )
    }

    /// Connects now, so that configuration and connection errors surface here.
    fn connect<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.connected(py, NONE)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        format!(
            "{}(namespace='{}')",
            class_name(slf),
            slf.get().namespace.name
        )
    }
}

/// Async client for sandboxes in one namespace of one cluster.
#[pyclass(module = "sandlot", extends = ClientBase, frozen)]
#[derive(Debug)]
pub struct AsyncClient;

#[pymethods]
impl AsyncClient {
    #[new]
    #[pyo3(signature = (namespace=None, *, context=None, default_ttl_seconds=TtlArg(Ttl::Default), owned_by_pod=false, exec_path=None, qps=Some(DEFAULT_QPS), burst=i64::from(DEFAULT_BURST)))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        namespace: Option<String>,
        context: Option<String>,
        default_ttl_seconds: TtlArg,
        owned_by_pod: bool,
        exec_path: Option<String>,
        qps: Option<f64>,
        burst: i64,
    ) -> PyResult<PyClassInitializer<Self>> {
        let settings = Settings {
            namespace,
            context,
            default_ttl: default_ttl_seconds,
            owned_by_pod,
            exec_path,
            request_rate: RequestRate {
                qps,
                burst: u32::try_from(burst).unwrap_or(0),
            },
        };
        let base = ClientBase::new(py, Mode::Async, settings)?;
        Ok(PyClassInitializer::from(base).add_subclass(AsyncClient))
    }

    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.as_super()
            .get()
            .connected(slf.py(), slf.clone().unbind())
    }

    #[pyo3(signature = (*_exc_info))]
    fn __aexit__<'py>(
        slf: &Bound<'py, Self>,
        _exc_info: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        slf.as_super().get().closed(slf.py())
    }
}

/// Blocking client for sandboxes in one namespace of one cluster: the same
/// operations as `AsyncClient`, for scripts and notebooks.
#[pyclass(module = "sandlot", name = "Client", extends = ClientBase, frozen)]
#[derive(Debug)]
pub struct SyncClient;

#[pymethods]
impl SyncClient {
    #[new]
    #[pyo3(signature = (namespace=None, *, context=None, default_ttl_seconds=TtlArg(Ttl::Default), owned_by_pod=false, exec_path=None, qps=Some(DEFAULT_QPS), burst=i64::from(DEFAULT_BURST)))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        namespace: Option<String>,
        context: Option<String>,
        default_ttl_seconds: TtlArg,
        owned_by_pod: bool,
        exec_path: Option<String>,
        qps: Option<f64>,
        burst: i64,
    ) -> PyResult<PyClassInitializer<Self>> {
        let settings = Settings {
            namespace,
            context,
            default_ttl: default_ttl_seconds,
            owned_by_pod,
            exec_path,
            request_rate: RequestRate {
                qps,
                burst: u32::try_from(burst).unwrap_or(0),
            },
        };
        let base = ClientBase::new(py, Mode::Blocking, settings)?;
        Ok(PyClassInitializer::from(base).add_subclass(SyncClient))
    }

    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.as_super()
            .get()
            .connected(slf.py(), slf.clone().unbind())
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__<'py>(
        slf: &Bound<'py, Self>,
        _exc_info: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        slf.as_super().get().closed(slf.py())
    }
}
