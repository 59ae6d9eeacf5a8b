use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use kube::api::DeleteParams;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::retry::retry;
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
        Ok(if selection.names.is_empty() {
            matching.collect()
        } else {
            matching
                .filter(|name| selection.names.contains(name))
                .collect()
        })
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
        let names = self.select_sandboxes(selection).await?;
        let on_each = &on_each;
        let outcomes = stream::iter(names)
            .map(|name| async move {
                let outcome = match self.terminate_sandbox(&name).await {
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
        let filter = ListFilter {
            phases: selection.phases.clone(),
            tags: selection.tags.clone(),
        };
        Ok(self
            .list_sandboxes(&filter)
            .await?
            .into_iter()
            .filter(|s| s.phase.is_terminal())
            .filter(|s| selection.names.is_empty() || selection.names.contains(&s.name))
            .filter(|s| match (cutoff, s.finished_at.or(s.created_at)) {
                (Some(cutoff), Some(ended)) => ended <= cutoff,
                (Some(_), None) => false,
                (None, _) => true,
            })
            .map(|s| s.name)
            .collect())
    }

    /// Deletes the records of [`Client::purge_candidates`]; their names are
    /// free again. Returns the names purged; sandboxes still active are left alone.
    pub async fn purge_sandboxes(
        &self,
        selection: &Selection,
        older_than: Option<Duration>,
    ) -> Result<Vec<String>> {
        let candidates = self.purge_candidates(selection, older_than).await?;
        let params = DeleteParams::default().grace_period(0);
        stream::iter(candidates)
            .map(|name| {
                let params = params.clone();
                async move {
                    match retry(|| self.pods().delete(&name, &params)).await {
                        Ok(_) => Ok(Some(name)),
                        Err(err) => match self.sandbox_error(err, &name) {
                            Error::NotFound { .. } => Ok(None),
                            other => Err(other),
                        },
                    }
                }
            })
            .buffered(BULK_CONCURRENCY)
            .try_filter_map(|purged| async move { Ok(purged) })
            .try_collect()
            .await
    }
}
