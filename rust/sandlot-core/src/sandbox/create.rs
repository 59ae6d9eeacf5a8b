use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, PostParams, Preconditions};

use crate::client::Client;
use crate::error::{Error, Result, api_status};
use crate::labels::{self, CREATE_TOKEN_ANNOTATION};
use crate::lean_pod::LeanPod;
use crate::network;
use crate::pool::Claim;
use crate::retry::{self, Tries, retry};
use crate::spec::SandboxSpec;
use crate::status::SandboxStatus;
use crate::validate;

/// How often a create is tried while a new namespace's service account appears.
const SERVICE_ACCOUNT_RETRIES: u32 = 50;

/// When a create that may have landed is abandoned, how long after it the
/// pod is looked for (a request still in flight may land a little later).
const ABANDONED_LOOKS: [Duration; 5] = [
    Duration::ZERO,
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

impl Client {
    /// Creates a sandbox from a checked spec, with the client's default
    /// lifetime unless the spec gives one, owned by the client's pod if it has
    /// one. Every error is an [`Error::Create`] naming the sandbox (generated
    /// names included) around the cause: [`Error::NotFound`] or
    /// [`Error::VolumeDeleting`] for a mounted volume that does not exist or is
    /// being deleted, [`Error::NameConflict`] if the name is taken,
    /// [`Error::QuotaExceeded`], ...
    ///
    /// Transient failures are retried. Each create carries a random token, so a
    /// retry that finds the name taken by this very create (its first response
    /// was lost) succeeds instead of reporting a conflict. A create that fails
    /// or is cancelled (its future dropped) after a request that may have
    /// landed deletes the pod that request made, from a task of its own.
    ///
    /// A spec naming a pool takes one of its warm sandboxes if one fits and
    /// is ready (see `pool/`), else is created cold from the pool's
    /// template, with the reason in [`SandboxStatus::pool_fallback`].
    pub async fn create_sandbox(&self, spec: &SandboxSpec) -> Result<SandboxStatus> {
        let Some(pool) = &spec.request().pool else {
            return self.create_sandbox_with(spec, &PodExtras::default()).await;
        };
        match self.claim(spec, pool).await? {
            Claim::Taken(status) => Ok(*status),
            Claim::Cold { spec, reason } => {
                let extras = PodExtras {
                    labels: [(labels::POOL_LABEL.to_owned(), pool.clone())].into(),
                    annotations: [(labels::POOL_FALLBACK_ANNOTATION.to_owned(), reason)].into(),
                    owner: None,
                };
                self.create_sandbox_with(&spec, &extras).await
            }
        }
    }

    /// [`Client::create_sandbox`] of `spec` as it is (no pool), its pod
    /// carrying `extras`.
    pub(crate) async fn create_sandbox_with(
        &self,
        spec: &SandboxSpec,
        extras: &PodExtras,
    ) -> Result<SandboxStatus> {
        let name = spec
            .name()
            .map_or_else(|| validate::generated_name("sb-"), str::to_owned);
        self.create_named(spec, &name, extras)
            .await
            .map_err(|error| Error::Create {
                name,
                error: Box::new(error),
            })
    }

    async fn create_named(
        &self,
        spec: &SandboxSpec,
        name: &str,
        extras: &PodExtras,
    ) -> Result<SandboxStatus> {
        self.require_volumes(spec.volume_names()).await?;
        let network = spec.network();
        let facts = self.network_facts(network).await?;
        // After the gate's: both may make a ConfigMap, and a throttled
        // create's Retry-After holds for the other too.
        let agent = self.place_agent().await?;
        let user_namespace = self.user_namespace_for(spec).await?;
        let token = validate::generated_name("");
        let mut pod = spec
            .with_default_ttl(self.default_ttl())
            .with_user_namespace(user_namespace)
            .to_pod(name);
        pod.metadata
            .annotations
            .get_or_insert_default()
            .insert(CREATE_TOKEN_ANNOTATION.to_owned(), token.clone());
        network::label_with_token(&mut pod, &token);
        if agent {
            crate::agent::add_agent(&mut pod);
        }
        if let Some(owner) = extras.owner.as_ref().or(self.owner()) {
            pod.metadata.owner_references = Some(vec![owner.clone()]);
        }
        pod.metadata
            .labels
            .get_or_insert_default()
            .extend(extras.labels.clone());
        pod.metadata
            .annotations
            .get_or_insert_default()
            .extend(extras.annotations.clone());

        let mut landing = Landing::new(self, name, &token);
        let created = self.post(spec, &LeanPod(pod), &token, &mut landing).await?;
        // The pod exists; until it is handed over, a cancel deletes it.
        landing.maybe_landed = true;
        // A delete of a mounted volume may have begun since the check above;
        // it marks the claim first, so looking again now cannot miss it.
        let mut outcome = self.require_volumes(spec.volume_names()).await;
        if outcome.is_ok() && network.is_restricted() {
            // The gate holds the workload until this policy is in force.
            let policy =
                network::policy(name, &token, network, &facts, network::owned_by(&created));
            outcome = self.create_network_policy(&policy).await;
        }
        if outcome.is_err() {
            self.discard(&created).await;
        }
        landing.settled();
        outcome.map(|()| SandboxStatus::from_pod(&created))
    }

    /// Sends the create until it is answered, telling `landing` which tries
    /// may have made the pod.
    async fn post(
        &self,
        spec: &SandboxSpec,
        pod: &LeanPod,
        token: &str,
        landing: &mut Landing,
    ) -> Result<Pod> {
        let name = landing.name.as_str();
        let mut tries = Tries::start();
        let mut sent_before = false;
        let mut account_waits = 0;
        loop {
            landing.in_flight = true;
            let result = self.lean_pods().create(&PostParams::default(), pod).await;
            landing.in_flight = false;
            let err = match result {
                Ok(created) => return Ok(created.into()),
                Err(err) => err,
            };
            let status = api_status(&err);
            // Only a refusal (4xx) says for sure that nothing was made.
            landing.maybe_landed |= !status.is_some_and(|s| (400..500).contains(&s.code));
            if sent_before && status.is_some_and(|s| s.code == 409) {
                // Taken: by an earlier try of this create whose answer was lost?
                if let Some(existing) = retry(|| self.pods().get_opt(name))
                    .await
                    .map_err(|err| self.api_error(err))?
                {
                    if created_by(&existing, token) {
                        return Ok(existing);
                    }
                }
            }
            // A namespace made moments ago may not have its service account yet.
            if account_waits < SERVICE_ACCOUNT_RETRIES
                && status.is_some_and(|s| s.code == 403 && s.message.contains("service account"))
            {
                account_waits += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            if retry::is_transient(&err)
                && let Some(pause) = tries.pause_after(&err)
            {
                tokio::time::sleep(pause).await;
                sent_before = true;
                continue;
            }
            return Err(match self.sandbox_error(err, name) {
                Error::NameConflict { .. } if spec.name().is_none() => {
                    // A generated name collided: vanishingly rare, so say so plainly.
                    Error::invalid(
                        "name",
                        format!("generated name {name:?} collided; try again"),
                    )
                }
                other => other,
            });
        }
    }

    /// Deletes sandbox `status`, which a create returned but whose caller
    /// was gone by then (an asyncio cancel as the answer came back): only
    /// that very pod, the one of that name created at that time. Best effort.
    pub async fn discard_unreceived_sandbox(&self, status: &SandboxStatus) {
        if let Ok(Some(pod)) = retry(|| self.pods().get_opt(&status.name)).await
            && pod.metadata.creation_timestamp.as_ref().map(|t| t.0) == status.created_at
        {
            self.discard(&pod).await;
        }
    }

    /// Deletes `pod`, which this create made, exactly that pod (by uid).
    async fn discard(&self, pod: &Pod) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        // Best effort: gone already (404) or replaced (409) is as good.
        let _ = retry(|| self.pods().delete(&name, &params)).await;
    }

    /// Looks for the pod `name` that the create carrying `token` may have
    /// made, for a while, and deletes it once found.
    async fn discard_abandoned(&self, name: &str, token: &str) {
        for pause in ABANDONED_LOOKS {
            tokio::time::sleep(pause).await;
            match retry(|| self.pods().get_opt(name)).await {
                Ok(Some(pod)) if created_by(&pod, token) => return self.discard(&pod).await,
                Ok(Some(_)) => return, // someone else's: not ours to delete
                Ok(None) | Err(_) => {}
            }
        }
    }
}

/// What a pod gets beyond its spec: a pool's labels and annotations, and an
/// owner other than the client's pod.
#[derive(Debug, Default)]
pub(crate) struct PodExtras {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Owns the pod instead of the client's pod (if it has one).
    pub owner: Option<OwnerReference>,
}

fn created_by(pod: &Pod, token: &str) -> bool {
    labels::annotation(&pod.metadata, CREATE_TOKEN_ANNOTATION).is_some_and(|t| t == token)
}

/// Whether a create's pod may exist without its caller knowing, and the
/// clean-up when it may: dropped unsettled (the create failed, or its future
/// was dropped) after a request that may have landed, it deletes that pod
/// from a task of its own on the runtime the create ran on.
struct Landing {
    client: Client,
    name: String,
    token: String,
    runtime: Option<tokio::runtime::Handle>,
    /// A create request is on its way; its outcome is unknown.
    in_flight: bool,
    /// A request ended without a refusal and without the pod.
    maybe_landed: bool,
}

impl Landing {
    fn new(client: &Client, name: &str, token: &str) -> Self {
        Landing {
            client: client.clone(),
            name: name.to_owned(),
            token: token.to_owned(),
            runtime: tokio::runtime::Handle::try_current().ok(),
            in_flight: false,
            maybe_landed: false,
        }
    }

    /// The create is over and has handed its pod over (or deleted it): nothing
    /// to clean up.
    fn settled(&mut self) {
        self.in_flight = false;
        self.maybe_landed = false;
    }
}

impl Drop for Landing {
    fn drop(&mut self) {
        if !(self.in_flight || self.maybe_landed) {
            return;
        }
        if let Some(runtime) = &self.runtime {
            let (client, name, token) = (
                self.client.clone(),
                std::mem::take(&mut self.name),
                std::mem::take(&mut self.token),
            );
            runtime.spawn(async move { client.discard_abandoned(&name, &token).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::network::NetworkMode;
    use crate::spec::SandboxRequest;
    use crate::test_api::{Handle, body_json, client, failure, respond};

    /// A checked spec for a sandbox named "job".
    /// Sandbox "job" without a NetworkPolicy: the scripts below are about the pod.
    fn job_spec() -> SandboxSpec {
        SandboxSpec::try_from(SandboxRequest {
            name: Some("job".into()),
            network: Some(NetworkMode::Unrestricted),
            ..SandboxRequest::new("busybox:1.36")
        })
        .unwrap()
    }

    fn status_body(code: u16, reason: &str, retry_after: u32) -> serde_json::Value {
        let mut status = failure(code, reason);
        status["details"] = json!({"retryAfterSeconds": retry_after});
        status
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_create_is_retried_after_the_servers_delay() {
        let (client, mut handle) = client();
        let server = tokio::spawn(async move {
            let (request, reply) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), "POST");
            reply.send_response(respond(429, status_body(429, "TooManyRequests", 1)));
            let (request, reply) = handle.next_request().await.unwrap();
            let pod = body_json(request).await;
            reply.send_response(respond(201, pod));
        });
        let spec = job_spec();
        let status = client.create_sandbox(&spec).await.unwrap();
        assert_eq!(status.name, "job");
        server.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_throttled_for_half_a_minute_lands() {
        // API Priority and Fairness asks for a second's pause per refusal;
        // 30 refusals (about 38 s with the spread) stay inside the retry budget.
        let (client, mut handle) = client();
        let server = tokio::spawn(async move {
            for _ in 0..30 {
                let (_, reply) = handle.next_request().await.unwrap();
                reply.send_response(respond(429, status_body(429, "TooManyRequests", 1)));
            }
            let (request, reply) = handle.next_request().await.unwrap();
            let pod = body_json(request).await;
            reply.send_response(respond(201, pod));
        });
        let status = client.create_sandbox(&job_spec()).await.unwrap();
        assert_eq!(status.name, "job");
        server.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_read_while_recovering_a_lost_answer_is_retried() {
        let (client, mut handle) = client();
        let server = tokio::spawn(async move {
            // The create lands, but the server answers 503 after doing it.
            let (request, reply) = handle.next_request().await.unwrap();
            let stored = body_json(request).await;
            reply.send_response(respond(503, status_body(503, "ServiceUnavailable", 0)));
            let (_, reply) = handle.next_request().await.unwrap();
            reply.send_response(respond(409, status_body(409, "AlreadyExists", 0)));
            // The read that recognises it is throttled once.
            let (request, reply) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), "GET");
            reply.send_response(respond(429, status_body(429, "TooManyRequests", 1)));
            let (request, reply) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), "GET");
            reply.send_response(respond(200, stored));
        });
        let spec = job_spec();
        let status = client.create_sandbox(&spec).await.unwrap();
        assert_eq!(status.name, "job");
        server.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn create_whose_answer_was_lost_is_not_a_conflict() {
        let (client, mut handle) = client();
        let server = tokio::spawn(async move {
            // The first create lands, but its answer never arrives.
            let (request, reply) = handle.next_request().await.unwrap();
            let stored = body_json(request).await;
            reply.send_error(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset",
            ));
            // The retry finds the name taken, by the pod the first try made.
            let (_, reply) = handle.next_request().await.unwrap();
            reply.send_response(respond(409, status_body(409, "AlreadyExists", 0)));
            let (request, reply) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), "GET");
            reply.send_response(respond(200, stored));
        });
        let spec = job_spec();
        let status = client.create_sandbox(&spec).await.unwrap();
        assert_eq!(status.name, "job");
        server.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn name_taken_by_someone_else_is_a_conflict() {
        let (client, mut handle) = client();
        let server = tokio::spawn(async move {
            let (_, reply) = handle.next_request().await.unwrap();
            reply.send_response(respond(503, status_body(503, "ServiceUnavailable", 0)));
            let (_, reply) = handle.next_request().await.unwrap();
            reply.send_response(respond(409, status_body(409, "AlreadyExists", 0)));
            let (_, reply) = handle.next_request().await.unwrap();
            let other = SandboxSpec::try_from(SandboxRequest::new("busybox:1.36"))
                .unwrap()
                .to_pod("job");
            reply.send_response(respond(200, serde_json::to_value(other).unwrap()));
        });
        let spec = job_spec();
        let err = client.create_sandbox(&spec).await.unwrap_err();
        assert!(
            matches!(err.underlying(), Error::NameConflict { .. }),
            "{err:?}"
        );
        assert!(matches!(&err, Error::Create { name, .. } if name == "job"));
        server.await.unwrap();
    }

    /// Where a pod made by a create is deleted only if it is that very pod.
    async fn expect_delete_of(handle: &mut Handle, path: &str, uid: &str) {
        let (request, reply) = handle.next_request().await.unwrap();
        assert_eq!(
            (request.method().as_str(), request.uri().path()),
            ("DELETE", path)
        );
        let body = body_json(request).await;
        assert_eq!(body["preconditions"]["uid"], uid, "{body}");
        reply.send_response(respond(200, json!({"kind": "Status", "status": "Success"})));
    }

    // Only a scripted API server can hold a create's answer back while the
    // caller gives up on it, and start a volume's deletion between a
    // create's check and its request; the e2e tests cover the rest.

    #[tokio::test(start_paused = true)]
    async fn a_create_dropped_after_its_request_was_sent_deletes_the_pod_it_made() {
        let (client, mut handle) = client();
        let spec = SandboxSpec::try_from(SandboxRequest {
            network: Some(NetworkMode::Unrestricted),
            ..SandboxRequest::new("busybox:1.36")
        })
        .unwrap();
        let create = tokio::spawn({
            let client = client.clone();
            async move { client.create_sandbox(&spec).await }
        });
        let (request, _unanswered) = handle.next_request().await.unwrap();
        assert_eq!(request.method(), "POST");
        let mut stored = body_json(request).await;
        let name = stored["metadata"]["name"].as_str().unwrap().to_owned();
        assert!(name.starts_with("sb-"), "{name}");
        assert_eq!(
            stored["spec"]["activeDeadlineSeconds"], 3600,
            "the default lifetime"
        );
        // The caller gives up (asyncio cancel, Ctrl-C) before the answer.
        create.abort();
        assert!(create.await.unwrap_err().is_cancelled());

        let looked = tokio::time::timeout(Duration::from_secs(60), handle.next_request());
        let (request, reply) = looked.await.expect("nobody looks for the pod").unwrap();
        let path = format!("/api/v1/namespaces/test/pods/{name}");
        assert_eq!(
            (request.method().as_str(), request.uri().path()),
            ("GET", path.as_str())
        );
        stored["metadata"]["uid"] = json!("uid-1");
        reply.send_response(respond(200, stored));
        expect_delete_of(&mut handle, &path, "uid-1").await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_volume_whose_deletion_began_during_the_create_fails_it_and_its_pod_goes() {
        let (client, mut handle) = client();
        let server = tokio::spawn(async move {
            let claim =
                serde_json::to_value(crate::volume::VolumeSpec::new("data").to_claim()).unwrap();
            let (request, reply) = handle.next_request().await.unwrap();
            assert_eq!(
                request.uri().path(),
                "/api/v1/namespaces/test/persistentvolumeclaims/data"
            );
            reply.send_response(respond(200, claim.clone()));
            // Now a delete marks the claim, finds no user yet, and deletes it.
            let (request, reply) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), "POST");
            let mut pod = body_json(request).await;
            pod["metadata"]["uid"] = json!("uid-2");
            reply.send_response(respond(201, pod));
            let (request, reply) = handle.next_request().await.unwrap();
            assert_eq!(
                request.uri().path(),
                "/api/v1/namespaces/test/persistentvolumeclaims/data"
            );
            let mut deleting = claim;
            deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            reply.send_response(respond(200, deleting));
            expect_delete_of(&mut handle, "/api/v1/namespaces/test/pods/job", "uid-2").await;
        });
        let spec = SandboxSpec::try_from(SandboxRequest {
            name: Some("job".into()),
            volume_mounts: [("/data".to_owned(), "data".parse().unwrap())].into(),
            network: Some(NetworkMode::Unrestricted),
            ..SandboxRequest::new("busybox:1.36")
        })
        .unwrap();
        let err = client.create_sandbox(&spec).await.unwrap_err();
        assert!(
            matches!(err.underlying(), Error::VolumeDeleting { name, .. } if name == "data"),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("creating sandbox \"job\": volume \"data\""),
            "{err}"
        );
        server.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_network_policy_fails_the_create_and_its_pod_goes() {
        let (client, mut handle) = client();
        let server = tokio::spawn(async move {
            let (request, reply) = handle.next_request().await.unwrap();
            assert_eq!(
                (request.method().as_str(), request.uri().path()),
                ("POST", "/api/v1/namespaces/test/configmaps"),
                "the gate's program, once per client"
            );
            reply.send_response(respond(201, body_json(request).await));
            let (request, reply) = handle.next_request().await.unwrap();
            assert_eq!(
                request.uri().path(),
                "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
            );
            reply.send_response(respond(403, failure(403, "Forbidden")));
            let (request, reply) = handle.next_request().await.unwrap();
            assert_eq!(request.uri().path(), "/api/v1/namespaces/test/pods");
            let mut pod = body_json(request).await;
            assert_eq!(
                pod["spec"]["containers"][0]["command"][0],
                "/.sandlot-network-gate/gate"
            );
            pod["metadata"]["uid"] = json!("uid-3");
            reply.send_response(respond(201, pod));
            let (request, reply) = handle.next_request().await.unwrap();
            assert_eq!(
                request.uri().path(),
                "/apis/networking.k8s.io/v1/namespaces/test/networkpolicies"
            );
            let policy = body_json(request).await;
            assert_eq!(policy["metadata"]["ownerReferences"][0]["uid"], "uid-3");
            reply.send_response(respond(403, failure(403, "Forbidden")));
            expect_delete_of(&mut handle, "/api/v1/namespaces/test/pods/job", "uid-3").await;
        });
        let spec = SandboxSpec::try_from(SandboxRequest {
            name: Some("job".into()),
            ..SandboxRequest::new("busybox:1.36")
        })
        .unwrap();
        let err = client.create_sandbox(&spec).await.unwrap_err();
        assert!(
            matches!(err.underlying(), Error::PermissionDenied { .. }),
            "{err:?}"
        );
        server.await.unwrap();
    }
}
