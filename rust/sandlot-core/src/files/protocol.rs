//! The request and answer of the agent's file mode (`agent file`, see
//! `agent/files.rs`): one operation per run, its request on stdin (paths as
//! bytes, never in the exec's URL), content and entry records on stdout, and
//! one status line on stderr, the last thing the program writes.
//!
//! The program runs in the sandbox and is as untrusted as the workload: every
//! record is bounds-checked, a missing or malformed status is an error, and a
//! success must account for the bytes that were moved.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Error, Result};

/// Opens every request.
const MAGIC: &[u8; 4] = b"SLF1";
/// Longest path the agent takes, in bytes, and longest symlink target a
/// record carries (the kernel's `PATH_MAX`).
pub(crate) const MAX_PATH: usize = 4096;
/// Longest relative name a listing or tree record carries: the agent walks
/// at most 256 directories deep, each name up to 255 bytes and its `/`.
pub(super) const MAX_RECORD_NAME: usize = 256 * 256;
/// Largest content chunk on stdin.
pub(crate) const MAX_CHUNK: usize = 1 << 20;
/// Longest stderr kept from one run (a status line and a path).
pub(super) const MAX_STATUS: u64 = 16 * 1024;

/// The file operations, by their code on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Read = 1,
    Write = 2,
    Stat = 3,
    List = 4,
    Mkdir = 5,
    Remove = 6,
    Rename = 7,
    Pack = 8,
    Unpack = 9,
    /// The disk the sandbox uses (its status counts bytes in use).
    DiskUsed = 10,
    Chmod = 11,
}

/// Write: create missing parent directories. Mkdir: parents too, and an
/// existing directory is fine.
pub(super) const PARENTS: u32 = 1;
/// Write: fail if the path exists.
pub(super) const EXCLUSIVE: u32 = 2;
/// Rename: fail if the new name exists.
pub(super) const NO_REPLACE: u32 = 1;
/// Remove: a directory and everything in it.
pub(super) const RECURSIVE: u32 = 1;
/// Stat: what a symlink points to.
pub(super) const FOLLOW: u32 = 1;

/// A request: magic, op, path, then the op's fields (see the helpers).
pub(super) struct RequestBytes(pub(super) Vec<u8>);

impl RequestBytes {
    pub(super) fn new(op: Op, path: &[u8]) -> Self {
        let mut out = Vec::with_capacity(16 + path.len());
        out.extend_from_slice(MAGIC);
        out.push(op as u8);
        let mut request = RequestBytes(out);
        request.bytes(path);
        request
    }

    pub(super) fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(super) fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(super) fn with_bytes(mut self, v: &[u8]) -> Self {
        self.bytes(v);
        self
    }

    fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(&(v.len() as u32).to_le_bytes());
        self.0.extend_from_slice(v);
    }
}

/// A content chunk's header on stdin; a chunk of 0 bytes commits.
pub(super) fn chunk_header(len: usize) -> [u8; 4] {
    (len as u32).to_le_bytes()
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    /// A fifo, socket or device.
    Other,
}

impl EntryKind {
    /// `file`, `directory`, `symlink` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Directory => "directory",
            EntryKind::Symlink => "symlink",
            EntryKind::Other => "other",
        }
    }

    fn code(self) -> u8 {
        match self {
            EntryKind::File => 1,
            EntryKind::Directory => 2,
            EntryKind::Symlink => 3,
            EntryKind::Other => 4,
        }
    }
}

/// One file, directory or link, as `stat` and `list` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// `stat`: the path asked about; `list`: the path below the listed
    /// directory, components joined by `/`. Any bytes but NUL.
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Bytes, for a regular file; a symlink's target length; else 0.
    pub size: u64,
    /// Last modification: seconds since the epoch and nanoseconds.
    pub mtime: (i64, u32),
    /// A symlink's target.
    pub target: Option<Vec<u8>>,
}

/// Size of a record's fixed fields after its kind byte.
const FIXED: usize = 4 + 8 + 8 + 4;

/// Reads one record; `None` at the end record. A record breaking the
/// protocol (bad kind, a name or target out of bounds) is an error.
pub(super) async fn read_record(
    from: &mut (impl AsyncRead + Unpin),
    sandbox: &str,
) -> Result<Option<FileEntry>> {
    let broken = |what: &str| Error::Exec {
        name: sandbox.to_owned(),
        message: format!("the agent's file listing is malformed: {what}"),
    };
    let kind = from
        .read_u8()
        .await
        .map_err(|_| broken("it ended without its end record"))?;
    let mut fixed = [0u8; FIXED];
    from.read_exact(&mut fixed)
        .await
        .map_err(|_| broken("a record is cut short"))?;
    let mode = u32::from_le_bytes(fixed[0..4].try_into().expect("4 bytes"));
    let size = u64::from_le_bytes(fixed[4..12].try_into().expect("8 bytes"));
    let seconds = i64::from_le_bytes(fixed[12..20].try_into().expect("8 bytes"));
    let nanos = u32::from_le_bytes(fixed[20..24].try_into().expect("4 bytes"));
    let path = read_bytes(from, MAX_RECORD_NAME, &broken).await?;
    let target = read_bytes(from, MAX_PATH, &broken).await?;
    let kind = match kind {
        0 if path.is_empty() && target.is_empty() => return Ok(None),
        1 => EntryKind::File,
        2 => EntryKind::Directory,
        3 => EntryKind::Symlink,
        4 => EntryKind::Other,
        _ => return Err(broken("an unknown entry kind")),
    };
    if mode > 0o7777 || nanos >= 1_000_000_000 || path.contains(&0) || target.contains(&0) {
        return Err(broken("a field is out of range"));
    }
    Ok(Some(FileEntry {
        path,
        kind,
        mode,
        size,
        mtime: (seconds, nanos),
        target: (kind == EntryKind::Symlink).then_some(target),
    }))
}

/// How much one listing may hold: a hostile sandbox could send records
/// without end.
#[derive(Debug, Clone, Copy)]
pub(super) struct ListingBounds {
    pub(super) entries: usize,
    /// Bytes of names and targets, all entries together.
    pub(super) bytes: usize,
}

/// The bounds of every listing.
pub(super) const LISTING_BOUNDS: ListingBounds = ListingBounds {
    entries: 1_000_000,
    bytes: 256 << 20,
};

/// Reads a listing's records up to its end record; past `bounds`, an error
/// that says to list a part of it.
pub(super) async fn read_listing(
    from: &mut (impl AsyncRead + Unpin),
    sandbox: &str,
    bounds: ListingBounds,
) -> Result<Vec<FileEntry>> {
    let mut entries = Vec::new();
    let mut bytes = 0;
    while let Some(entry) = read_record(from, sandbox).await? {
        bytes += entry.path.len() + entry.target.as_ref().map_or(0, Vec::len);
        let too_large = if entries.len() == bounds.entries {
            format!("more than {} entries", bounds.entries)
        } else if bytes > bounds.bytes {
            format!("names of more than {} bytes", bounds.bytes)
        } else {
            entries.push(entry);
            continue;
        };
        return Err(Error::Exec {
            name: sandbox.to_owned(),
            message: format!("the listing has {too_large}; list a part of it"),
        });
    }
    Ok(entries)
}

/// A length-prefixed field of at most `limit` bytes.
async fn read_bytes(
    from: &mut (impl AsyncRead + Unpin),
    limit: usize,
    broken: &impl Fn(&str) -> Error,
) -> Result<Vec<u8>> {
    let len = from
        .read_u32_le()
        .await
        .map_err(|_| broken("a record is cut short"))? as usize;
    if len > limit {
        return Err(broken(&format!(
            "a name or target is longer than {limit} bytes"
        )));
    }
    let mut bytes = vec![0; len];
    from.read_exact(&mut bytes)
        .await
        .map_err(|_| broken("a record is cut short"))?;
    Ok(bytes)
}

/// The record of `entry` as `unpack` reads it (content follows for a file).
pub(super) fn record(entry: &FileEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + FIXED + 8 + entry.path.len());
    out.push(entry.kind.code());
    out.extend_from_slice(&entry.mode.to_le_bytes());
    out.extend_from_slice(&entry.size.to_le_bytes());
    out.extend_from_slice(&entry.mtime.0.to_le_bytes());
    out.extend_from_slice(&entry.mtime.1.to_le_bytes());
    for bytes in [&entry.path[..], entry.target.as_deref().unwrap_or_default()] {
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// The end record.
pub(super) fn end_record() -> Vec<u8> {
    vec![0; 1 + FIXED + 8]
}

/// How a run ended, from its status line.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Status {
    /// Bytes of content moved.
    Ok(u64),
    /// The errno and the path it is about.
    Failed(i32, Vec<u8>),
}

/// Reads the status line from a run's stderr; anything else is an error
/// naming what arrived (the agent missing from the sandbox, a stream that
/// broke, a program that is not sandlot's agent).
pub(super) fn parse_status(stderr: &[u8], sandbox: &str, exit: Result<i32>) -> Result<Status> {
    let lost = |why: String| Error::Exec {
        name: sandbox.to_owned(),
        message: format!("the file operation's outcome is unknown: {why}"),
    };
    let line = stderr.strip_suffix(b"\n").unwrap_or(stderr);
    if let Some(count) = line.strip_prefix(b"sandlot-file: ok ") {
        let count = std::str::from_utf8(count)
            .ok()
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| lost("the agent's status line is malformed".into()))?;
        return Ok(Status::Ok(count));
    }
    if let Some(rest) = line.strip_prefix(b"sandlot-file: error ") {
        let split = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        let errno = std::str::from_utf8(&rest[..split])
            .ok()
            .and_then(|e| e.parse::<i32>().ok())
            .filter(|e| *e > 0)
            .ok_or_else(|| lost("the agent's status line is malformed".into()))?;
        let path = rest.get(split + 1..).unwrap_or_default().to_vec();
        return Ok(Status::Failed(errno, path));
    }
    let said = String::from_utf8_lossy(&stderr[..stderr.len().min(512)]);
    Err(match exit {
        Err(err) => err,
        Ok(code) => lost(format!(
            "the agent exited {code} without a status{}",
            if said.trim().is_empty() {
                String::new()
            } else {
                format!(", saying {:?}", said.trim())
            }
        )),
    })
}

/// What errno `errno` means, as the C library says it (the common ones).
pub fn errno_text(errno: i32) -> &'static str {
    match errno {
        1 => "operation not permitted",
        2 => "no such file or directory",
        5 => "input/output error",
        13 => "permission denied",
        17 => "file exists",
        18 => "invalid cross-device link",
        20 => "not a directory",
        21 => "is a directory",
        22 => "invalid argument",
        27 => "file too large",
        28 => "no space left on device",
        30 => "read-only file system",
        32 => "the input ended before the end of the content",
        36 => "file name too long",
        39 => "directory not empty",
        40 => "too many levels of symbolic links",
        122 => "disk quota exceeded",
        _ => "the operation failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_read_back_as_written() {
        let entries = [
            FileEntry {
                path: b"a/caf\xe9".to_vec(),
                kind: EntryKind::File,
                mode: 0o644,
                size: 3,
                mtime: (1_700_000_000, 5),
                target: None,
            },
            FileEntry {
                path: b"l".to_vec(),
                kind: EntryKind::Symlink,
                mode: 0o777,
                size: 1,
                mtime: (0, 0),
                target: Some(b"a".to_vec()),
            },
            // Deeper than a path the kernel takes in one call.
            FileEntry {
                path: [&b"d/"[..]; MAX_RECORD_NAME / 2].concat(),
                kind: EntryKind::Directory,
                mode: 0o755,
                size: 0,
                mtime: (0, 0),
                target: None,
            },
        ];
        let mut bytes = Vec::new();
        for entry in &entries {
            bytes.extend(record(entry));
        }
        bytes.extend(end_record());
        let mut from = &bytes[..];
        for entry in &entries {
            assert_eq!(
                read_record(&mut from, "s").await.unwrap().as_ref(),
                Some(entry)
            );
        }
        assert_eq!(read_record(&mut from, "s").await.unwrap(), None);
        assert!(read_record(&mut from, "s").await.is_err());
    }

    #[tokio::test]
    async fn hostile_records_are_refused() {
        let mut long = record(&FileEntry {
            path: vec![b'a'; 10],
            kind: EntryKind::File,
            mode: 0o644,
            size: 0,
            mtime: (0, 0),
            target: None,
        });
        // A name length past the limit.
        long[1 + FIXED..1 + FIXED + 4].copy_from_slice(&(MAX_RECORD_NAME as u32 + 1).to_le_bytes());
        assert!(read_record(&mut &long[..], "s").await.is_err());
        // A target past the kernel's limit.
        let mut link = record(&FileEntry {
            path: b"l".to_vec(),
            kind: EntryKind::Symlink,
            mode: 0o777,
            size: 1,
            mtime: (0, 0),
            target: Some(b"t".to_vec()),
        });
        let at = 1 + FIXED + 4 + 1;
        link[at..at + 4].copy_from_slice(&(MAX_PATH as u32 + 1).to_le_bytes());
        assert!(read_record(&mut &link[..], "s").await.is_err());
        let mut kind = end_record();
        kind[0] = 9;
        assert!(read_record(&mut &kind[..], "s").await.is_err());
        let cut = &end_record()[..5];
        assert!(read_record(&mut &cut[..], "s").await.is_err());
    }

    #[tokio::test]
    async fn a_listing_past_its_bounds_is_refused() {
        let entry = |path: &[u8]| FileEntry {
            path: path.to_vec(),
            kind: EntryKind::File,
            mode: 0o644,
            size: 0,
            mtime: (0, 0),
            target: None,
        };
        let listing = |paths: &[&[u8]]| {
            let mut bytes: Vec<u8> = paths.iter().flat_map(|p| record(&entry(p))).collect();
            bytes.extend(end_record());
            bytes
        };
        let bounds = ListingBounds {
            entries: 2,
            bytes: 10,
        };
        let within = listing(&[b"abcde", b"fghij"]);
        let read = read_listing(&mut &within[..], "s", bounds).await.unwrap();
        assert_eq!(read, [entry(b"abcde"), entry(b"fghij")]);
        for past in [
            listing(&[b"a", b"b", b"c"]),
            listing(&[b"abcde", b"fghijk"]),
        ] {
            let err = read_listing(&mut &past[..], "s", bounds).await.unwrap_err();
            assert!(err.to_string().contains("list a part of it"), "{err}");
        }
    }

    #[test]
    fn status_lines_are_read_strictly() {
        assert_eq!(
            parse_status(b"sandlot-file: ok 12\n", "s", Ok(0)).unwrap(),
            Status::Ok(12)
        );
        assert_eq!(
            parse_status(b"sandlot-file: error 2 /a b\n", "s", Ok(3)).unwrap(),
            Status::Failed(2, b"/a b".to_vec())
        );
        for bad in [
            &b""[..],
            b"sandlot-file: ok x\n",
            b"sandlot-file: error -1 /a\n",
            b"exec: no such file\n",
        ] {
            let err = parse_status(bad, "s", Ok(127)).unwrap_err();
            assert!(matches!(err, Error::Exec { .. }), "{err:?}");
        }
    }
}
