//! User namespaces (`hostUsers: false`): whether the cluster's nodes can run
//! them, read once per client, and which sandboxes get one.
//!
//! In a user namespace, uid 0 inside the sandbox is an unprivileged uid of the
//! node (the kubelet gives each pod its own 65536 ids), so a process that
//! escapes the container is nobody on the node. The kubelet refuses such a pod
//! on a node whose runtime does not support it, so sandlot asks for one by
//! default only where every node says it does.

use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

use crate::client::Client;
use crate::error::{Error, Result, api_status};
use crate::retry::retry;
use crate::spec::SandboxSpec;

/// The runtime handler a pod without a RuntimeClass runs under, as the
/// kubelet names it in `.status.runtimeHandlers`.
const DEFAULT_HANDLER: &str = "";

/// Whether the cluster's nodes run user-namespaced pods on their default runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeSupport {
    /// Every schedulable node reports support.
    Supported,
    /// Some node does not, or there is no node; says which and why.
    Unsupported(String),
    /// This client may not read the nodes; says so.
    Unknown(String),
}

/// The per-client state: the nodes' answer (read once) and whether the
/// fallback has been announced.
#[derive(Debug, Default)]
pub(crate) struct UsernsState {
    support: tokio::sync::OnceCell<NodeSupport>,
    fallback_announced: AtomicBool,
}

impl UsernsState {
    /// Takes `support` as the nodes' answer without asking them (scripted
    /// API servers in unit tests).
    #[cfg(test)]
    pub(crate) fn assume(&self, support: NodeSupport) {
        self.support.set(support).expect("no answer yet");
    }
}

/// What the nodes' statuses say, from a list of them. Only nodes a sandbox
/// can land on count: not cordoned, and without a taint that keeps pods
/// tolerating nothing away (a dedicated pool, fake nodes, a control plane).
pub(crate) fn support_of(nodes: &[Node]) -> NodeSupport {
    let schedulable: Vec<&Node> = nodes
        .iter()
        .filter(|node| {
            let spec = node.spec.as_ref();
            let cordoned = spec.and_then(|s| s.unschedulable).unwrap_or(false);
            let repels = spec
                .and_then(|s| s.taints.as_ref())
                .into_iter()
                .flatten()
                .any(|taint| matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute"));
            !cordoned && !repels
        })
        .collect();
    if schedulable.is_empty() {
        return NodeSupport::Unsupported("the cluster has no schedulable node".into());
    }
    for node in schedulable {
        let status = node.status.as_ref();
        let supported = status
            .and_then(|s| s.runtime_handlers.as_ref())
            .into_iter()
            .flatten()
            .find(|h| h.name.as_deref().unwrap_or_default() == DEFAULT_HANDLER)
            .and_then(|h| h.features.as_ref()?.user_namespaces)
            .unwrap_or(false);
        if !supported {
            let runtime = status
                .and_then(|s| s.node_info.as_ref())
                .map_or("an unknown runtime", |info| {
                    info.container_runtime_version.as_str()
                });
            return NodeSupport::Unsupported(format!(
                "node {} ({runtime}) does not report user-namespace support \
                 (containerd >= 2.0 or CRI-O >= 1.25 with runc >= 1.2 and Linux >= 6.3)",
                node.metadata.name.as_deref().unwrap_or_default(),
            ));
        }
    }
    NodeSupport::Supported
}

/// Whether `spec` runs in a user namespace on nodes with `support`: as asked
/// (`user_namespace`), else on the default runtime wherever supported. Asking
/// for one where the nodes say they cannot is an [`Error::InvalidSpec`] of
/// `user_namespace`.
pub(crate) fn choose(spec: &SandboxSpec, support: &NodeSupport) -> Result<bool> {
    let request = spec.request();
    match (request.user_namespace, support) {
        (Some(false), _) => Ok(false),
        (Some(true), NodeSupport::Unsupported(why)) => Err(Error::invalid(
            "user_namespace",
            format!("cannot be true on this cluster: {why}"),
        )),
        (Some(true), _) => Ok(true),
        // A runtime class picks another handler (gVisor has its own user
        // namespace and cannot be combined with one), which the nodes'
        // default-handler answer says nothing about.
        (None, _) if request.runtime_class.is_some() => Ok(false),
        (None, support) => Ok(*support == NodeSupport::Supported),
    }
}

impl Client {
    /// Whether the cluster's nodes run user-namespaced pods, read on first use.
    pub async fn user_namespace_support(&self) -> Result<NodeSupport> {
        self.userns()
            .support
            .get_or_try_init(|| async {
                let nodes: Api<Node> = Api::all(self.kube().clone());
                let params = ListParams::default();
                match retry(|| nodes.list(&params)).await {
                    Ok(list) => Ok(support_of(&list.items)),
                    Err(err) if api_status(&err).is_some_and(|s| s.code == 403) => {
                        Ok(NodeSupport::Unknown(
                            "this client may not list the cluster's nodes (grant `nodes: list`, \
                             see deploy/node-reader.yaml)"
                                .into(),
                        ))
                    }
                    Err(err) => Err(self.api_error(err)),
                }
            })
            .await
            .cloned()
    }

    /// Whether a sandbox created from `spec` gets a user namespace; see [`choose`].
    pub(crate) async fn user_namespace_for(&self, spec: &SandboxSpec) -> Result<bool> {
        let support = self.user_namespace_support().await?;
        choose(spec, &support)
    }

    /// The warning to show when a sandbox created from `spec` would run
    /// without the user namespace it gets by default, because the cluster
    /// cannot give one, until [`Client::user_namespace_fallback_shown`] is
    /// called; `None` in every other case. Errors as
    /// [`Client::create_sandbox`] would for the same spec.
    pub async fn user_namespace_fallback(&self, spec: &SandboxSpec) -> Result<Option<String>> {
        let support = self.user_namespace_support().await?;
        let why = match &support {
            NodeSupport::Supported => return Ok(None),
            NodeSupport::Unsupported(why) | NodeSupport::Unknown(why) => why,
        };
        let request = spec.request();
        let by_default = request.user_namespace.is_none() && request.runtime_class.is_none();
        if choose(spec, &support)?
            || !by_default
            || self.userns().fallback_announced.load(Ordering::Relaxed)
        {
            return Ok(None);
        }
        Ok(Some(format!(
            "sandboxes run without a user namespace: uid 0 in a sandbox is uid 0 of the node \
             ({why}); ask for user_namespace=False (--no-user-namespace) to say this is intended"
        )))
    }

    /// Records that the fallback warning was shown, so this client does not
    /// show it again.
    pub fn user_namespace_fallback_shown(&self) {
        self.userns()
            .fallback_announced
            .store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        NodeRuntimeHandler, NodeRuntimeHandlerFeatures, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
    };
    use kube::api::ObjectMeta;

    use super::*;
    use crate::spec::SandboxRequest;
    use crate::test_api::{failure, respond};

    fn node(name: &str, handlers: &[(&str, Option<bool>)], unschedulable: bool) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                unschedulable: Some(unschedulable),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                runtime_handlers: Some(
                    handlers
                        .iter()
                        .map(|(name, userns)| NodeRuntimeHandler {
                            name: Some((*name).into()),
                            features: Some(NodeRuntimeHandlerFeatures {
                                recursive_read_only_mounts: Some(true),
                                user_namespaces: *userns,
                            }),
                        })
                        .collect(),
                ),
                node_info: Some(NodeSystemInfo {
                    container_runtime_version: "containerd://1.6.20".into(),
                    ..NodeSystemInfo::default()
                }),
                ..NodeStatus::default()
            }),
        }
    }

    #[test]
    fn every_schedulable_node_must_support_the_default_handler() {
        let good = node("a", &[("", Some(true)), ("runc", Some(true))], false);
        assert_eq!(
            support_of(std::slice::from_ref(&good)),
            NodeSupport::Supported
        );
        // An old node (no handlers reported), a node whose support is only for
        // another handler, and a node that says no: each rules it out.
        for bad in [
            node("b", &[], false),
            node("b", &[("runc", Some(true)), ("", Some(false))], false),
            node("b", &[("", None)], false),
        ] {
            match support_of(&[good.clone(), bad]) {
                NodeSupport::Unsupported(why) => {
                    assert!(why.contains("node b (containerd://1.6.20)"), "{why}")
                }
                other => panic!("{other:?}"),
            }
        }
        // A cordoned node takes no new pods, so it does not count; nor does
        // one whose taint keeps sandboxes (which tolerate nothing) away.
        assert_eq!(
            support_of(&[good.clone(), node("c", &[], true)]),
            NodeSupport::Supported
        );
        let mut tainted = node("d", &[], false);
        tainted.spec.as_mut().unwrap().taints = Some(vec![Taint {
            key: "kwok.x-k8s.io/node".into(),
            value: Some("fake".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        }]);
        assert_eq!(support_of(&[good, tainted.clone()]), NodeSupport::Supported);
        let mut preferring = tainted;
        preferring.spec.as_mut().unwrap().taints.as_mut().unwrap()[0].effect =
            "PreferNoSchedule".into();
        assert!(matches!(
            support_of(&[node("a", &[("", Some(true))], false), preferring]),
            NodeSupport::Unsupported(_)
        ));
        assert!(matches!(support_of(&[]), NodeSupport::Unsupported(_)));
    }

    #[test]
    fn the_choice_follows_the_request_then_the_nodes() {
        let spec = |user_namespace, runtime_class: Option<&str>| {
            SandboxSpec::try_from(SandboxRequest {
                user_namespace,
                runtime_class: runtime_class.map(str::to_owned),
                ..SandboxRequest::new("busybox:1.36")
            })
            .unwrap()
        };
        let yes = NodeSupport::Supported;
        let no = NodeSupport::Unsupported("node x says no".into());
        let unknown = NodeSupport::Unknown("may not list".into());
        assert!(choose(&spec(None, None), &yes).unwrap());
        assert!(!choose(&spec(None, None), &no).unwrap());
        assert!(!choose(&spec(None, None), &unknown).unwrap());
        assert!(!choose(&spec(None, Some("gvisor")), &yes).unwrap());
        assert!(!choose(&spec(Some(false), None), &yes).unwrap());
        assert!(choose(&spec(Some(true), Some("gvisor")), &yes).unwrap());
        assert!(choose(&spec(Some(true), None), &unknown).unwrap());
        match choose(&spec(Some(true), None), &no) {
            Err(Error::InvalidSpec { field, rule }) => {
                assert_eq!(field, "user_namespace");
                assert!(rule.contains("node x says no"), "{rule}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn nodes_the_client_may_not_read_mean_no_user_namespace_announced_once() {
        let (service, mut handle) = tower_test::mock::pair();
        let client = Client::from_kube(kube::Client::new(service, "test"), "test".into());
        let server = tokio::spawn(async move {
            let (request, reply) = handle.next_request().await.unwrap();
            assert_eq!(request.uri().path(), "/api/v1/nodes");
            reply.send_response(respond(403, failure(403, "Forbidden")));
            // Read once: no second request.
            assert!(handle.next_request().await.is_none());
        });
        let by_default = SandboxSpec::try_from(SandboxRequest::new("busybox:1.36")).unwrap();
        let notice = client.user_namespace_fallback(&by_default).await.unwrap();
        assert!(notice.unwrap().contains("nodes: list"));
        // Until it is shown (a warning filter may have raised instead).
        assert!(
            client
                .user_namespace_fallback(&by_default)
                .await
                .unwrap()
                .is_some()
        );
        client.user_namespace_fallback_shown();
        assert_eq!(
            client.user_namespace_fallback(&by_default).await.unwrap(),
            None
        );
        assert!(!client.user_namespace_for(&by_default).await.unwrap());
        let asked = by_default.with_user_namespace(true);
        assert!(client.user_namespace_for(&asked).await.unwrap());
        drop(client);
        server.await.unwrap();
    }
}
