//! The one place where reading a sandbox may write to it.
//!
//! Kubernetes retries some launch failures forever (an image that cannot be
//! pulled, an invalid container config): the pod stays pending and could still
//! start much later. sandlot reports such a sandbox as `failed` and makes that
//! final by recording the failure on the pod and stopping it. Reads
//! ([`Client::get_sandbox`], [`Client::wait_sandbox`]) call
//! [`Client::settle_launch_failure`] with every pod they look at, so the first
//! read that sees the failure settles it and `failed` never turns into
//! `running` afterwards. Any other pod is returned as it is, without a write.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::client::Client;
use crate::error::Result;
use crate::labels::{LAUNCH_FAILED_ANNOTATION, annotation};
use crate::retry::retry;
use crate::status::{SandboxStatus, TerminationReason};

impl Client {
    /// The status of `pod`, after settling it if it is an unsettled launch
    /// failure: then the failure is recorded on the pod (annotation
    /// `sandlot.dev/launch-failed`) and an active deadline that has already
    /// passed makes the kubelet stop it. Only then does this send a request.
    pub(crate) async fn settle_launch_failure(&self, pod: &Pod) -> Result<SandboxStatus> {
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

/// True if `status` is a launch failure that Kubernetes still retries (the pod
/// is pending) and sandlot has not settled yet.
fn unsettled_launch_failure(pod: &Pod, status: &SandboxStatus) -> bool {
    status.termination_reason == Some(TerminationReason::LaunchFailed)
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
        && annotation(&pod.metadata, LAUNCH_FAILED_ANNOTATION).is_none()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::spec::{SandboxRequest, SandboxSpec};

    fn pod(status: serde_json::Value, annotations: serde_json::Value) -> Pod {
        let spec = SandboxSpec::try_from(SandboxRequest::new("busybox:1.36")).unwrap();
        let mut value = serde_json::to_value(spec.to_pod("sb")).unwrap();
        value["status"] = status;
        value["metadata"]["annotations"] = annotations;
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn only_a_pending_launch_failure_not_yet_recorded_is_settled() {
        let pull_failure = json!({"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "sandbox", "image": "x", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull"}}}]});
        let unsettled = |pod: &Pod| unsettled_launch_failure(pod, &SandboxStatus::from_pod(pod));
        assert!(unsettled(&pod(pull_failure.clone(), json!(null))));
        assert!(!unsettled(&pod(
            pull_failure,
            json!({LAUNCH_FAILED_ANNOTATION: "image not found"})
        )));
        assert!(!unsettled(&pod(json!({"phase": "Running"}), json!(null))));
    }
}
