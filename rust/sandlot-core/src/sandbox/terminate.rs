use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::client::Client;
use crate::error::{Error, Result, api_status};
use crate::labels::{CONTAINER_NAME, CREATED_IMAGE_ANNOTATION, TERMINATED_AT_ANNOTATION};
use crate::retry::retry;
use crate::status::SandboxStatus;
use crate::validate;

/// An image reference the API server accepts and no node can ever resolve
/// (upper case is invalid in a repository name), so a container given it
/// never starts, and starting it makes no network request.
pub(crate) const NEVER_STARTS_IMAGE: &str = "sandlot.invalid/TERMINATED-BEFORE-START";

/// How many times terminate re-reads a pod that changed between its read and
/// its write (status updates of a starting pod) before giving up.
const CHANGED_MEANWHILE_TRIES: u32 = 10;

impl Client {
    /// Terminates sandbox `name`: records the request on the pod (the phase is
    /// `terminated` from then on) and has the kubelet stop the workload within
    /// its grace period. The pod record stays, so logs remain readable and the
    /// name stays taken. A sandbox that already ended is left as it is.
    ///
    /// The pod is read first, unless the client's shared watch holds it.
    /// The record is written only onto the very pod version read as not ended
    /// (a resourceVersion precondition), so "terminated" is decided by what the
    /// API server saw, never by comparing clocks. A sandbox whose command has
    /// not started yet (queued, or its image still being pulled) also gets an
    /// image that cannot start, so its command never runs, even once capacity
    /// frees and the pod lands on a node.
    pub async fn terminate_sandbox(&self, name: &str) -> Result<SandboxStatus> {
        validate::object_name("name", name)?;
        // A pod the shared watch holds (a wait started it) needs no read: a
        // copy that is out of date fails the patch's precondition, and the
        // pod is read afresh below. A copy that has ended is read afresh
        // too: no write would check it, and the name may belong to a newer
        // sandbox the watch has not seen yet.
        if let Some(pod) = self.watched_pod(name)
            && !SandboxStatus::from_pod(&pod).phase.is_terminal()
            && let Some(status) = self.terminate_as_read(name, &pod).await?
        {
            return Ok(status);
        }
        for _ in 0..CHANGED_MEANWHILE_TRIES {
            let pod = self.sandbox_pod(name).await?;
            if let Some(status) = self.terminate_as_read(name, &pod).await? {
                return Ok(status);
            }
        }
        Err(Error::Api {
            status: 409,
            reason: "Conflict".to_owned(),
            message: format!("sandbox {name:?} kept changing while being terminated; try again"),
        })
    }
}

impl Client {
    /// [`Client::terminate_sandbox`] of a sandbox whose pod a list just gave,
    /// without reading it again unless it changed since.
    pub(crate) async fn terminate_listed(&self, pod: &Pod) -> Result<SandboxStatus> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        match self.terminate_as_read(&name, pod).await? {
            Some(status) => Ok(status),
            None => self.terminate_sandbox(&name).await,
        }
    }

    /// One try at terminating sandbox `name` as `pod` shows it: its status
    /// afterwards, or `None` if the pod changed since that read (by the
    /// kubelet, or by this very patch whose answer was lost), to be read and
    /// decided again.
    async fn terminate_as_read(&self, name: &str, pod: &Pod) -> Result<Option<SandboxStatus>> {
        // No more execs through this client's agent connection: the next
        // one reads the sandbox and finds it terminated.
        self.agent().forget(name);
        let current = self.settle_launch_failure(pod).await?;
        if current.phase.is_terminal() {
            return Ok(Some(current));
        }
        let body = terminate_patch(pod);
        let (params, patch) = (PatchParams::default(), Patch::Strategic(&body));
        match retry(|| self.lean_pods().patch(name, &params, &patch)).await {
            Ok(pod) => Ok(Some(SandboxStatus::from_pod(&pod.0))),
            Err(err) if api_status(&err).is_some_and(|s| s.code == 409) => Ok(None),
            Err(err) => Err(self.sandbox_error(err, name)),
        }
    }
}

/// The patch that terminates `pod`, valid only while the pod is still at the
/// version read. An active deadline that has already passed makes the kubelet
/// stop the pod, and stops a not yet started one the moment it lands.
fn terminate_patch(pod: &Pod) -> serde_json::Value {
    let mut body = json!({
        "metadata": {
            "resourceVersion": pod.metadata.resource_version,
            "annotations": {TERMINATED_AT_ANNOTATION: jiff::Timestamp::now().to_string()},
        },
        "spec": {"activeDeadlineSeconds": 1},
    });
    if !command_started(pod) {
        let image = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == CONTAINER_NAME))
            .and_then(|c| c.image.clone());
        body["metadata"]["annotations"][CREATED_IMAGE_ANNOTATION] = json!(image);
        body["spec"]["containers"] = json!([{"name": CONTAINER_NAME, "image": NEVER_STARTS_IMAGE}]);
    }
    body
}

/// True once the node has started the sandbox's container (it runs, or ran).
fn command_started(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase.is_some_and(|p| p != "Pending") {
        return true;
    }
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .any(|c| {
            let ran = |state: Option<&k8s_openapi::api::core::v1::ContainerState>| {
                state.is_some_and(|s| s.running.is_some() || s.terminated.is_some())
            };
            ran(c.state.as_ref()) || ran(c.last_state.as_ref())
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::spec::{SandboxRequest, SandboxSpec};

    fn pod(status: serde_json::Value) -> Pod {
        let spec = SandboxSpec::try_from(SandboxRequest::new("busybox:1.36")).unwrap();
        let mut value = serde_json::to_value(spec.to_pod("sb")).unwrap();
        value["metadata"]["resourceVersion"] = json!("42");
        value["status"] = status;
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_patch_holds_only_for_the_version_read() {
        let body = terminate_patch(&pod(json!({"phase": "Running"})));
        assert_eq!(body["metadata"]["resourceVersion"], "42");
        assert_eq!(body["spec"]["activeDeadlineSeconds"], 1);
    }

    #[test]
    fn a_command_not_yet_started_gets_an_image_that_never_starts() {
        let queued = terminate_patch(&pod(json!({"phase": "Pending"})));
        assert_eq!(
            queued["spec"]["containers"],
            json!([{"name": "sandbox", "image": NEVER_STARTS_IMAGE}])
        );
        assert_eq!(
            queued["metadata"]["annotations"][CREATED_IMAGE_ANNOTATION],
            "busybox:1.36"
        );
        let pulling = json!({"phase": "Pending", "containerStatuses": [{"name": "sandbox", "image": "x",
            "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]});
        assert!(terminate_patch(&pod(pulling))["spec"]["containers"].is_array());
        let running = json!({"phase": "Running", "containerStatuses": [{"name": "sandbox", "image": "x",
            "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]});
        assert!(
            terminate_patch(&pod(running))["spec"]
                .get("containers")
                .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_watched_copy_that_ended_is_read_afresh_before_it_is_believed() {
        let (client, mut cluster) = crate::watch::scripted::start();
        cluster.set("a", "Succeeded");
        let soon = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        assert!(client.pod_watch().ready(soon).await);
        let _open = cluster.next_watch().await;
        // A newer sandbox took the name; the watch has not seen it yet.
        cluster.set("a", "Running");
        let status = client.terminate_sandbox("a").await.unwrap();
        assert_eq!(
            status.phase,
            crate::status::Phase::Running,
            "the pod as read now, patched"
        );
    }

    #[test]
    fn a_watched_pod_is_terminated_as_the_whole_pod_would_be() {
        let without_time = |mut body: serde_json::Value| {
            body["metadata"]["annotations"][TERMINATED_AT_ANNOTATION].take();
            body
        };
        for pod in crate::lean_pod::corpus::pods() {
            let watched = crate::lean_pod::corpus::watched(&pod);
            assert_eq!(command_started(&watched), command_started(&pod));
            assert_eq!(
                without_time(terminate_patch(&watched)),
                without_time(terminate_patch(&pod))
            );
        }
    }
}
