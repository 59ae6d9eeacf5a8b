use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::client::Client;
use crate::error::{Error, ObjectKind, Result};
use crate::labels::{self, LAUNCH_FAILED_ANNOTATION};
use crate::retry::retry;
use crate::status::{SandboxStatus, unsettled_launch_failure};
use crate::validate;

impl Client {
    /// The current status of sandbox `name`; [`Error::NotFound`] if there is no
    /// such sandbox (a pod of that name that sandlot did not create counts as none).
    pub async fn get_sandbox(&self, name: &str) -> Result<SandboxStatus> {
        validate::object_name("name", name)?;
        let pod = retry(|| self.pods().get(name))
            .await
            .map_err(|err| self.sandbox_error(err, name))?;
        if !labels::is_managed(&pod.metadata) {
            return Err(Error::NotFound {
                kind: ObjectKind::Sandbox,
                name: name.to_owned(),
                namespace: self.namespace().to_owned(),
            });
        }
        self.settled_status(&pod).await
    }

    /// The status of `pod`. A launch failure that Kubernetes would retry forever
    /// (an image that cannot be pulled, say) is made final first: the failure is
    /// recorded on the pod and the pod is stopped, so `failed` never turns into
    /// `running` later.
    pub(crate) async fn settled_status(&self, pod: &Pod) -> Result<SandboxStatus> {
        let status = SandboxStatus::from_pod(pod);
        if !unsettled_launch_failure(pod, &status) {
            return Ok(status);
        }
        let message = status
            .message
            .clone()
            .unwrap_or_else(|| "launch failed".to_owned());
        let body = json!({
            "metadata": {"annotations": {LAUNCH_FAILED_ANNOTATION: message}},
            "spec": {"activeDeadlineSeconds": 1},
        });
        let (name, params, patch) = (
            status.name.clone(),
            PatchParams::default(),
            Patch::Merge(&body),
        );
        let settled = retry(|| self.pods().patch(&name, &params, &patch))
            .await
            .map_err(|err| self.sandbox_error(err, &name))?;
        Ok(SandboxStatus::from_pod(&settled))
    }
}
