//! Commands in a sandbox, through the API server's exec subresource.
//!
//! One task per exec speaks the websocket protocol. It receives output and
//! the exit status independently of sending stdin, so a command that exits
//! without reading its input reports at once, and writes to its input fail
//! from then on instead of waiting for a reader that is gone.
//!
//! [`Client::exec_sandbox`] runs its command under a `/bin/sh` wrapper that
//! tags every process it starts (the variable `SANDLOT_EXEC`, inherited by
//! children); on a timeout, a cancellation or a lost connection a second exec
//! kills the tagged processes and the process groups they lead. The kill
//! does not need the first connection. A command in its own session or that
//! clears its environment escapes the tag only if it also leaves the group.
//!
//! Without a TTY the wrapper also reports the command's exit code itself, as
//! a [`TRAILER`] line on stderr after the command ends (taken off before
//! anyone sees stderr). containerd 2 sometimes loses an exec's status under load, and the
//! API server then reports success (seen on Kubernetes 1.34 with containerd
//! 2.3 and 2.4: about 1 exec in 300 when 400 run at once across 20 pods, with
//! the output cut short); a success that the wrapper did not confirm is an
//! [`Error::Exec`] (the outcome is unknown), never 0.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::AttachParams;
pub(super) use kube::api::TerminalSize;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::Message;

use crate::client::Client;
use crate::error::{Error, Result, error_chain};
use crate::labels::{self, CONTAINER_NAME};
use crate::network;
use crate::status::Phase;

use super::exec_agent::ExecRoute;

/// Buffer between the websocket and each stream of a command.
pub(super) const STREAM_BUFFER: usize = 64 * 1024;

/// The bytes of stdout, and as many of stderr, that [`Client::exec_sandbox`]
/// keeps unless told otherwise (16 MiB).
pub const DEFAULT_MAX_OUTPUT: usize = 16 * 1024 * 1024;

/// How many sandboxes a client remembers as past their gate (see
/// [`Client::ready_for_exec`]); forgetting costs one more exec.
const GATES_REMEMBERED: usize = 4096;

/// How many times [`Client::ready_for_exec`] runs the gate's check when its
/// outcome is lost on the way.
const GATE_AWAIT_TRIES: u32 = 3;

/// How long killing a command's processes may take before it is given up.
const KILL_TIMEOUT: Duration = Duration::from_secs(20);

/// How often a connection is pinged, so that proxies keep an idle one open.
const PING_INTERVAL: Duration = Duration::from_secs(30);

/// The environment variable that tags the processes of one exec.
const TAG_VARIABLE: &str = "SANDLOT_EXEC";

/// What the wrapper writes to stderr after the command, before its exit
/// code and a newline: a NUL byte, so no text output looks like it.
const TRAILER: &[u8] = b"\0sandlot-exit:";

/// Why an exec that the server called a success is not trusted as one.
const UNCONFIRMED_SUCCESS: &str = "the exit status was lost on its way from the container \
     runtime (the server reported success, but the command's own report of its exit is \
     missing); the command may have run, with any outcome";

/// Runs as `/bin/sh -c KILL_SCRIPT TAG`: kills every process whose
/// environment holds the tag and the process group it leads, again until
/// none is left (a process may fork while the list is read), 10 rounds at most.
const KILL_SCRIPT: &str = r#"tag="SANDLOT_EXEC=$0"
round=0
while [ "$round" -lt 10 ]; do
  round=$((round + 1)); found=
  for dir in /proc/[0-9]*; do
    { tr '\0' '\n' < "$dir/environ"; } 2>/dev/null | grep -qxF -e "$tag" || continue
    pid=${dir#/proc/}; found=1
    kill -9 -- "-$pid" 2>/dev/null; kill -9 "$pid" 2>/dev/null
  done
  [ -n "$found" ] || exit 0
done
exit 1"#;

// Channels of the exec protocol (k8s.io/apimachinery/pkg/util/remotecommand).
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const RESIZE: u8 = 4;
/// v5 only: "this channel reached its end" (followed by the channel).
const CLOSE: u8 = 255;

/// How to run a command in a sandbox and collect its output.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Bytes written to the command's stdin, which is then closed. `None`: no stdin.
    pub stdin: Option<Vec<u8>>,
    /// Give up after this long and kill the command's processes.
    pub timeout: Option<Duration>,
    /// Extra environment variables for the command (needs `env` in the image).
    /// They travel in the request's URL, which API server audit logs record.
    pub env: Vec<(String, String)>,
    /// Working directory of the command (needs `/bin/sh` in the image).
    pub workdir: Option<String>,
    /// Keep at most this many bytes of stdout, and as many of stderr; the rest
    /// is read and dropped ([`ExecResult::truncated`]). `None`: keep all.
    pub max_output: Option<usize>,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            stdin: None,
            timeout: None,
            env: Vec::new(),
            workdir: None,
            max_output: Some(DEFAULT_MAX_OUTPUT),
        }
    }
}

/// How to start a command whose streams the caller reads and writes.
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    /// Open the command's stdin for writing.
    pub stdin: bool,
    /// Run it on a terminal: stderr is merged into stdout, and stdin can be raw keystrokes.
    pub tty: bool,
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    /// Tag the command's processes so that [`ExecProcess::killer`] can end
    /// them (runs it under `/bin/sh`, which the image must have).
    pub killable: bool,
    /// Keep the command and its end listed for [`Client::list_processes`] and
    /// [`Client::attach_process`] from any client (the sandbox agent only).
    pub detach: bool,
}

/// Refuses to run anything in a pool's warm sandbox: until a create claims
/// it, it must not have run anyone's code.
pub(crate) fn refuse_warm(name: &str, pod: &Pod) -> Result<()> {
    match labels::label(&pod.metadata, labels::WARM_LABEL) {
        None => Ok(()),
        Some(_) => {
            let pool = labels::label(&pod.metadata, labels::POOL_LABEL).map_or("", |p| p.as_str());
            Err(Error::Exec {
                name: name.to_owned(),
                message: format!(
                    "it is a warm sandbox of pool {pool:?}, in which nothing may run until a \
                     create takes it (create with pool={pool:?})"
                ),
            })
        }
    }
}

impl SpawnOptions {
    /// These options with the sandbox's own environment under the command's.
    pub(crate) fn with_sandbox_env(&self, env: &[(String, String)]) -> SpawnOptions {
        SpawnOptions {
            env: labels::with_sandbox_env(env, &self.env),
            ..self.clone()
        }
    }
}

/// What a finished command left behind. A non-zero exit code is a result, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
    /// Output beyond [`ExecOptions::max_output`] was dropped from stdout or stderr.
    pub truncated: bool,
    /// It ran through the sandbox's agent (else a Kubernetes exec of its own).
    pub through_agent: bool,
}

/// The output a command had written when it was given up ([`Error::ExecTimeout`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output beyond [`ExecOptions::max_output`] was dropped.
    pub truncated: bool,
}

/// What an ended command's status says: its exit code, or why there is none.
pub(super) type ExitOutcome = std::result::Result<i32, String>;

/// How a session on the exec websocket ended: what the exit status the
/// server sent says, or why none arrived.
pub(super) type SessionEnd = std::result::Result<ExitOutcome, String>;

/// The task that speaks to the exec websocket; aborted when dropped.
pub(super) struct Session(pub(super) tokio::task::JoinHandle<SessionEnd>);

impl Drop for Session {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A command running in a sandbox. Take its streams, then [`ExecProcess::wait`]
/// for the exit code. Dropping it (or the future of `wait`) tears the
/// connection down.
pub struct ExecProcess {
    /// First, so it drops before the streams (agent only).
    pub(super) _let_go: Option<LetGo>,
    pub(super) sandbox: String,
    pub(super) session: Option<Session>,
    pub(super) stdout: Option<DuplexStream>,
    pub(super) stderr: Option<DuplexStream>,
    pub(super) stdin: Option<DuplexStream>,
    pub(super) resize: Option<tokio::sync::mpsc::Sender<TerminalSize>>,
    pub(super) killer: Option<ExecKiller>,
    /// Its id at the sandbox agent, if it runs through it (else it is a
    /// Kubernetes exec of its own).
    pub(super) agent_id: Option<u32>,
    /// Output the agent no longer had when it was attached (agent only).
    pub(super) dropped: Option<Arc<AtomicU64>>,
}

/// Marks, when the [`ExecProcess`] holding it drops, that its caller let go
/// of the command: the end of its stdin then leaves the command's stdin open
/// (for a later attach) instead of closing it.
pub(super) struct LetGo(pub(super) Arc<AtomicBool>);

impl Drop for LetGo {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl std::fmt::Debug for ExecProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecProcess")
            .field("sandbox", &self.sandbox)
            .finish_non_exhaustive()
    }
}

impl ExecProcess {
    /// The sandbox the command runs in.
    pub fn sandbox(&self) -> &str {
        &self.sandbox
    }

    /// The command's stdout (on a TTY, its terminal output). Taken once.
    pub fn take_stdout(&mut self) -> Option<DuplexStream> {
        self.stdout.take()
    }

    /// The command's stderr; empty on a TTY. Taken once.
    pub fn take_stderr(&mut self) -> Option<DuplexStream> {
        self.stderr.take()
    }

    /// The command's stdin, if it was opened. Taken once; shutting it down (or
    /// dropping it) closes the command's input. Once the command has ended,
    /// writes fail with [`std::io::ErrorKind::BrokenPipe`], also a write that
    /// was waiting for the command to read.
    pub fn take_stdin(&mut self) -> Option<DuplexStream> {
        self.stdin.take()
    }

    /// What kills the command's processes, if it was started `killable` (or
    /// runs through the agent, which can always kill them).
    pub fn killer(&self) -> Option<ExecKiller> {
        self.killer.clone()
    }

    /// Whether it runs through the sandbox's agent.
    pub fn through_agent(&self) -> bool {
        self.agent_id.is_some()
    }

    /// Its id at the sandbox's agent (for [`Client::attach_process`]), if it
    /// runs through it.
    pub fn id(&self) -> Option<u32> {
        self.agent_id
    }

    /// Bytes of output that were dropped before they could be read: the agent
    /// keeps the last 4 MiB of each stream of a command nobody reads, and an
    /// attach from earlier begins where that starts. 0 for a command read
    /// from its start.
    pub fn dropped(&self) -> u64 {
        self.dropped
            .as_ref()
            .map_or(0, |d| d.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether the command runs on a terminal (its output is then all on stdout).
    pub fn has_tty(&self) -> bool {
        self.resize.is_some()
    }

    /// Sends a new terminal size (TTY only).
    pub fn resize(&mut self, width: u16, height: u16) -> Result<()> {
        let sender = self
            .resize
            .as_mut()
            .ok_or_else(|| Error::invalid("resize", "the command was not started with a TTY"))?;
        sender
            .try_send(TerminalSize { width, height })
            .map_err(|err| self.lost(format!("sending the terminal size: {err}")))
    }

    /// Waits for the exit code: a connection lost before the exit status
    /// arrived is an [`Error::Exec`], never 0. A command started `killable`
    /// without a TTY reports its exit itself, so a success the server reports
    /// without that report is an [`Error::Exec`] too (see the module's doc);
    /// others take the server's word. The returned future owns what it
    /// needs; a second call fails.
    pub fn wait(&mut self) -> impl std::future::Future<Output = Result<i32>> + Send + 'static {
        let sandbox = self.sandbox.clone();
        let outcome = self.wait_outcome();
        async move {
            outcome.await?.map_err(|message| Error::Exec {
                name: sandbox,
                message,
            })
        }
    }

    /// Waits for what the exit status the server sends when the command ends says.
    fn wait_outcome(
        &mut self,
    ) -> impl std::future::Future<Output = Result<ExitOutcome>> + Send + 'static {
        let sandbox = self.sandbox.clone();
        let session = self.session.take();
        async move {
            let lost = |message: String| Error::Exec {
                name: sandbox.clone(),
                message,
            };
            let mut session = session.ok_or_else(|| lost("already waited for".into()))?;
            match (&mut session.0).await {
                Ok(end) => end.map_err(lost),
                Err(err) => Err(lost(format!("the exec task ended: {err}"))),
            }
        }
    }

    fn lost(&self, message: String) -> Error {
        Error::Exec {
            name: self.sandbox.clone(),
            message,
        }
    }
}

/// Kills the processes of a command started `killable`, through an exec of
/// its own: it works whether or not the command's connection is still open.
#[derive(Debug, Clone)]
pub struct ExecKiller {
    pub(super) client: Client,
    pub(super) sandbox: String,
    pub(super) target: KillTarget,
}

/// What an [`ExecKiller`] kills.
#[derive(Debug, Clone)]
pub(super) enum KillTarget {
    /// The processes carrying this tag, by an exec of the image's shell.
    Tag(String),
    /// The process tree of this agent process, by the agent whose daemon
    /// has this pid (a restarted daemon numbers its processes anew).
    Agent { process: u32, daemon: u32 },
}

impl ExecKiller {
    /// Closes the stdin of a command that runs through the agent from a new
    /// connection (its own was lost), and waits up to `within` for it to
    /// end; whether it did. A command run otherwise: false at once.
    pub async fn end_input(&self, within: Duration) -> bool {
        match self.target {
            KillTarget::Agent { process, daemon } => {
                let ended = self
                    .client
                    .end_agent_input(&self.sandbox, process, daemon, within);
                tokio::time::timeout(within, ended).await == Ok(true)
            }
            KillTarget::Tag(_) => false,
        }
    }

    /// Kills every process carrying the command's tag (or, through the agent,
    /// its process tree) and the process groups they lead; gives up after
    /// 20 s. Nothing to kill is success.
    pub async fn kill(self) -> Result<()> {
        let (client, sandbox) = (self.client, self.sandbox);
        let tag = match self.target {
            KillTarget::Tag(tag) => tag,
            KillTarget::Agent { process, daemon } => {
                let kill = client.kill_agent_process(&sandbox, process, daemon);
                return match tokio::time::timeout(KILL_TIMEOUT, kill).await {
                    Ok(Err(Error::NotRunning { .. } | Error::NotFound { .. })) => Ok(()),
                    Ok(outcome) => outcome,
                    Err(_) => Err(Error::Timeout {
                        what: format!("killing a command's processes in sandbox {sandbox:?}"),
                        after: KILL_TIMEOUT,
                    }),
                };
            }
        };
        let line: Vec<String> = vec!["/bin/sh".into(), "-c".into(), KILL_SCRIPT.into(), tag];
        let run = async {
            let options = SpawnOptions::default();
            let mut process = client.start_exec(&sandbox, &line, &options, None).await?;
            // Dropped streams: what the script prints is read and discarded.
            drop((process.take_stdout(), process.take_stderr()));
            process.wait().await
        };
        let outcome = tokio::time::timeout(KILL_TIMEOUT, run).await;
        match outcome {
            Ok(Ok(0)) | Ok(Err(Error::NotRunning { .. } | Error::NotFound { .. })) => Ok(()),
            Ok(Ok(code)) => Err(Error::Exec {
                name: sandbox,
                message: format!("killing the command's processes exited {code}"),
            }),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(Error::Timeout {
                what: format!("killing a command's processes in sandbox {sandbox:?}"),
                after: KILL_TIMEOUT,
            }),
        }
    }

    /// Sends `signal` to the command's process tree, as [`ExecKiller::kill`]
    /// does SIGKILL: through the sandbox agent only.
    pub async fn signal(self, signal: i32) -> Result<()> {
        match self.target {
            KillTarget::Agent { process, daemon } => {
                self.client
                    .signal_agent_process(&self.sandbox, process, signal, Some(daemon))
                    .await
            }
            KillTarget::Tag(_) => Err(Error::invalid(
                "signal",
                "only a command that runs through the sandbox's agent can be sent a signal",
            )),
        }
    }

    /// Starts [`ExecKiller::kill`] on the current runtime without waiting for
    /// it; [`wait_for_background_kills`] waits for those still running.
    fn kill_in_background(self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        in_background(&runtime, async move {
            let _ = self.kill().await;
        });
    }
}

/// Runs `work` (ending a command that was given up) on `runtime` without
/// waiting for it; [`wait_for_background_kills`] waits for it too.
pub(crate) fn in_background(
    runtime: &tokio::runtime::Handle,
    work: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let pending = BackgroundKill::start();
    runtime.spawn(async move {
        work.await;
        drop(pending);
    });
}

/// Kills a command's processes in the background when dropped while armed:
/// the call running it was cancelled, or lost its connection, before the
/// exit status arrived.
pub(super) struct KillOnDrop(pub(super) Option<ExecKiller>);

impl KillOnDrop {
    /// The command ended: nothing to kill.
    pub(super) fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(killer) = self.0.take() {
            killer.kill_in_background();
        }
    }
}

/// The number of kills running in the background, and a signal when it drops.
static BACKGROUND_KILLS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// Counts one background kill while it lives.
struct BackgroundKill;

impl BackgroundKill {
    fn start() -> Self {
        *BACKGROUND_KILLS.0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        BackgroundKill
    }
}

impl Drop for BackgroundKill {
    fn drop(&mut self) {
        let mut count = BACKGROUND_KILLS.0.lock().unwrap_or_else(|p| p.into_inner());
        *count -= 1;
        BACKGROUND_KILLS.1.notify_all();
    }
}

/// Blocks until the kills started by cancelled execs have finished, at most
/// `limit`. A process about to exit calls it so that those kills are not cut
/// short (a Ctrl-C usually ends the program right after).
pub fn wait_for_background_kills(limit: Duration) {
    let count = BACKGROUND_KILLS.0.lock().unwrap_or_else(|p| p.into_inner());
    let _ = BACKGROUND_KILLS
        .1
        .wait_timeout_while(count, limit, |count| *count > 0);
}

impl Client {
    /// Starts `command` in running sandbox `name` and hands over its streams.
    /// Fails with [`Error::NotRunning`] unless the sandbox is running: the
    /// sandbox is read first, because the API server may accept an exec into
    /// a container that is gone and say so only later, on the stream.
    pub async fn spawn_exec(
        &self,
        name: &str,
        command: &[String],
        options: &SpawnOptions,
    ) -> Result<ExecProcess> {
        crate::validate::object_name("name", name)?;
        let tag = options.killable.then(new_tag);
        let wrapper = match tag.as_deref() {
            Some(tag) if options.tty => Wrapper::Tagged { tag, report: None },
            Some(tag) => Wrapper::Tagged {
                tag,
                report: Some(Report { drain_stdin: false }),
            },
            None => Wrapper::Plain,
        };
        check_command(command, &options.env, options.workdir.as_deref())?;
        match self.exec_route(name).await? {
            ExecRoute::Agent(link, env) => {
                let options = options.with_sandbox_env(&env);
                self.start_agent_exec(link, name, command, &options).await
            }
            ExecRoute::Kubernetes { why, .. } if options.detach => Err(Error::invalid(
                "detach",
                format!("needs the sandbox's agent, which sandbox {name:?} cannot use: {why}"),
            )),
            ExecRoute::Kubernetes { ready, env, .. } => {
                let env = if ready {
                    env
                } else {
                    labels::sandbox_env(&self.ready_for_exec(name).await?.metadata)
                };
                let options = options.with_sandbox_env(&env);
                let line =
                    wrap_command(command, &options.env, options.workdir.as_deref(), wrapper)?;
                self.start_exec(name, &line, &options, tag).await
            }
        }
    }

    /// Opens the exec of `line`, with no other request while that works. When
    /// it does not, reads the sandbox to say why (not found, not running) and,
    /// if it runs, tries once more (the API server may have been restarting).
    pub(super) async fn start_exec(
        &self,
        name: &str,
        line: &[String],
        options: &SpawnOptions,
        tag: Option<String>,
    ) -> Result<ExecProcess> {
        let connection = match self.connect_exec_answered(name, line, options).await {
            Ok(connection) => connection,
            Err(_) => {
                self.refusal(name).await?;
                self.connect_exec_answered(name, line, options)
                    .await
                    .map_err(|err| self.sandbox_error(err, name))?
            }
        };
        let (stdout, stdout_end) = tokio::io::duplex(STREAM_BUFFER);
        let (stderr, stderr_end) = if options.tty {
            (None, None)
        } else {
            let (ours, theirs) = tokio::io::duplex(STREAM_BUFFER);
            (Some(ours), Some(theirs))
        };
        let (stdin, stdin_end) = if options.stdin {
            let (ours, theirs) = tokio::io::duplex(STREAM_BUFFER);
            (Some(ours), Some(theirs))
        } else {
            (None, None)
        };
        let (resize, resize_end) = if options.tty {
            let (sender, receiver) = tokio::sync::mpsc::channel(8);
            (Some(sender), Some(receiver))
        } else {
            (None, None)
        };
        let reports_exit = tag.is_some() && !options.tty;
        let session = tokio::spawn(run_session(
            connection,
            stdin_end,
            Some(stdout_end),
            stderr_end,
            resize_end,
            reports_exit,
        ));
        Ok(ExecProcess {
            _let_go: None,
            sandbox: name.to_owned(),
            session: Some(Session(session)),
            stdout: Some(stdout),
            stderr,
            stdin,
            resize,
            killer: tag.map(|tag| ExecKiller {
                client: self.clone(),
                sandbox: name.to_owned(),
                target: KillTarget::Tag(tag),
            }),
            agent_id: None,
            dropped: None,
        })
    }

    /// Ok once sandbox `name` runs its workload; else why it cannot take an
    /// exec (not found, not running). A sandbox whose entrypoint is the network
    /// gate runs before its NetworkPolicy holds, and an exec there could send
    /// packets first: the first exec this client makes into such a sandbox
    /// waits for the gate to become the workload (`gate --await`, one more
    /// exec), and the pod is remembered as passed.
    /// A pool's warm sandbox is refused (see [`refuse_warm`]).
    pub(super) async fn ready_for_exec(&self, name: &str) -> Result<Pod> {
        self.ready_for_exec_as(name, false).await
    }

    /// [`Client::ready_for_exec`], a warm sandbox accepted if `warm_ok` (a
    /// pool readying it).
    pub(crate) async fn ready_for_exec_as(&self, name: &str, warm_ok: bool) -> Result<Pod> {
        let pod = self.sandbox_pod(name).await?;
        if !warm_ok {
            refuse_warm(name, &pod)?;
        }
        running(name, &self.settle_launch_failure(&pod).await?)?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let passed = |client: &Client| client.gates_passed().lock().unwrap().contains(&uid);
        // A client that readied the pod for a pool recorded the pass on it.
        let recorded = labels::annotation(&pod.metadata, labels::GATE_PASSED_ANNOTATION)
            .is_some_and(|passed| *passed == uid);
        if !network::gate_is_entrypoint(&pod) || recorded || passed(self) {
            return Ok(pod);
        }
        let line = network::await_gate_command();
        let confirms = network::runs_this_gate(&pod);
        // The check has no effect in the sandbox, so a try whose status was
        // lost (a success without the gate's word on stdout) is made again.
        for tries in 1.. {
            let mut process = self
                .start_exec(name, &line, &SpawnOptions::default(), None)
                .await?;
            let stdout = process.take_stdout();
            drop(process.take_stderr());
            let said = async {
                let mut said = Vec::new();
                if let Some(stdout) = stdout {
                    let _ = stdout.take(4096).read_to_end(&mut said).await;
                }
                said
            };
            let (said, code) = tokio::join!(said, process.wait());
            let code = match code {
                Ok(code) => code,
                Err(err) => {
                    // The gate failed the sandbox and its exec with it: say that.
                    self.refusal(name).await?;
                    return Err(err);
                }
            };
            if code != 0 {
                self.refusal(name).await?;
                return Err(Error::Exec {
                    name: name.to_owned(),
                    message: format!("waiting for the sandbox's network policy exited {code}"),
                });
            }
            // A gate from an earlier sandlot build says nothing.
            if said == network::GATE_PASSED || !confirms {
                break;
            }
            if tries == GATE_AWAIT_TRIES {
                return Err(Error::Exec {
                    name: name.to_owned(),
                    message: format!(
                        "waiting for the sandbox's network policy: the check's outcome was \
                         lost on its way from the container runtime, {GATE_AWAIT_TRIES} times"
                    ),
                });
            }
        }
        let mut passed = self.gates_passed().lock().unwrap();
        if passed.len() >= GATES_REMEMBERED {
            passed.clear();
        }
        passed.insert(uid);
        Ok(pod)
    }

    /// Why sandbox `name` cannot take an exec: not found, or not running. Ok
    /// if it is running.
    async fn refusal(&self, name: &str) -> Result<()> {
        running(name, &self.get_sandbox(name).await?)
    }

    /// [`Client::connect_exec`], tried again while the API server answers
    /// that it is busy or unavailable (429, 500, 503, 504, honouring
    /// Retry-After). Such an answer means the command was not started, so a
    /// new try cannot run it twice; a connection lost without an answer is
    /// not retried here.
    async fn connect_exec_answered(
        &self,
        name: &str,
        line: &[String],
        options: &SpawnOptions,
    ) -> std::result::Result<kube::client::Connection, kube::Error> {
        let mut tries = crate::retry::Tries::start();
        loop {
            match self.connect_exec(name, line, options).await {
                Err(err)
                    if crate::error::api_status(&err)
                        .is_some_and(|s| matches!(s.code, 429 | 500 | 503 | 504))
                        && let Some(pause) = tries.pause_after(&err) =>
                {
                    tokio::time::sleep(pause).await;
                }
                outcome => return outcome,
            }
        }
    }

    /// The upgraded connection of an exec of `line` in pod `name`.
    async fn connect_exec(
        &self,
        name: &str,
        line: &[String],
        options: &SpawnOptions,
    ) -> std::result::Result<kube::client::Connection, kube::Error> {
        let params = AttachParams::default()
            .container(CONTAINER_NAME)
            .stdin(options.stdin)
            .stdout(true)
            .stderr(!options.tty)
            .tty(options.tty);
        let pods = <Pod as kube::Resource>::url_path(&(), Some(self.namespace()));
        let mut request = kube::core::Request::new(pods)
            .exec(name, line.iter().map(String::as_str), &params)
            .map_err(kube::Error::BuildRequest)?;
        request.extensions_mut().insert("exec");
        self.kube().connect(request).await
    }

    /// Runs `command` in running sandbox `name` and collects its output (up to
    /// `max_output` of each stream) and exact exit code, draining stdout and
    /// stderr concurrently. On timeout the command's processes are killed and
    /// [`Error::ExecTimeout`] carries the output so far; a cancelled call (its
    /// future dropped) or a lost connection has them killed in the background.
    /// In an image without `/bin/sh` (and no `workdir`) the command runs
    /// untagged, and nothing can be killed.
    pub async fn exec_sandbox(
        &self,
        name: &str,
        command: &[String],
        options: &ExecOptions,
    ) -> Result<ExecResult> {
        let deadline = options.timeout.map(crate::deadline_after);
        match self
            .collect_exec(name, command, options, true, deadline)
            .await
        {
            Err(Error::Exec { message, .. })
                if options.workdir.is_none() && lacks_shell(&message) =>
            {
                self.collect_exec(name, command, options, false, deadline)
                    .await
            }
            outcome => outcome,
        }
    }

    async fn collect_exec(
        &self,
        name: &str,
        command: &[String],
        options: &ExecOptions,
        killable: bool,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<ExecResult> {
        let spawn = SpawnOptions {
            stdin: options.stdin.is_some(),
            tty: false,
            env: options.env.clone(),
            workdir: options.workdir.clone(),
            killable,
            detach: false,
        };
        crate::validate::object_name("name", name)?;
        let tag = killable.then(new_tag);
        let wrapper = match tag.as_deref() {
            Some(tag) => Wrapper::Tagged {
                tag,
                report: Some(Report {
                    drain_stdin: spawn.stdin,
                }),
            },
            None => Wrapper::Plain,
        };
        check_command(command, &spawn.env, spawn.workdir.as_deref())?;
        // Read first: a terminated sandbox's workload runs on through its
        // grace period, and the exec API would still accept an exec into it.
        // Before the guard is armed: until the sandbox runs its workload
        // (past its network gate) neither the command nor a kill (an exec of
        // the image's own shell) may run there.
        let ready = async {
            match self.exec_route(name).await? {
                ExecRoute::Kubernetes {
                    ready: false, why, ..
                } => {
                    let pod = self.ready_for_exec(name).await?;
                    Ok(ExecRoute::Kubernetes {
                        ready: true,
                        why,
                        env: labels::sandbox_env(&pod.metadata),
                    })
                }
                route => Ok(route),
            }
        };
        let route = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, ready)
                .await
                .map_err(|_| Error::ExecTimeout {
                    what: format!("command {:?} in sandbox {name:?}", command.join(" ")),
                    after: options.timeout.unwrap_or_default(),
                    output: Box::default(),
                })??,
            None => ready.await?,
        };
        let (agent, env) = match route {
            ExecRoute::Agent(link, env) => (Some(link), env),
            ExecRoute::Kubernetes { env, .. } => (None, env),
        };
        let spawn = spawn.with_sandbox_env(&env);
        let line = wrap_command(command, &spawn.env, spawn.workdir.as_deref(), wrapper)?;
        // Armed from before the request: a call cancelled while the exec
        // opens may have started the command. (The agent kills a process
        // whose start nobody waits for any more; its guard is armed once
        // the process is known.)
        let mut guard = KillOnDrop(
            tag.clone()
                .filter(|_| agent.is_none())
                .map(|tag| ExecKiller {
                    client: self.clone(),
                    sandbox: name.to_owned(),
                    target: KillTarget::Tag(tag),
                }),
        );
        let mut stdout = Collected::new(options.max_output);
        let mut stderr = Collected::new(options.max_output);
        let mut opened = false;
        let through_agent = agent.is_some();
        let run = async {
            let mut process = match agent {
                Some(link) => {
                    let process = self.start_agent_exec(link, name, command, &spawn).await?;
                    guard.0 = process.killer();
                    process
                }
                None => self.start_exec(name, &line, &spawn, tag).await?,
            };
            opened = true;
            let (out, err, input) = (
                process.take_stdout(),
                process.take_stderr(),
                process.take_stdin(),
            );
            let status = process.wait_outcome();
            // Input the command does not read is not waited for: once it
            // ends, the write fails and the exit status is there.
            let feed = async {
                if let (Some(data), Some(mut writer)) = (options.stdin.as_deref(), input) {
                    if writer.write_all(data).await.is_ok() {
                        let _ = writer.shutdown().await;
                    }
                }
                std::future::pending::<()>().await;
            };
            let collect = async { tokio::join!(stdout.drain(out), stderr.drain(err), status) };
            let (out, err, status) = tokio::select! {
                collected = collect => collected,
                () = feed => unreachable!("feeding stdin never ends by itself"),
            };
            let broken = |what: &str, err: std::io::Error| Error::Exec {
                name: name.to_owned(),
                message: format!("{what}: {err}"),
            };
            let status = status?;
            out.map_err(|e| broken("reading stdout", e))?;
            err.map_err(|e| broken("reading stderr", e))?;
            Ok(status)
        };
        let ended = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, run).await.ok(),
            None => Some(run.await),
        };
        let Some(ended) = ended else {
            if let Some(killer) = guard.0.take() {
                let _ = killer.kill().await;
            }
            return Err(Error::ExecTimeout {
                what: format!("command {:?} in sandbox {name:?}", command.join(" ")),
                after: options.timeout.unwrap_or_default(),
                output: Box::new(ExecOutput {
                    truncated: stdout.dropped || stderr.dropped,
                    stdout: stdout.kept,
                    stderr: stderr.kept,
                }),
            });
        };
        if !opened {
            // Refused (not running, say): nothing started.
            guard.disarm();
        }
        let outcome = ended?;
        guard.disarm();
        let exit_code = match outcome {
            Ok(code) => code,
            Err(message) => {
                // The API server may open the stream and only then find the
                // container gone: say so as a refused exec would.
                self.refusal(name).await?;
                return Err(Error::Exec {
                    name: name.to_owned(),
                    message,
                });
            }
        };
        Ok(ExecResult {
            truncated: stdout.dropped || stderr.dropped,
            stdout: stdout.kept,
            stderr: stderr.kept,
            exit_code,
            through_agent,
        })
    }
}

/// Speaks to the exec websocket until the exit status arrives or the
/// connection ends: output goes to `stdout` and `stderr` (dropped once their
/// reader is gone), `stdin` and terminal sizes go to the server. Receiving
/// never waits for sending, so a command that exits without reading its
/// input ends the session at once; the streams' ends are dropped with it.
async fn run_session(
    connection: kube::client::Connection,
    stdin: Option<DuplexStream>,
    mut stdout: Option<DuplexStream>,
    mut stderr: Option<DuplexStream>,
    resize: Option<tokio::sync::mpsc::Receiver<TerminalSize>>,
    reports_exit: bool,
) -> SessionEnd {
    let closes_streams = connection.supports_stream_close();
    let mut reports = reports_exit.then(ExitReports::default);
    let (mut sink, mut source) = connection.into_stream().split();
    let receive = async move {
        while let Some(message) = source.next().await {
            let frame = match message {
                Ok(Message::Binary(frame)) => frame,
                Ok(_) => continue,
                Err(err) => return Err(format!("connection lost: {}", error_chain(&err))),
            };
            let Some((&channel, payload)) = frame.split_first() else {
                continue;
            };
            match channel {
                STDOUT => deliver(&mut stdout, payload).await,
                STDERR => match &mut reports {
                    Some(reports) => {
                        let out = reports.push(payload);
                        if !out.is_empty() {
                            deliver(&mut stderr, &out).await;
                        }
                    }
                    None => deliver(&mut stderr, payload).await,
                },
                STATUS => {
                    let status = serde_json::from_slice::<Status>(payload)
                        .map_err(|err| format!("unreadable exit status: {err}"))?;
                    let report = match reports {
                        None => None,
                        Some(reports) => {
                            let (rest, code) = reports.finish();
                            if !rest.is_empty() {
                                deliver(&mut stderr, &rest).await;
                            }
                            Some(code)
                        }
                    };
                    return Ok(exit_code_of(&status, report));
                }
                _ => {}
            }
        }
        Err("connection closed before the exit status arrived".to_owned())
    };
    let send = async move {
        let (mut stdin, mut resize) = (stdin, resize);
        let start = tokio::time::Instant::now() + PING_INTERVAL;
        let mut ping = tokio::time::interval_at(start, PING_INTERVAL);
        let mut buf = vec![0; STREAM_BUFFER];
        loop {
            let message = tokio::select! {
                _ = ping.tick() => Message::Ping(Default::default()),
                read = read_some(&mut stdin, &mut buf) => match read {
                    Ok(0) | Err(_) => {
                        stdin = None;
                        if !closes_streams {
                            // Before v5 the end of input is said by closing the connection.
                            let _ = sink.close().await;
                            return;
                        }
                        Message::binary(vec![CLOSE, STDIN])
                    }
                    Ok(read) => Message::binary([&[STDIN], &buf[..read]].concat()),
                },
                size = next_size(&mut resize) => match size.map(|size| serde_json::to_vec(&size)) {
                    Some(Ok(json)) => Message::binary([&[RESIZE], json.as_slice()].concat()),
                    Some(Err(_)) => continue,
                    None => {
                        resize = None;
                        continue;
                    }
                },
            };
            if sink.send(message).await.is_err() {
                return;
            }
        }
    };
    let mut receive = pin!(receive);
    tokio::select! {
        end = &mut receive => end,
        () = send => receive.await,
    }
}

/// Writes `data` to `stream`, or drops it (and the stream) once its reader is gone.
async fn deliver(stream: &mut Option<DuplexStream>, data: &[u8]) {
    if let Some(writer) = stream {
        if writer.write_all(data).await.is_err() {
            *stream = None;
        }
    }
}

/// Reads from `stream`; never ends without one.
async fn read_some(stream: &mut Option<DuplexStream>, buf: &mut [u8]) -> std::io::Result<usize> {
    match stream {
        Some(stream) => stream.read(buf).await,
        None => std::future::pending().await,
    }
}

/// The next terminal size; never ends without a channel.
async fn next_size(
    sizes: &mut Option<tokio::sync::mpsc::Receiver<TerminalSize>>,
) -> Option<TerminalSize> {
    match sizes {
        Some(sizes) => sizes.recv().await,
        None => std::future::pending().await,
    }
}

/// A stream's output, kept up to a limit; the rest is read and dropped.
struct Collected {
    kept: Vec<u8>,
    limit: Option<usize>,
    dropped: bool,
}

impl Collected {
    fn new(limit: Option<usize>) -> Self {
        Collected {
            kept: Vec::new(),
            limit,
            dropped: false,
        }
    }

    /// Reads `reader` to its end.
    async fn drain(&mut self, reader: Option<DuplexStream>) -> std::io::Result<()> {
        let Some(mut reader) = reader else {
            return Ok(());
        };
        let mut buf = vec![0; STREAM_BUFFER];
        loop {
            let read = reader.read(&mut buf).await?;
            if read == 0 {
                return Ok(());
            }
            self.keep(&buf[..read]);
        }
    }

    fn keep(&mut self, data: &[u8]) {
        let room = match self.limit {
            Some(limit) => limit.saturating_sub(self.kept.len()),
            None => data.len(),
        };
        let kept = data.len().min(room);
        self.kept.extend_from_slice(&data[..kept]);
        self.dropped |= kept < data.len();
    }
}

/// A fresh tag for the processes of one exec.
fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Ok if sandbox `name`, as `status` shows it, runs; else [`Error::NotRunning`].
pub(super) fn running(name: &str, status: &crate::status::SandboxStatus) -> Result<()> {
    if status.phase != Phase::Running {
        return Err(Error::NotRunning {
            name: name.to_owned(),
            phase: status.phase.to_string(),
        });
    }
    Ok(())
}

/// Whether an exec failed because the image has no `/bin/sh` to run the wrapper.
pub(super) fn lacks_shell(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("/bin/sh")
        && (message.contains("no such file") || message.contains("not found"))
}

/// How [`wrap_command`] runs a command.
#[derive(Debug, Clone, Copy)]
enum Wrapper<'a> {
    /// As it is (with `env` and `workdir` only, when given).
    Plain,
    /// Its processes tagged with `tag` (see [`ExecKiller`]); with `report`,
    /// the command's exit code written as a [`TRAILER`] line to stderr.
    Tagged {
        tag: &'a str,
        report: Option<Report>,
    },
}

/// A wrapper that reports the command's exit code on stderr.
#[derive(Debug, Clone, Copy)]
struct Report {
    /// Read what is left of stdin once the command has ended, then exit with
    /// the command's code: input the command did not read then never stays
    /// in the pipes of the API server and the runtime, where it can hold up
    /// or lose the exit status (seen on Kubernetes 1.34 with containerd;
    /// kubectl is hit the same way). Only for input that ends: the exit
    /// waits for its end.
    drain_stdin: bool,
}

/// The command line that runs `command` with extra `env` in `workdir`, as
/// `wrapper` says.
fn wrap_command(
    command: &[String],
    env: &[(String, String)],
    workdir: Option<&str>,
    wrapper: Wrapper<'_>,
) -> Result<Vec<String>> {
    check_command(command, env, workdir)?;
    Ok(wrapped_line(command, env, workdir, wrapper))
}

/// Refuses, naming the field, a command, env or workdir that cannot be run.
pub(super) fn check_command(
    command: &[String],
    env: &[(String, String)],
    workdir: Option<&str>,
) -> Result<()> {
    if command.is_empty() {
        return Err(Error::invalid("command", "must name a program to run"));
    }
    if command.iter().any(|part| part.contains('\0')) {
        return Err(Error::invalid("command", "must not contain NUL bytes"));
    }
    for (key, value) in env {
        crate::validate::env_name(&format!("env[{key:?}]"), key)?;
        if value.contains('\0') {
            return Err(Error::invalid(
                format!("env[{key:?}]"),
                "value must not contain NUL bytes",
            ));
        }
    }
    if let Some(dir) = workdir {
        if dir.is_empty() || dir.contains('\0') {
            return Err(Error::invalid("workdir", "must be a non-empty path"));
        }
    }
    Ok(())
}

/// The line that runs `command` with extra `env` in `workdir`, as `wrapper` says.
fn wrapped_line(
    command: &[String],
    env: &[(String, String)],
    workdir: Option<&str>,
    wrapper: Wrapper<'_>,
) -> Vec<String> {
    // The shell's arguments carry the values ($0, $1): no quoting involved.
    let mut line: Vec<String> = Vec::new();
    match (wrapper, workdir) {
        (Wrapper::Tagged { tag, report }, dir) => {
            let mut script = format!("export {TAG_VARIABLE}=\"$0\"");
            if dir.is_some() {
                script.push_str(" && cd -- \"$1\" && shift");
            }
            match report {
                Some(Report { drain_stdin }) => {
                    script.push_str(" || exit; \"$@\"; code=$?; ");
                    if drain_stdin {
                        script.push_str("cat >/dev/null 2>&1; ");
                    }
                    // printf's \000 is the trailer's NUL byte.
                    script.push_str("printf '\\000sandlot-exit:%d\\n' \"$code\" >&2; exit $code");
                }
                None => script.push_str(" && exec \"$@\""),
            }
            line.extend(["/bin/sh".into(), "-c".into(), script, tag.to_owned()]);
            line.extend(dir.map(str::to_owned));
        }
        (Wrapper::Plain, Some(dir)) => line.extend([
            "/bin/sh".into(),
            "-c".into(),
            "cd -- \"$0\" && exec \"$@\"".into(),
            dir.to_owned(),
        ]),
        (Wrapper::Plain, None) => {}
    }
    if !env.is_empty() {
        line.push("env".into());
        line.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    }
    line.extend(command.iter().cloned());
    line
}

/// Takes the wrapper's exit reports ([`TRAILER`] lines) out of a command's
/// stderr as it arrives. Bytes that may still become a report are held back
/// until they do or cannot; the last whole report counts (the wrapper writes
/// its own after the command, and a background process may write after it).
#[derive(Debug, Default)]
struct ExitReports {
    held: Vec<u8>,
    code: Option<i32>,
}

/// What the bytes from a NUL on are.
#[derive(Debug, PartialEq)]
enum Parsed {
    /// A whole report of `len` bytes.
    Whole { len: usize, code: i32 },
    /// The start of one, so far.
    Partial,
    /// Not a report: the NUL is output.
    Not,
}

impl ExitReports {
    /// Takes `data` in; returns the bytes that can be delivered now.
    fn push(&mut self, data: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            let Some(at) = self.held.iter().position(|&b| b == 0) else {
                out.append(&mut self.held);
                return out;
            };
            out.extend(self.held.drain(..at));
            match parse_report(&self.held) {
                Parsed::Whole { len, code } => {
                    self.code = Some(code);
                    self.held.drain(..len);
                }
                Parsed::Partial => return out,
                Parsed::Not => out.extend(self.held.drain(..1)),
            }
        }
    }

    /// The end of stderr: the bytes still held (not a report), and the last
    /// exit code reported.
    fn finish(self) -> (Vec<u8>, Option<i32>) {
        (self.held, self.code)
    }
}

/// Reads `bytes` (which start with a NUL) as a [`TRAILER`] line: the
/// prefix, 1 to 3 digits, a newline.
fn parse_report(bytes: &[u8]) -> Parsed {
    let known = bytes.len().min(TRAILER.len());
    if bytes[..known] != TRAILER[..known] {
        return Parsed::Not;
    }
    let Some(rest) = bytes.get(TRAILER.len()..) else {
        return Parsed::Partial;
    };
    let digits = rest
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    match rest.get(digits) {
        _ if digits > 3 => Parsed::Not,
        None => Parsed::Partial,
        Some(b'\n') if digits > 0 => Parsed::Whole {
            len: TRAILER.len() + digits + 1,
            code: std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|d| d.parse().ok())
                .unwrap_or_default(),
        },
        Some(_) => Parsed::Not,
    }
}

/// The exit code in the status the API server sends when an exec ends, with
/// `report`, for a wrapper that reports the exit itself, what it reported
/// (`Some(None)`: nothing). NonZeroExitCode carries the code as a cause;
/// Success is 0, or the code reported, and without a report it is an error
/// (the status was lost on the way); anything else (the command could not be
/// started, say) is an error with the server's message.
fn exit_code_of(status: &Status, report: Option<Option<i32>>) -> ExitOutcome {
    let message = status.message.clone().unwrap_or_default();
    if status.status.as_deref() == Some("Success") {
        return match report {
            None => Ok(0),
            Some(Some(code)) => Ok(code),
            Some(None) => Err(UNCONFIRMED_SUCCESS.to_owned()),
        };
    }
    let reason = status.reason.as_deref().unwrap_or_default();
    if reason == "NonZeroExitCode" {
        let code = status
            .details
            .iter()
            .flat_map(|d| d.causes.iter().flatten())
            .find(|c| c.reason.as_deref() == Some("ExitCode"))
            .and_then(|c| c.message.as_deref()?.parse::<i32>().ok());
        return code.ok_or_else(|| format!("exit status without a code: {message}"));
    }
    Err(if message.is_empty() {
        format!("exec failed ({reason})")
    } else {
        message
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: serde_json::Value) -> Status {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn success_is_exit_code_zero() {
        let success = status(serde_json::json!({"status": "Success"}));
        assert_eq!(exit_code_of(&success, None), Ok(0));
        // A wrapper that reports: its report decides, and none is no success.
        assert_eq!(exit_code_of(&success, Some(Some(0))), Ok(0));
        assert_eq!(exit_code_of(&success, Some(Some(3))), Ok(3));
        assert_eq!(
            exit_code_of(&success, Some(None)),
            Err(UNCONFIRMED_SUCCESS.to_owned())
        );
    }

    #[test]
    fn non_zero_exit_code_is_exact() {
        for code in [1, 42, 137, 255] {
            let s = status(serde_json::json!({
                "status": "Failure", "reason": "NonZeroExitCode",
                "message": format!("command terminated with non-zero exit code: exit code {code}"),
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
            }));
            assert_eq!(exit_code_of(&s, None), Ok(code));
            assert_eq!(exit_code_of(&s, Some(None)), Ok(code));
        }
    }

    #[test]
    fn failure_without_code_is_an_error() {
        let s = status(serde_json::json!({
            "status": "Failure", "reason": "InternalError",
            "message": "executable file not found in $PATH"
        }));
        assert_eq!(
            exit_code_of(&s, None),
            Err("executable file not found in $PATH".to_owned())
        );
        let coded_without_code =
            status(serde_json::json!({"status": "Failure", "reason": "NonZeroExitCode"}));
        assert!(
            exit_code_of(&coded_without_code, Some(Some(0))).is_err(),
            "never a guessed code"
        );
    }

    #[test]
    fn env_and_workdir_wrap_the_command_without_quoting() {
        let cmd = vec![
            "python3".to_owned(),
            "-c".to_owned(),
            "print('$HOME')".to_owned(),
        ];
        assert_eq!(wrap_command(&cmd, &[], None, Wrapper::Plain).unwrap(), cmd);
        let env = [("A".to_owned(), "1 2".to_owned())];
        let wrapped = wrap_command(&cmd, &env, Some("/work dir"), Wrapper::Plain).unwrap();
        assert_eq!(
            wrapped,
            [
                "/bin/sh",
                "-c",
                "cd -- \"$0\" && exec \"$@\"",
                "/work dir",
                "env",
                "A=1 2",
                "python3",
                "-c",
                "print('$HOME')"
            ]
        );
        assert!(matches!(
            wrap_command(&[], &[], None, Wrapper::Plain),
            Err(Error::InvalidSpec { .. })
        ));
        assert!(matches!(
            wrap_command(&cmd, &[("A=B".into(), "x".into())], None, Wrapper::Plain),
            Err(Error::InvalidSpec { .. })
        ));
    }

    #[test]
    fn a_tag_is_exported_before_the_command_runs() {
        let cmd = vec!["sleep".to_owned(), "1".to_owned()];
        let tagged = |report| Wrapper::Tagged {
            tag: "ab12",
            report,
        };
        assert_eq!(
            wrap_command(&cmd, &[], None, tagged(None)).unwrap(),
            [
                "/bin/sh",
                "-c",
                "export SANDLOT_EXEC=\"$0\" && exec \"$@\"",
                "ab12",
                "sleep",
                "1"
            ]
        );
        assert_eq!(
            wrap_command(&cmd, &[], Some("/tmp"), tagged(None)).unwrap()[2..5],
            [
                "export SANDLOT_EXEC=\"$0\" && cd -- \"$1\" && shift && exec \"$@\"",
                "ab12",
                "/tmp"
            ]
        );
        let reporting = |drain_stdin| tagged(Some(Report { drain_stdin }));
        assert_eq!(
            wrap_command(&cmd, &[], None, reporting(false)).unwrap()[2],
            "export SANDLOT_EXEC=\"$0\" || exit; \"$@\"; code=$?; \
             printf '\\000sandlot-exit:%d\\n' \"$code\" >&2; exit $code"
        );
        assert_eq!(
            wrap_command(&cmd, &[], Some("/tmp"), reporting(true)).unwrap()[2],
            "export SANDLOT_EXEC=\"$0\" && cd -- \"$1\" && shift || exit; \
             \"$@\"; code=$?; cat >/dev/null 2>&1; \
             printf '\\000sandlot-exit:%d\\n' \"$code\" >&2; exit $code"
        );
        assert_ne!(new_tag(), new_tag());
        assert_eq!(new_tag().len(), 16);
    }

    #[test]
    fn exit_reports_are_taken_off_stderr_however_they_arrive() {
        let all = |frames: &[&[u8]]| {
            let mut reports = ExitReports::default();
            let mut out: Vec<u8> = frames.iter().flat_map(|f| reports.push(f)).collect();
            let (rest, code) = reports.finish();
            out.extend(rest);
            (out, code)
        };
        assert_eq!(
            all(&[b"oops\n\0sandlot-exit:3\n"]),
            (b"oops\n".to_vec(), Some(3))
        );
        // Split anywhere, even inside the prefix or the digits.
        assert_eq!(
            all(&[b"a\0sand", b"lot-exit:2", b"55\n"]),
            (b"a".to_vec(), Some(255))
        );
        // Output after the report (a background process) still arrives.
        assert_eq!(
            all(&[b"\0sandlot-exit:0\nlate\n"]),
            (b"late\n".to_vec(), Some(0))
        );
        // The last report counts; a fake one earlier is taken off too.
        assert_eq!(
            all(&[b"\0sandlot-exit:0\n", b"x\0sandlot-exit:1\n"]),
            (b"x".to_vec(), Some(1))
        );
        // NULs that are output stay output, in order.
        for data in [
            &b"bin\0ary\0"[..],
            b"\0sandlot-exit:\n",
            b"\0sandlot-exit:1234\n",
            b"\0sandlot-exit:-1\n",
            b"\0sandlot-exit:7",
            b"\0sandlot",
        ] {
            assert_eq!(all(&[data]), (data.to_vec(), None), "{data:?}");
        }
        // Held back only while it may still be a report.
        let mut reports = ExitReports::default();
        assert_eq!(reports.push(b"prompt> "), b"prompt> ");
        assert_eq!(reports.push(b"\0sandlot-ex"), b"");
        assert_eq!(reports.push(b"X"), b"\0sandlot-exX");
    }

    #[test]
    fn collected_output_stops_at_its_limit_and_says_so() {
        let mut bounded = Collected::new(Some(5));
        bounded.keep(b"abc");
        assert!(!bounded.dropped);
        bounded.keep(b"defg");
        bounded.keep(b"h");
        assert_eq!(
            (bounded.kept.as_slice(), bounded.dropped),
            (&b"abcde"[..], true)
        );
        let mut exact = Collected::new(Some(3));
        exact.keep(b"abc");
        assert!(!exact.dropped, "output of exactly the limit is whole");
        let mut unbounded = Collected::new(None);
        unbounded.keep(&[7; 1000]);
        assert_eq!((unbounded.kept.len(), unbounded.dropped), (1000, false));
    }

    #[test]
    fn a_missing_shell_is_recognised() {
        assert!(lacks_shell(
            "OCI runtime exec failed: exec failed: unable to start container process: \
             exec: \"/bin/sh\": stat /bin/sh: no such file or directory: unknown"
        ));
        assert!(!lacks_shell("executable file \"foo\" not found in $PATH"));
        assert!(!lacks_shell("connection lost"));
    }

    mod scripted {
        //! The exec's requests against a scripted API server: an upgrade it
        //! cannot complete, so these show only the refused path.
        use http::Response;
        use kube::client::Body;
        use serde_json::json;

        use super::*;
        use crate::spec::{SandboxRequest, SandboxSpec};
        use crate::test_api::{Handle, client, failure, respond};

        fn pod_in_phase(phase: &str) -> serde_json::Value {
            let spec = SandboxSpec::try_from(SandboxRequest::new("busybox:1.36")).unwrap();
            let mut pod = serde_json::to_value(spec.to_pod("job")).unwrap();
            pod["status"] = json!({"phase": phase});
            pod
        }

        /// Answers the one request expected, the read of the sandbox, with
        /// `read`; fails if the exec is tried after it.
        fn script(mut handle: Handle, read: Response<Body>) -> tokio::task::JoinHandle<()> {
            tokio::spawn(async move {
                let (request, reply) = handle.next_request().await.unwrap();
                assert_eq!(
                    request.method(),
                    "GET",
                    "the sandbox is read before the exec"
                );
                assert_eq!(request.uri().path(), "/api/v1/namespaces/test/pods/job");
                reply.send_response(read);
                if let Some((request, _)) = handle.next_request().await {
                    panic!(
                        "no exec into a sandbox that is not running: {}",
                        request.uri()
                    );
                }
            })
        }

        #[tokio::test]
        async fn a_terminated_sandbox_whose_workload_still_stops_takes_no_exec() {
            let (client, handle) = client();
            let mut pod = pod_in_phase("Running");
            pod["metadata"]["annotations"] =
                json!({crate::labels::TERMINATED_AT_ANNOTATION: "2026-01-01T00:00:00Z"});
            let server = script(handle, respond(200, pod));
            let command = ["true".to_owned()];
            let err = client
                .exec_sandbox("job", &command, &ExecOptions::default())
                .await
                .unwrap_err();
            assert!(
                matches!(&err, Error::NotRunning { phase, .. } if phase == "terminated"),
                "{err}"
            );
            drop(client);
            server.await.unwrap();
        }

        #[tokio::test]
        async fn an_exec_into_a_missing_sandbox_is_not_found() {
            let (client, handle) = client();
            let server = script(handle, respond(404, failure(404, "NotFound")));
            let command = ["true".to_owned()];
            let err = client
                .exec_sandbox("job", &command, &ExecOptions::default())
                .await
                .unwrap_err();
            assert!(matches!(err, Error::NotFound { .. }), "{err}");
            drop(client);
            server.await.unwrap();
        }
    }
}
