//! `AsyncVolumes` (the collection) and `AsyncVolume` (one volume).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use pyo3::prelude::*;
use pyo3::types::PyAny;
use sandlot_core::{AccessMode, Client, VolumeSpec, VolumeStatus};

use crate::client::LazyClient;
use crate::errors::IntoPyResult;
use crate::sandbox::seconds;
use crate::status::python_enum;

/// The volumes of a client's namespace.
#[pyclass(module = "sandlot", frozen)]
#[derive(Debug)]
pub struct AsyncVolumes {
    connection: Arc<LazyClient>,
}

impl AsyncVolumes {
    pub fn new(connection: Arc<LazyClient>) -> Self {
        AsyncVolumes { connection }
    }
}

#[pymethods]
impl AsyncVolumes {
    /// Creates volume `name` of `size` (a Kubernetes quantity) in `storage_class`
    /// (the cluster's default if None). Raises `NameConflictError` while a volume
    /// of that name exists.
    #[pyo3(signature = (name, *, size="1Gi", storage_class=None, access_mode="ReadWriteOnce", tags=None))]
    fn create<'py>(
        &self,
        py: Python<'py>,
        name: String,
        size: &str,
        storage_class: Option<String>,
        access_mode: &str,
        tags: Option<BTreeMap<String, String>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let spec = VolumeSpec {
            name,
            size: size.to_owned(),
            storage_class,
            access_mode: AccessMode::parse("access_mode", access_mode).into_py_result()?,
            tags: tags.unwrap_or_default(),
        };
        spec.validate().into_py_result()?;
        let connection = self.connection.clone();
        crate::bridge::awaitable(py, async move {
            let client = connection.get().await?;
            let status = client.create_volume(&spec).await.into_py_result()?;
            Ok(AsyncVolume::new(client, status))
        })
    }

    /// The volume named `name`; raises `NotFoundError` if there is none.
    fn get<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let connection = self.connection.clone();
        crate::bridge::awaitable(py, async move {
            let client = connection.get().await?;
            let status = client.get_volume(&name).await.into_py_result()?;
            Ok(AsyncVolume::new(client, status))
        })
    }

    /// The volumes carrying all of `tags`, oldest first.
    #[pyo3(signature = (*, tags=None))]
    fn list<'py>(
        &self,
        py: Python<'py>,
        tags: Option<BTreeMap<String, String>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let connection = self.connection.clone();
        let tags = tags.unwrap_or_default();
        crate::bridge::awaitable(py, async move {
            let client = connection.get().await?;
            let volumes = client.list_volumes(&tags).await.into_py_result()?;
            Ok(volumes
                .into_iter()
                .map(|status| AsyncVolume::new(client.clone(), status))
                .collect::<Vec<_>>())
        })
    }

    /// Deletes volume `name` and waits (up to `timeout` seconds) until its name
    /// is free again. Raises `VolumeInUseError` if live sandboxes mount it,
    /// unless `force`, which terminates them first.
    #[pyo3(signature = (name, *, force=false, timeout=120.0))]
    fn delete<'py>(
        &self,
        py: Python<'py>,
        name: String,
        force: bool,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let timeout = seconds("timeout", timeout)?;
        let connection = self.connection.clone();
        crate::bridge::awaitable(py, async move {
            let client = connection.get().await?;
            client
                .delete_volume(&name, force, timeout)
                .await
                .into_py_result()
        })
    }

    fn __repr__(&self) -> String {
        "AsyncVolumes()".to_owned()
    }
}

/// One volume. Its properties are as last seen; `refresh()` reads them anew.
#[pyclass(module = "sandlot", frozen)]
#[derive(Debug)]
pub struct AsyncVolume {
    client: Client,
    status: Arc<Mutex<VolumeStatus>>,
}

impl AsyncVolume {
    fn new(client: Client, status: VolumeStatus) -> Self {
        AsyncVolume {
            client,
            status: Arc::new(Mutex::new(status)),
        }
    }

    fn last(&self) -> VolumeStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[pymethods]
impl AsyncVolume {
    #[getter]
    fn name(&self) -> String {
        self.last().name
    }

    #[getter]
    fn namespace(&self) -> String {
        self.last().namespace
    }

    /// `sandlot.VolumePhase`: pending, ready or failed.
    #[getter]
    fn phase<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        python_enum(py, "VolumePhase", self.last().phase.as_str())
    }

    /// Provisioned capacity once bound, else the size asked for.
    #[getter]
    fn size(&self) -> String {
        self.last().size
    }

    #[getter]
    fn storage_class(&self) -> Option<String> {
        self.last().storage_class
    }

    #[getter]
    fn access_mode(&self) -> String {
        self.last().access_mode
    }

    /// Names of the live sandboxes that mount this volume.
    #[getter]
    fn attached_to(&self) -> Vec<String> {
        self.last().attached_to
    }

    #[getter]
    fn created_at(&self) -> Option<Timestamp> {
        self.last().created_at
    }

    #[getter]
    fn tags(&self) -> BTreeMap<String, String> {
        self.last().tags
    }

    /// Reads the volume anew and returns it.
    fn refresh<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let (client, slot, name) = (this.client.clone(), this.status.clone(), this.last().name);
        let owner = slf.clone().unbind();
        crate::bridge::awaitable(slf.py(), async move {
            let status = client.get_volume(&name).await.into_py_result()?;
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = status;
            Ok(owner)
        })
    }

    /// Deletes this volume (see `AsyncVolumes.delete`).
    #[pyo3(signature = (*, force=false, timeout=120.0))]
    fn delete<'py>(
        &self,
        py: Python<'py>,
        force: bool,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let timeout = seconds("timeout", timeout)?;
        let (client, name) = (self.client.clone(), self.last().name);
        crate::bridge::awaitable(py, async move {
            client
                .delete_volume(&name, force, timeout)
                .await
                .into_py_result()
        })
    }

    fn _repr_html_(&self) -> String {
        crate::html::volumes_table(&[&self.last()])
    }

    fn __repr__(&self) -> String {
        let s = self.last();
        format!(
            "AsyncVolume(name='{}', phase='{}', size='{}', attached_to={:?})",
            s.name, s.phase, s.size, s.attached_to
        )
    }
}
