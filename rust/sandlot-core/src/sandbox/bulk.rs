use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Preconditions};

use crate::agent::AGENT_PROGRAM;
use crate::network::GATE_PROGRAM;

use crate::client::Client;
use crate::error::{Error, Result, api_status};
use crate::retry::{self, Tries};
use crate::sandbox::ListFilter;
use crate::status::{Phase, SandboxStatus};
use crate::validate;

/// How many sandboxes are terminated or purged at the same time.
pub const BULK_CONCURRENCY: usize = 16;

/// Which sandboxes a bulk operation applies to.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// These names (each must exist).
    pub names: Vec<String>,
    /// Sandboxes carrying all of these tags.
    pub tags: BTreeMap<String, String>,
    /// Sandboxes in any of these phases.
    pub phases: Vec<Phase>,
    /// Every sandbox of the namespace; excludes the other fields.
    pub all: bool,
}

/// Names-only selections at least this long are read in one paged list.
const LIST_NAMES_FROM: usize = 50;

/// A sandbox a bulk terminate works on.
enum Target {
    /// Its pod as a list gave it.
    Listed(Box<Pod>),
    /// Only its name: its terminate starts from the shared watch's copy
    /// or reads the pod when its turn comes.
    Named(String),
}

/// What happened to one sandbox of a bulk terminate.
#[derive(Debug)]
pub struct TerminateOutcome {
    pub name: String,
    /// The sandbox's status afterwards; `None` if terminating it failed.
    pub status: Option<SandboxStatus>,
    /// Why it could not be terminated.
    pub error: Option<Error>,
}

impl TerminateOutcome {
    /// True if the sandbox is terminated now (including one that already was).
    pub fn terminated(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.phase == Phase::Terminated)
    }
}

impl Selection {
    fn validate(&self) -> Result<()> {
        let filtered = !self.tags.is_empty() || !self.phases.is_empty();
        if self.all && (filtered || !self.names.is_empty()) {
            return Err(Error::invalid(
                "all",
                "cannot be combined with names, tags or phase",
            ));
        }
        if !self.all && !filtered && self.names.is_empty() {
            return Err(Error::invalid(
                "names",
                "name the sandboxes, or select them by tags or phase, or pass all=True",
            ));
        }
        for name in &self.names {
            validate::object_name("names", name)?;
        }
        Ok(())
    }
}

impl Client {
    /// Waits until every sandbox in `names` is in one of `phases`, reading the one
    /// shared pod watch, and returns their statuses in the order given. Fails as
    /// soon as one of them cannot get there ([`Error::PhaseUnreachable`]).
    pub async fn wait_sandboxes(
        &self,
        names: &[String],
        phases: &[Phase],
        timeout: Duration,
    ) -> Result<Vec<SandboxStatus>> {
        futures::future::try_join_all(
            names
                .iter()
                .map(|name| self.wait_sandbox(name, phases, timeout)),
        )
        .await
    }

    /// The names a selection resolves to, in a stable order.
    pub async fn select_sandboxes(&self, selection: &Selection) -> Result<Vec<String>> {
        selection.validate()?;
        if !selection.names.is_empty() && selection.tags.is_empty() && selection.phases.is_empty() {
            return Ok(selection.names.clone());
        }
        let filter = ListFilter {
            phases: selection.phases.clone(),
            tags: selection.tags.clone(),
        };
        let matching = self
            .list_sandboxes(&filter)
            .await?
            .into_iter()
            .map(|s| s.name);
        let asked: std::collections::HashSet<&str> =
            selection.names.iter().map(String::as_str).collect();
        Ok(if selection.names.is_empty() {
            matching.collect()
        } else {
            matching
                .filter(|name| asked.contains(name.as_str()))
                .collect()
        })
    }

    /// What a bulk terminate works on: the pods of a list where the selection
    /// needs one (tags, phases, all) or names many enough that one paged
    /// list costs less than a read of each; else the names, each read when
    /// its turn comes. Names the shared watch holds every pod of need no
    /// list either: each terminate starts from the watch's copy (one out of
    /// date fails the patch's precondition and is read afresh), and ten
    /// thousand pods are not held twice.
    async fn select_targets(&self, selection: &Selection) -> Result<Vec<Target>> {
        selection.validate()?;
        let names_only = selection.tags.is_empty() && selection.phases.is_empty() && !selection.all;
        if names_only
            && (selection.names.len() < LIST_NAMES_FROM || self.watch_holds_all(&selection.names))
        {
            return Ok(selection.names.iter().cloned().map(Target::Named).collect());
        }
        let filter = ListFilter {
            phases: selection.phases.clone(),
            tags: selection.tags.clone(),
        };
        let pods = self.list_sandboxes_keeping(&filter, |pod| pod).await?;
        if selection.names.is_empty() {
            return Ok(pods
                .into_iter()
                .map(|(pod, _)| Target::Listed(Box::new(pod)))
                .collect());
        }
        let mut listed: HashMap<String, Pod> = pods
            .into_iter()
            .map(|(pod, status)| (status.name, pod))
            .collect();
        Ok(selection
            .names
            .iter()
            .filter_map(|name| match listed.remove(name) {
                Some(pod) => Some(Target::Listed(Box::new(pod))),
                // Not listed: missing (its terminate says so), or outside
                // the tags or phases asked for.
                None if names_only => Some(Target::Named(name.clone())),
                None => None,
            })
            .collect())
    }

    /// Terminates every selected sandbox, [`BULK_CONCURRENCY`] at a time, and
    /// reports each one. Sandboxes that already ended are left as they are.
    pub async fn terminate_sandboxes(
        &self,
        selection: &Selection,
    ) -> Result<Vec<TerminateOutcome>> {
        self.terminate_sandboxes_with(selection, |_| {}).await
    }

    /// [`Client::terminate_sandboxes`], calling `on_each` as each sandbox is done
    /// (for progress displays).
    pub async fn terminate_sandboxes_with(
        &self,
        selection: &Selection,
        on_each: impl Fn(&TerminateOutcome),
    ) -> Result<Vec<TerminateOutcome>> {
        let targets = self.select_targets(selection).await?;
        let on_each = &on_each;
        let outcomes = stream::iter(targets)
            .map(|target| async move {
                let (name, terminated) = match target {
                    Target::Listed(pod) => (
                        pod.metadata.name.clone().unwrap_or_default(),
                        self.terminate_listed(&pod).await,
                    ),
                    Target::Named(name) => {
                        let terminated = self.terminate_sandbox(&name).await;
                        (name, terminated)
                    }
                };
                let outcome = match terminated {
                    Ok(status) => TerminateOutcome {
                        name,
                        status: Some(status),
                        error: None,
                    },
                    Err(err) => TerminateOutcome {
                        name,
                        status: None,
                        error: Some(err),
                    },
                };
                on_each(&outcome);
                outcome
            })
            .buffered(BULK_CONCURRENCY)
            .collect()
            .await;
        Ok(outcomes)
    }

    /// The selected sandboxes that have ended (succeeded, failed or terminated)
    /// and, with `older_than`, ended at least that long ago: what
    /// [`Client::purge_sandboxes`] would delete.
    pub async fn purge_candidates(
        &self,
        selection: &Selection,
        older_than: Option<Duration>,
    ) -> Result<Vec<String>> {
        Ok(self
            .purge_candidate_records(selection, older_than)
            .await?
            .into_iter()
            .map(|record| record.name)
            .collect())
    }

    async fn purge_candidate_records(
        &self,
        selection: &Selection,
        older_than: Option<Duration>,
    ) -> Result<Vec<PurgeRecord>> {
        selection.validate()?;
        let too_large = || Error::invalid("older_than", "is too large");
        let cutoff = match older_than {
            Some(age) => Some(
                jiff::Timestamp::now()
                    .checked_sub(jiff::SignedDuration::try_from(age).map_err(|_| too_large())?)
                    .map_err(|_| too_large())?,
            ),
            None => None,
        };
        // Only ended sandboxes are purged: the list keeps no others.
        let asked_phases = match selection.phases.as_slice() {
            [] => Phase::ALL.as_slice(),
            phases => phases,
        };
        let phases: Vec<Phase> = asked_phases
            .iter()
            .copied()
            .filter(|p| p.is_terminal())
            .collect();
        if phases.is_empty() {
            return Ok(Vec::new());
        }
        let names_only = selection.tags.is_empty() && selection.phases.is_empty() && !selection.all;
        if names_only
            && self.watch_holds_all(&selection.names)
            && let Some(records) = self.watched_purge_records(&selection.names, cutoff).await?
        {
            return Ok(records);
        }
        let filter = ListFilter {
            phases,
            tags: selection.tags.clone(),
        };
        let asked: std::collections::HashSet<&str> =
            selection.names.iter().map(String::as_str).collect();
        Ok(self
            .list_sandboxes_keeping(&filter, |pod| pod.metadata.uid)
            .await?
            .into_iter()
            .filter(|(_, s)| selection.names.is_empty() || asked.contains(s.name.as_str()))
            .filter(|(_, s)| ended_by(s, cutoff))
            .map(|(uid, status)| PurgeRecord {
                name: status.name,
                uid,
            })
            .collect())
    }

    /// The purge records of `names`, every one of which the shared watch
    /// holds, without a list: a copy that has ended is believed (an ended
    /// sandbox never runs again, and each delete holds only for the uid
    /// seen); the others, copies the watch may not have caught up on, are
    /// read afresh, each on its own. `None` when they are too many for that
    /// ([`LIST_NAMES_FROM`]): one paged list costs less.
    async fn watched_purge_records(
        &self,
        names: &[String],
        cutoff: Option<jiff::Timestamp>,
    ) -> Result<Option<Vec<PurgeRecord>>> {
        let mut seen = std::collections::HashSet::new();
        let mut records = Vec::new();
        let mut unsure = Vec::new();
        for name in names {
            if !seen.insert(name.as_str()) {
                continue;
            }
            match self
                .watched_pod(name)
                .and_then(|pod| ended_record(&pod, cutoff))
            {
                Some(record) => records.extend(record),
                None => unsure.push(name),
            }
        }
        if unsure.len() >= LIST_NAMES_FROM {
            return Ok(None);
        }
        for name in unsure {
            match self.sandbox_pod(name).await {
                Ok(pod) => records.extend(ended_record(&pod, cutoff).flatten()),
                Err(Error::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(Some(records))
    }

    /// Deletes the records of [`Client::purge_candidates`]; their names are
    /// free again once each workload has stopped. Returns the names purged;
    /// sandboxes still active are left alone.
    ///
    /// Each delete is graceful (a workload still stopping is removed only once
    /// its node confirms it stopped, so nothing runs without a record) and
    /// holds only for the pod that was listed (a uid precondition: a newer
    /// sandbox that took the name meanwhile is left alone).
    pub async fn purge_sandboxes(
        &self,
        selection: &Selection,
        older_than: Option<Duration>,
    ) -> Result<Vec<String>> {
        self.purge_sandboxes_with(selection, older_than, |_, _| {})
            .await
    }

    /// [`Client::purge_sandboxes`], calling `on_each(done, total)` as each
    /// record is dealt with (for progress displays).
    pub async fn purge_sandboxes_with(
        &self,
        selection: &Selection,
        older_than: Option<Duration>,
        on_each: impl Fn(usize, usize),
    ) -> Result<Vec<String>> {
        let records = self.purge_candidate_records(selection, older_than).await?;
        let total = records.len();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let (on_each, done) = (&on_each, &done);
        let purged = stream::iter(records)
            .map(|record| async move {
                let purged = self.purge_record(&record).await;
                on_each(
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                    total,
                );
                Ok(purged?.then_some(record.name))
            })
            .buffered(BULK_CONCURRENCY)
            .try_filter_map(|purged| async move { Ok(purged) })
            .try_collect()
            .await?;
        // Housekeeping: the records are purged whatever becomes of it.
        let _ = self
            .remove_stale_programs(&[&AGENT_PROGRAM, &GATE_PROGRAM])
            .await;
        Ok(purged)
    }

    /// Deletes one record; true if this call removed it.
    async fn purge_record(&self, record: &PurgeRecord) -> Result<bool> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: record.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let mut tries = Tries::start();
        loop {
            let err = match self.delete_pod_unread(&record.name, &params).await {
                Ok(()) => return Ok(true),
                Err(err) => err,
            };
            match api_status(&err).map(|s| s.code) {
                // Gone: removed by an earlier try of this call whose answer was
                // lost, or, on the first try, by someone else.
                Some(404) => return Ok(tries.failures() > 0),
                // The name belongs to a newer sandbox now.
                Some(409) => return Ok(false),
                _ if retry::is_transient(&err)
                    && let Some(pause) = tries.pause_after(&err) =>
                {
                    tokio::time::sleep(pause).await;
                }
                _ => return Err(self.sandbox_error(err, &record.name)),
            }
        }
    }
}

/// A sandbox record to purge: its name and the uid of the pod listed.
struct PurgeRecord {
    name: String,
    uid: Option<String>,
}

/// True if the sandbox `status` tells of ended by `cutoff` (no cutoff: any
/// time); one with no time is not known to have.
fn ended_by(status: &SandboxStatus, cutoff: Option<jiff::Timestamp>) -> bool {
    match (cutoff, status.finished_at.or(status.created_at)) {
        (Some(cutoff), Some(ended)) => ended <= cutoff,
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// `None` while the sandbox of `pod` has not ended; once it has, its record
/// to purge if it ended by `cutoff`.
fn ended_record(pod: &Pod, cutoff: Option<jiff::Timestamp>) -> Option<Option<PurgeRecord>> {
    let status = SandboxStatus::from_pod(pod);
    status.phase.is_terminal().then(|| {
        ended_by(&status, cutoff).then(|| PurgeRecord {
            name: status.name,
            uid: pod.metadata.uid.clone(),
        })
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::spec::{SandboxRequest, SandboxSpec};
    use crate::test_api::{body_json, client, failure, respond};

    fn ended_pod(name: &str, uid: &str) -> serde_json::Value {
        let spec = SandboxSpec::try_from(SandboxRequest::new("busybox:1.36")).unwrap();
        let mut pod = serde_json::to_value(spec.to_pod(name)).unwrap();
        pod["metadata"]["uid"] = json!(uid);
        pod["status"] = json!({"phase": "Succeeded"});
        pod
    }

    /// Purges "a" and "b": the first delete of each fails as `first`, the
    /// second (if any) answers `second`. Returns the names purged and the
    /// bodies of the delete requests.
    async fn purge(
        first: (u16, &'static str),
        second: Option<(u16, &'static str)>,
    ) -> (Vec<String>, Vec<serde_json::Value>) {
        let (client, mut handle) = client();
        let server = tokio::spawn(async move {
            let (_, reply) = handle.next_request().await.unwrap();
            reply.send_response(respond(
                200,
                json!({"kind": "PodList", "apiVersion": "v1", "metadata": {},
                    "items": [ended_pod("a", "uid-a")]}),
            ));
            let mut bodies = Vec::new();
            for answer in std::iter::once(first).chain(second) {
                let (request, reply) = handle.next_request().await.unwrap();
                assert_eq!(request.method(), "DELETE");
                bodies.push(body_json(request).await);
                reply.send_response(match answer {
                    (200, _) => respond(200, ended_pod("a", "uid-a")),
                    (code, reason) => respond(code, failure(code, reason)),
                });
            }
            bodies
        });
        let selection = Selection {
            all: true,
            ..Selection::default()
        };
        let purged = client.purge_sandboxes(&selection, None).await.unwrap();
        (purged, server.await.unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_purge_is_graceful_and_holds_only_for_the_pod_listed() {
        let (purged, bodies) = purge((200, ""), None).await;
        assert_eq!(purged, ["a"]);
        assert_eq!(bodies[0]["preconditions"]["uid"], "uid-a");
        assert!(
            bodies[0].get("gracePeriodSeconds").is_none(),
            "{}",
            bodies[0]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_retried_delete_that_finds_the_record_gone_purged_it() {
        let (purged, _) = purge((503, "ServiceUnavailable"), Some((404, "NotFound"))).await;
        assert_eq!(purged, ["a"]);
        let (purged, _) = purge((404, "NotFound"), None).await;
        assert!(purged.is_empty(), "deleted by someone else");
        let (purged, _) = purge((409, "Conflict"), None).await;
        assert!(purged.is_empty(), "the name belongs to a newer sandbox");
    }

    #[tokio::test(start_paused = true)]
    async fn a_purge_of_phases_none_of_which_has_ended_asks_for_nothing() {
        let (client, mut handle) = client();
        let selection = Selection {
            phases: vec![Phase::Running, Phase::Queued],
            ..Selection::default()
        };
        let candidates = client.purge_candidates(&selection, None).await.unwrap();
        assert!(candidates.is_empty());
        let asked = tokio::time::timeout(Duration::from_secs(1), handle.next_request()).await;
        assert!(asked.is_err(), "no request was sent");
    }

    #[tokio::test(start_paused = true)]
    async fn a_bulk_terminate_of_names_the_watch_holds_lists_nothing() {
        let (client, mut cluster) = crate::watch::scripted::start();
        let names: Vec<String> = (0..LIST_NAMES_FROM + 10).map(|i| format!("s{i}")).collect();
        for name in &names {
            cluster.set(name, "Running");
        }
        let soon = tokio::time::Instant::now() + Duration::from_secs(60);
        assert!(client.pod_watch().ready(soon).await);
        let _open = cluster.next_watch().await;
        let lists = cluster.lists();
        let selection = |names: Vec<String>| Selection {
            names,
            ..Selection::default()
        };

        let outcomes = client
            .terminate_sandboxes(&selection(names.clone()))
            .await
            .unwrap();
        assert_eq!(outcomes.len(), names.len());
        assert!(outcomes.iter().all(|o| o.error.is_none()));
        assert_eq!(cluster.lists(), lists, "the watch held every pod: no list");

        // A name the watch does not hold: one paged list, as before.
        let with_unknown = [names, vec!["never-made".to_owned()]].concat();
        let outcomes = client
            .terminate_sandboxes(&selection(with_unknown))
            .await
            .unwrap();
        assert!(outcomes.last().unwrap().error.is_some());
        assert_eq!(cluster.lists(), lists + 1);
    }

    #[tokio::test]
    async fn a_purge_of_names_the_watch_holds_lists_nothing() {
        let (client, mut cluster) = crate::watch::scripted::start();
        let ended: Vec<String> = (0..LIST_NAMES_FROM + 10).map(|i| format!("s{i}")).collect();
        for name in &ended {
            cluster.set(name, "Succeeded");
        }
        cluster.set("running", "Running");
        cluster.set("ended-unseen", "Running");
        let soon = tokio::time::Instant::now() + Duration::from_secs(60);
        assert!(client.pod_watch().ready(soon).await);
        let _open = cluster.next_watch().await;
        let lists = cluster.lists();
        // Ended since the watch saw it (no event sent): read afresh, purged.
        cluster.set("ended-unseen", "Failed");
        let selection = |extra: &[&str]| Selection {
            names: [
                &ended[..],
                &extra.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            ]
            .concat(),
            ..Selection::default()
        };

        let purged = client
            .purge_sandboxes(&selection(&["running", "ended-unseen", "s0"]), None)
            .await
            .unwrap();
        assert_eq!(purged, [&ended[..], &["ended-unseen".to_owned()]].concat());
        assert_eq!(cluster.lists(), lists, "the watch held every pod: no list");

        // A name the watch does not hold: one paged list, as before.
        let mut purged = client
            .purge_sandboxes(&selection(&["never-made"]), None)
            .await
            .unwrap();
        purged.sort_by_key(|name| name[1..].parse::<usize>().unwrap());
        assert_eq!(purged, ended);
        assert_eq!(cluster.lists(), lists + 1);
    }
}
