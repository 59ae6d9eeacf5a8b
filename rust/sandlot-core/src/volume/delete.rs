use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{Error, Result, api_status};
use crate::labels::{self, VOLUME_DELETING_ANNOTATION};
use crate::retry::retry;
use crate::sandbox::{ListFilter, Selection};
use crate::status::SandboxStatus;
use crate::validate;
use crate::volume::get::mounts;

impl Client {
    /// Deletes volume `name` and waits until the deletion has completed (its
    /// name is free again) or `timeout` passed. A volume mounted by live
    /// sandboxes fails with [`Error::VolumeInUse`], unless `force`: then those
    /// sandboxes are terminated first.
    ///
    /// Kubernetes keeps a volume while any pod object refers to it, so the
    /// records of ended sandboxes that mounted it are purged with it.
    ///
    /// The claim is marked before its users are looked at, and a create looks
    /// at the claims it mounts again once its pod exists (and then deletes that
    /// pod), so no sandbox starts on a volume this delete goes on to delete.
    /// Creates that mount the volume wait while the delete decides, then
    /// fail with [`Error::VolumeDeleting`] if it deletes.
    pub async fn delete_volume(&self, name: &str, force: bool, timeout: Duration) -> Result<()> {
        let claim = self.managed_claim(name).await?;
        if claim.metadata.deletion_timestamp.is_none() {
            let mark = validate::generated_name("");
            self.mark_claim(name, &mark).await?;
            if let Err(err) = self.clear_users(name, force).await {
                self.unmark_claim(name, &mark).await;
                return Err(err);
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: claim.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match retry(|| self.claims().delete(name, &params)).await {
                Ok(_) => {}
                Err(err) if api_status(&err).is_some_and(|s| s.code == 404) => return Ok(()),
                Err(err) => return Err(self.volume_error(err, name)),
            }
            // A sandbox created after the look at the users met the mark, so
            // its create failed and deletes its pod; one whose client died
            // before it could is removed here.
            self.clear_users(name, true).await?;
        }
        let deadline = crate::deadline_after(timeout);
        while retry(|| self.claims().get_opt(name))
            .await
            .map_err(|err| self.volume_error(err, name))?
            .is_some()
        {
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

    /// Purges the records of the sandboxes that mount volume `name`. Live ones
    /// fail with [`Error::VolumeInUse`], unless `force`: then they are
    /// terminated first.
    async fn clear_users(&self, name: &str, force: bool) -> Result<()> {
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
        // File helpers hold the volume too; they keep nothing.
        self.remove_helpers(Some(name), true).await?;
        if users.is_empty() {
            return Ok(());
        }
        if !live.is_empty() {
            self.terminate_sandboxes(&Selection {
                names: live,
                ..Selection::default()
            })
            .await?;
        }
        let records = Selection {
            names: users.into_iter().map(|s| s.name).collect(),
            ..Selection::default()
        };
        self.purge_sandboxes(&records, None).await?;
        Ok(())
    }

    /// Marks the claim of volume `name` as being decided about by the delete
    /// holding `mark`.
    async fn mark_claim(&self, name: &str, mark: &str) -> Result<()> {
        let body = json!({"metadata": {"annotations": {VOLUME_DELETING_ANNOTATION: mark}}});
        let (params, patch) = (PatchParams::default(), Patch::Merge(&body));
        retry(|| self.claims().patch(name, &params, &patch))
            .await
            .map(drop::<PersistentVolumeClaim>)
            .map_err(|err| self.volume_error(err, name))
    }

    /// Removes `mark` from the claim of volume `name` if it is still this
    /// delete's (a later delete's mark stays). Best effort: a mark left behind
    /// is cleared by the next delete of the volume, which refuses or deletes
    /// as the volume's users say.
    async fn unmark_claim(&self, name: &str, mark: &str) {
        for _ in 0..3 {
            let Ok(claim) = retry(|| self.claims().get(name)).await else {
                return;
            };
            if labels::annotation(&claim.metadata, VOLUME_DELETING_ANNOTATION)
                .is_none_or(|current| current != mark)
            {
                return;
            }
            // The resource version makes the patch conditional: 409 if changed.
            let body = json!({"metadata": {
                "resourceVersion": claim.metadata.resource_version,
                "annotations": {VOLUME_DELETING_ANNOTATION: null},
            }});
            let (params, patch) = (PatchParams::default(), Patch::Merge(&body));
            let patched = retry(|| self.claims().patch(name, &params, &patch)).await;
            if !patched.is_err_and(|err| api_status(&err).is_some_and(|s| s.code == 409)) {
                return;
            }
        }
    }
}
