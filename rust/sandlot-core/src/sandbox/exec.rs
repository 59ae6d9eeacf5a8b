use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::AttachParams;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::client::Client;
use crate::error::{Error, Result, error_chain};
use crate::spec::CONTAINER_NAME;
use crate::status::Phase;

/// Buffer between the websocket and each output reader.
const STREAM_BUFFER: usize = 64 * 1024;

/// How to run a command in a sandbox.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Bytes written to the command's stdin, which is then closed. `None`: no stdin.
    pub stdin: Option<Vec<u8>>,
    /// Give up after this long. The command may keep running in the sandbox.
    pub timeout: Option<Duration>,
}

/// What a finished command left behind. A non-zero exit code is a result, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

impl Client {
    /// Runs `command` in running sandbox `name` and collects its output and exact
    /// exit code. stdout and stderr are drained concurrently. A connection lost
    /// before the exit status arrives is an [`Error::Exec`], never exit code 0.
    pub async fn exec_sandbox(
        &self,
        name: &str,
        command: &[String],
        options: &ExecOptions,
    ) -> Result<ExecResult> {
        if command.is_empty() {
            return Err(Error::invalid("command", "must name a program to run"));
        }
        let status = self.get_sandbox(name).await?;
        if status.phase != Phase::Running {
            return Err(Error::NotRunning {
                name: name.to_owned(),
                phase: status.phase.to_string(),
            });
        }
        let run = self.run_exec(name, command, options.stdin.as_deref());
        match options.timeout {
            Some(limit) => tokio::time::timeout(limit, run)
                .await
                .map_err(|_| Error::Timeout {
                    what: format!("command {:?} in sandbox {name:?}", command.join(" ")),
                    after: limit,
                })?,
            None => run.await,
        }
    }

    async fn run_exec(
        &self,
        name: &str,
        command: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<ExecResult> {
        let params = AttachParams::default()
            .container(CONTAINER_NAME)
            .stdin(stdin.is_some())
            .stdout(true)
            .stderr(true)
            .max_stdin_buf_size(STREAM_BUFFER)
            .max_stdout_buf_size(STREAM_BUFFER)
            .max_stderr_buf_size(STREAM_BUFFER);
        let mut process = self
            .pods()
            .exec(name, command.iter().map(String::as_str), &params)
            .await
            .map_err(|err| self.sandbox_error(err, name))?;
        let lost = |message: String| Error::Exec {
            name: name.to_owned(),
            message,
        };
        let exit_status = process
            .take_status()
            .ok_or_else(|| lost("no status channel".into()))?;
        let stdout = process
            .stdout()
            .ok_or_else(|| lost("no stdout stream".into()))?;
        let stderr = process
            .stderr()
            .ok_or_else(|| lost("no stderr stream".into()))?;
        let feed_stdin = async {
            if let (Some(input), Some(mut writer)) = (stdin, process.stdin()) {
                writer.write_all(input).await?;
                writer.shutdown().await?;
            }
            std::io::Result::Ok(())
        };
        let (stdout, stderr, exit_status, fed) =
            tokio::join!(read_all(stdout), read_all(stderr), exit_status, feed_stdin);
        let finished = process.join().await;
        let exit_status = match (exit_status, finished) {
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
        fed.map_err(|err| lost(format!("writing stdin: {err}")))?;
        let exit_code = exit_code_of(&exit_status).map_err(lost)?;
        Ok(ExecResult {
            stdout: stdout.map_err(|err| lost(format!("reading stdout: {err}")))?,
            stderr: stderr.map_err(|err| lost(format!("reading stderr: {err}")))?,
            exit_code,
        })
    }
}

async fn read_all(mut reader: impl AsyncRead + Unpin) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    reader.read_to_end(&mut buf).await?;
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
        let s = status(serde_json::json!({
            "status": "Failure", "reason": "NonZeroExitCode",
            "message": "command terminated with non-zero exit code: error executing command [sh -c exit 7], exit code 7",
            "details": {"causes": [{"reason": "ExitCode", "message": "7"}]}
        }));
        assert_eq!(exit_code_of(&s), Ok(7));
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
    }
}
