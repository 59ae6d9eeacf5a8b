use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::client::Client;
use crate::error::Result;
use crate::labels::TERMINATED_AT_ANNOTATION;
use crate::retry::retry;
use crate::status::SandboxStatus;

impl Client {
    /// Terminates sandbox `name`: records the request on the pod (the phase is
    /// `terminated` from then on) and has the kubelet stop the workload within
    /// its grace period. The pod record stays, so logs remain readable and the
    /// name stays taken. A sandbox that already ended is left as it is.
    pub async fn terminate_sandbox(&self, name: &str) -> Result<SandboxStatus> {
        let current = self.get_sandbox(name).await?;
        if current.phase.is_terminal() {
            return Ok(current);
        }
        // An active deadline that has already passed makes the kubelet stop the
        // pod, and stops a not yet scheduled pod the moment it lands on a node.
        let body = json!({
            "metadata": {"annotations": {TERMINATED_AT_ANNOTATION: jiff::Timestamp::now().to_string()}},
            "spec": {"activeDeadlineSeconds": 1},
        });
        let (params, patch) = (PatchParams::default(), Patch::Merge(&body));
        let pod = retry(|| self.pods().patch(name, &params, &patch))
            .await
            .map_err(|err| self.sandbox_error(err, name))?;
        Ok(SandboxStatus::from_pod(&pod))
    }
}
