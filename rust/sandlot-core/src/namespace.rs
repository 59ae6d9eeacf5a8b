//! Which namespace a client works in and which configuration it connects with:
//! one rule, decided before connecting, so the namespace a caller sees before
//! the first request is the one the client uses.

use std::path::Path;

use kube::config::Kubeconfig;

/// Environment variable naming the namespace when none is passed.
pub const NAMESPACE_ENV: &str = "SANDLOT_NAMESPACE";
/// Namespace used outside a pod when neither an argument nor [`NAMESPACE_ENV`] names one.
pub const DEFAULT_NAMESPACE: &str = "sandlot";

/// Where the in-cluster configuration keeps the pod's own namespace (the one
/// its service account lives in), as kube and client-go read it.
const SERVICE_ACCOUNT_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Where a client's namespace came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
#[strum(serialize_all = "snake_case")]
pub enum NamespaceSource {
    /// Passed by the caller (`namespace=`, `-n/--namespace`).
    Argument,
    /// `$SANDLOT_NAMESPACE`.
    Environment,
    /// The pod's own namespace, from its service account (in-cluster configuration).
    ServiceAccount,
    /// [`DEFAULT_NAMESPACE`]: nothing named one.
    Default,
}

impl NamespaceSource {
    /// How an error message says where the namespace came from.
    pub fn describe(self) -> &'static str {
        match self {
            NamespaceSource::Argument => "passed as the namespace argument or -n/--namespace",
            NamespaceSource::Environment => "from $SANDLOT_NAMESPACE",
            NamespaceSource::ServiceAccount => "the pod's own namespace, from its service account",
            NamespaceSource::Default => {
                "the default; pass a namespace or set $SANDLOT_NAMESPACE to use another"
            }
        }
    }
}

/// A namespace and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedNamespace {
    /// The namespace's name.
    pub name: String,
    /// Where it came from.
    pub source: NamespaceSource,
}

/// Which configuration a client connects with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// A kubeconfig file (`$KUBECONFIG`, `~/.kube/config`, or the one given).
    Kubeconfig,
    /// The pod's service account: token, CA and `KUBERNETES_SERVICE_HOST`/`_PORT`.
    InCluster,
}

/// The connection a client will make: its configuration and its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The configuration `Client::connect` uses.
    pub config: ConfigSource,
    /// The namespace the client works in.
    pub namespace: ResolvedNamespace,
}

/// What the rule looks at in the process's surroundings; tests substitute them.
pub(crate) trait Surroundings {
    /// A non-empty environment variable.
    fn var(&self, name: &str) -> Option<String>;
    /// True when kube finds a kubeconfig it can read (`$KUBECONFIG`, else `~/.kube/config`).
    fn kubeconfig_readable(&self) -> bool;
    /// The namespace in the service account's namespace file, if it is readable and not empty.
    fn service_account_namespace(&self) -> Option<String>;
}

/// The real process: its environment and files.
pub(crate) struct Process;

impl Surroundings for Process {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }

    fn kubeconfig_readable(&self) -> bool {
        Kubeconfig::read().is_ok()
    }

    fn service_account_namespace(&self) -> Option<String> {
        std::fs::read_to_string(Path::new(SERVICE_ACCOUNT_NAMESPACE_FILE))
            .ok()
            .map(|text| text.trim().to_owned())
            .filter(|name| !name.is_empty())
    }
}

/// The rule, as kube's `Config::infer` and kubectl apply it, with sandlot's own
/// default outside a pod:
///
/// - configuration: a kubeconfig when one is given (`explicit_kubeconfig`: a
///   file or a context) or kube finds one; else the in-cluster configuration
///   when `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT` are set;
///   else a kubeconfig again (connecting then says none was found);
/// - namespace: the argument, else `$SANDLOT_NAMESPACE`, else (in-cluster
///   configuration only) the pod's own namespace, else [`DEFAULT_NAMESPACE`].
///
/// A kubeconfig context's namespace is not used: sandlot keeps untrusted
/// workloads in a namespace of their own, not wherever the user's context
/// points (often `default`, beside the user's own applications).
pub(crate) fn place(
    argument: Option<&str>,
    explicit_kubeconfig: bool,
    surroundings: &impl Surroundings,
) -> Placement {
    let in_cluster = !explicit_kubeconfig
        && !surroundings.kubeconfig_readable()
        && surroundings.var("KUBERNETES_SERVICE_HOST").is_some()
        && surroundings.var("KUBERNETES_SERVICE_PORT").is_some();
    let config = if in_cluster {
        ConfigSource::InCluster
    } else {
        ConfigSource::Kubeconfig
    };
    let named = |name: String, source| ResolvedNamespace { name, source };
    let namespace = argument
        .map(|name| named(name.to_owned(), NamespaceSource::Argument))
        .or_else(|| {
            surroundings
                .var(NAMESPACE_ENV)
                .map(|name| named(name, NamespaceSource::Environment))
        })
        .or_else(|| {
            in_cluster
                .then(|| surroundings.service_account_namespace())
                .flatten()
                .map(|name| named(name, NamespaceSource::ServiceAccount))
        })
        .unwrap_or_else(|| named(DEFAULT_NAMESPACE.to_owned(), NamespaceSource::Default));
    Placement { config, namespace }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A process: its environment, whether a kubeconfig is found, and the
    /// service account's namespace file.
    #[derive(Default)]
    struct Fake {
        vars: BTreeMap<&'static str, &'static str>,
        kubeconfig: bool,
        service_account: Option<&'static str>,
    }

    impl Surroundings for Fake {
        fn var(&self, name: &str) -> Option<String> {
            self.vars
                .get(name)
                .filter(|v| !v.is_empty())
                .map(|v| (*v).to_owned())
        }
        fn kubeconfig_readable(&self) -> bool {
            self.kubeconfig
        }
        fn service_account_namespace(&self) -> Option<String> {
            self.service_account.map(str::to_owned)
        }
    }

    /// Inside a pod: the kubelet's variables and the mounted namespace file.
    fn pod() -> Fake {
        Fake {
            vars: BTreeMap::from([
                ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
                ("KUBERNETES_SERVICE_PORT", "443"),
            ]),
            service_account: Some("apps"),
            ..Fake::default()
        }
    }

    /// A laptop: a kubeconfig, no in-cluster variables.
    fn laptop() -> Fake {
        Fake {
            kubeconfig: true,
            ..Fake::default()
        }
    }

    fn namespace(name: &str, source: NamespaceSource) -> ResolvedNamespace {
        ResolvedNamespace {
            name: name.to_owned(),
            source,
        }
    }

    #[test]
    fn in_a_pod_the_pods_own_namespace_is_the_default() {
        let placement = place(None, false, &pod());
        assert_eq!(placement.config, ConfigSource::InCluster);
        assert_eq!(
            placement.namespace,
            namespace("apps", NamespaceSource::ServiceAccount)
        );
    }

    #[test]
    fn an_argument_wins_everywhere() {
        let mut env = pod();
        env.vars.insert(NAMESPACE_ENV, "from-env");
        for (surroundings, config) in [
            (env, ConfigSource::InCluster),
            (laptop(), ConfigSource::Kubeconfig),
        ] {
            let placement = place(Some("given"), false, &surroundings);
            assert_eq!(placement.config, config);
            assert_eq!(
                placement.namespace,
                namespace("given", NamespaceSource::Argument)
            );
        }
    }

    #[test]
    fn the_environment_variable_wins_over_the_pods_namespace() {
        let mut env = pod();
        env.vars.insert(NAMESPACE_ENV, "from-env");
        assert_eq!(
            place(None, false, &env).namespace,
            namespace("from-env", NamespaceSource::Environment)
        );
    }

    #[test]
    fn an_empty_environment_variable_counts_as_unset() {
        let mut env = laptop();
        env.vars.insert(NAMESPACE_ENV, "");
        assert_eq!(
            place(None, false, &env).namespace,
            namespace(DEFAULT_NAMESPACE, NamespaceSource::Default)
        );
    }

    #[test]
    fn outside_a_pod_the_default_is_sandlot() {
        let placement = place(None, false, &laptop());
        assert_eq!(placement.config, ConfigSource::Kubeconfig);
        assert_eq!(
            placement.namespace,
            namespace(DEFAULT_NAMESPACE, NamespaceSource::Default)
        );
    }

    #[test]
    fn a_kubeconfig_in_a_pod_wins_as_in_kube_and_kubectl() {
        let mut env = pod();
        env.kubeconfig = true;
        let placement = place(None, false, &env);
        assert_eq!(placement.config, ConfigSource::Kubeconfig);
        assert_eq!(
            placement.namespace,
            namespace(DEFAULT_NAMESPACE, NamespaceSource::Default)
        );
    }

    #[test]
    fn a_given_kubeconfig_or_context_is_never_in_cluster() {
        let placement = place(None, true, &pod());
        assert_eq!(placement.config, ConfigSource::Kubeconfig);
        assert_eq!(placement.namespace.source, NamespaceSource::Default);
    }

    #[test]
    fn in_cluster_needs_both_service_variables() {
        for missing in ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"] {
            let mut env = pod();
            env.vars.remove(missing);
            let placement = place(None, false, &env);
            assert_eq!(placement.config, ConfigSource::Kubeconfig, "{missing}");
            assert_eq!(placement.namespace.source, NamespaceSource::Default);
        }
    }

    #[test]
    fn an_unreadable_namespace_file_falls_back_to_the_default() {
        let mut env = pod();
        env.service_account = None;
        let placement = place(None, false, &env);
        // kube's in-cluster configuration fails then too, and says why on connect.
        assert_eq!(placement.config, ConfigSource::InCluster);
        assert_eq!(
            placement.namespace,
            namespace(DEFAULT_NAMESPACE, NamespaceSource::Default)
        );
    }

    #[test]
    fn sources_have_stable_names() {
        let names: Vec<String> = [
            NamespaceSource::Argument,
            NamespaceSource::Environment,
            NamespaceSource::ServiceAccount,
            NamespaceSource::Default,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            names,
            ["argument", "environment", "service_account", "default"]
        );
    }
}
