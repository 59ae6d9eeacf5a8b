//! Execs through the sandbox agent (see `agent.rs`): which way an exec goes,
//! and a command started through the agent presented as an [`ExecProcess`],
//! so every exec API works the same on both paths.
//!
//! Through the agent the exit code is the agent's own record (no wrapper,
//! no shell needed in the image), a timeout or cancel kills the whole process
//! tree, and a broken connection loses nothing that can be recovered: the
//! command is attached again on a new connection from the output already
//! delivered (at most [`REATTACH_TRIES`] times).

use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use k8s_openapi::api::core::v1::Pod;
use sandlot_wire::{
    OUTPUT_WINDOW, Request, START_DETACHED, START_STDIN, START_TTY, STDIN_WINDOW, Start,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::exec::{
    ExecKiller, ExecProcess, KillTarget, LetGo, STREAM_BUFFER, Session, SessionEnd, SpawnOptions,
    TerminalSize, running,
};
use crate::agent::{
    self, AgentLink, AgentProcess, AgentProcessInfo, ExecPath, OpenError, ProcessEvent,
    SandboxMetrics,
};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::labels;
use crate::status::SandboxStatus;

/// The most stdin sent in one frame (and buffered before it).
const STDIN_CHUNK: usize = 512 * 1024;
/// How often one command is attached again after its connection broke.
const REATTACH_TRIES: u32 = 2;
/// SIGKILL.
const KILL: u8 = 9;

/// Which way an exec goes.
pub(super) enum ExecRoute {
    /// Through the agent, with the sandbox's own environment (see
    /// [`labels::sandbox_env`]) for the commands it starts.
    Agent(Arc<AgentLink>, Vec<(String, String)>),
    /// Kubernetes exec; `ready` once the sandbox was checked as ready for
    /// it, and `env` then read from it; `why` the agent is not used.
    Kubernetes {
        ready: bool,
        why: String,
        env: Vec<(String, String)>,
    },
}

impl Client {
    /// Which way an exec into sandbox `name` goes, as this client's
    /// [`ExecPath`] says. A connection this client holds is reused while
    /// the sandbox still runs (as the shared pod watch last saw it, else as
    /// read); else the sandbox is checked as ready for exec and, if it has
    /// the agent, a connection opened. An agent that cannot be reached is
    /// remembered for its pod; `auto` then takes Kubernetes exec, `agent`
    /// fails saying why.
    pub(super) async fn exec_route(&self, name: &str) -> Result<ExecRoute> {
        self.route(name, false).await
    }

    /// Opens this client's connection to warm sandbox `name`'s agent (a
    /// pool readying it), if its exec path uses the agent.
    pub(crate) async fn open_warm_route(&self, name: &str) -> Result<()> {
        self.route(name, true).await.map(drop)
    }

    /// [`Client::exec_route`], a pool's warm sandbox accepted if `warm_ok`.
    async fn route(&self, name: &str, warm_ok: bool) -> Result<ExecRoute> {
        if self.exec_path() == ExecPath::Kubernetes {
            return Ok(ExecRoute::Kubernetes {
                ready: false,
                why: "the client's exec_path is \"kubernetes\"".into(),
                env: Vec::new(),
            });
        }
        let slot = self.agent().slot(name);
        let mut slot = slot.lock().await;
        if let Some(link) = slot.as_ref().filter(|link| !link.is_closed()) {
            if let Some(pod) = self.still_runs(name, &link.uid).await? {
                if !warm_ok {
                    super::exec::refuse_warm(name, &pod)?;
                }
                return Ok(ExecRoute::Agent(
                    link.clone(),
                    labels::sandbox_env(&pod.metadata),
                ));
            }
        }
        *slot = None;
        let pod = self.ready_for_exec_as(name, warm_ok).await?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let env = labels::sandbox_env(&pod.metadata);
        let why = if !agent::built() {
            Some("this build of sandlot has no agent for its platform".to_owned())
        } else if !agent::has_agent(&pod) {
            Some("the sandbox was created without the agent".to_owned())
        } else {
            self.agent().unusable(&uid)
        };
        let why = match why {
            Some(why) => why,
            None => match self.open_agent_link(name, &uid).await {
                Ok(link) => {
                    *slot = Some(link.clone());
                    return Ok(ExecRoute::Agent(link, env));
                }
                // The agent's own failure: it is not tried again for this pod.
                Err(OpenError {
                    error,
                    lasting: true,
                }) => {
                    let why = error.to_string();
                    self.agent().mark_unusable(&uid, why.clone());
                    why
                }
                // A passing one (the stream broke): this call takes the other path.
                Err(OpenError {
                    error: error @ Error::Exec { .. },
                    ..
                }) => error.to_string(),
                // The cluster refused the session (not running, gone, unreachable).
                Err(OpenError { error, .. }) => return Err(error),
            },
        };
        if self.exec_path() == ExecPath::Agent {
            return Err(Error::Exec {
                name: name.to_owned(),
                message: format!("the sandbox's agent cannot be used: {why}"),
            });
        }
        Ok(ExecRoute::Kubernetes {
            ready: true,
            why,
            env,
        })
    }

    /// Sandbox `name` as last seen, if it still runs as pod `uid`: from the
    /// shared pod watch once it has listed, else read. Not running is
    /// [`Error::NotRunning`].
    async fn still_runs(&self, name: &str, uid: &str) -> Result<Option<Arc<Pod>>> {
        let pod = self.last_seen_pod(name).await?;
        if pod.metadata.uid.as_deref() != Some(uid) {
            return Ok(None);
        }
        running(name, &SandboxStatus::from_pod(&pod))?;
        Ok(Some(pod))
    }

    /// Opens a connection to sandbox `name`'s agent: an exec of `agent
    /// session`, and the agent's first answer.
    async fn open_agent_link(
        &self,
        name: &str,
        uid: &str,
    ) -> std::result::Result<Arc<AgentLink>, OpenError> {
        let options = SpawnOptions {
            stdin: true,
            ..SpawnOptions::default()
        };
        let mut session = self
            .start_exec(name, &agent::session_command(), &options, None)
            .await
            .map_err(|error| OpenError {
                error,
                lasting: false,
            })?;
        let (Some(stdin), Some(stdout)) = (session.take_stdin(), session.take_stdout()) else {
            unreachable!("a session is opened with stdin and stdout");
        };
        let stderr = session.take_stderr();
        AgentLink::open(name, uid, session, stdin, stdout, stderr).await
    }

    /// Starts `command` through `link` and presents it as an [`ExecProcess`]
    /// (always killable: the agent kills its process tree).
    pub(super) async fn start_agent_exec(
        &self,
        link: Arc<AgentLink>,
        name: &str,
        command: &[String],
        options: &SpawnOptions,
    ) -> Result<ExecProcess> {
        super::exec::check_command(command, &options.env, options.workdir.as_deref())?;
        let env: Vec<String> = options
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let start = Start {
            flags: if options.stdin { START_STDIN } else { 0 }
                | if options.tty { START_TTY } else { 0 }
                | if options.detach { START_DETACHED } else { 0 },
            rows: 24,
            cols: 80,
            workdir: options.workdir.as_deref().unwrap_or_default().as_bytes(),
            argv: command.iter().map(|w| w.as_bytes()).collect(),
            env: env.iter().map(|e| e.as_bytes()).collect(),
        };
        let process = link.start(&start).await?;
        Ok(self.present(name, process, options.tty, options.stdin, false))
    }

    /// A process the agent runs, as an [`ExecProcess`] whose streams carry
    /// its events. With `drops_reported`, output the agent no longer had is
    /// counted ([`ExecProcess::dropped`]) rather than an error.
    fn present(
        &self,
        name: &str,
        process: AgentProcess,
        tty: bool,
        stdin: bool,
        drops_reported: bool,
    ) -> ExecProcess {
        let id = process.id;
        let offsets = process.offsets();
        let (stdout, stdout_end) = tokio::io::duplex(STREAM_BUFFER);
        let (stderr, stderr_end) = if tty {
            (None, None)
        } else {
            let (ours, theirs) = tokio::io::duplex(STREAM_BUFFER);
            (Some(ours), Some(theirs))
        };
        let (stdin, stdin_end) = if stdin {
            let (ours, theirs) = tokio::io::duplex(STDIN_CHUNK);
            (Some(ours), Some(theirs))
        } else {
            (None, None)
        };
        let (resize, resize_end) = if tty {
            let (sender, receiver) = tokio::sync::mpsc::channel(8);
            (Some(sender), Some(receiver))
        } else {
            (None, None)
        };
        let dropped = Arc::new(AtomicU64::new(0));
        // Protocol 1 sends no count after an attach: counted from 0.
        let counted_from_0 = process.version() < 2;
        let daemon = process.daemon();
        let let_go = Arc::new(AtomicBool::new(false));
        let pump = Pump {
            let_go: let_go.clone(),
            client: self.clone(),
            sandbox: name.to_owned(),
            process,
            outputs: [Some(stdout_end), stderr_end],
            offsets,
            acked: offsets,
            stdin: stdin_end,
            stdin_sent: 0,
            stdin_taken: 0,
            stdin_base: (!drops_reported || counted_from_0).then_some(0),
            resize: resize_end,
            dropped: drops_reported.then(|| dropped.clone()),
            ended: false,
        };
        ExecProcess {
            _let_go: Some(LetGo(let_go)),
            sandbox: name.to_owned(),
            session: Some(Session(tokio::spawn(pump.run()))),
            stdout: Some(stdout),
            stderr,
            stdin,
            resize,
            killer: Some(ExecKiller {
                client: self.clone(),
                sandbox: name.to_owned(),
                target: KillTarget::Agent {
                    process: id,
                    daemon,
                },
            }),
            agent_id: Some(id),
            dropped: Some(dropped),
        }
    }

    /// Runs the agent program with `args` in sandbox `name`: through its
    /// agent connection where that can be used, else as a Kubernetes exec
    /// of the program: the one the sandbox mounts, or in a sandbox created
    /// without it, a copy placed with its shell.
    pub(crate) async fn spawn_agent_program(
        &self,
        name: &str,
        command: &[String],
        options: &SpawnOptions,
    ) -> Result<ExecProcess> {
        match self.exec_route(name).await? {
            ExecRoute::Agent(link, _) => self.start_agent_exec(link, name, command, options).await,
            ExecRoute::Kubernetes { ready, .. } => {
                let pod = if ready {
                    self.sandbox_pod(name).await?
                } else {
                    self.ready_for_exec(name).await?
                };
                let mut command = command.to_vec();
                if !agent::has_agent(&pod) {
                    command[0] = self.placed_agent_program(name).await?;
                }
                self.start_exec(name, &command, options, None).await
            }
        }
    }

    /// The path of this build's agent program copied into sandbox `name`
    /// (made without its mount) by the image's `/bin/sh`, `cat`, `chmod`,
    /// `mkdir` and `mv`: into a directory of this process's own under `/tmp`
    /// (a name no one else can know in advance, owner-only, a symlink there
    /// refused), once; each call checks it is still there. The workload can
    /// replace the copy, as it can any agent: what the program says is
    /// checked as ever.
    async fn placed_agent_program(&self, name: &str) -> Result<String> {
        let why = |detail: String| Error::Exec {
            name: name.to_owned(),
            message: format!(
                "files need sandlot's agent program, and the sandbox was created without it (by \
                 a client that may not create ConfigMaps, or by an older sandlot): {detail}"
            ),
        };
        static NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let nonce = *NONCE.get_or_init(|| {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        });
        let dir = format!(
            "/tmp/.{}-{nonce:016x}",
            agent::AGENT_PROGRAM.config_map_name()
        );
        let path = format!("{dir}/agent");
        let script = format!(
            "d='{dir}'; if [ -d \"$d\" ] && [ ! -L \"$d\" ] && [ -x \"$d/agent\" ] && \
             [ ! -L \"$d/agent\" ]; then exit 0; fi; umask 077; \
             {{ mkdir \"$d\" 2>/dev/null || {{ [ -d \"$d\" ] && [ ! -L \"$d\" ]; }}; }} || exit 1; \
             cat > \"$d/agent.part\" && chmod 700 \"$d/agent.part\" && \
             mv -f \"$d/agent.part\" \"$d/agent\""
        );
        let options = crate::ExecOptions {
            stdin: Some(agent::AGENT_PROGRAM.binary.to_vec()),
            timeout: Some(PLACE_TIMEOUT),
            ..crate::ExecOptions::default()
        };
        let line = ["/bin/sh".to_owned(), "-c".to_owned(), script];
        let placed = match self.exec_sandbox(name, &line, &options).await {
            Ok(placed) => placed,
            Err(Error::Exec { message, .. }) if super::exec::lacks_shell(&message) => {
                return Err(why("its image has no /bin/sh to copy it in with".into()));
            }
            Err(err) => return Err(err),
        };
        if placed.exit_code != 0 {
            let said = String::from_utf8_lossy(&placed.stderr);
            return Err(why(format!(
                "copying it in failed (exit code {}): {}",
                placed.exit_code,
                said.trim()
            )));
        }
        Ok(path)
    }

    /// The connection to sandbox `name`'s agent, for `what`, which only the
    /// agent can do.
    async fn agent_for(&self, name: &str, what: &str) -> Result<Arc<AgentLink>> {
        crate::validate::object_name("name", name)?;
        match self.exec_route(name).await? {
            ExecRoute::Agent(link, _) => Ok(link),
            ExecRoute::Kubernetes { why, .. } => Err(Error::Exec {
                name: name.to_owned(),
                message: format!("{what} needs the sandbox's agent, which cannot be used: {why}"),
            }),
        }
    }

    /// The processes sandbox `name`'s agent keeps: those running (started by
    /// any client) and the last ones that ended.
    pub async fn list_processes(&self, name: &str) -> Result<Vec<AgentProcessInfo>> {
        self.agent_for(name, "listing processes")
            .await?
            .list()
            .await
    }

    /// Attaches to process `id` of sandbox `name`'s agent: its output from
    /// `offsets` (stdout, stderr; from where the agent's kept output begins if
    /// that is later, the difference counted in [`ExecProcess::dropped`]),
    /// with `stdin` its stdin (else the attach never closes it), its end; one
    /// started with a TTY has one output stream and takes
    /// [`ExecProcess::resize`]. Any client can attach; a process has one
    /// reader at a time, the last to attach.
    pub async fn attach_process(
        &self,
        name: &str,
        id: u32,
        offsets: [u64; 2],
        stdin: bool,
    ) -> Result<ExecProcess> {
        let link = self.agent_for(name, "attaching to a process").await?;
        let not_found = || Error::NotFound {
            kind: crate::error::ObjectKind::Process,
            name: id.to_string(),
            namespace: self.namespace().to_owned(),
        };
        // Whether it has a terminal: its output is then one stream, and it
        // takes resizes.
        let tty = link
            .list()
            .await?
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(not_found)?
            .tty;
        let process = link.attach(id, offsets).await.map_err(|err| match err {
            Error::Exec { message, .. } if message.contains("no such process") => not_found(),
            other => other,
        })?;
        Ok(self.present(name, process, tty, stdin, true))
    }

    /// Sends signal `signal` to process `id` of sandbox `name`, its process
    /// group and every process it started, and returns once the agent has.
    pub async fn signal_process(&self, name: &str, id: u32, signal: i32) -> Result<()> {
        self.signal_agent_process(name, id, signal, None).await
    }

    /// [`Client::signal_process`]; with `daemon`, only if the agent's daemon
    /// is still the one with that pid (else the process went with it, or
    /// lives on unreachable; a new daemon's process `id` is another one).
    pub(super) async fn signal_agent_process(
        &self,
        name: &str,
        id: u32,
        signal: i32,
        daemon: Option<u32>,
    ) -> Result<()> {
        let signal = u8::try_from(signal)
            .ok()
            .filter(|s| (1..=64).contains(s))
            .ok_or_else(|| {
                Error::invalid("signal", format!("{signal} is not a signal (1 to 64)"))
            })?;
        let link = self.agent_for(name, "signalling a process").await?;
        if daemon.is_some_and(|daemon| daemon != link.daemon()) {
            return Ok(());
        }
        link.send(id, &Request::Signal { signal, tree: true })
            .await?;
        // The agent handles frames in order: its answer comes after the signal.
        link.list().await.map(drop)
    }

    /// Sandbox `name`'s resources as its agent reads them, CPU use averaged
    /// over `over` (two readings that far apart).
    pub async fn sandbox_metrics(&self, name: &str, over: Duration) -> Result<SandboxMetrics> {
        let reading = self.follow_metrics(name, over).next().await?;
        Ok(reading.expect("a first reading is a reading or an error"))
    }

    /// Sandbox `name`'s resources every `every`, until it stops running
    /// (see [`MetricsFollow::next`]).
    pub fn follow_metrics(&self, name: &str, every: Duration) -> MetricsFollow {
        MetricsFollow {
            client: self.clone(),
            name: name.to_owned(),
            every,
            last: None,
            delivered: false,
            disk: None,
            disk_limit: None,
        }
    }

    /// Sandbox `name`'s pod as last seen: from the shared pod watch once it
    /// has listed, else read.
    async fn last_seen_pod(&self, name: &str) -> Result<Arc<Pod>> {
        let watch = self.pod_watch();
        if watch.ready(tokio::time::Instant::now()).await
            && let Some(pod) = watch.get(name)
        {
            return Ok(pod);
        }
        Ok(Arc::new(self.sandbox_pod(name).await?))
    }

    /// Sandbox `name`'s disk limit in bytes, from its pod as last seen.
    async fn disk_limit(&self, name: &str) -> Option<u64> {
        let pod = self.last_seen_pod(name).await.ok()?;
        crate::spec::disk_limit(&pod)
    }

    /// Closes the stdin of agent process `process` in sandbox `name` and
    /// polls until it has ended, for `within` at most; whether it ended.
    pub(super) async fn end_agent_input(
        &self,
        name: &str,
        process: u32,
        daemon: u32,
        within: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        let Ok(link) = self.agent_for(name, "closing a command's input").await else {
            return false;
        };
        if link.daemon() != daemon {
            return false;
        }
        if link.send(process, &Request::Stdin(b"")).await.is_err() {
            return false;
        }
        while tokio::time::Instant::now() < deadline {
            match link.list().await {
                Ok(listed) => {
                    if listed
                        .iter()
                        .all(|p| p.id != process || p.exit_code.is_some())
                    {
                        return true;
                    }
                }
                Err(_) => return false,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Kills agent process `process` in sandbox `name` with its whole tree,
    /// and returns once the agent has done it.
    pub(super) async fn kill_agent_process(
        &self,
        name: &str,
        process: u32,
        daemon: u32,
    ) -> Result<()> {
        self.signal_agent_process(name, process, i32::from(KILL), Some(daemon))
            .await
    }
}

/// Moves one agent process's events into the streams of its [`ExecProcess`]
/// and its stdin and terminal sizes to the agent.
struct Pump {
    /// Set once the caller let go of the process (see [`LetGo`]).
    let_go: Arc<AtomicBool>,
    client: Client,
    sandbox: String,
    process: AgentProcess,
    outputs: [Option<DuplexStream>; 2],
    /// Output delivered so far, by stream, and acknowledged to the agent.
    offsets: [u64; 2],
    acked: [u64; 2],
    stdin: Option<DuplexStream>,
    /// Stdin this pump sent, and how much of it the process took.
    stdin_sent: u64,
    stdin_taken: u64,
    /// The agent's count of stdin taken (over the process's life) before
    /// this pump's first byte: 0 for a command it started; for an attach
    /// (the only caller that reports drops), the agent's first count, which it
    /// sends right after the attach, before it reads this pump's input.
    stdin_base: Option<u64>,
    resize: Option<tokio::sync::mpsc::Receiver<TerminalSize>>,
    /// Where output the agent dropped is counted; `None`: a drop is an error.
    dropped: Option<Arc<AtomicU64>>,
    /// The process's end was delivered.
    ended: bool,
}

impl Drop for Pump {
    /// A pump dropped before the end (the caller let go of the process):
    /// the agent stops sending to this connection, and keeps the output.
    fn drop(&mut self) {
        if !self.ended {
            self.process.release();
        }
    }
}

impl Pump {
    async fn run(mut self) -> SessionEnd {
        let mut buf = vec![0u8; STDIN_CHUNK];
        let mut reattached = 0;
        loop {
            let window_open = self.stdin_sent - self.stdin_taken < STDIN_WINDOW;
            tokio::select! {
                event = self.process.events.recv() => match event {
                    Some(ProcessEvent::Output { stream, offset, data }) => {
                        let s = usize::from(stream - 1);
                        if let Some(out) = self.outputs[s].as_mut() {
                            if out.write_all(&data).await.is_err() {
                                // The reader is gone: its output is read and dropped.
                                self.outputs[s] = None;
                            }
                        }
                        self.offsets[s] = offset + data.len() as u64;
                        // Taken output is acknowledged a quarter window at a
                        // time (the agent never waits on less). A failed ack
                        // means a broken connection, reported next.
                        if self.offsets[s] - self.acked[s] >= OUTPUT_WINDOW / 4 {
                            self.acked[s] = self.offsets[s];
                            let _ = self.process.ack(stream, self.offsets[s]).await;
                        }
                    }
                    Some(ProcessEvent::Exited(code)) => {
                        self.ended = true;
                        return Ok(Ok(code));
                    }
                    Some(ProcessEvent::StdinTaken(total)) => {
                        let base = *self.stdin_base.get_or_insert(total);
                        // Never more than was sent: the agent may lie.
                        self.stdin_taken = total.saturating_sub(base).min(self.stdin_sent);
                    }
                    Some(ProcessEvent::Dropped { stream, from, to }) => {
                        let s = usize::from(stream - 1);
                        self.offsets[s] = to;
                        self.acked[s] = to;
                        if let Some(dropped) = &self.dropped {
                            dropped.fetch_add(to - from, Ordering::Relaxed);
                            continue;
                        }
                        return Ok(Err(format!(
                            "the sandbox's agent dropped {} bytes of the command's {}",
                            to - from,
                            if stream == sandlot_wire::STDOUT { "stdout" } else { "stderr" }
                        )));
                    }
                    Some(ProcessEvent::Lost(why)) => {
                        reattached += 1;
                        if let Err(err) = self.reattach(reattached, &why).await {
                            return Ok(Err(err));
                        }
                    }
                    Some(ProcessEvent::TakenOver) => {
                        // Not released on drop: the process is the new reader's.
                        self.ended = true;
                        return Ok(Err("a later attach to the process reads it now".into()));
                    }
                    None => return Ok(Err("the connection to the sandbox's agent ended".into())),
                },
                read = read_stdin(&mut self.stdin, &mut buf), if window_open => {
                    let id = self.process.id;
                    match read {
                        Some(n) => {
                            self.stdin_sent += n as u64;
                            let _ = self.process.link.send(id, &Request::Stdin(&buf[..n])).await;
                        }
                        None => {
                            self.stdin = None;
                            // Closed by the caller, or dropped with the
                            // process it let go of: then left open.
                            if !self.let_go.load(Ordering::Relaxed) {
                                let _ = self.process.link.send(id, &Request::Stdin(b"")).await;
                            }
                        }
                    }
                }
                size = next_size(&mut self.resize), if self.resize.is_some() => match size {
                    Some(size) => {
                        let resize = Request::Resize { rows: size.height, cols: size.width };
                        let _ = self.process.link.send(self.process.id, &resize).await;
                    }
                    None => self.resize = None,
                },
            }
        }
    }

    /// Attaches to the process again on a new connection, from the output
    /// delivered so far; Err(why) when that cannot be done without loss.
    async fn reattach(&mut self, tries: u32, why: &str) -> std::result::Result<(), String> {
        let lost = |detail: String| format!("{why}; the command's outcome is unknown: {detail}");
        if tries > REATTACH_TRIES {
            return Err(lost(format!("attached again {REATTACH_TRIES} times")));
        }
        if self.stdin_sent != self.stdin_taken {
            return Err(lost("input in flight may have been lost".into()));
        }
        let link = match self.client.exec_route(&self.sandbox).await {
            Ok(ExecRoute::Agent(link, _)) => link,
            Ok(ExecRoute::Kubernetes { .. }) => {
                return Err(lost("the sandbox's agent can no longer be reached".into()));
            }
            Err(err) => return Err(lost(err.to_string())),
        };
        self.process = link
            .attach(self.process.id, self.offsets)
            .await
            .map_err(|err| lost(err.to_string()))?;
        self.acked = self.offsets;
        Ok(())
    }
}

/// The next chunk of stdin (`None` at its end), or pending forever without one.
async fn read_stdin(stdin: &mut Option<DuplexStream>, buf: &mut [u8]) -> Option<usize> {
    match stdin {
        Some(stdin) => match stdin.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

async fn next_size(
    resize: &mut Option<tokio::sync::mpsc::Receiver<TerminalSize>>,
) -> Option<TerminalSize> {
    match resize {
        Some(resize) => resize.recv().await,
        None => std::future::pending().await,
    }
}

/// A sandbox's resources read one interval after the other: each reading's
/// CPU figure is averaged over the time since the reading before it (the
/// first: over one interval), so no interval is skipped or counted twice.
#[derive(Debug)]
pub struct MetricsFollow {
    client: Client,
    name: String,
    every: Duration,
    /// The agent's last raw reading, if the last read succeeded.
    last: Option<sandlot_wire::Metrics>,
    /// Whether a reading was handed out.
    delivered: bool,
    /// The last disk count and when it was made.
    disk: Option<(tokio::time::Instant, Option<u64>)>,
    /// The pod's disk limit, once read.
    disk_limit: Option<u64>,
}

/// The longest the copy of the agent program into a sandbox may take.
const PLACE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a follow counts the disk again (the kubelet's own pace).
const DISK_EVERY: Duration = Duration::from_secs(10);
/// The longest a disk count may take; a slower one gives `None`.
const DISK_COUNT_BOUND: Duration = Duration::from_secs(5);

impl MetricsFollow {
    /// The next reading, one interval after the one before; `None` once the
    /// sandbox no longer runs, after at least one reading (a sandbox that
    /// does not run at the first is [`Error::NotRunning`]).
    pub async fn next(&mut self) -> Result<Option<SandboxMetrics>> {
        let err = match self.read().await {
            Ok(metrics) => {
                self.delivered = true;
                return Ok(Some(metrics));
            }
            // The sandbox's end breaks the agent's connection.
            Err(err @ Error::NotRunning { .. }) => err,
            Err(err) => self.client.ended_instead(&self.name, err).await,
        };
        match err {
            Error::NotRunning { .. } if self.delivered => Ok(None),
            err => Err(err),
        }
    }

    async fn read(&mut self) -> Result<SandboxMetrics> {
        let link = self.client.agent_for(&self.name, "reading metrics").await?;
        // Counted before the first CPU reading of a single call, whose
        // interval then leaves the count's own CPU out.
        let disk = self.disk_used().await;
        let first = match self.last.take() {
            Some(last) => last,
            None => link.metrics().await?,
        };
        tokio::time::sleep(self.every).await;
        let now = link.metrics().await?;
        self.last = Some(now);
        if self.disk_limit.is_none() {
            self.disk_limit = self.client.disk_limit(&self.name).await;
        }
        Ok(SandboxMetrics {
            disk_used_bytes: disk,
            disk_limit_bytes: self.disk_limit,
            ..SandboxMetrics::between(&first, &now)
        })
    }

    /// The disk count, made again once [`DISK_EVERY`] has passed; `None` if
    /// it fails or takes longer than [`DISK_COUNT_BOUND`].
    async fn disk_used(&mut self) -> Option<u64> {
        let now = tokio::time::Instant::now();
        match self.disk {
            Some((at, used)) if now.duration_since(at) < DISK_EVERY => used,
            _ => {
                let counted =
                    tokio::time::timeout(DISK_COUNT_BOUND, self.client.disk_used(&self.name)).await;
                let used = counted.ok().and_then(Result::ok).flatten();
                self.disk = Some((now, used));
                used
            }
        }
    }
}
