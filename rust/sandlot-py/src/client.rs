//! `AsyncClient`: the entry point of the async API.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyAny;
use sandlot_core::{Client, ConnectOptions};
use tokio::sync::OnceCell;

use crate::errors::IntoPyResult;
use crate::sandbox::AsyncSandboxes;
use crate::volume::AsyncVolumes;

/// A client connection made on first use and shared by everything derived from it.
#[derive(Debug)]
pub struct LazyClient {
    options: ConnectOptions,
    client: OnceCell<Client>,
}

impl LazyClient {
    /// The connected client, connecting on the first call.
    pub async fn get(&self) -> PyResult<Client> {
        self.client
            .get_or_try_init(|| Client::connect(self.options.clone()))
            .await
            .cloned()
            .into_py_result()
    }
}

/// Async client for sandboxes in one namespace of one cluster.
///
/// Connects on first use (or on `async with`) with the kubeconfig or, inside
/// a pod, the in-cluster service account. The namespace is the argument, else
/// `$SANDLOT_NAMESPACE`, else "sandlot"; it is created if missing.
#[pyclass(module = "sandlot", frozen)]
#[derive(Debug)]
pub struct AsyncClient {
    connection: Arc<LazyClient>,
    namespace: String,
}

#[pymethods]
impl AsyncClient {
    #[new]
    #[pyo3(signature = (namespace=None, *, context=None))]
    fn new(namespace: Option<String>, context: Option<String>) -> Self {
        let options = ConnectOptions {
            namespace,
            context,
            kubeconfig: None,
        };
        AsyncClient {
            namespace: options.resolved_namespace(),
            connection: Arc::new(LazyClient {
                options,
                client: OnceCell::new(),
            }),
        }
    }

    /// The namespace this client works in.
    #[getter]
    fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Sandbox operations: create, get, list.
    #[getter]
    fn sandboxes(&self) -> AsyncSandboxes {
        AsyncSandboxes::new(self.connection.clone())
    }

    /// Volume operations: create, get, list, delete.
    #[getter]
    fn volumes(&self) -> AsyncVolumes {
        AsyncVolumes::new(self.connection.clone())
    }

    /// Connects now, so that configuration and connection errors surface here.
    fn connect<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let connection = self.connection.clone();
        crate::bridge::awaitable(py, async move {
            connection.get().await?;
            Ok(crate::bridge::NONE)
        })
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let connection = slf.get().connection.clone();
        let this = slf.clone().unbind();
        crate::bridge::awaitable(slf.py(), async move {
            connection.get().await?;
            Ok(this)
        })
    }

    #[pyo3(signature = (*_exc_info))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc_info: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        crate::bridge::awaitable(py, async move { Ok(crate::bridge::NONE) })
    }

    fn __repr__(&self) -> String {
        format!("AsyncClient(namespace='{}')", self.namespace)
    }
}
