//! The helper pod through which a volume's files are read and written, with
//! or without a sandbox mounting it.
//!
//! A helper is a hardened pod like a sandbox (no service account token, every
//! capability dropped, read-only root, seccomp, a user namespace where the
//! nodes have them) whose only program is the agent: `agent wait` as its
//! command, `agent file` per operation. It mounts the volume at `/volume`,
//! read-only unless an operation writes. It runs as uid 0 (without
//! capabilities), the user of most images' sandboxes, so it reads what they
//! wrote and they own what it writes; or as the uid, gid and fsGroup a
//! sandbox created with `run_as_user` has, for such sandboxes.
//!
//! A client keeps one helper per volume while it is used and deletes it after
//! [`HELPER_IDLE`] without use; a helper whose client died ends at its
//! deadline, and its record is removed by the next helper any client starts.
//! Helpers carry the label [`labels::HELPER_LABEL`], which keeps them out of
//! sandbox listings.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::labels::{self, CONTAINER_NAME, HELPER_LABEL};
use crate::retry::retry;
use crate::status::{Phase, SandboxStatus};
use crate::userns::NodeSupport;

/// The setting for the helper's image.
pub const HELPER_IMAGE_ENV: &str = "SANDLOT_FILES_IMAGE";
/// The helper's image unless [`HELPER_IMAGE_ENV`] names another: the
/// kubelet's own pod sandbox image, which nodes keep (the helper runs
/// nothing of it).
const DEFAULT_HELPER_IMAGE: &str = "registry.k8s.io/pause:3.10.1";
/// A helper unused for this long is deleted.
pub(crate) const HELPER_IDLE: Duration = Duration::from_secs(30);
/// A helper ends this long after it started, whatever its client does.
const HELPER_DEADLINE_SECONDS: i64 = 900;
/// A helper is handed out for new operations this long after it started,
/// which leaves each at least 5 minutes before the deadline.
const HELPER_HANDED_OUT: Duration = Duration::from_secs(600);
/// The wait for a new helper to run.
const HELPER_START: Duration = Duration::from_secs(120);
/// Label naming the volume a helper mounts.
const HELPER_VOLUME_LABEL: &str = "sandlot.dev/volume";
/// Label saying whether a helper mounts its volume writable.
const HELPER_WRITABLE_LABEL: &str = "sandlot.dev/writable";

/// The helper kept for one volume, user and writability, if any; locked
/// while one starts.
type HelperSlot = Arc<tokio::sync::Mutex<Option<Helper>>>;

/// What a helper is for: its volume, the uid it runs as (`None`: 0), and
/// whether it mounts the volume writable.
type HelperKey = (String, Option<i64>, bool);

/// The helpers this client keeps.
#[derive(Default)]
pub(crate) struct HelperState {
    slots: Mutex<HashMap<HelperKey, HelperSlot>>,
}

struct Helper {
    pod: String,
    use_: Arc<HelperUse>,
    /// When this client started it.
    started: Instant,
}

/// How a helper is being used: the idle reaper deletes it only when no
/// operation holds a lease and the last one ended [`HELPER_IDLE`] ago.
#[derive(Debug)]
struct HelperUse {
    leases: AtomicUsize,
    last: Mutex<Instant>,
}

/// An operation's hold on a helper pod, for as long as the operation runs.
#[derive(Debug)]
pub(crate) struct HelperLease(Arc<HelperUse>);

impl HelperLease {
    fn new(use_: &Arc<HelperUse>) -> Self {
        use_.leases.fetch_add(1, Ordering::SeqCst);
        HelperLease(use_.clone())
    }
}

impl Drop for HelperLease {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.leases.fetch_sub(1, Ordering::SeqCst);
    }
}

impl HelperState {
    fn slot(&self, volume: &str, run_as_user: Option<i64>, writable: bool) -> HelperSlot {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((volume.to_owned(), run_as_user, writable))
            .or_default()
            .clone()
    }
}

impl Client {
    /// The running helper pod for volume `volume`, as uid `run_as_user`
    /// (`None`: 0), writable if `writable` (this client's own if it still
    /// runs, else a new one), and a lease on it for the operation about to
    /// run.
    pub(super) async fn volume_helper(
        &self,
        volume: &str,
        run_as_user: Option<i64>,
        writable: bool,
    ) -> Result<(String, HelperLease)> {
        crate::validate::object_name("volume", volume)?;
        if let Some(uid) = run_as_user {
            crate::validate::run_as_user("run_as_user", uid)?;
        }
        // A writable helper this client keeps serves reads too.
        if !writable {
            let slot = self.helpers().slot(volume, run_as_user, true);
            let slot = slot.lock().await;
            if let Some(helper) = slot.as_ref() {
                if let Some(lease) = self.lease(helper).await {
                    return Ok((helper.pod.clone(), lease));
                }
            }
        }
        let slot = self.helpers().slot(volume, run_as_user, writable);
        let mut slot = slot.lock().await;
        if let Some(helper) = slot.as_ref() {
            if let Some(lease) = self.lease(helper).await {
                return Ok((helper.pod.clone(), lease));
            }
            *slot = None;
        }
        // The volume must exist (and be sandlot's) before a pod waits on it.
        self.get_volume(volume).await?;
        if !self.place_agent().await? {
            return Err(Error::Exec {
                name: volume.to_owned(),
                message: "volume files need sandlot's agent program, whose ConfigMap this \
                          client may not create"
                    .into(),
            });
        }
        self.remove_ended_helpers().await;
        let pod = self.helper_pod(volume, run_as_user, writable).await?;
        let name = pod.metadata.name.clone().expect("the helper has a name");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .map_err(|err| self.api_error(err))?;
        if let Err(err) = self.wait_helper(volume, &name).await {
            self.delete_helper(&name).await;
            return Err(err);
        }
        let use_ = Arc::new(HelperUse {
            leases: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        });
        let lease = HelperLease::new(&use_);
        self.reap_when_idle(name.clone(), use_.clone());
        *slot = Some(Helper {
            pod: name.clone(),
            use_,
            started: Instant::now(),
        });
        Ok((name, lease))
    }

    /// A lease on `helper` if it still runs (and is not being deleted), and
    /// has time left before its deadline for an operation.
    async fn lease(&self, helper: &Helper) -> Option<HelperLease> {
        if helper.started.elapsed() > HELPER_HANDED_OUT {
            return None;
        }
        let pod = self.sandbox_pod(&helper.pod).await.ok()?;
        let runs = pod.metadata.deletion_timestamp.is_none()
            && SandboxStatus::from_pod(&pod).phase == Phase::Running;
        runs.then(|| HelperLease::new(&helper.use_))
    }

    /// Waits until helper `pod` of `volume` runs (read every 200 ms: the
    /// shared watch leaves helpers out), at most [`HELPER_START`].
    async fn wait_helper(&self, volume: &str, pod: &str) -> Result<()> {
        let deadline = Instant::now() + HELPER_START;
        loop {
            let status = SandboxStatus::from_pod(&self.sandbox_pod(pod).await?);
            if status.phase == Phase::Running {
                return Ok(());
            }
            if status.phase.is_terminal() {
                return Err(Error::Exec {
                    name: volume.to_owned(),
                    message: format!(
                        "the file helper of volume {volume:?} did not start: {}",
                        status.message.unwrap_or_else(|| status.phase.to_string())
                    ),
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "the file helper of volume {volume:?} to run ({}: {})",
                        status.phase,
                        status.message.unwrap_or_default()
                    ),
                    after: HELPER_START,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Deletes helper `pod` once no operation holds it and the last one
    /// ended [`HELPER_IDLE`] ago.
    fn reap_when_idle(&self, pod: String, use_: Arc<HelperUse>) {
        let client = self.clone();
        tokio::spawn(async move {
            loop {
                let last = *use_.last.lock().unwrap_or_else(PoisonError::into_inner);
                let due = last + HELPER_IDLE;
                if use_.leases.load(Ordering::SeqCst) == 0 && Instant::now() >= due {
                    break;
                }
                tokio::time::sleep_until(due.max(Instant::now() + Duration::from_secs(1))).await;
            }
            client.delete_helper(&pod).await;
        });
    }

    /// Deletes helper `pod` at once; best effort (its deadline ends it anyway).
    pub(crate) async fn delete_helper(&self, pod: &str) {
        self.agent().forget(pod);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        let _ = retry(|| self.pods().delete(pod, &params)).await;
    }

    /// Deletes the helper pods this client started, at once. A client that
    /// ends soon (a command-line run) calls it last; others leave helpers to
    /// their idle time.
    pub async fn release_helpers(&self) {
        let slots: Vec<HelperSlot> = self
            .helpers()
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, slot)| slot)
            .collect();
        for slot in slots {
            if let Some(helper) = slot.lock().await.take() {
                self.delete_helper(&helper.pod).await;
            }
        }
    }

    /// Deletes the helpers of `volume` (all, if `None`) that have ended, or
    /// every one of them with `all`.
    pub(crate) async fn remove_helpers(&self, volume: Option<&str>, all: bool) -> Result<()> {
        let mut selector = HELPER_LABEL.to_owned();
        if let Some(volume) = volume {
            selector.push_str(&format!(",{HELPER_VOLUME_LABEL}={volume}"));
        }
        let params = ListParams::default().labels(&selector);
        let pods = retry(|| self.pods().list(&params))
            .await
            .map_err(|err| self.api_error(err))?;
        for pod in pods {
            let ended = SandboxStatus::from_pod(&pod).phase.is_terminal();
            if let (true, Some(name)) = (all || ended, pod.metadata.name.as_deref()) {
                self.delete_helper(name).await;
            }
        }
        Ok(())
    }

    /// Removes the records of helpers that ended at their deadline.
    async fn remove_ended_helpers(&self) {
        let _ = self.remove_helpers(None, false).await;
    }

    /// A new helper pod for `volume`, as uid `run_as_user` (`None`: 0).
    async fn helper_pod(
        &self,
        volume: &str,
        run_as_user: Option<i64>,
        writable: bool,
    ) -> Result<Pod> {
        let image = std::env::var(HELPER_IMAGE_ENV)
            .ok()
            .filter(|image| !image.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_HELPER_IMAGE.to_owned());
        let user_namespace = matches!(self.user_namespace_support().await?, NodeSupport::Supported);
        let mut labels = labels::managed_labels();
        labels.extend(BTreeMap::from([
            (HELPER_LABEL.to_owned(), "files".to_owned()),
            (HELPER_VOLUME_LABEL.to_owned(), volume.to_owned()),
            (HELPER_WRITABLE_LABEL.to_owned(), writable.to_string()),
        ]));
        let quantity = |q: &str| Quantity(q.to_owned());
        let mut pod = Pod {
            metadata: ObjectMeta {
                name: Some(crate::validate::generated_name("sandlot-files-")),
                labels: Some(labels),
                owner_references: self.owner().cloned().map(|owner| vec![owner]),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                restart_policy: Some("Never".into()),
                share_process_namespace: Some(false),
                host_users: user_namespace.then_some(false),
                automount_service_account_token: Some(false),
                enable_service_links: Some(false),
                termination_grace_period_seconds: Some(0),
                active_deadline_seconds: Some(HELPER_DEADLINE_SECONDS),
                security_context: Some(PodSecurityContext {
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".into(),
                        localhost_profile: None,
                    }),
                    run_as_user: Some(run_as_user.unwrap_or(0)),
                    run_as_group: Some(run_as_user.unwrap_or(0)),
                    fs_group: run_as_user,
                    run_as_non_root: run_as_user.map(|_| true),
                    ..PodSecurityContext::default()
                }),
                containers: vec![Container {
                    name: CONTAINER_NAME.into(),
                    image: Some(image),
                    image_pull_policy: Some("IfNotPresent".into()),
                    command: Some(crate::agent::wait_command()),
                    resources: Some(ResourceRequirements {
                        limits: Some(BTreeMap::from([
                            ("cpu".to_owned(), quantity("1")),
                            ("memory".to_owned(), quantity("64Mi")),
                        ])),
                        requests: Some(BTreeMap::from([
                            ("cpu".to_owned(), quantity("10m")),
                            ("memory".to_owned(), quantity("16Mi")),
                        ])),
                        ..ResourceRequirements::default()
                    }),
                    security_context: Some(SecurityContext {
                        allow_privilege_escalation: Some(false),
                        privileged: Some(false),
                        read_only_root_filesystem: Some(true),
                        capabilities: Some(Capabilities {
                            drop: Some(vec!["ALL".into()]),
                            add: None,
                        }),
                        ..SecurityContext::default()
                    }),
                    volume_mounts: Some(vec![VolumeMount {
                        name: "volume".into(),
                        mount_path: String::from_utf8_lossy(super::VOLUME_ROOT).into_owned(),
                        read_only: (!writable).then_some(true),
                        ..VolumeMount::default()
                    }]),
                    ..Container::default()
                }],
                volumes: Some(vec![Volume {
                    name: "volume".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: volume.to_owned(),
                        read_only: (!writable).then_some(true),
                    }),
                    ..Volume::default()
                }]),
                ..PodSpec::default()
            }),
            status: None,
        };
        crate::agent::add_agent(&mut pod);
        Ok(pod)
    }
}
