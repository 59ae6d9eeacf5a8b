//! A port-forward to a sandbox (`AsyncPortForward` / `PortForward`) and an
//! exposed port (`ExposedPort`). See `sandlot_core::PortForward`.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use sandlot_core::{Client, Error, PortForward};

use crate::bridge::{Failure, Mode, NONE};
use crate::errors::core_error;
use crate::twins::{class_name, twins};

/// What `AsyncPortForward` and `PortForward` share: a forward from a local
/// address to a port of a sandbox, started by `start()` or by entering a
/// `with` block and stopped by `close()` or by leaving it.
#[pyclass(module = "sandlot._native", name = "_PortForward", subclass, frozen)]
#[derive(Debug)]
pub struct PortForwardBase {
    mode: Mode,
    client: Client,
    sandbox: String,
    port: u16,
    local: SocketAddr,
    running: Arc<Mutex<Option<Arc<PortForward>>>>,
}

twins!(PortForwardBase => AsyncPortForward, SyncPortForward);

impl PortForwardBase {
    /// A forward not started yet; `address` must be an IP address.
    pub fn new(
        mode: Mode,
        client: Client,
        sandbox: String,
        port: u16,
        address: &str,
        local_port: u16,
    ) -> Result<Self, Error> {
        let ip: IpAddr = address.parse().map_err(|_| {
            Error::invalid(
                "address",
                format!("{address:?} is not an IP address (\"127.0.0.1\", \"::1\", \"0.0.0.0\")"),
            )
        })?;
        Ok(PortForwardBase {
            mode,
            client,
            sandbox,
            port,
            local: SocketAddr::new(ip, local_port),
            running: Arc::default(),
        })
    }

    /// Reads the running forward with `read`; a forward not started is an error.
    fn read<T>(&self, py: Python<'_>, read: impl FnOnce(&PortForward) -> T) -> PyResult<T> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match running.as_ref() {
            Some(forward) => Ok(read(forward)),
            None => Err(core_error(
                py,
                &Error::invalid(
                    "port_forward",
                    "the forward is not started: use `with`, or call start() first",
                ),
            )),
        }
    }

    /// Starts the forward (again after a close); the future gives back `this`.
    fn started<'py>(&self, py: Python<'py>, this: Py<PyAny>) -> PyResult<Bound<'py, PyAny>> {
        {
            let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if running.as_ref().is_some_and(|forward| !forward.is_closed()) {
                return self.mode.ready(py, Ok(this));
            }
        }
        let (client, name, port, local) = (
            self.client.clone(),
            self.sandbox.clone(),
            self.port,
            self.local,
        );
        let running = self.running.clone();
        self.mode.run(py, async move {
            let forward = client.port_forward(&name, port, local).await?;
            *running.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(forward));
            Ok::<_, Failure>(this)
        })
    }

    /// Closes the forward, if started; the future ends once it stopped listening.
    fn stopped<'py, T>(&self, py: Python<'py>, outcome: T) -> PyResult<Bound<'py, PyAny>>
    where
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        let forward = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.mode.run(py, async move {
            if let Some(forward) = forward {
                forward.close().await;
            }
            Ok::<_, Failure>(outcome)
        })
    }
}

#[pymethods]
impl PortForwardBase {
    /// The sandbox forwarded to.
    #[getter]
    fn sandbox(&self) -> &str {
        &self.sandbox
    }

    /// The sandbox's port forwarded to.
    #[getter]
    fn port(&self) -> u16 {
        self.port
    }

    /// The local address listened on.
    #[getter]
    fn address(&self) -> String {
        self.local.ip().to_string()
    }

    /// The local port listened on (the one the system chose for
    /// `local_port=0`); the forward must be started.
    #[getter]
    fn local_port(&self, py: Python<'_>) -> PyResult<u16> {
        self.read(py, |forward| forward.local_addr().port())
    }

    /// `http://ADDRESS:LOCAL_PORT` (an IPv6 address in brackets).
    #[getter]
    fn url(&self, py: Python<'_>) -> PyResult<String> {
        self.read(py, |forward| format!("http://{}", forward.local_addr()))
    }

    /// Local connections accepted so far.
    #[getter]
    fn connections(&self, py: Python<'_>) -> PyResult<u64> {
        self.read(py, |forward| forward.stats().accepted)
    }

    /// Of those, the ones open now.
    #[getter]
    fn active(&self, py: Python<'_>) -> PyResult<u64> {
        self.read(py, |forward| forward.stats().active)
    }

    /// Connections that could not be relayed (refused in the sandbox, or
    /// by the cluster).
    #[getter]
    fn failed(&self, py: Python<'_>) -> PyResult<u64> {
        self.read(py, |forward| forward.stats().failed)
    }

    /// Why the last failed connection failed, if one did.
    #[getter]
    fn last_error(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.read(py, |forward| forward.stats().last_error)
    }

    /// Whether the forward runs (started and not closed).
    #[getter]
    fn running(&self) -> bool {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.as_ref().is_some_and(|forward| !forward.is_closed())
    }

    /// Starts listening, once the sandbox runs (`SandboxNotRunningError`),
    /// something in it listens on the port (`PortNotOpenError`) and the
    /// cluster lets a first stream through (`PermissionDeniedError`). Returns
    /// the forward. Starting a running forward does nothing.
    fn start<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.get().started(slf.py(), slf.clone().into_any().unbind())
    }

    /// Stops listening and cuts every forwarded connection (awaitable from
    /// an `AsyncClient`); returns once nothing listens any more.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.stopped(py, NONE)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let this = slf.get();
        let local = match this
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(forward) if !forward.is_closed() => forward.local_addr().to_string(),
            _ => "not running".to_owned(),
        };
        format!(
            "<{} {} -> sandbox {:?} port {}>",
            class_name(slf.as_any()),
            local,
            this.sandbox,
            this.port
        )
    }
}

/// A forward to a sandbox of an `AsyncClient`: `async with` starts it and
/// stops it when the block ends.
#[pyclass(module = "sandlot", extends = PortForwardBase, frozen)]
#[derive(Debug)]
pub struct AsyncPortForward;

#[pymethods]
impl AsyncPortForward {
    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.as_super()
            .get()
            .started(slf.py(), slf.clone().into_any().unbind())
    }

    #[pyo3(signature = (*_exc_info))]
    fn __aexit__<'py>(
        slf: &Bound<'py, Self>,
        _exc_info: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        slf.as_super().get().stopped(slf.py(), false)
    }
}

/// A forward to a sandbox of a `Client`: `with` starts it and stops it when
/// the block ends.
#[pyclass(module = "sandlot", name = "PortForward", extends = PortForwardBase, frozen)]
#[derive(Debug)]
pub struct SyncPortForward;

#[pymethods]
impl SyncPortForward {
    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.as_super()
            .get()
            .started(slf.py(), slf.clone().into_any().unbind())
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__<'py>(
        slf: &Bound<'py, Self>,
        _exc_info: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        slf.as_super().get().stopped(slf.py(), false)
    }
}

/// A port of a sandbox exposed inside the cluster by a Service.
#[pyclass(module = "sandlot", frozen)]
#[derive(Debug, Clone)]
pub struct ExposedPort {
    inner: sandlot_core::ExposedPort,
}

impl From<sandlot_core::ExposedPort> for ExposedPort {
    fn from(inner: sandlot_core::ExposedPort) -> Self {
        ExposedPort { inner }
    }
}

#[pymethods]
impl ExposedPort {
    /// The sandbox.
    #[getter]
    fn sandbox(&self) -> &str {
        &self.inner.sandbox
    }

    /// The port, in the sandbox and on the Service.
    #[getter]
    fn port(&self) -> u16 {
        self.inner.port
    }

    /// The Service's name.
    #[getter]
    fn service(&self) -> &str {
        &self.inner.service
    }

    #[getter]
    fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The Service's cluster IP.
    #[getter]
    fn cluster_ip(&self) -> Option<&str> {
        self.inner.cluster_ip.as_deref()
    }

    /// What callers in the cluster connect to: the Service's DNS name where
    /// the cluster runs DNS, else its cluster IP.
    #[getter]
    fn host(&self) -> &str {
        &self.inner.host
    }

    /// `http://HOST:PORT`.
    #[getter]
    fn url(&self) -> &str {
        &self.inner.url
    }

    /// Who may connect where the sandbox's network is restricted (empty for
    /// an unrestricted one, which no policy closes).
    #[getter]
    fn allow_from(&self) -> Vec<String> {
        self.inner.allow_from.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "ExposedPort(sandbox={:?}, port={}, service={:?}, url={:?})",
            self.inner.sandbox, self.inner.port, self.inner.service, self.inner.url
        )
    }
}
