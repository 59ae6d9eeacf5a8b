use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{AttachParams, AttachedProcess, TerminalSize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadHalf, SimplexStream, WriteHalf};

use crate::client::Client;
use crate::error::{Error, Result, error_chain};
use crate::labels::CONTAINER_NAME;
use crate::status::Phase;

/// Buffer between the websocket and each stream of a command.
const STREAM_BUFFER: usize = 64 * 1024;

/// How to run a command in a sandbox and collect its output.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Bytes written to the command's stdin, which is then closed. `None`: no stdin.
    pub stdin: Option<Vec<u8>>,
    /// Give up after this long; the command may keep running in the sandbox.
    pub timeout: Option<Duration>,
    /// Extra environment variables for the command (needs `env` in the image).
    pub env: Vec<(String, String)>,
    /// Working directory of the command (needs `/bin/sh` in the image).
    pub workdir: Option<String>,
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
}

/// What a finished command left behind. A non-zero exit code is a result, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// A command running in a sandbox. Take its streams, then [`ExecProcess::wait`]
/// for the exit code. Dropping it tears the connection down.
pub struct ExecProcess {
    sandbox: String,
    process: Option<AttachedProcess>,
    stdout: Option<ReadHalf<SimplexStream>>,
    stderr: Option<ReadHalf<SimplexStream>>,
    stdin: Option<WriteHalf<SimplexStream>>,
    resize: Option<futures::channel::mpsc::Sender<TerminalSize>>,
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
    pub fn take_stdout(&mut self) -> Option<ReadHalf<SimplexStream>> {
        self.stdout.take()
    }

    /// The command's stderr; empty on a TTY. Taken once.
    pub fn take_stderr(&mut self) -> Option<ReadHalf<SimplexStream>> {
        self.stderr.take()
    }

    /// The command's stdin, if it was opened. Taken once; shutting it down (or
    /// dropping it) closes the command's input.
    pub fn take_stdin(&mut self) -> Option<WriteHalf<SimplexStream>> {
        self.stdin.take()
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

    /// Waits for the exit code. Exact: a connection lost before the exit status
    /// arrived is an [`Error::Exec`], never 0. The returned future owns what it
    /// needs; a second call fails.
    pub fn wait(&mut self) -> impl std::future::Future<Output = Result<i32>> + Send + 'static {
        let sandbox = self.sandbox.clone();
        let process = self.process.take();
        async move {
            let lost = |message: String| Error::Exec {
                name: sandbox.clone(),
                message,
            };
            let mut process = process.ok_or_else(|| lost("already waited for".into()))?;
            let status = process
                .take_status()
                .ok_or_else(|| lost("no status channel".into()))?;
            let status = status.await;
            let finished = process.join().await;
            let status = match (status, finished) {
                (Some(status), _) => status,
                (None, Err(err)) => {
                    return Err(lost(format!("connection lost: {}", error_chain(&err))));
                }
                (None, Ok(())) => {
                    return Err(lost(
                        "connection closed before the exit status arrived".into(),
                    ));
                }
            };
            exit_code_of(&status).map_err(lost)
        }
    }

    fn lost(&self, message: String) -> Error {
        Error::Exec {
            name: self.sandbox.clone(),
            message,
        }
    }
}

impl Client {
    /// Starts `command` in running sandbox `name` and hands over its streams.
    /// Fails with [`Error::NotRunning`] unless the sandbox is running.
    pub async fn spawn_exec(
        &self,
        name: &str,
        command: &[String],
        options: &SpawnOptions,
    ) -> Result<ExecProcess> {
        let status = self.get_sandbox(name).await?;
        if status.phase != Phase::Running {
            return Err(Error::NotRunning {
                name: name.to_owned(),
                phase: status.phase.to_string(),
            });
        }
        self.start_exec(name, command, options).await
    }

    /// Starts the exec in a sandbox known to be running.
    async fn start_exec(
        &self,
        name: &str,
        command: &[String],
        options: &SpawnOptions,
    ) -> Result<ExecProcess> {
        let command = wrap_command(command, &options.env, options.workdir.as_deref())?;
        crate::validate::object_name("name", name)?;
        let params = AttachParams::default()
            .container(CONTAINER_NAME)
            .stdin(options.stdin)
            .stdout(true)
            .stderr(!options.tty)
            .tty(options.tty)
            .max_stdin_buf_size(STREAM_BUFFER)
            .max_stdout_buf_size(STREAM_BUFFER)
            .max_stderr_buf_size(STREAM_BUFFER);
        let mut process = self
            .pods()
            .exec(name, command.iter().map(String::as_str), &params)
            .await
            .map_err(|err| self.sandbox_error(err, name))?;
        Ok(ExecProcess {
            sandbox: name.to_owned(),
            stdout: process.stdout(),
            stderr: process.stderr(),
            stdin: if options.stdin { process.stdin() } else { None },
            resize: process.terminal_size(),
            process: Some(process),
        })
    }

    /// Runs `command` in running sandbox `name` and collects its output and exact
    /// exit code, draining stdout and stderr concurrently.
    pub async fn exec_sandbox(
        &self,
        name: &str,
        command: &[String],
        options: &ExecOptions,
    ) -> Result<ExecResult> {
        let deadline = options.timeout.map(crate::deadline_after);
        let run = async {
            let spawn = SpawnOptions {
                stdin: options.stdin.is_some(),
                tty: false,
                env: options.env.clone(),
                workdir: options.workdir.clone(),
            };
            let mut process = self.spawn_exec(name, command, &spawn).await?;
            let (stdout, stderr, stdin) = (
                process.take_stdout(),
                process.take_stderr(),
                process.take_stdin(),
            );
            let feed = async {
                if let (Some(input), Some(mut writer)) = (options.stdin.as_deref(), stdin) {
                    writer.write_all(input).await?;
                    writer.shutdown().await?;
                }
                std::io::Result::Ok(())
            };
            let (stdout, stderr, fed, exit_code) =
                tokio::join!(read_all(stdout), read_all(stderr), feed, process.wait());
            let exit_code = exit_code?;
            let broken = |what: &str, err: std::io::Error| process.lost(format!("{what}: {err}"));
            fed.map_err(|e| broken("writing stdin", e))?;
            Ok(ExecResult {
                stdout: stdout.map_err(|e| broken("reading stdout", e))?,
                stderr: stderr.map_err(|e| broken("reading stderr", e))?,
                exit_code,
            })
        };
        match deadline {
            Some(deadline) => {
                tokio::time::timeout_at(deadline, run)
                    .await
                    .map_err(|_| Error::Timeout {
                        what: format!("command {:?} in sandbox {name:?}", command.join(" ")),
                        after: options.timeout.unwrap_or_default(),
                    })?
            }
            None => run.await,
        }
    }
}

/// The command line that runs `command` with extra `env` in `workdir`.
fn wrap_command(
    command: &[String],
    env: &[(String, String)],
    workdir: Option<&str>,
) -> Result<Vec<String>> {
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
    let mut line = Vec::new();
    if let Some(dir) = workdir {
        if dir.is_empty() || dir.contains('\0') {
            return Err(Error::invalid("workdir", "must be a non-empty path"));
        }
        // $0 is the directory, the rest is the command: no quoting involved.
        line.extend([
            "/bin/sh".into(),
            "-c".into(),
            "cd -- \"$0\" && exec \"$@\"".into(),
            dir.to_owned(),
        ]);
    }
    if !env.is_empty() {
        line.push("env".into());
        line.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    }
    line.extend(command.iter().cloned());
    Ok(line)
}

async fn read_all(reader: Option<impl AsyncRead + Unpin>) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(mut reader) = reader {
        reader.read_to_end(&mut buf).await?;
    }
    Ok(buf)
}

/// The exit code in the status the API server sends when an exec ends: Success
/// is 0; NonZeroExitCode carries the code as a cause; anything else (the command
/// could not be started, say) is an error with the server's message.
pub(crate) fn exit_code_of(status: &Status) -> Result<i32, String> {
    let message = status.message.clone().unwrap_or_default();
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
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
        assert_eq!(
            exit_code_of(&status(serde_json::json!({"status": "Success"}))),
            Ok(0)
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
            assert_eq!(exit_code_of(&s), Ok(code));
        }
    }

    #[test]
    fn failure_without_code_is_an_error() {
        let s = status(serde_json::json!({
            "status": "Failure", "reason": "InternalError",
            "message": "executable file not found in $PATH"
        }));
        assert_eq!(
            exit_code_of(&s),
            Err("executable file not found in $PATH".to_owned())
        );
        let coded_without_code =
            status(serde_json::json!({"status": "Failure", "reason": "NonZeroExitCode"}));
        assert!(
            exit_code_of(&coded_without_code).is_err(),
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
        assert_eq!(wrap_command(&cmd, &[], None).unwrap(), cmd);
        let wrapped = wrap_command(&cmd, &[("A".into(), "1 2".into())], Some("/work dir")).unwrap();
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
            wrap_command(&[], &[], None),
            Err(Error::InvalidSpec { .. })
        ));
        assert!(matches!(
            wrap_command(&cmd, &[("A=B".into(), "x".into())], None),
            Err(Error::InvalidSpec { .. })
        ));
    }
}
