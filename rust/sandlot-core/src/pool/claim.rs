//! A create from a pool: take a warm pod that fits what the create asks, by
//! a patch conditioned on the version read (so two clients never get the
//! same pod), turning it into the caller's sandbox (tags, lifetime,
//! environment, owner); else a cold create from the pool's template, with
//! the reason recorded on the sandbox.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use rand::seq::SliceRandom;

use super::fill::{Census, is_running};
use super::{Pool, PoolTemplate};
use crate::client::Client;
use crate::error::{Result, api_status};
use crate::labels::{
    self, CLAIM_TOKEN_ANNOTATION, ENV_ANNOTATION, POOL_TEMPLATE_ANNOTATION, TAG_LABEL_PREFIX,
    TTL_ANNOTATION, WARM_LABEL,
};
use crate::retry::{self, retry};
use crate::spec::{SandboxRequest, SandboxSpec};
use crate::status::SandboxStatus;

/// What a create from a pool came to.
pub(crate) enum Claim {
    /// A warm pod, now the caller's sandbox.
    Taken(Box<SandboxStatus>),
    /// None fits or none is ready: create `spec` cold, recording `reason`.
    Cold {
        spec: Box<SandboxSpec>,
        reason: String,
    },
}

/// Why a create asking for `request` cannot take a warm pod of `template`,
/// naming the option that differs; `None` if it can.
pub(crate) fn misfit(request: &SandboxRequest, template: &PoolTemplate) -> Option<String> {
    let differs = |field: &str| Some(format!("{field} differs from the pool's"));
    if request.name.is_some() {
        return Some("a name was given (sandboxes from a pool have generated names)".into());
    }
    if request.command.is_some() || request.args.is_some() {
        return Some("a command was given (sandboxes from a pool idle until exec)".into());
    }
    if !request.volume_mounts.is_empty() {
        return Some("volume_mounts were given (a warm sandbox has none)".into());
    }
    if !request.image.is_empty() && request.image != template.image {
        return differs("image");
    }
    let resources = &request.resources;
    for (field, asked, pooled) in [
        ("resources.cpu", &resources.cpu, &template.cpu),
        ("resources.memory", &resources.memory, &template.memory),
        ("resources.disk", &resources.disk, &template.disk),
    ] {
        if asked.is_some() && asked != pooled {
            return differs(field);
        }
    }
    if request.network.is_some() && request.network != template.network {
        return differs("network");
    }
    if !request.allow_egress.is_empty() && request.allow_egress != template.allow_egress {
        return differs("allow_egress");
    }
    if request.run_as_user.is_some() && request.run_as_user != template.run_as_user {
        return differs("run_as_user");
    }
    if request.read_only_root_filesystem && !template.read_only_root_filesystem {
        return differs("read_only_root_filesystem");
    }
    if request.runtime_class.is_some() && request.runtime_class != template.runtime_class {
        return differs("runtime_class");
    }
    if request.user_namespace.is_some() && request.user_namespace != template.user_namespace {
        return differs("user_namespace");
    }
    None
}

/// The request of a cold create from `template`: the pool's options, with
/// those the create gave in their place, its environment added to the pool's.
pub(crate) fn cold_request(request: &SandboxRequest, template: &PoolTemplate) -> SandboxRequest {
    let mut cold = template.request();
    if !request.image.is_empty() {
        cold.image = request.image.clone();
    }
    cold.name = request.name.clone();
    cold.command = request.command.clone();
    cold.args = request.args.clone();
    cold.env.extend(request.env.clone());
    cold.tags = request.tags.clone();
    cold.volume_mounts = request.volume_mounts.clone();
    let resources = &request.resources;
    for (asked, cold) in [
        (&resources.cpu, &mut cold.resources.cpu),
        (&resources.memory, &mut cold.resources.memory),
        (&resources.disk, &mut cold.resources.disk),
    ] {
        if asked.is_some() {
            cold.clone_from(asked);
        }
    }
    cold.ttl_seconds = request.ttl_seconds;
    if request.network.is_some() || !request.allow_egress.is_empty() {
        cold.network = request.network;
        cold.allow_egress = request.allow_egress.clone();
    }
    cold.run_as_user = request.run_as_user.or(cold.run_as_user);
    cold.read_only_root_filesystem |= request.read_only_root_filesystem;
    cold.runtime_class = request.runtime_class.clone().or(cold.runtime_class);
    cold.user_namespace = request.user_namespace.or(cold.user_namespace);
    cold
}

impl Client {
    /// Takes a warm pod of pool `pool_name` for `spec`, or says why a cold
    /// create must serve it. [`crate::Error::NotFound`] if there is no such pool.
    pub(crate) async fn claim(&self, spec: &SandboxSpec, pool_name: &str) -> Result<Claim> {
        let pool = self.read_pool(pool_name).await?;
        let request = spec.request();
        let cold = |reason: String| -> Result<Claim> {
            let spec = SandboxSpec::try_from(cold_request(request, &pool.template))?;
            Ok(Claim::Cold {
                spec: Box::new(spec),
                reason,
            })
        };
        if let Some(reason) = misfit(request, &pool.template) {
            return cold(reason);
        }
        let ttl = match request.ttl_seconds.seconds_or(self.default_ttl()) {
            Some(ttl) if ttl <= pool.max_ttl_seconds => ttl,
            Some(_) => {
                return cold(format!(
                    "ttl_seconds is longer than the pool's max_ttl_seconds ({})",
                    pool.max_ttl_seconds
                ));
            }
            None => {
                return cold(format!(
                    "no lifetime (ttl_seconds=None) never fits a pool (its max_ttl_seconds is {})",
                    pool.max_ttl_seconds
                ));
            }
        };
        for _ in 0..2 {
            let pods = self.warm_pods(pool_name).await?;
            for pod in self.candidates(&pool, request, &pods) {
                if let Some(taken) = self.take(&pod, request, ttl).await? {
                    self.replace_claimed(&pool.name);
                    return Ok(Claim::Taken(Box::new(SandboxStatus::from_pod(&taken))));
                }
            }
        }
        cold("the pool had no warm sandbox ready".into())
    }

    /// Makes warm pod `pod` the sandbox `request` asks for, unless it changed
    /// since it was read: `None` then (another claim, or a fill, took it).
    async fn take(&self, pod: &Pod, request: &SandboxRequest, ttl: i64) -> Result<Option<Pod>> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let started = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map_or(jiff::Timestamp::now(), |t| t.0);
        // Kubernetes counts the deadline from the pod's start.
        let age = jiff::Timestamp::now()
            .duration_since(started)
            .as_secs()
            .max(0)
            + 1;
        let deadline = age + ttl;
        let allowed = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds);
        if allowed.is_some_and(|allowed| deadline > allowed) {
            return Ok(None);
        }
        let mut labels: BTreeMap<String, Option<String>> =
            BTreeMap::from([(WARM_LABEL.to_owned(), None)]);
        labels.extend(
            request
                .tags
                .iter()
                .map(|(key, value)| (format!("{TAG_LABEL_PREFIX}{key}"), Some(value.clone()))),
        );
        let mut annotations = BTreeMap::from([
            (TTL_ANNOTATION.to_owned(), Some(ttl.to_string())),
            (POOL_TEMPLATE_ANNOTATION.to_owned(), None),
        ]);
        if !request.env.is_empty() {
            let env = serde_json::to_string(&request.env).expect("env serializes");
            annotations.insert(ENV_ANNOTATION.to_owned(), Some(env));
        }
        let token = crate::validate::generated_name("");
        annotations.insert(CLAIM_TOKEN_ANNOTATION.to_owned(), Some(token.clone()));
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": pod.metadata.resource_version,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": self.owner().map(|owner| vec![owner.clone()]),
            },
            "spec": {"activeDeadlineSeconds": deadline},
        });
        let params = PatchParams::default();
        let mut tries = retry::Tries::start();
        let mut guard = ClaimGuard {
            client: self.clone(),
            name: name.clone(),
            token: token.clone(),
            armed: true,
        };
        let taken = loop {
            let err = match self
                .pods()
                .patch(&name, &params, &Patch::Merge(&patch))
                .await
            {
                Ok(taken) => break taken,
                Err(err) => err,
            };
            let status = api_status(&err);
            // Changed (claimed, readied, ending) or gone since it was read.
            if status.is_some_and(|s| matches!(s.code, 404 | 409 | 422)) && tries.failures() == 0 {
                guard.armed = false;
                return Ok(None);
            }
            if !retry::is_transient(&err) && tries.failures() == 0 {
                guard.armed = false;
                return Err(self.sandbox_error(err, &name));
            }
            // The first try may have landed with its answer lost: ours if
            // it carries this claim's token.
            let now = retry(|| self.pods().get_opt(&name))
                .await
                .map_err(|err| self.sandbox_error(err, &name))?;
            match now {
                Some(now)
                    if labels::annotation(&now.metadata, CLAIM_TOKEN_ANNOTATION)
                        == Some(&token) =>
                {
                    break now;
                }
                Some(now)
                    if now.metadata.resource_version == pod.metadata.resource_version
                        && retry::is_transient(&err)
                        && let Some(pause) = tries.pause_after(&err) =>
                {
                    tokio::time::sleep(pause).await;
                }
                _ if retry::is_transient(&err) || status.is_some_and(|s| s.code == 409) => {
                    return Ok(None);
                }
                _ => return Err(self.sandbox_error(err, &name)),
            }
        };
        guard.armed = false;
        // Its connection now idles and closes as any other.
        if let Some(link) = self.agent().held(&name) {
            link.keep_open_until(None);
        }
        Ok(Some(taken))
    }
}

/// A claim that may have landed unknown to its caller (its future dropped
/// while the patch was on its way): dropped armed, it deletes the pod if
/// that claim took it, from a task of its own.
struct ClaimGuard {
    client: Client,
    name: String,
    token: String,
    armed: bool,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.armed {
            return;
        }
        let (client, name, token) = (
            self.client.clone(),
            std::mem::take(&mut self.name),
            std::mem::take(&mut self.token),
        );
        crate::sandbox::in_background(&runtime, async move {
            // A patch still in flight may land a moment later.
            for pause in [0, 500, 2000] {
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                if let Ok(Some(pod)) = retry(|| client.pods().get_opt(&name)).await
                    && labels::annotation(&pod.metadata, CLAIM_TOKEN_ANNOTATION) == Some(&token)
                {
                    let _ = client.terminate_sandbox(&name).await;
                    return;
                }
            }
        });
    }
}

impl Client {
    /// The warm pods a claim tries, in order: ready ones of the current
    /// template (those this client holds a connection to first), then
    /// running ones whose gate is not yet recorded, then running stale ones
    /// that fit the request (while an update is rolled out); each group
    /// shuffled, so that concurrent claims rarely meet.
    fn candidates(&self, pool: &Pool, request: &SandboxRequest, pods: &[Pod]) -> Vec<Pod> {
        let census = Census::of(pool, pods, jiff::Timestamp::now());
        let mut rng = rand::rng();
        let mut ready = census.ready;
        ready.shuffle(&mut rng);
        let held = |pod: &Pod| {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            self.agent().held(name).is_some()
        };
        ready.sort_by_key(|pod| !held(pod));
        let mut running: Vec<Pod> = census.starting.into_iter().filter(is_running).collect();
        running.shuffle(&mut rng);
        let mut stale: Vec<Pod> = census
            .stale
            .into_iter()
            .filter(|pod| is_running(pod) && fits(pod, request, &pool.template))
            .collect();
        stale.shuffle(&mut rng);
        ready.into_iter().chain(running).chain(stale).collect()
    }
}

/// Whether a stale warm pod may serve `request` while none of the pool's
/// `current` template is ready: its own template fits the request, and it is
/// contained exactly as the current one says (only the image, env,
/// resources and lifetimes may differ).
fn fits(pod: &Pod, request: &SandboxRequest, current: &PoolTemplate) -> bool {
    labels::annotation(&pod.metadata, POOL_TEMPLATE_ANNOTATION)
        .and_then(|json| serde_json::from_str::<PoolTemplate>(json).ok())
        .is_some_and(|old| misfit(request, &old).is_none() && same_containment(&old, current))
}

/// Whether two templates contain their sandboxes alike: network, allowlist,
/// runtime class, user namespace, uid and read-only root.
pub(crate) fn same_containment(a: &PoolTemplate, b: &PoolTemplate) -> bool {
    a.network == b.network
        && a.allow_egress == b.allow_egress
        && a.runtime_class == b.runtime_class
        && a.user_namespace == b.user_namespace
        && a.run_as_user == b.run_as_user
        && a.read_only_root_filesystem == b.read_only_root_filesystem
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::NetworkMode;
    use crate::spec::Ttl;

    fn template() -> PoolTemplate {
        PoolTemplate {
            image: "python:3.12".into(),
            memory: Some("256Mi".into()),
            network: Some(NetworkMode::None),
            env: BTreeMap::from([("A".into(), "pool".into())]),
            ..PoolTemplate::default()
        }
    }

    #[test]
    fn a_claim_fits_unless_it_asks_for_what_a_warm_pod_cannot_change() {
        let fitting = SandboxRequest {
            tags: BTreeMap::from([("job".into(), "1".into())]),
            env: BTreeMap::from([("B".into(), "claim".into())]),
            ttl_seconds: Ttl::Seconds(60),
            ..SandboxRequest::default()
        };
        assert_eq!(misfit(&fitting, &template()), None);
        let same = SandboxRequest {
            image: "python:3.12".into(),
            network: Some(NetworkMode::None),
            resources: crate::spec::Resources {
                memory: Some("256Mi".into()),
                ..Default::default()
            },
            ..fitting.clone()
        };
        assert_eq!(misfit(&same, &template()), None);
        for (request, word) in [
            (
                SandboxRequest {
                    name: Some("job".into()),
                    ..fitting.clone()
                },
                "name",
            ),
            (
                SandboxRequest {
                    image: "python:3.13".into(),
                    ..fitting.clone()
                },
                "image",
            ),
            (
                SandboxRequest {
                    network: Some(NetworkMode::Internet),
                    ..fitting.clone()
                },
                "network",
            ),
            (
                SandboxRequest {
                    command: Some(vec!["true".into()]),
                    ..fitting.clone()
                },
                "command",
            ),
            (
                SandboxRequest {
                    read_only_root_filesystem: true,
                    ..fitting.clone()
                },
                "read_only_root_filesystem",
            ),
        ] {
            let reason = misfit(&request, &template()).unwrap();
            assert!(reason.contains(word), "{reason}");
        }
    }

    #[test]
    fn a_stale_pod_serves_only_if_contained_as_the_current_template_says() {
        let old = template();
        let mut newer = template();
        newer.image = "python:3.13".into();
        newer.env.clear();
        assert!(same_containment(&old, &newer));
        for change in [
            |t: &mut PoolTemplate| t.network = Some(NetworkMode::Internet),
            |t: &mut PoolTemplate| t.runtime_class = Some("gvisor".into()),
            |t: &mut PoolTemplate| t.read_only_root_filesystem = true,
            |t: &mut PoolTemplate| t.run_as_user = Some(1000),
            |t: &mut PoolTemplate| t.user_namespace = Some(true),
        ] {
            let mut hardened = template();
            change(&mut hardened);
            assert!(!same_containment(&old, &hardened), "{hardened:?}");
        }
    }

    #[test]
    fn a_cold_create_keeps_the_pools_options_and_adds_the_claims() {
        let request = SandboxRequest {
            name: Some("job".into()),
            env: BTreeMap::from([("B".into(), "claim".into())]),
            ttl_seconds: Ttl::Seconds(60),
            ..SandboxRequest::default()
        };
        let cold = cold_request(&request, &template());
        assert_eq!(cold.image, "python:3.12");
        assert_eq!(cold.name.as_deref(), Some("job"));
        assert_eq!(cold.resources.memory.as_deref(), Some("256Mi"));
        assert_eq!(cold.network, Some(NetworkMode::None));
        assert_eq!(cold.ttl_seconds, Ttl::Seconds(60));
        assert_eq!(cold.env.len(), 2);
        assert_eq!(cold.pool, None);
    }
}
