//! Files in sandboxes and volumes: read, write, list, stat, make, remove,
//! rename, and whole trees up and down.
//!
//! Every operation is one run of the agent program in its file mode (see
//! `protocol.rs`): through the sandbox's agent connection where it can be
//! used, else as a Kubernetes exec of the same program, so it needs neither a
//! shell nor `tar` in the image. A volume's files go through a helper pod
//! that mounts it (`helper.rs`).
//!
//! Writes go to a temporary name beside the target and are renamed into place
//! only once the content's end arrived, so no reader sees half a file and a
//! write that breaks leaves nothing under the final name.

mod helper;
mod protocol;
mod stall;
mod tree;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::sandbox::{ExecKiller, ExecProcess, SpawnOptions};

pub use helper::HELPER_IMAGE_ENV;
pub(crate) use helper::HelperState;
pub(crate) use protocol::MAX_PATH;
use protocol::{
    EXCLUSIVE, FOLLOW, LISTING_BOUNDS, MAX_CHUNK, MAX_STATUS, NO_REPLACE, Op, PARENTS, RECURSIVE,
    RequestBytes, Status,
};
pub use protocol::{EntryKind, FileEntry, errno_text};
pub use stall::set_file_idle;
use stall::{Stall, Stalling};
pub use tree::local_mode;

/// Where files live: a sandbox's filesystem, or a volume's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileTarget {
    Sandbox(String),
    /// A volume's files, through a helper pod that runs as uid 0, or as
    /// `run_as_user` (its uid, gid and fsGroup, as a sandbox created with
    /// it runs).
    Volume {
        name: String,
        run_as_user: Option<i64>,
    },
}

impl FileTarget {
    /// Volume `name`'s files as uid 0 sees them.
    pub fn volume(name: impl Into<String>) -> Self {
        FileTarget::Volume {
            name: name.into(),
            run_as_user: None,
        }
    }

    /// Volume `name`'s files as a sandbox created with `run_as_user` sees
    /// them; fails, naming `run_as_user`, on a uid a sandbox may not have.
    pub fn volume_as(name: impl Into<String>, run_as_user: i64) -> Result<Self> {
        crate::validate::run_as_user("run_as_user", run_as_user)?;
        Ok(FileTarget::Volume {
            name: name.into(),
            run_as_user: Some(run_as_user),
        })
    }

    /// The name of the sandbox or volume.
    pub fn name(&self) -> &str {
        match self {
            FileTarget::Sandbox(name) | FileTarget::Volume { name, .. } => name,
        }
    }
}

impl std::fmt::Display for FileTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileTarget::Sandbox(name) => write!(f, "sandbox {name:?}"),
            FileTarget::Volume { name, .. } => write!(f, "volume {name:?}"),
        }
    }
}

/// Where a volume is mounted in its helper pod.
const VOLUME_ROOT: &[u8] = b"/volume";

/// One run of the agent's file mode, from its start to its status.
struct FileRun {
    target: FileTarget,
    /// The path as the caller named it (errors name it so).
    path: Vec<u8>,
    /// Where the sandbox sees it (a volume's paths are below its mount).
    remote: Vec<u8>,
    /// `None` once its status was read.
    process: Option<ExecProcess>,
    /// A volume's helper, held while the run goes on.
    lease: Option<helper::HelperLease>,
    /// Where an abandoned run is ended (see `Drop`).
    runtime: tokio::runtime::Handle,
    stdin: Option<Stalling>,
    stdout: Option<Stalling>,
    stderr: JoinHandle<Vec<u8>>,
    /// Whether a wait on the agent outlasted the idle bound.
    stall: Stall,
    /// What ends the run when the wait for its exit failed (the connection
    /// was lost, not necessarily the run); `Drop` uses it.
    lost: Option<ExecKiller>,
    /// Whether it changes anything: then, abandoned, its input is closed so
    /// that the agent can undo what it began, before it is killed.
    writes: bool,
}

impl FileRun {
    /// Ends the run: closes stdin, then reads its status. A failure is
    /// [`Error::File`]; a success returns the bytes the agent says it moved.
    async fn finish(mut self) -> Result<u64> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.shutdown().await;
        }
        drop(self.stdout.take());
        let exit = self.exit().await;
        if self.stall.happened() {
            return Err(self.stall_error());
        }
        let stderr = (&mut self.stderr).await.unwrap_or_default();
        let name = self.target.to_string();
        match protocol::parse_status(&stderr, &name, exit)? {
            Status::Ok(moved) => Ok(moved),
            Status::Failed(errno, path) => Err(self.error(errno, path, None)),
        }
    }

    /// An [`Error::File`] about `remote` (a path as the agent saw it).
    fn error(&self, errno: i32, remote: Vec<u8>, message: Option<String>) -> Error {
        let path = if remote == self.remote || remote.is_empty() {
            self.path.clone()
        } else {
            self.target.local_path(remote)
        };
        file_error(&self.target.to_string(), path, errno, message)
    }

    /// The error of a run whose agent stopped making progress (a wait
    /// lasted `after`).
    fn stall_error_after(&self, after: std::time::Duration) -> Error {
        Error::Timeout {
            what: format!(
                "the agent to move {:?} in {} (it made no progress; it was stopped)",
                String::from_utf8_lossy(&self.path),
                self.target
            ),
            after,
        }
    }

    /// The error of a run one of whose waits on data outlasted the bound.
    fn stall_error(&self) -> Error {
        self.stall_error_after(self.stall.idle())
    }

    /// Sends bytes on stdin; a run that stopped reading reports why.
    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let stdin = self.stdin.as_mut().expect("the run's stdin is open");
        stdin.restart_clock();
        if stdin.write_all(bytes).await.is_ok() {
            return Ok(());
        }
        self.stdin = None;
        Err(self.take_failure().await)
    }

    /// Waits for the program's exit code; the run is over after it, unless
    /// the wait outlasted the idle bound (then the process is left to `Drop`,
    /// which kills it).
    async fn exit(&mut self) -> Result<i32> {
        if self.stall.happened() {
            return Err(self.stall_error());
        }
        let process = self.process.as_mut().expect("a run's exit is read once");
        match tokio::time::timeout(self.stall.exit_idle(), process.wait()).await {
            Ok(exit) => {
                if let Some(process) = self.process.take()
                    && exit.is_err()
                {
                    self.lost = process.killer();
                }
                exit
            }
            Err(_) => {
                self.stall.mark();
                Err(self.stall_error_after(self.stall.exit_idle()))
            }
        }
    }

    /// Why the run stopped early: its status, else an [`Error::Exec`].
    async fn take_failure(&mut self) -> Error {
        let exit = self.exit().await;
        if self.stall.happened() {
            return self.stall_error();
        }
        let stderr = (&mut self.stderr).await.unwrap_or_default();
        let name = self.target.to_string();
        match protocol::parse_status(&stderr, &name, exit) {
            Ok(Status::Failed(errno, path)) => self.error(errno, path, None),
            Ok(Status::Ok(_)) => Error::Exec {
                name,
                message: "the agent stopped reading the content before its end".into(),
            },
            Err(err) => err,
        }
    }
}

/// How long an abandoned write may take to clean up before it is killed.
const ABANDONED_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Drop for FileRun {
    /// A run dropped before its status was read (a write aborted or failed,
    /// a read given up, the caller cancelled) is ended in the background: a
    /// write's input is closed without the end chunk (from a new connection
    /// to the agent if its own was lost), so the agent removes what it wrote
    /// and exits (killed after [`ABANDONED_WAIT`]); anything else is killed
    /// at once.
    fn drop(&mut self) {
        let lease = self.lease.take();
        if let Some(killer) = self.lost.take() {
            // Its connection was lost: reached through a new one.
            let write = self.writes;
            crate::sandbox::in_background(&self.runtime, async move {
                if !(write && killer.end_input(ABANDONED_WAIT).await) {
                    let _ = killer.kill().await;
                }
                drop(lease);
            });
            return;
        }
        let Some(mut process) = self.process.take() else {
            return;
        };
        let stdin = self.stdin.take();
        drop(self.stdout.take());
        let killer = process.killer();
        crate::sandbox::in_background(&self.runtime, async move {
            let ended = match stdin {
                Some(mut stdin) => {
                    let _ = stdin.shutdown().await;
                    match tokio::time::timeout(ABANDONED_WAIT, process.wait()).await {
                        Ok(Ok(_)) => true,
                        // The connection was lost, not the run.
                        Ok(Err(_)) => match &killer {
                            Some(killer) => killer.end_input(ABANDONED_WAIT).await,
                            None => false,
                        },
                        Err(_) => false,
                    }
                }
                None => false,
            };
            if let (false, Some(killer)) = (ended, killer) {
                let _ = killer.kill().await;
            }
            drop(lease);
        });
    }
}

/// An [`Error::File`].
fn file_error(target: &str, path: Vec<u8>, errno: i32, message: Option<String>) -> Error {
    Error::File {
        target: target.to_owned(),
        path: String::from_utf8_lossy(&path).into_owned(),
        path_bytes: path,
        errno,
        message: message.unwrap_or_else(|| errno_text(errno).to_owned()),
    }
}

impl FileTarget {
    /// The path the agent is given for `path`: as is in a sandbox; below the
    /// mount in a volume's helper, where `..` may not leave the volume.
    fn remote_path(&self, field: &str, path: &[u8]) -> Result<Vec<u8>> {
        if path.is_empty() || path.len() > MAX_PATH - VOLUME_ROOT.len() - 1 {
            return Err(Error::invalid(field, "must be a path of 1 to 4000 bytes"));
        }
        if path.contains(&0) {
            return Err(Error::invalid(field, "must not contain NUL bytes"));
        }
        match self {
            FileTarget::Sandbox(_) => Ok(path.to_vec()),
            FileTarget::Volume { .. } => {
                let mut remote = VOLUME_ROOT.to_vec();
                for part in path.split(|&b| b == b'/') {
                    match part {
                        b"" | b"." => {}
                        b".." => {
                            return Err(Error::invalid(
                                field,
                                "a volume path must not contain \"..\" (it would leave the volume)",
                            ));
                        }
                        part => {
                            remote.push(b'/');
                            remote.extend_from_slice(part);
                        }
                    }
                }
                Ok(remote)
            }
        }
    }

    /// A path the agent named, as the caller sees it.
    fn local_path(&self, remote: Vec<u8>) -> Vec<u8> {
        match self {
            FileTarget::Sandbox(_) => remote,
            FileTarget::Volume { .. } => match remote.strip_prefix(VOLUME_ROOT) {
                Some([]) => b"/".to_vec(),
                Some(rest) if rest.starts_with(b"/") => rest.to_vec(),
                _ => remote,
            },
        }
    }
}

/// A file being read: its content in chunks, then a check that all of it came.
pub struct FileReader {
    run: Option<FileRun>,
    received: u64,
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl FileReader {
    /// The next chunk (at most 1 MiB), or `None` once the whole content
    /// arrived and the agent confirmed it.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        let Some(run) = self.run.as_mut() else {
            return Ok(None);
        };
        let stdout = run.stdout.as_mut().expect("a read's stdout is open");
        stdout.restart_clock();
        let mut chunk = vec![0; MAX_CHUNK];
        let mut filled = 0;
        while filled < chunk.len() {
            match stdout.read(&mut chunk[filled..]).await {
                Ok(0) => break,
                Err(_) if run.stall.happened() => return Err(run.stall_error()),
                Err(_) => break,
                Ok(n) => filled += n,
            }
            // Hand over what came as soon as a good share of a chunk is here.
            if filled >= 256 * 1024 {
                break;
            }
        }
        if filled > 0 {
            chunk.truncate(filled);
            self.received += filled as u64;
            return Ok(Some(chunk));
        }
        let run = self.run.take().expect("checked above");
        let target = run.target.to_string();
        let moved = run.finish().await?;
        if moved != self.received {
            return Err(Error::Exec {
                name: target,
                message: format!(
                    "the file's content was cut short: {} of {moved} bytes arrived",
                    self.received
                ),
            });
        }
        Ok(None)
    }

    /// Reads the rest into memory.
    pub async fn read_all(mut self) -> Result<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all)
    }
}

/// A file being written: content in any number of pieces, then
/// [`FileWriter::commit`], which renames it into place. Dropped without a
/// commit, nothing appears under the file's name.
pub struct FileWriter {
    run: FileRun,
    sent: u64,
}

impl std::fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter")
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl FileWriter {
    /// Sends `data` (in chunks of at most 1 MiB).
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        for piece in data.chunks(MAX_CHUNK) {
            self.run.send(&protocol::chunk_header(piece.len())).await?;
            self.run.send(piece).await?;
            self.sent += piece.len() as u64;
        }
        Ok(())
    }

    /// Bytes sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Ends the content and puts the file in place; its size on success.
    pub async fn commit(mut self) -> Result<u64> {
        self.run.send(&protocol::chunk_header(0)).await?;
        let target = self.run.target.to_string();
        let written = self.run.finish().await?;
        if written != self.sent {
            return Err(Error::Exec {
                name: target,
                message: format!("the agent wrote {written} of {} bytes", self.sent),
            });
        }
        Ok(written)
    }
}

/// How to write a file.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// Permission bits of the new file.
    pub mode: u32,
    /// Create missing parent directories.
    pub parents: bool,
    /// Fail if the path exists.
    pub exclusive: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            mode: 0o644,
            parents: true,
            exclusive: false,
        }
    }
}

/// Checks permission bits given as `field`.
fn check_mode(field: &str, mode: u32) -> Result<()> {
    if mode > 0o7777 {
        return Err(Error::invalid(
            field,
            format!("{mode:#o} is not a permission mode (0 to 0o7777)"),
        ));
    }
    Ok(())
}

impl Client {
    /// Starts the agent's file mode in `target` with `request` on stdin;
    /// `writes` says whether it changes anything (a volume's helper then
    /// mounts it writable).
    async fn start_file_run(
        &self,
        target: &FileTarget,
        path: &[u8],
        remote: Vec<u8>,
        request: RequestBytes,
        writes: bool,
    ) -> Result<FileRun> {
        let (pod, lease) = match target {
            FileTarget::Sandbox(name) => {
                crate::validate::object_name("sandbox", name)?;
                (name.clone(), None)
            }
            FileTarget::Volume { name, run_as_user } => {
                let (pod, lease) = self.volume_helper(name, *run_as_user, writes).await?;
                (pod, Some(lease))
            }
        };
        let options = SpawnOptions {
            stdin: true,
            ..SpawnOptions::default()
        };
        let mut process = self
            .spawn_agent_program(&pod, &crate::agent::file_command(), &options)
            .await
            .map_err(|err| match (target, err) {
                (FileTarget::Volume { name: volume, .. }, Error::Exec { message, .. }) => {
                    Error::Exec {
                        name: pod.clone(),
                        message: format!("the file helper of volume {volume:?}: {message}"),
                    }
                }
                (_, err) => err,
            })?;
        let stall = Stall::new();
        let stdin = process.take_stdin().map(|s| stall.guard(s));
        let stdout = process.take_stdout().map(|s| stall.guard(s));
        let stderr = process.take_stderr().expect("a file run has stderr");
        let stderr = tokio::spawn(async move {
            let mut said = Vec::new();
            let _ = stderr.take(MAX_STATUS).read_to_end(&mut said).await;
            said
        });
        let mut run = FileRun {
            target: target.clone(),
            path: path.to_vec(),
            remote,
            process: Some(process),
            lease,
            runtime: tokio::runtime::Handle::current(),
            stdin,
            stdout,
            stderr,
            stall,
            lost: None,
            writes,
        };
        run.send(&request.0).await?;
        Ok(run)
    }

    /// A run of `op` on `path` with nothing more on stdin, to its status.
    async fn simple_file_op(
        &self,
        target: &FileTarget,
        (field, path): (&str, &[u8]),
        op: Op,
        fields: impl FnOnce(RequestBytes) -> Result<RequestBytes>,
    ) -> Result<FileRun> {
        let remote = target.remote_path(field, path)?;
        let request = fields(RequestBytes::new(op, &remote))?;
        let writes = !matches!(op, Op::Read | Op::Stat | Op::List | Op::Pack | Op::DiskUsed);
        self.start_file_run(target, path, remote, request, writes)
            .await
    }

    /// The whole content of `path`, refused with errno 27 (EFBIG) when it
    /// holds more than `max_size` bytes (`None`: no bound), so a file a
    /// sandbox made huge cannot exhaust the caller's memory. At most
    /// `max_size + 1` bytes are read.
    pub async fn read_whole_file(
        &self,
        target: &FileTarget,
        path: &[u8],
        max_size: Option<u64>,
    ) -> Result<Vec<u8>> {
        let limit = max_size.map(|max| max.saturating_add(1));
        let content = self
            .read_file(target, path, 0, limit)
            .await?
            .read_all()
            .await?;
        match max_size {
            Some(max) if content.len() as u64 > max => Err(file_error(
                &target.to_string(),
                path.to_vec(),
                27,
                Some(format!(
                    "File too large: it holds more than max_size ({max} bytes); pass a larger \
                     max_size, or read it in parts with open_read"
                )),
            )),
            _ => Ok(content),
        }
    }

    /// Reads `path` from `offset`, `length` bytes at most (`None`: to the end).
    pub async fn read_file(
        &self,
        target: &FileTarget,
        path: &[u8],
        offset: u64,
        length: Option<u64>,
    ) -> Result<FileReader> {
        let mut run = self
            .simple_file_op(target, ("path", path), Op::Read, |r| {
                Ok(r.u64(offset).u64(length.unwrap_or(u64::MAX)))
            })
            .await?;
        if let Some(mut stdin) = run.stdin.take() {
            let _ = stdin.shutdown().await;
        }
        Ok(FileReader {
            run: Some(run),
            received: 0,
        })
    }

    /// Starts writing `path`; see [`FileWriter`].
    pub async fn write_file(
        &self,
        target: &FileTarget,
        path: &[u8],
        options: WriteOptions,
    ) -> Result<FileWriter> {
        check_mode("mode", options.mode)?;
        let flags = if options.parents { PARENTS } else { 0 }
            | if options.exclusive { EXCLUSIVE } else { 0 };
        let run = self
            .simple_file_op(target, ("path", path), Op::Write, |r| {
                Ok(r.u32(options.mode).u32(flags))
            })
            .await?;
        Ok(FileWriter { run, sent: 0 })
    }

    /// What `path` is: a symlink itself, or with `follow` what it points to.
    pub async fn stat_file(
        &self,
        target: &FileTarget,
        path: &[u8],
        follow: bool,
    ) -> Result<FileEntry> {
        let flags = if follow { FOLLOW } else { 0 };
        let mut entries = self.entries(target, path, Op::Stat, flags).await?;
        let mut entry = entries.pop().ok_or_else(|| Error::Exec {
            name: target.to_string(),
            message: "the agent's stat has no entry".into(),
        })?;
        entry.path = path.to_vec();
        Ok(entry)
    }

    /// The disk sandbox `name` uses, in bytes, as its agent counts it: what
    /// changed on its root filesystem since it started (its writable layer)
    /// and what its scratch volumes hold. `None` when the count gave up
    /// (over a million entries).
    pub(crate) async fn disk_used(&self, name: &str) -> Result<Option<u64>> {
        let target = FileTarget::Sandbox(name.to_owned());
        let run = self
            .simple_file_op(&target, ("path", b"/"), Op::DiskUsed, |r| Ok(r.u32(0)))
            .await?;
        match run.finish().await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(Error::File { errno: 75, .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Sets the permission bits of `path` to `mode`; a symlink there is
    /// refused (errno 40, ELOOP), never followed.
    pub async fn change_mode(&self, target: &FileTarget, path: &[u8], mode: u32) -> Result<()> {
        check_mode("mode", mode)?;
        let run = self
            .simple_file_op(target, ("path", path), Op::Chmod, |r| {
                Ok(r.u32(mode).u32(0))
            })
            .await?;
        run.finish().await.map(drop)
    }

    /// Whether `path` exists (a dangling symlink does).
    pub async fn file_exists(&self, target: &FileTarget, path: &[u8]) -> Result<bool> {
        match self.stat_file(target, path, false).await {
            Ok(_) => Ok(true),
            Err(Error::File { errno: 2 | 20, .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// The entries below directory `path`, `depth` levels down (0: all),
    /// a directory before its contents; paths relative to `path`.
    pub async fn list_files(
        &self,
        target: &FileTarget,
        path: &[u8],
        depth: u32,
    ) -> Result<Vec<FileEntry>> {
        self.entries(target, path, Op::List, depth).await
    }

    /// The records of a listing or stat; `field` is its one number (the
    /// list's depth, the stat's flags).
    async fn entries(
        &self,
        target: &FileTarget,
        path: &[u8],
        op: Op,
        field: u32,
    ) -> Result<Vec<FileEntry>> {
        let mut run = self
            .simple_file_op(target, ("path", path), op, |r| Ok(r.u32(field)))
            .await?;
        let mut stdout = run.stdout.take().expect("a listing's stdout is open");
        let name = target.to_string();
        let listed = protocol::read_listing(&mut stdout, &name, LISTING_BOUNDS).await;
        drop(stdout);
        // The status says why a listing stopped, before any malformed record.
        run.finish().await?;
        listed
    }

    /// Makes directory `path` (with `parents`, also missing parents, and an
    /// existing directory is fine).
    pub async fn make_dir(
        &self,
        target: &FileTarget,
        path: &[u8],
        mode: u32,
        parents: bool,
    ) -> Result<()> {
        check_mode("mode", mode)?;
        let flags = if parents { PARENTS } else { 0 };
        let run = self
            .simple_file_op(target, ("path", path), Op::Mkdir, |r| {
                Ok(r.u32(mode).u32(flags))
            })
            .await?;
        run.finish().await.map(drop)
    }

    /// Removes `path`: a file or link, an empty directory, or with
    /// `recursive` a directory and everything below it (links not followed).
    pub async fn remove_file(
        &self,
        target: &FileTarget,
        path: &[u8],
        recursive: bool,
    ) -> Result<()> {
        let flags = if recursive { RECURSIVE } else { 0 };
        let mut run = self
            .simple_file_op(target, ("path", path), Op::Remove, |r| Ok(r.u32(flags)))
            .await?;
        if recursive {
            run.stall.allow_silent_work();
        }
        run.finish().await.map(drop)
    }

    /// Renames `from` to `to` (replacing a file there, unless `exclusive`);
    /// errors name them `src` and `dst`.
    pub async fn rename_file(
        &self,
        target: &FileTarget,
        from: &[u8],
        to: &[u8],
        exclusive: bool,
    ) -> Result<()> {
        let to = target.remote_path("dst", to)?;
        let flags = if exclusive { NO_REPLACE } else { 0 };
        let run = self
            .simple_file_op(target, ("src", from), Op::Rename, |r| {
                Ok(r.with_bytes(&to).u32(flags))
            })
            .await?;
        run.finish().await.map(drop)
    }
}

/// Bytes moved so far by a transfer, for a progress display.
pub type Progress = Arc<AtomicU64>;

fn advance(progress: Option<&Progress>, by: u64) {
    if let Some(progress) = progress {
        progress.fetch_add(by, Ordering::Relaxed);
    }
}
