//! Pods read without their managed fields. `metadata.managedFields` records
//! which field manager set which field, as a tree of JSON values per
//! manager; nothing in sandlot reads it, and parsing it was about half the
//! cost of reading a pod (measured on creates, patches, lists and watch
//! events of a thousand sandboxes). The requests that read many pods go
//! through [`LeanPod`], which skips it without building it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A pod as sandlot reads it: every field but `metadata.managedFields`,
/// which is skipped unread (always `None` here). Written out, it is the
/// pod as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LeanPod(pub Pod);

impl From<LeanPod> for Pod {
    fn from(pod: LeanPod) -> Pod {
        pod.0
    }
}

impl k8s_openapi::Resource for LeanPod {
    const API_VERSION: &'static str = <Pod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Pod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Pod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Pod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <Pod as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for LeanPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.0.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

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

impl<'de> Deserialize<'de> for LeanPod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let PodFields {
            metadata: m,
            spec,
            status,
        } = PodFields::deserialize(deserializer)?;
        // Every field named, none defaulted: a field k8s-openapi adds to
        // ObjectMeta fails the build here instead of going missing.
        let metadata = ObjectMeta {
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
        };
        Ok(LeanPod(Pod {
            metadata,
            spec,
            status,
        }))
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
}
