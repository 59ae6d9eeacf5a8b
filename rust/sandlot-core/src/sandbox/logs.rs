use kube::api::LogParams;

use crate::client::Client;
use crate::error::{Error, Result};
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

impl Client {
    /// The log of sandbox `name` (its command's stdout and stderr), also after
    /// it ended. Empty while the sandbox has not started.
    pub async fn sandbox_logs(&self, name: &str, options: &LogOptions) -> Result<String> {
        let status = self.get_sandbox(name).await?;
        if matches!(status.phase, Phase::Queued | Phase::Creating)
            || status.started_at.is_none() && status.exit_code.is_none()
        {
            return Ok(String::new());
        }
        let to_i64 = |field: &str, value: u64| {
            i64::try_from(value).map_err(|_| Error::invalid(field, "is too large"))
        };
        let params = LogParams {
            container: Some(CONTAINER_NAME.to_owned()),
            tail_lines: options
                .tail_lines
                .map(|n| to_i64("tail_lines", n))
                .transpose()?,
            since_seconds: options
                .since_seconds
                .map(|n| to_i64("since_seconds", n))
                .transpose()?,
            timestamps: options.timestamps,
            ..LogParams::default()
        };
        retry(|| self.pods().logs(name, &params))
            .await
            .map_err(|err| self.sandbox_error(err, name))
    }
}
