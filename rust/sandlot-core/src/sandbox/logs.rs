use std::pin::Pin;
use std::time::Duration;

use futures::{AsyncBufReadExt, Stream, StreamExt};
use kube::api::LogParams;

use crate::client::Client;
use crate::error::{Error, Result, error_chain};
use crate::retry::retry;
use crate::spec::CONTAINER_NAME;
use crate::status::Phase;

/// Which part of a sandbox's log to read.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Only the last this many lines.
    pub tail_lines: Option<u64>,
    /// Only lines written in the last this many seconds.
    pub since_seconds: Option<u64>,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
}

/// The lines of a log, without their line endings, as they arrive.
pub type LogLines = Pin<Box<dyn Stream<Item = Result<String>> + Send>>;

/// How long a follow waits, after the log ended, for the phase to turn terminal.
const FOLLOW_END_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a follow waits for a sandbox to start before it gives up.
const FOLLOW_START_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

impl LogOptions {
    fn params(&self, follow: bool) -> Result<LogParams> {
        let to_i64 = |field: &str, value: u64| {
            i64::try_from(value).map_err(|_| Error::invalid(field, "is too large"))
        };
        Ok(LogParams {
            container: Some(CONTAINER_NAME.to_owned()),
            follow,
            tail_lines: self
                .tail_lines
                .map(|n| to_i64("tail_lines", n))
                .transpose()?,
            since_seconds: self
                .since_seconds
                .map(|n| to_i64("since_seconds", n))
                .transpose()?,
            timestamps: self.timestamps,
            ..LogParams::default()
        })
    }
}

impl Client {
    /// The log of sandbox `name` (its command's stdout and stderr), also after
    /// it ended. Empty while the sandbox has not started.
    pub async fn sandbox_logs(&self, name: &str, options: &LogOptions) -> Result<String> {
        let params = options.params(false)?;
        let status = self.get_sandbox(name).await?;
        if matches!(status.phase, Phase::Queued | Phase::Creating)
            || status.started_at.is_none() && status.exit_code.is_none()
        {
            return Ok(String::new());
        }
        retry(|| self.pods().logs(name, &params))
            .await
            .map_err(|err| self.sandbox_error(err, name))
    }

    /// The log of sandbox `name`, line by line. With `follow`, it waits for the
    /// sandbox to start, then keeps delivering lines until the sandbox ends,
    /// every line included (the last one too when it has no line ending).
    /// Undecodable bytes are replaced.
    pub async fn stream_logs(
        &self,
        name: &str,
        options: &LogOptions,
        follow: bool,
    ) -> Result<LogLines> {
        let params = options.params(follow)?;
        let started = [
            Phase::Running,
            Phase::Succeeded,
            Phase::Failed,
            Phase::Terminated,
        ];
        let status = if follow {
            self.wait_sandbox(name, &started, FOLLOW_START_TIMEOUT)
                .await?
        } else {
            self.get_sandbox(name).await?
        };
        if status.started_at.is_none() && status.exit_code.is_none() {
            return Ok(Box::pin(futures::stream::empty()));
        }
        let reader = self
            .pods()
            .log_stream(name, &params)
            .await
            .map_err(|err| self.sandbox_error(err, name))?;
        let sandbox = name.to_owned();
        let lines = futures::stream::unfold(Some(Box::pin(reader)), move |reader| {
            let sandbox = sandbox.clone();
            async move {
                let mut reader = reader?;
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line).await {
                    Ok(0) => None,
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        Some((
                            Ok(String::from_utf8_lossy(&line).into_owned()),
                            Some(reader),
                        ))
                    }
                    Err(err) => Some((
                        Err(Error::LogStream {
                            name: sandbox,
                            message: error_chain(&err),
                        }),
                        None,
                    )),
                }
            }
        });
        if !follow {
            return Ok(lines.boxed());
        }
        // The log ends when the container exits, a moment before the sandbox's
        // phase says so: a follow ends once the phase is terminal too.
        let (client, sandbox) = (self.clone(), name.to_owned());
        let settle = futures::stream::once(async move {
            let ended = [Phase::Succeeded, Phase::Failed, Phase::Terminated];
            match client
                .wait_sandbox(&sandbox, &ended, FOLLOW_END_TIMEOUT)
                .await
            {
                Ok(_) | Err(Error::Timeout { .. }) | Err(Error::NotFound { .. }) => None,
                Err(err) => Some(Err(err)),
            }
        })
        .filter_map(futures::future::ready);
        Ok(lines.chain(settle).boxed())
    }
}
