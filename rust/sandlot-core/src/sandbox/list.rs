use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
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
        Ok(self
            .list_sandbox_pods(filter)
            .await?
            .into_iter()
            .map(|(_, status)| status)
            .collect())
    }

    /// The pods behind [`Client::list_sandboxes`], each with its status, oldest first.
    pub(crate) async fn list_sandbox_pods(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<(Pod, SandboxStatus)>> {
        let params = ListParams::default().labels(&labels::selector(&filter.tags)?);
        let pods = retry(|| self.pods().list(&params))
            .await
            .map_err(|err| self.api_error(err))?;
        let mut listed: Vec<(Pod, SandboxStatus)> = pods
            .items
            .into_iter()
            .map(|pod| {
                let status = SandboxStatus::from_pod(&pod);
                (pod, status)
            })
            .filter(|(_, s)| filter.phases.is_empty() || filter.phases.contains(&s.phase))
            .collect();
        listed.sort_by(|(_, a), (_, b)| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        Ok(listed)
    }
}
