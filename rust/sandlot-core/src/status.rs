//! A sandbox's phase and status, derived from its pod by one pure function.

use std::collections::BTreeMap;
use std::str::FromStr;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use serde::Serialize;

use crate::error::Error;
use crate::labels::{
    self, CONTAINER_NAME, CREATED_IMAGE_ANNOTATION, LAUNCH_FAILED_ANNOTATION,
    TERMINATED_AT_ANNOTATION, annotation,
};
use crate::mount::Mount;
use crate::network::{self, GATE_CONTAINER, NetworkMode};
use crate::validate;

/// Where a sandbox is in its life. Displayed, parsed and serialized by its
/// lowercase name ("running").
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Phase {
    /// Accepted, waiting for capacity.
    Queued,
    /// The runtime is being prepared: image pull, container creation.
    Creating,
    /// Ready; accepts exec.
    Running,
    /// The command exited 0.
    Succeeded,
    /// The command or the runtime failed.
    Failed,
    /// Explicitly terminated through the SDK or CLI.
    Terminated,
}

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 6] = [
        Phase::Queued,
        Phase::Creating,
        Phase::Running,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Terminated,
    ];

    /// The lowercase name users see ("running").
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// True for phases a sandbox never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Terminated)
    }
}

/// Parses the lowercase name; the [`Error::InvalidSpec`] names the field
/// `phase` and lists every phase.
impl FromStr for Phase {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        validate::one_of("phase", text)
    }
}

/// Why a sandbox stopped. Displayed and serialized by its snake_case name
/// ("ttl_expired").
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum TerminationReason {
    /// The command exited by itself (see the exit code).
    WorkloadExited,
    /// The maximum lifetime (`ttl_seconds`) ran out.
    TtlExpired,
    /// Terminate was requested.
    Terminated,
    /// The container could not be started: bad image, unpullable image, bad config.
    LaunchFailed,
    /// The workload exceeded its memory limit.
    OomKilled,
    /// The workload wrote more than its disk limit (its filesystem, `/tmp`
    /// and logs together); the kubelet evicted it.
    DiskExceeded,
    /// The node or runtime lost the workload (eviction, node loss).
    BackendLost,
}

impl TerminationReason {
    /// The snake_case name users see ("ttl_expired").
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A sandbox's tags, sorted by key: a map held as one compact slice (a
/// client keeps a status per sandbox, thousands at once, and a map's node
/// would be most of one). Written out as a map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(Box<[(String, String)]>);

impl Tags {
    /// (key, value) pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of tag `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Keys given more than once keep their last value, as a map's would.
impl FromIterator<(String, String)> for Tags {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        let map: BTreeMap<String, String> = pairs.into_iter().collect();
        Tags(map.into_iter().collect())
    }
}

impl Serialize for Tags {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// A sandbox as last seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SandboxStatus {
    pub name: String,
    pub namespace: String,
    pub phase: Phase,
    /// The command's exit code, once it has exited.
    pub exit_code: Option<i32>,
    /// Set once the phase is terminal.
    pub termination_reason: Option<TerminationReason>,
    /// What Kubernetes said about the current state, when it said something.
    pub message: Option<String>,
    pub created_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub image: String,
    pub tags: Tags,
    /// Mount path -> the volume mounted there.
    pub volume_mounts: BTreeMap<String, Mount>,
    /// Which destinations the sandbox may connect to.
    pub network: NetworkMode,
    /// The allowlist's entries, as given.
    pub allow_egress: Vec<String>,
    /// Whether it runs in a user namespace (`hostUsers: false`): uid 0
    /// inside is an unprivileged uid of the node.
    pub user_namespace: bool,
    /// The pool it was created from (or, while `warm`, waits in).
    pub pool: Option<String>,
    /// A pool's warm sandbox that no create has claimed yet.
    pub warm: bool,
    /// Why a create from a pool was served cold (none fitted or was ready).
    pub pool_fallback: Option<String>,
}

/// Waiting reasons of a container whose start failed and that retrying will
/// not fix.
const LASTING_START_FAILURES: [&str; 3] = [
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
];

/// Waiting reasons of a container whose start failed and that the kubelet
/// retries; each may heal (a registry that throttled, a network blip) unless
/// its message says otherwise ([`LASTING_PULL_ERRORS`]).
const RETRIED_START_FAILURES: [&str; 3] =
    ["ErrImagePull", "ImagePullBackOff", "CreateContainerError"];

/// Words in a pull error (lowercased) saying the image will never be pulled
/// as named: it does not exist, or these credentials may not have it.
const LASTING_PULL_ERRORS: [&str; 7] = [
    ": not found",
    "manifest unknown",
    "name unknown",
    "pull access denied",
    "unauthorized",
    "insufficient_scope",
    "no match for platform",
];

/// Why the sandbox's container could not start, from its waiting state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StartFailure {
    /// What Kubernetes said (the message, else the reason).
    pub message: String,
    /// True if retrying cannot fix it; false while the kubelet's retries may.
    pub lasting: bool,
}

/// The start failure the network gate or the sandbox container is waiting
/// in, if any.
pub(crate) fn start_failure(pod: &Pod) -> Option<StartFailure> {
    let waiting = [gate_container_status(pod), sandbox_container_status(pod)]
        .into_iter()
        .flatten()
        .find_map(|c| c.state.as_ref()?.waiting.as_ref())?;
    let reason = waiting.reason.as_deref()?;
    let message = waiting.message.clone().unwrap_or_else(|| reason.to_owned());
    let lasting = if LASTING_START_FAILURES.contains(&reason) {
        true
    } else if RETRIED_START_FAILURES.contains(&reason) {
        let lowered = message.to_lowercase();
        reason != "CreateContainerError" && LASTING_PULL_ERRORS.iter().any(|e| lowered.contains(e))
    } else {
        return None;
    };
    Some(StartFailure { message, lasting })
}

/// Whether an eviction's message says the pod wrote past its own disk limits:
/// its containers' `ephemeral-storage` or an emptyDir's size limit (the
/// kubelet's words, not the node running short).
fn over_disk_limit(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("exceed") && (message.contains("ephemeral") || message.contains("emptydir"))
}

/// Pod-level failure reasons meaning the node lost the workload.
const BACKEND_LOSSES: [&str; 4] = ["Evicted", "NodeLost", "Shutdown", "Terminated"];

impl SandboxStatus {
    /// Derives the status from a sandbox pod. Total: any pod gives a status.
    pub fn from_pod(pod: &Pod) -> SandboxStatus {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let container_spec =
            spec.and_then(|s| s.containers.iter().find(|c| c.name == CONTAINER_NAME));
        let container = sandbox_container_status(pod);
        let state = container.and_then(|c| c.state.as_ref());
        let running = state.and_then(|s| s.running.as_ref());
        let exited = state.and_then(|s| s.terminated.as_ref());
        let waiting = state.and_then(|s| s.waiting.as_ref());

        let terminated_at =
            annotation(meta, TERMINATED_AT_ANNOTATION).and_then(|t| t.parse::<Timestamp>().ok());
        let launch_failure = annotation(meta, LAUNCH_FAILED_ANNOTATION);
        let pod_phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        let pod_reason = status.and_then(|s| s.reason.as_deref());
        let pod_message = status.and_then(|s| s.message.clone());
        // A gate that failed as the entrypoint: the workload never ran.
        let gate_failed = network::gate_is_entrypoint(pod)
            && exited.is_some_and(|t| network::failed_by_gate(t.exit_code, t.message.as_deref()));
        let exit_code = exited.filter(|_| !gate_failed).map(|t| t.exit_code);
        let exited_reason = exited.and_then(|t| t.reason.as_deref());
        let exited_message = exited
            .and_then(|t| t.message.clone())
            .or_else(|| exited_reason.map(str::to_owned));

        let network = network::network_of(meta);

        use TerminationReason as R;
        // Terminate records itself only on a pod the API server saw as not
        // ended (see sandbox/terminate.rs), so the record alone decides.
        let (phase, reason, message) = if terminated_at.is_some() {
            (Phase::Terminated, Some(R::Terminated), None)
        } else if let Some(failure) = launch_failure {
            (Phase::Failed, Some(R::LaunchFailed), Some(failure.clone()))
        } else {
            match pod_phase {
                "Succeeded" => (Phase::Succeeded, Some(R::WorkloadExited), None),
                "Running" => (Phase::Running, None, None),
                "Failed" => {
                    if pod_reason == Some("DeadlineExceeded") {
                        (Phase::Failed, Some(R::TtlExpired), pod_message)
                    } else if exited_reason == Some("OOMKilled") {
                        (Phase::Failed, Some(R::OomKilled), exited_message)
                    } else if gate_failed
                        || matches!(exited_reason, Some("StartError" | "ContainerCannotRun"))
                    {
                        (Phase::Failed, Some(R::LaunchFailed), exited_message)
                    } else if pod_reason == Some("Evicted")
                        && pod_message.as_deref().is_some_and(over_disk_limit)
                    {
                        (Phase::Failed, Some(R::DiskExceeded), pod_message)
                    } else if pod_reason.is_some_and(|r| BACKEND_LOSSES.contains(&r)) {
                        (Phase::Failed, Some(R::BackendLost), pod_message)
                    } else if exited.is_some() {
                        (Phase::Failed, Some(R::WorkloadExited), exited_message)
                    } else if let Some(gate) = gate_failure(pod) {
                        (Phase::Failed, Some(R::LaunchFailed), Some(gate))
                    } else {
                        // Rejected by the node before any container ran.
                        (
                            Phase::Failed,
                            Some(R::LaunchFailed),
                            pod_message.or(pod_reason.map(str::to_owned)),
                        )
                    }
                }
                "Pending" => {
                    let start_failure = start_failure(pod);
                    if let Some(failure) = start_failure.as_ref().filter(|f| f.lasting) {
                        (
                            Phase::Failed,
                            Some(R::LaunchFailed),
                            Some(failure.message.clone()),
                        )
                    } else if let Some(failure) = start_failure {
                        // The kubelet retries; until sandlot settles it (see
                        // sandbox/settle.rs) the sandbox is still being created.
                        (Phase::Creating, None, Some(failure.message))
                    } else if is_scheduled(pod) {
                        (
                            Phase::Creating,
                            None,
                            waiting.and_then(|w| w.message.clone()),
                        )
                    } else {
                        let unscheduled = status
                            .and_then(|s| s.conditions.as_ref())
                            .and_then(|all| all.iter().find(|c| c.type_ == "PodScheduled"))
                            .and_then(|c| c.message.clone());
                        (Phase::Queued, None, unscheduled)
                    }
                }
                // "Unknown": the node stopped reporting.
                _ => (Phase::Failed, Some(R::BackendLost), pod_message),
            }
        };

        let started_at = running
            .and_then(|r| r.started_at.as_ref())
            .or_else(|| exited.and_then(|t| t.started_at.as_ref()))
            .filter(|_| !gate_failed)
            .map(|t| t.0);
        let finished_at = if phase.is_terminal() {
            exited
                .and_then(|t| t.finished_at.as_ref())
                .map(|t| t.0)
                .or(terminated_at)
        } else {
            None
        };

        SandboxStatus {
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            phase,
            exit_code,
            termination_reason: reason,
            message,
            created_at: meta.creation_timestamp.as_ref().map(|t| t.0),
            started_at,
            finished_at,
            image: annotation(meta, CREATED_IMAGE_ANNOTATION)
                .cloned()
                .or_else(|| container_spec.and_then(|c| c.image.clone()))
                .unwrap_or_default(),
            tags: labels::tags_of(meta),
            volume_mounts: volume_mounts_of(pod),
            network: network.mode,
            allow_egress: network.allow.iter().map(ToString::to_string).collect(),
            user_namespace: spec.and_then(|s| s.host_users) == Some(false),
            pool: labels::label(meta, labels::POOL_LABEL).cloned(),
            warm: labels::label(meta, labels::WARM_LABEL).is_some(),
            pool_fallback: annotation(meta, labels::POOL_FALLBACK_ANNOTATION).cloned(),
        }
    }
}

fn is_scheduled(pod: &Pod) -> bool {
    let scheduled_condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|all| {
            all.iter()
                .any(|c| c.type_ == "PodScheduled" && c.status == "True")
        });
    scheduled_condition || pod.spec.as_ref().is_some_and(|s| s.node_name.is_some())
}

fn volume_mounts_of(pod: &Pod) -> BTreeMap<String, Mount> {
    let Some(spec) = &pod.spec else {
        return BTreeMap::new();
    };
    let claim_of = |volume: &str| {
        spec.volumes
            .iter()
            .flatten()
            .find(|v| v.name == volume)
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.clone())
    };
    spec.containers
        .iter()
        .filter(|c| c.name == CONTAINER_NAME)
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .filter_map(|m| {
            let mount = Mount {
                volume: claim_of(&m.name)?,
                read_only: m.read_only == Some(true),
            };
            Some((m.mount_path.clone(), mount))
        })
        .collect()
}

fn gate_container_status(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref())
        .and_then(|all| all.iter().find(|c| c.name == GATE_CONTAINER))
}

/// What the network gate said when it failed: its policy never held.
fn gate_failure(pod: &Pod) -> Option<String> {
    let exited = gate_container_status(pod)?
        .state
        .as_ref()?
        .terminated
        .as_ref()?;
    (exited.exit_code != 0).then(|| {
        exited
            .message
            .clone()
            .unwrap_or_else(|| format!("the network gate exited {}", exited.exit_code))
    })
}

fn sandbox_container_status(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|all| all.iter().find(|c| c.name == CONTAINER_NAME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{SandboxRequest, SandboxSpec};
    use serde_json::json;

    /// A sandbox pod with `status` (JSON) and optional annotations.
    fn pod(status: serde_json::Value, annotations: serde_json::Value) -> Pod {
        let spec = SandboxSpec::try_from(SandboxRequest::new("busybox:1.36")).unwrap();
        let mut pod = spec.to_pod("sb");
        let mut value = serde_json::to_value(&pod).unwrap();
        value["status"] = status;
        value["metadata"]["annotations"] = annotations;
        value["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        pod = serde_json::from_value(value).unwrap();
        pod
    }

    fn container(state: serde_json::Value) -> serde_json::Value {
        json!([{"name": "sandbox", "image": "busybox:1.36", "imageID": "", "ready": false, "restartCount": 0, "state": state}])
    }

    fn derive(status: serde_json::Value) -> SandboxStatus {
        SandboxStatus::from_pod(&pod(status, json!(null)))
    }

    #[test]
    fn queued_while_not_scheduled() {
        let s = derive(json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient cpu."}
        ]}));
        assert_eq!(s.phase, Phase::Queued);
        assert_eq!(s.termination_reason, None);
        assert!(s.message.unwrap().contains("Insufficient cpu"));
        assert_eq!(
            derive(json!({"phase": "Pending"})).phase,
            Phase::Queued,
            "no conditions yet"
        );
        assert_eq!(derive(json!(null)).phase, Phase::Queued, "no status at all");
    }

    #[test]
    fn creating_when_scheduled_and_pending() {
        let s = derive(json!({"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": container(json!({"waiting": {"reason": "ContainerCreating"}}))}));
        assert_eq!(s.phase, Phase::Creating);
        assert_eq!(s.termination_reason, None);
    }

    #[test]
    fn a_network_gate_that_failed_or_cannot_start_is_a_launch_failure() {
        let gate = |state: serde_json::Value| json!([{"name": "network-gate", "image": "busybox:1.36", "imageID": "", "ready": false, "restartCount": 0, "state": state}]);
        let s = derive(json!({"phase": "Failed",
            "initContainerStatuses": gate(json!({"terminated": {"exitCode": 1, "message": "sandlot network gate: ... not in force"}})),
            "containerStatuses": container(json!({"waiting": {"reason": "PodInitializing"}}))}));
        assert_eq!(s.phase, Phase::Failed);
        assert_eq!(s.termination_reason, Some(TerminationReason::LaunchFailed));
        assert!(s.message.unwrap().contains("not in force"));
        let s = derive(json!({"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "initContainerStatuses": gate(json!({"waiting": {"reason": "ErrImageNeverPull", "message": "never pull"}})),
            "containerStatuses": container(json!({"waiting": {"reason": "PodInitializing"}}))}));
        assert_eq!(s.phase, Phase::Failed, "the gate runs the sandbox's image");
        assert_eq!(s.message.as_deref(), Some("never pull"));
    }

    #[test]
    fn a_gate_that_failed_as_the_entrypoint_is_a_launch_failure_without_a_start() {
        let ended = |code: i32, message: &str| {
            derive(json!({"phase": "Failed",
                "containerStatuses": container(json!({"terminated": {"exitCode": code, "message": message,
                    "startedAt": "2026-01-01T00:00:05Z", "finishedAt": "2026-01-01T00:01:05Z"}}))}))
        };
        let s = ended(127, "sandlot network gate: cannot run \"nope\": not found");
        assert_eq!(s.phase, Phase::Failed);
        assert_eq!(s.termination_reason, Some(TerminationReason::LaunchFailed));
        assert_eq!(
            (s.exit_code, s.started_at),
            (None, None),
            "the workload never ran"
        );
        assert!(s.message.unwrap().contains("not found"));
        let s = ended(1, "my own message");
        assert_eq!(
            s.termination_reason,
            Some(TerminationReason::WorkloadExited)
        );
        assert_eq!(s.exit_code, Some(1));
    }

    #[test]
    fn running_when_pod_runs() {
        let s = derive(json!({"phase": "Running",
            "containerStatuses": container(json!({"running": {"startedAt": "2026-01-01T00:00:05Z"}}))}));
        assert_eq!(s.phase, Phase::Running);
        assert_eq!(s.started_at.unwrap().to_string(), "2026-01-01T00:00:05Z");
        assert_eq!(s.finished_at, None);
        assert_eq!(s.created_at.unwrap().to_string(), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn succeeded_with_exit_code_zero() {
        let s = derive(
            json!({"phase": "Succeeded", "containerStatuses": container(json!({"terminated": {
            "exitCode": 0, "reason": "Completed", "startedAt": "2026-01-01T00:00:05Z", "finishedAt": "2026-01-01T00:00:06Z"}}))}),
        );
        assert_eq!(s.phase, Phase::Succeeded);
        assert_eq!(s.exit_code, Some(0));
        assert_eq!(
            s.termination_reason,
            Some(TerminationReason::WorkloadExited)
        );
        assert_eq!(s.finished_at.unwrap().to_string(), "2026-01-01T00:00:06Z");
    }

    #[test]
    fn failed_when_command_fails() {
        let s = derive(
            json!({"phase": "Failed", "containerStatuses": container(json!({"terminated": {
            "exitCode": 3, "reason": "Error"}}))}),
        );
        assert_eq!(s.phase, Phase::Failed);
        assert_eq!(s.exit_code, Some(3));
        assert_eq!(
            s.termination_reason,
            Some(TerminationReason::WorkloadExited)
        );
    }

    #[test]
    fn failed_on_launch_failures_that_do_not_heal() {
        let waiting = |reason: &str, message: &str| {
            derive(json!({"phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": container(json!({"waiting": {"reason": reason, "message": message}}))}))
        };
        let lasting = [
            ("InvalidImageName", "couldn't parse image name"),
            (
                "ErrImageNeverPull",
                "image not present with pull policy of Never",
            ),
            (
                "CreateContainerConfigError",
                "container has runAsNonRoot and image will run as root",
            ),
            (
                "ErrImagePull",
                "failed to resolve reference \"x:1\": x:1: not found",
            ),
            (
                "ImagePullBackOff",
                "pull access denied, repository does not exist",
            ),
            (
                "ErrImagePull",
                "unexpected status from HEAD request: 401 Unauthorized",
            ),
        ];
        for (reason, message) in lasting {
            let s = waiting(reason, message);
            assert_eq!(s.phase, Phase::Failed, "{reason}");
            assert_eq!(s.termination_reason, Some(TerminationReason::LaunchFailed));
            assert_eq!(s.message.as_deref(), Some(message));
        }
        let start_error = derive(
            json!({"phase": "Failed", "containerStatuses": container(json!({"terminated": {
            "exitCode": 128, "reason": "StartError", "message": "exec: \"nope\": not found"}}))}),
        );
        assert_eq!(
            start_error.termination_reason,
            Some(TerminationReason::LaunchFailed)
        );
    }

    #[test]
    fn start_failures_that_may_heal_leave_the_sandbox_creating() {
        let may_heal = [
            (
                "ErrImagePull",
                "dial tcp: lookup registry-1.docker.io on 10.0.0.53:53: no such host",
            ),
            (
                "ImagePullBackOff",
                "Back-off pulling image: 429 Too Many Requests",
            ),
            (
                "ErrImagePull",
                "unexpected status from HEAD request: 503 Service Unavailable",
            ),
            ("CreateContainerError", "context deadline exceeded"),
        ];
        for (reason, message) in may_heal {
            let s = derive(json!({"phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": container(json!({"waiting": {"reason": reason, "message": message}}))}));
            assert_eq!(
                (s.phase, s.termination_reason),
                (Phase::Creating, None),
                "{message}"
            );
            assert_eq!(s.message.as_deref(), Some(message));
        }
    }

    #[test]
    fn settled_launch_failure_stays_failed_with_its_message() {
        let s = SandboxStatus::from_pod(&pod(
            json!({"phase": "Failed", "reason": "DeadlineExceeded"}),
            json!({LAUNCH_FAILED_ANNOTATION: "image not found"}),
        ));
        assert_eq!(
            (s.phase, s.termination_reason),
            (Phase::Failed, Some(TerminationReason::LaunchFailed))
        );
        assert_eq!(s.message.as_deref(), Some("image not found"));
    }

    #[test]
    fn failed_with_oom_killed() {
        let s = derive(
            json!({"phase": "Failed", "containerStatuses": container(json!({"terminated": {
            "exitCode": 137, "reason": "OOMKilled"}}))}),
        );
        assert_eq!(
            (s.phase, s.termination_reason),
            (Phase::Failed, Some(TerminationReason::OomKilled))
        );
        assert_eq!(s.exit_code, Some(137));
    }

    #[test]
    fn failed_with_ttl_expired_on_deadline() {
        let s = derive(json!({"phase": "Failed", "reason": "DeadlineExceeded",
            "message": "Pod was active on the node longer than the specified deadline"}));
        assert_eq!(
            (s.phase, s.termination_reason),
            (Phase::Failed, Some(TerminationReason::TtlExpired))
        );
    }

    #[test]
    fn failed_with_backend_lost() {
        let evicted =
            derive(json!({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}));
        assert_eq!(
            evicted.termination_reason,
            Some(TerminationReason::BackendLost)
        );
        let unknown = derive(json!({"phase": "Unknown"}));
        assert_eq!(
            (unknown.phase, unknown.termination_reason),
            (Phase::Failed, Some(TerminationReason::BackendLost))
        );
    }

    #[test]
    fn failed_with_disk_exceeded_when_evicted_for_its_own_disk_use() {
        for message in [
            "Pod ephemeral local storage usage exceeds the total limit of containers 2Gi. ",
            "Container sandbox exceeded its local ephemeral storage limit \"64Mi\". ",
            "Usage of EmptyDir volume \"sandlot-tmp\" exceeds the limit \"256Mi\". ",
        ] {
            let s = derive(json!({"phase": "Failed", "reason": "Evicted", "message": message}));
            assert_eq!(
                (s.phase, s.termination_reason),
                (Phase::Failed, Some(TerminationReason::DiskExceeded)),
                "{message}"
            );
            assert_eq!(s.message.as_deref(), Some(message));
        }
        let node_short = derive(json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: ephemeral-storage. "}));
        assert_eq!(
            node_short.termination_reason,
            Some(TerminationReason::BackendLost),
            "the node running short is not the sandbox's doing"
        );
    }

    #[test]
    fn terminated_once_requested_whatever_the_pod_does() {
        let requested = json!({TERMINATED_AT_ANNOTATION: "2026-01-01T00:01:00Z"});
        for status in [
            json!({"phase": "Pending"}),
            json!({"phase": "Running"}),
            json!({"phase": "Failed", "reason": "DeadlineExceeded", "containerStatuses": container(json!({"terminated": {
                "exitCode": 143, "reason": "Error", "finishedAt": "2026-01-01T00:01:01Z"}}))}),
        ] {
            let s = SandboxStatus::from_pod(&pod(status, requested.clone()));
            assert_eq!(s.phase, Phase::Terminated);
            assert_eq!(s.termination_reason, Some(TerminationReason::Terminated));
            assert!(s.finished_at.is_some());
        }
    }

    #[test]
    fn terminated_record_is_never_weighed_against_the_nodes_clock() {
        // The node's finish time (whole seconds) reads earlier than the
        // client's record: the same second, or a client clock running ahead.
        for phase in ["Running", "Succeeded", "Failed"] {
            let s = SandboxStatus::from_pod(&pod(
                json!({"phase": phase, "containerStatuses": container(json!({"terminated": {
                    "exitCode": 0, "reason": "Completed", "finishedAt": "2026-01-01T00:00:30Z"}}))}),
                json!({TERMINATED_AT_ANNOTATION: "2026-01-01T00:00:30.700Z"}),
            ));
            assert_eq!(
                (s.phase, s.termination_reason),
                (Phase::Terminated, Some(TerminationReason::Terminated)),
                "{phase}"
            );
        }
    }

    #[test]
    fn json_uses_the_names_users_see() {
        let s = derive(json!({"phase": "Failed", "reason": "DeadlineExceeded"}));
        let value = serde_json::to_value(&s).unwrap();
        assert_eq!(value["phase"], "failed");
        assert_eq!(value["termination_reason"], "ttl_expired");
        assert_eq!(value["created_at"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn phases_parse_from_their_names() {
        for phase in Phase::ALL {
            assert_eq!(phase.as_str().parse::<Phase>().unwrap(), phase);
        }
        assert!(matches!(
            "Running".parse::<Phase>(),
            Err(Error::InvalidSpec { .. })
        ));
    }

    #[test]
    fn names_are_the_same_in_text_and_json() {
        use strum::VariantArray;
        assert_eq!(Phase::ALL, Phase::VARIANTS, "ALL lists every phase");
        let names: Vec<&str> = Phase::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "queued",
                "creating",
                "running",
                "succeeded",
                "failed",
                "terminated"
            ]
        );
        for phase in Phase::ALL {
            assert_eq!(serde_json::to_value(phase).unwrap(), phase.to_string());
        }
        let reasons: Vec<&str> = TerminationReason::VARIANTS
            .iter()
            .map(|r| r.as_str())
            .collect();
        assert_eq!(
            reasons,
            [
                "workload_exited",
                "ttl_expired",
                "terminated",
                "launch_failed",
                "oom_killed",
                "disk_exceeded",
                "backend_lost"
            ]
        );
        for reason in TerminationReason::VARIANTS {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.to_string());
        }
        match "Running".parse::<Phase>() {
            Err(Error::InvalidSpec { field, rule }) => {
                assert_eq!(field, "phase");
                assert_eq!(
                    rule,
                    "\"Running\" is not one of queued, creating, running, succeeded, failed, terminated"
                );
            }
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn status_reports_image_tags_and_mounts() {
        let mut request = SandboxRequest::new("python:3.11-slim");
        request.tags.insert("team".into(), "ml".into());
        request
            .volume_mounts
            .insert("/data".into(), "vol".parse().unwrap());
        request
            .volume_mounts
            .insert("/logs".into(), "vol:ro".parse().unwrap());
        let spec = SandboxSpec::try_from(request).unwrap();
        let s = SandboxStatus::from_pod(&spec.to_pod("sb"));
        assert_eq!(s.image, "python:3.11-slim");
        assert_eq!(s.tags.iter().collect::<Vec<_>>(), [("team", "ml")]);
        assert_eq!(s.tags.get("team"), Some("ml"));
        assert_eq!(s.tags.get("other"), None);
        assert_eq!(
            serde_json::to_value(&s).unwrap()["tags"],
            serde_json::json!({"team": "ml"})
        );
        assert_eq!(
            s.volume_mounts,
            BTreeMap::from([
                ("/data".into(), "vol".parse().unwrap()),
                ("/logs".into(), "vol:ro".parse().unwrap())
            ])
        );
    }
}
