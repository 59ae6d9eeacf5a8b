//! The one place where reading a sandbox may write to it.
//!
//! Kubernetes retries some launch failures forever (an image that cannot be
//! pulled, an invalid container config): the pod stays pending and could still
//! start much later. sandlot reports such a sandbox as `failed` and makes that
//! final by recording the failure on the pod and stopping it: at once for a
//! failure retrying cannot fix (an invalid or missing image, refused
//! credentials, a bad config), and after [`LAUNCH_RETRY_WINDOW`] for one that
//! may heal (a registry that throttles or is down, a network blip), which
//! reads as `creating` until then. Reads
//! ([`Client::get_sandbox`], [`Client::wait_sandbox`]) call
//! [`Client::settle_launch_failure`] with every pod they look at, so the first
//! read that sees the failure settles it and `failed` never turns into
//! `running` afterwards. Any other pod is returned as it is, without a write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::client::Client;
use crate::error::Result;
use crate::labels::{LAUNCH_FAILED_ANNOTATION, TERMINATED_AT_ANNOTATION, annotation};
use crate::retry::retry;
use crate::status::{SandboxStatus, StartFailure, TerminationReason, start_failure};

/// How long a start failure that may heal is left to the kubelet's retries,
/// counted from when the pod was scheduled: long enough for several pulls
/// (the kubelet backs off 10 s, 20 s, 40 s, 80 s ...), short enough that a
/// registry that stays unreachable fails the sandbox within minutes.
pub const LAUNCH_RETRY_WINDOW: Duration = Duration::from_secs(120);

/// [`LAUNCH_RETRY_WINDOW`] unless a test shortened it, in milliseconds.
static LAUNCH_RETRY_WINDOW_MS: AtomicU64 = AtomicU64::new(LAUNCH_RETRY_WINDOW.as_millis() as u64);

/// Sets the retry window for this process and returns the one it replaced.
/// For sandlot's own tests only.
#[doc(hidden)]
pub fn set_launch_retry_window(window: Duration) -> Duration {
    let millis = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(LAUNCH_RETRY_WINDOW_MS.swap(millis, Ordering::Relaxed))
}

fn launch_retry_window() -> Duration {
    Duration::from_millis(LAUNCH_RETRY_WINDOW_MS.load(Ordering::Relaxed))
}

impl Client {
    /// The status of `pod`, after settling it if it is an unsettled launch
    /// failure: then the failure is recorded on the pod (annotation
    /// `sandlot.dev/launch-failed`) and an active deadline that has already
    /// passed makes the kubelet stop it. Only then does this send a request.
    pub(crate) async fn settle_launch_failure(&self, pod: &Pod) -> Result<SandboxStatus> {
        let status = SandboxStatus::from_pod(pod);
        let Some(message) = unsettled_launch_failure(pod, &status, jiff::Timestamp::now()) else {
            return Ok(status);
        };
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

/// The message to settle `pod` with, if it is pending in a launch failure
/// that sandlot has not settled yet and should now: a lasting one, or one that
/// may heal but has outlasted the retry window by `now`.
fn unsettled_launch_failure(
    pod: &Pod,
    status: &SandboxStatus,
    now: jiff::Timestamp,
) -> Option<String> {
    let pending = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending");
    let meta = &pod.metadata;
    if !pending
        || annotation(meta, LAUNCH_FAILED_ANNOTATION).is_some()
        || annotation(meta, TERMINATED_AT_ANNOTATION).is_some()
    {
        return None;
    }
    if status.termination_reason == Some(TerminationReason::LaunchFailed) {
        return Some(
            status
                .message
                .clone()
                .unwrap_or_else(|| "launch failed".to_owned()),
        );
    }
    let StartFailure { message, .. } = start_failure(pod)?;
    let window = launch_retry_window();
    // The scheduler's time against this client's clock: over a window of
    // minutes, ordinary clock skew does not matter.
    let since = scheduled_at(pod)?;
    let outlasted = now
        .duration_since(since)
        .try_into()
        .is_ok_and(|elapsed: Duration| elapsed >= window);
    outlasted.then(|| {
        format!(
            "still failing after {}s of retries: {message}",
            window.as_secs()
        )
    })
}

/// When the pod was placed on a node (its `PodScheduled` condition turned true).
fn scheduled_at(pod: &Pod) -> Option<jiff::Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
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

    fn pull_failure(message: &str) -> serde_json::Value {
        json!({"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            "containerStatuses": [{"name": "sandbox", "image": "x", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull", "message": message}}}]})
    }

    fn settles_at(pod: &Pod, now: &str) -> Option<String> {
        unsettled_launch_failure(pod, &SandboxStatus::from_pod(pod), now.parse().unwrap())
    }

    #[test]
    fn a_lasting_failure_is_settled_at_once_and_only_once() {
        let missing = pull_failure("failed to resolve reference \"x:1\": x:1: not found");
        assert!(settles_at(&pod(missing.clone(), json!(null)), "2026-01-01T00:00:01Z").is_some());
        let recorded = json!({LAUNCH_FAILED_ANNOTATION: "image not found"});
        assert_eq!(
            settles_at(&pod(missing.clone(), recorded), "2026-01-01T00:00:01Z"),
            None
        );
        let terminated = json!({TERMINATED_AT_ANNOTATION: "2026-01-01T00:00:01Z"});
        assert_eq!(
            settles_at(&pod(missing, terminated), "2026-01-01T00:00:01Z"),
            None
        );
        assert_eq!(
            settles_at(
                &pod(json!({"phase": "Running"}), json!(null)),
                "2026-01-01T00:00:01Z"
            ),
            None
        );
    }

    #[test]
    fn a_failure_that_may_heal_is_settled_only_after_the_retry_window() {
        let throttled = pod(pull_failure("429 Too Many Requests"), json!(null));
        assert_eq!(settles_at(&throttled, "2026-01-01T00:01:59Z"), None);
        let message = settles_at(&throttled, "2026-01-01T00:02:00Z").unwrap();
        assert!(message.contains("429 Too Many Requests"), "{message}");
    }

    #[test]
    fn a_watched_pod_is_settled_as_the_whole_pod_would_be() {
        for pod in crate::lean_pod::corpus::pods() {
            let watched = crate::lean_pod::corpus::watched(&pod);
            for now in ["2026-01-01T00:00:01Z", "2026-01-01T01:00:00Z"] {
                assert_eq!(settles_at(&watched, now), settles_at(&pod, now));
            }
        }
    }
}
