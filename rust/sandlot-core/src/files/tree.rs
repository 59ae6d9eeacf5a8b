//! Files and directory trees between this machine and a sandbox or volume.
//!
//! A tree travels as the agent's records (`pack` down, `unpack` up): one run
//! per tree, however many files, with modes, symlinks and modification times.
//! A download trusts nothing it receives: every name must stay below the
//! target directory, nothing is written through a symlink, and a symlink
//! that would point outside the target is refused with an error, with
//! nothing written outside.

use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::protocol::{self, EntryKind, FileEntry, MAX_CHUNK, Op};
use super::{FileTarget, Progress, RequestBytes, WriteOptions, advance, file_error};
use crate::client::Client;
use crate::error::{Error, Result};

/// What this machine's files are called in errors.
const LOCAL: &str = "this machine";
/// Pieces of an upload queued between the reader of local files and the run.
const QUEUED: usize = 8;

/// An [`Error::File`] about local `path`.
fn local_error(path: &Path, err: &std::io::Error) -> Error {
    file_error(
        LOCAL,
        path.as_os_str().as_bytes().to_vec(),
        err.raw_os_error().unwrap_or(5),
        Some(err.to_string()),
    )
}

/// Modification time as the records carry it.
fn mtime_of(meta: &std::fs::Metadata) -> (i64, u32) {
    match meta.modified().map(|t| t.duration_since(UNIX_EPOCH)) {
        Ok(Ok(since)) => (since.as_secs() as i64, since.subsec_nanos()),
        _ => (0, 0),
    }
}

impl Client {
    /// Writes local file `local` to `path`; its size.
    pub async fn upload_file(
        &self,
        target: &FileTarget,
        local: &Path,
        path: &[u8],
        options: WriteOptions,
        progress: Option<Progress>,
    ) -> Result<u64> {
        let mut file = tokio::fs::File::open(local)
            .await
            .map_err(|err| local_error(local, &err))?;
        let mut writer = self.write_file(target, path, options).await?;
        let mut buf = vec![0; MAX_CHUNK];
        loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|err| local_error(local, &err))?;
            if n == 0 {
                break;
            }
            writer.write(&buf[..n]).await?;
            advance(progress.as_ref(), n as u64);
        }
        writer.commit().await
    }

    /// Reads `path` into local file `local` (written under a temporary name
    /// and renamed into place); its size.
    pub async fn download_file(
        &self,
        target: &FileTarget,
        path: &[u8],
        local: &Path,
        progress: Option<Progress>,
    ) -> Result<u64> {
        let mut reader = self.read_file(target, path, 0, None).await?;
        let parent = local
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut temporary = parent.as_os_str().to_owned();
        temporary.push(format!(
            "/.{}.sandlot-{}",
            local
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            crate::validate::generated_name("")
        ));
        let temporary = RemovedOnDrop(Some(PathBuf::from(temporary)));
        let written = async {
            // Made at once (not on a blocking thread the caller's cancel
            // cannot stop), so that the guard removes what was made.
            let mut file = std::fs::File::create(temporary.path())
                .map(tokio::fs::File::from_std)
                .map_err(|err| local_error(temporary.path(), &err))?;
            let mut size = 0u64;
            while let Some(chunk) = reader.next_chunk().await? {
                file.write_all(&chunk)
                    .await
                    .map_err(|err| local_error(local, &err))?;
                size += chunk.len() as u64;
                advance(progress.as_ref(), chunk.len() as u64);
            }
            file.flush().await.map_err(|err| local_error(local, &err))?;
            tokio::fs::rename(temporary.path(), local)
                .await
                .map_err(|err| local_error(local, &err))?;
            Ok::<_, Error>(size)
        }
        .await;
        if written.is_ok() {
            temporary.keep();
        }
        written
    }

    /// Uploads local directory `local` as directory `path` (made with its
    /// parents; what is there already stays unless replaced): files,
    /// directories and symlinks, with their modes and modification times.
    /// Bytes of file content sent.
    pub async fn upload_tree(
        &self,
        target: &FileTarget,
        local: &Path,
        path: &[u8],
        progress: Option<Progress>,
    ) -> Result<u64> {
        let meta = std::fs::metadata(local).map_err(|err| local_error(local, &err))?;
        if !meta.is_dir() {
            return Err(local_error(
                local,
                &std::io::Error::from_raw_os_error(20), // ENOTDIR
            ));
        }
        let remote = target.remote_path("remote_dir", path)?;
        let request = RequestBytes::new(Op::Unpack, &remote).u32(0);
        let mut run = self
            .start_file_run(target, path, remote, request, true)
            .await?;
        let (sender, mut pieces) = mpsc::channel::<Vec<u8>>(QUEUED);
        let root = local.to_owned();
        let walker = tokio::task::spawn_blocking(move || walk(&root, &sender));
        while let Some(piece) = pieces.recv().await {
            run.send(&piece).await?;
            advance(progress.as_ref(), piece.len() as u64);
        }
        let content = walker.await.map_err(|err| Error::Exec {
            name: target.to_string(),
            message: format!("reading the local tree failed: {err}"),
        })??;
        run.send(&protocol::end_record()).await?;
        let moved = run.finish().await?;
        if moved != content {
            return Err(Error::Exec {
                name: target.to_string(),
                message: format!("the agent wrote {moved} of {content} bytes"),
            });
        }
        Ok(content)
    }

    /// Downloads directory `path` into local directory `local` (made if
    /// missing). Bytes of file content received. Fifos, sockets and devices
    /// are skipped; an entry that would land or point outside `local` stops
    /// the download with an [`Error::File`] of errno 1.
    pub async fn download_tree(
        &self,
        target: &FileTarget,
        path: &[u8],
        local: &Path,
        progress: Option<Progress>,
    ) -> Result<u64> {
        let remote = target.remote_path("remote_dir", path)?;
        let request = RequestBytes::new(Op::Pack, &remote);
        let mut run = self
            .start_file_run(target, path, remote, request, false)
            .await?;
        if let Some(mut stdin) = run.stdin.take() {
            let _ = stdin.shutdown().await;
        }
        let mut stdout = run.stdout.take().expect("a pack's stdout is open");
        let name = target.to_string();
        let unpacked = async {
            tokio::fs::create_dir_all(local)
                .await
                .map_err(|err| local_error(local, &err))?;
            let mut writer = LocalTree::new(local, target);
            while let Some(entry) = protocol::read_record(&mut stdout, &name).await? {
                writer.add(&entry, &mut stdout, progress.as_ref()).await?;
            }
            writer.finish()?;
            Ok::<_, Error>(writer.content)
        }
        .await;
        drop(stdout);
        let content = match unpacked {
            Ok(content) => content,
            // A listing cut short says why in its status.
            Err(err @ Error::Exec { .. }) => {
                run.finish().await?;
                return Err(err);
            }
            Err(err) => return Err(err),
        };
        let moved = run.finish().await?;
        if moved != content {
            return Err(Error::Exec {
                name,
                message: format!("the tree's content was cut short: {content} of {moved} bytes"),
            });
        }
        Ok(content)
    }
}

/// The names in local directory `dir`, sorted.
fn sorted_names(dir: &Path) -> Result<std::vec::IntoIter<std::ffi::OsString>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|err| local_error(dir, &err))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(|err| local_error(dir, &err))?;
    names.sort();
    Ok(names.into_iter())
}

/// Reads local tree `root` into records and content pieces on `sender`,
/// depth first (a directory's contents right after its record, as `unpack`
/// expects); the bytes of file content sent.
fn walk(root: &Path, sender: &mpsc::Sender<Vec<u8>>) -> Result<u64> {
    let mut content = 0u64;
    let mut stack = vec![(PathBuf::new(), sorted_names(root)?)];
    let send = |piece: Vec<u8>| sender.blocking_send(piece).is_ok();
    while let Some((dir, names)) = stack.last_mut() {
        let Some(name) = names.next() else {
            stack.pop();
            continue;
        };
        let relative = dir.join(&name);
        let full = root.join(&relative);
        let meta = std::fs::symlink_metadata(&full).map_err(|err| local_error(&full, &err))?;
        let kind = if meta.file_type().is_symlink() {
            EntryKind::Symlink
        } else if meta.is_dir() {
            EntryKind::Directory
        } else if meta.is_file() {
            EntryKind::File
        } else {
            return Err(local_error(
                &full,
                &std::io::Error::other("a fifo, socket or device cannot be uploaded"),
            ));
        };
        let target = (kind == EntryKind::Symlink)
            .then(|| std::fs::read_link(&full).map(|t| t.into_os_string().into_vec()))
            .transpose()
            .map_err(|err| local_error(&full, &err))?;
        let entry = FileEntry {
            path: relative.as_os_str().as_bytes().to_vec(),
            kind,
            mode: meta.permissions().mode() & 0o7777,
            size: if kind == EntryKind::File {
                meta.len()
            } else {
                0
            },
            mtime: mtime_of(&meta),
            target,
        };
        if !send(protocol::record(&entry)) {
            return Ok(content);
        }
        match kind {
            EntryKind::File => {
                let mut file =
                    std::fs::File::open(&full).map_err(|err| local_error(&full, &err))?;
                let mut left = entry.size;
                while left > 0 {
                    let mut piece = vec![0; left.min(MAX_CHUNK as u64) as usize];
                    let mut filled = 0;
                    while filled < piece.len() {
                        match file.read(&mut piece[filled..]) {
                            Ok(0) => break, // It shrank: the rest stays zeros.
                            Ok(n) => filled += n,
                            Err(err) => return Err(local_error(&full, &err)),
                        }
                    }
                    left -= piece.len() as u64;
                    content += piece.len() as u64;
                    if !send(piece) {
                        return Ok(content);
                    }
                }
            }
            EntryKind::Directory => {
                let names = sorted_names(&full)?;
                stack.push((relative, names));
            }
            _ => {}
        }
    }
    Ok(content)
}

/// A download's writer of local entries below its root, which it never leaves.
struct LocalTree<'a> {
    root: PathBuf,
    target: &'a FileTarget,
    /// Directories and their modes, applied last (a read-only one can be filled).
    directories: Vec<(PathBuf, u32)>,
    /// The directories above, and the links made: each once.
    seen: std::collections::HashSet<PathBuf>,
    links: Vec<PathBuf>,
    content: u64,
}

impl<'a> LocalTree<'a> {
    fn new(root: &Path, target: &'a FileTarget) -> Self {
        LocalTree {
            root: root.to_owned(),
            target,
            directories: Vec::new(),
            seen: std::collections::HashSet::new(),
            links: Vec::new(),
            content: 0,
        }
    }

    /// An entry refused for `why`.
    fn refused(&self, entry: &FileEntry, why: &str) -> Error {
        file_error(
            &self.target.to_string(),
            entry.path.clone(),
            1,
            Some(format!("refused to download: {why}")),
        )
    }

    /// Writes `entry` (and a file's content, read from `from`).
    async fn add(
        &mut self,
        entry: &FileEntry,
        from: &mut (impl tokio::io::AsyncRead + Unpin),
        progress: Option<&Progress>,
    ) -> Result<()> {
        let parts: Vec<&[u8]> = entry.path.split(|&b| b == b'/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == b"." || *p == b"..")
        {
            return Err(self.refused(entry, "its name leaves the target directory"));
        }
        // Every parent below the root must be a real directory, not a link.
        let mut at = self.root.clone();
        for part in &parts[..parts.len() - 1] {
            at.push(std::ffi::OsStr::from_bytes(part));
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.is_dir() && !meta.file_type().is_symlink() => {}
                Ok(_) => return Err(self.refused(entry, "a parent is not a directory")),
                Err(_) => {
                    std::fs::create_dir(&at).map_err(|err| local_error(&at, &err))?;
                }
            }
        }
        let path = self.root.join(std::ffi::OsStr::from_bytes(&entry.path));
        let existing = std::fs::symlink_metadata(&path).ok();
        let is_dir = existing
            .as_ref()
            .is_some_and(|m| m.is_dir() && !m.file_type().is_symlink());
        match entry.kind {
            EntryKind::Directory => {
                if !is_dir {
                    if existing.is_some() {
                        std::fs::remove_file(&path).map_err(|err| local_error(&path, &err))?;
                    }
                    std::fs::create_dir(&path).map_err(|err| local_error(&path, &err))?;
                }
                if self.seen.insert(path.clone()) {
                    self.directories.push((path, local_mode(entry.mode)));
                }
            }
            EntryKind::File => {
                if is_dir {
                    return Err(local_error(&path, &std::io::Error::from_raw_os_error(21)));
                }
                if existing.is_some() {
                    // Never write through what is there (it may be a link).
                    std::fs::remove_file(&path).map_err(|err| local_error(&path, &err))?;
                }
                let mut file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .await
                    .map_err(|err| local_error(&path, &err))?;
                let mut left = entry.size;
                let mut buf = vec![0; MAX_CHUNK.min(entry.size as usize)];
                while left > 0 {
                    let want = left.min(buf.len() as u64) as usize;
                    let n = from.read(&mut buf[..want]).await.unwrap_or(0);
                    if n == 0 {
                        return Err(Error::Exec {
                            name: self.target.to_string(),
                            message: "the tree's content was cut short".into(),
                        });
                    }
                    file.write_all(&buf[..n])
                        .await
                        .map_err(|err| local_error(&path, &err))?;
                    left -= n as u64;
                    self.content += n as u64;
                    advance(progress, n as u64);
                }
                file.flush().await.map_err(|err| local_error(&path, &err))?;
                let file = file.into_std().await;
                let _ =
                    file.set_permissions(std::fs::Permissions::from_mode(local_mode(entry.mode)));
                let modified =
                    UNIX_EPOCH + Duration::new(entry.mtime.0.max(0) as u64, entry.mtime.1);
                let _ = file.set_modified(modified);
            }
            EntryKind::Symlink => {
                let link = entry.target.as_deref().unwrap_or_default();
                if !stays_inside(parts.len() - 1, link) {
                    return Err(self.refused(entry, "its symlink points outside the target"));
                }
                if is_dir {
                    return Err(local_error(&path, &std::io::Error::from_raw_os_error(21)));
                }
                if existing.is_some() {
                    std::fs::remove_file(&path).map_err(|err| local_error(&path, &err))?;
                }
                symlink(std::ffi::OsStr::from_bytes(link), &path)
                    .map_err(|err| local_error(&path, &err))?;
                if self.seen.insert(path.clone()) {
                    self.links.push(path);
                }
            }
            EntryKind::Other => {}
        }
        Ok(())
    }

    /// Checks every link made against the tree as it now stands (a link's
    /// text may climb through another link), removing one that leads out of
    /// the root; then applies the directories' modes, innermost first.
    fn finish(&mut self) -> Result<()> {
        for link in std::mem::take(&mut self.links) {
            if leaves_root(&self.root, &link) {
                let _ = std::fs::remove_file(&link);
                let name = link.strip_prefix(&self.root).unwrap_or(&link);
                return Err(file_error(
                    &self.target.to_string(),
                    name.as_os_str().as_bytes().to_vec(),
                    1,
                    Some("refused to download: its symlink points outside the target".into()),
                ));
            }
        }
        for (path, mode) in self.directories.drain(..).rev() {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
        }
        Ok(())
    }
}

/// A mode the sandbox sent, as it is applied here: permission bits only
/// (no setuid, setgid or sticky bit from a hostile sandbox).
pub fn local_mode(mode: u32) -> u32 {
    mode & 0o777
}

/// Whether symlink `link` below `root` resolves, following every link on
/// the way as the kernel would, to somewhere outside `root` (or cannot be
/// followed within 40 links).
fn leaves_root(root: &Path, link: &Path) -> bool {
    use std::path::Component;
    let Ok(below) = link.strip_prefix(root) else {
        return true;
    };
    // Where resolution stands, as names below the root.
    let mut at: Vec<std::ffi::OsString> = below
        .parent()
        .into_iter()
        .flat_map(Path::components)
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut pending = std::collections::VecDeque::new();
    let mut hops = 0;
    let mut follow = |of: &Path, pending: &mut std::collections::VecDeque<_>| -> bool {
        hops += 1;
        match std::fs::read_link(of) {
            Ok(target) if hops <= 40 && !target.is_absolute() => {
                for part in target.components().rev() {
                    pending.push_front(part.as_os_str().to_owned());
                }
                true
            }
            _ => false,
        }
    };
    if !follow(link, &mut pending) {
        return true;
    }
    while let Some(part) = pending.pop_front() {
        match Path::new(&part).components().next() {
            None | Some(Component::CurDir) => {}
            Some(Component::ParentDir) => {
                if at.pop().is_none() {
                    return true;
                }
            }
            Some(_) => {
                let here: PathBuf = root.join(at.iter().collect::<PathBuf>()).join(&part);
                let is_link = std::fs::symlink_metadata(&here)
                    .is_ok_and(|meta| meta.file_type().is_symlink());
                if !is_link {
                    at.push(part);
                } else if !follow(&here, &mut pending) {
                    return true;
                }
            }
        }
    }
    false
}

/// Whether symlink `target`, in a directory `depth` levels below the root,
/// resolves (by its text) to somewhere below the root.
fn stays_inside(depth: usize, target: &[u8]) -> bool {
    if target.is_empty() || target.starts_with(b"/") {
        return false;
    }
    let mut level = depth as i64;
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                level -= 1;
                if level < 0 {
                    return false;
                }
            }
            _ => level += 1,
        }
    }
    true
}

/// A local temporary file, removed when dropped: by an error, and by a
/// caller that gives the download up (its future dropped midway).
struct RemovedOnDrop(Option<PathBuf>);

impl RemovedOnDrop {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("kept only at the end")
    }

    /// Leaves the file (it was renamed into place).
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_that_leave_the_root_are_caught_by_their_text() {
        assert!(stays_inside(0, b"a"));
        assert!(stays_inside(1, b"../b"));
        assert!(stays_inside(0, b"a/../b"));
        assert!(!stays_inside(0, b"../x"));
        assert!(!stays_inside(1, b"../../x"));
        assert!(!stays_inside(2, b"a/../../../../x"));
        assert!(!stays_inside(3, b"/etc/passwd"));
        assert!(!stays_inside(0, b""));
    }

    #[tokio::test]
    async fn a_hostile_tree_writes_nothing_outside_its_root() {
        let base = std::env::temp_dir().join(crate::validate::generated_name("sandlot-tree-"));
        let root = base.join("root");
        std::fs::create_dir_all(&root).unwrap();
        let target = FileTarget::Sandbox("s".into());
        let mut tree = LocalTree::new(&root, &target);
        let entry = |path: &[u8], kind, target: Option<&[u8]>| FileEntry {
            path: path.to_vec(),
            kind,
            mode: 0o755,
            size: 0,
            mtime: (0, 0),
            target: target.map(<[u8]>::to_vec),
        };
        let mut nothing: &[u8] = &[];
        for (bad, why) in [
            (entry(b"../x", EntryKind::File, None), "leaves"),
            (entry(b"a/../../x", EntryKind::File, None), "leaves"),
            (entry(b"/abs", EntryKind::File, None), "leaves"),
            (
                entry(b"l", EntryKind::Symlink, Some(b"../outside")),
                "outside",
            ),
            (entry(b"m", EntryKind::Symlink, Some(b"/etc")), "outside"),
        ] {
            let err = tree.add(&bad, &mut nothing, None).await.unwrap_err();
            assert!(
                matches!(&err, Error::File { errno: 1, message, .. } if message.contains(why)),
                "{err:?}"
            );
        }
        // A link inside is fine; a file below it is not written through it.
        tree.add(&entry(b"d", EntryKind::Directory, None), &mut nothing, None)
            .await
            .unwrap();
        tree.add(
            &entry(b"in", EntryKind::Symlink, Some(b"d")),
            &mut nothing,
            None,
        )
        .await
        .unwrap();
        let err = tree
            .add(&entry(b"in/f", EntryKind::File, None), &mut nothing, None)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::File { errno: 1, .. }), "{err:?}");
        // Each link's text stays inside, but the second climbs through the first.
        tree.add(
            &entry(b"b", EntryKind::Symlink, Some(b".")),
            &mut nothing,
            None,
        )
        .await
        .unwrap();
        tree.add(
            &entry(b"x", EntryKind::Symlink, Some(b"b/..")),
            &mut nothing,
            None,
        )
        .await
        .unwrap();
        let err = tree.finish().unwrap_err();
        assert!(
            matches!(&err, Error::File { errno: 1, path, .. } if path == "x"),
            "{err:?}"
        );
        assert!(
            std::fs::symlink_metadata(root.join("x")).is_err(),
            "the link is removed"
        );
        assert!(!leaves_root(&root, &root.join("in")));
        assert_eq!(std::fs::read_dir(&base).unwrap().count(), 1);
        assert_eq!(std::fs::read_dir(root.join("d")).unwrap().count(), 0);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
