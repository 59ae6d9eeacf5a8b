//! The volumes of a namespace (`AsyncVolumes` / `Volumes`) and one volume
//! (`AsyncVolume` / `Volume`). Every operation is declared once, on the shared
//! base class; see [`crate::twins`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use pyo3::prelude::*;
use pyo3::types::PyAny;
use sandlot_core::{AccessMode, Client, FileTarget, VolumeSpec, VolumeStatus};

use crate::bridge::{Mode, NONE};
use crate::client::LazyClient;
use crate::errors::core_error;
use crate::files::FilesBase;
use crate::inputs;
use crate::results::python_enum;
use crate::twins::{InMode, class_name, twins};

/// What `AsyncVolumes` and `Volumes` share: the volumes of a client's namespace.
#[pyclass(module = "sandlot._native", name = "_Volumes", subclass, frozen)]
#[derive(Debug)]
pub struct VolumesBase {
    mode: Mode,
    connection: Arc<LazyClient>,
}

impl VolumesBase {
    pub fn new(mode: Mode, connection: Arc<LazyClient>) -> Self {
        VolumesBase { mode, connection }
    }
}

twins!(VolumesBase => AsyncVolumes, SyncVolumes);

/// The volumes of an `AsyncClient`'s namespace.
#[pyclass(module = "sandlot", extends = VolumesBase, frozen)]
#[derive(Debug)]
pub struct AsyncVolumes;

/// The volumes of a `Client`'s namespace.
#[pyclass(module = "sandlot", name = "Volumes", extends = VolumesBase, frozen)]
#[derive(Debug)]
pub struct SyncVolumes;

#[pymethods]
impl VolumesBase {
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
        let spec = AccessMode::parse("access_mode", access_mode).and_then(|access_mode| {
            let spec = VolumeSpec {
                name,
                size: size.to_owned(),
                storage_class,
                access_mode,
                tags: tags.unwrap_or_default(),
            };
            spec.validate()?;
            Ok(spec)
        });
        let (mode, connection) = (self.mode, self.connection.clone());
        self.mode.run(py, async move {
            let spec = spec?;
            let client = connection.get().await?;
            let status = client.create_volume(&spec).await?;
            Ok(VolumeBase::in_mode(mode, client, status))
        })
    }

    /// The volume named `name`; raises `NotFoundError` if there is none.
    fn get<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let (mode, connection) = (self.mode, self.connection.clone());
        self.mode.run(py, async move {
            let client = connection.get().await?;
            let status = client.get_volume(&name).await?;
            Ok(VolumeBase::in_mode(mode, client, status))
        })
    }

    /// The volumes carrying all of `tags`, oldest first.
    #[pyo3(signature = (*, tags=None))]
    fn list<'py>(
        &self,
        py: Python<'py>,
        tags: Option<BTreeMap<String, String>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (mode, connection) = (self.mode, self.connection.clone());
        let tags = tags.unwrap_or_default();
        self.mode.run(py, async move {
            let client = connection.get().await?;
            let volumes = client.list_volumes(&tags).await?;
            Ok(volumes
                .into_iter()
                .map(|status| VolumeBase::in_mode(mode, client.clone(), status))
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
        let timeout = inputs::seconds("timeout", timeout);
        let connection = self.connection.clone();
        self.mode.run(py, async move {
            let timeout = timeout?;
            let client = connection.get().await?;
            client.delete_volume(&name, force, timeout).await?;
            Ok(NONE)
        })
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        format!("{}()", class_name(slf))
    }
}

/// What `AsyncVolume` and `Volume` share: one volume. Its properties are as
/// last seen; `refresh()` reads them anew.
#[pyclass(module = "sandlot._native", name = "_Volume", subclass, frozen)]
#[derive(Debug)]
pub struct VolumeBase {
    mode: Mode,
    client: Client,
    status: Arc<Mutex<VolumeStatus>>,
}

twins!(VolumeBase => AsyncVolume, SyncVolume);

/// One volume of an `AsyncClient`.
#[pyclass(module = "sandlot", extends = VolumeBase, frozen)]
#[derive(Debug)]
pub struct AsyncVolume;

/// One volume of a `Client`.
#[pyclass(module = "sandlot", name = "Volume", extends = VolumeBase, frozen)]
#[derive(Debug)]
pub struct SyncVolume;

impl VolumeBase {
    fn files_of(&self, target: FileTarget) -> InMode<FilesBase> {
        InMode(
            self.mode,
            FilesBase::new(self.mode, self.client.clone(), target),
        )
    }

    fn in_mode(mode: Mode, client: Client, status: VolumeStatus) -> InMode<Self> {
        InMode(
            mode,
            VolumeBase {
                mode,
                client,
                status: Arc::new(Mutex::new(status)),
            },
        )
    }

    fn last(&self) -> VolumeStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[pymethods]
impl VolumeBase {
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

    /// The volume's files, paths relative to its root (`AsyncFiles` or
    /// `Files`), with or without a sandbox mounting it. They go through a
    /// helper pod that mounts the volume (read-only unless a call writes),
    /// runs as uid 0, and is kept while in use and deleted after 30 s idle.
    #[getter]
    fn files(&self) -> InMode<FilesBase> {
        self.files_of(FileTarget::volume(self.last().name))
    }

    /// The volume's files as a sandbox created with `run_as_user` sees
    /// them: through a helper that runs with that uid, gid and fsGroup, so
    /// what it writes is theirs. A uid below 1 or above 2147483647 raises
    /// `InvalidSpecError`.
    fn files_as(&self, py: Python<'_>, run_as_user: i64) -> PyResult<InMode<FilesBase>> {
        let target = FileTarget::volume_as(self.last().name, run_as_user)
            .map_err(|err| core_error(py, &err))?;
        Ok(self.files_of(target))
    }

    /// Reads the volume anew and returns it.
    fn refresh<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let (client, slot, name) = (this.client.clone(), this.status.clone(), this.last().name);
        let owner = slf.clone().unbind();
        this.mode.run(slf.py(), async move {
            let status = client.get_volume(&name).await?;
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
        let timeout = inputs::seconds("timeout", timeout);
        let (client, name) = (self.client.clone(), self.last().name);
        self.mode.run(py, async move {
            client.delete_volume(&name, force, timeout?).await?;
            Ok(NONE)
        })
    }

    fn _repr_html_(&self) -> String {
        crate::html::volumes_table(&[&self.last()])
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let s = slf.get().last();
        format!(
            "{}(name='{}', phase='{}', size='{}', attached_to={:?})",
            class_name(slf),
            s.name,
            s.phase,
            s.size,
            s.attached_to
        )
    }
}
