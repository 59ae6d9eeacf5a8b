use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;

use crate::client::Client;
use crate::error::{Error, Result, api_status};
use crate::labels::{self, CREATE_TOKEN_ANNOTATION};
use crate::retry::{self, ATTEMPTS};
use crate::spec::SandboxSpec;
use crate::status::SandboxStatus;
use crate::validate;

/// How often a create is tried while a new namespace's service account appears.
const SERVICE_ACCOUNT_RETRIES: u32 = 50;

impl Client {
    /// Creates a sandbox from a checked spec. Fails with [`Error::NotFound`] if a
    /// mounted volume does not exist, and with [`Error::NameConflict`] if the
    /// name is taken.
    ///
    /// Transient failures are retried. Each create carries a random token, so a
    /// retry that finds the name taken by this very create (its first response
    /// was lost) succeeds instead of reporting a conflict.
    pub async fn create_sandbox(&self, spec: &SandboxSpec) -> Result<SandboxStatus> {
        self.require_volumes(spec.volume_names()).await?;
        let name = spec
            .name()
            .map_or_else(|| validate::generated_name("sb-"), str::to_owned);
        let token = validate::generated_name("");
        let mut pod = spec.to_pod(&name);
        pod.metadata
            .annotations
            .get_or_insert_default()
            .insert(CREATE_TOKEN_ANNOTATION.to_owned(), token.clone());

        let mut attempt = 1;
        let mut sent_before = false;
        let mut account_waits = 0;
        loop {
            let err = match self.pods().create(&PostParams::default(), &pod).await {
                Ok(created) => return Ok(SandboxStatus::from_pod(&created)),
                Err(err) => err,
            };
            let status = api_status(&err);
            if sent_before && status.is_some_and(|s| s.code == 409) {
                // Taken: by an earlier try of this create whose answer was lost?
                if let Some(existing) = self
                    .pods()
                    .get_opt(&name)
                    .await
                    .map_err(|err| self.api_error(err))?
                {
                    if created_by(&existing, &token) {
                        return Ok(SandboxStatus::from_pod(&existing));
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
            if attempt < ATTEMPTS && retry::is_transient(&err) {
                tokio::time::sleep(retry::delay(&err, attempt)).await;
                attempt += 1;
                sent_before = true;
                continue;
            }
            return Err(match self.sandbox_error(err, &name) {
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
}

fn created_by(pod: &Pod, token: &str) -> bool {
    labels::annotation(&pod.metadata, CREATE_TOKEN_ANNOTATION).is_some_and(|t| t == token)
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;
    use tower_test::mock;

    use super::*;
    use crate::spec::SandboxRequest;

    type Handle = mock::Handle<Request<Body>, Response<Body>>;

    fn client() -> (Client, Handle) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        (
            Client::from_kube(kube::Client::new(service, "test"), "test".into()),
            handle,
        )
    }

    fn respond(code: u16, body: serde_json::Value) -> Response<Body> {
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    }

    fn status_body(code: u16, reason: &str, retry_after: u32) -> serde_json::Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
               "message": reason, "details": {"retryAfterSeconds": retry_after}})
    }

    async fn body_json(request: Request<Body>) -> serde_json::Value {
        use http_body_util::BodyExt;
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
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
        let spec = SandboxSpec::try_from(SandboxRequest {
            name: Some("job".into()),
            ..SandboxRequest::new("busybox:1.36")
        })
        .unwrap();
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
        let spec = SandboxSpec::try_from(SandboxRequest {
            name: Some("job".into()),
            ..SandboxRequest::new("busybox:1.36")
        })
        .unwrap();
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
        let spec = SandboxSpec::try_from(SandboxRequest {
            name: Some("job".into()),
            ..SandboxRequest::new("busybox:1.36")
        })
        .unwrap();
        let err = client.create_sandbox(&spec).await.unwrap_err();
        assert!(matches!(err, Error::NameConflict { .. }), "{err:?}");
        server.await.unwrap();
    }
}
