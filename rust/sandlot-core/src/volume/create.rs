use kube::api::PostParams;

use crate::client::Client;
use crate::error::Result;
use crate::volume::{VolumeSpec, VolumeStatus};

impl Client {
    /// Creates a volume. Fails with [`Error::NameConflict`](crate::Error::NameConflict)
    /// while a volume of that name exists (including one still being deleted).
    pub async fn create_volume(&self, spec: &VolumeSpec) -> Result<VolumeStatus> {
        spec.validate()?;
        let claim = self
            .claims()
            .create(&PostParams::default(), &spec.to_claim())
            .await
            .map_err(|err| self.volume_error(err, &spec.name))?;
        self.volume_status(&claim, Vec::new()).await
    }
}
