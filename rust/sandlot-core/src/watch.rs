//! One pod watch per client, shared by every waiter: a thousand waiting
//! sandboxes cost one watch connection, not a poller each.

use std::pin::pin;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::error_chain;
use crate::labels::MANAGED_SELECTOR;

/// What the watch task publishes after every event.
#[derive(Debug, Clone, Default)]
pub(crate) struct WatchState {
    /// Bumped on every event, so waiters wake and look again.
    pub events: u64,
    /// The last error of the watch (it retries with backoff by itself).
    pub last_error: Option<String>,
    /// True once the first full list is in the store.
    pub ready: bool,
    /// Set while the API server refuses this client the list or watch (403).
    pub denied: Option<String>,
}

/// A reflector over the client's sandbox pods, kept current by a background task
/// that lives as long as this value. It recovers from dropped connections and
/// 410 Gone by itself (kube-runtime's watcher with backoff).
pub(crate) struct PodWatch {
    store: Store<Pod>,
    namespace: String,
    state: watch::Receiver<WatchState>,
    task: tokio::task::JoinHandle<()>,
}

impl PodWatch {
    /// Starts watching the sandbox pods of `pods`. Must be called on a tokio runtime.
    pub fn start(pods: Api<Pod>) -> PodWatch {
        let namespace = pods.namespace().unwrap_or_default().to_owned();
        let (store, writer) = reflector::store();
        let (publish, state) = watch::channel(WatchState::default());
        let config = watcher::Config::default().labels(MANAGED_SELECTOR);
        let stream = watcher(pods, config).default_backoff().reflect(writer);
        let task = tokio::spawn(async move {
            let mut stream = pin!(stream);
            while let Some(event) = stream.next().await {
                publish.send_modify(|state| {
                    state.events += 1;
                    match &event {
                        Ok(watcher::Event::InitDone) => {
                            state.ready = true;
                            state.denied = None;
                        }
                        Ok(_) => state.denied = None,
                        Err(err) => {
                            state.last_error = Some(error_chain(err));
                            state.denied = forbidden(err);
                        }
                    }
                });
            }
        });
        PodWatch {
            store,
            namespace,
            state,
            task,
        }
    }

    /// A receiver that wakes on every event from now on.
    pub fn subscribe(&self) -> watch::Receiver<WatchState> {
        self.state.clone()
    }

    /// Waits until the first full list has arrived, or the watch is refused;
    /// false if `deadline` passed first.
    /// (Any number of callers may wait at once; the store's own readiness signal
    /// wakes only one of them.)
    pub async fn ready(&self, deadline: Instant) -> bool {
        let mut state = self.state.clone();
        matches!(
            tokio::time::timeout_at(deadline, state.wait_for(|s| s.ready || s.denied.is_some()))
                .await,
            Ok(Ok(_))
        )
    }

    /// The pod named `name` as last seen, if the watch has seen it.
    pub fn get(&self, name: &str) -> Option<Arc<Pod>> {
        self.store
            .get(&ObjectRef::new(name).within(&self.namespace))
    }

    /// Why the API server refuses the watch, if it does.
    pub fn denied(&self) -> Option<String> {
        self.state.borrow().denied.clone()
    }

    /// The last watch error, for messages about waits that did not finish.
    pub fn last_error(&self) -> Option<String> {
        self.state.borrow().last_error.clone()
    }
}

/// The request error behind a failed watch, so it is classified (and retried)
/// like the failure of any other call.
pub(crate) fn watch_error(err: watcher::Error) -> kube::Error {
    match err {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => e,
        watcher::Error::WatchError(status) => kube::Error::Api(status),
        watcher::Error::NoResourceVersion => {
            kube::Error::ReadEvents(std::io::Error::other(err.to_string()))
        }
    }
}

/// The server's message if `err` is a refusal (403) of the list or watch.
fn forbidden(err: &watcher::Error) -> Option<String> {
    let status = match err {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => crate::error::api_status(e)?,
        watcher::Error::WatchError(status) => status,
        watcher::Error::NoResourceVersion => return None,
    };
    (status.code == 403).then(|| status.message.clone())
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
