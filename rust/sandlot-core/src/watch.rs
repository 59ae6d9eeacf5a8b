//! One pod watch per client, shared by every waiter: a thousand waiting
//! sandboxes cost one watch connection, not a poller each.
//!
//! Waiters register by sandbox name, and each event wakes only the waiters of
//! the sandbox it is about. kube-runtime's watcher keeps the connection going
//! (backoff after errors, a new watch when one ends, a relist after 410 Gone);
//! on top of it:
//! - every watch request asks the server to end it after [`WATCH_WINDOW`], so
//!   a healthy connection carries something at least that often, and the
//!   watcher takes one silent for 5 s longer (35 s) for dead and replaces it;
//! - a supervisor restarts the watch task whenever it ends or panics, after a
//!   pause (see [`supervise`]); the new task relists, and every waiter whose
//!   sandbox changed in between is woken, so no transition is missed.

use std::collections::HashMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinError, JoinHandle};
use tokio::time::Instant;

use crate::error::error_chain;
use crate::labels::MANAGED_SELECTOR;
use crate::lean_pod::{PodRecord, WatchedPod};
use crate::retry;

/// How long the server keeps one watch request open (`timeoutSeconds`).
/// kube-runtime's watcher then watches again from where it was, and takes a
/// watch silent for this plus 5 s for dead: the bound on noticing a stall.
const WATCH_WINDOW: Duration = Duration::from_secs(30);
/// Pause before restarting a watch task that ended; it doubles with each
/// restart up to [`LONGEST_RESTART_DELAY`], and is back to this after a task
/// that ran for [`STEADY_RUN`].
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(500);
const LONGEST_RESTART_DELAY: Duration = Duration::from_secs(30);
const STEADY_RUN: Duration = Duration::from_secs(60);

/// The standing of the watch as a whole.
#[derive(Debug, Clone, Default)]
struct WatchState {
    /// True once the first full list is in.
    ready: bool,
    /// Set while the API server refuses this client the list or watch (403).
    denied: Option<String>,
    /// The last error of the watch (it recovers by itself).
    last_error: Option<String>,
}

/// The pods as last seen and who waits for which.
#[derive(Debug, Default)]
struct Pods {
    /// Every sandbox pod of the namespace as last seen, by name.
    current: HashMap<String, PodRecord>,
    /// The pods of a relist in progress (between `Init` and `InitDone`).
    relist: Option<HashMap<String, PodRecord>>,
    /// One channel per sandbox someone waits for, bumped when its pod changes.
    waiters: HashMap<String, watch::Sender<()>>,
}

impl Pods {
    /// Takes in one event and wakes the waiters of the pods it changed.
    fn apply(&mut self, event: watcher::Event<WatchedPod>) {
        match event {
            watcher::Event::Apply(pod) => {
                let pod = PodRecord::from(pod);
                if let Some(name) = pod.name().map(str::to_owned) {
                    self.current.insert(name.clone(), pod);
                    self.wake(&name);
                }
            }
            watcher::Event::Delete(pod) => {
                if let Some(name) = pod.name() {
                    self.current.remove(name);
                    self.wake(name);
                }
            }
            watcher::Event::Init => self.relist = Some(HashMap::new()),
            watcher::Event::InitApply(pod) => {
                let pod = PodRecord::from(pod);
                if let (Some(relist), Some(name)) =
                    (&mut self.relist, pod.name().map(str::to_owned))
                {
                    relist.insert(name, pod);
                }
            }
            watcher::Event::InitDone => {
                let listed = self.relist.take().unwrap_or_default();
                let before = std::mem::replace(&mut self.current, listed);
                let version = |pods: &HashMap<String, PodRecord>, name: &str| {
                    pods.get(name)
                        .map(|pod| pod.resource_version().map(str::to_owned))
                };
                for (name, waiters) in &self.waiters {
                    if version(&before, name) != version(&self.current, name) {
                        waiters.send_replace(());
                    }
                }
            }
        }
    }

    fn wake(&self, name: &str) {
        if let Some(waiters) = self.waiters.get(name) {
            waiters.send_replace(());
        }
    }
}

/// What the watch task, the supervisor and the waiters share.
#[derive(Debug)]
struct Shared {
    pods: Mutex<Pods>,
    state: watch::Sender<WatchState>,
    /// The running watch task, for the test hook that stops it.
    task: Mutex<Option<AbortHandle>>,
}

impl Shared {
    fn pods(&self) -> MutexGuard<'_, Pods> {
        // Each update is a whole insert or removal, so a panic elsewhere
        // while the lock was held leaves nothing half-written.
        self.pods.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes in one item of the watcher's stream. Only a change of the
    /// standing (ready, refused) wakes every waiter.
    fn record(&self, event: Result<watcher::Event<WatchedPod>, watcher::Error>) {
        match event {
            Ok(event) => {
                let listed = matches!(event, watcher::Event::InitDone);
                self.pods().apply(event);
                self.state.send_if_modified(|state| {
                    let changed = (listed && !state.ready) || state.denied.is_some();
                    state.ready |= listed;
                    state.denied = None;
                    changed
                });
            }
            Err(err) => {
                let denied = forbidden(&err);
                self.state.send_if_modified(|state| {
                    state.last_error = Some(error_chain(&err));
                    let changed = state.denied != denied;
                    state.denied = denied;
                    changed
                });
            }
        }
    }
}

/// A watch of the client's sandbox pods, kept current by a supervised
/// background task that lives as long as this value.
#[derive(Debug)]
pub(crate) struct PodWatch {
    shared: Arc<Shared>,
    _supervisor: AbortOnDrop,
}

impl PodWatch {
    /// Starts watching the sandbox pods of `pods`. Must be called on a tokio runtime.
    pub fn start(pods: Api<WatchedPod>) -> PodWatch {
        let shared = Arc::new(Shared {
            pods: Mutex::default(),
            state: watch::Sender::new(WatchState::default()),
            task: Mutex::default(),
        });
        let supervisor = AbortOnDrop(tokio::spawn(supervise(pods, shared.clone())));
        PodWatch {
            shared,
            _supervisor: supervisor,
        }
    }

    /// Registers a waiter for sandbox `name`: changes from now on wake it.
    /// Register before reading the pod, so no change falls in between.
    pub fn subscribe(&self, name: &str) -> SandboxChanges {
        let pod = self
            .shared
            .pods()
            .waiters
            .entry(name.to_owned())
            .or_insert_with(|| watch::Sender::new(()))
            .subscribe();
        SandboxChanges {
            shared: self.shared.clone(),
            name: name.to_owned(),
            pod,
            state: self.shared.state.subscribe(),
        }
    }

    /// Waits until the first full list has arrived, or the watch is refused;
    /// false if `deadline` passed first.
    pub async fn ready(&self, deadline: Instant) -> bool {
        let mut state = self.shared.state.subscribe();
        matches!(
            tokio::time::timeout_at(deadline, state.wait_for(|s| s.ready || s.denied.is_some()))
                .await,
            Ok(Ok(_))
        )
    }

    /// Whether the first full list is in, the API server does not refuse
    /// the watch now, and every sandbox in `names` has its pod here.
    pub fn holds_all(&self, names: &[String]) -> bool {
        let state = self.shared.state.borrow();
        if !state.ready || state.denied.is_some() {
            return false;
        }
        drop(state);
        let pods = self.shared.pods();
        names.iter().all(|name| pods.current.contains_key(name))
    }

    /// The pod named `name` as last seen (the fields a [`PodRecord`] keeps),
    /// if the watch has seen it.
    pub fn get(&self, name: &str) -> Option<Arc<Pod>> {
        let pods = self.shared.pods();
        pods.current
            .get(name)
            .map(|record| Arc::new(record.to_pod()))
    }

    /// Why the API server refuses the watch, if it does.
    pub fn denied(&self) -> Option<String> {
        self.shared.state.borrow().denied.clone()
    }

    /// The last watch error, for messages about waits that did not finish.
    pub fn last_error(&self) -> Option<String> {
        self.shared.state.borrow().last_error.clone()
    }

    /// Stops the watch task as if it had died (a test hook; the supervisor
    /// restarts it). False if no task was running.
    pub fn stop_task(&self) -> bool {
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(task) = task.as_ref() else {
            return false;
        };
        task.abort();
        true
    }
}

/// One waiter's view of one sandbox; unregisters when dropped.
#[derive(Debug)]
pub(crate) struct SandboxChanges {
    shared: Arc<Shared>,
    name: String,
    pod: watch::Receiver<()>,
    state: watch::Receiver<WatchState>,
}

impl SandboxChanges {
    /// Waits until this sandbox's pod changes, or the standing of the watch
    /// does (ready, refused).
    pub async fn changed(&mut self) {
        // Neither sender closes while `shared` is held.
        tokio::select! {
            _ = self.pod.changed() => {}
            _ = self.state.changed() => {}
        }
    }
}

#[cfg(test)]
impl SandboxChanges {
    /// True if a change woke (or would have woken) this waiter since the last look.
    fn woken(&mut self) -> bool {
        let woken = self.pod.has_changed().unwrap() || self.state.has_changed().unwrap();
        self.pod.mark_unchanged();
        self.state.mark_unchanged();
        woken
    }
}

impl Drop for SandboxChanges {
    fn drop(&mut self) {
        let mut pods = self.shared.pods();
        // Ours is the last receiver: nobody waits for this sandbox any more.
        if pods
            .waiters
            .get(&self.name)
            .is_some_and(|waiters| waiters.receiver_count() <= 1)
        {
            pods.waiters.remove(&self.name);
        }
    }
}

/// Runs the watch task, and starts a new one whenever it ends or panics:
/// after [`FIRST_RESTART_DELAY`], doubling with each restart in a row up to
/// [`LONGEST_RESTART_DELAY`], and back to the first after a task that ran
/// for [`STEADY_RUN`].
async fn supervise(pods: Api<WatchedPod>, shared: Arc<Shared>) {
    let mut delay = FIRST_RESTART_DELAY;
    loop {
        let started = Instant::now();
        let task = AbortOnDrop(tokio::spawn(run(pods.clone(), shared.clone())));
        *shared.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task.0.abort_handle());
        let ended = match task.await {
            Ok(()) => "the pod watch ended".to_owned(),
            Err(err) if err.is_panic() => "the pod watch task panicked".to_owned(),
            Err(err) => format!("the pod watch task stopped: {err}"),
        };
        shared.state.send_if_modified(|state| {
            state.last_error = Some(format!("{ended}; restarting it"));
            false
        });
        if started.elapsed() >= STEADY_RUN {
            delay = FIRST_RESTART_DELAY;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(LONGEST_RESTART_DELAY);
    }
}

/// Watches the sandbox pods until the stream ends (kube-runtime's never does
/// by itself), recording every item. After a failed list or watch it pauses
/// as any other call would ([`retry::delay`]: the server's Retry-After, else
/// 100 ms doubling per failure since the last answer) before the watcher
/// tries again.
async fn run(pods: Api<WatchedPod>, shared: Arc<Shared>) {
    let window = u32::try_from(WATCH_WINDOW.as_secs()).unwrap_or(u32::MAX);
    let config = watcher::Config::default()
        .labels(MANAGED_SELECTOR)
        .timeout(window);
    let mut events = pin!(watcher(pods, config));
    let mut failures = 0;
    while let Some(event) = events.next().await {
        let pause = match &event {
            // `Init` comes before the list is even sent: only an answer
            // counts as success, so a list that keeps failing backs off.
            Ok(watcher::Event::Init) => None,
            Ok(_) => {
                failures = 0;
                None
            }
            Err(err) => {
                failures += 1;
                Some(retry::delay(&request_error(err), failures))
            }
        };
        shared.record(event);
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
    }
}

/// A copy of the request error behind a failed watch, for [`retry::delay`].
fn request_error(err: &watcher::Error) -> kube::Error {
    match err {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => match e {
            kube::Error::Api(status) => kube::Error::Api(status.clone()),
            other => kube::Error::ReadEvents(std::io::Error::other(other.to_string())),
        },
        watcher::Error::WatchError(status) => kube::Error::Api(status.clone()),
        watcher::Error::NoResourceVersion => {
            kube::Error::ReadEvents(std::io::Error::other(err.to_string()))
        }
    }
}

/// A task that is aborted when this handle is dropped, and awaited through it.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Future for AbortOnDrop {
    type Output = Result<(), JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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

/// A scripted API server for the sandbox pods of namespace "test", for the
/// unit tests of the watch, of waits and of bulk work: lists and gets (and
/// patches and deletes) answer from a table the test edits, and each watch
/// request is handed to the test, which sends its events, stays silent, or
/// ends it.
#[cfg(test)]
pub(crate) mod scripted {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use futures::channel::mpsc;
    use http::{Request, Response};
    use http_body::Frame;
    use http_body_util::StreamBody;
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock;

    use crate::client::Client;
    use crate::labels::{MANAGED_BY, MANAGED_BY_LABEL};

    type Chunk = Result<Frame<Bytes>, std::io::Error>;
    type Reply = Response<StreamBody<mpsc::UnboundedReceiver<Chunk>>>;

    /// One watch request the client made, open until dropped or ended.
    #[derive(Debug)]
    pub struct OpenWatch {
        /// The request's query string.
        pub query: String,
        body: mpsc::UnboundedSender<Chunk>,
    }

    impl OpenWatch {
        /// Sends one watch event (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`).
        pub fn send(&self, kind: &str, object: &Value) {
            let line = format!("{}\n", json!({"type": kind, "object": object}));
            let _ = self.body.unbounded_send(Ok(Frame::data(Bytes::from(line))));
        }

        /// Tells the client its resource version is too old (410 Gone).
        pub fn gone(&self) {
            self.send(
                "ERROR",
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                    "reason": "Expired", "message": "too old resource version"}),
            );
        }

        /// Breaks the connection mid-stream.
        pub fn fail(self) {
            let _ = self
                .body
                .unbounded_send(Err(std::io::Error::other("connection reset")));
        }
    }

    #[derive(Debug, Default)]
    struct Table {
        version: u64,
        pods: BTreeMap<String, Value>,
    }

    /// The server's side: its pod table and the watches the client opens.
    #[derive(Debug)]
    pub struct Cluster {
        table: Arc<Mutex<Table>>,
        watches: mpsc::UnboundedReceiver<OpenWatch>,
        lists: Arc<AtomicUsize>,
        watches_opened: Arc<AtomicUsize>,
    }

    impl Cluster {
        /// Stores pod `name` in pod phase `phase` with a new resource version,
        /// and returns it (to send on a watch).
        pub fn set(&self, name: &str, phase: &str) -> Value {
            let mut table = self.table.lock().unwrap();
            table.version += 1;
            let pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "test",
                    "resourceVersion": table.version.to_string(),
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
                "status": {"phase": phase}});
            table.pods.insert(name.to_owned(), pod.clone());
            pod
        }

        /// The next watch request the client makes.
        pub async fn next_watch(&mut self) -> OpenWatch {
            futures::StreamExt::next(&mut self.watches)
                .await
                .expect("the server runs")
        }

        /// How many lists the client has made.
        pub fn lists(&self) -> usize {
            self.lists.load(Ordering::SeqCst)
        }

        /// How many watch requests the client has made.
        pub fn watches_opened(&self) -> usize {
            self.watches_opened.load(Ordering::SeqCst)
        }
    }

    fn reply(code: u16, body: &Value) -> Reply {
        let (send, chunks) = mpsc::unbounded();
        send.unbounded_send(Ok(Frame::data(Bytes::from(body.to_string()))))
            .unwrap();
        Response::builder()
            .status(code)
            .body(StreamBody::new(chunks))
            .unwrap()
    }

    /// A client of namespace "test" on a scripted server, and the server.
    pub fn start() -> (Client, Cluster) {
        let (service, mut handle) = mock::pair::<Request<Body>, Reply>();
        let table = Arc::new(Mutex::new(Table::default()));
        let lists = Arc::new(AtomicUsize::new(0));
        let watches_opened = Arc::new(AtomicUsize::new(0));
        let (open, watches) = mpsc::unbounded();
        let cluster = Cluster {
            table: table.clone(),
            watches,
            lists: lists.clone(),
            watches_opened: watches_opened.clone(),
        };
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let query = request.uri().query().unwrap_or_default().to_owned();
                let path = request.uri().path().to_owned();
                let table = table.lock().unwrap();
                let response = match path.strip_prefix("/api/v1/namespaces/test/pods") {
                    Some("") if query.contains("watch=true") => {
                        let (body, chunks) = mpsc::unbounded();
                        watches_opened.fetch_add(1, Ordering::SeqCst);
                        let _ = open.unbounded_send(OpenWatch { query, body });
                        Response::builder()
                            .status(200)
                            .body(StreamBody::new(chunks))
                            .unwrap()
                    }
                    Some("") => {
                        lists.fetch_add(1, Ordering::SeqCst);
                        reply(
                            200,
                            &json!({"apiVersion": "v1", "kind": "PodList",
                                "metadata": {"resourceVersion": table.version.to_string()},
                                "items": table.pods.values().collect::<Vec<_>>()}),
                        )
                    }
                    Some(name) => match table.pods.get(name.trim_start_matches('/')) {
                        Some(pod) => reply(200, pod),
                        None => reply(
                            404,
                            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                "code": 404, "reason": "NotFound", "message": "not found"}),
                        ),
                    },
                    // The purge's housekeeping: no programs here.
                    None if path == "/api/v1/namespaces/test/configmaps" => reply(
                        200,
                        &json!({"apiVersion": "v1", "kind": "ConfigMapList",
                            "metadata": {}, "items": []}),
                    ),
                    None => panic!("unexpected request {path}?{query}"),
                };
                respond.send_response(response);
            }
        });
        let client = Client::from_kube(kube::Client::new(service, "test"), "test".into());
        (client, cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lets the watch task take in what was sent.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn each_event_wakes_only_the_waiters_of_its_sandbox() {
        let (client, mut cluster) = scripted::start();
        cluster.set("a", "Pending");
        cluster.set("b", "Pending");
        let watch = client.pod_watch();
        let (mut a, mut b) = (watch.subscribe("a"), watch.subscribe("b"));
        assert!(watch.ready(Instant::now() + Duration::from_secs(60)).await);
        let open = cluster.next_watch().await;
        assert!(a.woken() && b.woken(), "the first list wakes everyone");

        for _ in 0..10 {
            open.send("MODIFIED", &cluster.set("b", "Pending"));
        }
        settle().await;
        assert!(!a.woken(), "ten events of b, none woke a's waiter");
        assert!(b.woken());
        open.send("MODIFIED", &cluster.set("a", "Running"));
        settle().await;
        assert!(a.woken());
        assert!(!b.woken());

        // A relist (here after 410 Gone) wakes only the waiters whose sandbox
        // changed in between.
        cluster.set("a", "Succeeded");
        open.gone();
        let _again = cluster.next_watch().await;
        assert!(a.woken());
        assert!(!b.woken());
        assert_eq!(
            watch
                .get("a")
                .unwrap()
                .status
                .as_ref()
                .unwrap()
                .phase
                .as_deref(),
            Some("Succeeded")
        );

        let also_a = watch.subscribe("a");
        drop(a);
        assert_eq!(
            watch.shared.pods().waiters.len(),
            2,
            "a second waiter of a keeps a registered"
        );
        drop((also_a, b));
        assert!(
            watch.shared.pods().waiters.is_empty(),
            "waiters unregister when they go"
        );
    }
}
