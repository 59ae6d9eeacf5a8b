use std::time::Duration;

use kube::api::DeleteParams;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{Error, Result, api_status};
use crate::retry::retry;
use crate::sandbox::{ListFilter, Selection};
use crate::status::SandboxStatus;
use crate::volume::get::mounts;

impl Client {
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
}
