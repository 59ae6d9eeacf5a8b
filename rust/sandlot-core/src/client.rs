//! [`Client`]: a connection to one namespace of one cluster.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{self, await_condition};

use crate::agent::{AgentState, ExecPath};
use crate::error::{self, Error, ObjectKind, Result, api_status, error_chain, object_error};
use crate::labels;
use crate::lean_pod::LeanPod;
use crate::namespace::{self, ConfigSource, Placement, Process, ResolvedNamespace, Surroundings};
use crate::owner;
use crate::rate::{RateLimitLayer, RequestRate};
use crate::retry::{retry, retry_first_contact};
use crate::spec::{DEFAULT_TTL_SECONDS, Ttl};
use crate::userns::UsernsState;
use crate::validate;
use crate::watch::{PodWatch, watch_error};

/// How long a new namespace may take to get its default service account.
const SERVICE_ACCOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variable giving the default lifetime of sandboxes, in seconds
/// or `none`, when the client is not given one.
pub const DEFAULT_TTL_ENV: &str = "SANDLOT_DEFAULT_TTL";

/// Environment variable choosing how execs run when the client is not told:
/// `auto`, `agent` or `kubernetes` (see [`ExecPath`]).
pub const EXEC_PATH_ENV: &str = "SANDLOT_EXEC_PATH";

/// How to connect.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Namespace to work in; else `$SANDLOT_NAMESPACE`, else (inside a pod)
    /// the pod's own namespace, else `sandlot`: see [`ConnectOptions::placement`].
    pub namespace: Option<String>,
    /// Kubeconfig context to use instead of the current one.
    pub context: Option<String>,
    /// Kubeconfig file to read instead of `$KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Lifetime of sandboxes whose create does not give one: `Default` is
    /// `$SANDLOT_DEFAULT_TTL` (seconds or `none`), else one hour
    /// ([`DEFAULT_TTL_SECONDS`]); see [`ConnectOptions::default_ttl_seconds`].
    pub default_ttl: Ttl,
    /// Make every sandbox owned by the pod this process runs in, so Kubernetes
    /// deletes them when that pod goes. Only inside a pod, and only in the
    /// pod's own namespace: see [`ConnectOptions::owner_pod`].
    pub owned_by_pod: bool,
    /// How execs run: `None` is `$SANDLOT_EXEC_PATH`, else [`ExecPath::Auto`].
    pub exec_path: Option<ExecPath>,
    /// How fast requests may go to the API server (see `rate.rs`).
    pub request_rate: RequestRate,
}

/// A connection to one namespace. Cheap to clone; clones share the connection
/// pool and the one pod watch that every wait reads.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    kube: kube::Client,
    namespace: ResolvedNamespace,
    pods: Api<Pod>,
    /// The same pods, read without their managed fields (see `lean_pod.rs`).
    lean_pods: Api<LeanPod>,
    claims: Api<PersistentVolumeClaim>,
    watch: OnceLock<PodWatch>,
    /// Lifetime of sandboxes whose create does not give one (`None`: unlimited).
    default_ttl: Option<i64>,
    /// The pod that owns every sandbox this client creates.
    owner: Option<OwnerReference>,
    /// When the network gate's ConfigMap was last known to exist.
    gate_checked: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    /// The API server's own addresses, read once (see `network.rs`).
    api_server_ips: tokio::sync::OnceCell<Vec<std::net::IpAddr>>,
    /// The cluster's DNS domain, if it runs DNS (`port/expose.rs`).
    cluster_dns: tokio::sync::OnceCell<Option<String>>,
    /// Pods (by uid) whose gate entrypoint this client saw become the workload.
    gates_passed: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Whether the nodes run user-namespaced pods (see `userns.rs`).
    userns: UsernsState,
    exec_path: ExecPath,
    /// The agent's ConfigMap and this client's connections to agents (see `agent.rs`).
    agent: AgentState,
    /// The volume file helpers this client keeps (see `files/helper.rs`).
    helpers: crate::files::HelperState,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("namespace", &self.inner.namespace.name)
            .finish_non_exhaustive()
    }
}

/// Objects one list request asks for at most (see [`Client::list_all`]).
pub(crate) const LIST_PAGE: u32 = 500;

/// kube's default client stack, but with TCP_NODELAY: every exec opens a new
/// connection, and without it the TLS handshake's last write and the upgrade
/// request meet Nagle's algorithm and the server's delayed ACK (about 40 ms).
/// Requests wait for `rate`'s token first, before authentication and the
/// connection pool; a throttling answer's `Retry-After` header is made
/// readable to the retries ([`crate::retry::status_with_retry_after`]).
fn kube_client(config: Config, rate: Option<RateLimitLayer>) -> kube::Result<kube::Client> {
    use kube::client::ConfigExt;

    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut timeouts = hyper_timeout::TimeoutConnector::new(https);
    timeouts.set_connect_timeout(config.connect_timeout);
    timeouts.set_read_timeout(config.read_timeout);
    timeouts.set_write_timeout(config.write_timeout);
    let http_client =
        hyper_util::client::legacy::Builder::new(hyper_util::rt::TokioExecutor::new())
            .build::<_, kube::client::Body>(timeouts);
    let service = tower::ServiceBuilder::new()
        .option_layer(rate)
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .and_then(crate::retry::status_with_retry_after)
        .service(http_client);
    Ok(kube::Client::new(service, config.default_namespace))
}

impl ConnectOptions {
    /// The configuration and namespace [`Client::connect`] will use, decided
    /// from the process's environment and files without connecting. Inside a
    /// pod with no kubeconfig, the in-cluster configuration and the pod's own
    /// namespace (unless an argument or `$SANDLOT_NAMESPACE` names one).
    pub fn placement(&self) -> Placement {
        let explicit = self.context.is_some() || self.kubeconfig.is_some();
        namespace::place(self.namespace.as_deref(), explicit, &Process)
    }

    /// The namespace these options select and where it came from.
    pub fn resolved_namespace(&self) -> ResolvedNamespace {
        self.placement().namespace
    }

    /// The lifetime in seconds (`None`: unlimited) that sandboxes get when
    /// their create does not say. Fails, naming the setting, on a value out
    /// of range or a malformed `$SANDLOT_DEFAULT_TTL`.
    pub fn default_ttl_seconds(&self) -> Result<Option<i64>> {
        default_ttl_seconds(self.default_ttl, &Process)
    }

    /// With [`ConnectOptions::owned_by_pod`], the name of the pod that will
    /// own the sandboxes of a client working in `namespace`, checked without
    /// connecting (inside a pod, in the pod's own namespace); else `None`.
    pub fn owner_pod(&self, namespace: &ResolvedNamespace) -> Result<Option<String>> {
        self.owned_by_pod
            .then(|| owner::owner_pod(namespace, &Process))
            .transpose()
    }

    /// How execs will run: the option, else `$SANDLOT_EXEC_PATH`, else `auto`.
    pub fn exec_path(&self) -> Result<ExecPath> {
        match self.exec_path {
            Some(path) => Ok(path),
            None => crate::agent::exec_path_from_env(Process.var(EXEC_PATH_ENV)),
        }
    }
}

/// The default lifetime `ttl` stands for, `Ttl::Default` read from the
/// environment of `surroundings`.
fn default_ttl_seconds(ttl: Ttl, surroundings: &impl Surroundings) -> Result<Option<i64>> {
    let ttl = match ttl.check("default_ttl_seconds")? {
        Ttl::Default => match surroundings.var(DEFAULT_TTL_ENV) {
            Some(text) => Ttl::parse(&format!("${DEFAULT_TTL_ENV}"), &text)?,
            None => Ttl::Seconds(DEFAULT_TTL_SECONDS),
        },
        given => given,
    };
    Ok(ttl.seconds_or(Some(DEFAULT_TTL_SECONDS)))
}

impl Client {
    /// Connects with the configuration [`ConnectOptions::placement`] chooses
    /// (a kubeconfig, or inside a pod the in-cluster service account), and
    /// makes sure the namespace exists (creating it when the credentials allow).
    pub async fn connect(options: ConnectOptions) -> Result<Client> {
        let placement = options.placement();
        Client::connect_placed(options, placement).await
    }

    /// Connects as `placement` says (decided earlier by
    /// [`ConnectOptions::placement`] for these `options`), so a client's
    /// namespace is the one it announced before connecting.
    pub async fn connect_placed(options: ConnectOptions, placement: Placement) -> Result<Client> {
        let Placement { config, namespace } = placement;
        validate::object_name("namespace", &namespace.name)?;
        let default_ttl = options.default_ttl_seconds()?;
        let owner_pod = options.owner_pod(&namespace)?;
        let exec_path = options.exec_path()?;
        options.request_rate.check()?;
        let unreachable = |message: String| Error::ClusterUnreachable { message };
        let mut config = match config {
            ConfigSource::InCluster => Config::incluster().map_err(|e| {
                unreachable(format!(
                    "in-cluster configuration (no kubeconfig found): {}",
                    error_chain(&e)
                ))
            })?,
            ConfigSource::Kubeconfig
                if options.context.is_some() || options.kubeconfig.is_some() =>
            {
                let kubeconfig = match &options.kubeconfig {
                    Some(path) => Kubeconfig::read_from(path),
                    None => Kubeconfig::read(),
                }
                .map_err(|e| unreachable(format!("cannot read kubeconfig: {}", error_chain(&e))))?;
                let opts = KubeConfigOptions {
                    context: options.context.clone(),
                    ..KubeConfigOptions::default()
                };
                Config::from_custom_kubeconfig(kubeconfig, &opts)
                    .await
                    .map_err(|e| unreachable(format!("kubeconfig: {}", error_chain(&e))))?
            }
            ConfigSource::Kubeconfig => Config::from_kubeconfig(&KubeConfigOptions::default())
                .await
                .map_err(|e| {
                    unreachable(format!(
                        "no usable kubeconfig and not inside a pod ({}); set KUBECONFIG",
                        error_chain(&e)
                    ))
                })?,
        };
        config.apply_debug_overrides();
        let kube = kube_client(config, options.request_rate.layer())
            .map_err(|e| unreachable(error_chain(&e)))?;
        let mut client = Client::with_namespace(kube, namespace, default_ttl);
        client.ensure_namespace().await?;
        let owner = match owner_pod {
            Some(pod) => Some(owner::owner_reference(client.pods(), &pod).await?),
            None => None,
        };
        let inner =
            Arc::get_mut(&mut client.inner).expect("a client being connected is not shared yet");
        inner.owner = owner;
        inner.exec_path = exec_path;
        Ok(client)
    }

    /// A client on an existing kube client, without checking the namespace,
    /// which counts as given by the caller; sandboxes get the built-in
    /// default lifetime ([`DEFAULT_TTL_SECONDS`]) and no owner.
    pub fn from_kube(kube: kube::Client, namespace: String) -> Client {
        Client::with_namespace(
            kube,
            ResolvedNamespace {
                name: namespace,
                source: namespace::NamespaceSource::Argument,
            },
            Some(DEFAULT_TTL_SECONDS),
        )
    }

    fn with_namespace(
        kube: kube::Client,
        namespace: ResolvedNamespace,
        default_ttl: Option<i64>,
    ) -> Client {
        let pods = Api::namespaced(kube.clone(), &namespace.name);
        let lean_pods = Api::namespaced(kube.clone(), &namespace.name);
        let claims = Api::namespaced(kube.clone(), &namespace.name);
        Client {
            inner: Arc::new(Inner {
                kube,
                namespace,
                pods,
                lean_pods,
                claims,
                watch: OnceLock::new(),
                default_ttl,
                owner: None,
                gate_checked: tokio::sync::Mutex::new(None),
                api_server_ips: tokio::sync::OnceCell::new(),
                cluster_dns: tokio::sync::OnceCell::new(),
                gates_passed: std::sync::Mutex::default(),
                userns: UsernsState::default(),
                exec_path: ExecPath::Auto,
                agent: AgentState::default(),
                helpers: crate::files::HelperState::default(),
            }),
        }
    }

    /// The namespace this client works in.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace.name
    }

    /// The namespace this client works in and where it came from.
    pub fn resolved_namespace(&self) -> &ResolvedNamespace {
        &self.inner.namespace
    }

    /// The lifetime in seconds of sandboxes whose create does not give one
    /// (`None`: unlimited).
    pub fn default_ttl(&self) -> Option<i64> {
        self.inner.default_ttl
    }

    /// The pod that owns every sandbox this client creates, if any.
    pub fn owner(&self) -> Option<&OwnerReference> {
        self.inner.owner.as_ref()
    }

    /// The underlying kube client.
    pub fn kube(&self) -> &kube::Client {
        &self.inner.kube
    }

    pub(crate) fn pods(&self) -> &Api<Pod> {
        &self.inner.pods
    }

    /// This namespace's pods, read without their managed fields: for the
    /// requests that read many pods (creates, terminates, lists, the watch).
    pub(crate) fn lean_pods(&self) -> &Api<LeanPod> {
        &self.inner.lean_pods
    }

    /// Every pod `params` selects, read as [`Client::list_all`] does.
    pub(crate) async fn list_pods(&self, params: &ListParams) -> Result<Vec<Pod>> {
        let pods = self.list_all(self.lean_pods(), params).await?;
        Ok(pods.into_iter().map(Pod::from).collect())
    }

    /// Deletes pod `name` as `params` say, without reading the pod the API
    /// server answers with: kube would parse that answer twice (to tell a
    /// Status from a pod), and a purge of thousands needs only the outcome.
    /// Failures are the same `kube::Error`s as [`Api::delete`]'s.
    pub(crate) async fn delete_pod_unread(
        &self,
        name: &str,
        params: &kube::api::DeleteParams,
    ) -> kube::Result<()> {
        use kube::Resource;
        let path = Pod::url_path(&(), Some(self.namespace()));
        let request = kube::core::Request::new(path)
            .delete(name, params)
            .map_err(kube::Error::BuildRequest)?;
        self.kube().request_text(request).await.map(drop)
    }

    pub(crate) fn claims(&self) -> &Api<PersistentVolumeClaim> {
        &self.inner.claims
    }

    /// Pods (by uid) whose gate entrypoint this client saw become the workload.
    pub(crate) fn gates_passed(&self) -> &std::sync::Mutex<std::collections::HashSet<String>> {
        &self.inner.gates_passed
    }

    /// How this client runs execs.
    pub fn exec_path(&self) -> ExecPath {
        self.inner.exec_path
    }

    pub(crate) fn agent(&self) -> &AgentState {
        &self.inner.agent
    }

    pub(crate) fn helpers(&self) -> &crate::files::HelperState {
        &self.inner.helpers
    }

    pub(crate) fn userns(&self) -> &UsernsState {
        &self.inner.userns
    }

    pub(crate) fn gate_checked(&self) -> &tokio::sync::Mutex<Option<tokio::time::Instant>> {
        &self.inner.gate_checked
    }

    pub(crate) fn api_server_ips(&self) -> &tokio::sync::OnceCell<Vec<std::net::IpAddr>> {
        &self.inner.api_server_ips
    }

    pub(crate) fn cluster_dns(&self) -> &tokio::sync::OnceCell<Option<String>> {
        &self.inner.cluster_dns
    }

    /// The shared pod watch, started on first use.
    pub(crate) fn pod_watch(&self) -> &PodWatch {
        self.inner
            .watch
            .get_or_init(|| PodWatch::start(Api::namespaced(self.kube().clone(), self.namespace())))
    }

    /// Sandbox `name`'s pod as the shared watch last saw it, if a wait has
    /// started the watch and it has seen the pod (no request is made).
    pub(crate) fn watched_pod(&self, name: &str) -> Option<Arc<Pod>> {
        self.inner.watch.get().and_then(|watch| watch.get(name))
    }

    /// Whether a wait has started the shared watch and it holds the pod of
    /// every sandbox in `names` (see [`PodWatch::holds_all`]).
    pub(crate) fn watch_holds_all(&self, names: &[String]) -> bool {
        self.inner
            .watch
            .get()
            .is_some_and(|watch| watch.holds_all(names))
    }

    /// Stops the task behind the shared pod watch as if it had died (a test
    /// hook: the watch restarts by itself). False if no wait has started the
    /// watch yet.
    #[doc(hidden)]
    pub fn stop_pod_watch_task(&self) -> bool {
        self.inner.watch.get().is_some_and(PodWatch::stop_task)
    }

    /// Maps a failed request that is not about one named object. This and
    /// [`Client::object_error`] are the one way a kube error of this client
    /// becomes an [`Error`], so a refusal always names the namespace and where
    /// it came from.
    pub(crate) fn api_error(&self, err: kube::Error) -> Error {
        error::from_kube(err, &self.inner.namespace)
    }

    /// Every object `api` lists with `params`, as [`Client::list_all_as`] reads them.
    pub(crate) async fn list_all<K>(&self, api: &Api<K>, params: &ListParams) -> Result<Vec<K>>
    where
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug + kube::Resource,
    {
        self.list_all_as(api, params, Some).await
    }

    /// Every object `api` lists with `params`, turned by `keep` into what the
    /// caller holds on to (`None`: nothing) as its page arrives: unless
    /// `keep` keeps them whole, a list of thousands holds one page of whole
    /// objects at a time. Pages are [`LIST_PAGE`] objects (limit and
    /// continue), so ten thousand pods never come as one answer. A continue
    /// token that expired (410 Gone, a list longer than etcd keeps its
    /// history) starts the list again, a few times at most, and what `keep`
    /// made of the pages before is dropped: `keep` may see an object twice.
    /// Objects come without their managed fields, which nothing here reads.
    pub(crate) async fn list_all_as<K, T>(
        &self,
        api: &Api<K>,
        params: &ListParams,
        mut keep: impl FnMut(K) -> Option<T>,
    ) -> Result<Vec<T>>
    where
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug + kube::Resource,
    {
        let mut restarts = 0;
        'list: loop {
            let mut items = Vec::new();
            let mut page = params.clone().limit(LIST_PAGE);
            loop {
                let list = match retry(|| api.list(&page)).await {
                    Ok(list) => list,
                    Err(err)
                        if restarts < 3
                            && page.continue_token.is_some()
                            && api_status(&err).is_some_and(|s| s.code == 410) =>
                    {
                        restarts += 1;
                        continue 'list;
                    }
                    Err(err) => return Err(self.api_error(err)),
                };
                items.extend(list.items.into_iter().filter_map(|mut item| {
                    item.meta_mut().managed_fields = None;
                    keep(item)
                }));
                match list.metadata.continue_.filter(|token| !token.is_empty()) {
                    Some(token) => page = page.continue_token(&token),
                    None => return Ok(items),
                }
            }
        }
    }

    /// Maps a failed request about the object `name` of `kind`.
    pub(crate) fn object_error(&self, err: kube::Error, kind: ObjectKind, name: &str) -> Error {
        object_error(err, kind, name, &self.inner.namespace)
    }

    /// Maps a failed request about sandbox `name`.
    pub(crate) fn sandbox_error(&self, err: kube::Error, name: &str) -> Error {
        self.object_error(err, ObjectKind::Sandbox, name)
    }

    /// Creates the namespace if it is missing (with Pod Security admission's
    /// `baseline` enforced) and waits for its default service account, without
    /// which pods are refused. Credentials that may not read
    /// namespaces are trusted to point at an existing one.
    async fn ensure_namespace(&self) -> Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.kube().clone());
        let name = self.namespace();
        match retry_first_contact(|| namespaces.get_opt(name)).await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(err) if api_status(&err).is_some_and(|s| s.code == 403) => return Ok(()),
            Err(err) => return Err(self.api_error(err)),
        }
        let mut namespace_labels = labels::managed_labels();
        namespace_labels.extend(
            labels::POD_SECURITY_LABELS.map(|(key, value)| (key.to_owned(), value.to_owned())),
        );
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(namespace_labels),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        match namespaces.create(&PostParams::default(), &namespace).await {
            Ok(_) => {}
            Err(err) if api_status(&err).is_some_and(|s| s.code == 409) => {}
            Err(err) => return Err(self.object_error(err, ObjectKind::Namespace, name)),
        }
        let accounts: Api<ServiceAccount> = Api::namespaced(self.kube().clone(), name);
        let exists = |account: Option<&ServiceAccount>| account.is_some();
        let appeared = retry(|| async {
            await_condition(accounts.clone(), "default", exists)
                .await
                .map(drop)
                .map_err(|wait::Error::ProbeFailed(err)| watch_error(err))
        });
        match tokio::time::timeout(SERVICE_ACCOUNT_TIMEOUT, appeared).await {
            Ok(result) => result.map_err(|err| self.api_error(err)),
            Err(_) => Err(Error::Timeout {
                what: format!("the default service account of new namespace {name:?}"),
                after: SERVICE_ACCOUNT_TIMEOUT,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;
    use tower_test::mock;

    use super::*;
    use crate::test_api::respond;

    /// A client for namespace "fresh", whose API server does not have it yet;
    /// the default service account appears through the watch when `appears`.
    fn client(appears: bool) -> (Client, tokio::task::JoinHandle<()>) {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let mut open_watches = Vec::new();
            while let Some((request, reply)) = handle.next_request().await {
                let query = request.uri().query().unwrap_or_default().to_owned();
                let response = match (request.method().as_str(), request.uri().path()) {
                    ("GET", "/api/v1/namespaces/fresh") => respond(
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "code": 404, "reason": "NotFound", "message": "not found"}),
                    ),
                    ("POST", "/api/v1/namespaces") => respond(
                        201,
                        json!({"kind": "Namespace", "apiVersion": "v1",
                            "metadata": {"name": "fresh"}}),
                    ),
                    ("GET", "/api/v1/namespaces/fresh/serviceaccounts")
                        if query.contains("watch=true") =>
                    {
                        assert!(query.contains("metadata.name%3Ddefault"), "{query}");
                        if !appears {
                            open_watches.push(reply);
                            continue;
                        }
                        let added = json!({"type": "ADDED", "object": {"kind": "ServiceAccount",
                            "apiVersion": "v1", "metadata": {"name": "default",
                            "namespace": "fresh", "resourceVersion": "2"}}});
                        Response::builder()
                            .status(200)
                            .body(Body::from(format!("{added}\n").into_bytes()))
                            .unwrap()
                    }
                    ("GET", "/api/v1/namespaces/fresh/serviceaccounts") => respond(
                        200,
                        json!({"kind": "ServiceAccountList", "apiVersion": "v1",
                            "metadata": {"resourceVersion": "1"}, "items": []}),
                    ),
                    (method, path) => panic!("unexpected request {method} {path}?{query}"),
                };
                reply.send_response(response);
            }
        });
        let client = Client::from_kube(kube::Client::new(service, "fresh"), "fresh".into());
        (client, server)
    }

    struct Environment(Option<&'static str>);

    impl Surroundings for Environment {
        fn var(&self, name: &str) -> Option<String> {
            (name == DEFAULT_TTL_ENV)
                .then_some(self.0)
                .flatten()
                .map(str::to_owned)
        }
        fn kubeconfig_readable(&self) -> bool {
            true
        }
        fn service_account_namespace(&self) -> Option<String> {
            None
        }
    }

    #[test]
    fn the_default_lifetime_is_an_hour_unless_the_client_or_its_environment_says() {
        let resolve = |ttl, env| default_ttl_seconds(ttl, &Environment(env));
        assert_eq!(resolve(Ttl::Default, None).unwrap(), Some(3600));
        assert_eq!(resolve(Ttl::Default, Some("600")).unwrap(), Some(600));
        assert_eq!(resolve(Ttl::Default, Some("none")).unwrap(), None);
        assert_eq!(resolve(Ttl::Seconds(60), Some("none")).unwrap(), Some(60));
        assert_eq!(resolve(Ttl::Unlimited, Some("600")).unwrap(), None);
        for (ttl, env, field) in [
            (Ttl::Seconds(0), None, "default_ttl_seconds"),
            (Ttl::Default, Some("soon"), "$SANDLOT_DEFAULT_TTL"),
            (Ttl::Default, Some("0"), "$SANDLOT_DEFAULT_TTL"),
        ] {
            let err = resolve(ttl, env).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidSpec { field: f, .. } if f == field),
                "{err:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_namespace_is_ready_once_its_service_account_appears() {
        let (client, server) = client(true);
        client.ensure_namespace().await.unwrap();
        server.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_account_that_never_appears_is_a_timeout() {
        let (client, server) = client(false);
        let err = client.ensure_namespace().await.unwrap_err();
        assert!(
            matches!(err, Error::Timeout { after, .. } if after == SERVICE_ACCOUNT_TIMEOUT),
            "{err:?}"
        );
        server.abort();
    }

    /// The client stack itself (not a scripted one) hands the retries the
    /// pause of a plain-text 429, as kube-apiserver's own throttling sends it.
    #[tokio::test]
    async fn the_client_stack_reads_the_pause_of_the_api_servers_own_429() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            while !request.ends_with(b"\r\n\r\n") {
                let read = socket.read(&mut chunk).await.unwrap();
                assert!(read > 0, "the request ended early");
                request.extend_from_slice(&chunk[..read]);
            }
            let body = "Too many requests, please try again later.\n";
            let answer = format!(
                "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Retry-After: 3\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
        });
        let config = Config::new(format!("http://{address}").parse().unwrap());
        let pods: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(kube_client(config, None).unwrap(), "default");
        let err = pods.get("p").await.expect_err("a 429");
        let status = crate::error::api_status(&err).expect("a Status");
        assert_eq!(status.code, 429);
        assert_eq!(
            status.details.as_ref().map(|d| d.retry_after_seconds),
            Some(3)
        );
        server.await.unwrap();
    }
}
