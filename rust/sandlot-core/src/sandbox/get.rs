use k8s_openapi::api::core::v1::Pod;

use crate::client::Client;
use crate::error::{Error, ObjectKind, Result};
use crate::labels;
use crate::retry::retry;
use crate::status::SandboxStatus;
use crate::validate;

impl Client {
    /// The current status of sandbox `name`; [`Error::NotFound`] if there is no
    /// such sandbox (a pod of that name that sandlot did not create counts as none).
    ///
    /// May write: a launch failure Kubernetes would retry forever is settled
    /// first (see `sandbox/settle.rs`).
    pub async fn get_sandbox(&self, name: &str) -> Result<SandboxStatus> {
        validate::object_name("name", name)?;
        let pod = self.sandbox_pod(name).await?;
        self.settle_launch_failure(&pod).await
    }

    /// The pod of sandbox `name` as stored; [`Error::NotFound`] as for
    /// [`Client::get_sandbox`]. Reads only.
    pub(crate) async fn sandbox_pod(&self, name: &str) -> Result<Pod> {
        let pod: Pod = retry(|| self.lean_pods().get(name))
            .await
            .map_err(|err| self.sandbox_error(err, name))?
            .into();
        if !labels::is_managed(&pod.metadata) {
            return Err(Error::NotFound {
                kind: ObjectKind::Sandbox,
                name: name.to_owned(),
                namespace: self.namespace().to_owned(),
            });
        }
        Ok(pod)
    }
}
