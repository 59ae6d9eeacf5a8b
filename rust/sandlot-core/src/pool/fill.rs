//! Keeping a pool at its size without an operator: one pass reads the warm
//! pods, ends the dead, retires stale ones only while enough current ones
//! are ready, trims a surplus, starts what is missing, and readies running
//! pods (the network gate checked once and recorded on the pod, and this
//! client's agent connection opened, so a claim's first exec is immediate).

use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};

use super::Pool;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::labels::{
    self, GATE_PASSED_ANNOTATION, POOL_LABEL, POOL_TEMPLATE_ANNOTATION, WARM_LABEL,
};
use crate::network;
use crate::spec::SandboxSpec;
use crate::validate;

/// How often a fill that waits looks again.
const FILL_POLL: Duration = Duration::from_millis(500);
/// How many warm pods one pass starts at once.
const STARTS_AT_ONCE: usize = 8;
/// How long pods a client started are watched for, to ready them.
const READY_WATCH: Duration = Duration::from_secs(120);
/// How often they are looked at.
const READY_POLL: Duration = Duration::from_millis(500);
/// How long a client keeps its connection to a warm sandbox's agent open
/// while no one claims it.
const WARM_LINK_KEPT: Duration = Duration::from_secs(600);

/// A pool's warm pods, sorted by what a fill and a claim do with them.
#[derive(Debug, Default)]
pub(crate) struct Census {
    /// Current template, running, gate recorded as passed: claimed first.
    pub ready: Vec<Pod>,
    /// Current template, not yet ready (running ones among them can be
    /// claimed, their gate then checked by the first exec).
    pub starting: Vec<Pod>,
    /// Older template or past the idle lifetime, still alive.
    pub stale: Vec<Pod>,
    /// Ended, failed, being deleted, or another pool's (an earlier one of
    /// the same name).
    pub dead: Vec<Pod>,
}

impl Census {
    pub fn of(pool: &Pool, pods: &[Pod], now: jiff::Timestamp) -> Census {
        let mut census = Census::default();
        for pod in pods {
            let meta = &pod.metadata;
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            // A pod of an earlier pool of the same name is not this one's.
            let owned = meta
                .owner_references
                .iter()
                .flatten()
                .any(|owner| owner.uid == pool.owner.uid);
            if !owned
                || meta.deletion_timestamp.is_some()
                || matches!(phase, Some("Succeeded" | "Failed"))
            {
                census.dead.push(pod.clone());
                continue;
            }
            let born = meta.creation_timestamp.as_ref().map_or(now, |t| t.0);
            let idle_for = now.duration_since(born).as_secs();
            let current = labels::label(meta, WARM_LABEL) == Some(&pool.version)
                && idle_for < pool.idle_seconds;
            if !current {
                census.stale.push(pod.clone());
            } else if is_ready(pod) {
                census.ready.push(pod.clone());
            } else {
                census.starting.push(pod.clone());
            }
        }
        // Oldest first everywhere: claimed first, retired first.
        for pods in [&mut census.ready, &mut census.starting, &mut census.stale] {
            pods.sort_by_key(|pod| pod.metadata.creation_timestamp.as_ref().map(|t| t.0));
        }
        census
    }
}

/// What the first starting pod waits for, as Kubernetes says it (", the
/// first one starting: ErrImagePull ..."), or nothing.
fn waiting_for(census: &Census) -> String {
    census
        .starting
        .iter()
        .find_map(|pod| crate::status::SandboxStatus::from_pod(pod).message)
        .map(|message| format!("; the first one starting: {message}"))
        .unwrap_or_default()
}

/// Whether the sandbox container of `pod` runs.
pub(crate) fn is_running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && crate::status::SandboxStatus::from_pod(pod).phase == crate::status::Phase::Running
}

/// Whether `pod` runs its workload: running, and its network gate (if it
/// has one as entrypoint) recorded as passed for this very pod.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    is_running(pod)
        && (!network::gate_is_entrypoint(pod)
            || labels::annotation(&pod.metadata, GATE_PASSED_ANNOTATION)
                == pod.metadata.uid.as_ref())
}

/// The dead pods of `census`, and its stale ones that current pods can
/// serve instead: running stale ones only beyond what the ready current ones
/// lack of `size` (oldest first), the others at once.
fn retirable(census: &Census, size: usize) -> Vec<&Pod> {
    let mut retiring: Vec<&Pod> = census.dead.iter().collect();
    let (stale_running, stale_other): (Vec<&Pod>, Vec<&Pod>) =
        census.stale.iter().partition(|pod| is_running(pod));
    retiring.extend(stale_other);
    let keep = size
        .saturating_sub(census.ready.len())
        .min(stale_running.len());
    retiring.extend(&stale_running[..stale_running.len() - keep]);
    retiring
}

impl Client {
    /// Tops pool `name` up to its size (see the module's doc). With `wait`,
    /// passes are made until as many warm pods as its size are ready and no
    /// stale one is left, for at most that long ([`Error::Timeout`] after).
    pub async fn fill_pool(&self, name: &str, wait: Option<Duration>) -> Result<super::PoolStatus> {
        super::check_pool_name("name", name)?;
        let deadline = wait.map(crate::deadline_after);
        loop {
            let pool = self.read_pool(name).await?;
            let pods = self.fill_once(&pool).await?;
            let census = Census::of(&pool, &pods, jiff::Timestamp::now());
            let full = census.ready.len() >= pool.size as usize && census.stale.is_empty();
            match deadline {
                None => return Ok(self.pool_status(&pool, &pods)),
                Some(_) if full => return Ok(self.pool_status(&pool, &pods)),
                Some(deadline) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::Timeout {
                        what: format!(
                            "pool {name:?} to be full: {} of {} warm sandboxes ready, {} \
                             stale{}",
                            census.ready.len(),
                            pool.size,
                            census.stale.len(),
                            waiting_for(&census)
                        ),
                        after: wait.unwrap_or_default(),
                    });
                }
                Some(_) => tokio::time::sleep(FILL_POLL).await,
            }
        }
    }

    /// One fill pass over `pool`; returns its warm pods as they stand after it.
    async fn fill_once(&self, pool: &Pool) -> Result<Vec<Pod>> {
        let pods = self.warm_pods(&pool.name).await?;
        let census = Census::of(pool, &pods, jiff::Timestamp::now());
        let size = pool.size as usize;
        let mut retiring = retirable(&census, size);
        // A surplus (a smaller size, or two fills at once): the newest
        // starting ones first.
        let current: Vec<&Pod> = census
            .starting
            .iter()
            .rev()
            .chain(census.ready.iter().rev())
            .collect();
        let surplus = current.len().saturating_sub(size);
        retiring.extend(&current[..surplus]);
        let missing = size.saturating_sub(current.len());

        join_all(retiring.iter().map(|pod| self.retire(pod))).await;
        let started: Vec<Result<String>> =
            futures::stream::iter((0..missing).map(|_| self.start_warm(pool)))
                .buffer_unordered(STARTS_AT_ONCE)
                .collect()
                .await;
        let started = started.into_iter().collect::<Result<Vec<String>>>()?;
        if !started.is_empty() {
            let (client, pool) = (self.clone(), pool.name.clone());
            tokio::spawn(async move { client.ready_when_running(&pool, started).await });
        }
        let kept = census.starting.len() - surplus.min(census.starting.len());
        let unready: Vec<&Pod> = census.starting[..kept]
            .iter()
            .filter(|pod| is_running(pod))
            .collect();
        join_all(unready.iter().map(|pod| self.ready_warm(pod))).await;
        self.warm_pods(&pool.name).await
    }

    /// Retires what a pass may retire of `pool`'s warm pods without starting
    /// any: what a claim does after starting its replacement.
    async fn retire_stale(&self, pool: &Pool) {
        if let Ok(pods) = self.warm_pods(&pool.name).await {
            let census = Census::of(pool, &pods, jiff::Timestamp::now());
            let retiring = retirable(&census, pool.size as usize);
            join_all(retiring.iter().map(|pod| self.retire(pod))).await;
        }
    }

    /// Starts one warm pod of `pool`'s template; returns its name.
    pub(crate) async fn start_warm(&self, pool: &Pool) -> Result<String> {
        let mut request = pool.template.request();
        request.name = Some(validate::generated_name(&format!("{}-", pool.name)));
        request.ttl_seconds = super::warm_deadline(pool);
        let spec = SandboxSpec::try_from(request)?;
        let extras = crate::sandbox::PodExtras {
            labels: [
                (POOL_LABEL.to_owned(), pool.name.clone()),
                (WARM_LABEL.to_owned(), pool.version.clone()),
            ]
            .into(),
            annotations: [(
                POOL_TEMPLATE_ANNOTATION.to_owned(),
                pool.template_json.clone(),
            )]
            .into(),
            owner: Some(pool.owner.clone()),
        };
        let status = self.create_sandbox_with(&spec, &extras).await?;
        Ok(status.name)
    }

    /// Starts a replacement for a warm pod just claimed from `pool`, unless
    /// the pool (read again) already has its size, and retires stale ones
    /// that current ones can stand in for (a process about to exit waits for
    /// this, see [`crate::wait_for_background_kills`]); then readies the
    /// replacement once it runs, from a task of its own. Best effort.
    pub(crate) fn replace_claimed(&self, pool: &str) {
        let pool = pool.to_owned();
        let client = self.clone();
        let runtime = tokio::runtime::Handle::current();
        crate::sandbox::in_background(&runtime.clone(), async move {
            // As the pool stands now: resized or changed since the claim read it?
            let Ok(pool) = client.read_pool(&pool).await else {
                return;
            };
            let Ok(pods) = client.warm_pods(&pool.name).await else {
                return;
            };
            let census = Census::of(&pool, &pods, jiff::Timestamp::now());
            if census.ready.len() + census.starting.len() >= pool.size as usize {
                return client.retire_stale(&pool).await;
            }
            if let Ok(name) = client.start_warm(&pool).await {
                client.retire_stale(&pool).await;
                let pool = pool.name;
                runtime.spawn(async move { client.ready_when_running(&pool, vec![name]).await });
            }
        });
    }

    /// Readies the warm pods `names` of pool `pool` as they come to run,
    /// looking at the pool's warm pods (one list) every [`READY_POLL`] for
    /// at most [`READY_WATCH`]; one gone, claimed or ended is dropped.
    async fn ready_when_running(&self, pool: &str, mut names: Vec<String>) {
        let until = tokio::time::Instant::now() + READY_WATCH;
        while !names.is_empty() && tokio::time::Instant::now() < until {
            tokio::time::sleep(READY_POLL).await;
            let Ok(pods) = self.warm_pods(pool).await else {
                return;
            };
            let mut running = Vec::new();
            names.retain(|name| {
                let Some(pod) = pods.iter().find(|p| p.metadata.name.as_ref() == Some(name)) else {
                    return false; // claimed (no longer warm) or gone
                };
                if crate::status::SandboxStatus::from_pod(pod)
                    .phase
                    .is_terminal()
                {
                    return false;
                }
                if is_running(pod) {
                    running.push(pod.clone());
                    return false;
                }
                true
            });
            join_all(running.iter().map(|pod| self.ready_warm(pod))).await;
        }
    }

    /// Readies running warm pod `pod`: checks its network gate as a first
    /// exec would, records the pass on the pod for every client (only when
    /// this client saw this very gate say so), and opens this client's
    /// connection to its agent, kept open while the pod waits. Best effort:
    /// a pod a claim took meanwhile is left alone.
    async fn ready_warm(&self, pod: &Pod) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Ok(now) = self.ready_for_exec_as(&name, true).await else {
            return;
        };
        let uid = now.metadata.uid.clone().unwrap_or_default();
        let seen =
            self.gates_passed().lock().unwrap().contains(&uid) && network::runs_this_gate(&now);
        if labels::label(&now.metadata, WARM_LABEL).is_none() {
            return; // claimed meanwhile
        }
        if self.open_warm_route(&name).await.is_ok()
            && let Some(link) = self.agent().held(&name)
        {
            link.keep_open_until(Some(tokio::time::Instant::now() + WARM_LINK_KEPT));
        }
        if seen
            && network::gate_is_entrypoint(&now)
            && labels::annotation(&now.metadata, GATE_PASSED_ANNOTATION) != Some(&uid)
        {
            // True of this pod whoever holds it now: no version condition.
            let patch = serde_json::json!({"metadata": {
                "annotations": {GATE_PASSED_ANNOTATION: uid},
            }});
            let _ = self
                .pods()
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
        }
    }
}
