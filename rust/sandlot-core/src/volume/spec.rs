use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::ObjectMeta;
use serde::Serialize;

use crate::error::Result;
use crate::labels;
use crate::validate;

/// Size of a volume when none is given.
pub const DEFAULT_VOLUME_SIZE: &str = "1Gi";

/// How many nodes may mount a volume, and how. Displayed and parsed by its
/// Kubernetes name ("ReadWriteOnce").
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
pub enum AccessMode {
    /// Read-write by one node (the usual block volume).
    #[default]
    ReadWriteOnce,
    /// Read-write by one pod.
    ReadWriteOncePod,
    /// Read-only by many nodes.
    ReadOnlyMany,
    /// Read-write by many nodes (shared file systems).
    ReadWriteMany,
}

impl AccessMode {
    /// The Kubernetes name, e.g. "ReadWriteOnce".
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses the Kubernetes name; the [`Error::InvalidSpec`](crate::Error::InvalidSpec)
    /// names `field` and lists every mode.
    pub fn parse(field: &str, text: &str) -> Result<Self> {
        validate::one_of(field, text)
    }
}

/// Where a volume is in its life. Displayed and serialized by its lowercase
/// name ("ready").
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum VolumePhase {
    /// Being provisioned.
    Pending,
    /// Can be mounted (bound, or bound on first use by its storage class).
    Ready,
    /// Its storage was lost.
    Failed,
}

impl VolumePhase {
    /// The lowercase name users see.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Everything a volume is created from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub name: String,
    /// A Kubernetes quantity, e.g. "1Gi".
    pub size: String,
    /// The cluster's default class when `None`.
    pub storage_class: Option<String>,
    pub access_mode: AccessMode,
    pub tags: BTreeMap<String, String>,
}

impl VolumeSpec {
    /// A spec for volume `name` with the default size and class.
    pub fn new(name: impl Into<String>) -> Self {
        VolumeSpec {
            name: name.into(),
            size: DEFAULT_VOLUME_SIZE.into(),
            storage_class: None,
            access_mode: AccessMode::default(),
            tags: BTreeMap::new(),
        }
    }

    /// Checks every field against the Kubernetes rules, naming the one that breaks one.
    pub fn validate(&self) -> Result<()> {
        validate::object_name("name", &self.name)?;
        validate::quantity("size", &self.size)?;
        if let Some(class) = &self.storage_class {
            validate::dns_subdomain("storage_class", class)?;
        }
        labels::validate_tags(&self.tags)
    }

    /// The claim for this spec. The spec must have passed [`VolumeSpec::validate`].
    pub fn to_claim(&self) -> PersistentVolumeClaim {
        let labels = labels::labels_of(&self.tags);
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec![self.access_mode.as_str().to_owned()]),
                storage_class_name: self.storage_class.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_owned(),
                        Quantity(self.size.clone()),
                    )])),
                    limits: None,
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: None,
        }
    }
}

/// A volume as last seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeStatus {
    pub name: String,
    pub namespace: String,
    pub phase: VolumePhase,
    /// Provisioned capacity once bound, else the size asked for.
    pub size: String,
    pub storage_class: Option<String>,
    pub access_mode: String,
    /// Names of the live sandboxes that mount it.
    pub attached_to: Vec<String>,
    pub created_at: Option<Timestamp>,
    pub tags: BTreeMap<String, String>,
}

impl VolumeStatus {
    /// Derives the status of a claim. `binds_on_first_use`: its class binds when
    /// a pod first mounts it, so a pending claim can already be mounted.
    pub fn from_claim(
        claim: &PersistentVolumeClaim,
        binds_on_first_use: bool,
        attached_to: Vec<String>,
    ) -> Self {
        let spec = claim.spec.as_ref();
        let status = claim.status.as_ref();
        let phase = match status.and_then(|s| s.phase.as_deref()) {
            Some("Bound") => VolumePhase::Ready,
            Some("Lost") => VolumePhase::Failed,
            _ if binds_on_first_use => VolumePhase::Ready,
            _ => VolumePhase::Pending,
        };
        let storage = |map: Option<&BTreeMap<String, Quantity>>| {
            map.and_then(|m| m.get("storage")).map(|q| q.0.clone())
        };
        let size = storage(status.and_then(|s| s.capacity.as_ref()))
            .or_else(|| {
                storage(
                    spec.and_then(|s| s.resources.as_ref())
                        .and_then(|r| r.requests.as_ref()),
                )
            })
            .unwrap_or_default();
        VolumeStatus {
            name: claim.metadata.name.clone().unwrap_or_default(),
            namespace: claim.metadata.namespace.clone().unwrap_or_default(),
            phase,
            size,
            storage_class: spec.and_then(|s| s.storage_class_name.clone()),
            access_mode: spec
                .and_then(|s| s.access_modes.as_ref())
                .and_then(|modes| modes.first().cloned())
                .unwrap_or_default(),
            attached_to,
            created_at: claim.metadata.creation_timestamp.as_ref().map(|t| t.0),
            tags: labels::tags_of(&claim.metadata),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use serde_json::json;

    fn claim(status: serde_json::Value) -> PersistentVolumeClaim {
        let mut value = serde_json::to_value(VolumeSpec::new("data").to_claim()).unwrap();
        value["status"] = status;
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn phases_follow_the_claim_and_its_class() {
        let bound = claim(json!({"phase": "Bound", "capacity": {"storage": "2Gi"}}));
        let status = VolumeStatus::from_claim(&bound, false, vec![]);
        assert_eq!(
            (status.phase, status.size.as_str()),
            (VolumePhase::Ready, "2Gi")
        );
        let pending = claim(json!({"phase": "Pending"}));
        assert_eq!(
            VolumeStatus::from_claim(&pending, false, vec![]).phase,
            VolumePhase::Pending
        );
        assert_eq!(
            VolumeStatus::from_claim(&pending, true, vec![]).phase,
            VolumePhase::Ready
        );
        assert_eq!(
            VolumeStatus::from_claim(&pending, false, vec![]).size,
            "1Gi"
        );
        let lost = claim(json!({"phase": "Lost"}));
        assert_eq!(
            VolumeStatus::from_claim(&lost, false, vec![]).phase,
            VolumePhase::Failed
        );
    }

    #[test]
    fn fields_are_validated_with_their_names() {
        let field = |spec: VolumeSpec| match spec.validate() {
            Err(Error::InvalidSpec { field, .. }) => field,
            other => panic!("expected InvalidSpec, got {other:?}"),
        };
        assert_eq!(field(VolumeSpec::new("Bad_Name")), "name");
        assert_eq!(
            field(VolumeSpec {
                size: "huge".into(),
                ..VolumeSpec::new("v")
            }),
            "size"
        );
        assert_eq!(
            field(VolumeSpec {
                storage_class: Some("Fast SSD".into()),
                ..VolumeSpec::new("v")
            }),
            "storage_class"
        );
        match AccessMode::parse("access_mode", "rwx") {
            Err(Error::InvalidSpec { field, rule }) => {
                assert_eq!(field, "access_mode");
                assert_eq!(
                    rule,
                    "\"rwx\" is not one of ReadWriteOnce, ReadWriteOncePod, ReadOnlyMany, ReadWriteMany"
                );
            }
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
        for phase in <VolumePhase as strum::VariantArray>::VARIANTS {
            assert_eq!(serde_json::to_value(phase).unwrap(), phase.to_string());
        }
        assert_eq!(VolumePhase::Ready.as_str(), "ready");
        assert_eq!(
            AccessMode::parse("access_mode", "ReadWriteMany").unwrap(),
            AccessMode::ReadWriteMany
        );
    }

    #[test]
    fn claim_carries_size_class_mode_and_tags() {
        let spec = VolumeSpec {
            storage_class: Some("standard".into()),
            tags: BTreeMap::from([("team".into(), "ml".into())]),
            ..VolumeSpec::new("data")
        };
        let claim = spec.to_claim();
        let claim_spec = claim.spec.unwrap();
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("standard"));
        assert_eq!(
            claim_spec.access_modes.unwrap(),
            vec!["ReadWriteOnce".to_owned()]
        );
        assert_eq!(
            claim_spec.resources.unwrap().requests.unwrap()["storage"].0,
            "1Gi"
        );
        assert_eq!(
            claim.metadata.labels.unwrap()["tags.sandlot.dev/team"],
            "ml"
        );
    }
}
