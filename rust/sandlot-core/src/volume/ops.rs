use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{Error, ObjectKind, Result, api_status, object_error};
use crate::labels;
use crate::retry::retry;
use crate::sandbox::{ListFilter, Selection};
use crate::spec::volume_of_mount;
use crate::status::SandboxStatus;
use crate::validate;
use crate::volume::{VolumeSpec, VolumeStatus};

/// Annotation Kubernetes puts on the default storage class.
const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

impl Client {
    fn volume_error(&self, err: kube::Error, name: &str) -> Error {
        object_error(err, ObjectKind::Volume, name, self.namespace())
    }

    /// Creates a volume. Fails with [`Error::NameConflict`] while a volume of that
    /// name exists (including one still being deleted).
    pub async fn create_volume(&self, spec: &VolumeSpec) -> Result<VolumeStatus> {
        spec.validate()?;
        let claim = self
            .claims()
            .create(&PostParams::default(), &spec.to_claim())
            .await
            .map_err(|err| self.volume_error(err, &spec.name))?;
        self.volume_status(&claim, Vec::new()).await
    }

    /// The volume named `name`; [`Error::NotFound`] if there is none.
    pub async fn get_volume(&self, name: &str) -> Result<VolumeStatus> {
        let claim = self.managed_claim(name).await?;
        let attached = self.attachments().await?;
        self.volume_status(&claim, attached_to(&attached, name))
            .await
    }

    /// The volumes of the namespace carrying all of `tags`, oldest first.
    pub async fn list_volumes(
        &self,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<VolumeStatus>> {
        let params = ListParams::default().labels(&labels::selector(tags)?);
        let claims = retry(|| self.claims().list(&params)).await?;
        let attached = self.attachments().await?;
        let mut volumes = Vec::with_capacity(claims.items.len());
        for claim in &claims.items {
            let name = claim.metadata.name.clone().unwrap_or_default();
            volumes.push(
                self.volume_status(claim, attached_to(&attached, &name))
                    .await?,
            );
        }
        volumes.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        Ok(volumes)
    }

    /// Deletes volume `name` and waits until the deletion has completed (its
    /// name is free again) or `timeout` passed. A volume mounted by live
    /// sandboxes fails with [`Error::VolumeInUse`], unless `force`: then those
    /// sandboxes are terminated first.
    ///
    /// Kubernetes keeps a volume while any pod object refers to it, so the
    /// records of ended sandboxes that mounted it are purged with it.
    pub async fn delete_volume(&self, name: &str, force: bool, timeout: Duration) -> Result<()> {
        self.managed_claim(name).await?;
        let users: Vec<SandboxStatus> = self
            .list_sandboxes(&ListFilter::default())
            .await?
            .into_iter()
            .filter(|s| mounts(s, name))
            .collect();
        let live: Vec<String> = users
            .iter()
            .filter(|s| !s.phase.is_terminal())
            .map(|s| s.name.clone())
            .collect();
        if !live.is_empty() && !force {
            return Err(Error::VolumeInUse {
                name: name.to_owned(),
                sandboxes: live,
            });
        }
        let records = Selection {
            names: users.into_iter().map(|s| s.name).collect(),
            ..Selection::default()
        };
        if !records.names.is_empty() {
            if !live.is_empty() {
                self.terminate_sandboxes(&Selection {
                    names: live,
                    ..Selection::default()
                })
                .await?;
            }
            self.purge_sandboxes(&records, None).await?;
        }
        let params = DeleteParams::default();
        match retry(|| self.claims().delete(name, &params)).await {
            Ok(_) => {}
            Err(err) if api_status(&err).is_some_and(|s| s.code == 404) => return Ok(()),
            Err(err) => return Err(self.volume_error(err, name)),
        }
        let deadline = Instant::now() + timeout;
        while retry(|| self.claims().get_opt(name)).await?.is_some() {
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("volume {name:?} to be deleted"),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Fails with [`Error::NotFound`] naming the first volume in `names` that
    /// does not exist or is being deleted.
    pub(crate) async fn require_volumes<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<()> {
        for name in names {
            let claim = self.managed_claim(name).await?;
            if claim.metadata.deletion_timestamp.is_some() {
                return Err(Error::NotFound {
                    kind: ObjectKind::Volume,
                    name: name.to_owned(),
                    namespace: self.namespace().to_owned(),
                });
            }
        }
        Ok(())
    }

    async fn managed_claim(&self, name: &str) -> Result<PersistentVolumeClaim> {
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
    async fn attachments(&self) -> Result<Vec<SandboxStatus>> {
        let sandboxes = self.list_sandboxes(&ListFilter::default()).await?;
        Ok(sandboxes
            .into_iter()
            .filter(|s| !s.phase.is_terminal())
            .collect())
    }

    async fn volume_status(
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
fn mounts(sandbox: &SandboxStatus, name: &str) -> bool {
    sandbox
        .volume_mounts
        .values()
        .any(|mount| volume_of_mount(mount) == name)
}

/// Names of the sandboxes in `live` that mount volume `name`.
fn attached_to(live: &[SandboxStatus], name: &str) -> Vec<String> {
    live.iter()
        .filter(|s| mounts(s, name))
        .map(|s| s.name.clone())
        .collect()
}
