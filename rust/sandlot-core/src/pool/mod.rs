//! Warm pools: sandboxes started ahead of time, idle and never having run
//! user code, that a create takes over in milliseconds.
//!
//! A pool is one ConfigMap (`sandlot-pool-<name>`) that any client can read:
//! its template (the options every warm pod is made with, as JSON), its size,
//! and how long a warm pod may wait. Its warm pods are ordinary sandbox pods
//! carrying [`POOL_LABEL`] and, while warm, [`WARM_LABEL`] (the template's
//! hash), owned by the ConfigMap so that deleting the pool ends them. No
//! controller runs: whoever claims starts a replacement, and any client's
//! [`Client::fill_pool`] tops the pool up, retires warm pods of an older
//! template or past their idle lifetime (only once enough new ones are
//! ready), and trims a surplus. A claim (`claim.rs`) takes one warm pod by a
//! patch conditioned on the version it read, so two clients never get the
//! same pod; a claimed pod never returns to a pool.

mod claim;
mod fill;

use std::collections::BTreeMap;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::{Error, ObjectKind, Result, api_status};
use crate::labels::{self, POOL_LABEL, WARM_LABEL};
use crate::network::{Network, NetworkMode};
use crate::retry::retry;
use crate::spec::{Resources, SandboxRequest, SandboxSpec, Ttl};
use crate::validate;
use jiff::Timestamp;

pub(crate) use claim::Claim;

/// How long a warm pod waits to be claimed before a fill replaces it, unless
/// the pool says otherwise: one hour.
pub const DEFAULT_IDLE_SECONDS: i64 = 3600;
/// The longest lifetime a claim from a pool may ask for, unless the pool says
/// otherwise: one day. A warm pod's Kubernetes deadline is its idle lifetime
/// plus this, so nothing warm runs past that bound even if no client ever
/// fills the pool again.
pub const DEFAULT_MAX_TTL_SECONDS: i64 = 86_400;
/// The largest pool.
pub const MAX_POOL_SIZE: u32 = 500;
/// The longest pool name: warm pods are named `<pool>-<10 characters>`.
const MAX_POOL_NAME_LEN: usize = 40;
/// The shortest idle lifetime.
const MIN_IDLE_SECONDS: i64 = 30;
/// The longest idle lifetime: 30 days.
const MAX_IDLE_SECONDS: i64 = 30 * 86_400;
/// The longest `max_ttl_seconds`: 10 years (with the idle lifetime, within
/// Kubernetes' deadline limit).
const MAX_CLAIM_TTL_SECONDS: i64 = 3650 * 86_400;
/// How often a retire tries a warm pod that keeps changing.
const RETIRE_TRIES: u32 = 5;
/// The ConfigMap's keys.
const TEMPLATE_KEY: &str = "template";
const SIZE_KEY: &str = "size";
const IDLE_KEY: &str = "idle-seconds";
const MAX_TTL_KEY: &str = "max-ttl-seconds";

/// What a pool's warm pods are made with: the sandbox options that fit a
/// pool. Stored as JSON in the pool's ConfigMap and on each warm pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
// A field this version does not know (a newer one's, maybe a protection) is
// an unreadable pool, never one silently ignored.
#[serde(deny_unknown_fields)]
pub struct PoolTemplate {
    pub image: String,
    /// Environment of the warm pods' containers (in the pod spec).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub cpu: Option<String>,
    #[serde(default)]
    pub memory: Option<String>,
    #[serde(default)]
    pub disk: Option<String>,
    #[serde(default)]
    pub network: Option<NetworkMode>,
    #[serde(default)]
    pub allow_egress: Vec<String>,
    #[serde(default)]
    pub run_as_user: Option<i64>,
    #[serde(default)]
    pub read_only_root_filesystem: bool,
    #[serde(default)]
    pub runtime_class: Option<String>,
    #[serde(default)]
    pub user_namespace: Option<bool>,
}

impl PoolTemplate {
    /// The sandbox request a warm pod of this template is made from (idle,
    /// no name, no lifetime yet).
    pub(crate) fn request(&self) -> SandboxRequest {
        SandboxRequest {
            image: self.image.clone(),
            env: self.env.clone(),
            resources: Resources {
                cpu: self.cpu.clone(),
                memory: self.memory.clone(),
                disk: self.disk.clone(),
            },
            network: self.network,
            allow_egress: self.allow_egress.clone(),
            run_as_user: self.run_as_user,
            read_only_root_filesystem: self.read_only_root_filesystem,
            runtime_class: self.runtime_class.clone(),
            user_namespace: self.user_namespace,
            ..SandboxRequest::default()
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a template serializes")
    }
}

/// The version of a pool's warm pods: a short hash (FNV-1a) of the template's
/// JSON and the lifetimes, which set each warm pod's Kubernetes deadline.
fn version_of(template_json: &str, idle_seconds: i64, max_ttl_seconds: i64) -> String {
    let text = format!("{template_json}\n{idle_seconds}\n{max_ttl_seconds}");
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{:012x}", hash >> 16)
}

/// A pool as asked for, before any check; [`PoolSpec::try_from`] checks it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolRequest {
    pub name: String,
    /// How many warm pods the pool keeps (0 to [`MAX_POOL_SIZE`]).
    pub size: u32,
    pub template: PoolTemplate,
    /// How long a warm pod waits before it is replaced; default [`DEFAULT_IDLE_SECONDS`].
    pub idle_seconds: Option<i64>,
    /// The longest `ttl_seconds` a claim may ask for; default [`DEFAULT_MAX_TTL_SECONDS`].
    pub max_ttl_seconds: Option<i64>,
}

/// A pool request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    name: String,
    size: u32,
    template: PoolTemplate,
    idle_seconds: i64,
    max_ttl_seconds: i64,
}

impl TryFrom<PoolRequest> for PoolSpec {
    type Error = Error;

    /// Checks the name, size and lifetimes, and the template as a sandbox
    /// (each field named as the sandbox option it is).
    fn try_from(request: PoolRequest) -> Result<PoolSpec> {
        check_pool_name("name", &request.name)?;
        check_size("size", request.size)?;
        if request.template.image.trim().is_empty() {
            return Err(Error::invalid("image", "must not be empty"));
        }
        let idle_seconds = request.idle_seconds.unwrap_or(DEFAULT_IDLE_SECONDS);
        if !(MIN_IDLE_SECONDS..=MAX_IDLE_SECONDS).contains(&idle_seconds) {
            return Err(Error::invalid(
                "idle_seconds",
                format!("must be between {MIN_IDLE_SECONDS} and {MAX_IDLE_SECONDS} (30 days)"),
            ));
        }
        let max_ttl_seconds = request.max_ttl_seconds.unwrap_or(DEFAULT_MAX_TTL_SECONDS);
        if !(1..=MAX_CLAIM_TTL_SECONDS).contains(&max_ttl_seconds) {
            return Err(Error::invalid(
                "max_ttl_seconds",
                format!("must be between 1 and {MAX_CLAIM_TTL_SECONDS} (10 years)"),
            ));
        }
        SandboxSpec::try_from(request.template.request())?;
        Ok(PoolSpec {
            name: request.name,
            size: request.size,
            template: request.template,
            idle_seconds,
            max_ttl_seconds,
        })
    }
}

impl PoolSpec {
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Checks a pool's name: a DNS label short enough to prefix its pods' names.
pub fn check_pool_name(field: &str, name: &str) -> Result<()> {
    validate::object_name(field, name)?;
    if name.len() > MAX_POOL_NAME_LEN {
        return Err(Error::invalid(
            field,
            format!(
                "{name:?} is {} characters; a pool name has at most {MAX_POOL_NAME_LEN} (its \
                 pods are named after it)",
                name.len()
            ),
        ));
    }
    Ok(())
}

/// Checks a pool size.
pub fn check_size(field: &str, size: u32) -> Result<()> {
    if size > MAX_POOL_SIZE {
        return Err(Error::invalid(
            field,
            format!("{size} is more than {MAX_POOL_SIZE}"),
        ));
    }
    Ok(())
}

/// A pool as stored: what its ConfigMap says.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub name: String,
    pub size: u32,
    pub template: PoolTemplate,
    pub template_json: String,
    /// The template's hash: the [`WARM_LABEL`] value of its warm pods.
    pub version: String,
    pub idle_seconds: i64,
    pub max_ttl_seconds: i64,
    pub created_at: Option<Timestamp>,
    /// The ConfigMap, as the owner of warm pods.
    pub owner: OwnerReference,
}

impl Pool {
    fn from_config_map(map: &ConfigMap) -> Option<Pool> {
        let data = map.data.as_ref()?;
        let name = map.metadata.labels.as_ref()?.get(POOL_LABEL)?.clone();
        let template_json = data.get(TEMPLATE_KEY)?.clone();
        let template: PoolTemplate = serde_json::from_str(&template_json).ok()?;
        let number = |key: &str| data.get(key)?.parse::<i64>().ok();
        let (idle_seconds, max_ttl_seconds) = (number(IDLE_KEY)?, number(MAX_TTL_KEY)?);
        let size = u32::try_from(number(SIZE_KEY)?).ok()?;
        // Only what a create could have written.
        if size > MAX_POOL_SIZE
            || !(MIN_IDLE_SECONDS..=MAX_IDLE_SECONDS).contains(&idle_seconds)
            || !(1..=MAX_CLAIM_TTL_SECONDS).contains(&max_ttl_seconds)
        {
            return None;
        }
        Some(Pool {
            name,
            size,
            version: version_of(&template_json, idle_seconds, max_ttl_seconds),
            template,
            template_json,
            idle_seconds,
            max_ttl_seconds,
            created_at: map.metadata.creation_timestamp.as_ref().map(|t| t.0),
            owner: OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: map.metadata.name.clone()?,
                uid: map.metadata.uid.clone()?,
                block_owner_deletion: None,
                controller: None,
            },
        })
    }
}

/// The name of pool `name`'s ConfigMap.
fn config_map_name(name: &str) -> String {
    format!("sandlot-pool-{name}")
}

fn config_map_data(spec: &PoolSpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TEMPLATE_KEY.to_owned(), spec.template.to_json()),
        (SIZE_KEY.to_owned(), spec.size.to_string()),
        (IDLE_KEY.to_owned(), spec.idle_seconds.to_string()),
        (MAX_TTL_KEY.to_owned(), spec.max_ttl_seconds.to_string()),
    ])
}

/// A pool and its warm pods as last seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolStatus {
    pub name: String,
    pub namespace: String,
    pub image: String,
    /// How many warm pods the pool keeps.
    pub size: u32,
    /// Warm pods of the current template, running and ready to be claimed.
    pub ready: u32,
    /// Warm pods of the current template still starting.
    pub starting: u32,
    /// Warm pods of an earlier template, or past their idle lifetime, not
    /// yet replaced (claimed only while no current one is ready).
    pub stale: u32,
    pub network: NetworkMode,
    pub idle_seconds: i64,
    pub max_ttl_seconds: i64,
    pub created_at: Option<Timestamp>,
    /// The template's version (a hash), as on its warm pods.
    pub version: String,
    /// The template, as JSON.
    pub template: String,
}

impl Client {
    pub(crate) fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.kube().clone(), self.namespace())
    }

    /// Reads pool `name`; [`Error::NotFound`] if there is none.
    pub(crate) async fn read_pool(&self, name: &str) -> Result<Pool> {
        check_pool_name("pool", name)?;
        let maps = self.config_maps();
        let map_name = config_map_name(name);
        let map = retry(|| maps.get_opt(&map_name))
            .await
            .map_err(|err| self.object_error(err, ObjectKind::Pool, name))?;
        let map = map
            .filter(|map| labels::is_managed(&map.metadata))
            .ok_or_else(|| self.not_found(ObjectKind::Pool, name))?;
        Pool::from_config_map(&map).ok_or_else(|| Error::Api {
            status: 422,
            reason: "Invalid".into(),
            message: format!(
                "ConfigMap {map_name:?} is not a pool this sandlot can read (edited by hand, or \
                 made by another version); delete the pool and create it again"
            ),
        })
    }

    /// Creates pool `spec` and starts its warm pods (without waiting for
    /// them). [`Error::NameConflict`] if a pool of that name exists; a pod
    /// that cannot be started (quota, ...) fails the create, which then
    /// deletes the pool again.
    pub async fn create_pool(&self, spec: &PoolSpec) -> Result<PoolStatus> {
        let mut labels = labels::managed_labels();
        labels.insert(POOL_LABEL.to_owned(), spec.name.clone());
        let map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(config_map_name(&spec.name)),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            data: Some(config_map_data(spec)),
            ..ConfigMap::default()
        };
        let maps = self.config_maps();
        let params = PostParams::default();
        retry(|| maps.create(&params, &map))
            .await
            .map_err(|err| self.object_error(err, ObjectKind::Pool, &spec.name))?;
        match self.fill_pool(&spec.name, None).await {
            Ok(status) => Ok(status),
            // Nothing left behind by a create that failed.
            Err(err) => {
                let _ = self.delete_pool(&spec.name).await;
                Err(err)
            }
        }
    }

    /// Replaces pool `spec.name`'s template and lifetimes, and its size
    /// unless `keep_size`. Its warm pods of the old template are replaced
    /// gradually: each is retired only once enough pods of the new one are
    /// ready, and claims take old ones only while no new one is.
    pub async fn update_pool(&self, spec: &PoolSpec, keep_size: bool) -> Result<PoolStatus> {
        self.read_pool(&spec.name).await?;
        let mut data = config_map_data(spec);
        if keep_size {
            data.remove(SIZE_KEY);
        }
        let patch = serde_json::json!({"data": data});
        self.patch_pool(&spec.name, &patch).await?;
        self.fill_pool(&spec.name, None).await
    }

    /// Sets pool `name`'s size and fills or trims it to that.
    pub async fn resize_pool(&self, name: &str, size: u32) -> Result<PoolStatus> {
        check_pool_name("name", name)?;
        check_size("size", size)?;
        self.read_pool(name).await?;
        let patch = serde_json::json!({"data": {SIZE_KEY: size.to_string()}});
        self.patch_pool(name, &patch).await?;
        self.fill_pool(name, None).await
    }

    async fn patch_pool(&self, name: &str, patch: &serde_json::Value) -> Result<()> {
        let maps = self.config_maps();
        let (map_name, params, patch) = (
            config_map_name(name),
            PatchParams::default(),
            Patch::Merge(patch),
        );
        retry(|| maps.patch(&map_name, &params, &patch))
            .await
            .map_err(|err| self.object_error(err, ObjectKind::Pool, name))?;
        Ok(())
    }

    /// Pool `name` and how many of its warm pods are ready.
    pub async fn get_pool(&self, name: &str) -> Result<PoolStatus> {
        check_pool_name("name", name)?;
        let pool = self.read_pool(name).await?;
        let pods = self.warm_pods(name).await?;
        Ok(self.pool_status(&pool, &pods))
    }

    /// Every pool in the namespace, by name.
    pub async fn list_pools(&self) -> Result<Vec<PoolStatus>> {
        let maps = self.config_maps();
        let params =
            ListParams::default().labels(&format!("{},{POOL_LABEL}", labels::MANAGED_ONLY));
        let found = retry(|| maps.list(&params))
            .await
            .map_err(|err| self.api_error(err))?;
        let pools: Vec<Pool> = found
            .items
            .iter()
            .filter_map(Pool::from_config_map)
            .collect();
        let params =
            ListParams::default().labels(&format!("{},{WARM_LABEL}", labels::MANAGED_ONLY));
        let pods = self.list_pods(&params).await?;
        let mut statuses: Vec<PoolStatus> = pools
            .iter()
            .map(|pool| {
                let own: Vec<Pod> = pods
                    .iter()
                    .filter(|pod| labels::label(&pod.metadata, POOL_LABEL) == Some(&pool.name))
                    .cloned()
                    .collect();
                self.pool_status(pool, &own)
            })
            .collect();
        statuses.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(statuses)
    }

    /// Deletes pool `name` and ends its warm pods; sandboxes claimed from it
    /// go on. Returns how many warm pods this call ended. The warm pods go
    /// first (each unless a claim took it meanwhile), then the ConfigMap,
    /// whose deletion ends any that a claim's replacement started since.
    pub async fn delete_pool(&self, name: &str) -> Result<u32> {
        check_pool_name("name", name)?;
        let pool = self.read_pool(name).await?;
        let warm = self.warm_pods(name).await?;
        let census = fill::Census::of(&pool, &warm, jiff::Timestamp::now());
        let live = census
            .ready
            .iter()
            .chain(&census.starting)
            .chain(&census.stale);
        let ended = join_all(live.map(|pod| self.retire(pod))).await;
        let maps = self.config_maps();
        let (map_name, params) = (config_map_name(name), DeleteParams::background());
        match retry(|| maps.delete(&map_name, &params)).await {
            Ok(_) => {}
            Err(err) if api_status(&err).is_some_and(|s| s.code == 404) => {}
            Err(err) => return Err(self.object_error(err, ObjectKind::Pool, name)),
        }
        Ok(ended.into_iter().filter(|&ended| ended).count() as u32)
    }

    /// Pool `name`'s warm pods (not yet claimed), ending ones included.
    pub(crate) async fn warm_pods(&self, name: &str) -> Result<Vec<Pod>> {
        let params = ListParams::default().labels(&format!(
            "{},{POOL_LABEL}={name},{WARM_LABEL}",
            labels::MANAGED_ONLY
        ));
        self.list_pods(&params).await
    }

    /// Deletes warm pod `pod` unless a claim took it: each try is
    /// conditioned on the version last read, and a pod that changed is read
    /// again and deleted only while it is still warm (the kubelet updates a
    /// pod's status too). True if it was deleted, or is ending still warm.
    /// (Its own grace period: a deletion without one would update the pod
    /// and then fail its own version condition.)
    pub(crate) async fn retire(&self, pod: &Pod) -> bool {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut version = pod.metadata.resource_version.clone();
        for _ in 0..RETIRE_TRIES {
            let params = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: version.clone(),
                }),
                ..DeleteParams::default()
            };
            match retry(|| self.pods().delete(&name, &params)).await {
                Ok(_) => return true,
                Err(err) if api_status(&err).is_some_and(|s| s.code == 409) => {}
                Err(_) => return false,
            }
            match retry(|| self.pods().get_opt(&name)).await {
                Ok(Some(now))
                    if now.metadata.uid == pod.metadata.uid
                        && labels::label(&now.metadata, WARM_LABEL).is_some() =>
                {
                    if now.metadata.deletion_timestamp.is_some() {
                        return true; // ending, still warm: no claim took it
                    }
                    version = now.metadata.resource_version;
                }
                _ => return false,
            }
        }
        false
    }

    fn pool_status(&self, pool: &Pool, pods: &[Pod]) -> PoolStatus {
        let census = fill::Census::of(pool, pods, jiff::Timestamp::now());
        PoolStatus {
            name: pool.name.clone(),
            namespace: self.namespace().to_owned(),
            image: pool.template.image.clone(),
            size: pool.size,
            ready: census.ready.len() as u32,
            starting: census.starting.len() as u32,
            stale: census.stale.len() as u32,
            // As a sandbox of the template gets it (checked when stored).
            network: Network::from_request(pool.template.network, &pool.template.allow_egress)
                .map(|network| network.mode)
                .unwrap_or_default(),
            idle_seconds: pool.idle_seconds,
            max_ttl_seconds: pool.max_ttl_seconds,
            created_at: pool.created_at,
            version: pool.version.clone(),
            template: pool.template_json.clone(),
        }
    }

    pub(crate) fn not_found(&self, kind: ObjectKind, name: &str) -> Error {
        Error::NotFound {
            kind,
            name: name.to_owned(),
            namespace: self.namespace().to_owned(),
        }
    }
}

/// The lifetime a warm pod of `pool` gets from Kubernetes: its idle lifetime
/// plus the longest a claim may add.
pub(crate) fn warm_deadline(pool: &Pool) -> Ttl {
    Ttl::Seconds(pool.idle_seconds + pool.max_ttl_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PoolRequest {
        PoolRequest {
            name: "py".into(),
            size: 3,
            template: PoolTemplate {
                image: "busybox:1.36".into(),
                ..PoolTemplate::default()
            },
            ..PoolRequest::default()
        }
    }

    fn field_of(request: PoolRequest) -> String {
        match PoolSpec::try_from(request) {
            Err(Error::InvalidSpec { field, .. }) => field,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn every_pool_field_is_checked_with_its_name() {
        PoolSpec::try_from(request()).unwrap();
        let long = "p".repeat(41);
        assert_eq!(
            field_of(PoolRequest {
                name: long,
                ..request()
            }),
            "name"
        );
        assert_eq!(
            field_of(PoolRequest {
                name: "Py".into(),
                ..request()
            }),
            "name"
        );
        assert_eq!(
            field_of(PoolRequest {
                size: 501,
                ..request()
            }),
            "size"
        );
        assert_eq!(
            field_of(PoolRequest {
                idle_seconds: Some(5),
                ..request()
            }),
            "idle_seconds"
        );
        assert_eq!(
            field_of(PoolRequest {
                max_ttl_seconds: Some(0),
                ..request()
            }),
            "max_ttl_seconds"
        );
        let mut bad = request();
        bad.template.cpu = Some("lots".into());
        assert_eq!(field_of(bad), "resources.cpu");
        let mut bad = request();
        bad.template.image = String::new();
        assert_eq!(field_of(bad), "image");
    }

    #[test]
    fn a_stored_pool_reads_back_and_its_version_follows_the_template() {
        let spec = PoolSpec::try_from(request()).unwrap();
        let mut labels = labels::managed_labels();
        labels.insert(POOL_LABEL.into(), "py".into());
        let map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(config_map_name("py")),
                uid: Some("u1".into()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            data: Some(config_map_data(&spec)),
            ..ConfigMap::default()
        };
        let pool = Pool::from_config_map(&map).unwrap();
        assert_eq!((pool.size, pool.idle_seconds), (3, DEFAULT_IDLE_SECONDS));
        assert_eq!(pool.template, spec.template);
        let json = spec.template.to_json();
        assert_eq!(pool.version, version_of(&json, 3600, 86_400));
        let mut changed = spec.template.clone();
        changed.image = "busybox:1.37".into();
        assert_ne!(pool.version, version_of(&changed.to_json(), 3600, 86_400));
        assert_ne!(pool.version, version_of(&json, 3600, 600));
    }
}
