//! The files of a sandbox or a volume (`AsyncFiles` / `Files`), a file being
//! written (`AsyncFileUpload` / `FileUpload`) and a file being read
//! (`FileChunks`). Every operation is one core future, declared once on the
//! shared base class; see [`crate::twins`].
//!
//! A write from a file object or an iterable is driven from Python
//! (`sandlot._files`, on the caller's side), chunk by chunk, into an upload:
//! a future never touches Python.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyAny, PyBytes, PyTuple};
use sandlot_core::{Client, FileReader, FileTarget, FileWriter, WriteOptions};

use crate::bridge::{Failure, Mode, NONE, Outcome};
use crate::inputs::{self, Content};
use crate::process::Bytes;
use crate::results::FileInfo;
use crate::twins::{InMode, class_name, twins};

/// Bytes an upload gathers from small writes before it sends them.
const FLUSH_AT: usize = 256 * 1024;

/// Drops `value` inside the runtime's context (a connection's teardown may
/// start work on the runtime).
fn drop_in_runtime<T>(value: T) {
    let _context = pyo3_async_runtimes::tokio::get_runtime().enter();
    drop(value);
}

/// What `AsyncFiles` and `Files` share: the files of one sandbox or volume.
/// Remote paths are `str` (UTF-8; lone surrogates stand for the bytes they
/// escape, as with `os.fsencode`), `bytes` or `os.PathLike`; a volume's are
/// relative to its root ("/" is the root, ".." is refused).
#[pyclass(module = "sandlot._native", name = "_Files", subclass, frozen)]
#[derive(Debug)]
pub struct FilesBase {
    mode: Mode,
    client: Client,
    target: FileTarget,
}

impl FilesBase {
    pub fn new(mode: Mode, client: Client, target: FileTarget) -> Self {
        FilesBase {
            mode,
            client,
            target,
        }
    }

    fn parts(&self) -> (Client, FileTarget) {
        (self.client.clone(), self.target.clone())
    }
}

twins!(FilesBase => AsyncFiles, SyncFiles);

/// The files of a sandbox or volume of an `AsyncClient`.
#[pyclass(module = "sandlot", extends = FilesBase, frozen)]
#[derive(Debug)]
pub struct AsyncFiles;

/// The files of a sandbox or volume of a `Client`.
#[pyclass(module = "sandlot", name = "Files", extends = FilesBase, frozen)]
#[derive(Debug)]
pub struct SyncFiles;

/// A file's content decoded as `read_text` asks, where the GIL is held.
struct Decoded {
    bytes: Vec<u8>,
    encoding: String,
    errors: String,
}

impl<'py> IntoPyObject<'py> for Decoded {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PyBytes::new(py, &self.bytes)
            .call_method1(pyo3::intern!(py, "decode"), (self.encoding, self.errors))
    }
}

/// How many bytes `read` and `read_text` take by default (256 MiB).
const DEFAULT_READ_MAX: u64 = 256 * 1024 * 1024;

#[pymethods]
impl FilesBase {
    /// The whole content of file `path`. A file of more than `max_size`
    /// bytes (`None`: no bound) raises `SandboxFileError` (errno 27, EFBIG)
    /// after at most `max_size + 1` bytes were read: a sandbox can make a
    /// file as large as it likes.
    #[pyo3(signature = (path, *, max_size=Some(DEFAULT_READ_MAX)))]
    #[pyo3(text_signature = "($self, path, *, max_size=268435456)")]
    fn read<'py>(
        &self,
        py: Python<'py>,
        path: &Bound<'py, PyAny>,
        max_size: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let path = inputs::remote_path("path", path);
        let (client, target) = self.parts();
        self.mode.run(py, async move {
            let content = client.read_whole_file(&target, &path?, max_size).await?;
            Ok(Bytes(content))
        })
    }

    /// The content of file `path` decoded with `encoding` and `errors` (as
    /// `bytes.decode`); `max_size` as for `read`.
    #[pyo3(signature = (path, encoding="utf-8", errors="strict", *, max_size=Some(DEFAULT_READ_MAX)))]
    #[pyo3(
        text_signature = "($self, path, encoding='utf-8', errors='strict', *, max_size=268435456)"
    )]
    fn read_text<'py>(
        &self,
        py: Python<'py>,
        path: &Bound<'py, PyAny>,
        encoding: &str,
        errors: &str,
        max_size: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let path = inputs::remote_path("path", path);
        let codec = inputs::codec(py, encoding, errors);
        let (encoding, errors) = (encoding.to_owned(), errors.to_owned());
        let (client, target) = self.parts();
        self.mode.run(py, async move {
            codec?;
            Ok(Decoded {
                bytes: client.read_whole_file(&target, &path?, max_size).await?,
                encoding,
                errors,
            })
        })
    }

    /// Writes file `path` and returns its size. `data` is bytes-like, a
    /// `str` (UTF-8), an `os.PathLike` (a local file, read natively), a
    /// binary file object (read in 1 MiB chunks on the caller's thread: on
    /// `AsyncFiles`, the event loop's), an iterable of bytes or, on
    /// `AsyncFiles`, an async iterable. The file is made with permission bits
    /// `mode`, missing parents too if `parents`; with `exclusive`, an
    /// existing `path` raises `FileExistsError`. It appears under its name
    /// only once all of `data` arrived: an error (also one raised while
    /// iterating `data`, which is re-raised) leaves nothing there.
    #[pyo3(signature = (path, data, *, mode=0o644, parents=true, exclusive=false))]
    fn write<'py>(
        slf: &Bound<'py, Self>,
        path: &Bound<'py, PyAny>,
        data: &Bound<'py, PyAny>,
        mode: i64,
        parents: bool,
        exclusive: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (py, this) = (slf.py(), slf.get());
        let read = inputs::remote_path("path", path).and_then(|path| {
            let content = inputs::content("data", data, this.mode == Mode::Async)?;
            Ok((path, inputs::mode(mode)?, content))
        });
        let (path, mode, content) = match read {
            Ok(read) => read,
            Err(failure) => return this.mode.ready(py, Err::<Option<()>, _>(failure)),
        };
        let options = WriteOptions {
            mode,
            parents,
            exclusive,
        };
        let (client, target) = this.parts();
        match content {
            Content::Bytes(bytes) => this.mode.run(py, async move {
                let mut writer = client.write_file(&target, &path, options).await?;
                writer.write(&bytes).await?;
                Ok(writer.commit().await?)
            }),
            Content::Local(local) => this.mode.run(py, async move {
                Ok(client
                    .upload_file(&target, &local, &path, options, None)
                    .await?)
            }),
            Content::Chunks => {
                let upload = UploadBase::lazy(
                    this.mode,
                    client,
                    target,
                    Ok(path),
                    Ok(mode),
                    parents,
                    exclusive,
                );
                let upload = InMode(this.mode, upload);
                let driver = match this.mode {
                    Mode::Async => pyo3::intern!(py, "write_async"),
                    Mode::Blocking => pyo3::intern!(py, "write_sync"),
                };
                py.import(pyo3::intern!(py, "sandlot._files"))?
                    .getattr(driver)?
                    .call1((upload, data))
            }
        }
    }

    /// An upload into file `path` (see `AsyncFileUpload`), with `mode`,
    /// `parents` and `exclusive` as `write` has them. The write starts on
    /// entering its `with` block (or awaiting it, on `AsyncFiles`), else
    /// when its first data is sent.
    #[pyo3(signature = (path, *, mode=0o644, parents=true, exclusive=false))]
    fn open_write(
        &self,
        path: &Bound<'_, PyAny>,
        mode: i64,
        parents: bool,
        exclusive: bool,
    ) -> InMode<UploadBase> {
        let path = inputs::remote_path("path", path);
        let mode = inputs::mode(mode);
        let (client, target) = self.parts();
        InMode(
            self.mode,
            UploadBase::lazy(self.mode, client, target, path, mode, parents, exclusive),
        )
    }

    /// The content of file `path` in chunks (see `FileChunks`): from byte
    /// `offset`, `length` bytes at most (`None`: to the end). The read starts
    /// with the first chunk asked for.
    #[pyo3(signature = (path, *, offset=0, length=None))]
    fn open_read(&self, path: &Bound<'_, PyAny>, offset: u64, length: Option<u64>) -> FileChunks {
        let path = inputs::remote_path("path", path);
        let (client, target) = self.parts();
        let start = async move {
            Ok::<_, Failure>(client.read_file(&target, &path?, offset, length).await?)
        };
        FileChunks::new(start.boxed())
    }

    /// The entries of directory `path` (a `FileInfo` each, its path relative
    /// to `path`); with `recursive`, everything below it, each directory
    /// before its contents. Symlinks are listed, not followed.
    #[pyo3(signature = (path=None, *, recursive=false))]
    #[pyo3(text_signature = "($self, path='.', *, recursive=False)")]
    fn list<'py>(
        &self,
        py: Python<'py>,
        path: Option<&Bound<'py, PyAny>>,
        recursive: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let path = match path {
            Some(path) => inputs::remote_path("path", path),
            None => Ok(b".".to_vec()),
        };
        let depth = if recursive { 0 } else { 1 };
        let (client, target) = self.parts();
        self.mode.run(py, async move {
            let entries = client.list_files(&target, &path?, depth).await?;
            Ok(entries.into_iter().map(FileInfo::from).collect::<Vec<_>>())
        })
    }

    /// What `path` is, as a `FileInfo`: a symlink itself, or with
    /// `follow_symlinks` what it points to.
    #[pyo3(signature = (path, *, follow_symlinks=false))]
    fn stat<'py>(
        &self,
        py: Python<'py>,
        path: &Bound<'py, PyAny>,
        follow_symlinks: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let path = inputs::remote_path("path", path);
        let (client, target) = self.parts();
        self.mode.run(py, async move {
            let entry = client.stat_file(&target, &path?, follow_symlinks).await?;
            Ok(FileInfo::from(entry))
        })
    }

    /// Whether `path` exists (a dangling symlink does).
    fn exists<'py>(
        &self,
        py: Python<'py>,
        path: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let path = inputs::remote_path("path", path);
        let (client, target) = self.parts();
        self.mode.run(
            py,
            async move { Ok(client.file_exists(&target, &path?).await?) },
        )
    }

    /// Makes directory `path` with permission bits `mode`; with `parents`,
    /// missing parents too, and one that exists already is fine.
    #[pyo3(signature = (path, *, mode=0o755, parents=false))]
    fn mkdir<'py>(
        &self,
        py: Python<'py>,
        path: &Bound<'py, PyAny>,
        mode: i64,
        parents: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let path = inputs::remote_path("path", path);
        let mode = inputs::mode(mode);
        let (client, target) = self.parts();
        self.mode.run(py, async move {
            client.make_dir(&target, &path?, mode?, parents).await?;
            Ok(NONE)
        })
    }

    /// Sets the permission bits of `path` to `mode` (e.g. 0o755); a symlink
    /// there is refused (`SandboxFileError`, errno 40), never followed.
    fn chmod<'py>(
        &self,
        py: Python<'py>,
        path: &Bound<'py, PyAny>,
        mode: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let path = inputs::remote_path("path", path);
        let mode = inputs::mode(mode);
        let (client, target) = self.parts();
        self.mode.run(py, async move {
            client.change_mode(&target, &path?, mode?).await?;
            Ok(NONE)
        })
    }

    /// Removes `path`: a file or symlink, an empty directory, or with
    /// `recursive` a directory and everything below it (symlinks not
    /// followed).
    #[pyo3(signature = (path, *, recursive=false))]
    fn remove<'py>(
        &self,
        py: Python<'py>,
        path: &Bound<'py, PyAny>,
        recursive: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let path = inputs::remote_path("path", path);
        let (client, target) = self.parts();
        self.mode.run(py, async move {
            client.remove_file(&target, &path?, recursive).await?;
            Ok(NONE)
        })
    }

    /// Renames `src` to `dst`, replacing a file at `dst` unless not
    /// `overwrite` (then `FileExistsError`).
    #[pyo3(signature = (src, dst, *, overwrite=true))]
    fn rename<'py>(
        &self,
        py: Python<'py>,
        src: &Bound<'py, PyAny>,
        dst: &Bound<'py, PyAny>,
        overwrite: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let src = inputs::remote_path("src", src);
        let dst = inputs::remote_path("dst", dst);
        let (client, target) = self.parts();
        self.mode.run(py, async move {
            client
                .rename_file(&target, &src?, &dst?, !overwrite)
                .await?;
            Ok(NONE)
        })
    }

    /// Copies local directory `local_dir` into directory `remote_dir` (made
    /// with its parents; what is there already stays unless replaced):
    /// files, directories and symlinks, with their modes and modification
    /// times. Returns the bytes of file content sent.
    fn upload<'py>(
        &self,
        py: Python<'py>,
        local_dir: &Bound<'py, PyAny>,
        remote_dir: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let local = inputs::local_path("local_dir", local_dir);
        let remote = inputs::remote_path("remote_dir", remote_dir);
        let (client, target) = self.parts();
        self.mode.run(py, async move {
            let (local, remote) = (local?, remote?);
            Ok(client.upload_tree(&target, &local, &remote, None).await?)
        })
    }

    /// Copies directory `remote_dir` into local directory `local_dir` (made
    /// if missing). Returns the bytes of file content received. Fifos,
    /// sockets and devices are skipped; an entry that would land or point
    /// outside `local_dir` stops it with `PermissionError` (errno 1).
    fn download<'py>(
        &self,
        py: Python<'py>,
        remote_dir: &Bound<'py, PyAny>,
        local_dir: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let remote = inputs::remote_path("remote_dir", remote_dir);
        let local = inputs::local_path("local_dir", local_dir);
        let (client, target) = self.parts();
        self.mode.run(py, async move {
            let (remote, local) = (remote?, local?);
            Ok(client.download_tree(&target, &remote, &local, None).await?)
        })
    }

    /// Copies file `path` to local file `local_path` (replaced if it
    /// exists) and returns its size. The content goes to a temporary file
    /// beside it, renamed into place once all of it arrived: an error or a
    /// cancel leaves neither a partial file nor the temporary one.
    fn download_file<'py>(
        &self,
        py: Python<'py>,
        path: &Bound<'py, PyAny>,
        local_path: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let remote = inputs::remote_path("path", path);
        let local = inputs::local_path("local_path", local_path);
        let (client, target) = self.parts();
        self.mode.run(py, async move {
            let (remote, local) = (remote?, local?);
            Ok(client.download_file(&target, &remote, &local, None).await?)
        })
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        match &slf.get().target {
            FileTarget::Sandbox(name) => format!("{}(sandbox='{name}')", class_name(slf)),
            FileTarget::Volume {
                name,
                run_as_user: None,
            } => format!("{}(volume='{name}')", class_name(slf)),
            FileTarget::Volume {
                name,
                run_as_user: Some(uid),
            } => format!("{}(volume='{name}', run_as_user={uid})", class_name(slf)),
        }
    }
}

/// Why an upload takes no more data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    Committed,
    Aborted,
    Failed,
}

/// Where an upload's write is.
enum Writing {
    /// Not started: the future that starts it.
    NotStarted(BoxFuture<'static, Outcome<FileWriter>>),
    Open(Box<FileWriter>),
    /// Committed, aborted, failed, or dropped by a call that was cancelled.
    Done,
}

/// An upload, shared by its Python object and the calls in flight.
struct Upload {
    writing: tokio::sync::Mutex<Writing>,
    /// Bytes written and not sent yet, in the order written: whichever call
    /// holds the writer next sends them all.
    pending: Mutex<Vec<u8>>,
    /// Bytes written so far (sent or pending).
    taken: AtomicU64,
    closed: Mutex<Option<Closed>>,
    /// Set by `abort()`: a call holding the writer drops it.
    aborted: tokio::sync::watch::Sender<bool>,
}

impl Upload {
    fn closed(&self) -> Option<Closed> {
        *self.closed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records why it closed, unless it closed already.
    fn close(&self, why: Closed) {
        self.closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `ValueError` of a call on a closed upload.
    fn closed_failure(&self) -> Failure {
        let message = match self.closed() {
            Some(Closed::Committed) => "the upload is committed already",
            Some(Closed::Aborted) => "the upload was aborted: nothing was written",
            Some(Closed::Failed) => {
                "the upload failed (an earlier call raised why): nothing was written"
            }
            None => "a cancelled call broke off the upload: nothing was written",
        };
        Failure::Python(PyValueError::new_err(message))
    }

    /// Takes `data` in; true when enough is pending to send.
    fn take(&self, data: Vec<u8>) -> Outcome<bool> {
        if self.closed().is_some() {
            return Err(self.closed_failure());
        }
        self.taken.fetch_add(data.len() as u64, Ordering::Relaxed);
        let mut pending = self.pending();
        if pending.is_empty() {
            *pending = data;
        } else {
            pending.extend_from_slice(&data);
        }
        Ok(pending.len() >= FLUSH_AT)
    }

    /// Resolves once `abort()` was called.
    async fn aborted(&self) {
        let mut aborted = self.aborted.subscribe();
        let _ = aborted.wait_for(|aborted| *aborted).await;
    }

    /// Starts the write if it has not started, sends what is pending, and
    /// with `commit` puts the file in place (its size; else 0). A failure
    /// closes the upload and drops the write, as does `abort()` meanwhile.
    async fn send(self: Arc<Self>, commit: bool) -> Outcome<u64> {
        let mut writing = self.writing.lock().await;
        // Left `Done` if this call is cancelled: the write is then dropped.
        let state = std::mem::replace(&mut *writing, Writing::Done);
        let outcome = tokio::select! {
            biased;
            () = self.aborted() => Err(self.closed_failure()),
            outcome = self.clone().advance(state, commit) => outcome,
        };
        match outcome {
            Ok((Some(writer), _)) => {
                *writing = Writing::Open(Box::new(writer));
                Ok(0)
            }
            Ok((None, size)) => {
                self.close(Closed::Committed);
                Ok(size)
            }
            Err(failure) => {
                self.close(Closed::Failed);
                Err(failure)
            }
        }
    }

    /// The work of [`Upload::send`] from `state`: the writer to keep, or
    /// none and the size once committed.
    async fn advance(
        self: Arc<Self>,
        state: Writing,
        commit: bool,
    ) -> Outcome<(Option<FileWriter>, u64)> {
        let mut writer = match state {
            Writing::NotStarted(start) => start.await?,
            Writing::Open(writer) => *writer,
            Writing::Done => return Err(self.closed_failure()),
        };
        let data = std::mem::take(&mut *self.pending());
        if !data.is_empty() {
            writer.write(&data).await?;
        }
        if commit {
            return Ok((None, writer.commit().await?));
        }
        Ok((Some(writer), 0))
    }

    /// Drops the write unless it was committed; a call in flight drops it
    /// as soon as it notices.
    fn abort(&self) {
        if self.closed() == Some(Closed::Committed) {
            return;
        }
        self.close(Closed::Aborted);
        self.pending().clear();
        self.aborted.send_replace(true);
        if let Ok(mut writing) = self.writing.try_lock() {
            drop_in_runtime(std::mem::replace(&mut *writing, Writing::Done));
        }
    }
}

/// What `AsyncFileUpload` and `FileUpload` share: a file being written, made
/// by `open_write`. `write()` its content in any number of pieces, then
/// `commit()`, which puts the file in place and returns its size; until
/// then nothing appears under its name, and `abort()` (or an error, or
/// dropping the upload) leaves nothing there. As a context manager it
/// commits when the block ends normally and aborts on an exception.
#[pyclass(module = "sandlot._native", name = "_FileUpload", subclass, frozen)]
pub struct UploadBase {
    mode: Mode,
    upload: Arc<Upload>,
    /// How `__repr__` names the file.
    shown: String,
}

impl std::fmt::Debug for UploadBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadBase")
    }
}

impl Drop for UploadBase {
    fn drop(&mut self) {
        // A call in flight holds the write (and drops it in the runtime).
        if let Ok(mut writing) = self.upload.writing.try_lock() {
            drop_in_runtime(std::mem::replace(&mut *writing, Writing::Done));
        }
    }
}

twins!(UploadBase => AsyncFileUpload, SyncFileUpload);

impl UploadBase {
    /// An upload whose write starts when it is first needed (and raises
    /// then if `path` or `mode` was refused).
    fn lazy(
        mode: Mode,
        client: Client,
        target: FileTarget,
        path: Outcome<Vec<u8>>,
        bits: Outcome<u32>,
        parents: bool,
        exclusive: bool,
    ) -> Self {
        let shown = match &path {
            Ok(path) => format!(
                "{target}, path={:?}",
                String::from_utf8_lossy(path).into_owned()
            ),
            Err(_) => target.to_string(),
        };
        let start = async move {
            let options = WriteOptions {
                mode: bits?,
                parents,
                exclusive,
            };
            Ok::<_, Failure>(client.write_file(&target, &path?, options).await?)
        };
        UploadBase {
            mode,
            upload: Arc::new(Upload {
                writing: tokio::sync::Mutex::new(Writing::NotStarted(start.boxed())),
                pending: Mutex::new(Vec::new()),
                taken: AtomicU64::new(0),
                closed: Mutex::new(None),
                aborted: tokio::sync::watch::Sender::new(false),
            }),
            shown,
        }
    }

    /// Starts the write (for `with`), then hands `owner` back.
    fn enter<'py>(&self, owner: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = owner.py();
        if self.upload.closed().is_some() {
            return self
                .mode
                .ready(py, Err::<Option<()>, _>(self.upload.closed_failure()));
        }
        let (upload, owner) = (self.upload.clone(), owner.unbind());
        self.mode.run(py, async move {
            upload.send(false).await?;
            Ok(owner)
        })
    }

    /// Ends a `with` block: commits unless `exc_info` holds an exception
    /// (then aborts); hands back `False`. An upload already committed or
    /// aborted in the block is left as it is.
    fn exit<'py>(&self, exc_info: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyAny>> {
        let py = exc_info.py();
        let raised = match exc_info.get_item(0) {
            Ok(kind) => !kind.is_none(),
            Err(_) => false,
        };
        if raised {
            self.upload.abort();
            return self.mode.ready(py, Ok(false));
        }
        if matches!(
            self.upload.closed(),
            Some(Closed::Committed | Closed::Aborted)
        ) {
            return self.mode.ready(py, Ok(false));
        }
        let upload = self.upload.clone();
        self.mode.run(py, async move {
            upload.send(true).await?;
            Ok(false)
        })
    }
}

#[pymethods]
impl UploadBase {
    /// Writes `data` (bytes-like, or a `str` as UTF-8). Small pieces are
    /// gathered and sent together; an error of the write may therefore be
    /// raised by a later call (`commit()` at the latest). Raises
    /// `ValueError` once the upload is committed, aborted or failed.
    fn write<'py>(&self, py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let full = inputs::bytes_like(data).and_then(|bytes| match bytes {
            Some(bytes) => self.upload.take(bytes),
            None => Err(sandlot_core::Error::invalid("data", "must be bytes-like or str").into()),
        });
        match full {
            Ok(false) => self.mode.ready(py, Ok(NONE)),
            Ok(true) => {
                let upload = self.upload.clone();
                self.mode.run(py, async move {
                    upload.send(false).await?;
                    Ok(NONE)
                })
            }
            Err(failure) => self.mode.ready(py, Err::<Option<()>, _>(failure)),
        }
    }

    /// Sends what is left, puts the file in place, and returns its size.
    fn commit<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.upload.closed().is_some() {
            return self
                .mode
                .ready(py, Err::<u64, _>(self.upload.closed_failure()));
        }
        let upload = self.upload.clone();
        self.mode.run(py, upload.send(true))
    }

    /// Drops the write at once: nothing appears under the file's name. Does
    /// nothing after `commit()`. (An awaitable on `AsyncFileUpload`, done
    /// already.)
    fn abort<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.upload.abort();
        self.mode.ready(py, Ok(NONE))
    }

    /// Bytes written so far (sent or gathered to send).
    #[getter]
    fn sent(&self) -> u64 {
        self.upload.taken.load(Ordering::Relaxed)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let this = slf.get();
        let state = match this.upload.closed() {
            None => "open",
            Some(Closed::Committed) => "committed",
            Some(Closed::Aborted) => "aborted",
            Some(Closed::Failed) => "failed",
        };
        format!(
            "{}({}, sent={}, {state})",
            class_name(slf),
            this.shown,
            this.sent()
        )
    }
}

/// A file being written into a sandbox or volume of an `AsyncClient`; `async
/// with` commits it when the block ends, or aborts it on an exception.
/// Awaiting it starts the write and gives it back.
#[pyclass(module = "sandlot", extends = UploadBase, frozen)]
#[derive(Debug)]
pub struct AsyncFileUpload;

#[pymethods]
impl AsyncFileUpload {
    /// Starts the write and hands the upload back: `upload = await
    /// files.open_write(path)`.
    fn __await__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.as_super()
            .get()
            .enter(slf.clone().into_any())?
            .call_method0(pyo3::intern!(slf.py(), "__await__"))
    }

    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.as_super().get().enter(slf.clone().into_any())
    }

    #[pyo3(signature = (*exc_info))]
    fn __aexit__<'py>(
        slf: &Bound<'py, Self>,
        exc_info: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        slf.as_super().get().exit(exc_info)
    }
}

/// A file being written into a sandbox or volume of a `Client`; `with`
/// commits it when the block ends, or aborts it on an exception.
#[pyclass(module = "sandlot", name = "FileUpload", extends = UploadBase, frozen)]
#[derive(Debug)]
pub struct SyncFileUpload;

#[pymethods]
impl SyncFileUpload {
    fn __enter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.as_super().get().enter(slf.clone().into_any())
    }

    #[pyo3(signature = (*exc_info))]
    fn __exit__<'py>(
        slf: &Bound<'py, Self>,
        exc_info: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        slf.as_super().get().exit(exc_info)
    }
}

/// Where a read of a file is.
enum Reading {
    /// Not started: the future that starts it.
    NotStarted(BoxFuture<'static, Outcome<FileReader>>),
    Open(Box<FileReader>),
    /// The content ended, or the read failed.
    Ended,
}

/// A read, shared by its Python object and the tasks reading for it.
struct ChunkReading {
    state: tokio::sync::Mutex<Reading>,
    /// The next chunk, or how the content ended ([`Failure::End`] or the
    /// error), read and not handed to Python yet.
    ready: Mutex<Option<Outcome<Vec<u8>>>>,
    /// The task reading the next chunk, if one runs.
    filling: Mutex<Option<tokio::task::AbortHandle>>,
}

impl ChunkReading {
    fn ready(&self) -> std::sync::MutexGuard<'_, Option<Outcome<Vec<u8>>>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the next chunk into `ready`, unless one is there. Runs as a task
    /// of its own, which no cancelled call stops: a chunk read is never lost.
    async fn fill(self: Arc<Self>) {
        let mut state = self.state.lock().await;
        if self.ready().is_some() {
            return;
        }
        let mut reader = match std::mem::replace(&mut *state, Reading::Ended) {
            Reading::NotStarted(start) => match start.await {
                Ok(reader) => reader,
                Err(failure) => {
                    *self.ready() = Some(Err(failure));
                    return;
                }
            },
            Reading::Open(reader) => *reader,
            Reading::Ended => {
                *self.ready() = Some(Err(Failure::End));
                return;
            }
        };
        let next = match reader.next_chunk().await {
            Ok(Some(chunk)) => {
                *state = Reading::Open(Box::new(reader));
                Ok(chunk)
            }
            Ok(None) => Err(Failure::End),
            Err(err) => Err(err.into()),
        };
        *self.ready() = Some(next);
    }

    /// Resolves once a chunk (or the end) is ready to hand over.
    async fn arrival(self: Arc<Self>) -> Outcome<()> {
        let task = tokio::spawn(self.clone().fill());
        *self.filling.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        task.await
            .map_err(|err| Failure::Panic(format!("reading a file: {err}")))
    }
}

/// The content of a file in chunks (at most 1 MiB each) as they arrive:
/// `async for chunk in files.open_read(path)` (`AsyncFiles`) or `for chunk in
/// ...` (`Files`). The iteration ends once the sandbox confirmed that all of
/// the content arrived; an error is raised from it (once; then it ends). A
/// call cancelled while it waits takes no chunk. Dropping it stops the read.
#[pyclass(module = "sandlot", frozen)]
pub struct FileChunks {
    reading: Arc<ChunkReading>,
}

impl std::fmt::Debug for FileChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileChunks")
    }
}

impl Drop for FileChunks {
    fn drop(&mut self) {
        let filling = self
            .reading
            .filling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = filling {
            task.abort();
        }
        if let Ok(mut state) = self.reading.state.try_lock() {
            drop_in_runtime(std::mem::replace(&mut *state, Reading::Ended));
        }
    }
}

impl FileChunks {
    fn new(start: BoxFuture<'static, Outcome<FileReader>>) -> Self {
        FileChunks {
            reading: Arc::new(ChunkReading {
                state: tokio::sync::Mutex::new(Reading::NotStarted(start)),
                ready: Mutex::new(None),
                filling: Mutex::new(None),
            }),
        }
    }

    /// The chunk read ahead, if there is one, as `bytes` made here.
    fn chunk_now(&self, py: Python<'_>) -> Option<Outcome<Py<PyBytes>>> {
        let taken = self.reading.ready().take()?;
        Some(taken.map(|chunk| PyBytes::new(py, &chunk).unbind()))
    }

    /// The next chunk: one read ahead is handed over at once; else the call
    /// waits for it. An async call takes it on the event loop's thread after
    /// its wait (`sandlot._streams.next_chunk`), so one cancelled before it
    /// returned takes none.
    fn next_chunk<'py>(slf: &Bound<'py, Self>, mode: Mode) -> PyResult<Bound<'py, PyAny>> {
        let (py, this) = (slf.py(), slf.get());
        if let Some(chunk) = this.chunk_now(py) {
            return mode.ready(py, chunk);
        }
        if mode == Mode::Async {
            return py
                .import(pyo3::intern!(py, "sandlot._streams"))?
                .getattr(pyo3::intern!(py, "next_chunk"))?
                .call1((slf,));
        }
        let reading = this.reading.clone();
        mode.run(py, async move {
            reading.clone().arrival().await?;
            let taken = reading.ready().take();
            // None only when a call that overlapped took it first.
            taken.unwrap_or(Err(Failure::End)).map(Bytes)
        })
    }
}

#[pymethods]
impl FileChunks {
    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Awaits the next chunk; ends when the content does.
    fn __anext__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::next_chunk(slf, Mode::Async)
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Waits for the next chunk; ends when the content does.
    fn __next__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::next_chunk(slf, Mode::Blocking)
    }

    /// The chunk read ahead if there is one, else `None`; raises how the
    /// content ended (`StopAsyncIteration`, or its error once).
    fn _chunk_now(&self, py: Python<'_>) -> PyResult<Option<Py<PyBytes>>> {
        self.chunk_now(py)
            .transpose()
            .map_err(|failure| failure.into_pyerr(py, Mode::Async))
    }

    /// Awaits a chunk read ahead, or the end (see
    /// `sandlot._streams.next_chunk`).
    fn _arrival<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let reading = self.reading.clone();
        Mode::Async.run(py, async move {
            reading.arrival().await?;
            Ok(NONE)
        })
    }
}
