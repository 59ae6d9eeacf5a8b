//! Network containment: which destinations a sandbox may open connections
//! to, written as one standard `networking.k8s.io/v1` NetworkPolicy owned by
//! the sandbox's pod, and the gate that holds the workload until that policy
//! is in force.
//!
//! Every restricted network denies all ingress (exec, logs and port-forward go
//! through the API server, not to the pod) and egress except what its mode
//! allows. The policy selects exactly one pod, by the create's random token,
//! and is deleted with the pod by Kubernetes' garbage collector.
//!
//! The gate (`gate/gate.rs`, built by `build.rs`) runs with the sandbox's own
//! image from a ConfigMap mounted read-only, as the sandbox container's
//! entrypoint (or an init container): it lets the workload start only once a
//! connection to the API server is denied, which every restricted mode
//! guarantees, and execs wait for it. So the workload's first packet is subject
//! to the policy even on engines that program a new pod's rules only after it
//! runs.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{Container, Pod, Service, VolumeMount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions};
use serde::Serialize;

use crate::client::Client;
use crate::error::{Error, ObjectKind, Result, api_status};
use crate::labels::{self, CONTAINER_NAME};
use crate::program::Program;
use crate::retry::retry;
use crate::validate;

/// Which destinations a sandbox may open connections to. Displayed and parsed
/// by its lowercase name ("internet").
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    serde::Deserialize,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum NetworkMode {
    /// Public addresses only, plus the allowlist and the cluster's DNS. Denied:
    /// private, shared, link-local (cloud metadata), loopback and reserved IPv4
    /// ranges, which hold the cluster's pods, services and nodes, and the API
    /// server's addresses wherever they are.
    #[default]
    Internet,
    /// No connection out at all, DNS included.
    None,
    /// Only the allowlist, plus the cluster's DNS.
    Allowlist,
    /// No NetworkPolicy: whatever the cluster lets any pod reach. For clusters
    /// that enforce no NetworkPolicy, and for trusted code.
    Unrestricted,
}

impl NetworkMode {
    /// The lowercase name users see ("internet").
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::str::FromStr for NetworkMode {
    type Err = Error;

    /// Parses the lowercase name; the error names the field `network`.
    fn from_str(text: &str) -> Result<Self> {
        validate::one_of("network", text)
    }
}

/// One destination of an allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressRule {
    /// An address block, every port or one port (TCP and UDP).
    Cidr { cidr: String, port: Option<u16> },
    /// The pods behind an in-cluster Service, on its target ports: the policy
    /// follows the Service's selector as it was at create time.
    Service { namespace: String, name: String },
}

impl std::fmt::Display for EgressRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EgressRule::Cidr { cidr, port: None } => write!(f, "{cidr}"),
            EgressRule::Cidr {
                cidr,
                port: Some(port),
            } if cidr.contains(':') => write!(f, "[{cidr}]:{port}"),
            EgressRule::Cidr {
                cidr,
                port: Some(port),
            } => write!(f, "{cidr}:{port}"),
            EgressRule::Service { namespace, name } => write!(f, "{namespace}/{name}"),
        }
    }
}

impl EgressRule {
    /// Parses one allowlist entry: `CIDR`, `CIDR:PORT`, a bare address (one
    /// host), or `namespace/name` of a Service. The error names `field`.
    pub fn parse(field: &str, text: &str) -> Result<EgressRule> {
        if let Some(rule) = parse_cidr(field, text)? {
            return Ok(rule);
        }
        if let Some((namespace, name)) = text.split_once('/')
            && is_dns_label(namespace)
            && is_dns_label(name)
        {
            return Ok(EgressRule::Service {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            });
        }
        let rule = if text.contains('.') && !text.contains('/') {
            format!(
                "{text:?} looks like a host name: a NetworkPolicy matches addresses, not names, \
                 and resolving the name once at create would not follow it; give the addresses \
                 as CIDRs (\"203.0.113.0/24\", \"198.51.100.7/32:443\") or an in-cluster Service \
                 as \"namespace/name\""
            )
        } else {
            format!(
                "{text:?} is neither a CIDR with an optional port (\"203.0.113.0/24\", \
                 \"198.51.100.7/32:443\") nor an in-cluster Service as \"namespace/name\""
            )
        };
        Err(Error::invalid(field, rule))
    }
}

/// A CIDR rule, `None` if `text` does not start like an address at all.
fn parse_cidr(field: &str, text: &str) -> Result<Option<EgressRule>> {
    let looks_numeric = text.starts_with(|c: char| c.is_ascii_digit()) || text.starts_with('[');
    if !looks_numeric || text.contains(char::is_whitespace) {
        return Ok(None);
    }
    let invalid = |rule: String| Err(Error::invalid(field, rule));
    // "[v6]:port" or "[v6/len]:port" brackets an IPv6 block that has a port.
    let (block, port) = if let Some(rest) = text.strip_prefix('[') {
        match rest.split_once(']') {
            Some((block, "")) => (block, None),
            Some((block, port)) if port.starts_with(':') => (block, Some(&port[1..])),
            _ => return invalid(format!("{text:?}: expected \"[IPv6/len]:port\"")),
        }
    } else if text.matches(':').count() == 1 {
        let (block, port) = text.split_once(':').expect("one colon");
        (block, Some(port))
    } else {
        (text, None)
    };
    let port = match port {
        None => None,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => Some(port),
            _ => {
                return invalid(format!(
                    "{text:?}: port {port:?} is not between 1 and 65535"
                ));
            }
        },
    };
    let (address, prefix) = match block.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (block, None),
    };
    let Ok(address) = address.parse::<IpAddr>() else {
        if text.contains('.')
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || ".:/".contains(c))
        {
            return invalid(format!("{text:?}: {address:?} is not an IP address"));
        }
        return Ok(None);
    };
    let bits = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => bits,
        Some(prefix) => match prefix.parse::<u32>() {
            Ok(prefix) if prefix <= bits => prefix,
            _ => {
                return invalid(format!(
                    "{text:?}: prefix length {prefix:?} is not between 0 and {bits}"
                ));
            }
        },
    };
    let network = masked(address, prefix);
    if network != address {
        return invalid(format!(
            "{text:?} has bits set beyond its /{prefix} prefix; the block is {network}/{prefix}"
        ));
    }
    Ok(Some(EgressRule::Cidr {
        cidr: format!("{address}/{prefix}"),
        port,
    }))
}

/// `address` with every bit after the first `prefix` cleared.
fn masked(address: IpAddr, prefix: u32) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// A sandbox's network: its mode and, for `internet` and `allowlist`, the
/// destinations allowed beyond (or instead of) the mode's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    pub mode: NetworkMode,
    pub allow: Vec<EgressRule>,
}

impl Network {
    /// Refuses environment variables that the gate of a restricted network
    /// reads from the kubelet (see [`GATE_PROBE_ENV`]).
    pub(crate) fn check_env(&self, env: &BTreeMap<String, String>) -> Result<()> {
        match GATE_PROBE_ENV.iter().find(|key| env.contains_key(**key)) {
            Some(key) if self.is_restricted() => Err(Error::invalid(
                format!("env[{key:?}]"),
                format!(
                    "is set by Kubernetes and read by the network gate; it may be set only with \
                     network \"unrestricted\" (network is {:?})",
                    self.mode.as_str()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The network a create asks for: `mode` if given, else `allowlist` when
    /// `allow_egress` names destinations and `internet` when it does not.
    /// `none` and `unrestricted` take no allowlist.
    pub fn from_request(mode: Option<NetworkMode>, allow_egress: &[String]) -> Result<Network> {
        let allow = allow_egress
            .iter()
            .enumerate()
            .map(|(i, text)| EgressRule::parse(&format!("allow_egress[{i}]"), text))
            .collect::<Result<Vec<_>>>()?;
        let mode = mode.unwrap_or(if allow.is_empty() {
            NetworkMode::Internet
        } else {
            NetworkMode::Allowlist
        });
        if !allow.is_empty() && matches!(mode, NetworkMode::None | NetworkMode::Unrestricted) {
            return Err(Error::invalid(
                "allow_egress",
                format!(
                    "network {mode:?} takes no allowlist; use network \"allowlist\" (only these \
                     destinations) or \"internet\" (public addresses and these)",
                    mode = mode.as_str()
                ),
            ));
        }
        Ok(Network { mode, allow })
    }

    /// True unless the mode is `unrestricted`: the sandbox gets a policy and the gate.
    pub fn is_restricted(&self) -> bool {
        self.mode != NetworkMode::Unrestricted
    }

    /// The allowlist as its entries' text, joined by commas (the annotation's value).
    fn allow_text(&self) -> String {
        let texts: Vec<String> = self.allow.iter().map(ToString::to_string).collect();
        texts.join(",")
    }
}

/// Annotation recording a sandbox's network mode; a pod without it has no policy.
pub(crate) const NETWORK_ANNOTATION: &str = "sandlot.dev/network";
/// Annotation recording the allowlist, entries joined by commas.
pub(crate) const ALLOW_EGRESS_ANNOTATION: &str = "sandlot.dev/allow-egress";
/// Label selecting the one pod a sandbox's policy applies to: the create's token.
pub(crate) const POLICY_LABEL: &str = "sandlot.dev/create-token";
/// The name of the gate's init container.
pub(crate) const GATE_CONTAINER: &str = "network-gate";
/// Seconds the gate waits for the policy to hold before failing the sandbox.
pub const GATE_DEADLINE_SECONDS: u32 = 60;
const GATE_VOLUME: &str = "sandlot-network-gate";
const GATE_DIR: &str = "/.sandlot-network-gate";
const GATE_KEY: &str = "gate";
/// Where the gate finds the API server it probes: set by the kubelet, never
/// by a request (a sandbox's own value would point the probe at anything
/// that refuses, and the workload would start before its policy holds).
const GATE_PROBE_ENV: [&str; 2] = ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"];
/// How every message of the gate begins (see `gate/gate.rs`).
const GATE_MESSAGE_PREFIX: &str = "sandlot network gate:";

/// The gate program, built by `build.rs` (empty where no gate exists).
const GATE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sandlot-gate"));

/// IPv4 blocks `internet` never reaches: "this network", private (RFC 1918),
/// shared (RFC 6598), loopback, link-local (cloud metadata), IETF protocol
/// assignments, benchmarking, multicast and reserved; and Azure's WireServer,
/// a public address that serves the host's platform API to VMs and pods.
const NON_PUBLIC_V4: [&str; 12] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "168.63.129.16/32",
];

/// The gate as placed into sandboxes (see `program.rs`).
pub(crate) const GATE_PROGRAM: Program =
    Program::new("network gate", "sandlot-network-gate", GATE_KEY, GATE);

fn gate_config_map_name() -> String {
    GATE_PROGRAM.config_map_name()
}

/// Adds the gate to a sandbox pod, with the read-only, executable ConfigMap
/// volume it runs from.
///
/// A sandbox container with a command gets the gate as its entrypoint, which
/// becomes the command once the policy holds: the kubelet then starts one
/// container, not two in turn (it notices an init container's end only at
/// its next relist, about a second later, and the running workload another
/// relist after that). Its execs wait for the gate (see `sandbox/exec.rs`).
/// A container that keeps the image's entrypoint (args only) gets the gate
/// as an init container with its image, security context and resources (so
/// scheduling does not change).
pub(crate) fn add_gate(pod: &mut Pod) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let Some(sandbox) = labels::sandbox_container(&mut spec.containers) else {
        return;
    };
    let mount = VolumeMount {
        name: GATE_VOLUME.into(),
        mount_path: GATE_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let gate = [gate_path(), GATE_DEADLINE_SECONDS.to_string()];
    if let Some(command) = sandbox.command.take() {
        let wrapped = gate.into_iter().chain(["--".to_owned()]).chain(command);
        sandbox.command = Some(wrapped.collect());
        sandbox.volume_mounts.get_or_insert_default().push(mount);
    } else {
        let init = Container {
            name: GATE_CONTAINER.into(),
            image: sandbox.image.clone(),
            command: Some(gate.to_vec()),
            resources: sandbox.resources.clone(),
            security_context: sandbox.security_context.clone(),
            volume_mounts: Some(vec![mount]),
            ..Container::default()
        };
        spec.init_containers = Some(vec![init]);
    }
    spec.volumes
        .get_or_insert_default()
        .push(GATE_PROGRAM.volume(GATE_VOLUME));
}

/// Where the gate program is in a sandbox that has it.
fn gate_path() -> String {
    format!("{GATE_DIR}/{GATE_KEY}")
}

/// Whether the sandbox container's entrypoint is the gate, which becomes the
/// workload only once the policy holds.
pub(crate) fn gate_is_entrypoint(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == CONTAINER_NAME))
        .and_then(|c| c.command.as_ref()?.first())
        .is_some_and(|first| *first == gate_path())
}

/// Whether the pod's gate is this build's (its ConfigMap is named by the
/// gate's content), which says [`GATE_PASSED`]; a gate from an earlier build
/// only exits 0.
pub(crate) fn runs_this_gate(pod: &Pod) -> bool {
    let name = gate_config_map_name();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter(|v| v.name == GATE_VOLUME)
        .any(|v| v.config_map.as_ref().is_some_and(|c| c.name == name))
}

/// Whether a sandbox container that ended with `exit_code` and termination
/// message `message` was failed by the gate it ran as its entrypoint (the
/// policy never held, or the command could not be run) rather than by its
/// workload.
pub(crate) fn failed_by_gate(exit_code: i32, message: Option<&str>) -> bool {
    matches!(exit_code, 1 | 126 | 127)
        && message.is_some_and(|m| m.starts_with(GATE_MESSAGE_PREFIX))
}

/// What `gate --await` prints on stdout when the workload runs.
pub(crate) const GATE_PASSED: &[u8] = b"sandlot network gate: passed\n";

/// The exec that returns once a sandbox whose entrypoint is the gate runs its
/// workload: 0 then, with [`GATE_PASSED`] on stdout; non-zero if the policy
/// never held.
pub(crate) fn await_gate_command() -> Vec<String> {
    vec![gate_path(), "--await".into()]
}

/// Records the network on a new pod.
pub(crate) fn annotate(pod: &mut Pod, network: &Network) {
    let annotations = pod.metadata.annotations.get_or_insert_default();
    annotations.insert(NETWORK_ANNOTATION.into(), network.mode.as_str().into());
    if !network.allow.is_empty() {
        annotations.insert(ALLOW_EGRESS_ANNOTATION.into(), network.allow_text());
    }
}

/// Labels a new pod with its create's `token`, which its policy and the
/// Services exposing its ports select.
pub(crate) fn label_with_token(pod: &mut Pod, token: &str) {
    pod.metadata
        .labels
        .get_or_insert_default()
        .insert(POLICY_LABEL.into(), token.into());
}

/// The network recorded on a sandbox pod: `unrestricted` for a pod without
/// the record (made before sandlot wrote policies).
pub(crate) fn network_of(meta: &ObjectMeta) -> Network {
    let mode = labels::annotation(meta, NETWORK_ANNOTATION)
        .and_then(|mode| mode.parse().ok())
        .unwrap_or(NetworkMode::Unrestricted);
    let allow = labels::annotation(meta, ALLOW_EGRESS_ANNOTATION)
        .map(|text| {
            text.split(',')
                .filter_map(|entry| EgressRule::parse("allow_egress", entry).ok())
                .collect()
        })
        .unwrap_or_default();
    Network { mode, allow }
}

/// What the policy needs that only the cluster knows.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterFacts {
    /// The API server's own addresses (not its Service's), where readable.
    pub api_server: Vec<IpAddr>,
    /// Per Service rule of the allowlist, in order: its selector and target ports.
    pub services: Vec<(BTreeMap<String, String>, Vec<NetworkPolicyPort>)>,
}

/// The policy of sandbox `name` whose pod carries `token` and is `owner`.
pub(crate) fn policy(
    name: &str,
    token: &str,
    network: &Network,
    facts: &ClusterFacts,
    owner: OwnerReference,
) -> NetworkPolicy {
    let mut egress = Vec::new();
    if network.mode == NetworkMode::Internet {
        let mut except: Vec<String> = NON_PUBLIC_V4.iter().map(|&b| b.to_owned()).collect();
        except.extend(facts.api_server.iter().filter_map(|ip| match ip {
            IpAddr::V4(v4) if is_public(*v4) => Some(format!("{v4}/32")),
            _ => None,
        }));
        egress.push(NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: "0.0.0.0/0".into(),
                    except: Some(except),
                }),
                ..NetworkPolicyPeer::default()
            }]),
            ports: None,
        });
    }
    if matches!(network.mode, NetworkMode::Internet | NetworkMode::Allowlist) {
        egress.push(dns_rule());
        let mut services = facts.services.iter();
        for rule in &network.allow {
            egress.push(match rule {
                EgressRule::Cidr { cidr, port } => NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: cidr.clone(),
                            except: None,
                        }),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: port.map(|port| both_protocols(IntOrString::Int(i32::from(port)))),
                },
                EgressRule::Service { namespace, .. } => {
                    // `network_facts` read one entry per Service rule; without
                    // it, allow nothing rather than every pod and port.
                    let Some((selector, ports)) = services.next().cloned() else {
                        continue;
                    };
                    NetworkPolicyEgressRule {
                        to: Some(vec![NetworkPolicyPeer {
                            namespace_selector: Some(namespace_selector(namespace)),
                            pod_selector: Some(LabelSelector {
                                match_labels: Some(selector),
                                match_expressions: None,
                            }),
                            ip_block: None,
                        }]),
                        ports: Some(ports),
                    }
                }
            });
        }
    }
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels::managed_labels()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    POLICY_LABEL.to_owned(),
                    token.to_owned(),
                )])),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: None,
            egress: Some(egress),
        }),
    }
}

fn is_public(ip: Ipv4Addr) -> bool {
    let ip = IpAddr::V4(ip);
    !NON_PUBLIC_V4.iter().any(|block| {
        let (net, prefix) = block.split_once('/').expect("a CIDR");
        let prefix: u32 = prefix.parse().expect("a prefix");
        masked(ip, prefix) == net.parse::<IpAddr>().expect("an address")
    })
}

/// The cluster's DNS (kube-system pods labelled `k8s-app: kube-dns`, CoreDNS
/// included) on port 53.
fn dns_rule() -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(namespace_selector("kube-system")),
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("k8s-app".into(), "kube-dns".into())])),
                match_expressions: None,
            }),
            ip_block: None,
        }]),
        ports: Some(both_protocols(IntOrString::Int(53))),
    }
}

fn namespace_selector(namespace: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            "kubernetes.io/metadata.name".into(),
            namespace.into(),
        )])),
        match_expressions: None,
    }
}

fn both_protocols(port: IntOrString) -> Vec<NetworkPolicyPort> {
    ["TCP", "UDP"]
        .into_iter()
        .map(|protocol| NetworkPolicyPort {
            port: Some(port.clone()),
            protocol: Some(protocol.into()),
            end_port: None,
        })
        .collect()
}

/// The owner reference that ties a policy to its sandbox's pod.
pub(crate) fn owned_by(pod: &Pod) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

impl Client {
    /// What `network`'s policy needs from the cluster, read before the pod is
    /// made so that a missing Service fails the create with nothing made.
    pub(crate) async fn network_facts(&self, network: &Network) -> Result<ClusterFacts> {
        if !network.is_restricted() {
            return Ok(ClusterFacts::default());
        }
        if GATE.is_empty() {
            return Err(Error::invalid(
                "network",
                format!(
                    "this build of sandlot has no network gate for its platform, so network {:?} \
                     cannot be enforced; use network \"unrestricted\"",
                    network.mode.as_str()
                ),
            ));
        }
        self.ensure_program(&GATE_PROGRAM, self.gate_checked())
            .await?;
        let mut facts = ClusterFacts::default();
        if network.mode == NetworkMode::Internet {
            facts.api_server = self.api_server_addresses().await;
        }
        for rule in &network.allow {
            if let EgressRule::Service { namespace, name } = rule {
                facts
                    .services
                    .push(self.service_peer(namespace, name).await?);
            }
        }
        Ok(facts)
    }

    /// Creates the policy of a sandbox whose pod was just made. A policy of
    /// that name that sandlot made for an earlier pod (which the garbage
    /// collector has not removed yet) is replaced; anyone else's is a conflict.
    pub(crate) async fn create_network_policy(&self, policy: &NetworkPolicy) -> Result<()> {
        let policies: Api<NetworkPolicy> = Api::namespaced(self.kube().clone(), self.namespace());
        let name = policy.metadata.name.clone().unwrap_or_default();
        let owner_uid = |p: &NetworkPolicy| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.kind == "Pod")
                .map(|o| o.uid.clone())
        };
        let params = PostParams::default();
        for _ in 0..3 {
            match retry(|| policies.create(&params, policy)).await {
                Ok(_) => return Ok(()),
                Err(err) if api_status(&err).is_some_and(|s| s.code == 409) => {}
                Err(err) => return Err(self.api_error(err)),
            }
            let Some(existing) = retry(|| policies.get_opt(&name))
                .await
                .map_err(|err| self.api_error(err))?
            else {
                continue;
            };
            if owner_uid(&existing) == owner_uid(policy) {
                // An earlier try of this very create landed.
                return Ok(());
            }
            if !labels::is_managed(&existing.metadata) || owner_uid(&existing).is_none() {
                return Err(Error::Api {
                    status: 409,
                    reason: "Conflict".into(),
                    message: format!(
                        "the namespace has a NetworkPolicy {name:?} that sandlot did not make \
                         for a sandbox; name the sandbox differently"
                    ),
                });
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: existing.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match retry(|| policies.delete(&name, &params)).await {
                Ok(_) => {}
                Err(err) if api_status(&err).is_some_and(|s| matches!(s.code, 404 | 409)) => {}
                Err(err) => return Err(self.api_error(err)),
            }
        }
        Err(Error::Api {
            status: 409,
            reason: "Conflict".into(),
            message: format!("network policy {name:?} kept being replaced; try again"),
        })
    }

    /// The API server's own addresses, from the `kubernetes` Service's
    /// EndpointSlices in `default`, read once per client; none if they may
    /// not be read.
    async fn api_server_addresses(&self) -> Vec<IpAddr> {
        let read = self
            .api_server_ips()
            .get_or_try_init(|| async {
                let slices: Api<EndpointSlice> = Api::namespaced(self.kube().clone(), "default");
                let params = ListParams::default().labels("kubernetes.io/service-name=kubernetes");
                let list = match retry(|| slices.list(&params)).await {
                    Ok(list) => list,
                    // Not allowed (the documented RBAC does not grant it): a
                    // lasting answer, kept like a successful one.
                    Err(err) if api_status(&err).is_some_and(|s| matches!(s.code, 403 | 404)) => {
                        return Ok(Vec::new());
                    }
                    Err(err) => return Err(err),
                };
                Ok::<_, kube::Error>(
                    list.items
                        .iter()
                        .flat_map(|slice| slice.endpoints.iter())
                        .flat_map(|endpoint| endpoint.addresses.iter())
                        .filter_map(|address| address.parse().ok())
                        .collect(),
                )
            })
            .await;
        // The server failed: none this time, and the next create asks again.
        read.cloned().unwrap_or_default()
    }

    /// The selector and target ports of Service `namespace/name`.
    async fn service_peer(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(BTreeMap<String, String>, Vec<NetworkPolicyPort>)> {
        let services: Api<Service> = Api::namespaced(self.kube().clone(), namespace);
        let full_name = format!("{namespace}/{name}");
        let service = retry(|| services.get_opt(name))
            .await
            .map_err(|err| self.object_error(err, ObjectKind::Service, &full_name))?
            .ok_or_else(|| Error::NotFound {
                kind: ObjectKind::Service,
                name: full_name.clone(),
                namespace: namespace.to_owned(),
            })?;
        let spec = service.spec.unwrap_or_default();
        let selector = spec.selector.filter(|s| !s.is_empty()).ok_or_else(|| {
            Error::invalid(
                "allow_egress",
                format!(
                    "service {full_name:?} has no selector, so no pods to follow; allow its \
                     addresses as CIDRs instead"
                ),
            )
        })?;
        let ports = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|port| NetworkPolicyPort {
                port: Some(port.target_port.unwrap_or(IntOrString::Int(port.port))),
                protocol: Some(port.protocol.unwrap_or_else(|| "TCP".into())),
                end_port: None,
            })
            .collect::<Vec<_>>();
        if ports.is_empty() {
            return Err(Error::invalid(
                "allow_egress",
                format!(
                    "service {full_name:?} declares no ports, and a rule without ports would \
                     allow every port of its pods; give it its ports"
                ),
            ));
        }
        Ok((selector, ports))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EgressRule> {
        EgressRule::parse("allow_egress[0]", text)
    }

    fn rule_text(error: Error) -> String {
        match error {
            Error::InvalidSpec { field, rule } => {
                assert_eq!(field, "allow_egress[0]");
                rule
            }
            other => panic!("not an InvalidSpec: {other:?}"),
        }
    }

    #[test]
    fn allowlist_entries_parse_to_blocks_ports_and_services() {
        let cidr = |cidr: &str, port| EgressRule::Cidr {
            cidr: cidr.into(),
            port,
        };
        assert_eq!(
            parse("203.0.113.0/24").unwrap(),
            cidr("203.0.113.0/24", None)
        );
        assert_eq!(
            parse("198.51.100.7/32:443").unwrap(),
            cidr("198.51.100.7/32", Some(443))
        );
        assert_eq!(
            parse("198.51.100.7").unwrap(),
            cidr("198.51.100.7/32", None)
        );
        assert_eq!(
            parse("198.51.100.7:53").unwrap(),
            cidr("198.51.100.7/32", Some(53))
        );
        assert_eq!(parse("2001:db8::/32").unwrap(), cidr("2001:db8::/32", None));
        assert_eq!(
            parse("[2001:db8::1]:443").unwrap(),
            cidr("2001:db8::1/128", Some(443))
        );
        assert_eq!(
            parse("models/llm-server").unwrap(),
            EgressRule::Service {
                namespace: "models".into(),
                name: "llm-server".into()
            }
        );
        for text in [
            "203.0.113.0/24",
            "198.51.100.7/32:443",
            "[2001:db8::1/128]:443",
            "models/llm-server",
        ] {
            assert_eq!(parse(text).unwrap().to_string(), text, "round trip");
        }
    }

    #[test]
    fn bad_allowlist_entries_say_what_is_wrong() {
        let cases = [
            ("*.pypi.org", "host name"),
            ("pypi.org", "host name"),
            ("203.0.113.7/24", "the block is 203.0.113.0/24"),
            ("203.0.113.0/33", "prefix length"),
            ("203.0.113.0/24:0", "port \"0\""),
            ("203.0.113.0/24:70000", "port \"70000\""),
            ("300.1.2.3/32", "not an IP address"),
            ("Models/Server", "neither a CIDR"),
            ("", "neither a CIDR"),
            ("a/b/c", "neither a CIDR"),
        ];
        for (text, expected) in cases {
            let rule = rule_text(parse(text).unwrap_err());
            assert!(rule.contains(expected), "{text:?}: {rule}");
        }
    }

    #[test]
    fn the_mode_follows_the_allowlist_unless_given() {
        let allow = vec!["10.1.0.0/16".to_owned()];
        let mode = |m, a: &[String]| Network::from_request(m, a).map(|n| n.mode);
        assert_eq!(mode(None, &[]).unwrap(), NetworkMode::Internet);
        assert_eq!(mode(None, &allow).unwrap(), NetworkMode::Allowlist);
        assert_eq!(
            mode(Some(NetworkMode::Internet), &allow).unwrap(),
            NetworkMode::Internet
        );
        assert_eq!(
            mode(Some(NetworkMode::Allowlist), &[]).unwrap(),
            NetworkMode::Allowlist
        );
        for refused in [NetworkMode::None, NetworkMode::Unrestricted] {
            let err = mode(Some(refused), &allow).unwrap_err();
            assert!(matches!(err, Error::InvalidSpec { ref field, .. } if field == "allow_egress"));
        }
        let err = "open".parse::<NetworkMode>().unwrap_err();
        assert!(
            err.to_string()
                .contains("internet, none, allowlist, unrestricted"),
            "{err}"
        );
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: "sb".into(),
            uid: "uid-1".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }
    }

    fn egress_of(network: &Network, facts: &ClusterFacts) -> serde_json::Value {
        let policy = policy("sb", "tok", network, facts, owner());
        let value = serde_json::to_value(&policy).unwrap();
        assert_eq!(
            value["spec"]["podSelector"]["matchLabels"][POLICY_LABEL],
            "tok"
        );
        assert_eq!(
            value["spec"]["policyTypes"],
            serde_json::json!(["Ingress", "Egress"])
        );
        assert!(value["spec"].get("ingress").is_none(), "no ingress allowed");
        assert_eq!(value["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        value["spec"]["egress"].clone()
    }

    #[test]
    fn none_allows_nothing_and_allowlist_only_its_entries_and_dns() {
        let none = Network::from_request(Some(NetworkMode::None), &[]).unwrap();
        assert_eq!(
            egress_of(&none, &ClusterFacts::default()),
            serde_json::json!([])
        );

        let allow = ["198.51.100.7/32:443".to_owned(), "models/llm".to_owned()];
        let network = Network::from_request(None, &allow).unwrap();
        let facts = ClusterFacts {
            api_server: vec![],
            services: vec![(
                BTreeMap::from([("app".into(), "llm".into())]),
                both_protocols(IntOrString::String("http".into())),
            )],
        };
        let egress = egress_of(&network, &facts);
        assert_eq!(egress.as_array().unwrap().len(), 3, "{egress}");
        assert_eq!(egress[0]["ports"][0]["port"], 53, "DNS first");
        assert_eq!(egress[1]["to"][0]["ipBlock"]["cidr"], "198.51.100.7/32");
        assert_eq!(egress[1]["ports"][0]["port"], 443);
        let peer = &egress[2]["to"][0];
        assert_eq!(
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "models"
        );
        assert_eq!(peer["podSelector"]["matchLabels"]["app"], "llm");
        assert_eq!(egress[2]["ports"][0]["port"], "http");
    }

    #[test]
    fn internet_excludes_non_public_ranges_and_a_public_api_server() {
        let network = Network::default();
        let facts = ClusterFacts {
            api_server: vec!["34.1.2.3".parse().unwrap(), "10.0.0.5".parse().unwrap()],
            services: vec![],
        };
        let egress = egress_of(&network, &facts);
        let block = &egress[0]["to"][0]["ipBlock"];
        assert_eq!(block["cidr"], "0.0.0.0/0");
        let except: Vec<&str> = block["except"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for denied in [
            "10.0.0.0/8",
            "169.254.0.0/16",
            "172.16.0.0/12",
            "127.0.0.0/8",
            "34.1.2.3/32",
        ] {
            assert!(except.contains(&denied), "{denied} missing from {except:?}");
        }
        assert!(
            !except.contains(&"10.0.0.5/32"),
            "already inside 10.0.0.0/8"
        );
        assert_eq!(egress[1]["ports"][0]["port"], 53, "DNS");
    }

    #[test]
    fn the_record_on_the_pod_reads_back() {
        let network =
            Network::from_request(None, &["203.0.113.0/24".into(), "a/b".into()]).unwrap();
        let mut pod = Pod::default();
        annotate(&mut pod, &network);
        assert_eq!(network_of(&pod.metadata), network);
        assert_eq!(
            network_of(&ObjectMeta::default()).mode,
            NetworkMode::Unrestricted
        );
    }

    fn pod_of(request: crate::spec::SandboxRequest) -> Pod {
        crate::spec::SandboxSpec::try_from(request)
            .unwrap()
            .to_pod("sb")
    }

    #[test]
    fn the_gate_becomes_the_command_once_the_policy_holds() {
        let pod = pod_of(crate::spec::SandboxRequest {
            command: Some(vec!["python3".into(), "-c".into(), "print(1)".into()]),
            args: Some(vec!["x".into()]),
            ..crate::spec::SandboxRequest::new("img:1")
        });
        assert!(gate_is_entrypoint(&pod));
        assert!(runs_this_gate(&pod));
        // A pod made by an earlier build mounts that build's gate.
        let mut earlier = pod.clone();
        for volume in earlier.spec.as_mut().unwrap().volumes.iter_mut().flatten() {
            if let Some(config_map) = volume.config_map.as_mut() {
                config_map.name = "sandlot-network-gate-0000000000".into();
            }
        }
        assert!(!runs_this_gate(&earlier));
        let spec = pod.spec.unwrap();
        assert!(spec.init_containers.is_none());
        let sandbox = &spec.containers[0];
        assert_eq!(
            sandbox.command.as_deref().unwrap(),
            [&gate_path(), "60", "--", "python3", "-c", "print(1)"]
        );
        assert_eq!(
            sandbox.args.as_deref().unwrap(),
            ["x"],
            "args follow the command"
        );
        let mount = &sandbox.volume_mounts.as_ref().unwrap()[0];
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            (GATE_DIR, Some(true))
        );
        let volume = spec.volumes.unwrap().pop().unwrap();
        assert_eq!(volume.config_map.unwrap().default_mode, Some(0o555));
        assert!(
            !GATE.is_empty() && GATE.len() < 64 * 1024,
            "{} bytes",
            GATE.len()
        );
        assert!(GATE.starts_with(b"\x7fELF"));
        assert!(
            GATE.windows(GATE_PASSED.len()).any(|w| w == GATE_PASSED),
            "the gate says what ready_for_exec waits for"
        );
    }

    #[test]
    fn an_image_entrypoint_gets_the_gate_as_an_init_container_with_its_image() {
        let pod = pod_of(crate::spec::SandboxRequest {
            args: Some(vec!["serve".into()]),
            ..crate::spec::SandboxRequest::new("img:1")
        });
        assert!(!gate_is_entrypoint(&pod));
        let spec = pod.spec.unwrap();
        let gate = &spec.init_containers.unwrap()[0];
        assert_eq!(gate.image.as_deref(), Some("img:1"));
        assert_eq!(gate.command.as_deref().unwrap(), [&gate_path(), "60"]);
        assert_eq!(gate.security_context, spec.containers[0].security_context);
        assert_eq!(gate.resources, spec.containers[0].resources);
        assert!(spec.containers[0].command.is_none());
    }

    #[test]
    fn an_unrestricted_sandbox_has_no_gate() {
        let pod = pod_of(crate::spec::SandboxRequest {
            network: Some(NetworkMode::Unrestricted),
            ..crate::spec::SandboxRequest::new("img:1")
        });
        assert!(!gate_is_entrypoint(&pod));
        assert!(pod.spec.unwrap().volumes.is_none());
    }

    #[test]
    fn only_the_gate_s_own_failures_are_launch_failures() {
        let said = Some("sandlot network gate: cannot run \"x\": not found");
        assert!(failed_by_gate(127, said));
        assert!(failed_by_gate(1, said));
        assert!(!failed_by_gate(2, said), "the gate never exits 2");
        assert!(!failed_by_gate(1, Some("Error")));
        assert!(!failed_by_gate(1, None));
    }
}
