use std::pin::{Pin, pin};
use std::time::Duration;

use futures::{AsyncBufReadExt, AsyncReadExt, Stream};
use kube::api::LogParams;

use crate::client::Client;
use crate::error::{Error, Result, error_chain};
use crate::labels::CONTAINER_NAME;
use crate::retry::retry;
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

/// How many lines from the end of an ended sandbox's log are read to find
/// where a follow stopped, before reading the whole log.
const LOG_TAIL_WINDOW: usize = 1000;

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
    /// it ended. Empty while the sandbox has not started. Undecodable bytes
    /// are replaced (U+FFFD); [`Client::sandbox_log_bytes`] has them as written.
    pub async fn sandbox_logs(&self, name: &str, options: &LogOptions) -> Result<String> {
        let bytes = self.sandbox_log_bytes(name, options).await?;
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned()))
    }

    /// The log of sandbox `name` as the bytes the sandbox wrote (see
    /// [`Client::sandbox_logs`] for what is read).
    pub async fn sandbox_log_bytes(&self, name: &str, options: &LogOptions) -> Result<Vec<u8>> {
        let params = options.params(false)?;
        let status = self.get_sandbox(name).await?;
        if matches!(status.phase, Phase::Queued | Phase::Creating)
            || status.started_at.is_none() && status.exit_code.is_none()
        {
            return Ok(Vec::new());
        }
        let read = || async {
            let mut log = Vec::new();
            let mut stream = self.pods().log_stream(name, &params).await?;
            stream
                .read_to_end(&mut log)
                .await
                .map_err(kube::Error::ReadEvents)?;
            Ok(log)
        };
        retry(read)
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
        // The kubelet ends a follow as soon as the container has exited and it
        // reaches the end of the log file, which the runtime may still be
        // writing. So a follow of the whole log asks for timestamps (stripped
        // again unless the caller wants them), remembers the last line it
        // delivered and, once the sandbox has ended, reads the end of the log
        // for what came after that line.
        let drain = follow && options.tail_lines.is_none() && options.since_seconds.is_none();
        let strip = drain && !options.timestamps;
        let params = LogParams {
            timestamps: params.timestamps || drain,
            ..params
        };
        let reader = self
            .pods()
            .log_stream(name, &params)
            .await
            .map_err(|err| self.sandbox_error(err, name))?;
        let (client, sandbox) = (self.clone(), name.to_owned());
        Ok(Box::pin(async_stream::stream! {
            let mut reader = pin!(reader);
            // The last line delivered, with its timestamp, when draining.
            let mut last_delivered: Option<Vec<u8>> = None;
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line).await {
                    Ok(0) => break,
                    // A last line without its ending: the drain decides.
                    Ok(_) if line.last() != Some(&b'\n') && drain => break,
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        let text = delivered_text(&line, strip);
                        if drain {
                            last_delivered = Some(line);
                        }
                        yield Ok(text);
                    }
                    Err(err) => {
                        yield Err(Error::LogStream {
                            name: sandbox.clone(),
                            message: error_chain(&err),
                        });
                        break;
                    }
                }
            }
            if !follow {
                return;
            }
            let ended = [Phase::Succeeded, Phase::Failed, Phase::Terminated];
            match client.wait_sandbox(&sandbox, &ended, FOLLOW_END_TIMEOUT).await {
                Ok(_) | Err(Error::Timeout { .. }) | Err(Error::NotFound { .. }) => {}
                Err(err) => {
                    yield Err(err);
                    return;
                }
            }
            if !drain {
                return;
            }
            match client.settled_rest_of_log(&sandbox, last_delivered.as_deref()).await {
                Ok(rest) => {
                    for line in rest {
                        yield Ok(delivered_text(&line, strip));
                    }
                }
                Err(err) => yield Err(err),
            }
        }))
    }

    /// The lines (with timestamps) of ended sandbox `name`'s log after line
    /// `last` (all of them without one), once the log stops growing: the
    /// runtime may still be copying the container's output into it for a
    /// moment after the container exited.
    async fn settled_rest_of_log(&self, name: &str, last: Option<&[u8]>) -> Result<Vec<Vec<u8>>> {
        let mut rest = self.rest_of_log(name, last).await?;
        for _ in 0..LOG_SETTLE_TRIES {
            tokio::time::sleep(LOG_SETTLE_INTERVAL).await;
            let again = self.rest_of_log(name, last).await?;
            if again.len() == rest.len() {
                break;
            }
            rest = again;
        }
        Ok(rest)
    }

    /// The lines of sandbox `name`'s log after line `last`: found in the log's
    /// last [`LOG_TAIL_WINDOW`] lines, else in the whole log.
    async fn rest_of_log(&self, name: &str, last: Option<&[u8]>) -> Result<Vec<Vec<u8>>> {
        let tail = split_raw_lines(&self.read_log_bytes(name, Some(LOG_TAIL_WINDOW)).await?);
        if let Some(rest) = lines_after(&tail, last, tail.len() < LOG_TAIL_WINDOW) {
            return Ok(rest);
        }
        let all = split_raw_lines(&self.read_log_bytes(name, None).await?);
        Ok(lines_after(&all, last, true).unwrap_or_default())
    }

    /// The log of sandbox `name` with timestamps, its last `tail` lines or all.
    async fn read_log_bytes(&self, name: &str, tail: Option<usize>) -> Result<Vec<u8>> {
        let params = LogParams {
            container: Some(CONTAINER_NAME.to_owned()),
            timestamps: true,
            tail_lines: tail.map(|n| n as i64),
            ..LogParams::default()
        };
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

/// A line as delivered: without its timestamp when `strip` (the timestamp
/// ends at the first space), undecodable bytes replaced.
fn delivered_text(line: &[u8], strip: bool) -> String {
    let text = match line.iter().position(|&b| b == b' ') {
        Some(space) if strip => &line[space + 1..],
        _ => line,
    };
    String::from_utf8_lossy(text).into_owned()
}

/// The lines of `bytes` without their endings; a last line without one counts.
fn split_raw_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

/// The lines after the last occurrence of `last` (all lines without `last`).
/// `None` when that cannot be told from `lines` because they are not the
/// whole log (`complete` false) and `last` is not among them. In a whole log
/// that lacks `last` (rotated away), nothing is after it.
fn lines_after(lines: &[Vec<u8>], last: Option<&[u8]>, complete: bool) -> Option<Vec<Vec<u8>>> {
    let Some(last) = last else {
        return complete.then(|| lines.to_vec());
    };
    match lines.iter().rposition(|line| line == last) {
        Some(at) => Some(lines[at + 1..].to_vec()),
        None => complete.then(Vec::new),
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;
    use tower_test::mock;

    use super::{delivered_text, lines_after, split_raw_lines};
    use crate::client::Client;
    use crate::sandbox::LogOptions;
    use crate::spec::{SandboxRequest, SandboxSpec};

    /// A running sandbox pod named "sb" in namespace "test".
    fn running_pod() -> serde_json::Value {
        let spec = SandboxSpec::try_from(SandboxRequest::new("busybox:1.36")).unwrap();
        let mut pod = serde_json::to_value(spec.to_pod("sb")).unwrap();
        pod["metadata"]["namespace"] = json!("test");
        pod["status"] = json!({"phase": "Running", "containerStatuses": [{"name": "sandbox",
            "image": "busybox:1.36", "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]});
        pod
    }

    fn respond(body: Vec<u8>) -> Response<Body> {
        Response::builder()
            .status(200)
            .body(Body::from(body))
            .unwrap()
    }

    /// A client whose API server answers by path: the pod, a list of it, its
    /// log (`follow` for a follow, `full` otherwise); watches stay open.
    fn client(follow: &'static str, full: &'static str) -> (Client, tokio::task::JoinHandle<()>) {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let mut open_watches = Vec::new();
            while let Some((request, reply)) = handle.next_request().await {
                let query = request.uri().query().unwrap_or_default().to_owned();
                let body = match request.uri().path() {
                    "/api/v1/namespaces/test/pods/sb/log" if query.contains("follow=true") => {
                        follow.as_bytes().to_vec()
                    }
                    "/api/v1/namespaces/test/pods/sb/log" => full.as_bytes().to_vec(),
                    "/api/v1/namespaces/test/pods/sb" => running_pod().to_string().into_bytes(),
                    "/api/v1/namespaces/test/pods" if query.contains("watch=true") => {
                        open_watches.push(reply);
                        continue;
                    }
                    "/api/v1/namespaces/test/pods" => json!({"kind": "PodList", "apiVersion": "v1",
                        "metadata": {"resourceVersion": "1"}, "items": [running_pod()]})
                    .to_string()
                    .into_bytes(),
                    other => panic!("unexpected request {other}?{query}"),
                };
                reply.send_response(respond(body));
            }
        });
        let client = Client::from_kube(kube::Client::new(service, "test"), "test".into());
        (client, server)
    }

    #[tokio::test(start_paused = true)]
    async fn a_log_is_read_line_by_line_including_a_last_line_without_ending() {
        let (client, server) = client("", "a\nb\nc");
        let lines: Vec<String> = client
            .stream_logs("sb", &LogOptions::default(), false)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(lines, ["a", "b", "c"]);
        server.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_follow_ends_with_the_rest_of_the_log_once_the_sandbox_ended() {
        // The follow stops early, in the middle of a line; the log written
        // after that is read once the sandbox has ended.
        let (client, server) = client(
            "2026-01-01T00:00:01Z a\n2026-01-01T00:00:02Z b\n2026-01-01T00:00:03Z par",
            "2026-01-01T00:00:01Z a\n2026-01-01T00:00:02Z b\n2026-01-01T00:00:03Z partial\n2026-01-01T00:00:04Z d\n",
        );
        let lines: Vec<String> = client
            .stream_logs("sb", &LogOptions::default(), true)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(lines, ["a", "b", "partial", "d"]);
        server.abort();
    }

    fn lines(text: &str) -> Vec<Vec<u8>> {
        split_raw_lines(text.as_bytes())
    }

    #[test]
    fn lines_split_with_and_without_a_final_ending() {
        assert_eq!(lines("a\nb\n"), [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(lines("a\nb"), [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(lines("\n"), [b"".to_vec()]);
        assert!(lines("").is_empty());
    }

    #[test]
    fn timestamps_are_stripped_only_when_asked() {
        let line = b"2026-11-29T11:50:00.123456789Z hello world";
        assert_eq!(delivered_text(line, true), "hello world");
        assert_eq!(delivered_text(line, false), String::from_utf8_lossy(line));
        assert_eq!(delivered_text(b"2026-11-29T11:50:00.123456789Z ", true), "");
    }

    #[test]
    fn the_rest_starts_after_the_last_delivered_line() {
        let log = lines("t1 a\nt2 b\nt3 c\n");
        assert_eq!(lines_after(&log, Some(b"t2 b"), false), Some(lines("t3 c")));
        assert_eq!(lines_after(&log, Some(b"t3 c"), false), Some(vec![]));
        // Nothing delivered yet: everything, if this is the whole log.
        assert_eq!(lines_after(&log, None, true), Some(log.clone()));
        assert_eq!(lines_after(&log, None, false), None);
        // The delivered line is older than this tail: read the whole log.
        assert_eq!(lines_after(&log, Some(b"t0 z"), false), None);
        // Not in the whole log either (rotated away): nothing more to give.
        assert_eq!(lines_after(&log, Some(b"t0 z"), true), Some(vec![]));
    }
}
