//! The warm pools of a namespace (`AsyncPools` / `Pools`). Every operation is
//! declared once, on the shared base class; see [`crate::twins`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyAny;
use sandlot_core::{Error, MAX_POOL_SIZE, PoolRequest, PoolSpec, PoolTemplate};

use crate::bridge::Mode;
use crate::client::LazyClient;
use crate::inputs::{self, Read};
use crate::results::PoolStatus;
use crate::twins::{class_name, twins};

/// What `AsyncPools` and `Pools` share: the warm pools of a client's namespace.
#[pyclass(module = "sandlot._native", name = "_Pools", subclass, frozen)]
#[derive(Debug)]
pub struct PoolsBase {
    mode: Mode,
    connection: Arc<LazyClient>,
}

impl PoolsBase {
    pub fn new(mode: Mode, connection: Arc<LazyClient>) -> Self {
        PoolsBase { mode, connection }
    }

    /// Creates the pool `checked` describes (`update`: `None`), or replaces
    /// its definition (`Some(keep_size)`), then waits for it to fill if
    /// asked to.
    fn define<'py>(
        &self,
        py: Python<'py>,
        checked: Read<(PoolSpec, Option<Duration>)>,
        update: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let connection = self.connection.clone();
        self.mode.run(py, async move {
            let (spec, wait) = checked?;
            let client = connection.get().await?;
            let mut status = match update {
                None => client.create_pool(&spec).await?,
                Some(keep_size) => client.update_pool(&spec, keep_size).await?,
            };
            if wait.is_some() {
                status = client.fill_pool(spec.name(), wait).await?;
            }
            Ok(PoolStatus::from(status))
        })
    }
}

twins!(PoolsBase => AsyncPools, SyncPools);

/// The warm pools of an `AsyncClient`'s namespace.
#[pyclass(module = "sandlot", extends = PoolsBase, frozen)]
#[derive(Debug)]
pub struct AsyncPools;

/// The warm pools of a `Client`'s namespace.
#[pyclass(module = "sandlot", name = "Pools", extends = PoolsBase, frozen)]
#[derive(Debug)]
pub struct SyncPools;

/// What `create` and `update` take besides the name and the size.
struct PoolOptions {
    image: String,
    env: Option<BTreeMap<String, String>>,
    resources: Option<BTreeMap<String, String>>,
    network: Option<String>,
    allow_egress: Option<Vec<String>>,
    run_as_user: Option<i64>,
    read_only_root_filesystem: bool,
    runtime_class: Option<String>,
    user_namespace: Option<bool>,
    idle_seconds: Option<i64>,
    max_ttl_seconds: Option<i64>,
}

impl PoolOptions {
    /// The checked spec of pool `name` of `size` warm sandboxes.
    fn spec(self, name: String, size: u32) -> Read<PoolSpec> {
        let resources = inputs::resources(self.resources.unwrap_or_default())?;
        let network = self.network.map(|mode| mode.parse()).transpose()?;
        let request = PoolRequest {
            name,
            size,
            template: PoolTemplate {
                image: self.image,
                env: self.env.unwrap_or_default(),
                cpu: resources.cpu,
                memory: resources.memory,
                disk: resources.disk,
                network,
                allow_egress: self.allow_egress.unwrap_or_default(),
                run_as_user: self.run_as_user,
                read_only_root_filesystem: self.read_only_root_filesystem,
                runtime_class: self.runtime_class,
                user_namespace: self.user_namespace,
            },
            idle_seconds: self.idle_seconds,
            max_ttl_seconds: self.max_ttl_seconds,
        };
        Ok(PoolSpec::try_from(request)?)
    }
}

/// A pool size from Python (any int; the core checks the upper bound).
fn size(value: i64) -> Read<u32> {
    u32::try_from(value).map_err(|_| {
        Error::invalid(
            "size",
            format!("{value} is not a pool size (0 to {MAX_POOL_SIZE})"),
        )
        .into()
    })
}

/// A pool's name, checked before any request.
fn named(name: &str) -> Read<()> {
    Ok(sandlot_core::check_pool_name("name", name)?)
}

/// How long to wait for a pool to fill: `None` is not at all.
fn wait(value: Option<f64>) -> Read<Option<Duration>> {
    value.map(|s| inputs::seconds("wait", s)).transpose()
}

#[pymethods]
impl PoolsBase {
    /// Creates pool `name`, which keeps `size` warm sandboxes of `image` (and
    /// the other options, as for `sandboxes.create`) for creates that name it,
    /// and starts them. Returns at once unless `wait` (seconds): then once
    /// `size` of them are ready, raising `sandlot.TimeoutError` after that
    /// long. A warm sandbox unclaimed for `idle_seconds` (default one hour) is
    /// replaced; a create from the pool may ask for a lifetime of at most
    /// `max_ttl_seconds` (default one day). Raises `NameConflictError` while a
    /// pool of that name exists; bad input raises `InvalidSpecError` before
    /// any request.
    #[pyo3(signature = (name, image, *, size=1, env=None, resources=None, network=None, allow_egress=None, run_as_user=None, read_only_root_filesystem=false, runtime_class=None, user_namespace=None, idle_seconds=None, max_ttl_seconds=None, wait=None))]
    #[allow(clippy::too_many_arguments)]
    fn create<'py>(
        &self,
        py: Python<'py>,
        name: String,
        image: String,
        size: i64,
        env: Option<BTreeMap<String, String>>,
        resources: Option<BTreeMap<String, String>>,
        network: Option<String>,
        allow_egress: Option<Vec<String>>,
        run_as_user: Option<i64>,
        read_only_root_filesystem: bool,
        runtime_class: Option<String>,
        user_namespace: Option<bool>,
        idle_seconds: Option<i64>,
        max_ttl_seconds: Option<i64>,
        wait: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = PoolOptions {
            image,
            env,
            resources,
            network,
            allow_egress,
            run_as_user,
            read_only_root_filesystem,
            runtime_class,
            user_namespace,
            idle_seconds,
            max_ttl_seconds,
        };
        let checked = self::size(size)
            .and_then(|size| options.spec(name, size))
            .and_then(|spec| Ok((spec, self::wait(wait)?)));
        self.define(py, checked, None)
    }

    /// Replaces pool `name`'s image and options (all of them: one left out
    /// returns to its default) and, unless `size` is None, its size. Warm
    /// sandboxes of the old options are replaced gradually, each once enough
    /// new ones are ready. `wait` as for `create`. Raises `NotFoundError` if
    /// there is no such pool.
    #[pyo3(signature = (name, image, *, size=None, env=None, resources=None, network=None, allow_egress=None, run_as_user=None, read_only_root_filesystem=false, runtime_class=None, user_namespace=None, idle_seconds=None, max_ttl_seconds=None, wait=None))]
    #[allow(clippy::too_many_arguments)]
    fn update<'py>(
        &self,
        py: Python<'py>,
        name: String,
        image: String,
        size: Option<i64>,
        env: Option<BTreeMap<String, String>>,
        resources: Option<BTreeMap<String, String>>,
        network: Option<String>,
        allow_egress: Option<Vec<String>>,
        run_as_user: Option<i64>,
        read_only_root_filesystem: bool,
        runtime_class: Option<String>,
        user_namespace: Option<bool>,
        idle_seconds: Option<i64>,
        max_ttl_seconds: Option<i64>,
        wait: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = PoolOptions {
            image,
            env,
            resources,
            network,
            allow_egress,
            run_as_user,
            read_only_root_filesystem,
            runtime_class,
            user_namespace,
            idle_seconds,
            max_ttl_seconds,
        };
        let keep_size = size.is_none();
        // Without a size the pool keeps its own; 0 only passes the check.
        let checked = size
            .map_or(Ok(0), self::size)
            .and_then(|size| options.spec(name, size))
            .and_then(|spec| Ok((spec, self::wait(wait)?)));
        self.define(py, checked, Some(keep_size))
    }

    /// Sets pool `name`'s size, starting or ending warm sandboxes to match.
    /// `wait` as for `create`.
    #[pyo3(signature = (name, size, *, wait=None))]
    fn resize<'py>(
        &self,
        py: Python<'py>,
        name: String,
        size: i64,
        wait: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let checked = named(&name)
            .and_then(|()| self::size(size))
            .and_then(|size| Ok((size, self::wait(wait)?)));
        let connection = self.connection.clone();
        self.mode.run(py, async move {
            let (size, wait) = checked?;
            let client = connection.get().await?;
            let mut status = client.resize_pool(&name, size).await?;
            if wait.is_some() {
                status = client.fill_pool(&name, wait).await?;
            }
            Ok(PoolStatus::from(status))
        })
    }

    /// Tops pool `name` up: replaces warm sandboxes that ended, grew stale
    /// (older options, idle too long) or were claimed. Without `wait` one
    /// pass; with it, passes until `size` of them are ready, raising
    /// `sandlot.TimeoutError` after `wait` seconds.
    #[pyo3(signature = (name, *, wait=None))]
    fn fill<'py>(
        &self,
        py: Python<'py>,
        name: String,
        wait: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let wait = named(&name).and_then(|()| self::wait(wait));
        let connection = self.connection.clone();
        self.mode.run(py, async move {
            let wait = wait?;
            let client = connection.get().await?;
            Ok(PoolStatus::from(client.fill_pool(&name, wait).await?))
        })
    }

    /// Pool `name` and how many of its warm sandboxes are ready; raises
    /// `NotFoundError` if there is none.
    fn get<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let checked = named(&name);
        let connection = self.connection.clone();
        self.mode.run(py, async move {
            checked?;
            let client = connection.get().await?;
            Ok(PoolStatus::from(client.get_pool(&name).await?))
        })
    }

    /// Every pool in the namespace, by name.
    fn list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let connection = self.connection.clone();
        self.mode.run(py, async move {
            let client = connection.get().await?;
            let pools = client.list_pools().await?;
            Ok(pools.into_iter().map(PoolStatus::from).collect::<Vec<_>>())
        })
    }

    /// Deletes pool `name` and ends its warm sandboxes; sandboxes created from
    /// it go on. Returns how many warm sandboxes were ended.
    fn delete<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let checked = named(&name);
        let connection = self.connection.clone();
        self.mode.run(py, async move {
            checked?;
            let client = connection.get().await?;
            Ok(client.delete_pool(&name).await?)
        })
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        format!("{}()", class_name(slf))
    }
}
