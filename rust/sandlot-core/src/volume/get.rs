use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams};
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{Error, ObjectKind, Result};
use crate::labels::{self, VOLUME_DELETING_ANNOTATION};
use crate::retry::retry;
use crate::sandbox::ListFilter;
use crate::status::SandboxStatus;
use crate::validate;
use crate::volume::VolumeStatus;

/// How long a create waits for a delete that marked a volume it mounts to
/// decide (a delete decides within one list of the sandboxes); a mark still
/// there after that is taken for one a delete left behind, and the create fails.
const MARK_PATIENCE: Duration = Duration::from_secs(10);

/// Annotation Kubernetes puts on the default storage class.
const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

impl Client {
    /// The volume named `name`; [`Error::NotFound`] if there is none.
    pub async fn get_volume(&self, name: &str) -> Result<VolumeStatus> {
        let claim = self.managed_claim(name).await?;
        let attached = self.attachments().await?;
        self.volume_status(&claim, attached_to(&attached, name))
            .await
    }

    /// Fails with [`Error::NotFound`] naming the first volume in `names` that
    /// does not exist, or [`Error::VolumeDeleting`] for one that is being
    /// deleted. A volume a delete is deciding about (marked) is looked at
    /// again until the delete has decided, for [`MARK_PATIENCE`] at most.
    pub(crate) async fn require_volumes<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<()> {
        for name in names {
            let patience = Instant::now() + MARK_PATIENCE;
            loop {
                let claim = self.managed_claim(name).await?;
                let marked =
                    labels::annotation(&claim.metadata, VOLUME_DELETING_ANNOTATION).is_some();
                if claim.metadata.deletion_timestamp.is_some()
                    || (marked && Instant::now() >= patience)
                {
                    return Err(Error::VolumeDeleting {
                        name: name.to_owned(),
                        namespace: self.namespace().to_owned(),
                    });
                }
                if !marked {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Maps a failed request about volume `name`.
    pub(crate) fn volume_error(&self, err: kube::Error, name: &str) -> Error {
        self.object_error(err, ObjectKind::Volume, name)
    }

    /// The claim of volume `name`; [`Error::NotFound`] if there is none or it
    /// is not sandlot's.
    pub(crate) async fn managed_claim(&self, name: &str) -> Result<PersistentVolumeClaim> {
        validate::object_name("name", name)?;
        let claim = retry(|| self.claims().get(name))
            .await
            .map_err(|err| self.volume_error(err, name))?;
        if !labels::is_managed(&claim.metadata) {
            return Err(Error::NotFound {
                kind: ObjectKind::Volume,
                name: name.to_owned(),
                namespace: self.namespace().to_owned(),
            });
        }
        Ok(claim)
    }

    /// The live sandboxes of the namespace, whose mounts hold volumes.
    pub(crate) async fn attachments(&self) -> Result<Vec<SandboxStatus>> {
        let sandboxes = self.list_sandboxes(&ListFilter::default()).await?;
        Ok(sandboxes
            .into_iter()
            .filter(|s| !s.phase.is_terminal())
            .collect())
    }

    /// The status of `claim`, attached to the sandboxes named in `attached_to`.
    pub(crate) async fn volume_status(
        &self,
        claim: &PersistentVolumeClaim,
        attached_to: Vec<String>,
    ) -> Result<VolumeStatus> {
        let pending = claim.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound");
        let binds_on_first_use = pending && self.binds_on_first_use(claim).await;
        Ok(VolumeStatus::from_claim(
            claim,
            binds_on_first_use,
            attached_to,
        ))
    }

    /// True if the claim's storage class (or the default one) binds volumes when
    /// a pod first mounts them. Credentials that may not read storage classes
    /// give false.
    async fn binds_on_first_use(&self, claim: &PersistentVolumeClaim) -> bool {
        let classes: Api<StorageClass> = Api::all(self.kube().clone());
        let class = match claim
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone())
        {
            Some(name) => classes.get_opt(&name).await.ok().flatten(),
            None => classes
                .list(&ListParams::default())
                .await
                .ok()
                .and_then(|list| {
                    list.items.into_iter().find(|c| {
                        c.metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                            .is_some_and(|v| v == "true")
                    })
                }),
        };
        class.and_then(|c| c.volume_binding_mode).as_deref() == Some("WaitForFirstConsumer")
    }
}

/// True if `sandbox` mounts volume `name`.
pub(crate) fn mounts(sandbox: &SandboxStatus, name: &str) -> bool {
    sandbox
        .volume_mounts
        .values()
        .any(|mount| mount.volume == name)
}

/// Names of the sandboxes in `live` that mount volume `name`.
pub(crate) fn attached_to(live: &[SandboxStatus], name: &str) -> Vec<String> {
    live.iter()
        .filter(|s| mounts(s, name))
        .map(|s| s.name.clone())
        .collect()
}
