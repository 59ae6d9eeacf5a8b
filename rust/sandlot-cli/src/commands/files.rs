//! Files in sandboxes and volumes: `cp`, `ls`, `cat`, `chmod`.

use std::ffi::OsStr;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sandlot_core::{Client, EntryKind, Error, Progress, Result, WriteOptions, local_mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::args::{CatArgs, Command, CpArgs, Local, LsArgs, RemotePath, Transfer};
use crate::printer::Printer;

/// "No such file or directory".
pub const ENOENT: i32 = 2;
/// "Not a directory".
const ENOTDIR: i32 = 20;
/// "Invalid argument".
const EINVAL: i32 = 22;
/// Bytes read from stdin per write.
const STDIN_CHUNK: usize = 1 << 20;
/// How often a progress line reads its transfer's counter.
const PROGRESS_POLL: Duration = Duration::from_millis(100);

/// Runs `cp`, `ls`, `cat` or `chmod`.
pub async fn run(client: &Client, printer: &Printer, command: Command) -> Result<i32> {
    match command {
        Command::Cp(mut args) => {
            args.apply_user()?;
            cp(client, printer, args).await
        }
        Command::Ls(mut args) => {
            args.as_user.apply(&mut args.target)?;
            ls(client, printer, args).await
        }
        Command::Cat(mut args) => {
            args.as_user.apply(&mut args.target)?;
            cat(client, args).await
        }
        Command::Chmod(mut args) => {
            args.as_user.apply(&mut args.target)?;
            let RemotePath { target, path } = &args.target;
            client.change_mode(target, path, args.mode).await?;
            Ok(0)
        }
        _ => unreachable!("only file commands are run here"),
    }
}

/// Copies between this machine and a sandbox or volume (see `sandlot cp --help`).
async fn cp(client: &Client, printer: &Printer, args: CpArgs) -> Result<i32> {
    let progress = printer.shows_progress();
    match args.transfer()? {
        Transfer::Up(Local::Standard, remote) => upload_stdin(client, remote, progress).await?,
        Transfer::Up(Local::Path(local), remote) => upload(client, local, remote, progress).await?,
        Transfer::Down(remote, Local::Standard) => to_stdout(client, remote).await?,
        Transfer::Down(remote, Local::Path(local)) => {
            download(client, remote, local, progress).await?;
        }
    }
    Ok(0)
}

/// Lists a directory (all levels with -R), or shows the one entry of a file
/// or symlink.
async fn ls(client: &Client, printer: &Printer, args: LsArgs) -> Result<i32> {
    let RemotePath { target, path } = &args.target;
    let depth = if args.recursive { 0 } else { 1 };
    let entries = match client.list_files(target, path, depth).await {
        Err(Error::File {
            errno: ENOTDIR,
            path_bytes,
            ..
        }) if path_bytes == *path => vec![client.stat_file(target, path, false).await?],
        listed => listed?,
    };
    written(printer.entries(&entries, args.long), b"stdout")?;
    Ok(0)
}

/// Streams a file's bytes to stdout.
async fn cat(client: &Client, args: CatArgs) -> Result<i32> {
    to_stdout(client, &args.target).await?;
    Ok(0)
}

/// Uploads local `local`: a directory as a tree, anything else as one file
/// with its permission bits.
async fn upload(client: &Client, local: &Path, remote: &RemotePath, progress: bool) -> Result<()> {
    let meta = std::fs::metadata(local).map_err(|err| local_error(local_bytes(local), &err))?;
    let path = upload_destination(client, remote, local.file_name()).await?;
    let total = meta.is_file().then_some(meta.len());
    let line = progress.then(|| ProgressLine::start(total));
    let counter = line.as_ref().map(ProgressLine::counter);
    if meta.is_dir() {
        client
            .upload_tree(&remote.target, local, &path, counter)
            .await?;
    } else {
        let options = WriteOptions {
            mode: meta.permissions().mode() & 0o7777,
            ..WriteOptions::default()
        };
        client
            .upload_file(&remote.target, local, &path, options, counter)
            .await?;
    }
    Ok(())
}

/// Where an upload of something called `name` lands: inside `remote` when
/// that ends in `/` or is a directory (a symlink to one is not followed),
/// else at `remote`, which is also where a nameless source (`.`, `/`) goes.
async fn upload_destination(
    client: &Client,
    remote: &RemotePath,
    name: Option<&OsStr>,
) -> Result<Vec<u8>> {
    let Some(name) = name else {
        return Ok(remote.path.clone());
    };
    let inside = remote.path.ends_with(b"/")
        || match client.stat_file(&remote.target, &remote.path, true).await {
            Ok(entry) => entry.kind == EntryKind::Directory,
            Err(Error::File { errno: ENOENT, .. }) => false,
            Err(err) => return Err(err),
        };
    if !inside {
        return Ok(remote.path.clone());
    }
    let mut path = remote.path.clone();
    if !path.ends_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(name.as_bytes());
    Ok(path)
}

/// Writes stdin to `remote` (mode 0644) as it arrives; nothing appears
/// there unless all of it arrived.
async fn upload_stdin(client: &Client, remote: &RemotePath, progress: bool) -> Result<()> {
    let line = progress.then(|| ProgressLine::start(None));
    let counter = line.as_ref().map(ProgressLine::counter);
    let mut writer = client
        .write_file(&remote.target, &remote.path, WriteOptions::default())
        .await?;
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0; STDIN_CHUNK];
    loop {
        let n = stdin
            .read(&mut buf)
            .await
            .map_err(|err| local_error(b"stdin", &err))?;
        if n == 0 {
            break;
        }
        writer.write(&buf[..n]).await?;
        if let Some(counter) = &counter {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
    writer.commit().await?;
    Ok(())
}

/// Downloads `remote`: a directory as a tree, a file (or what a symlink
/// points to) as one file, with the remote file's permission bits.
async fn download(
    client: &Client,
    remote: &RemotePath,
    local: &Path,
    progress: bool,
) -> Result<()> {
    let entry = client.stat_file(&remote.target, &remote.path, true).await?;
    let into = local_destination(local, remote_name(&remote.path))?;
    let total = (entry.kind == EntryKind::File).then_some(entry.size);
    let line = progress.then(|| ProgressLine::start(total));
    let counter = line.as_ref().map(ProgressLine::counter);
    match entry.kind {
        EntryKind::Directory => {
            client
                .download_tree(&remote.target, &remote.path, &into, counter)
                .await?;
        }
        EntryKind::File | EntryKind::Symlink => {
            client
                .download_file(&remote.target, &remote.path, &into, counter)
                .await?;
            // A symlink's own mode says nothing of its target's.
            if entry.kind == EntryKind::File {
                std::fs::set_permissions(
                    &into,
                    std::fs::Permissions::from_mode(local_mode(entry.mode)),
                )
                .map_err(|err| local_error(local_bytes(&into), &err))?;
            }
        }
        EntryKind::Other => {
            return Err(Error::File {
                target: remote.target.to_string(),
                path: String::from_utf8_lossy(&remote.path).into_owned(),
                path_bytes: remote.path.clone(),
                errno: EINVAL,
                message: "a fifo, socket or device is not copied".into(),
            });
        }
    }
    Ok(())
}

/// The last component of a remote path; `None` for a root, `.` or `..`.
fn remote_name(path: &[u8]) -> Option<&[u8]> {
    path.split(|&b| b == b'/')
        .rfind(|part| !part.is_empty())
        .filter(|part| *part != b"." && *part != b"..")
}

/// Where a download called `name` lands: inside `local` when that is a
/// directory or ends in `/` (made if missing), else at `local`, which is
/// also where a nameless source (a root) goes.
fn local_destination(local: &Path, name: Option<&[u8]>) -> Result<PathBuf> {
    let names_a_directory = local_bytes(local).ends_with(b"/");
    if names_a_directory {
        std::fs::create_dir_all(local).map_err(|err| local_error(local_bytes(local), &err))?;
    }
    Ok(match name {
        Some(name) if names_a_directory || local.is_dir() => local.join(OsStr::from_bytes(name)),
        _ => local.to_owned(),
    })
}

/// Streams `remote`'s bytes to stdout; a reader that went away (`| head`)
/// ends the stream quietly.
async fn to_stdout(client: &Client, remote: &RemotePath) -> Result<()> {
    let mut reader = client
        .read_file(&remote.target, &remote.path, 0, None)
        .await?;
    let mut stdout = tokio::io::stdout();
    while let Some(chunk) = reader.next_chunk().await? {
        if !written(stdout.write_all(&chunk).await, b"stdout")? {
            return Ok(());
        }
    }
    written(stdout.flush().await, b"stdout").map(drop)
}

/// Whether a write to `what` went out: `false` if its reader went away (a
/// closed pipe), an error for any other failure.
fn written(outcome: std::io::Result<()>, what: &[u8]) -> Result<bool> {
    match outcome {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(err) => Err(local_error(what, &err)),
    }
}

/// An [`Error::File`] about `path` on this machine.
fn local_error(path: &[u8], err: &std::io::Error) -> Error {
    Error::File {
        target: "this machine".into(),
        path: String::from_utf8_lossy(path).into_owned(),
        path_bytes: path.to_vec(),
        errno: err.raw_os_error().unwrap_or(EINVAL),
        message: err.to_string(),
    }
}

/// A local path as the bytes an [`Error::File`] names.
fn local_bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

/// A transfer's progress on stderr: bytes moved (read from the transfer's
/// counter every [`PROGRESS_POLL`]), the rate, and the total when known.
/// Cleared when dropped.
struct ProgressLine {
    bar: ProgressBar,
    moved: Progress,
    poller: JoinHandle<()>,
}

impl ProgressLine {
    /// Starts showing a transfer of `total` bytes (`None`: unknown).
    fn start(total: Option<u64>) -> Self {
        let (bar, template) = match total {
            Some(total) => (
                ProgressBar::new(total),
                "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec}",
            ),
            None => (ProgressBar::no_length(), "{bytes} {binary_bytes_per_sec}"),
        };
        bar.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let moved: Progress = Arc::new(AtomicU64::new(0));
        let poller = tokio::spawn({
            let (bar, moved) = (bar.clone(), moved.clone());
            async move {
                loop {
                    bar.set_position(moved.load(Ordering::Relaxed));
                    tokio::time::sleep(PROGRESS_POLL).await;
                }
            }
        });
        ProgressLine { bar, moved, poller }
    }

    /// The counter the transfer advances.
    fn counter(&self) -> Progress {
        self.moved.clone()
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.poller.abort();
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_name_is_its_last_real_component() {
        assert_eq!(remote_name(b"/work/out.csv"), Some(&b"out.csv"[..]));
        assert_eq!(remote_name(b"/work/src/"), Some(&b"src"[..]));
        assert_eq!(remote_name(b"rel"), Some(&b"rel"[..]));
        assert_eq!(remote_name(b"/"), None);
        assert_eq!(remote_name(b"/work/."), None);
        assert_eq!(remote_name(b".."), None);
    }
}
