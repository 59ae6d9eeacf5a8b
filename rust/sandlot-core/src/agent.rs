//! The sandbox agent (`agent/main.rs`) from the client's side: how it gets
//! into sandboxes, and the one connection per client and sandbox that every
//! exec through it shares.
//!
//! Placement: every new sandbox mounts this build's agent read-only from a
//! ConfigMap (`program.rs`) at [`AGENT_DIR`], so it reaches any image with
//! nothing to pull. A client that may not make the ConfigMap creates
//! sandboxes without it, and their execs take the Kubernetes path.
//!
//! Connection: one Kubernetes exec of `agent session` per client and sandbox,
//! opened on first use, carrying `sandlot_wire` frames both ways; a reader
//! task routes answers by request number and process events by process id.
//! It closes after [`IDLE_CLOSE`] without a process or request, and whenever
//! the stream breaks; the next call opens another, and a process whose
//! stream broke is attached again from the output it had delivered.
//!
//! The agent is as untrusted as the workload beside it: every frame is
//! checked (sizes before reading, offsets, the output window), answers are
//! awaited with a timeout, and a frame that breaks the protocol closes the
//! connection with an [`Error::Exec`] that says so. A lying agent can at worst
//! lie about its own sandbox.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{BufMut, Bytes};
use k8s_openapi::api::core::v1::{Pod, VolumeMount};
use sandlot_wire::{Event, HEADER_LEN, Header, OUTPUT_CHUNK, OUTPUT_WINDOW, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::labels;
use crate::program::Program;

const AGENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sandlot-agent"));
/// The agent as placed into sandboxes.
// Its tag is worked out at compile time over the whole binary: a larger
// agent must not trip the compiler's guard against endless evaluation.
#[allow(long_running_const_eval)]
pub(crate) const AGENT_PROGRAM: Program =
    Program::new("sandbox agent", "sandlot-agent", "agent", AGENT);
const AGENT_VOLUME: &str = "sandlot-agent";
/// Where sandboxes mount the agent.
const AGENT_DIR: &str = "/.sandlot-agent";
/// The wait for the agent's first answer (it may start its daemon first).
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait for any other answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection with no process or request for this long is closed.
const IDLE_CLOSE: Duration = Duration::from_secs(30);
/// Frames queued for the agent before a sender waits.
const FRAMES_QUEUED: usize = 64;

/// Which way a client runs commands in sandboxes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExecPath {
    /// The agent where the sandbox has it and it answers, else Kubernetes exec.
    #[default]
    Auto,
    /// The agent only: a sandbox without a working agent is an error.
    Agent,
    /// Kubernetes exec only.
    Kubernetes,
}

impl ExecPath {
    /// Reads `auto`, `agent` or `kubernetes`; `field` names the setting in the error.
    pub fn parse(field: &str, text: &str) -> Result<ExecPath> {
        match text {
            "auto" => Ok(ExecPath::Auto),
            "agent" => Ok(ExecPath::Agent),
            "kubernetes" => Ok(ExecPath::Kubernetes),
            other => Err(Error::invalid(
                field,
                format!("{other:?} is not one of \"auto\", \"agent\", \"kubernetes\""),
            )),
        }
    }
}

/// Adds the agent to a sandbox pod: its ConfigMap volume, mounted read-only
/// into the sandbox container.
pub(crate) fn add_agent(pod: &mut Pod) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let Some(sandbox) = labels::sandbox_container(&mut spec.containers) else {
        return;
    };
    sandbox
        .volume_mounts
        .get_or_insert_default()
        .push(VolumeMount {
            name: AGENT_VOLUME.into(),
            mount_path: AGENT_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    spec.volumes
        .get_or_insert_default()
        .push(AGENT_PROGRAM.volume(AGENT_VOLUME));
}

/// Whether the pod mounts an agent (of this build or another; the first
/// answer says which protocol it speaks).
pub(crate) fn has_agent(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| v.name == AGENT_VOLUME && v.config_map.is_some())
}

/// Whether this build carries an agent for its platform.
pub(crate) fn built() -> bool {
    !AGENT.is_empty()
}

/// The exec that opens a connection to the sandbox's agent.
pub(crate) fn session_command() -> Vec<String> {
    vec![
        format!("{AGENT_DIR}/{}", AGENT_PROGRAM.key),
        "session".into(),
    ]
}

/// The agent program in its file mode (see `files/protocol.rs`).
pub(crate) fn file_command() -> Vec<String> {
    vec![format!("{AGENT_DIR}/{}", AGENT_PROGRAM.key), "file".into()]
}

/// The agent program waiting for signals: the command of a helper pod.
pub(crate) fn wait_command() -> Vec<String> {
    vec![format!("{AGENT_DIR}/{}", AGENT_PROGRAM.key), "wait".into()]
}

/// What happens to a process, in order.
#[derive(Debug)]
pub(crate) enum ProcessEvent {
    Output {
        stream: u8,
        offset: u64,
        data: Bytes,
    },
    /// It ended with this code (128 + signal if a signal ended it).
    Exited(i32),
    /// Its stdin took this many bytes in all.
    StdinTaken(u64),
    /// Output of `stream` from `from` to `to` was dropped by the agent.
    Dropped { stream: u8, from: u64, to: u64 },
    /// The connection broke (why); the process may run on.
    Lost(String),
    /// A later attach (on this connection or another) reads the process now.
    TakenOver,
}

/// A process as [`AgentLink::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentProcessInfo {
    pub id: u32,
    pub pid: u32,
    pub detached: bool,
    pub tty: bool,
    /// `None` while it runs.
    pub exit_code: Option<i32>,
    pub stdout_end: u64,
    pub stderr_end: u64,
    pub command: Vec<String>,
}

/// A sandbox's resources as its agent reads them from its cgroup and
/// `/proc`; `None` where the agent could not read a figure.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SandboxMetrics {
    /// CPU cores in use, on average over the sampling interval.
    pub cpu_cores: Option<f64>,
    /// CPU time used since the sandbox started, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Memory in use less what the kernel can reclaim at once (the working
    /// set, which the memory limit applies to).
    pub memory_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    /// Processes running in the sandbox.
    pub processes: Option<u64>,
    /// Bytes received and sent (loopback left out), since the sandbox started.
    pub network_rx_bytes: Option<u64>,
    pub network_tx_bytes: Option<u64>,
    /// Disk in use: what changed on the root filesystem since the sandbox
    /// started (its writable layer) and what its scratch volumes hold.
    pub disk_used_bytes: Option<u64>,
    /// Its disk limit (`ephemeral-storage`), from its pod.
    pub disk_limit_bytes: Option<u64>,
}

impl SandboxMetrics {
    /// The figures of `last`, with CPU use over the time since `first`.
    pub(crate) fn between(first: &sandlot_wire::Metrics, last: &sandlot_wire::Metrics) -> Self {
        let known = |v: u64| (v != sandlot_wire::UNKNOWN).then_some(v);
        let cpu_cores = match (known(first.cpu_ns), known(last.cpu_ns)) {
            (Some(a), Some(b)) if last.at_ns > first.at_ns && b >= a => {
                Some((b - a) as f64 / (last.at_ns - first.at_ns) as f64)
            }
            _ => None,
        };
        SandboxMetrics {
            cpu_cores,
            cpu_seconds: known(last.cpu_ns).map(|ns| ns as f64 / 1e9),
            memory_bytes: known(last.memory_bytes),
            memory_limit_bytes: known(last.memory_limit_bytes),
            processes: known(last.processes),
            network_rx_bytes: known(last.network_rx_bytes),
            network_tx_bytes: known(last.network_tx_bytes),
            disk_used_bytes: None,
            disk_limit_bytes: None,
        }
    }
}

/// A process's events on one connection, and what acknowledges its output.
#[derive(Debug)]
pub(crate) struct AgentProcess {
    pub id: u32,
    pub events: mpsc::UnboundedReceiver<ProcessEvent>,
    acked: Arc<[AtomicU64; 2]>,
    pub link: Arc<AgentLink>,
}

impl AgentProcess {
    /// The output offsets it was attached from.
    pub fn offsets(&self) -> [u64; 2] {
        [
            self.acked[0].load(Ordering::Relaxed),
            self.acked[1].load(Ordering::Relaxed),
        ]
    }

    /// Tells the agent the caller took `stream`'s output up to `offset`;
    /// nothing once a later attach took the process over.
    pub async fn ack(&self, stream: u8, offset: u64) -> Result<()> {
        self.acked[usize::from(stream - 1)].fetch_max(offset, Ordering::Relaxed);
        if !self.is_current() {
            return Ok(());
        }
        self.link
            .send(self.id, &Request::Ack { stream, offset })
            .await
    }

    /// Whether this is still the connection's reader of the process (its
    /// route is this one's, not a later attach's).
    fn is_current(&self) -> bool {
        self.owns_route(&self.link.routes())
    }

    /// Whether `routes` route the process to this reader.
    fn owns_route(&self, routes: &Routes) -> bool {
        routes
            .processes
            .get(&self.id)
            .is_some_and(|route| Arc::ptr_eq(&route.acked, &self.acked))
    }

    /// Stops reading the process on this connection: it runs on, its output
    /// kept by the agent for a later attach. Nothing once a later attach
    /// took it over. Never waits.
    pub fn release(&self) {
        let mut routes = self.link.routes();
        if !self.owns_route(&routes) {
            return;
        }
        routes.processes.remove(&self.id);
        drop(routes);
        let mut frame = Vec::new();
        Request::Release.encode(self.id, &mut frame);
        // A full queue or a closed connection: the agent finds the
        // process unattached when the connection ends anyway.
        let _ = self.link.frames.try_send(frame);
    }

    /// The protocol the connection speaks.
    pub fn version(&self) -> u32 {
        self.link.version.load(Ordering::Relaxed)
    }

    /// The pid of the agent's daemon the connection reaches (a restarted
    /// daemon numbers its processes anew).
    pub fn daemon(&self) -> u32 {
        self.link.daemon()
    }
}

/// An answer the reader hands to the request waiting for it.
enum Pending {
    /// The protocol version and the daemon's pid.
    Hello(oneshot::Sender<std::result::Result<(u32, u32), String>>),
    /// A start or attach: the route is made by the reader, before the
    /// process's first event, from these offsets.
    Process {
        offsets: [u64; 2],
        answer: oneshot::Sender<std::result::Result<Routed, String>>,
    },
    List(oneshot::Sender<std::result::Result<Vec<AgentProcessInfo>, String>>),
    Metrics(oneshot::Sender<std::result::Result<sandlot_wire::Metrics, String>>),
}

type Routed = (
    u32,
    mpsc::UnboundedReceiver<ProcessEvent>,
    Arc<[AtomicU64; 2]>,
);

struct Route {
    events: mpsc::UnboundedSender<ProcessEvent>,
    /// The offset the next output of each stream must have.
    next: [u64; 2],
    acked: Arc<[AtomicU64; 2]>,
}

#[derive(Default)]
struct Routes {
    closed: Option<String>,
    /// The connection closed for a reason that would recur on a new one: the
    /// agent broke the protocol, did not answer, or said why it cannot run.
    lasting: bool,
    pending: HashMap<u32, Pending>,
    processes: HashMap<u32, Route>,
    last_used: Option<Instant>,
    /// Kept open, idle or not, until then (a pool's warm sandbox, whose
    /// claimer's first exec should not wait for a connection).
    keep_until: Option<Instant>,
}

impl Routes {
    /// Closes the connection's routes: every waiter learns why.
    fn close(&mut self, why: &str) {
        self.close_as(why, false);
    }

    fn close_as(&mut self, why: &str, lasting: bool) {
        if self.closed.is_some() {
            return;
        }
        self.lasting = lasting;
        self.closed = Some(why.to_owned());
        for (_, pending) in self.pending.drain() {
            let why = why.to_owned();
            match pending {
                Pending::Hello(answer) => drop(answer.send(Err(why))),
                Pending::Process { answer, .. } => drop(answer.send(Err(why))),
                Pending::List(answer) => drop(answer.send(Err(why))),
                Pending::Metrics(answer) => drop(answer.send(Err(why))),
            }
        }
        for (_, route) in self.processes.drain() {
            let _ = route.events.send(ProcessEvent::Lost(why.to_owned()));
        }
    }
}

/// Why a connection could not be opened, and whether a new one would fail
/// the same way (then the agent is not tried again for that pod).
#[derive(Debug)]
pub(crate) struct OpenError {
    pub error: Error,
    pub lasting: bool,
}

/// One connection to a sandbox's agent. Dropping the last handle ends it.
pub(crate) struct AgentLink {
    sandbox: String,
    /// The pod it was opened to.
    pub uid: String,
    frames: mpsc::Sender<Vec<u8>>,
    routes: Arc<Mutex<Routes>>,
    requests: AtomicU32,
    tasks: Vec<tokio::task::AbortHandle>,
    /// The protocol agreed in the hello.
    version: AtomicU32,
    /// The daemon's pid, from its welcome.
    daemon: AtomicU32,
}

impl std::fmt::Debug for AgentLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentLink")
            .field("sandbox", &self.sandbox)
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

impl Drop for AgentLink {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl AgentLink {
    /// Speaks to an agent over `stdin`/`stdout` (a session's streams, kept
    /// alive by `session`), and waits for its first answer. `stderr` is kept
    /// to say why a session ended.
    pub async fn open<S: Send + 'static>(
        sandbox: &str,
        uid: &str,
        session: S,
        stdin: DuplexStream,
        stdout: DuplexStream,
        stderr: Option<DuplexStream>,
    ) -> std::result::Result<Arc<AgentLink>, OpenError> {
        let routes = Arc::new(Mutex::new(Routes {
            last_used: Some(Instant::now()),
            ..Routes::default()
        }));
        let (frames, queue) = mpsc::channel(FRAMES_QUEUED);
        let said = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = vec![
            tokio::spawn(write_frames(queue, stdin)).abort_handle(),
            tokio::spawn(read_frames(
                stdout,
                routes.clone(),
                frames.clone(),
                said.clone(),
                session,
            ))
            .abort_handle(),
            tokio::spawn(close_when_idle(routes.clone(), frames.clone())).abort_handle(),
        ];
        if let Some(mut stderr) = stderr {
            tasks.push(
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = stderr.read(&mut buf).await {
                        let mut said = said.lock().unwrap_or_else(PoisonError::into_inner);
                        if said.len() < 4096 {
                            said.extend_from_slice(&buf[..n]);
                        }
                    }
                })
                .abort_handle(),
            );
        }
        let link = Arc::new(AgentLink {
            sandbox: sandbox.to_owned(),
            uid: uid.to_owned(),
            frames,
            routes,
            requests: AtomicU32::new(1),
            tasks,
            version: AtomicU32::new(sandlot_wire::OLDEST_VERSION),
            daemon: AtomicU32::new(0),
        });
        let failed = |error: Error| OpenError {
            lasting: link.routes().lasting,
            error,
        };
        let (answer, version) = oneshot::channel();
        let id = link.pending(Pending::Hello(answer)).map_err(failed)?;
        let hello = Request::Hello {
            version: sandlot_wire::VERSION,
        };
        link.send(id, &hello).await.map_err(failed)?;
        let (version, daemon) = link.answer(version, HELLO_TIMEOUT).await.map_err(failed)?;
        link.version.store(version, Ordering::Relaxed);
        link.daemon.store(daemon, Ordering::Relaxed);
        if !(sandlot_wire::OLDEST_VERSION..=sandlot_wire::VERSION).contains(&version) {
            return Err(OpenError {
                error: link.error(format!(
                    "the sandbox's agent speaks protocol {version}, this client {} to {}",
                    sandlot_wire::OLDEST_VERSION,
                    sandlot_wire::VERSION
                )),
                lasting: true,
            });
        }
        Ok(link)
    }

    /// The pid of the daemon it reaches, from its welcome.
    pub fn daemon(&self) -> u32 {
        self.daemon.load(Ordering::Relaxed)
    }

    /// Whether the connection is gone; a new one must be opened.
    pub fn is_closed(&self) -> bool {
        self.routes().closed.is_some()
    }

    /// Keeps the connection open until `until` even while idle; `None`
    /// lets it close after [`IDLE_CLOSE`] idle again.
    pub fn keep_open_until(&self, until: Option<Instant>) {
        let mut routes = self.routes();
        routes.keep_until = until;
        routes.last_used = Some(Instant::now());
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn error(&self, message: String) -> Error {
        Error::Exec {
            name: self.sandbox.clone(),
            message,
        }
    }

    /// Registers what waits for an answer; its request number.
    fn pending(&self, pending: Pending) -> Result<u32> {
        let id = self.requests.fetch_add(1, Ordering::Relaxed);
        let mut routes = self.routes();
        if let Some(why) = &routes.closed {
            return Err(self.error(why.clone()));
        }
        routes.last_used = Some(Instant::now());
        routes.pending.insert(id, pending);
        Ok(id)
    }

    async fn answer<T>(
        &self,
        answer: oneshot::Receiver<std::result::Result<T, String>>,
        limit: Duration,
    ) -> Result<T> {
        match tokio::time::timeout(limit, answer).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(why))) => Err(self.error(why)),
            Ok(Err(_)) => Err(self.error("the connection to the sandbox's agent ended".into())),
            Err(_) => {
                let why = format!(
                    "the sandbox's agent did not answer within {} s",
                    limit.as_secs()
                );
                self.routes().close_as(&why, true);
                Err(self.error(why))
            }
        }
    }

    /// Queues a frame for the agent.
    pub async fn send(&self, id: u32, request: &Request<'_>) -> Result<()> {
        let mut frame = Vec::new();
        request.encode(id, &mut frame);
        self.frames
            .send(frame)
            .await
            .map_err(|_| self.error("the connection to the sandbox's agent ended".into()))
    }

    /// Starts a process; its events follow on the returned receiver.
    pub async fn start(self: &Arc<Self>, start: &sandlot_wire::Start<'_>) -> Result<AgentProcess> {
        let (answer, routed) = oneshot::channel();
        let id = self.pending(Pending::Process {
            offsets: [0, 0],
            answer,
        })?;
        self.send(id, &Request::Start(start.clone())).await?;
        self.routed(routed).await
    }

    /// Attaches to a process the agent runs, from these output offsets.
    pub async fn attach(self: &Arc<Self>, process: u32, offsets: [u64; 2]) -> Result<AgentProcess> {
        let (answer, routed) = oneshot::channel();
        let id = self.pending(Pending::Process { offsets, answer })?;
        let request = Request::Attach {
            process,
            stdout: offsets[0],
            stderr: offsets[1],
        };
        self.send(id, &request).await?;
        self.routed(routed).await
    }

    async fn routed(
        self: &Arc<Self>,
        routed: oneshot::Receiver<std::result::Result<Routed, String>>,
    ) -> Result<AgentProcess> {
        let (id, events, acked) = self.answer(routed, REPLY_TIMEOUT).await?;
        Ok(AgentProcess {
            id,
            events,
            acked,
            link: self.clone(),
        })
    }

    /// The agent's reading of its sandbox's resources.
    pub async fn metrics(&self) -> Result<sandlot_wire::Metrics> {
        let (answer, metrics) = oneshot::channel();
        let id = self.pending(Pending::Metrics(answer))?;
        self.send(id, &Request::Metrics).await?;
        self.answer(metrics, REPLY_TIMEOUT).await
    }

    /// The processes the agent keeps: running ones and the last that ended.
    pub async fn list(&self) -> Result<Vec<AgentProcessInfo>> {
        let (answer, list) = oneshot::channel();
        let id = self.pending(Pending::List(answer))?;
        self.send(id, &Request::List).await?;
        self.answer(list, REPLY_TIMEOUT).await
    }
}

/// Sends queued frames to the agent, several at a time when they wait.
async fn write_frames(mut queue: mpsc::Receiver<Vec<u8>>, mut stdin: DuplexStream) {
    while let Some(mut batch) = queue.recv().await {
        while batch.len() < 256 * 1024 {
            match queue.try_recv() {
                Ok(frame) => batch.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        if stdin.write_all(&batch).await.is_err() {
            return;
        }
    }
}

/// Closes a connection idle for [`IDLE_CLOSE`]: its session ends, and the
/// next call opens another.
async fn close_when_idle(routes: Arc<Mutex<Routes>>, frames: mpsc::Sender<Vec<u8>>) {
    loop {
        tokio::time::sleep(IDLE_CLOSE / 4).await;
        let mut routes = routes.lock().unwrap_or_else(PoisonError::into_inner);
        let idle = routes.pending.is_empty()
            && routes.processes.is_empty()
            && routes
                .last_used
                .is_some_and(|at| at.elapsed() >= IDLE_CLOSE)
            && routes
                .keep_until
                .is_none_or(|until| Instant::now() >= until);
        if idle || routes.closed.is_some() {
            routes.close("the connection to the sandbox's agent was idle and closed");
            drop(frames);
            return;
        }
    }
}

/// Reads the agent's frames and routes them until the stream ends or a
/// frame breaks the protocol; then closes the routes with the reason.
async fn read_frames<S>(
    mut stdout: DuplexStream,
    routes: Arc<Mutex<Routes>>,
    frames: mpsc::Sender<Vec<u8>>,
    said: Arc<Mutex<Vec<u8>>>,
    session: S,
) {
    // Why it ends, and whether a new connection would end the same way.
    let (why, lasting) = loop {
        let mut head = [0u8; HEADER_LEN];
        if stdout.read_exact(&mut head).await.is_err() {
            let said = said.lock().unwrap_or_else(PoisonError::into_inner);
            let said = String::from_utf8_lossy(&said).trim().to_owned();
            break if said.is_empty() {
                (
                    "the connection to the sandbox's agent ended".to_owned(),
                    false,
                )
            } else {
                (
                    format!("the connection to the sandbox's agent ended: {said}"),
                    true,
                )
            };
        }
        let header = match Header::parse(&head) {
            Ok(header) => header,
            Err(err) => break (broke(err), true),
        };
        // Read into fresh capacity (not zeroed first), and shared by the
        // output it carries (not copied again).
        let len = header.len as usize;
        let mut payload = Vec::with_capacity(len);
        while payload.len() < len {
            let room = len - payload.len();
            match stdout.read_buf(&mut (&mut payload).limit(room)).await {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        if payload.len() < len {
            break (
                "the connection to the sandbox's agent ended inside a frame".to_owned(),
                false,
            );
        }
        let payload = Bytes::from(payload);
        let event = match Event::decode(header.kind, &payload) {
            Ok(event) => event,
            Err(err) => break (broke(err), true),
        };
        let orphan = match route(
            &mut routes.lock().unwrap_or_else(PoisonError::into_inner),
            header.id,
            event,
            &payload,
        ) {
            Ok(orphan) => orphan,
            Err(why) => break (why, true),
        };
        if let Some(process) = orphan {
            // Started for a call that is gone: nobody will stop it otherwise.
            let mut frame = Vec::new();
            Request::Signal {
                signal: 9,
                tree: true,
            }
            .encode(process, &mut frame);
            let _ = frames.send(frame).await;
        }
    };
    routes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .close_as(&why, lasting);
    drop(session);
}

fn broke(what: impl std::fmt::Display) -> String {
    format!("the sandbox's agent broke the protocol: {what}")
}

/// Hands one event to whoever waits for it: Ok(Some(process)) for a process
/// started for a caller that is gone, Err(why) if it breaks the protocol.
fn route(
    routes: &mut Routes,
    id: u32,
    event: Event<'_>,
    payload: &Bytes,
) -> std::result::Result<Option<u32>, String> {
    match event {
        Event::Welcome { version, pid } => {
            if let Some(Pending::Hello(answer)) = routes.pending.remove(&id) {
                let _ = answer.send(Ok((version, pid)));
            }
        }
        Event::Started { process } => {
            if let Some(Pending::Process { offsets, answer }) = routes.pending.remove(&id) {
                let (events, receiver) = mpsc::unbounded_channel();
                let acked = Arc::new([AtomicU64::new(offsets[0]), AtomicU64::new(offsets[1])]);
                let route = Route {
                    events,
                    next: offsets,
                    acked: acked.clone(),
                };
                // An attach to a process this connection reads already: the
                // new reader takes it over (a lying agent can do no more
                // than end the old reader of its own process).
                if let Some(earlier) = routes.processes.insert(process, route) {
                    let _ = earlier.events.send(ProcessEvent::TakenOver);
                }
                if answer.send(Ok((process, receiver, acked))).is_err() {
                    routes.processes.remove(&process);
                    return Ok(Some(process));
                }
            }
        }
        Event::Failed { errno, message } => {
            let message = format!(
                "{} (errno {errno})",
                String::from_utf8_lossy(&message[..message.len().min(1024)])
            );
            match routes.pending.remove(&id) {
                Some(Pending::Hello(answer)) => drop(answer.send(Err(message))),
                Some(Pending::Process { answer, .. }) => drop(answer.send(Err(message))),
                Some(Pending::List(answer)) => drop(answer.send(Err(message))),
                Some(Pending::Metrics(answer)) => drop(answer.send(Err(message))),
                None => {}
            }
        }
        Event::Processes(entries) => {
            if let Some(Pending::List(answer)) = routes.pending.remove(&id) {
                let list = entries
                    .into_iter()
                    .map(|e| AgentProcessInfo {
                        id: e.id,
                        pid: e.pid,
                        detached: e.flags & sandlot_wire::START_DETACHED != 0,
                        tty: e.flags & sandlot_wire::START_TTY != 0,
                        exit_code: e.exit.map(sandlot_wire::Exit::code),
                        stdout_end: e.stdout_end,
                        stderr_end: e.stderr_end,
                        command: e
                            .command
                            .split(|&b| b == 0)
                            .map(|w| String::from_utf8_lossy(w).into_owned())
                            .collect(),
                    })
                    .collect();
                let _ = answer.send(Ok(list));
            }
        }
        Event::Measured(metrics) => {
            if let Some(Pending::Metrics(answer)) = routes.pending.remove(&id) {
                let _ = answer.send(Ok(metrics));
            }
        }
        Event::Output {
            stream,
            offset,
            data,
        } => {
            let Some(route) = routes.processes.get_mut(&id) else {
                return Ok(None);
            };
            let s = usize::from(stream - 1);
            if offset != route.next[s] {
                return Err(broke(format!(
                    "output of process {id} at offset {offset}, expected {}",
                    route.next[s]
                )));
            }
            let end = offset + data.len() as u64;
            let acked = route.acked[s].load(Ordering::Relaxed);
            if end.saturating_sub(acked) > OUTPUT_WINDOW + OUTPUT_CHUNK as u64 {
                return Err(broke(format!(
                    "process {id} was sent {} bytes ahead of the client, more than the window",
                    end - acked
                )));
            }
            route.next[s] = end;
            let _ = route.events.send(ProcessEvent::Output {
                stream,
                offset,
                data: payload.slice_ref(data),
            });
        }
        Event::TakenOver => {
            if let Some(route) = routes.processes.remove(&id) {
                let _ = route.events.send(ProcessEvent::TakenOver);
            }
        }
        Event::Dropped { stream, from, to } => {
            let Some(route) = routes.processes.get_mut(&id) else {
                return Ok(None);
            };
            let s = usize::from(stream - 1);
            if from != route.next[s] {
                return Err(broke(format!("a drop of process {id} at offset {from}")));
            }
            route.next[s] = to;
            route.acked[s].fetch_max(to, Ordering::Relaxed);
            let _ = route
                .events
                .send(ProcessEvent::Dropped { stream, from, to });
        }
        Event::StdinTaken { total } => {
            if let Some(route) = routes.processes.get(&id) {
                let _ = route.events.send(ProcessEvent::StdinTaken(total));
            }
        }
        Event::Exited(exit) => {
            if let Some(route) = routes.processes.remove(&id) {
                let _ = route.events.send(ProcessEvent::Exited(exit.code()));
            }
            routes.last_used = Some(Instant::now());
        }
    }
    Ok(None)
}

/// A client's agent state: when the agent's ConfigMap was last known to
/// exist, its connections by sandbox, and the pods (by uid) whose agent could
/// not be reached, with why.
#[derive(Debug, Default)]
pub(crate) struct AgentState {
    pub checked: tokio::sync::Mutex<Option<Instant>>,
    links: Mutex<HashMap<String, LinkSlot>>,
    unusable: Mutex<HashMap<String, String>>,
}

/// Where a sandbox's connection is kept; held while one is opened.
pub(crate) type LinkSlot = Arc<tokio::sync::Mutex<Option<Arc<AgentLink>>>>;

/// Pods remembered as having an unusable agent, before the record is cleared.
const UNUSABLE_REMEMBERED: usize = 4096;

impl AgentState {
    /// The open connection to sandbox `name` this client holds, if any and
    /// no one is opening one just now.
    pub fn held(&self, name: &str) -> Option<Arc<AgentLink>> {
        let links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = links.get(name)?.try_lock().ok()?;
        slot.as_ref().filter(|link| !link.is_closed()).cloned()
    }

    /// The slot holding sandbox `name`'s connection; one opener at a time.
    pub fn slot(&self, name: &str) -> LinkSlot {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        // Slots of closed connections are dropped as new ones are made.
        if links.len() >= 256 {
            links.retain(|_, slot| {
                slot.try_lock()
                    .map_or(true, |link| link.as_ref().is_some_and(|l| !l.is_closed()))
            });
        }
        links.entry(name.to_owned()).or_default().clone()
    }

    /// Drops this client's connection to sandbox `name` (it was terminated).
    pub fn forget(&self, name: &str) {
        let slot = self
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        if let Some(slot) = slot {
            if let Ok(mut link) = slot.try_lock() {
                if let Some(link) = link.take() {
                    link.routes().close("the sandbox was terminated");
                }
            }
        }
    }

    /// Why the agent of pod `uid` could not be used, if it could not.
    pub fn unusable(&self, uid: &str) -> Option<String> {
        self.unusable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(uid)
            .cloned()
    }

    pub fn mark_unusable(&self, uid: &str, why: String) {
        let mut unusable = self.unusable.lock().unwrap_or_else(PoisonError::into_inner);
        if unusable.len() >= UNUSABLE_REMEMBERED {
            unusable.clear();
        }
        unusable.insert(uid.to_owned(), why);
    }
}

impl crate::Client {
    /// Whether this client's new sandboxes get the agent: once its ConfigMap
    /// is made (also for a client that runs execs through Kubernetes only:
    /// files need the program). A client that may not make it (403) creates
    /// them without, unless its path is `agent`.
    pub(crate) async fn place_agent(&self) -> Result<bool> {
        let path = self.exec_path();
        if !built() {
            return Ok(false);
        }
        match self
            .ensure_program(&AGENT_PROGRAM, &self.agent().checked)
            .await
        {
            Ok(()) => Ok(true),
            Err(Error::PermissionDenied { .. }) if path != ExecPath::Agent => Ok(false),
            Err(err) => Err(err),
        }
    }
}

/// Parses the client setting for the exec path from `$SANDLOT_EXEC_PATH`.
pub(crate) fn exec_path_from_env(value: Option<String>) -> Result<ExecPath> {
    value.map_or(Ok(ExecPath::Auto), |v| {
        ExecPath::parse(crate::client::EXEC_PATH_ENV, v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandlot_wire::{Exit, MAX_PAYLOAD, STDOUT};

    /// A fake agent on the other side of duplex streams.
    struct Fake {
        to_client: DuplexStream,
        from_client: DuplexStream,
    }

    impl Fake {
        async fn frame(&mut self) -> (Header, Vec<u8>) {
            let mut head = [0u8; HEADER_LEN];
            self.from_client.read_exact(&mut head).await.unwrap();
            let header = Header::parse(&head).unwrap();
            let mut payload = vec![0; header.len as usize];
            self.from_client.read_exact(&mut payload).await.unwrap();
            (header, payload)
        }
        async fn send(&mut self, id: u32, event: Event<'_>) {
            let mut out = Vec::new();
            event.encode(id, &mut out);
            self.to_client.write_all(&out).await.unwrap();
        }
        async fn welcome(&mut self) {
            self.welcome_as(sandlot_wire::VERSION).await;
        }
        /// Answers the hello as an agent of protocol `version`; the version
        /// the client said.
        async fn welcome_as(&mut self, version: u32) -> u32 {
            let (header, payload) = self.frame().await;
            let Ok(Request::Hello { version: said }) = Request::decode(header.kind, &payload)
            else {
                panic!("the first frame is a hello");
            };
            self.send(header.id, Event::Welcome { version, pid: 1 })
                .await;
            said
        }
    }

    impl Fake {
        /// Has `link` start a process, answered as process `process`.
        async fn start(
            &mut self,
            link: &Arc<AgentLink>,
            process: u32,
        ) -> tokio::task::JoinHandle<Result<AgentProcess>> {
            let starting = tokio::spawn({
                let link = link.clone();
                async move { link.start(&start()).await }
            });
            let (header, _) = self.frame().await;
            self.send(header.id, Event::Started { process }).await;
            starting
        }
    }

    type Opening = tokio::task::JoinHandle<std::result::Result<Arc<AgentLink>, OpenError>>;

    async fn link() -> (Opening, Fake) {
        let (stdin, from_client) = tokio::io::duplex(1 << 16);
        let (to_client, stdout) = tokio::io::duplex(1 << 16);
        let open = tokio::spawn(AgentLink::open("sb", "uid", (), stdin, stdout, None));
        (
            open,
            Fake {
                to_client,
                from_client,
            },
        )
    }

    fn start() -> sandlot_wire::Start<'static> {
        sandlot_wire::Start {
            flags: 0,
            rows: 0,
            cols: 0,
            workdir: b"",
            argv: vec![b"true".as_slice()],
            env: vec![],
        }
    }

    #[tokio::test]
    async fn events_reach_their_process_in_order() {
        let (open, mut fake) = link().await;
        fake.welcome().await;
        let link = open.await.unwrap().unwrap();
        let starting = fake.start(&link, 7).await;
        fake.send(
            7,
            Event::Output {
                stream: STDOUT,
                offset: 0,
                data: b"hi",
            },
        )
        .await;
        fake.send(7, Event::Exited(Exit::Code(42))).await;
        let mut process = starting.await.unwrap().unwrap();
        assert_eq!(process.id, 7);
        assert!(matches!(
            process.events.recv().await,
            Some(ProcessEvent::Output { data, .. }) if &data[..] == b"hi"
        ));
        assert!(matches!(
            process.events.recv().await,
            Some(ProcessEvent::Exited(42))
        ));
    }

    #[tokio::test]
    async fn agents_of_either_protocol_are_spoken_to_and_others_refused() {
        for (agent, usable) in [(1, true), (2, true), (3, false), (0, false)] {
            let (open, mut fake) = link().await;
            assert_eq!(fake.welcome_as(agent).await, sandlot_wire::VERSION);
            match open.await.unwrap() {
                Ok(link) => {
                    assert!(usable, "protocol {agent} was taken");
                    let started = fake.start(&link, 4).await.await.unwrap().unwrap();
                    assert_eq!(started.version(), agent);
                    assert_eq!(started.daemon(), 1);
                }
                Err(OpenError { error, lasting }) => {
                    assert!(!usable, "protocol {agent} was refused: {error}");
                    assert!(lasting);
                    assert!(error.to_string().contains("speaks protocol"), "{error}");
                }
            }
        }
    }

    #[tokio::test]
    async fn a_second_attach_on_one_connection_takes_the_process_over() {
        let (open, mut fake) = link().await;
        fake.welcome().await;
        let link = open.await.unwrap().unwrap();
        let mut first = fake.start(&link, 5).await.await.unwrap().unwrap();
        let attaching = tokio::spawn({
            let link = link.clone();
            async move { link.attach(5, [0, 0]).await }
        });
        let (header, _) = fake.frame().await;
        fake.send(header.id, Event::Started { process: 5 }).await;
        let second = attaching.await.unwrap().unwrap();
        assert!(matches!(
            first.events.recv().await,
            Some(ProcessEvent::TakenOver)
        ));
        // The earlier reader letting go leaves the new one's route alone.
        first.release();
        assert!(second.is_current());
        assert!(!first.is_current());
        fake.send(
            5,
            Event::Output {
                stream: STDOUT,
                offset: 0,
                data: b"to the new reader",
            },
        )
        .await;
        let mut second = second;
        assert!(matches!(
            second.events.recv().await,
            Some(ProcessEvent::Output { data, .. }) if &data[..] == b"to the new reader"
        ));
        assert!(!link.is_closed());
    }

    #[tokio::test]
    async fn an_oversized_frame_closes_the_connection_with_a_clear_error() {
        let (open, mut fake) = link().await;
        fake.welcome().await;
        let link = open.await.unwrap().unwrap();
        let starting = fake.start(&link, 1).await;
        // A header announcing 1 GiB: refused before anything is read or reserved.
        let mut head = Vec::from((1u32 << 30).to_le_bytes());
        head.extend_from_slice(&[67, 1, 0, 0, 0]);
        fake.to_client.write_all(&head).await.unwrap();
        let mut process = starting.await.unwrap().unwrap();
        match process.events.recv().await {
            Some(ProcessEvent::Lost(why)) => {
                assert!(why.contains("broke the protocol"), "{why}");
                assert!(why.contains("1073741824"), "{why}");
            }
            other => panic!("expected the connection lost, got {other:?}"),
        }
        assert!(link.is_closed());
        assert!(link.list().await.is_err());
    }

    #[tokio::test]
    async fn output_beyond_the_window_or_out_of_order_breaks_the_protocol() {
        // Frames of output (offset, length): out of order; then more than the
        // window without an acknowledgement, in frames the size limit allows.
        let chunk = MAX_PAYLOAD / 2;
        let too_much = OUTPUT_WINDOW as usize + OUTPUT_CHUNK + 1;
        let beyond: Vec<(u64, usize)> = (0..too_much.div_ceil(chunk))
            .map(|i| ((i * chunk) as u64, chunk))
            .collect();
        for (frames, expect) in [(vec![(5u64, 1usize)], "expected 0"), (beyond, "window")] {
            let (open, mut fake) = link().await;
            fake.welcome().await;
            let link = open.await.unwrap().unwrap();
            let starting = fake.start(&link, 1).await;
            let mut process = starting.await.unwrap().unwrap();
            for (offset, len) in frames {
                let data = vec![b'x'; len];
                let mut out = Vec::new();
                let output = Event::Output {
                    stream: STDOUT,
                    offset,
                    data: &data,
                };
                output.encode(1, &mut out);
                // The client may close before the last frame is written.
                let _ = fake.to_client.write_all(&out).await;
            }
            loop {
                match process.events.recv().await {
                    Some(ProcessEvent::Output { .. }) => continue,
                    Some(ProcessEvent::Lost(why)) => assert!(why.contains(expect), "{why}"),
                    other => panic!("expected the connection lost, got {other:?}"),
                }
                break;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_that_never_answers_is_a_timeout_not_a_hang() {
        let (open, _fake) = link().await;
        let failed = open.await.unwrap().unwrap_err();
        assert!(
            failed.lasting,
            "an agent that never answers is not tried again"
        );
        assert!(
            failed.error.to_string().contains("did not answer"),
            "{failed:?}"
        );
    }

    #[test]
    fn the_exec_path_setting_names_its_values() {
        assert_eq!(exec_path_from_env(None).unwrap(), ExecPath::Auto);
        assert_eq!(
            exec_path_from_env(Some("agent".into())).unwrap(),
            ExecPath::Agent
        );
        let err = exec_path_from_env(Some("fast".into())).unwrap_err();
        assert!(err.to_string().contains("SANDLOT_EXEC_PATH"), "{err}");
    }
}
