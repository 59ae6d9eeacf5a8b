use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

/// How often, and how far apart, an ended sandbox's log is read until it stops growing.
const LOG_SETTLE_TRIES: u32 = 20;
const LOG_SETTLE_INTERVAL: Duration = Duration::from_millis(250);

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
        // The kubelet ends a follow as soon as the container has exited and it
        // reaches the end of the log file, which the runtime may still be
        // writing. So a follow of the whole log counts what it delivered and,
        // once the sandbox has ended, reads the log again for the rest.
        let drain = follow && options.tail_lines.is_none() && options.since_seconds.is_none();
        let delivered = Arc::new(AtomicUsize::new(0));
        let held_back = Arc::new(Mutex::new(None::<Vec<u8>>));
        let sandbox = name.to_owned();
        let (counter, holder) = (delivered.clone(), held_back.clone());
        let lines = futures::stream::unfold(Some(Box::pin(reader)), move |reader| {
            let (sandbox, counter, holder) = (sandbox.clone(), counter.clone(), holder.clone());
            async move {
                let mut reader = reader?;
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line).await {
                    Ok(0) => None,
                    Ok(_) if line.last() != Some(&b'\n') && drain => {
                        // A last line without its ending: the drain decides.
                        *holder.lock().unwrap_or_else(|p| p.into_inner()) = Some(line);
                        None
                    }
                    Ok(read) => {
                        counter.fetch_add(read, Ordering::Relaxed);
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
        let (client, sandbox) = (self.clone(), name.to_owned());
        let rest = futures::stream::once(async move {
            let ended = [Phase::Succeeded, Phase::Failed, Phase::Terminated];
            match client
                .wait_sandbox(&sandbox, &ended, FOLLOW_END_TIMEOUT)
                .await
            {
                Ok(_) | Err(Error::Timeout { .. }) | Err(Error::NotFound { .. }) => {}
                Err(err) => return vec![Err(err)],
            }
            let held = held_back.lock().unwrap_or_else(|p| p.into_inner()).take();
            if !drain {
                return held
                    .map(|line| Ok(String::from_utf8_lossy(&line).into_owned()))
                    .into_iter()
                    .collect();
            }
            match client.read_settled_log(&sandbox).await {
                Ok(all) => {
                    let rest = all
                        .get(delivered.load(Ordering::Relaxed)..)
                        .unwrap_or_default();
                    split_lines(rest).map(Ok).collect()
                }
                Err(err) => vec![Err(err)],
            }
        })
        .flat_map(futures::stream::iter);
        Ok(lines.chain(rest).boxed())
    }

    /// The whole log of ended sandbox `name`, once it stops growing: the
    /// runtime may still be copying the container's output into it for a moment
    /// after the container exited.
    async fn read_settled_log(&self, name: &str) -> Result<Vec<u8>> {
        let mut log = self.read_log_bytes(name).await?;
        for _ in 0..LOG_SETTLE_TRIES {
            tokio::time::sleep(LOG_SETTLE_INTERVAL).await;
            let again = self.read_log_bytes(name).await?;
            if again.len() == log.len() {
                break;
            }
            log = again;
        }
        Ok(log)
    }

    /// The whole log of sandbox `name` as bytes.
    async fn read_log_bytes(&self, name: &str) -> Result<Vec<u8>> {
        let params = LogOptions::default().params(false)?;
        let mut reader = self
            .pods()
            .log_stream(name, &params)
            .await
            .map_err(|err| self.sandbox_error(err, name))?;
        let mut all = Vec::new();
        futures::AsyncReadExt::read_to_end(&mut reader, &mut all)
            .await
            .map_err(|err| Error::LogStream {
                name: name.to_owned(),
                message: error_chain(&err),
            })?;
        Ok(all)
    }
}

/// The lines of `bytes` without their endings; a last line without one counts.
fn split_lines(bytes: &[u8]) -> impl Iterator<Item = String> + '_ {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.split(|&b| b == b'\n')
        .filter(move |_| !bytes.is_empty())
        .map(|line| String::from_utf8_lossy(line).into_owned())
}

#[cfg(test)]
mod tests {
    use super::split_lines;

    #[test]
    fn lines_split_with_and_without_a_final_ending() {
        assert_eq!(split_lines(b"a\nb\n").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(split_lines(b"a\nb").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(split_lines(b"\n").collect::<Vec<_>>(), [""]);
        assert_eq!(split_lines(b"").count(), 0);
    }
}
