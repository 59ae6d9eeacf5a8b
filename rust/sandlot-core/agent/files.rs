//! The agent's file mode, `agent file`: one file operation per run for
//! sandlot's client, run as a command of the daemon or as a plain Kubernetes
//! exec. The request comes on stdin (magic `SLF1`, the op, the path as
//! length-prefixed bytes, the op's fields, then any content or records);
//! content and entry records go to stdout; stderr gets exactly one status
//! line, the last thing written: `sandlot-file: ok N` (exit 0),
//! `sandlot-file: error ERRNO PATH` (exit 3), or error 22 with no path for a
//! malformed request (exit 2). All integers are little endian.
//!
//! Memory stays bounded: content streams through one 1 MiB buffer, and a tree
//! is walked with one open directory per level, at most [`MAX_DEPTH`] deep.
//! Symlinks below the requested path are never followed, and unpack creates
//! nothing through a symlink, not even one it made itself.

use alloc::vec::Vec;

use crate::sys::*;

const MAGIC: &[u8] = b"SLF1";
/// The longest path, record name or symlink target taken, in bytes.
const MAX_PATH: usize = 4096;
/// The largest content chunk, and the size of stdin's buffer.
const CHUNK: usize = 1 << 20;
/// How many levels a walk enters; deeper is refused with ELOOP.
const MAX_DEPTH: usize = 256;
/// Records are gathered up to this size before they are written.
const OUT_BUFFER: usize = 64 * 1024;
/// An end record: kind 0 and every field zero or empty.
const END_RECORD: [u8; 33] = [0; 33];

/// Write: create missing parents. Mkdir: parents too, an existing directory is fine.
const PARENTS: u32 = 1;
/// Write: fail if the path exists. Rename: fail if the target exists.
const EXCLUSIVE: u32 = 2;
/// Rename's flag for EXCLUSIVE.
const NO_REPLACE: u32 = 1;
/// Remove: the directory's contents too.
const RECURSIVE: u32 = 1;
/// Stat: of what a symlink points to, not of the link.
const FOLLOW: u32 = 1;

// Record kinds.
const END: u8 = 0;
const FILE: u8 = 1;
const DIR: u8 = 2;
const LINK: u8 = 3;
const OTHER: u8 = 4;

const POLLIN: i16 = 1;
const POLLOUT: i16 = 4;
/// A timespec nanoseconds value that leaves the time as it is.
const UTIME_OMIT: i64 = (1 << 30) - 2;

/// Why an operation stopped.
enum Failure {
    /// The request breaks the protocol (exit 2).
    Malformed,
    /// A (positive) errno about a path (exit 3).
    Errno(isize, Vec<u8>),
}

type Outcome<T> = Result<T, Failure>;

fn failed(errno: isize, path: &[u8]) -> Failure {
    Failure::Errno(errno, path.to_vec())
}

/// A system call's result as a count, or its errno about `path`.
fn check(result: isize, path: &[u8]) -> Outcome<usize> {
    if result < 0 {
        Err(failed(-result, path))
    } else {
        Ok(result as usize)
    }
}

/// Runs the operation on stdin; returns only by exiting.
pub fn run() -> ! {
    let mut io = Io {
        input: alloc::vec![0; CHUNK],
        at: 0,
        end: 0,
        output: Vec::with_capacity(OUT_BUFFER),
    };
    let outcome = serve(&mut io);
    io.flush();
    let mut line = Vec::from(&b"sandlot-file: "[..]);
    let code = match outcome {
        Ok(moved) => {
            line.extend_from_slice(b"ok ");
            push_decimal(&mut line, moved);
            0
        }
        Err(Failure::Malformed) => {
            line.extend_from_slice(b"error 22 ");
            2
        }
        Err(Failure::Errno(errno, path)) => {
            line.extend_from_slice(b"error ");
            push_decimal(&mut line, errno as u64);
            line.push(b' ');
            line.extend_from_slice(&path);
            3
        }
    };
    line.push(b'\n');
    write_all(2, &line);
    exit(code)
}

/// Reads the request and performs it: the bytes of content moved.
fn serve(io: &mut Io) -> Outcome<u64> {
    if io.take(4) != Some(MAGIC) {
        return Err(Failure::Malformed);
    }
    let op = io.head(1)?;
    let path = io.path()?;
    match op {
        1 => {
            let offset = io.head(8)?;
            let length = io.head(8)?;
            read_file(io, &path, offset, length)
        }
        2 => {
            let mode = io.mode()?;
            let flags = io.flags(PARENTS | EXCLUSIVE)?;
            write_file(io, &path, mode, flags)
        }
        3 => {
            let z = nul(&path);
            let follow = io.flags(FOLLOW)? != 0;
            let no_follow = if follow { 0 } else { AT_SYMLINK_NOFOLLOW };
            let stat = stat_at(AT_FDCWD, &z, no_follow).map_err(|e| failed(e, &path))?;
            let target = target_of(AT_FDCWD, &z, &stat).map_err(|e| failed(e, &path))?;
            io.record(&stat, &path, &target);
            io.out(&END_RECORD);
            Ok(0)
        }
        4 => {
            let depth = io.head(4)? as usize;
            walk_out(io, &path, depth, false)
        }
        5 => {
            let mode = io.mode()?;
            if io.flags(PARENTS)? != 0 {
                make_dirs(&path, mode)?;
            } else {
                let z = nul(&path);
                check(mkdir_at(AT_FDCWD, &z, mode), &path)?;
                check(chmod_at(&z, mode), &path)?;
            }
            Ok(0)
        }
        6 => {
            let flags = io.flags(RECURSIVE)?;
            remove(&path, flags)
        }
        7 => {
            let to = io.path()?;
            let flags = io.flags(NO_REPLACE)?;
            let r = rename(&nul(&path), &nul(&to), flags != 0);
            let about = if r == -EEXIST || r == -ENOTEMPTY || r == -EISDIR {
                &to
            } else {
                &path
            };
            check(r, about)?;
            Ok(0)
        }
        8 => walk_out(io, &path, 0, true),
        9 => {
            io.flags(0)?;
            unpack(io, &path)
        }
        10 => {
            io.flags(0)?;
            disk_used(&path)
        }
        11 => {
            let mode = io.mode()?;
            io.flags(0)?;
            change_mode(&path, mode)?;
            Ok(0)
        }
        _ => Err(Failure::Malformed),
    }
}

/// Copies `length` bytes (`u64::MAX`: all) from `offset` of the file at
/// `path`, following symlinks, to stdout.
fn read_file(io: &mut Io, path: &[u8], offset: u64, length: u64) -> Outcome<u64> {
    let fd = check(open_at(AT_FDCWD, &nul(path), O_RDONLY | O_CLOEXEC, 0), path)? as i32;
    let sent = (|| {
        if kind_of(&stat_at(fd, b"\0", AT_EMPTY_PATH)?) == DIR {
            return Err(EISDIR);
        }
        if offset > 0 {
            let r = call(SYS_LSEEK, fd as usize, offset as usize, 0);
            if r < 0 {
                return Err(-r);
            }
        }
        io.send(fd, length, false)
    })();
    close(fd);
    sent.map_err(|e| failed(e, path))
}

/// Writes stdin's content chunks to a temporary file beside `path` and
/// renames it to `path` at the end chunk; on any failure removes it, leaving
/// `path` as it was. The bytes written.
fn write_file(io: &mut Io, path: &[u8], mode: u32, flags: u32) -> Outcome<u64> {
    let dir = match path.iter().rposition(|&b| b == b'/') {
        Some(0) => &b"/"[..],
        Some(i) => &path[..i],
        None => &b"."[..],
    };
    if flags & PARENTS != 0 {
        make_dirs(dir, 0o755)?;
    }
    let z = nul(path);
    match stat_at(AT_FDCWD, &z, AT_SYMLINK_NOFOLLOW) {
        Ok(stat) if kind_of(&stat) == DIR => return Err(failed(EISDIR, path)),
        Ok(_) if flags & EXCLUSIVE != 0 => return Err(failed(EEXIST, path)),
        _ => {}
    }
    // A short name (a long `path` still fits the name limit) that no earlier
    // run's leftover blocks: the pid and the clock's nanoseconds, tried anew.
    let mut temp = Vec::new();
    let mut fd = -EEXIST;
    for _ in 0..8 {
        let mut name = Vec::from(&b".sandlot-"[..]);
        push_decimal(&mut name, call(SYS_GETPID, 0, 0, 0) as u64);
        name.push(b'-');
        push_decimal(&mut name, now_ns());
        temp = nul(&join(dir, &name));
        let flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
        fd = open_at(AT_FDCWD, &temp, flags, mode);
        if fd != -EEXIST {
            break;
        }
    }
    if fd < 0 {
        return Err(failed(-fd, path));
    }
    let fd = fd as i32;
    let written = (|| {
        check(call(SYS_FCHMOD, fd as usize, mode as usize, 0), path)?;
        let mut written = 0;
        loop {
            let len = io.number(4).ok_or_else(|| failed(EPIPE, path))?;
            if len == 0 {
                return Ok(written);
            }
            if len > CHUNK as u64 {
                return Err(Failure::Malformed);
            }
            io.copy(fd, len).map_err(|e| failed(e, path))?;
            written += len;
        }
    })();
    let closed = call(SYS_CLOSE, fd as usize, 0, 0);
    let done = written.and_then(|written| {
        check(closed, path)?;
        let exclusive = flags & EXCLUSIVE != 0;
        let mut r = rename(&temp, &z, exclusive);
        if r == -EINVAL && exclusive {
            // The filesystem cannot refuse to replace; `path` was absent above.
            r = rename(&temp, &z, false);
        }
        check(r, path)?;
        Ok(written)
    });
    if done.is_err() {
        unlink_at(AT_FDCWD, &temp, 0);
    }
    done
}

/// List (`pack` false, to `depth` levels, 0 = all) or pack (`pack` true,
/// each file record followed by its content): the records of everything
/// below the directory `path` (or the one a symlink there points to), then
/// an end record. The bytes of content sent.
fn walk_out(io: &mut Io, path: &[u8], depth: usize, pack: bool) -> Outcome<u64> {
    let mut walk = Walk::open(path, true)?;
    let mut sent = 0;
    loop {
        let (name, mut stat) = match walk.next() {
            Ok(Step::Entry(name, stat)) => (name, stat),
            Ok(Step::Left(_)) => continue,
            Ok(Step::End) => break,
            Err(e) => return Err(failed(e, &walk.at(path))),
        };
        let dir = walk.dir();
        let mut content = -1;
        if pack && kind_of(&stat) == FILE {
            let flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
            content = check(open_at(dir, &name, flags, 0), &walk.at(path))? as i32;
            // Describe what was opened, which may have changed since it was listed.
            match stat_at(content, b"\0", AT_EMPTY_PATH) {
                Ok(now) if kind_of(&now) == FILE => stat = now,
                now => {
                    close(content);
                    content = -1;
                    stat = now.map_err(|e| failed(e, &walk.at(path)))?;
                }
            }
        }
        let target = target_of(dir, &name, &stat).map_err(|e| failed(e, &walk.at(path)))?;
        io.record(&stat, &walk.rel, &target);
        if content >= 0 {
            let copied = io.send(content, stat.size, true);
            close(content);
            sent += copied.map_err(|e| failed(e, &walk.at(path)))?;
        }
        // A directory that cannot be opened is listed but not entered.
        if kind_of(&stat) == DIR
            && (depth == 0 || walk.depth() < depth)
            && let Err(ELOOP) = walk.enter(&name)
        {
            return Err(failed(ELOOP, &walk.at(path)));
        }
    }
    io.out(&END_RECORD);
    Ok(sent)
}

/// Sets the permission bits of `path` to `mode`; a symlink there is refused
/// (ELOOP), never followed: the file is opened as a path without following
/// one, and that very file is changed (through `/proc/self/fd`).
fn change_mode(path: &[u8], mode: u32) -> Outcome<()> {
    let flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
    let fd = check(open_at(AT_FDCWD, &nul(path), flags, 0), path)? as i32;
    let changed = (|| {
        if kind_of(&stat_at(fd, b"\0", AT_EMPTY_PATH)?) == LINK {
            return Err(ELOOP);
        }
        let mut by_fd = Vec::from(&b"/proc/self/fd/"[..]);
        push_decimal(&mut by_fd, fd as u64);
        let r = chmod_at(&nul(&by_fd), mode);
        if r < 0 { Err(-r) } else { Ok(()) }
    })();
    close(fd);
    changed.map_err(|e| failed(e, path))
}

/// How many entries a disk count looks at before it gives up (EOVERFLOW).
const MAX_COUNTED: u64 = 1_000_000;
/// How many files with several links it tells apart before it gives up (its
/// memory counts against the sandbox's).
const MAX_LINKED: usize = 100_000;

/// The disk the sandbox uses, in bytes (the blocks allocated): below `path`,
/// on its filesystem, what changed since the sandbox's first process
/// started (on an overlay root: what its writable layer holds, as the image's
/// files are older), and everything on its scratch mounts (emptyDir on the
/// node's disk). Other mounts are not entered, nor directories the agent may
/// not read; a file with several links counts once. EOVERFLOW after
/// [`MAX_COUNTED`] entries or [`MAX_LINKED`] files with several links.
fn disk_used(path: &[u8]) -> Outcome<u64> {
    let since = crate::metrics::started_ns().ok_or_else(|| failed(ENOENT, b"/proc/1/stat"))?;
    let (scratch, points) = crate::metrics::mounts();
    let mut count = DiskCount {
        bytes: 0,
        entries: 0,
        linked: alloc::collections::BTreeSet::new(),
        points,
    };
    count.walk(path, since)?;
    for mount in scratch {
        count.walk(&mount, i64::MIN)?;
    }
    Ok(count.bytes)
}

struct DiskCount {
    bytes: u64,
    entries: u64,
    /// Files with more than one link counted so far: device and inode.
    linked: alloc::collections::BTreeSet<(u64, u64)>,
    /// Every mount point: another mount, even of the same filesystem (a
    /// bind mount), is not entered.
    points: Vec<Vec<u8>>,
}

impl DiskCount {
    /// Counts `path` and what is below it on its filesystem that changed at
    /// or after `since` (nanoseconds since the epoch).
    fn walk(&mut self, path: &[u8], since: i64) -> Outcome<()> {
        let root =
            stat_at(AT_FDCWD, &nul(path), AT_SYMLINK_NOFOLLOW).map_err(|e| failed(e, path))?;
        self.add(&root, since)?;
        let mut walk = Walk::open(path, false)?;
        loop {
            self.entries += 1;
            if self.entries > MAX_COUNTED {
                return Err(failed(EOVERFLOW, path));
            }
            let (name, stat) = match walk.next() {
                Ok(Step::Entry(name, stat)) => (name, stat),
                Ok(Step::Left(_)) | Err(EACCES) => continue,
                Ok(Step::End) => return Ok(()),
                Err(e) => return Err(failed(e, &walk.at(path))),
            };
            // A mount point: another filesystem, or a bind mount.
            if stat.device != root.device || self.points.contains(&walk.at(path)) {
                continue;
            }
            self.add(&stat, since)?;
            if kind_of(&stat) == DIR {
                // Deeper than a walk goes, or not readable: left out.
                let _ = walk.enter(&name);
            }
        }
    }

    fn add(&mut self, stat: &Stat, since: i64) -> Outcome<()> {
        let linked = stat.links >= 2 && kind_of(stat) != DIR;
        if linked && self.linked.len() >= MAX_LINKED {
            return Err(failed(EOVERFLOW, b"/"));
        }
        let once = !linked || self.linked.insert((stat.device, stat.inode));
        if stat.changed_ns >= since && once {
            self.bytes = self.bytes.saturating_add(stat.blocks.saturating_mul(512));
        }
        Ok(())
    }
}

/// Removes `path` (a symlink itself, never its target); a directory must be
/// empty unless RECURSIVE, which removes its contents depth-first first.
fn remove(path: &[u8], flags: u32) -> Outcome<u64> {
    let z = nul(path);
    let stat = stat_at(AT_FDCWD, &z, AT_SYMLINK_NOFOLLOW).map_err(|e| failed(e, path))?;
    if kind_of(&stat) != DIR {
        check(unlink_at(AT_FDCWD, &z, 0), path)?;
        return Ok(0);
    }
    if flags & RECURSIVE != 0 {
        let mut walk = Walk::open(path, false)?;
        loop {
            let r = match walk.next() {
                Ok(Step::End) => break,
                Ok(Step::Left(name)) => unlink_at(walk.dir(), &name, AT_REMOVEDIR),
                Ok(Step::Entry(name, stat)) if kind_of(&stat) == DIR => {
                    walk.enter(&name).err().map_or(0, |e| -e)
                }
                Ok(Step::Entry(name, _)) => unlink_at(walk.dir(), &name, 0),
                Err(e) => -e,
            };
            check(r, &walk.at(path))?;
        }
    }
    check(unlink_at(AT_FDCWD, &z, AT_REMOVEDIR), path)?;
    Ok(0)
}

/// Creates the directory `path` with `mode` and its missing parents with
/// 0o755; an existing directory (or symlink to one) is fine.
fn make_dirs(mut path: &[u8], mode: u32) -> Outcome<()> {
    while path.len() > 1 && path.ends_with(b"/") {
        path = &path[..path.len() - 1];
    }
    let ends =
        (1..=path.len()).filter(|&i| i == path.len() || (path[i] == b'/' && path[i - 1] != b'/'));
    for end in ends {
        let last = end == path.len();
        let prefix = nul(&path[..end]);
        let r = mkdir_at(AT_FDCWD, &prefix, if last { mode } else { 0o755 });
        let is_dir = || stat_at(AT_FDCWD, &prefix, 0).is_ok_and(|s| kind_of(&s) == DIR);
        if r < 0 && !is_dir() {
            let errno = if r == -EEXIST && !last { ENOTDIR } else { -r };
            return Err(failed(errno, &path[..end]));
        }
        if r == 0 && last {
            // The mode as asked, not as the umask left it.
            check(chmod_at(&prefix, mode), &path[..end])?;
        }
    }
    Ok(())
}

/// Creates `path` and its parents (0o755), then what stdin's records
/// describe below it, up to the end record. The bytes written to files.
fn unpack(io: &mut Io, path: &[u8]) -> Outcome<u64> {
    make_dirs(path, 0o755)?;
    let flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
    let root = check(open_at(AT_FDCWD, &nul(path), flags, 0), path)? as i32;
    let written = unpack_into(io, root, path);
    close(root);
    written
}

/// Unpacks records into the directory `root` (at `path`). A directory's mode
/// and mtime are set once a record outside it comes (or the end), so that a
/// read-only directory can be filled first.
fn unpack_into(io: &mut Io, root: i32, path: &[u8]) -> Outcome<u64> {
    // The directories unpacked that enclose the current record: name, mode, times.
    let mut open: Vec<(Vec<u8>, u32, [i64; 4])> = Vec::new();
    let mut written = 0;
    loop {
        let ended = || failed(EPIPE, path);
        let kind = io.number(1).ok_or_else(ended)? as u8;
        let mode = io.number(4).ok_or_else(ended)? as u32;
        let size = io.number(8).ok_or_else(ended)?;
        let seconds = io.number(8).ok_or_else(ended)? as i64;
        let nanoseconds = io.number(4).ok_or_else(ended)? as i64;
        let name = io.field(path)?;
        let target = io.field(path)?;
        if kind > OTHER || mode > 0o7777 {
            return Err(Failure::Malformed);
        }
        let name = if kind == END { Vec::new() } else { name };
        while let Some((dir, dir_mode, times)) = open.pop() {
            if name.starts_with(&dir) && name.get(dir.len()) == Some(&b'/') {
                open.push((dir, dir_mode, times));
                break;
            }
            let z = nul(&dir);
            let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
            let fd = check(open_at(root, &z, flags, 0), &join(path, &dir))? as i32;
            let r = call(SYS_FCHMOD, fd as usize, dir_mode as usize, 0);
            set_times(fd, b"", &times, 0);
            close(fd);
            check(r, &join(path, &dir))?;
        }
        if kind == END {
            return Ok(written);
        }
        let full = join(path, &name);
        let valid = !name.contains(&0)
            && !target.contains(&0)
            && name
                .split(|&b| b == b'/')
                .all(|part| !part.is_empty() && part != b"." && part != b"..");
        if !valid || kind == OTHER {
            return Err(failed(EINVAL, &full));
        }
        // Nothing is created through a symlink (made by this archive or not).
        for (i, _) in name.iter().enumerate().filter(|&(_, &b)| b == b'/') {
            match stat_at(root, &nul(&name[..i]), AT_SYMLINK_NOFOLLOW) {
                Ok(stat) if kind_of(&stat) == LINK => return Err(failed(ELOOP, &full)),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let z = nul(&name);
        let times = [0, UTIME_OMIT, seconds, nanoseconds];
        let is_dir = || stat_at(root, &z, AT_SYMLINK_NOFOLLOW).is_ok_and(|s| kind_of(&s) == DIR);
        match kind {
            FILE => {
                let flags = O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC;
                let fd = check(open_at(root, &z, flags, 0o600), &full)? as i32;
                let copied = io.copy(fd, size).and_then(|()| {
                    let r = call(SYS_FCHMOD, fd as usize, mode as usize, 0);
                    if r < 0 { Err(-r) } else { Ok(()) }
                });
                set_times(fd, b"", &times, 0);
                close(fd);
                copied.map_err(|e| failed(e, &full))?;
                written += size;
            }
            DIR => {
                let r = mkdir_at(root, &z, 0o700);
                if r < 0 && !(r == -EEXIST && is_dir()) {
                    return Err(failed(-r, &full));
                }
                open.push((name, mode, times));
            }
            _ => {
                let target = nul(&target);
                let mut r = symlink_at(&target, root, &z);
                if r == -EEXIST && !is_dir() {
                    unlink_at(root, &z, 0);
                    r = symlink_at(&target, root, &z);
                }
                check(r, &full)?;
                set_times(root, &z, &times, AT_SYMLINK_NOFOLLOW);
            }
        }
    }
}

/// Stdin through a buffer, and records to stdout through another.
struct Io {
    input: Vec<u8>,
    /// The unread bytes of stdin are `input[at..end]`.
    at: usize,
    end: usize,
    output: Vec<u8>,
}

impl Io {
    /// Reads more of stdin into the buffer; false at its end.
    fn fill(&mut self) -> bool {
        if self.at == self.end {
            (self.at, self.end) = (0, 0);
        } else if self.end == self.input.len() {
            self.input.copy_within(self.at..self.end, 0);
            (self.at, self.end) = (0, self.end - self.at);
        }
        loop {
            match read(0, &mut self.input[self.end..]) {
                n if n == -EAGAIN => wait_ready(0, POLLIN),
                n if n > 0 => {
                    self.end += n as usize;
                    return true;
                }
                _ => return false,
            }
        }
    }

    /// The next `n` bytes of stdin (`n` at most [`CHUNK`]); None if it ends first.
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        while self.end - self.at < n {
            if !self.fill() {
                return None;
            }
        }
        self.at += n;
        Some(&self.input[self.at - n..self.at])
    }

    /// The next integer of `n` bytes on stdin; None if it ends first.
    fn number(&mut self, n: usize) -> Option<u64> {
        let bytes = self.take(n)?;
        Some(bytes.iter().rev().fold(0, |v, &b| v << 8 | u64::from(b)))
    }

    /// An integer of the request's head.
    fn head(&mut self, n: usize) -> Outcome<u64> {
        self.number(n).ok_or(Failure::Malformed)
    }

    /// A path of the request's head: 1 to [`MAX_PATH`] bytes, no NUL.
    fn path(&mut self) -> Outcome<Vec<u8>> {
        let len = self.head(4)? as usize;
        match self.take(len.min(MAX_PATH + 1)) {
            Some(path) if !path.is_empty() && path.len() <= MAX_PATH && !path.contains(&0) => {
                Ok(path.to_vec())
            }
            _ => Err(Failure::Malformed),
        }
    }

    /// A permission mode of the request's head.
    fn mode(&mut self) -> Outcome<u32> {
        match self.head(4)? {
            mode if mode <= 0o7777 => Ok(mode as u32),
            _ => Err(Failure::Malformed),
        }
    }

    /// Flags of the request's head, only those in `known`.
    fn flags(&mut self, known: u32) -> Outcome<u32> {
        match self.head(4)? as u32 {
            flags if flags & !known == 0 => Ok(flags),
            _ => Err(Failure::Malformed),
        }
    }

    /// A length-prefixed field of a record unpacked into `path`: EINVAL
    /// beyond [`MAX_PATH`] bytes (not read), EPIPE if stdin ends first.
    fn field(&mut self, path: &[u8]) -> Outcome<Vec<u8>> {
        let len = self.number(4).ok_or_else(|| failed(EPIPE, path))? as usize;
        if len > MAX_PATH {
            return Err(failed(EINVAL, path));
        }
        Ok(self.take(len).ok_or_else(|| failed(EPIPE, path))?.to_vec())
    }

    /// Moves `len` bytes of stdin to `fd`: EPIPE if stdin ends first, else
    /// the errno of a failed write.
    fn copy(&mut self, fd: i32, mut len: u64) -> Result<(), isize> {
        while len > 0 {
            if self.at == self.end && !self.fill() {
                return Err(EPIPE);
            }
            let n = ((self.end - self.at) as u64).min(len) as usize;
            put(fd, &self.input[self.at..self.at + n])?;
            self.at += n;
            len -= n as u64;
        }
        Ok(())
    }

    /// Queues `bytes` for stdout.
    fn out(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
        if self.output.len() >= OUT_BUFFER {
            self.flush();
        }
    }

    /// Writes what is queued for stdout; exits (3, quietly) if stdout is gone.
    fn flush(&mut self) {
        stdout(&self.output);
        self.output.clear();
    }

    /// Queues the record of an entry named `name`.
    fn record(&mut self, stat: &Stat, name: &[u8], target: &[u8]) {
        let kind = kind_of(stat);
        let size = match kind {
            FILE => stat.size,
            LINK => target.len() as u64,
            _ => 0,
        };
        self.out(&[kind]);
        self.out(&(stat.mode & 0o7777).to_le_bytes());
        self.out(&size.to_le_bytes());
        self.out(&stat.seconds.to_le_bytes());
        self.out(&stat.nanoseconds.to_le_bytes());
        for field in [name, target] {
            self.out(&(field.len() as u32).to_le_bytes());
            self.out(field);
        }
    }

    /// Sends up to `len` bytes of `fd` from its position to stdout, with
    /// sendfile(2) where the kernel can, else by reading and writing; with
    /// `pad`, zeros make up for a file that ends early. The count sent, or
    /// the file's errno.
    fn send(&mut self, fd: i32, len: u64, pad: bool) -> Result<u64, isize> {
        self.flush();
        let mut sent = 0;
        // Empty while sendfile works; the copy buffer once it does not.
        let mut buf = Vec::new();
        while sent < len {
            let want = (len - sent).min(CHUNK as u64) as usize;
            let n = if buf.is_empty() {
                // SAFETY: no offset pointer; the file's position is used.
                unsafe { syscall(SYS_SENDFILE, 1, fd as usize, 0, want) }
            } else {
                let n = read(fd, &mut buf[..want]);
                if n > 0 {
                    stdout(&buf[..n as usize]);
                }
                n
            };
            match n {
                n if n > 0 => sent += n as u64,
                0 => break,
                n if buf.is_empty() && (n == -EINVAL || n == -ENOSYS) => {
                    buf = alloc::vec![0; CHUNK];
                }
                n if n == -EAGAIN => wait_ready(1, POLLOUT),
                n if n == -EPIPE => exit(3),
                n => return Err(-n),
            }
        }
        if pad && sent < len {
            let zeros = alloc::vec![0; (len - sent).min(CHUNK as u64) as usize];
            while sent < len {
                let n = (len - sent).min(zeros.len() as u64) as usize;
                stdout(&zeros[..n]);
                sent += n as u64;
            }
        }
        Ok(sent)
    }
}

/// Writes all of `buf` to stdout; exits (3, quietly) if it is gone.
fn stdout(buf: &[u8]) {
    if put(1, buf).is_err() {
        exit(3);
    }
}

/// Writes all of `buf` to `fd`, waiting while it is full; the errno if it fails.
fn put(fd: i32, mut buf: &[u8]) -> Result<(), isize> {
    while !buf.is_empty() {
        match write(fd, buf) {
            n if n > 0 => buf = &buf[n as usize..],
            n if n == -EAGAIN => wait_ready(fd, POLLOUT),
            0 => return Err(EIO),
            n => return Err(-n),
        }
    }
    Ok(())
}

/// Waits until `fd` is ready for `events`.
fn wait_ready(fd: i32, events: i16) {
    // struct pollfd: fd (i32), then events and revents (i16 each, little endian).
    let mut poll = [fd, i32::from(events)];
    // SAFETY: `poll` is one pollfd.
    unsafe { syscall(SYS_POLL, poll.as_mut_ptr() as usize, 1, usize::MAX, 0) };
}

/// A depth-first walk below a directory that never follows symlinks: one
/// open directory per level, each read a buffer of entries at a time.
struct Walk {
    levels: Vec<Level>,
    /// The path, relative to the walk's root, of the last entry (or of the
    /// directory last left, or whose reading failed).
    rel: Vec<u8>,
}

/// A directory of a walk, read a buffer of entries at a time.
struct Level {
    fd: i32,
    /// Its name in its parent, NUL-terminated (empty for the root).
    name: Vec<u8>,
    /// The length of `Walk::rel` for the directory itself.
    base: usize,
    /// A getdents64 buffer, read up to `at` of `len`.
    entries: Vec<u8>,
    at: usize,
    len: usize,
}

/// What a walk comes to next.
enum Step {
    /// An entry of [`Walk::dir`]: its name, NUL-terminated, and lstat.
    Entry(Vec<u8>, Stat),
    /// The end of an entered directory, named (NUL-terminated) in what is
    /// [`Walk::dir`] again.
    Left(Vec<u8>),
    /// The end of the root.
    End,
}

impl Walk {
    /// A walk below the directory `path`; a symlink to one is followed only
    /// if `follow` (else ENOTDIR). Symlinks below it are never followed.
    fn open(path: &[u8], follow: bool) -> Outcome<Walk> {
        let z = nul(path);
        let no_follow = if follow { 0 } else { AT_SYMLINK_NOFOLLOW };
        let stat = stat_at(AT_FDCWD, &z, no_follow).map_err(|e| failed(e, path))?;
        if kind_of(&stat) != DIR {
            return Err(failed(ENOTDIR, path));
        }
        let no_follow = if follow { 0 } else { O_NOFOLLOW };
        let flags = O_RDONLY | O_DIRECTORY | no_follow | O_CLOEXEC;
        let fd = check(open_at(AT_FDCWD, &z, flags, 0), path)? as i32;
        let mut walk = Walk {
            levels: Vec::new(),
            rel: Vec::new(),
        };
        walk.push(fd, Vec::new());
        Ok(walk)
    }

    fn push(&mut self, fd: i32, name: Vec<u8>) {
        self.levels.push(Level {
            fd,
            name,
            base: self.rel.len(),
            entries: alloc::vec![0; 4096],
            at: 0,
            len: 0,
        });
    }

    /// The directory of the last entry.
    fn dir(&self) -> i32 {
        self.levels.last().map_or(-1, |level| level.fd)
    }

    /// How many directories deep the last entry is (1: in the root).
    fn depth(&self) -> usize {
        self.levels.len()
    }

    /// `Walk::rel` below `path`, for errors.
    fn at(&self, path: &[u8]) -> Vec<u8> {
        join(path, &self.rel)
    }

    /// Enters the directory of the last entry, named `name`: its entries come
    /// next. ELOOP beyond [`MAX_DEPTH`].
    fn enter(&mut self, name: &[u8]) -> Result<(), isize> {
        if self.levels.len() >= MAX_DEPTH {
            return Err(ELOOP);
        }
        let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
        let fd = open_at(self.dir(), name, flags, 0);
        if fd < 0 {
            return Err(-fd);
        }
        self.push(fd as i32, name.to_vec());
        Ok(())
    }

    /// The next step, or the errno of reading a directory or an entry.
    fn next(&mut self) -> Result<Step, isize> {
        loop {
            let Some(level) = self.levels.last_mut() else {
                return Ok(Step::End);
            };
            self.rel.truncate(level.base);
            if level.at >= level.len {
                // SAFETY: `entries` is valid for its length.
                let n = unsafe {
                    syscall(
                        SYS_GETDENTS64,
                        level.fd as usize,
                        level.entries.as_mut_ptr() as usize,
                        level.entries.len(),
                        0,
                    )
                };
                if n < 0 {
                    return Err(-n);
                }
                (level.at, level.len) = (0, n as usize);
                if n > 0 {
                    continue;
                }
                close(level.fd);
                let name = core::mem::take(&mut level.name);
                self.levels.pop();
                return Ok(if self.levels.is_empty() {
                    Step::End
                } else {
                    Step::Left(name)
                });
            }
            // struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name.
            let entry = &level.entries[level.at..level.len];
            let reclen = usize::from(u16::from_le_bytes([entry[16], entry[17]]));
            level.at += reclen.max(1);
            let name = &entry[19..reclen.min(entry.len())];
            let Some(end) = name.iter().position(|&b| b == 0) else {
                continue;
            };
            if name[..end] == b"."[..] || name[..end] == b".."[..] {
                continue;
            }
            let name = name[..=end].to_vec();
            match stat_at(level.fd, &name, AT_SYMLINK_NOFOLLOW) {
                // Removed since it was listed.
                Err(ENOENT) => continue,
                stat => {
                    if !self.rel.is_empty() {
                        self.rel.push(b'/');
                    }
                    self.rel.extend_from_slice(&name[..end]);
                    return stat.map(|stat| Step::Entry(name, stat));
                }
            }
        }
    }
}

/// What lstat (or stat) says of an entry.
struct Stat {
    device: u64,
    inode: u64,
    links: u64,
    mode: u32,
    size: u64,
    /// 512-byte blocks allocated.
    blocks: u64,
    /// Last modification: seconds and nanoseconds.
    seconds: i64,
    nanoseconds: u32,
    /// Last status change, in nanoseconds since the epoch.
    changed_ns: i64,
}

/// The record kind of an entry.
fn kind_of(stat: &Stat) -> u8 {
    match stat.mode & 0o170000 {
        0o100000 => FILE,
        0o040000 => DIR,
        0o120000 => LINK,
        _ => OTHER,
    }
}

/// newfstatat(2) of the NUL-terminated `path` in `dir`, or the errno.
fn stat_at(dir: i32, path: &[u8], flags: usize) -> Result<Stat, isize> {
    // struct stat, in u64 words: dev 0, ino 1, nlink 2, mode (u32) 3, size 6,
    // blocks 8, mtime 11 and 12, ctime 13 and 14 (seconds, nanoseconds).
    let mut buf = [0u64; 18];
    // SAFETY: `path` is NUL-terminated; `buf` holds a struct stat (144 bytes).
    let r = unsafe {
        syscall(
            SYS_NEWFSTATAT,
            dir as usize,
            path.as_ptr() as usize,
            buf.as_mut_ptr() as usize,
            flags,
        )
    };
    if r < 0 {
        return Err(-r);
    }
    Ok(Stat {
        device: buf[0],
        inode: buf[1],
        links: buf[2],
        mode: buf[3] as u32,
        size: buf[6],
        blocks: buf[8],
        seconds: buf[11] as i64,
        nanoseconds: buf[12] as u32,
        changed_ns: (buf[13] as i64)
            .saturating_mul(1_000_000_000)
            .saturating_add(buf[14] as i64),
    })
}

/// The target of the symlink `path` in `dir` if `stat` is one's, else empty.
fn target_of(dir: i32, path: &[u8], stat: &Stat) -> Result<Vec<u8>, isize> {
    if kind_of(stat) != LINK {
        return Ok(Vec::new());
    }
    let mut target = alloc::vec![0; MAX_PATH];
    // SAFETY: `path` is NUL-terminated; `target` is valid for its length.
    let n = unsafe {
        syscall(
            SYS_READLINKAT,
            dir as usize,
            path.as_ptr() as usize,
            target.as_mut_ptr() as usize,
            target.len(),
        )
    };
    if n < 0 {
        return Err(-n);
    }
    target.truncate(n as usize);
    Ok(target)
}

/// Sets the times (two timespecs: access, modification) of `path` in `dir`,
/// or of the open file `dir` if `path` is empty; best effort.
fn set_times(dir: i32, path: &[u8], times: &[i64; 4], flags: usize) {
    let path = if path.is_empty() {
        0
    } else {
        path.as_ptr() as usize
    };
    // SAFETY: `path` is null or NUL-terminated; `times` holds two timespecs.
    unsafe {
        syscall(
            SYS_UTIMENSAT,
            dir as usize,
            path,
            times.as_ptr() as usize,
            flags,
        )
    };
}

/// chmod(2) of the NUL-terminated `path` (following a symlink).
fn chmod_at(path: &[u8], mode: u32) -> isize {
    at_path(SYS_FCHMODAT, AT_FDCWD, path, mode as usize)
}

/// mkdirat(2) of the NUL-terminated `path`.
fn mkdir_at(dir: i32, path: &[u8], mode: u32) -> isize {
    at_path(SYS_MKDIRAT, dir, path, mode as usize)
}

/// unlinkat(2) of the NUL-terminated `path`.
fn unlink_at(dir: i32, path: &[u8], flags: usize) -> isize {
    at_path(SYS_UNLINKAT, dir, path, flags)
}

/// A `*at` system call `number` on the NUL-terminated `path` in `dir`, with
/// one more argument.
fn at_path(number: usize, dir: i32, path: &[u8], argument: usize) -> isize {
    // SAFETY: `path` is NUL-terminated; the calls used take no other pointer.
    unsafe { syscall(number, dir as usize, path.as_ptr() as usize, argument, 0) }
}

/// symlinkat(2): a symlink `path` in `dir` to `target`, both NUL-terminated.
fn symlink_at(target: &[u8], dir: i32, path: &[u8]) -> isize {
    // SAFETY: `target` and `path` are NUL-terminated.
    unsafe {
        syscall(
            SYS_SYMLINKAT,
            target.as_ptr() as usize,
            dir as usize,
            path.as_ptr() as usize,
            0,
        )
    }
}

/// Renames the NUL-terminated `from` to `to`; with `no_replace`, EEXIST if
/// `to` exists (renameat2, RENAME_NOREPLACE).
fn rename(from: &[u8], to: &[u8], no_replace: bool) -> isize {
    let (from, to) = (from.as_ptr() as usize, to.as_ptr() as usize);
    // SAFETY: `from` and `to` are NUL-terminated.
    unsafe {
        if no_replace {
            let cwd = AT_FDCWD as usize;
            syscall6(SYS_RENAMEAT2, cwd, from, cwd, to, 1, 0)
        } else {
            syscall(SYS_RENAME, from, to, 0, 0)
        }
    }
}

/// `bytes` and a NUL.
fn nul(bytes: &[u8]) -> Vec<u8> {
    let mut z = Vec::with_capacity(bytes.len() + 1);
    z.extend_from_slice(bytes);
    z.push(0);
    z
}

/// `rel` below `base` (`base` itself if `rel` is empty).
fn join(base: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut path = base.to_vec();
    if !rel.is_empty() {
        if !path.ends_with(b"/") {
            path.push(b'/');
        }
        path.extend_from_slice(rel);
    }
    path
}
