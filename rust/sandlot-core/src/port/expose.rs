//! Exposing a port of a sandbox inside the cluster: a ClusterIP Service that
//! selects only that sandbox's pod (by its create's token label) and, where
//! the sandbox's network is restricted (every restricted network denies all
//! ingress), a NetworkPolicy that lets the named callers in on that port.
//! Both are owned by the pod, so they go with the sandbox's record.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};

use crate::client::Client;
use crate::error::{Error, ObjectKind, Result, api_status};
use crate::labels::{self, MANAGED_BY, MANAGED_BY_LABEL};
use crate::network::{self, POLICY_LABEL};
use crate::retry::retry;
use crate::status::SandboxStatus;
use crate::validate;

/// The sandbox whose port a Service or ingress policy serves (labels both).
const SANDBOX_LABEL: &str = "sandlot.dev/sandbox";
/// The port a Service or ingress policy serves (labels both).
const PORT_LABEL: &str = "sandlot.dev/port";
/// On a Service: the name of its ingress policy, if it has one.
const INGRESS_POLICY_ANNOTATION: &str = "sandlot.dev/ingress-policy";
/// The cluster DNS Services looked for, in `kube-system`.
const DNS_SERVICES: [&str; 2] = ["kube-dns", "coredns"];

/// What to expose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExposeRequest {
    /// The sandbox's port (the Service serves it on the same number).
    pub port: u16,
    /// The Service's name (a DNS-1035 label); `None`: `SANDBOX-PORT`.
    pub service: Option<String>,
    /// Who may connect where the sandbox's network is restricted: entries
    /// `NAMESPACE` (its pods) or `NAMESPACE/KEY=VALUE[,KEY=VALUE...]` (its pods
    /// with those labels). Sandlot's own pods (sandboxes, warm and helper pods)
    /// are never let in. `None`: the pods of the client's namespace.
    pub allow_from: Option<Vec<String>>,
}

/// A port of a sandbox exposed inside the cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExposedPort {
    /// The sandbox.
    pub sandbox: String,
    /// The port, in the sandbox and on the Service.
    pub port: u16,
    /// The Service's name.
    pub service: String,
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's cluster IP.
    pub cluster_ip: Option<String>,
    /// What callers in the cluster connect to: the Service's DNS name where the
    /// cluster runs DNS, else its cluster IP.
    pub host: String,
    /// `http://HOST:PORT`.
    pub url: String,
    /// Who may connect (see [`ExposeRequest::allow_from`]); empty for a
    /// sandbox whose network is unrestricted (no policy denies ingress).
    pub allow_from: Vec<String>,
}

/// One `allow_from` entry: a namespace and, optionally, pod labels.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Caller {
    namespace: String,
    labels: BTreeMap<String, String>,
}

impl Caller {
    fn parse(text: &str) -> Result<Caller> {
        let field = "allow_from";
        let (namespace, selector) = match text.split_once('/') {
            Some((namespace, selector)) => (namespace, Some(selector)),
            None => (text, None),
        };
        validate::object_name(field, namespace).map_err(|_| {
            Error::invalid(
                field,
                format!(
                    "{text:?}: expected NAMESPACE or NAMESPACE/KEY=VALUE[,KEY=VALUE...], \
                     with a namespace name before any '/'"
                ),
            )
        })?;
        let mut labels = BTreeMap::new();
        for pair in selector.into_iter().flat_map(|s| s.split(',')) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(Error::invalid(
                    field,
                    format!("{text:?}: {pair:?} is not a KEY=VALUE label"),
                ));
            };
            let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
            if !prefix.is_empty() {
                validate::dns_subdomain(field, prefix)?;
            }
            validate::label_part(field, name, false)?;
            validate::label_part(field, value, true)?;
            labels.insert(key.to_owned(), value.to_owned());
        }
        Ok(Caller {
            namespace: namespace.to_owned(),
            labels,
        })
    }

    /// The entry as `allow_from` takes it.
    fn text(&self) -> String {
        if self.labels.is_empty() {
            return self.namespace.clone();
        }
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{}/{}", self.namespace, labels.join(","))
    }

    /// The peer: pods of the namespace with the labels, none of sandlot's.
    fn peer(&self) -> NetworkPolicyPeer {
        NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "kubernetes.io/metadata.name".into(),
                    self.namespace.clone(),
                )])),
                match_expressions: None,
            }),
            pod_selector: Some(LabelSelector {
                match_labels: (!self.labels.is_empty()).then(|| self.labels.clone()),
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: MANAGED_BY_LABEL.into(),
                    operator: "NotIn".into(),
                    values: Some(vec![MANAGED_BY.into()]),
                }]),
            }),
            ip_block: None,
        }
    }
}

/// Checks a Service name: a DNS-1035 label (a letter first).
fn check_service_name(field: &str, name: &str) -> Result<()> {
    validate::object_name(field, name)?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(Error::invalid(
            field,
            format!("{name:?} must start with a letter (a Service name)"),
        ));
    }
    Ok(())
}

/// The default Service name of `port` of `sandbox`: `SANDBOX-PORT`, made a
/// valid Service name (a letter first, at most 63 characters).
fn default_service_name(sandbox: &str, port: u16) -> String {
    let suffix = format!("-{port}");
    let prefix = if sandbox.starts_with(|c: char| c.is_ascii_lowercase()) {
        ""
    } else {
        "s-"
    };
    let room = validate::MAX_NAME_LEN - suffix.len() - prefix.len();
    let stem = sandbox[..sandbox.len().min(room)].trim_end_matches('-');
    format!("{prefix}{stem}{suffix}")
}

/// The labels of the Service and the policy of `port` of `sandbox`.
fn port_labels(sandbox: &str, port: u16) -> BTreeMap<String, String> {
    let mut labels = labels::managed_labels();
    labels.insert(SANDBOX_LABEL.into(), sandbox.into());
    labels.insert(PORT_LABEL.into(), port.to_string());
    labels
}

fn selector_of(sandbox: &str, port: u16) -> String {
    port_labels(sandbox, port)
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The cluster's domain in a pod's `/etc/resolv.conf` text: the search
/// domain after `svc.` (`cluster.local`), if it names one.
fn cluster_domain(resolv_conf: &str) -> Option<String> {
    resolv_conf
        .lines()
        .filter_map(|line| line.strip_prefix("search"))
        .flat_map(str::split_whitespace)
        .find_map(|domain| domain.strip_prefix("svc."))
        .filter(|domain| !domain.is_empty())
        .map(str::to_owned)
}

/// The cluster IP of `service`, if it has one (not a headless Service).
fn cluster_ip_of(service: &Service) -> Option<String> {
    service
        .spec
        .as_ref()
        .and_then(|spec| spec.cluster_ip.clone())
        .filter(|ip| ip != "None")
}

/// Whether `service` belongs to `pod`'s sandbox and serves `port`.
fn serves(service: &Service, pod: &Pod, port: u16) -> bool {
    let owned = service
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| Some(&owner.uid) == pod.metadata.uid.as_ref());
    owned && labels::label(&service.metadata, PORT_LABEL) == Some(&port.to_string())
}

impl Client {
    /// Exposes a port of sandbox `name` inside the cluster (see the module's
    /// doc). Exposing a port again returns what is there; a Service of that
    /// name that is not this sandbox's is [`Error::NameConflict`]. A sandbox
    /// that ended is [`Error::NotRunning`]; one that has not started yet can be
    /// exposed. On failure, nothing made by the call is left.
    pub async fn expose_port(&self, name: &str, request: &ExposeRequest) -> Result<ExposedPort> {
        let port = request.port;
        let service_name = match &request.service {
            Some(service) => {
                check_service_name("name", service)?;
                service.clone()
            }
            None => default_service_name(name, port),
        };
        let callers = match &request.allow_from {
            Some(entries) => entries
                .iter()
                .map(|entry| Caller::parse(entry))
                .collect::<Result<Vec<_>>>()?,
            None => vec![Caller {
                namespace: self.namespace().to_owned(),
                labels: BTreeMap::new(),
            }],
        };
        let pod = self.sandbox_pod(name).await?;
        crate::sandbox::refuse_warm(name, &pod)?;
        let status = SandboxStatus::from_pod(&pod);
        if status.phase.is_terminal() {
            return Err(Error::NotRunning {
                name: name.to_owned(),
                phase: status.phase.to_string(),
            });
        }
        let Some(token) = labels::label(&pod.metadata, POLICY_LABEL).cloned() else {
            return Err(Error::invalid(
                "name",
                format!(
                    "sandbox {name:?} was made by an earlier sandlot without the label a \
                     Service selects it by; create it again to expose its ports"
                ),
            ));
        };
        let restricted = network::network_of(&pod.metadata).is_restricted();
        let policy_name = restricted.then(|| format!("{service_name}.ingress"));
        let owner = network::owned_by(&pod);

        let mut annotations = BTreeMap::new();
        if let Some(policy) = &policy_name {
            annotations.insert(INGRESS_POLICY_ANNOTATION.to_owned(), policy.clone());
        }
        let service = Service {
            metadata: ObjectMeta {
                name: Some(service_name.clone()),
                labels: Some(port_labels(name, port)),
                annotations: Some(annotations),
                owner_references: Some(vec![owner.clone()]),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".into()),
                selector: Some(BTreeMap::from([(POLICY_LABEL.to_owned(), token.clone())])),
                ports: Some(vec![ServicePort {
                    name: Some(format!("tcp-{port}")),
                    port: i32::from(port),
                    target_port: Some(IntOrString::Int(i32::from(port))),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            status: None,
        };
        let services: Api<Service> = Api::namespaced(self.kube().clone(), self.namespace());
        let (post, delete) = (PostParams::default(), DeleteParams::default());
        let (made, service) = match retry(|| services.create(&post, &service)).await {
            Ok(made) => (true, made),
            Err(err) if api_status(&err).is_some_and(|s| s.code == 409) => {
                let existing = retry(|| services.get(&service_name))
                    .await
                    .map_err(|err| self.object_error(err, ObjectKind::Service, &service_name))?;
                if !serves(&existing, &pod, port) {
                    return Err(Error::NameConflict {
                        kind: ObjectKind::Service,
                        name: service_name,
                        namespace: self.namespace().to_owned(),
                    });
                }
                (false, existing)
            }
            Err(err) => return Err(self.object_error(err, ObjectKind::Service, &service_name)),
        };
        if let Some(policy_name) = &policy_name {
            let policy = NetworkPolicy {
                metadata: ObjectMeta {
                    name: Some(policy_name.clone()),
                    labels: Some(port_labels(name, port)),
                    owner_references: Some(vec![owner]),
                    ..ObjectMeta::default()
                },
                spec: Some(NetworkPolicySpec {
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(POLICY_LABEL.to_owned(), token)])),
                        match_expressions: None,
                    }),
                    policy_types: Some(vec!["Ingress".into()]),
                    ingress: Some(vec![NetworkPolicyIngressRule {
                        from: Some(callers.iter().map(Caller::peer).collect()),
                        ports: Some(vec![NetworkPolicyPort {
                            port: Some(IntOrString::Int(i32::from(port))),
                            protocol: Some("TCP".into()),
                            end_port: None,
                        }]),
                    }]),
                    egress: None,
                }),
            };
            if !made {
                // Exposed before: the callers named now replace the earlier ones.
                self.delete_ingress_policy(policy_name).await?;
            }
            if let Err(err) = self.create_network_policy(&policy).await {
                if made {
                    let _ = retry(|| services.delete(&service_name, &delete)).await;
                }
                return Err(err);
            }
        }
        let cluster_ip = cluster_ip_of(&service);
        let host = self.host_of(&service).await;
        Ok(ExposedPort {
            sandbox: name.to_owned(),
            port,
            service: service_name,
            namespace: self.namespace().to_owned(),
            cluster_ip,
            url: format!("http://{host}:{port}"),
            host,
            allow_from: if restricted {
                callers.iter().map(Caller::text).collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Ends exposing `port` of sandbox `name`: deletes its Services and their
    /// ingress policies. Whether there was anything to delete.
    pub async fn unexpose_port(&self, name: &str, port: u16) -> Result<bool> {
        let services: Api<Service> = Api::namespaced(self.kube().clone(), self.namespace());
        let delete = DeleteParams::default();
        let mut removed = false;
        for service in self.services_of(name, port).await? {
            let service_name = service.metadata.name.clone().unwrap_or_default();
            if let Some(policy) = labels::annotation(&service.metadata, INGRESS_POLICY_ANNOTATION) {
                self.delete_ingress_policy(policy).await?;
            }
            match retry(|| services.delete(&service_name, &delete)).await {
                Ok(_) => removed = true,
                Err(err) if api_status(&err).is_some_and(|s| s.code == 404) => {}
                Err(err) => return Err(self.object_error(err, ObjectKind::Service, &service_name)),
            }
        }
        Ok(removed)
    }

    /// The in-cluster URL of `port` of sandbox `name`, which must be exposed
    /// ([`Error::NotFound`] of a Service otherwise).
    pub async fn sandbox_url(&self, name: &str, port: u16) -> Result<String> {
        let service = self
            .services_of(name, port)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::NotFound {
                kind: ObjectKind::Service,
                name: format!("for port {port} of sandbox {name} (expose it first)"),
                namespace: self.namespace().to_owned(),
            })?;
        Ok(format!("http://{}:{port}", self.host_of(&service).await))
    }

    /// What in-cluster callers connect to for `service`: its DNS name where
    /// the cluster runs DNS, else its cluster IP.
    async fn host_of(&self, service: &Service) -> String {
        let name = service.metadata.name.clone().unwrap_or_default();
        match self.cluster_domain().await {
            Some(domain) => format!("{name}.{}.svc.{domain}", self.namespace()),
            None => cluster_ip_of(service).unwrap_or(name),
        }
    }

    /// Deletes ingress policy `name`; one already gone is fine.
    async fn delete_ingress_policy(&self, name: &str) -> Result<()> {
        let policies: Api<NetworkPolicy> = Api::namespaced(self.kube().clone(), self.namespace());
        let delete = DeleteParams::default();
        match retry(|| policies.delete(name, &delete)).await {
            Ok(_) => Ok(()),
            Err(err) if api_status(&err).is_some_and(|s| s.code == 404) => Ok(()),
            Err(err) => Err(self.api_error(err)),
        }
    }

    /// The Services exposing `port` of sandbox `name`.
    async fn services_of(&self, name: &str, port: u16) -> Result<Vec<Service>> {
        let services: Api<Service> = Api::namespaced(self.kube().clone(), self.namespace());
        let params = ListParams::default().labels(&selector_of(name, port));
        retry(|| services.list(&params))
            .await
            .map(|list| list.items)
            .map_err(|err| self.api_error(err))
    }

    /// The cluster's DNS domain, if it runs DNS, decided once per client: from
    /// this pod's `/etc/resolv.conf` where the client runs in one, else
    /// `cluster.local` if `kube-system` has a DNS Service this client may read.
    async fn cluster_domain(&self) -> Option<String> {
        self.cluster_dns()
            .get_or_init(|| async {
                let resolv = tokio::fs::read_to_string("/etc/resolv.conf").await;
                if let Some(domain) = resolv.ok().as_deref().and_then(cluster_domain) {
                    return Some(domain);
                }
                let system: Api<Service> = Api::namespaced(self.kube().clone(), "kube-system");
                for name in DNS_SERVICES {
                    if let Ok(Some(_)) = retry(|| system.get_opt(name)).await {
                        return Some("cluster.local".to_owned());
                    }
                }
                None
            })
            .await
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_parse_to_namespaces_and_labels_and_never_let_sandlot_pods_in() {
        let caller = Caller::parse("apps/app=web,tier=front").unwrap();
        assert_eq!(caller.namespace, "apps");
        assert_eq!(caller.text(), "apps/app=web,tier=front");
        let peer = serde_json::to_value(caller.peer()).unwrap();
        assert_eq!(
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "apps"
        );
        assert_eq!(peer["podSelector"]["matchLabels"]["app"], "web");
        assert_eq!(
            peer["podSelector"]["matchExpressions"][0],
            serde_json::json!({"key": MANAGED_BY_LABEL, "operator": "NotIn", "values": [MANAGED_BY]})
        );
        let whole = Caller::parse("ci").unwrap();
        assert_eq!(whole.text(), "ci");
        assert!(
            serde_json::to_value(whole.peer()).unwrap()["podSelector"]
                .get("matchLabels")
                .is_none()
        );
        for bad in [
            "",
            "Apps",
            "apps/",
            "apps/app",
            "apps/=x",
            "apps/a=b c",
            "a/b=c=d",
        ] {
            let err = Caller::parse(bad).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidSpec { field, .. } if field == "allow_from"),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn default_service_names_are_valid_service_names() {
        assert_eq!(default_service_name("web", 8000), "web-8000");
        assert_eq!(default_service_name("1st", 80), "s-1st-80");
        let long = "a".repeat(63);
        let name = default_service_name(&long, 65535);
        assert_eq!(name.len(), 63);
        assert!(check_service_name("name", &name).is_ok());
        let dashed = format!("{}-b", "a".repeat(57));
        assert!(check_service_name("name", &default_service_name(&dashed, 8000)).is_ok());
        assert!(check_service_name("name", "9lives").is_err());
        assert!(check_service_name("name", "Web").is_err());
    }

    #[test]
    fn the_cluster_domain_comes_from_the_svc_search_domain() {
        let pod = "search apps.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n";
        assert_eq!(cluster_domain(pod).as_deref(), Some("cluster.local"));
        assert_eq!(
            cluster_domain("nameserver 1.1.1.1\nsearch example.com\n"),
            None
        );
        assert_eq!(cluster_domain(""), None);
    }
}
