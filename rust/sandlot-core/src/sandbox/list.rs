use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;

use crate::client::Client;
use crate::error::Result;
use crate::labels;
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
            .list_sandboxes_keeping(filter, |_| ())
            .await?
            .into_iter()
            .map(|((), status)| status)
            .collect())
    }

    /// The sandboxes behind [`Client::list_sandboxes`], oldest first, each
    /// with what `keep` takes from its pod. Pods are let go page by page, so
    /// a list of thousands holds their statuses and what `keep` took.
    pub(crate) async fn list_sandboxes_keeping<T>(
        &self,
        filter: &ListFilter,
        mut keep: impl FnMut(Pod) -> T,
    ) -> Result<Vec<(T, SandboxStatus)>> {
        let params = ListParams::default().labels(&labels::selector(&filter.tags)?);
        let mut listed = self
            .list_all_as(self.lean_pods(), &params, |pod| {
                let pod = Pod::from(pod);
                let status = SandboxStatus::from_pod(&pod);
                (filter.phases.is_empty() || filter.phases.contains(&status.phase))
                    .then(|| (keep(pod), status))
            })
            .await?;
        listed.sort_by(|(_, a), (_, b)| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        Ok(listed)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::test_api::{self, failure, respond};

    fn page(names: &[&str], next: &str) -> serde_json::Value {
        let items: Vec<serde_json::Value> = names
            .iter()
            .map(|name| {
                json!({"metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "sandlot"},
                    "creationTimestamp": "2026-11-30T00:00:00Z"}, "status": {"phase": "Running"}})
            })
            .collect();
        json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"continue": next}, "items": items})
    }

    fn query(request: &http::Request<kube::client::Body>) -> String {
        request.uri().query().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn a_list_reads_page_after_page_and_starts_again_when_its_token_expired() {
        let (client, mut handle) = test_api::client();
        let server = tokio::spawn(async move {
            let mut asked = Vec::new();
            let answers = [
                (200, page(&["a", "b"], "t1")),
                // The token outlived etcd's history: the list starts again.
                (410, failure(410, "Expired")),
                (200, page(&["a", "b"], "t2")),
                (200, page(&["c"], "")),
            ];
            for (code, body) in answers {
                let (request, reply) = handle.next_request().await.unwrap();
                asked.push(query(&request));
                reply.send_response(respond(code, body));
            }
            asked
        });
        let listed = client.list_sandboxes(&ListFilter::default()).await.unwrap();
        let names: Vec<&str> = listed.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let asked = server.await.unwrap();
        assert!(asked.iter().all(|q| q.contains("limit=500")), "{asked:?}");
        assert!(!asked[0].contains("continue="), "{asked:?}");
        assert!(asked[1].contains("continue=t1"), "{asked:?}");
        assert!(!asked[2].contains("continue="), "{asked:?}");
        assert!(asked[3].contains("continue=t2"), "{asked:?}");
    }
}
