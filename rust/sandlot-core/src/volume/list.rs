use std::collections::BTreeMap;

use kube::api::ListParams;

use crate::client::Client;
use crate::error::Result;
use crate::labels;
use crate::retry::retry;
use crate::volume::VolumeStatus;
use crate::volume::get::attached_to;

impl Client {
    /// The volumes of the namespace carrying all of `tags`, oldest first.
    pub async fn list_volumes(&self, tags: &BTreeMap<String, String>) -> Result<Vec<VolumeStatus>> {
        let params = ListParams::default().labels(&labels::selector(tags)?);
        let claims = retry(|| self.claims().list(&params))
            .await
            .map_err(|err| self.api_error(err))?;
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
}
