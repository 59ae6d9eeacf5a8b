use std::time::Duration;

use crate::client::Client;
use crate::error::{Error, ObjectKind, Result};
use crate::status::{Phase, SandboxStatus};
use crate::validate;

impl Client {
    /// Waits until sandbox `name` is in one of `phases` and returns its status.
    ///
    /// Reads the client's shared pod watch. Fails at once with
    /// [`Error::PhaseUnreachable`] if the sandbox reaches a terminal phase not in
    /// `phases`, with [`Error::NotFound`] if it does not exist or is deleted, and
    /// with [`Error::Timeout`] once `timeout` has passed.
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
        let deadline = crate::deadline_after(timeout);
        let watch = self.pod_watch();
        let mut changes = watch.subscribe();
        let timed_out = || Error::Timeout {
            what: match watch.last_error() {
                Some(err) => format!("sandbox {name:?} to be {wanted} (watch error: {err})"),
                None => format!("sandbox {name:?} to be {wanted}"),
            },
            after: timeout,
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
                    let status = self.settle_launch_failure(&pod).await?;
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
                    self.get_sandbox(name).await?;
                    checked = true;
                }
                None => {}
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Err(timed_out()),
            }
            if let Some(message) = watch.denied() {
                return Err(refused(message));
            }
        }
    }
}
