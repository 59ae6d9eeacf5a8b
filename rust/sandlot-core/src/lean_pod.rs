//! Pods read without what sandlot never reads. `metadata.managedFields`
//! records which field manager set which field, as a tree of JSON values per
//! manager; nothing in sandlot reads it, and parsing it was about half the
//! cost of reading a pod (measured on creates, patches, lists and watch
//! events of a thousand sandboxes). The requests that read many pods go
//! through [`LeanPod`], which skips it without building it. The shared
//! watch, which holds every sandbox pod of its namespace at once, reads
//! less still ([`WatchedPod`]) and keeps it compact ([`PodRecord`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStatus, PersistentVolumeClaimVolumeSource, Pod,
    PodCondition, PodSpec, PodStatus, ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::labels::CONTAINER_NAME;

/// A pod as sandlot reads it: every field but `metadata.managedFields`,
/// which is skipped unread (always `None` here). Written out, it is the
/// pod as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LeanPod(pub Pod);

/// A pod as the shared watch reads it from the API server: the metadata of
/// a [`LeanPod`], and of the rest only what is read from a watched pod, the
/// rest skipped unread:
/// - spec: the sandbox container's name, image, command, volume mounts and
///   resource limits; the volumes of claims (name and claim); `hostUsers`;
///   `nodeName`.
/// - status: phase, reason, message, the `PodScheduled` condition, and each
///   (init) container status's name, state, last state, readiness and
///   restarts.
///
/// The watch keeps it as a [`PodRecord`]. A reader of watched pods that
/// needs another field adds it here; the tests compare what each reader
/// derives from a whole pod and from its record.
#[derive(Clone, Debug, Default)]
pub(crate) struct WatchedPod {
    metadata: ObjectMeta,
    rest: WatchedRest,
}

impl WatchedPod {
    pub(crate) fn name(&self) -> Option<&str> {
        self.metadata.name.as_deref()
    }
}

/// The Kubernetes traits of a pod type whose metadata is at `$($field).+`.
macro_rules! pod_resource {
    ($pod:ident, $($field:tt).+) => {
        impl k8s_openapi::Resource for $pod {
            const API_VERSION: &'static str = <Pod as k8s_openapi::Resource>::API_VERSION;
            const GROUP: &'static str = <Pod as k8s_openapi::Resource>::GROUP;
            const KIND: &'static str = <Pod as k8s_openapi::Resource>::KIND;
            const VERSION: &'static str = <Pod as k8s_openapi::Resource>::VERSION;
            const URL_PATH_SEGMENT: &'static str = <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
            type Scope = <Pod as k8s_openapi::Resource>::Scope;
        }

        impl k8s_openapi::Metadata for $pod {
            type Ty = ObjectMeta;

            fn metadata(&self) -> &ObjectMeta {
                &self.$($field).+
            }

            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.$($field).+
            }
        }
    };
}

pod_resource!(LeanPod, 0.metadata);
pod_resource!(WatchedPod, metadata);

impl From<LeanPod> for Pod {
    fn from(pod: LeanPod) -> Pod {
        pod.0
    }
}

/// Written out, a [`LeanPod`] is the pod it wraps.
impl Serialize for LeanPod {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// The parts of a pod that are read. `apiVersion` and `kind` are not
/// checked: every request through [`LeanPod`] asks for pods.
#[derive(Deserialize)]
struct PodFields {
    #[serde(default)]
    metadata: MetaFields,
    #[serde(default)]
    spec: Option<PodSpec>,
    #[serde(default)]
    status: Option<PodStatus>,
}

/// `ObjectMeta` but `managedFields`: a key not named here is skipped
/// without being built.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct MetaFields {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

impl MetaFields {
    /// The metadata read, without managed fields.
    fn into_meta(self) -> ObjectMeta {
        let m = self;
        // Every field named, none defaulted: a field k8s-openapi adds to
        // ObjectMeta fails the build here instead of going missing.
        ObjectMeta {
            annotations: m.annotations,
            creation_timestamp: m.creation_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            deletion_timestamp: m.deletion_timestamp,
            finalizers: m.finalizers,
            generate_name: m.generate_name,
            generation: m.generation,
            labels: m.labels,
            managed_fields: None,
            name: m.name,
            namespace: m.namespace,
            owner_references: m.owner_references,
            resource_version: m.resource_version,
            self_link: m.self_link,
            uid: m.uid,
        }
    }
}

impl<'de> Deserialize<'de> for LeanPod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let PodFields {
            metadata,
            spec,
            status,
        } = PodFields::deserialize(deserializer)?;
        Ok(LeanPod(Pod {
            metadata: metadata.into_meta(),
            spec,
            status,
        }))
    }
}

/// A pod as the shared watch keeps it, one per sandbox of its namespace,
/// for as long as the sandbox exists: a [`WatchedPod`] in about a third of
/// the memory (3 KB against 9 KB for a default sandbox's running pod).
/// Kubernetes' types hold every field of a pod inline, mostly empty (a `Pod`
/// alone is 2 KB, its container 2 KB), and maps in B-tree nodes of eleven
/// entries; a record keeps the fields read, and maps as pairs. Readers get a
/// `Pod` back with [`PodRecord::to_pod`].
#[derive(Clone, Debug)]
pub(crate) struct PodRecord {
    meta: RecordMeta,
    rest: WatchedRest,
}

/// Of a pod's metadata, what readers of watched pods read.
#[derive(Clone, Debug)]
struct RecordMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    creation_timestamp: Option<Time>,
    labels: Option<Pairs<String>>,
    annotations: Option<Pairs<String>>,
}

/// A map as its entries, in key order.
type Pairs<V> = Box<[(String, V)]>;

/// The map `deserializer` holds, as its entries.
fn pairs<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Pairs<V>>, D::Error> {
    let map = Option::<BTreeMap<String, V>>::deserialize(deserializer)?;
    Ok(map.map(|map| map.into_iter().collect()))
}

/// `pairs` as the map they came from.
fn map<V: Clone>(pairs: &Option<Pairs<V>>) -> Option<BTreeMap<String, V>> {
    pairs.as_ref().map(|pairs| pairs.iter().cloned().collect())
}

impl From<WatchedPod> for PodRecord {
    fn from(pod: WatchedPod) -> PodRecord {
        let m = pod.metadata;
        let into_pairs =
            |map: Option<BTreeMap<String, String>>| map.map(|m| m.into_iter().collect());
        PodRecord {
            meta: RecordMeta {
                name: m.name,
                namespace: m.namespace,
                uid: m.uid,
                resource_version: m.resource_version,
                creation_timestamp: m.creation_timestamp,
                labels: into_pairs(m.labels),
                annotations: into_pairs(m.annotations),
            },
            rest: pod.rest,
        }
    }
}

impl PodRecord {
    pub(crate) fn name(&self) -> Option<&str> {
        self.meta.name.as_deref()
    }

    pub(crate) fn resource_version(&self) -> Option<&str> {
        self.meta.resource_version.as_deref()
    }

    /// The pod this record was read from, with only the fields it keeps.
    pub(crate) fn to_pod(&self) -> Pod {
        let m = &self.meta;
        let metadata = ObjectMeta {
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            uid: m.uid.clone(),
            resource_version: m.resource_version.clone(),
            creation_timestamp: m.creation_timestamp.clone(),
            labels: map(&m.labels),
            annotations: map(&m.annotations),
            ..ObjectMeta::default()
        };
        let WatchedRest { spec, status } = &self.rest;
        let spec = spec.as_ref().map(|s| PodSpec {
            containers: s.containers.iter().map(Into::into).collect(),
            volumes: s
                .volumes
                .as_ref()
                .map(|all| all.iter().map(Into::into).collect()),
            host_users: s.host_users,
            node_name: s.node_name.clone(),
            ..PodSpec::default()
        });
        let statuses = |all: &Option<Vec<WatchedContainerStatus>>| {
            all.as_ref().map(|all| all.iter().map(Into::into).collect())
        };
        let status = status.as_ref().map(|s| PodStatus {
            phase: s.phase.clone(),
            reason: s.reason.clone(),
            message: s.message.clone(),
            conditions: s.conditions.clone(),
            container_statuses: statuses(&s.container_statuses),
            init_container_statuses: statuses(&s.init_container_statuses),
            ..PodStatus::default()
        });
        Pod {
            metadata,
            spec,
            status,
        }
    }
}

/// Of a pod, the spec and status a [`WatchedPod`] keeps.
#[derive(Clone, Debug, Default)]
struct WatchedRest {
    spec: Option<WatchedSpec>,
    status: Option<WatchedStatus>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WatchedSpec {
    containers: Vec<WatchedContainer>,
    volumes: Option<Vec<WatchedVolume>>,
    host_users: Option<bool>,
    node_name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WatchedContainer {
    name: String,
    image: Option<String>,
    command: Option<Vec<String>>,
    volume_mounts: Option<Vec<VolumeMount>>,
    resources: Option<WatchedResources>,
}

/// Of a container's resources, the limits.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct WatchedResources {
    #[serde(deserialize_with = "pairs")]
    limits: Option<Pairs<Quantity>>,
}

/// Of a volume, its name and claim: a `Volume` holds every kind of volume
/// source (over 3 KB, mostly empty), so only claims' volumes are kept.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WatchedVolume {
    name: String,
    persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WatchedStatus {
    phase: Option<String>,
    reason: Option<String>,
    message: Option<String>,
    conditions: Option<Vec<PodCondition>>,
    container_statuses: Option<Vec<WatchedContainerStatus>>,
    init_container_statuses: Option<Vec<WatchedContainerStatus>>,
}

/// A container's states are boxed: most statuses have one, the last state
/// is mostly absent, and a `ContainerState` is over 200 bytes inline.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WatchedContainerStatus {
    name: String,
    state: Option<Box<ContainerState>>,
    last_state: Option<Box<ContainerState>>,
    ready: bool,
    restart_count: i32,
}

impl From<&WatchedContainerStatus> for ContainerStatus {
    fn from(s: &WatchedContainerStatus) -> ContainerStatus {
        ContainerStatus {
            name: s.name.clone(),
            state: s.state.as_deref().cloned(),
            last_state: s.last_state.as_deref().cloned(),
            ready: s.ready,
            restart_count: s.restart_count,
            ..ContainerStatus::default()
        }
    }
}

impl From<&WatchedContainer> for Container {
    fn from(c: &WatchedContainer) -> Container {
        Container {
            name: c.name.clone(),
            image: c.image.clone(),
            command: c.command.clone(),
            volume_mounts: c.volume_mounts.clone(),
            resources: c.resources.as_ref().map(|r| ResourceRequirements {
                limits: map(&r.limits),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        }
    }
}

impl From<&WatchedVolume> for Volume {
    fn from(v: &WatchedVolume) -> Volume {
        Volume {
            name: v.name.clone(),
            persistent_volume_claim: v.persistent_volume_claim.clone(),
            ..Volume::default()
        }
    }
}

impl<'de> Deserialize<'de> for WatchedPod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// The parts of a pod a [`WatchedPod`] keeps; a key not named is
        /// skipped without being built.
        #[derive(Deserialize)]
        struct Fields {
            #[serde(default)]
            metadata: MetaFields,
            #[serde(default)]
            spec: Option<WatchedSpec>,
            #[serde(default)]
            status: Option<WatchedStatus>,
        }
        let Fields {
            metadata,
            mut spec,
            mut status,
        } = Fields::deserialize(deserializer)?;
        if let Some(spec) = &mut spec {
            keep(&mut spec.containers, |c| c.name == CONTAINER_NAME);
            if let Some(volumes) = &mut spec.volumes {
                keep(volumes, |v| v.persistent_volume_claim.is_some());
            }
        }
        if let Some(status) = &mut status {
            if let Some(conditions) = &mut status.conditions {
                keep(conditions, |c| c.type_ == "PodScheduled");
            }
            let statuses = [
                &mut status.container_statuses,
                &mut status.init_container_statuses,
            ];
            for container in statuses.into_iter().flatten().flatten() {
                // An empty last state (`{}`, the usual) reads as none.
                container
                    .last_state
                    .take_if(|s| **s == ContainerState::default());
            }
        }
        Ok(WatchedPod {
            metadata: metadata.into_meta(),
            rest: WatchedRest { spec, status },
        })
    }
}

/// Keeps the items of `all` that `wanted` accepts, in no more room than they take.
fn keep<T>(all: &mut Vec<T>, wanted: impl FnMut(&T) -> bool) {
    all.retain(wanted);
    all.shrink_to_fit();
}

/// Sandbox pods of every kind in every state, as the API server would hand
/// them out, for the tests that check each reader of watched pods derives
/// the same from a [`WatchedPod`] as from the whole pod.
#[cfg(test)]
pub(crate) mod corpus {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{Value, json};

    use super::{PodRecord, WatchedPod};
    use crate::labels;
    use crate::mount::Mount;
    use crate::network::NetworkMode;
    use crate::spec::{Resources, SandboxRequest, SandboxSpec};

    /// `pod` as the shared watch keeps it.
    pub(crate) fn watched(pod: &Pod) -> Pod {
        let value = serde_json::to_value(pod).unwrap();
        let watched = serde_json::from_value::<WatchedPod>(value).unwrap();
        PodRecord::from(watched).to_pod()
    }

    fn kinds() -> Vec<Pod> {
        let plain = SandboxRequest::new("busybox:1.36");
        let full = SandboxRequest {
            command: Some(vec!["python3".into(), "-c".into(), "print(1)".into()]),
            env: BTreeMap::from([("KEY".into(), "value".into())]),
            tags: BTreeMap::from([("team".into(), "a".into())]),
            volume_mounts: BTreeMap::from([
                (
                    "/data".into(),
                    Mount {
                        volume: "data".into(),
                        read_only: false,
                    },
                ),
                (
                    "/ref".into(),
                    Mount {
                        volume: "ref".into(),
                        read_only: true,
                    },
                ),
            ]),
            resources: Resources {
                cpu: Some("500m".into()),
                memory: Some("256Mi".into()),
                disk: Some("2Gi".into()),
            },
            read_only_root_filesystem: true,
            network: Some(NetworkMode::Unrestricted),
            user_namespace: Some(true),
            ..SandboxRequest::new("python:3.12")
        };
        let mut pods = Vec::new();
        let offline = SandboxRequest {
            network: Some(NetworkMode::None),
            ..plain.clone()
        };
        for (request, agent) in [(plain, true), (offline, false), (full, true)] {
            let spec = SandboxSpec::try_from(request).unwrap();
            let mut pod = spec.to_pod("sb");
            if agent {
                crate::agent::add_agent(&mut pod);
            }
            pods.push(pod);
        }
        let mut warm = pods[0].clone();
        let pool_labels = warm.metadata.labels.get_or_insert_default();
        pool_labels.insert(labels::POOL_LABEL.into(), "p".into());
        pool_labels.insert(labels::WARM_LABEL.into(), "v1".into());
        pods.push(warm);
        pods
    }

    fn container_status(name: &str, state: Value, last: Value) -> Value {
        json!({"name": name, "image": "busybox:1.36", "imageID": "sha256:1", "containerID": "containerd://1",
            "ready": false, "restartCount": 1, "started": false, "state": state, "lastState": last})
    }

    fn statuses() -> Vec<Value> {
        let scheduled = json!([{"type": "PodScheduled", "status": "True",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
        let sandbox = |state: Value| json!([container_status("sandbox", state, json!({}))]);
        let exited = |code: i32, reason: &str| {
            json!({"terminated": {"exitCode": code, "reason": reason,
            "message": "m", "startedAt": "2026-01-01T00:00:01Z", "finishedAt": "2026-01-01T00:00:02Z"}})
        };
        let gate_failed = json!([container_status(
            "network-gate",
            json!({"terminated": {"exitCode": 3, "message": "policy never held"}}),
            json!({})
        )]);
        vec![
            json!(null),
            json!({"phase": "Pending"}),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/1 nodes are available"}]}),
            json!({"phase": "Pending", "conditions": scheduled, "containerStatuses":
                sandbox(json!({"waiting": {"reason": "ContainerCreating"}}))}),
            json!({"phase": "Pending", "conditions": scheduled, "containerStatuses":
                sandbox(json!({"waiting": {"reason": "ErrImagePull", "message": "x:1: not found"}}))}),
            json!({"phase": "Pending", "conditions": scheduled, "containerStatuses":
                sandbox(json!({"waiting": {"reason": "ImagePullBackOff", "message": "429 Too Many Requests"}}))}),
            json!({"phase": "Pending", "conditions": scheduled, "containerStatuses":
                [container_status("sandbox", json!({"waiting": {"reason": "CrashLoopBackOff"}}), exited(1, "Error"))]}),
            json!({"phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}],
                "startTime": "2026-01-01T00:00:00Z", "qosClass": "Burstable", "conditions": scheduled,
                "containerStatuses": sandbox(json!({"running": {"startedAt": "2026-01-01T00:00:01Z"}}))}),
            json!({"phase": "Succeeded", "containerStatuses": sandbox(exited(0, "Completed"))}),
            json!({"phase": "Failed", "containerStatuses": sandbox(exited(137, "OOMKilled"))}),
            json!({"phase": "Failed", "containerStatuses": sandbox(exited(128, "StartError"))}),
            json!({"phase": "Failed", "containerStatuses": sandbox(exited(2, "Error"))}),
            json!({"phase": "Failed", "reason": "DeadlineExceeded", "message": "Pod was active too long"}),
            json!({"phase": "Failed", "reason": "Evicted",
                "message": "Pod ephemeral local storage usage exceeds the total limit of containers 2Gi."}),
            json!({"phase": "Failed", "reason": "NodeLost", "message": "node went away"}),
            json!({"phase": "Failed", "initContainerStatuses": gate_failed}),
            json!({"phase": "Failed", "reason": "NodeAffinity", "message": "rejected"}),
            json!({"phase": "Unknown"}),
        ]
    }

    fn annotations() -> Vec<Value> {
        vec![
            json!({}),
            json!({labels::TERMINATED_AT_ANNOTATION: "2026-01-01T00:00:03Z",
                labels::CREATED_IMAGE_ANNOTATION: "python:3.12"}),
            json!({labels::LAUNCH_FAILED_ANNOTATION: "image not found"}),
            json!({labels::ENV_ANNOTATION: "{\"A\":\"1\"}", labels::GATE_PASSED_ANNOTATION: "u1"}),
        ]
    }

    /// Every kind of sandbox pod in every state, with what the API server
    /// adds (defaults, managed fields, a uid and a version).
    pub(crate) fn pods() -> Vec<Pod> {
        let mut pods = Vec::new();
        for kind in kinds() {
            for status in statuses() {
                for extra in annotations() {
                    let mut value = serde_json::to_value(&kind).unwrap();
                    let meta = &mut value["metadata"];
                    meta["uid"] = json!("u1");
                    meta["resourceVersion"] = json!("42");
                    meta["namespace"] = json!("ns");
                    meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                    meta["managedFields"] = json!([{"manager": "m", "operation": "Update"}]);
                    let annotations = meta["annotations"].as_object_mut().unwrap();
                    annotations.extend(extra.as_object().unwrap().clone());
                    value["spec"]["nodeName"] = json!("node-1");
                    value["spec"]["tolerations"] = json!([{"key": "node.kubernetes.io/not-ready",
                        "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]);
                    value["spec"]["dnsPolicy"] = json!("ClusterFirst");
                    value["status"] = status.clone();
                    pods.push(serde_json::from_value(value).unwrap());
                }
            }
        }
        pods
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A pod with every metadata field set, and managed fields.
    fn full_pod() -> serde_json::Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "annotations": {"a": "1"},
                "creationTimestamp": "2026-12-01T03:00:00Z",
                "deletionGracePeriodSeconds": 2,
                "deletionTimestamp": "2026-12-01T03:00:05Z",
                "finalizers": ["f"],
                "generateName": "sb-",
                "generation": 3,
                "labels": {"l": "2"},
                "managedFields": [{"manager": "m", "operation": "Update", "apiVersion": "v1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}}],
                "name": "sb-x",
                "namespace": "ns",
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "app", "uid": "u0"}],
                "resourceVersion": "42",
                "selfLink": "/api/v1/namespaces/ns/pods/sb-x",
                "uid": "u1"
            },
            "spec": {"containers": [{"name": "sandbox", "image": "busybox:1.36"}]},
            "status": {"phase": "Running"}
        })
    }

    #[test]
    fn reads_the_pod_kubernetes_types_read_but_its_managed_fields() {
        let mut expected: Pod = serde_json::from_value(full_pod()).unwrap();
        assert!(expected.metadata.managed_fields.is_some());
        expected.metadata.managed_fields = None;
        let lean: LeanPod = serde_json::from_value(full_pod()).unwrap();
        assert_eq!(lean.0, expected);
    }

    #[test]
    fn writes_the_pod_as_it_is() {
        let pod: Pod = serde_json::from_value(full_pod()).unwrap();
        assert_eq!(
            serde_json::to_value(LeanPod(pod.clone())).unwrap(),
            serde_json::to_value(pod).unwrap()
        );
    }

    #[test]
    fn a_pod_with_nothing_but_a_name_reads() {
        let lean: LeanPod = serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap();
        assert_eq!(lean.0.metadata.name.as_deref(), Some("a"));
        assert!(lean.0.spec.is_none() && lean.0.status.is_none());
    }

    #[test]
    fn a_watched_pod_keeps_what_its_readers_read_and_little_else() {
        use crate::status::SandboxStatus;
        let pods = corpus::pods();
        for pod in &pods {
            let watched = corpus::watched(pod);
            assert_eq!(
                SandboxStatus::from_pod(&watched),
                SandboxStatus::from_pod(pod)
            );
            assert_eq!(
                crate::spec::disk_limit(&watched),
                crate::spec::disk_limit(pod)
            );
            assert_eq!(
                crate::network::gate_is_entrypoint(&watched),
                crate::network::gate_is_entrypoint(pod)
            );
            let (kept, whole) = (&watched.metadata, &pod.metadata);
            assert_eq!(kept.name, whole.name);
            assert_eq!(kept.namespace, whole.namespace);
            assert_eq!(kept.uid, whole.uid);
            assert_eq!(kept.resource_version, whole.resource_version);
            assert_eq!(kept.creation_timestamp, whole.creation_timestamp);
            assert_eq!(kept.labels, whole.labels);
            assert_eq!(kept.annotations, whole.annotations);
        }
    }

    #[test]
    fn a_pod_as_the_api_server_sends_it_is_watched_without_its_bulk() {
        use crate::status::{Phase, SandboxStatus};
        // A default sandbox read from the local cluster while it ran.
        let whole: Pod = serde_json::from_str(include_str!("testdata/running_pod.json")).unwrap();
        let watched = corpus::watched(&whole);
        let status = SandboxStatus::from_pod(&watched);
        assert_eq!(status, SandboxStatus::from_pod(&whole));
        assert_eq!(status.phase, Phase::Running);
        assert_eq!(
            crate::spec::disk_limit(&watched),
            crate::spec::disk_limit(&whole)
        );
        // Gone: the two ConfigMap volumes (over 3 KB each in memory), the
        // environment, security contexts, tolerations, addresses, and all
        // conditions but PodScheduled.
        let (spec, kept) = (whole.spec.unwrap(), watched.spec.unwrap());
        assert_eq!(spec.volumes.map(|v| v.len()), Some(2));
        assert_eq!(kept.volumes.map(|v| v.len()), Some(0));
        assert!(spec.containers[0].env.is_some() && kept.containers[0].env.is_none());
        assert!(spec.tolerations.is_some() && kept.tolerations.is_none());
        let (status, kept) = (whole.status.unwrap(), watched.status.unwrap());
        assert_eq!(status.conditions.map(|c| c.len()), Some(5));
        assert_eq!(kept.conditions.map(|c| c.len()), Some(1));
        assert!(status.pod_ips.is_some() && kept.pod_ips.is_none());
    }
}
