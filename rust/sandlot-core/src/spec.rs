//! What a user asks for ([`SandboxRequest`]), the checked spec it becomes
//! ([`SandboxSpec`]), and the hardened pod made from that.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, PersistentVolumeClaimVolumeSource, Pod,
    PodSecurityContext, PodSpec, ResourceRequirements, SeccompProfile, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::ObjectMeta;

use crate::error::{Error, Result};
use crate::labels::{self, CONTAINER_NAME, TTL_ANNOTATION};
use crate::mount::Mount;
use crate::network::{self, Network, NetworkMode};
use crate::validate;

/// CPU limit when none is given: one core.
pub const DEFAULT_CPU_LIMIT: &str = "1";
/// Memory limit when none is given.
pub const DEFAULT_MEMORY_LIMIT: &str = "512Mi";
/// CPU reserved for a sandbox without explicit resources, small so many fit a node.
pub const DEFAULT_CPU_REQUEST: &str = "10m";
/// Memory reserved for a sandbox without explicit resources.
pub const DEFAULT_MEMORY_REQUEST: &str = "32Mi";
/// Disk limit when none is given: what the sandbox writes to its own
/// filesystem, its scratch `/tmp` and its logs together (Kubernetes'
/// `ephemeral-storage`).
pub const DEFAULT_DISK_LIMIT: &str = "2Gi";
/// Disk reserved for a sandbox without explicit resources: none, said
/// explicitly (Kubernetes would otherwise reserve the whole limit, and a node
/// would hold only its disk size over 2Gi sandboxes).
pub const DEFAULT_DISK_REQUEST: &str = "0";
/// The resource name of a sandbox's disk.
const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
/// Seconds between the stop signal and the kill when a sandbox is stopped.
pub const TERMINATION_GRACE_SECONDS: i64 = 2;
/// Lifetime of a sandbox whose create and client say nothing about it: one
/// hour, so a sandbox whose client died ends by itself.
pub const DEFAULT_TTL_SECONDS: i64 = 3600;
/// The longest lifetime Kubernetes accepts (`activeDeadlineSeconds` is an
/// int32 in practice): about 68 years.
pub const MAX_TTL_SECONDS: i64 = i32::MAX as i64;

/// A sandbox's maximum lifetime, as asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ttl {
    /// Not said: the client's default lifetime ([`DEFAULT_TTL_SECONDS`] unless
    /// the client was given another).
    #[default]
    Default,
    /// No lifetime: the sandbox runs until it ends or is terminated. Only
    /// ever by explicit request.
    Unlimited,
    /// Ends (`ttl_expired`) this many seconds after it started.
    Seconds(i64),
}

impl Ttl {
    /// Checks a lifetime given for `field`: seconds between 1 and [`MAX_TTL_SECONDS`].
    pub fn check(self, field: &str) -> Result<Ttl> {
        match self {
            Ttl::Seconds(seconds) if !(1..=MAX_TTL_SECONDS).contains(&seconds) => {
                Err(Error::invalid(
                    field,
                    "must be between 1 and 2147483647 (Kubernetes' limit, about 68 years)",
                ))
            }
            ttl => Ok(ttl),
        }
    }

    /// Parses a lifetime given as text for `field`: seconds, or `none` for no
    /// lifetime.
    pub fn parse(field: &str, text: &str) -> Result<Ttl> {
        if text.trim().eq_ignore_ascii_case("none") {
            return Ok(Ttl::Unlimited);
        }
        let seconds = text.trim().parse::<i64>().map_err(|_| {
            Error::invalid(
                field,
                format!("{text:?} is neither a number of seconds nor \"none\""),
            )
        })?;
        Ttl::Seconds(seconds).check(field)
    }

    /// The lifetime in seconds (`None`: unlimited), `Default` standing for
    /// `default` (already resolved: seconds or unlimited).
    pub fn seconds_or(self, default: Option<i64>) -> Option<i64> {
        match self {
            Ttl::Default => default,
            Ttl::Unlimited => None,
            Ttl::Seconds(seconds) => Some(seconds),
        }
    }
}

/// Where a read-only sandbox still gets a writable directory, and its limit.
const SCRATCH_PATH: &str = "/tmp";
const SCRATCH_VOLUME: &str = "sandlot-tmp";
const SCRATCH_SIZE: &str = "256Mi";

/// Keeps a sandbox without a command alive, accepting exec, until it is stopped;
/// exits promptly on SIGTERM (a plain `sleep` as pid 1 would ignore it).
const IDLE_COMMAND: [&str; 3] = [
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done",
];

/// CPU, memory and disk of a sandbox, as Kubernetes quantities ("500m",
/// "256Mi", "4Gi").
///
/// A value given is both reserved and enforced as the limit. A value left out is
/// limited by a default ([`DEFAULT_CPU_LIMIT`], [`DEFAULT_MEMORY_LIMIT`],
/// [`DEFAULT_DISK_LIMIT`]) and reserves little or nothing, since a sandbox
/// without limits could starve the node or fill its disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu: Option<String>,
    pub memory: Option<String>,
    /// Kubernetes' `ephemeral-storage`: the writable layer, `/tmp` and logs.
    pub disk: Option<String>,
}

/// What a user asks for, field by field, before any check. Turn it into a
/// [`SandboxSpec`] with `SandboxSpec::try_from`, which checks every field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxRequest {
    /// Container image reference.
    pub image: String,
    /// The sandbox's name; generated when `None`.
    pub name: Option<String>,
    /// Replaces the image's entrypoint. With neither command nor args the sandbox
    /// idles, accepting exec, until terminated or its ttl ends.
    pub command: Option<Vec<String>>,
    /// Arguments to the command (or to the image's entrypoint).
    pub args: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    /// Filterable string pairs, stored as labels.
    pub tags: BTreeMap<String, String>,
    /// Mount path -> the volume mounted there.
    pub volume_mounts: BTreeMap<String, Mount>,
    pub resources: Resources,
    /// Maximum lifetime, enforced by Kubernetes; by default the client's.
    pub ttl_seconds: Ttl,
    /// Run as this non-root uid (and gid, and volume group) instead of the image's user.
    pub run_as_user: Option<i64>,
    /// Make the image's filesystem read-only; `/tmp` stays writable (an empty dir).
    pub read_only_root_filesystem: bool,
    /// Kubernetes RuntimeClass to run under, e.g. "gvisor".
    pub runtime_class: Option<String>,
    /// Which destinations the sandbox may connect to; `None`: `allowlist` if
    /// `allow_egress` names any, else `internet`. See [`Network::from_request`].
    pub network: Option<NetworkMode>,
    /// Allowlist entries (CIDR, `CIDR:PORT`, `namespace/service`).
    pub allow_egress: Vec<String>,
    /// Run in a user namespace (`hostUsers: false`), so uid 0 inside is an
    /// unprivileged uid of the node. `None`: wherever every node supports it,
    /// unless a `runtime_class` is given; see `userns.rs`.
    pub user_namespace: Option<bool>,
    /// Take a warm sandbox of this pool if one fits (see `pool/`); `image`
    /// may then be left empty for the pool's.
    pub pool: Option<String>,
}

impl SandboxRequest {
    /// A request for `image` with every other field at its default.
    pub fn new(image: impl Into<String>) -> Self {
        SandboxRequest {
            image: image.into(),
            ..SandboxRequest::default()
        }
    }
}

/// A sandbox request that passed every check: the only input
/// [`Client::create_sandbox`](crate::Client::create_sandbox) takes. Built only
/// by `SandboxSpec::try_from(request)`, so holding one means it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    request: SandboxRequest,
    network: Network,
}

/// Checks every field against the rules Kubernetes would apply; the
/// [`Error::InvalidSpec`] names the field that breaks one.
impl TryFrom<SandboxRequest> for SandboxSpec {
    type Error = Error;

    fn try_from(request: SandboxRequest) -> Result<SandboxSpec> {
        check(&request)?;
        let network = Network::from_request(request.network, &request.allow_egress)?;
        network.check_env(&request.env)?;
        Ok(SandboxSpec { request, network })
    }
}

fn check(request: &SandboxRequest) -> Result<()> {
    let image = &request.image;
    if let Some(pool) = &request.pool {
        crate::pool::check_pool_name("pool", pool)?;
    }
    if image.trim().is_empty() && !(image.is_empty() && request.pool.is_some()) {
        return Err(Error::invalid(
            "image",
            "must not be empty (it may be left out only with a pool)",
        ));
    }
    if image.chars().any(char::is_whitespace) {
        return Err(Error::invalid(
            "image",
            format!("{image:?} must not contain whitespace"),
        ));
    }
    if let Some(name) = &request.name {
        validate::object_name("name", name)?;
    }
    if let Some(command) = &request.command {
        if command.is_empty() {
            return Err(Error::invalid(
                "command",
                "must not be empty; leave it out for an idle sandbox",
            ));
        }
        no_nul("command", command)?;
    }
    if let Some(args) = &request.args {
        no_nul("args", args)?;
    }
    for (key, value) in &request.env {
        validate::env_name(&format!("env[{key:?}]"), key)?;
        if value.contains('\0') {
            return Err(Error::invalid(
                format!("env[{key:?}]"),
                "value must not contain NUL bytes",
            ));
        }
    }
    labels::validate_tags(&request.tags)?;
    for (path, mount) in &request.volume_mounts {
        let field = format!("volume_mounts[{path:?}]");
        if !path.starts_with('/') {
            return Err(Error::invalid(field, "mount path must be absolute"));
        }
        if path.split('/').any(|part| part == "..") || path.contains(':') {
            return Err(Error::invalid(
                field,
                "mount path must not contain '..' or ':'",
            ));
        }
        let parts: Vec<&str> = path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        if let Some(rule) = reserved_mount_path(&parts) {
            return Err(Error::invalid(field, rule));
        }
        validate::object_name(&field, &mount.volume)?;
    }
    if let Some(cpu) = &request.resources.cpu {
        validate::quantity("resources.cpu", cpu)?;
    }
    if let Some(memory) = &request.resources.memory {
        validate::quantity("resources.memory", memory)?;
    }
    if let Some(disk) = &request.resources.disk {
        validate::quantity("resources.disk", disk)?;
    }
    request.ttl_seconds.check("ttl_seconds")?;
    if let Some(uid) = request.run_as_user {
        validate::run_as_user("run_as_user", uid)?;
    }
    if let Some(class) = &request.runtime_class {
        validate::dns_subdomain("runtime_class", class)?;
    }
    Ok(())
}

impl SandboxSpec {
    /// The checked request, field by field.
    pub fn request(&self) -> &SandboxRequest {
        &self.request
    }

    /// The network the sandbox gets, its allowlist parsed.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The name asked for; `None` means a generated one.
    pub fn name(&self) -> Option<&str> {
        self.request.name.as_deref()
    }

    /// This spec with a lifetime left to the default given `default` (seconds,
    /// or `None` for unlimited): what a client with that default creates.
    pub fn with_default_ttl(&self, default: Option<i64>) -> SandboxSpec {
        let mut request = self.request.clone();
        request.ttl_seconds = match request.ttl_seconds.seconds_or(default) {
            Some(seconds) => Ttl::Seconds(seconds),
            None => Ttl::Unlimited,
        };
        SandboxSpec {
            request,
            network: self.network.clone(),
        }
    }

    /// This spec with its user namespace decided: what a client that chose
    /// `user_namespace` for it creates.
    pub fn with_user_namespace(&self, user_namespace: bool) -> SandboxSpec {
        let mut spec = self.clone();
        spec.request.user_namespace = Some(user_namespace);
        spec
    }

    /// The pod for this spec under `name`, hardened for untrusted code: no
    /// service-account token, no service links, every capability dropped, no
    /// privilege escalation, seccomp RuntimeDefault, limits always set, a
    /// short grace period, a user namespace if `user_namespace` is true, and
    /// unless the network is `unrestricted` the network gate ahead of the
    /// workload (see `network.rs`). A lifetime left to the default is
    /// [`DEFAULT_TTL_SECONDS`], a user namespace left to the default is none;
    /// see [`SandboxSpec::with_default_ttl`], [`SandboxSpec::with_user_namespace`].
    pub fn to_pod(&self, name: &str) -> Pod {
        let request = &self.request;
        let labels = labels::labels_of(&request.tags);
        let ttl_seconds = request.ttl_seconds.seconds_or(Some(DEFAULT_TTL_SECONDS));
        let mut annotations = BTreeMap::new();
        if let Some(ttl) = ttl_seconds {
            annotations.insert(TTL_ANNOTATION.to_owned(), ttl.to_string());
        }

        let (command, args) = match (&request.command, &request.args) {
            (None, None) => (Some(IDLE_COMMAND.map(str::to_owned).to_vec()), None),
            (command, args) => (command.clone(), args.clone()),
        };
        let env: Vec<EnvVar> = request
            .env
            .iter()
            .map(|(name, value)| EnvVar {
                name: name.clone(),
                value: Some(value.clone()),
                value_from: None,
            })
            .collect();
        let mut volumes: Vec<Volume> = self
            .volume_names()
            .into_iter()
            .map(|volume| Volume {
                name: volume.to_owned(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: volume.to_owned(),
                    read_only: None,
                }),
                ..Volume::default()
            })
            .collect();
        let mut volume_mounts: Vec<VolumeMount> = request
            .volume_mounts
            .iter()
            .map(|(path, mount)| VolumeMount {
                name: mount.volume.clone(),
                mount_path: path.clone(),
                read_only: mount.read_only.then_some(true),
                ..VolumeMount::default()
            })
            .collect();
        if request.read_only_root_filesystem && !request.volume_mounts.contains_key(SCRATCH_PATH) {
            volumes.push(Volume {
                name: SCRATCH_VOLUME.into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: None,
                    size_limit: Some(Quantity(SCRATCH_SIZE.into())),
                }),
                ..Volume::default()
            });
            volume_mounts.push(VolumeMount {
                name: SCRATCH_VOLUME.into(),
                mount_path: SCRATCH_PATH.into(),
                ..VolumeMount::default()
            });
        }
        let uid = request.run_as_user;

        let mut pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(labels),
                annotations: (!annotations.is_empty()).then_some(annotations),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                restart_policy: Some("Never".into()),
                // Process 1 is the sandbox's own entrypoint (the network gate
                // relies on it), never the pod's pause process.
                share_process_namespace: Some(false),
                host_users: (request.user_namespace == Some(true)).then_some(false),
                automount_service_account_token: Some(false),
                enable_service_links: Some(false),
                termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
                active_deadline_seconds: ttl_seconds,
                runtime_class_name: request.runtime_class.clone(),
                security_context: Some(PodSecurityContext {
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".into(),
                        localhost_profile: None,
                    }),
                    run_as_user: uid,
                    run_as_group: uid,
                    fs_group: uid,
                    run_as_non_root: uid.map(|_| true),
                    ..PodSecurityContext::default()
                }),
                containers: vec![Container {
                    name: CONTAINER_NAME.into(),
                    image: Some(request.image.clone()),
                    command,
                    args,
                    env: (!env.is_empty()).then_some(env),
                    resources: Some(self.resource_requirements()),
                    security_context: Some(SecurityContext {
                        allow_privilege_escalation: Some(false),
                        privileged: Some(false),
                        read_only_root_filesystem: request
                            .read_only_root_filesystem
                            .then_some(true),
                        capabilities: Some(Capabilities {
                            drop: Some(vec!["ALL".into()]),
                            add: None,
                        }),
                        ..SecurityContext::default()
                    }),
                    volume_mounts: (!volume_mounts.is_empty()).then_some(volume_mounts),
                    ..Container::default()
                }],
                volumes: (!volumes.is_empty()).then_some(volumes),
                ..PodSpec::default()
            }),
            status: None,
        };
        network::annotate(&mut pod, &self.network);
        if self.network.is_restricted() {
            network::add_gate(&mut pod);
        }
        pod
    }

    /// The distinct volumes this spec mounts, in name order.
    pub fn volume_names(&self) -> Vec<&str> {
        let names: std::collections::BTreeSet<&str> = self
            .request
            .volume_mounts
            .values()
            .map(|mount| mount.volume.as_str())
            .collect();
        names.into_iter().collect()
    }

    fn resource_requirements(&self) -> ResourceRequirements {
        let request = &self.request;
        let quantity = |text: &str| Quantity(text.to_owned());
        let (cpu_request, cpu_limit) = match &request.resources.cpu {
            Some(cpu) => (cpu.as_str(), cpu.as_str()),
            None => (DEFAULT_CPU_REQUEST, DEFAULT_CPU_LIMIT),
        };
        let (memory_request, memory_limit) = match &request.resources.memory {
            Some(memory) => (memory.as_str(), memory.as_str()),
            None => (DEFAULT_MEMORY_REQUEST, DEFAULT_MEMORY_LIMIT),
        };
        let (disk_request, disk_limit) = match &request.resources.disk {
            Some(disk) => (disk.as_str(), disk.as_str()),
            None => (DEFAULT_DISK_REQUEST, DEFAULT_DISK_LIMIT),
        };
        ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), quantity(cpu_request)),
                ("memory".into(), quantity(memory_request)),
                (EPHEMERAL_STORAGE.into(), quantity(disk_request)),
            ])),
            limits: Some(BTreeMap::from([
                ("cpu".into(), quantity(cpu_limit)),
                ("memory".into(), quantity(memory_limit)),
                (EPHEMERAL_STORAGE.into(), quantity(disk_limit)),
            ])),
            claims: None,
        }
    }
}

/// The disk limit (`ephemeral-storage`) of a sandbox's pod, in bytes.
pub(crate) fn disk_limit(pod: &Pod) -> Option<u64> {
    let container = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == CONTAINER_NAME)?;
    let limit = container
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get(EPHEMERAL_STORAGE)?;
    let bytes = kube_quantity::ParsedQuantity::try_from(limit)
        .ok()?
        .to_bytes_f64()?;
    (bytes >= 0.0).then_some(bytes as u64)
}

/// Why a mount path (split into its parts) is refused, if it is: the root
/// would hide the image, and the kernel's and runtime's own filesystems
/// (`/proc`, `/sys`, and `/dev` itself) cannot be replaced by a volume.
fn reserved_mount_path(parts: &[&str]) -> Option<&'static str> {
    match parts {
        [] => Some("mount path must not be / (it would hide the whole image)"),
        ["proc" | "sys", ..] | ["dev"] => {
            Some("mount path must not be /dev, or /proc or /sys or a path under them")
        }
        _ => None,
    }
}

fn no_nul(field: &str, items: &[String]) -> Result<()> {
    if items.iter().any(|item| item.contains('\0')) {
        return Err(Error::invalid(field, "must not contain NUL bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{MANAGED_BY, MANAGED_BY_LABEL};

    /// The spec of a request that must pass the checks.
    fn valid(request: SandboxRequest) -> SandboxSpec {
        SandboxSpec::try_from(request).unwrap()
    }

    fn field_of(request: SandboxRequest) -> String {
        match SandboxSpec::try_from(request) {
            Err(Error::InvalidSpec { field, .. }) => field,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn reserved_mount_paths_and_huge_ttls_are_refused_before_any_request() {
        let base = SandboxRequest::new("busybox:1.36");
        let mount = |path: &str| SandboxRequest {
            volume_mounts: BTreeMap::from([(path.to_owned(), "vol".parse().unwrap())]),
            ..base.clone()
        };
        for path in [
            "/",
            "//",
            "/proc",
            "/proc/",
            "/./proc/sys",
            "/sys/fs",
            "/dev",
            "/dev/",
        ] {
            let err = SandboxSpec::try_from(mount(path)).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidSpec { field, .. } if field == &format!("volume_mounts[{path:?}]")),
                "{path}: {err}"
            );
        }
        for path in ["/data", "/dev/shm", "/process", "/system"] {
            valid(mount(path));
        }
        for ttl in [0, i64::from(i32::MAX) + 1, 1 << 40] {
            let err = SandboxSpec::try_from(SandboxRequest {
                ttl_seconds: Ttl::Seconds(ttl),
                ..base.clone()
            })
            .unwrap_err();
            assert!(matches!(err, Error::InvalidSpec { ref field, .. } if field == "ttl_seconds"));
        }
        valid(SandboxRequest {
            ttl_seconds: Ttl::Seconds(i64::from(i32::MAX)),
            ..base.clone()
        });
    }

    #[test]
    fn a_lifetime_not_given_is_the_default_and_none_only_when_asked() {
        let deadline = |ttl, default| {
            valid(SandboxRequest {
                ttl_seconds: ttl,
                ..SandboxRequest::new("busybox:1.36")
            })
            .with_default_ttl(default)
            .to_pod("sb")
            .spec
            .unwrap()
            .active_deadline_seconds
        };
        assert_eq!(deadline(Ttl::Default, Some(600)), Some(600));
        assert_eq!(deadline(Ttl::Default, None), None);
        assert_eq!(deadline(Ttl::Unlimited, Some(600)), None);
        assert_eq!(deadline(Ttl::Seconds(30), None), Some(30));
        let unresolved = valid(SandboxRequest::new("busybox:1.36")).to_pod("sb");
        assert_eq!(
            unresolved.spec.unwrap().active_deadline_seconds,
            Some(DEFAULT_TTL_SECONDS)
        );
        assert_eq!(Ttl::parse("--ttl", "none").unwrap(), Ttl::Unlimited);
        assert_eq!(Ttl::parse("--ttl", " 90 ").unwrap(), Ttl::Seconds(90));
        for text in ["0", "-5", "2147483648", "soon", ""] {
            assert!(
                matches!(Ttl::parse("--ttl", text), Err(Error::InvalidSpec { ref field, .. }) if field == "--ttl"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn every_field_is_validated_with_its_name() {
        let base = SandboxRequest::new("busybox:1.36");
        valid(base.clone());
        let cases: Vec<(SandboxRequest, &str)> = vec![
            (SandboxRequest::new(""), "image"),
            (SandboxRequest::new("a b"), "image"),
            (
                SandboxRequest {
                    name: Some("Bad_Name".into()),
                    ..base.clone()
                },
                "name",
            ),
            (
                SandboxRequest {
                    command: Some(vec![]),
                    ..base.clone()
                },
                "command",
            ),
            (
                SandboxRequest {
                    args: Some(vec!["a\0".into()]),
                    ..base.clone()
                },
                "args",
            ),
            (
                SandboxRequest {
                    env: BTreeMap::from([("A=B".into(), "x".into())]),
                    ..base.clone()
                },
                "env[\"A=B\"]",
            ),
            (
                SandboxRequest {
                    env: BTreeMap::from([("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into())]),
                    ..base.clone()
                },
                "env[\"KUBERNETES_SERVICE_HOST\"]",
            ),
            (
                SandboxRequest {
                    tags: BTreeMap::from([("team".into(), "a b".into())]),
                    ..base.clone()
                },
                "tags[\"team\"]",
            ),
            (
                SandboxRequest {
                    volume_mounts: BTreeMap::from([("data".into(), "vol".parse().unwrap())]),
                    ..base.clone()
                },
                "volume_mounts[\"data\"]",
            ),
            (
                SandboxRequest {
                    volume_mounts: BTreeMap::from([(
                        "/data".into(),
                        Mount {
                            volume: "Bad_Name".into(),
                            read_only: false,
                        },
                    )]),
                    ..base.clone()
                },
                "volume_mounts[\"/data\"]",
            ),
            (
                SandboxRequest {
                    resources: Resources {
                        cpu: Some("lots".into()),
                        ..Resources::default()
                    },
                    ..base.clone()
                },
                "resources.cpu",
            ),
            (
                SandboxRequest {
                    resources: Resources {
                        memory: Some("0".into()),
                        ..Resources::default()
                    },
                    ..base.clone()
                },
                "resources.memory",
            ),
            (
                SandboxRequest {
                    resources: Resources {
                        disk: Some("2 GB".into()),
                        ..Resources::default()
                    },
                    ..base.clone()
                },
                "resources.disk",
            ),
            (
                SandboxRequest {
                    ttl_seconds: Ttl::Seconds(0),
                    ..base.clone()
                },
                "ttl_seconds",
            ),
        ];
        for (request, field) in cases {
            assert_eq!(field_of(request.clone()), field, "{request:?}");
        }
    }

    #[test]
    fn pod_carries_every_hardening_field() {
        let pod = valid(SandboxRequest::new("busybox:1.36")).to_pod("sb");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.enable_service_links, Some(false));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            spec.termination_grace_period_seconds,
            Some(TERMINATION_GRACE_SECONDS)
        );
        let seccomp = spec.security_context.unwrap().seccomp_profile.unwrap();
        assert_eq!(seccomp.type_, "RuntimeDefault");
        let container = &spec.containers[0];
        assert_eq!(container.name, CONTAINER_NAME);
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.privileged, Some(false));
        assert_eq!(
            security.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_owned()][..])
        );
        let limits = container
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap();
        assert_eq!(limits["cpu"].0, DEFAULT_CPU_LIMIT);
        assert_eq!(limits["memory"].0, DEFAULT_MEMORY_LIMIT);
        assert_eq!(pod.metadata.labels.unwrap()[MANAGED_BY_LABEL], MANAGED_BY);
    }

    #[test]
    fn pod_maps_every_spec_field() {
        let spec = valid(SandboxRequest {
            image: "python:3.11-slim".into(),
            name: Some("job".into()),
            command: Some(vec!["python3".into()]),
            args: Some(vec!["-c".into(), "print(1)".into()]),
            env: BTreeMap::from([("MODE".into(), "fast".into())]),
            tags: BTreeMap::from([("team".into(), "ml".into())]),
            volume_mounts: BTreeMap::from([
                ("/data".into(), "vol".parse().unwrap()),
                ("/cache".into(), "vol:ro".parse().unwrap()),
            ]),
            resources: Resources {
                cpu: Some("500m".into()),
                memory: Some("256Mi".into()),
                disk: Some("4Gi".into()),
            },
            ttl_seconds: Ttl::Seconds(60),
            network: Some(NetworkMode::Unrestricted),
            ..SandboxRequest::default()
        });
        let pod = spec.to_pod("job");
        assert_eq!(
            pod.metadata.labels.as_ref().unwrap()["tags.sandlot.dev/team"],
            "ml"
        );
        assert_eq!(
            pod.metadata.annotations.as_ref().unwrap()[TTL_ANNOTATION],
            "60"
        );
        let pod_spec = pod.spec.unwrap();
        assert_eq!(pod_spec.active_deadline_seconds, Some(60));
        assert_eq!(
            pod_spec.volumes.as_ref().unwrap().len(),
            1,
            "one volume entry per distinct volume"
        );
        let container = &pod_spec.containers[0];
        assert_eq!(
            container.command.as_deref(),
            Some(&["python3".to_owned()][..])
        );
        assert_eq!(container.args.as_ref().unwrap().len(), 2);
        assert_eq!(container.env.as_ref().unwrap()[0].name, "MODE");
        let mounts = container.volume_mounts.as_ref().unwrap();
        assert_eq!(mounts.len(), 2);
        assert!(mounts.iter().all(|m| m.name == "vol"));
        assert_eq!(
            mounts
                .iter()
                .find(|m| m.mount_path == "/cache")
                .unwrap()
                .read_only,
            Some(true)
        );
        assert_eq!(
            mounts
                .iter()
                .find(|m| m.mount_path == "/data")
                .unwrap()
                .read_only,
            None
        );
        let resources = container.resources.as_ref().unwrap();
        assert_eq!(resources.requests.as_ref().unwrap()["cpu"].0, "500m");
        assert_eq!(resources.limits.as_ref().unwrap()["memory"].0, "256Mi");
        assert_eq!(
            resources.requests.as_ref().unwrap()["ephemeral-storage"].0,
            "4Gi"
        );
        assert_eq!(
            resources.limits.as_ref().unwrap()["ephemeral-storage"].0,
            "4Gi"
        );
    }

    #[test]
    fn every_sandbox_has_a_disk_limit_and_reserves_no_disk_by_default() {
        let pod = valid(SandboxRequest::new("busybox:1.36")).to_pod("sb");
        let resources = pod.spec.unwrap().containers[0].resources.clone().unwrap();
        assert_eq!(
            resources.limits.unwrap()["ephemeral-storage"].0,
            DEFAULT_DISK_LIMIT
        );
        // Kubernetes makes a missing request equal to the limit: "0" is written.
        assert_eq!(
            resources.requests.unwrap()["ephemeral-storage"].0,
            DEFAULT_DISK_REQUEST
        );
    }

    #[test]
    fn the_disk_limit_is_read_back_in_bytes() {
        let asked = |disk: Option<&str>| {
            let mut request = SandboxRequest::new("busybox:1.36");
            request.resources.disk = disk.map(str::to_owned);
            disk_limit(&valid(request).to_pod("sb"))
        };
        assert_eq!(asked(None), Some(2 << 30));
        assert_eq!(asked(Some("4Gi")), Some(4 << 30));
        assert_eq!(asked(Some("1.5G")), Some(1_500_000_000));
        assert_eq!(disk_limit(&Pod::default()), None);
    }

    #[test]
    fn opt_in_hardening_reaches_the_pod() {
        let spec = valid(SandboxRequest {
            run_as_user: Some(1000),
            read_only_root_filesystem: true,
            runtime_class: Some("gvisor".into()),
            ..SandboxRequest::new("busybox:1.36")
        });
        let pod_spec = spec.to_pod("sb").spec.unwrap();
        assert_eq!(pod_spec.runtime_class_name.as_deref(), Some("gvisor"));
        let pod_security = pod_spec.security_context.unwrap();
        assert_eq!(pod_security.run_as_user, Some(1000));
        assert_eq!(pod_security.run_as_group, Some(1000));
        assert_eq!(pod_security.fs_group, Some(1000));
        assert_eq!(pod_security.run_as_non_root, Some(true));
        let container = &pod_spec.containers[0];
        assert_eq!(
            container
                .security_context
                .as_ref()
                .unwrap()
                .read_only_root_filesystem,
            Some(true)
        );
        let mounts = container.volume_mounts.as_ref().unwrap();
        assert!(
            mounts.iter().any(|m| m.mount_path == "/tmp"),
            "read-only sandboxes keep a writable /tmp"
        );
        let defaults = valid(SandboxRequest::new("busybox:1.36"))
            .to_pod("sb")
            .spec
            .unwrap();
        assert_eq!(
            defaults.security_context.unwrap().run_as_user,
            None,
            "the image's user unless asked"
        );
    }

    #[test]
    fn no_command_means_an_idle_sandbox() {
        let pod = valid(SandboxRequest {
            network: Some(NetworkMode::Unrestricted),
            ..SandboxRequest::new("busybox:1.36")
        })
        .to_pod("idle");
        let command = pod.spec.unwrap().containers[0].command.clone().unwrap();
        assert_eq!(command[0], "/bin/sh");
        let with_args = valid(SandboxRequest {
            args: Some(vec!["x".into()]),
            ..SandboxRequest::new("img")
        })
        .to_pod("a");
        assert_eq!(
            with_args.spec.unwrap().containers[0].command,
            None,
            "args alone go to the entrypoint"
        );
    }
}
