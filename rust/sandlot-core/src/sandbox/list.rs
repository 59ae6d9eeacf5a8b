use std::collections::BTreeMap;

use kube::api::ListParams;

use crate::client::Client;
use crate::error::Result;
use crate::labels;
use crate::retry::retry;
use crate::status::{Phase, SandboxStatus};

/// Which sandboxes to list. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Keep sandboxes in any of these phases.
    pub phases: Vec<Phase>,
    /// Keep sandboxes carrying every one of these tags.
    pub tags: BTreeMap<String, String>,
}

impl Client {
    /// The sandboxes of the namespace matching `filter`, oldest first.
    pub async fn list_sandboxes(&self, filter: &ListFilter) -> Result<Vec<SandboxStatus>> {
        let params = ListParams::default().labels(&labels::selector(&filter.tags)?);
        let pods = retry(|| self.pods().list(&params))
            .await
            .map_err(|err| self.api_error(err))?;
        let mut statuses: Vec<SandboxStatus> = pods
            .items
            .iter()
            .map(SandboxStatus::from_pod)
            .filter(|s| filter.phases.is_empty() || filter.phases.contains(&s.phase))
            .collect();
        statuses.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        Ok(statuses)
    }
}
