//! Sandboxes owned by the application's own pod: with
//! [`ConnectOptions::owned_by_pod`](crate::ConnectOptions::owned_by_pod), every
//! sandbox carries an owner reference to the pod the client runs in, so
//! Kubernetes' garbage collector deletes the sandboxes when that pod goes.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::Api;

use crate::error::{Error, Result, api_status};
use crate::namespace::{ResolvedNamespace, Surroundings};
use crate::retry::retry;

/// Environment variable naming the application's pod, for pods whose hostname
/// is not their name; set it from the downward API (`fieldRef: metadata.name`).
pub const POD_NAME_ENV: &str = "SANDLOT_POD_NAME";

/// The field errors about ownership name.
const FIELD: &str = "owned_by_pod";

/// The pod a client's sandboxes are to be owned by, as found before
/// connecting: its name ([`POD_NAME_ENV`], else `$HOSTNAME`, which a pod's
/// containers get as the pod's name) in the client's namespace.
///
/// Refused, naming the rule: outside a pod (no service-account namespace), and
/// when the client's namespace is not the pod's, because Kubernetes deletes a
/// dependent whose owner lives in another namespace at once.
pub(crate) fn owner_pod(
    namespace: &ResolvedNamespace,
    surroundings: &impl Surroundings,
) -> Result<String> {
    let Some(pod_namespace) = surroundings.service_account_namespace() else {
        return Err(Error::invalid(
            FIELD,
            "sandboxes can be owned only by the pod the application runs in, and this \
             process is not in a pod (no service-account namespace file)",
        ));
    };
    if pod_namespace != namespace.name {
        return Err(Error::invalid(
            FIELD,
            format!(
                "the sandboxes' namespace {:?} is not this pod's namespace {pod_namespace:?}; \
                 an owner in another namespace would make Kubernetes delete them at once",
                namespace.name
            ),
        ));
    }
    surroundings
        .var(POD_NAME_ENV)
        .or_else(|| surroundings.var("HOSTNAME"))
        .ok_or_else(|| {
            Error::invalid(
                FIELD,
                format!(
                    "this pod's name is unknown: set ${POD_NAME_ENV} from the downward API \
                     (fieldRef metadata.name)"
                ),
            )
        })
}

/// The owner reference to pod `name` of `pods`, read from the API server (its
/// uid). Neither controller nor blocking deletion, so no permission beyond
/// reading pods is needed.
pub(crate) async fn owner_reference(pods: &Api<Pod>, name: &str) -> Result<OwnerReference> {
    let pod = match retry(|| pods.get_opt(name)).await {
        Ok(Some(pod)) => pod,
        Ok(None) => {
            return Err(Error::invalid(
                FIELD,
                format!(
                    "this pod {name:?} (from ${POD_NAME_ENV} or $HOSTNAME) was not found in \
                     its namespace; if its hostname is not its name, set ${POD_NAME_ENV} from \
                     the downward API (fieldRef metadata.name)"
                ),
            ));
        }
        Err(err) if api_status(&err).is_some_and(|s| s.code == 403) => {
            return Err(Error::invalid(
                FIELD,
                format!(
                    "reading this pod {name:?} was refused; the service account needs `get` \
                     on pods (deploy/rbac.yaml grants it): {err}"
                ),
            ));
        }
        Err(err) => {
            return Err(Error::ClusterUnreachable {
                message: format!("reading this pod {name:?}: {err}"),
            });
        }
    };
    Ok(OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: name.to_owned(),
        uid: pod.metadata.uid.unwrap_or_default(),
        controller: None,
        block_owner_deletion: None,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::namespace::NamespaceSource;

    struct Pod {
        vars: BTreeMap<&'static str, &'static str>,
        namespace: Option<&'static str>,
    }

    impl Surroundings for Pod {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.get(name).map(|v| (*v).to_owned())
        }
        fn kubeconfig_readable(&self) -> bool {
            false
        }
        fn service_account_namespace(&self) -> Option<String> {
            self.namespace.map(str::to_owned)
        }
    }

    fn namespace(name: &str) -> ResolvedNamespace {
        ResolvedNamespace {
            name: name.into(),
            source: NamespaceSource::Argument,
        }
    }

    fn rule_of(result: Result<String>) -> String {
        match result {
            Err(Error::InvalidSpec { field, rule }) if field == FIELD => rule,
            other => panic!("expected InvalidSpec on {FIELD}, got {other:?}"),
        }
    }

    #[test]
    fn the_owner_is_this_pod_by_its_downward_api_name_or_hostname() {
        let by_hostname = Pod {
            vars: BTreeMap::from([("HOSTNAME", "app-7d9f")]),
            namespace: Some("apps"),
        };
        assert_eq!(
            owner_pod(&namespace("apps"), &by_hostname).unwrap(),
            "app-7d9f"
        );
        let by_env = Pod {
            vars: BTreeMap::from([("HOSTNAME", "custom-host"), (POD_NAME_ENV, "app-7d9f")]),
            namespace: Some("apps"),
        };
        assert_eq!(owner_pod(&namespace("apps"), &by_env).unwrap(), "app-7d9f");
    }

    #[test]
    fn owners_never_cross_namespaces_and_need_a_pod() {
        let pod = Pod {
            vars: BTreeMap::from([("HOSTNAME", "app-7d9f")]),
            namespace: Some("apps"),
        };
        let rule = rule_of(owner_pod(&namespace("sandboxes"), &pod));
        assert!(
            rule.contains("\"sandboxes\"") && rule.contains("\"apps\""),
            "{rule}"
        );
        let outside = Pod {
            vars: BTreeMap::from([("HOSTNAME", "laptop")]),
            namespace: None,
        };
        assert!(rule_of(owner_pod(&namespace("apps"), &outside)).contains("not in a pod"));
        let nameless = Pod {
            vars: BTreeMap::new(),
            namespace: Some("apps"),
        };
        assert!(rule_of(owner_pod(&namespace("apps"), &nameless)).contains(POD_NAME_ENV));
    }
}
