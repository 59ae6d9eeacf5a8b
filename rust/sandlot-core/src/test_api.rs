//! Pieces of the scripted API servers in unit tests: a client of namespace
//! "test" whose requests the test answers one by one, and answers to send.

use http::{Request, Response};
use kube::client::Body;
use serde_json::json;
use tower_test::mock;

use crate::client::Client;
use crate::userns::NodeSupport;

/// The test's end of a scripted client: each request, and a way to answer it.
pub(crate) type Handle = mock::Handle<Request<Body>, Response<Body>>;

/// A client of namespace "test" and the handle that answers its requests.
/// Its nodes count as supporting user namespaces without being asked, and
/// the agent's ConfigMap as made.
pub(crate) fn client() -> (Client, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::from_kube(kube::Client::new(service, "test"), "test".into());
    client.userns().assume(NodeSupport::Supported);
    *client.agent().checked.try_lock().unwrap() = Some(tokio::time::Instant::now());
    (client, handle)
}

/// An answer with HTTP status `code` and `body` as JSON.
pub(crate) fn respond(code: u16, body: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(body.to_string().into_bytes()))
        .unwrap()
}

/// The API server's Status body of a failed request.
pub(crate) fn failure(code: u16, reason: &str) -> serde_json::Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
        "reason": reason, "message": reason})
}

/// The JSON body of a request the client sent.
pub(crate) async fn body_json(request: Request<Body>) -> serde_json::Value {
    use http_body_util::BodyExt;
    let bytes = request.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}
