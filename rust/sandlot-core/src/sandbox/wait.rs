use std::time::Duration;

use tokio::time::Instant;

use crate::client::Client;
use crate::error::{Error, ObjectKind, Result};
use crate::status::{Phase, SandboxStatus};
use crate::validate;

/// How long a call that failed waits for the sandbox's status to say it
/// ended (a status may lag the end that broke the call).
const ENDING_LAG: Duration = Duration::from_secs(5);

impl Client {
    /// The error for a call on sandbox `name` that failed with `err`: if the
    /// sandbox ends within [`ENDING_LAG`] (its end may be what broke the
    /// call), [`Error::NotRunning`]; else `err`.
    pub(crate) async fn ended_instead(&self, name: &str, err: Error) -> Error {
        let ended = [Phase::Succeeded, Phase::Failed, Phase::Terminated];
        match self.wait_sandbox(name, &ended, ENDING_LAG).await {
            Ok(status) => Error::NotRunning {
                name: name.to_owned(),
                phase: status.phase.to_string(),
            },
            Err(_) => err,
        }
    }

    /// Waits until sandbox `name` is in one of `phases` and returns its status.
    ///
    /// Reads the client's shared pod watch. Fails at once with
    /// [`Error::PhaseUnreachable`] if the sandbox reaches a terminal phase not in
    /// `phases`, with [`Error::NotFound`] if it does not exist or is deleted, and
    /// with [`Error::Timeout`] (saying how long it waited) once `timeout` has passed.
    ///
    /// May write: a launch failure it sees is settled (see `sandbox/settle.rs`),
    /// so it ends the wait as `failed`.
    pub async fn wait_sandbox(
        &self,
        name: &str,
        phases: &[Phase],
        timeout: Duration,
    ) -> Result<SandboxStatus> {
        validate::object_name("name", name)?;
        if phases.is_empty() {
            return Err(Error::invalid(
                "phase",
                "name at least one phase to wait for",
            ));
        }
        let wanted = phases
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(" or ");
        let started = Instant::now();
        let deadline = crate::deadline_after(timeout);
        let watch = self.pod_watch();
        let mut changes = watch.subscribe(name);
        let timed_out = || Error::Timeout {
            what: match watch.last_error() {
                Some(err) => format!("sandbox {name:?} to be {wanted} (watch error: {err})"),
                None => format!("sandbox {name:?} to be {wanted}"),
            },
            after: started.elapsed(),
        };
        let refused = |message: String| {
            self.resolved_namespace()
                .refused(format!("watching pods: {message}"))
        };
        if !watch.ready(deadline).await {
            return Err(timed_out());
        }
        if let Some(message) = watch.denied() {
            return Err(refused(message));
        }
        let mut seen = false;
        let mut checked = false;
        loop {
            match watch.get(name) {
                Some(pod) => {
                    seen = true;
                    // Boxed, as is the get below: a wait's future is held
                    // for as long as it waits, by the thousand in a
                    // `wait_sandboxes`, and these rare steps would make each
                    // about ten times its size.
                    let settled = Box::pin(self.settle_launch_failure(&pod));
                    let Ok(status) = tokio::time::timeout_at(deadline, settled).await else {
                        return Err(timed_out());
                    };
                    let status = status?;
                    if phases.contains(&status.phase) {
                        return Ok(status);
                    }
                    if status.phase.is_terminal() {
                        return Err(Error::PhaseUnreachable {
                            status: Box::new(status),
                            wanted,
                        });
                    }
                }
                // Seen before and gone now: deleted.
                None if seen => {
                    return Err(Error::NotFound {
                        kind: ObjectKind::Sandbox,
                        name: name.to_owned(),
                        namespace: self.namespace().to_owned(),
                    });
                }
                // Not seen yet: the watch may lag a fresh create; ask once.
                None if !checked => {
                    // (Its retries stop at the deadline too.)
                    let exists =
                        tokio::time::timeout_at(deadline, Box::pin(self.get_sandbox(name)));
                    exists.await.map_err(|_| timed_out())??;
                    checked = true;
                }
                None => {}
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return Err(timed_out());
            }
            if let Some(message) = watch.denied() {
                return Err(refused(message));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::task::JoinHandle;
    use tokio::time::{Instant, timeout};

    use crate::client::Client;
    use crate::error::{Error, Result};
    use crate::status::{Phase, SandboxStatus};
    use crate::watch::scripted::{self, Cluster, OpenWatch};

    const MINUTE: Duration = Duration::from_secs(60);

    /// Sandbox "a" pending on a scripted server, a wait for it to run, and the
    /// watch that wait opened.
    async fn waiting_for_a() -> (
        Client,
        Cluster,
        JoinHandle<Result<SandboxStatus>>,
        OpenWatch,
    ) {
        let (client, mut cluster) = scripted::start();
        cluster.set("a", "Pending");
        let waiter = client.clone();
        let waiting =
            tokio::spawn(async move { waiter.wait_sandbox("a", &[Phase::Running], MINUTE).await });
        let watch = next_watch(&mut cluster).await;
        (client, cluster, waiting, watch)
    }

    async fn next_watch(cluster: &mut Cluster) -> OpenWatch {
        timeout(MINUTE, cluster.next_watch())
            .await
            .expect("the client watches again within a minute")
    }

    async fn phase(waiting: JoinHandle<Result<SandboxStatus>>) -> Phase {
        timeout(MINUTE, waiting)
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .phase
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_outlives_the_watch_task_being_stopped() {
        let (client, mut cluster, waiting, first) = waiting_for_a().await;
        assert!(client.stop_pod_watch_task());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "{:?}", waiting.await);
        let second = next_watch(&mut cluster).await;
        second.send("MODIFIED", &cluster.set("a", "Running"));
        assert_eq!(phase(waiting).await, Phase::Running);
        // Later waits work too.
        let b = cluster.set("b", "Running");
        let status = client.wait_sandbox("b", &[Phase::Running], MINUTE);
        second.send("ADDED", &b);
        assert_eq!(status.await.unwrap().phase, Phase::Running);
        drop(first);
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_that_ends_or_breaks_is_resumed() {
        let (_client, mut cluster, waiting, first) = waiting_for_a().await;
        drop(first);
        let second = next_watch(&mut cluster).await;
        second.fail();
        let third = next_watch(&mut cluster).await;
        third.send("MODIFIED", &cluster.set("a", "Running"));
        assert_eq!(phase(waiting).await, Phase::Running);
    }

    #[tokio::test(start_paused = true)]
    async fn gone_relists_and_the_wait_sees_what_changed_meanwhile() {
        let (_client, cluster, waiting, first) = waiting_for_a().await;
        let lists = cluster.lists();
        // A change this watch never delivers, then 410 Gone.
        cluster.set("a", "Running");
        first.gone();
        assert_eq!(phase(waiting).await, Phase::Running);
        assert_eq!(cluster.lists(), lists + 1, "relisted once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_watch_is_replaced_within_35_seconds() {
        let (_client, mut cluster, waiting, first) = waiting_for_a().await;
        let silent_since = Instant::now();
        let second = timeout(Duration::from_secs(36), cluster.next_watch())
            .await
            .expect("a watch silent for 35 s is replaced");
        assert!(silent_since.elapsed() >= Duration::from_secs(30));
        assert!(first.query.contains("timeoutSeconds=30"), "{}", first.query);
        second.send("MODIFIED", &cluster.set("a", "Running"));
        assert_eq!(phase(waiting).await, Phase::Running);
        drop(first);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hundred_waits_share_one_watch() {
        let (client, mut cluster) = scripted::start();
        let names: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
        for name in &names {
            cluster.set(name, "Pending");
        }
        let waits = futures::future::join_all(
            names
                .iter()
                .map(|name| client.wait_sandbox(name, &[Phase::Running], MINUTE)),
        );
        let (cluster, names) = (&mut cluster, &names);
        let server = async move {
            let watch = cluster.next_watch().await;
            for name in names {
                watch.send("MODIFIED", &cluster.set(name, "Running"));
            }
            (watch, cluster)
        };
        let (statuses, (_watch, cluster)) = tokio::join!(waits, server);
        assert!(
            statuses
                .iter()
                .all(|s| s.as_ref().unwrap().phase == Phase::Running)
        );
        assert_eq!((cluster.lists(), cluster.watches_opened()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_reports_the_time_waited() {
        let (client, mut cluster) = scripted::start();
        cluster.set("a", "Pending");
        let waiting = client.wait_sandbox("a", &[Phase::Running], Duration::from_secs(5));
        let (result, _watch) = tokio::join!(waiting, cluster.next_watch());
        match result {
            Err(Error::Timeout { after, .. }) => {
                assert!(after >= Duration::from_secs(5) && after < Duration::from_secs(6));
            }
            other => panic!("{other:?}"),
        }
    }

    /// `wait_sandboxes` holds one of these per sandbox while it waits.
    #[tokio::test]
    async fn a_waits_future_is_small() {
        let (client, _cluster) = scripted::start();
        let wait = client.wait_sandbox("a", &[Phase::Running], MINUTE);
        let size = std::mem::size_of_val(&wait);
        assert!(size <= 1024, "a wait's future takes {size} bytes");
    }
}
