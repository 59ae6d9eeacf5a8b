//! The agent's daemon: one thread, one epoll loop over its socket, its
//! sessions, its processes' pipes and a signalfd for SIGCHLD.
//!
//! Flow control, so that no side needs memory beyond fixed bounds:
//! - output: a process's pipe is read while its kept output holds less than
//!   [`OUTPUT_KEPT`] bytes the attached session has not acknowledged (with no
//!   session attached it is always read and the oldest output dropped); at
//!   most [`OUTPUT_WINDOW`] unacknowledged bytes per stream are sent; a
//!   session whose socket is backed up gets no more output until it drains.
//! - stdin: the client keeps at most [`STDIN_WINDOW`] bytes unconfirmed.
//!
//! A process's end is sent once it has exited and its output up to then was
//! sent: after the exit its pipes are read until empty and closed, so output
//! of processes it left behind in the background is not waited for.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use sandlot_wire::{
    Event, Exit, HEADER_LEN, Header, MAX_PAYLOAD, OLDEST_VERSION, OUTPUT_CHUNK, OUTPUT_KEPT,
    OUTPUT_WINDOW, ProcessEntry, Request, START_DETACHED, START_STDIN, START_TTY, STDERR, STDOUT,
    Start, VERSION,
};

use crate::sys::*;

/// Ended processes kept for listing and attaching, oldest forgotten first.
const ENDED_KEPT: usize = 64;
/// Output bytes queued on a session's socket beyond which no more output is produced for it.
const SOCKET_BACKLOG: usize = 256 * 1024;
/// Where commands are looked up when the environment has no `PATH`.
const DEFAULT_PATH: &[u8] = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The environment variable that tags every process a command starts, so a
/// tree kill finds those that left its process group.
const TAG_NAME: &[u8] = b"SANDLOT_PROCESS=";

const EPOLLIN: u32 = 1;
const EPOLLOUT: u32 = 4;

// What an epoll event is about: the kind in the high 32 bits, an id below.
const LISTENER: u64 = 1;
const SIGNALS: u64 = 2;
const SESSION: u64 = 3;
const PROCESS_OUT: u64 = 4;
const PROCESS_ERR: u64 = 5;
const PROCESS_IN: u64 = 6;

fn token(kind: u64, id: u32) -> u64 {
    kind << 32 | u64::from(id)
}

struct Epoll(i32);

impl Epoll {
    fn control(&self, op: usize, fd: i32, events: u32, data: u64) {
        // struct epoll_event is packed on x86-64: events (u32), data (u64).
        let mut event = [0u8; 12];
        event[..4].copy_from_slice(&events.to_le_bytes());
        event[4..].copy_from_slice(&data.to_le_bytes());
        // SAFETY: `event` is an epoll_event.
        unsafe {
            syscall(
                SYS_EPOLL_CTL,
                self.0 as usize,
                op,
                fd as usize,
                event.as_ptr() as usize,
            )
        };
    }
    fn add(&self, fd: i32, events: u32, data: u64) {
        self.control(1, fd, events, data);
    }
    fn set(&self, fd: i32, events: u32, data: u64) {
        self.control(3, fd, events, data);
    }
    fn remove(&self, fd: i32) {
        self.control(2, fd, 0, 0);
    }
}

/// One output stream of a process: its pipe and its recent output.
struct Output {
    fd: i32,
    /// The events the pipe is watched for (EPOLLIN while it may be read; on
    /// a terminal also EPOLLOUT while input waits for it).
    watched: u32,
    kept: VecDeque<u8>,
    /// The offset of the first kept byte.
    start: u64,
    /// What the attached session has been sent and has acknowledged.
    sent: u64,
    acked: u64,
}

impl Output {
    fn new(fd: i32) -> Self {
        Output {
            fd,
            watched: if fd >= 0 { EPOLLIN } else { 0 },
            kept: VecDeque::new(),
            start: 0,
            sent: 0,
            acked: 0,
        }
    }
    fn end(&self) -> u64 {
        self.start + self.kept.len() as u64
    }
    /// How much may be read now: unbounded with nobody attached (the oldest
    /// output is dropped), else what keeps unacknowledged output in bounds.
    fn room(&self, attached: bool) -> usize {
        if !attached {
            return OUTPUT_CHUNK;
        }
        let unacked = self.end() - self.acked.min(self.end());
        (OUTPUT_KEPT.saturating_sub(unacked) as usize).min(OUTPUT_CHUNK)
    }
    fn push(&mut self, data: &[u8]) {
        self.kept.extend(data);
        let over = self.kept.len().saturating_sub(OUTPUT_KEPT as usize);
        if over > 0 {
            self.kept.drain(..over);
            self.start += over as u64;
        }
    }
}

struct Process {
    pid: i32,
    flags: u8,
    command: Vec<u8>,
    tag: Vec<u8>,
    outputs: [Output; 2],
    stdin: i32,
    stdin_queue: VecDeque<u8>,
    stdin_taken: u64,
    stdin_close: bool,
    exit: Option<Exit>,
    /// The session that gets its output, if any.
    session: Option<u32>,
    exit_sent: bool,
    /// The order in which processes ended, for forgetting the oldest.
    ended_at: u64,
}

struct Session {
    fd: i32,
    /// The protocol agreed in its hello (1 until then).
    version: u32,
    input: Vec<u8>,
    /// Frames for the client; those before `written` are sent.
    output: Vec<u8>,
    written: usize,
    /// Whether the socket is watched for writability.
    writing: bool,
}

struct Daemon {
    epoll: Epoll,
    envp: *const *const u8,
    sessions: BTreeMap<u32, Session>,
    processes: BTreeMap<u32, Process>,
    next_id: u32,
    ends: u64,
    signals: i32,
    /// The daemon's pid, for process tags.
    pid: u32,
}

/// The most read from a session at once.
const SESSION_READ: usize = 1 << 20;

/// Runs the daemon; returns only by exiting.
pub fn run(envp: *const *const u8) -> ! {
    let listener = call(SYS_SOCKET, 1, 1 | O_NONBLOCK | O_CLOEXEC, 0);
    if listener < 0 {
        exit(1);
    }
    let (address, len) = crate::socket_address();
    // SAFETY: `address` is a sockaddr_un of `len` bytes.
    let bound = unsafe {
        syscall(
            SYS_BIND,
            listener as usize,
            address.as_ptr() as usize,
            len,
            0,
        )
    };
    if bound < 0 {
        // Another daemon runs (a session that raced this one started it).
        exit(0);
    }
    call(SYS_LISTEN, listener as usize, 64, 0);
    // Orphans of the commands are re-parented here and reaped.
    call(SYS_PRCTL, 36, 1, 0); // PR_SET_CHILD_SUBREAPER
    set_disposition(SIGPIPE, 1);
    let chld = 1u64 << (SIGCHLD - 1);
    sigprocmask(0, chld);
    // SAFETY: `chld` is an 8-byte signal set.
    let signals = unsafe {
        syscall(
            SYS_SIGNALFD4,
            usize::MAX,
            &chld as *const u64 as usize,
            8,
            O_NONBLOCK | O_CLOEXEC,
        )
    };
    let epoll = Epoll(call(SYS_EPOLL_CREATE1, O_CLOEXEC, 0, 0) as i32);
    if epoll.0 < 0 || signals < 0 {
        exit(1);
    }
    epoll.add(listener as i32, EPOLLIN, token(LISTENER, 0));
    epoll.add(signals as i32, EPOLLIN, token(SIGNALS, 0));
    let mut daemon = Daemon {
        epoll,
        envp,
        sessions: BTreeMap::new(),
        processes: BTreeMap::new(),
        next_id: 1,
        ends: 0,
        signals: signals as i32,
        pid: call(SYS_GETPID, 0, 0, 0) as u32,
    };
    let mut events = [0u8; 12 * 64];
    loop {
        // SAFETY: `events` holds 64 epoll_event.
        let n = unsafe {
            syscall(
                SYS_EPOLL_WAIT,
                daemon.epoll.0 as usize,
                events.as_mut_ptr() as usize,
                64,
                usize::MAX,
            )
        };
        if n < 0 {
            continue;
        }
        for event in events.chunks_exact(12).take(n as usize) {
            let flags = u32::from_le_bytes([event[0], event[1], event[2], event[3]]);
            let mut data = [0u8; 8];
            data.copy_from_slice(&event[4..]);
            let data = u64::from_le_bytes(data);
            let id = data as u32;
            match data >> 32 {
                LISTENER => daemon.accept(listener as i32),
                SIGNALS => daemon.reap(),
                SESSION => daemon.session_ready(id, flags),
                PROCESS_OUT => {
                    if flags & EPOLLOUT != 0 {
                        daemon.feed_stdin(id); // a terminal that takes input again
                    }
                    if flags & !EPOLLOUT != 0 {
                        daemon.read_output(id, 0);
                    }
                }
                PROCESS_ERR => daemon.read_output(id, 1),
                PROCESS_IN => daemon.feed_stdin(id),
                _ => {}
            }
        }
        daemon.pump();
    }
}

impl Daemon {
    fn accept(&mut self, listener: i32) {
        loop {
            let fd = call(SYS_ACCEPT4, listener as usize, 0, O_NONBLOCK | O_CLOEXEC);
            if fd < 0 {
                return;
            }
            let id = self.new_id();
            self.epoll.add(fd as i32, EPOLLIN, token(SESSION, id));
            self.sessions.insert(
                id,
                Session {
                    fd: fd as i32,
                    version: OLDEST_VERSION,
                    input: Vec::new(),
                    output: Vec::new(),
                    written: 0,
                    writing: false,
                },
            );
        }
    }

    fn new_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    fn session_ready(&mut self, id: u32, flags: u32) {
        if flags & EPOLLOUT != 0 {
            self.flush(id);
        }
        if flags & !EPOLLOUT != 0 {
            self.read_session(id);
        }
    }

    /// Reads what a session sent (up to 1 MiB at a time) and handles each
    /// whole frame where it lies, with no copy of its own.
    fn read_session(&mut self, id: u32) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let mut input = core::mem::take(&mut session.input);
        input.reserve(SESSION_READ);
        let spare = input.spare_capacity_mut();
        // SAFETY: read(2) writes at most `spare.len()` bytes into the spare
        // capacity, and only the bytes it wrote are counted in.
        let n = unsafe {
            syscall(
                SYS_READ,
                session.fd as usize,
                spare.as_mut_ptr() as usize,
                spare.len(),
                0,
            )
        };
        if n > 0 {
            // SAFETY: the read initialised these `n` bytes.
            unsafe { input.set_len(input.len() + n as usize) };
        }
        if n == -EAGAIN || n == -EINTR {
            session.input = input;
            return;
        }
        if n <= 0 {
            self.end_session(id);
            return;
        }
        let mut at = 0;
        while input.len() - at >= HEADER_LEN {
            let mut head = [0u8; HEADER_LEN];
            head.copy_from_slice(&input[at..at + HEADER_LEN]);
            let Ok(header) = Header::parse(&head) else {
                self.end_session(id);
                return;
            };
            let total = HEADER_LEN + header.len as usize;
            if input.len() - at < total {
                break;
            }
            let payload = &input[at + HEADER_LEN..at + total];
            at += total;
            match Request::decode(header.kind, payload) {
                Ok(request) => self.handle(id, header.id, request),
                Err(_) => {
                    self.end_session(id);
                    return;
                }
            }
        }
        // What is left is the start of the next frame; the session may have
        // ended while its frames were handled.
        if let Some(session) = self.sessions.get_mut(&id) {
            input.drain(..at);
            session.input = input;
        }
    }

    /// Ends a session; its processes run on, their output kept for a later attach.
    fn end_session(&mut self, id: u32) {
        if let Some(session) = self.sessions.remove(&id) {
            self.epoll.remove(session.fd);
            close(session.fd);
        }
        for process in self.processes.values_mut() {
            if process.session == Some(id) {
                process.session = None;
            }
        }
        let ids: Vec<u32> = self.processes.keys().copied().collect();
        for process in ids {
            self.watch_outputs(process);
        }
    }

    fn send(&mut self, session: u32, id: u32, event: &Event<'_>) {
        if let Some(s) = self.sessions.get_mut(&session) {
            event.encode(id, &mut s.output);
        }
    }

    fn handle(&mut self, session: u32, id: u32, request: Request<'_>) {
        match request {
            Request::Hello { version } => {
                let version = version.clamp(OLDEST_VERSION, VERSION);
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.version = version;
                }
                let pid = self.pid;
                self.send(session, id, &Event::Welcome { version, pid });
            }
            Request::Start(start) => match self.start(session, &start) {
                Ok(process) => self.send(session, id, &Event::Started { process }),
                Err(errno) => self.send(
                    session,
                    id,
                    &Event::Failed {
                        errno: errno as i32,
                        message: b"could not start the process",
                    },
                ),
            },
            Request::Stdin(data) => {
                if let Some(process) = self.processes.get_mut(&id) {
                    if data.is_empty() {
                        process.stdin_close = true;
                    } else if process.stdin >= 0 {
                        process.stdin_queue.extend(data.iter().copied());
                    } else {
                        // Nobody reads it any more: taken and dropped.
                        process.stdin_taken += data.len() as u64;
                    }
                }
                self.feed_stdin(id);
            }
            Request::Signal { signal, tree } => self.signal(id, signal, tree),
            Request::Resize { rows, cols } => {
                if let Some(process) = self.processes.get(&id)
                    && process.flags & START_TTY != 0
                {
                    resize(process.outputs[0].fd, rows, cols);
                }
            }
            Request::Ack { stream, offset } => {
                if let Some(process) = self.processes.get_mut(&id) {
                    let output = &mut process.outputs[usize::from(stream - 1)];
                    output.acked = output.acked.max(offset.min(output.sent));
                }
                self.watch_outputs(id);
            }
            Request::Attach {
                process,
                stdout,
                stderr,
            } => {
                let Some(p) = self.processes.get_mut(&process) else {
                    self.send(
                        session,
                        id,
                        &Event::Failed {
                            errno: ENOENT as i32,
                            message: b"no such process",
                        },
                    );
                    return;
                };
                if p.outputs[0].end() < stdout || p.outputs[1].end() < stderr {
                    self.send(
                        session,
                        id,
                        &Event::Failed {
                            errno: 22, // EINVAL
                            message: b"the offset is beyond the output written so far",
                        },
                    );
                    return;
                }
                let earlier = p.session.replace(session);
                p.exit_sent = false;
                for (output, from) in p.outputs.iter_mut().zip([stdout, stderr]) {
                    output.sent = from;
                    output.acked = from;
                }
                let total = p.stdin_taken;
                let speaks_2 = |s: u32| self.sessions.get(&s).is_some_and(|s| s.version >= 2);
                let counts = speaks_2(session);
                // The reader it had on another connection gets nothing more:
                // told so, if it speaks protocol 2.
                if let Some(earlier) = earlier.filter(|&e| e != session && speaks_2(e)) {
                    self.send(earlier, process, &Event::TakenOver);
                }
                self.send(session, id, &Event::Started { process });
                // A client of protocol 2 counts its stdin from here.
                if counts {
                    self.send(session, process, &Event::StdinTaken { total });
                }
                self.watch_outputs(process);
            }
            Request::Release => {
                if let Some(process) = self.processes.get_mut(&id)
                    && process.session == Some(session)
                {
                    process.session = None;
                }
                self.watch_outputs(id);
            }
            Request::Metrics => {
                self.send(session, id, &Event::Measured(crate::metrics::measure()));
            }
            Request::List => {
                let entries: Vec<ProcessEntry<'_>> = self
                    .processes
                    .iter()
                    .map(|(&id, p)| ProcessEntry {
                        id,
                        pid: p.pid as u32,
                        flags: p.flags,
                        exit: p.exit,
                        stdout_end: p.outputs[0].end(),
                        stderr_end: p.outputs[1].end(),
                        command: &p.command,
                    })
                    .collect();
                let mut frame = Vec::new();
                Event::Processes(entries).encode(id, &mut frame);
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.output.extend_from_slice(&frame);
                }
            }
        }
    }

    /// Starts a process for `session`; its id, or an errno.
    fn start(&mut self, session: u32, start: &Start<'_>) -> Result<u32, isize> {
        let id = self.new_id();
        let mut tag = Vec::from(TAG_NAME);
        push_decimal(&mut tag, u64::from(self.pid));
        tag.push(b'.');
        push_decimal(&mut tag, u64::from(id));
        let launch = Launch::new(start, self.envp, &tag);
        let tty = start.flags & START_TTY != 0;
        let (pid, fds) = if tty {
            launch.spawn_tty(start.rows, start.cols)?
        } else {
            launch.spawn_piped(start.flags & START_STDIN != 0)?
        };
        let [out, err, stdin] = fds;
        let mut command = Vec::new();
        for (i, word) in start.argv.iter().enumerate() {
            if i > 0 {
                command.push(0);
            }
            command.extend_from_slice(word);
        }
        for (fd, kind) in [(out, PROCESS_OUT), (err, PROCESS_ERR)] {
            if fd >= 0 {
                self.epoll.add(fd, EPOLLIN, token(kind, id));
            }
        }
        if stdin >= 0 && !tty {
            // Watched for room only while input waits (see `feed_stdin`).
            self.epoll.add(stdin, 0, token(PROCESS_IN, id));
        }
        self.processes.insert(
            id,
            Process {
                pid,
                flags: start.flags,
                command,
                tag,
                outputs: [Output::new(out), Output::new(err)],
                stdin,
                stdin_queue: VecDeque::new(),
                stdin_taken: 0,
                stdin_close: false,
                exit: None,
                session: Some(session),
                exit_sent: false,
                ended_at: 0,
            },
        );
        Ok(id)
    }

    /// Reads a process's output pipe once, as far as flow control allows.
    fn read_output(&mut self, id: u32, stream: usize) {
        // Not zeroed first: read(2) fills what is used.
        let mut buf = core::mem::MaybeUninit::<[u8; OUTPUT_CHUNK]>::uninit();
        let Some(process) = self.processes.get_mut(&id) else {
            return;
        };
        let attached = process.session.is_some();
        let output = &mut process.outputs[stream];
        let room = output.room(attached);
        if output.fd < 0 || room == 0 {
            self.watch_outputs(id);
            return;
        }
        let n = loop {
            // SAFETY: `buf` holds OUTPUT_CHUNK bytes and `room` is at most that.
            let n = unsafe {
                syscall(
                    SYS_READ,
                    output.fd as usize,
                    buf.as_mut_ptr() as usize,
                    room,
                    0,
                )
            };
            if n != -EINTR {
                break n;
            }
        };
        if n == -EAGAIN {
            return;
        }
        if n <= 0 {
            // EOF, or EIO from a terminal whose other side closed.
            self.close_output(id, stream);
            return;
        }
        // SAFETY: read(2) initialised the first `n` bytes.
        let data = unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
        output.push(data);
        if output.sent < output.start {
            output.sent = output.start;
            output.acked = output.acked.max(output.start);
        }
    }

    fn close_output(&mut self, id: u32, stream: usize) {
        if let Some(process) = self.processes.get_mut(&id) {
            let output = &mut process.outputs[stream];
            if output.fd >= 0 {
                if output.watched != 0 {
                    self.epoll.remove(output.fd);
                }
                close(output.fd);
                if process.flags & START_TTY != 0 && process.stdin == output.fd {
                    process.stdin = -1;
                }
                output.fd = -1;
                output.watched = 0;
            }
        }
    }

    /// Watches or unwatches each output pipe of a process as flow control allows.
    fn watch_outputs(&mut self, id: u32) {
        let Some(process) = self.processes.get_mut(&id) else {
            return;
        };
        let attached = process.session.is_some();
        // A terminal's input goes to the same descriptor as its output.
        let input_waits = process.flags & START_TTY != 0 && !process.stdin_queue.is_empty();
        for (stream, output) in process.outputs.iter_mut().enumerate() {
            if output.fd < 0 {
                continue;
            }
            let mut want = if output.room(attached) > 0 {
                EPOLLIN
            } else {
                0
            };
            if stream == 0 && input_waits {
                want |= EPOLLOUT;
            }
            if want != output.watched {
                let kind = if stream == 0 {
                    PROCESS_OUT
                } else {
                    PROCESS_ERR
                };
                self.epoll.set(output.fd, want, token(kind, id));
                output.watched = want;
            }
        }
    }

    /// Writes queued stdin to a process as far as its pipe takes it.
    fn feed_stdin(&mut self, id: u32) {
        let Some(process) = self.processes.get_mut(&id) else {
            return;
        };
        let before = process.stdin_taken;
        while process.stdin >= 0 && !process.stdin_queue.is_empty() {
            let (front, _) = process.stdin_queue.as_slices();
            let n = write(process.stdin, front);
            if n == -EAGAIN {
                break;
            }
            if n <= 0 {
                // The process closed its stdin: what is left is dropped.
                process.stdin_taken += process.stdin_queue.len() as u64;
                process.stdin_queue.clear();
                break;
            }
            process.stdin_queue.drain(..n as usize);
            process.stdin_taken += n as u64;
        }
        let tty = process.flags & START_TTY != 0;
        if process.stdin >= 0 && !tty {
            let pending = !process.stdin_queue.is_empty();
            if process.stdin_close && !pending {
                self.epoll.remove(process.stdin);
                close(process.stdin);
                process.stdin = -1;
            } else {
                self.epoll.set(
                    process.stdin,
                    if pending { EPOLLOUT } else { 0 },
                    token(PROCESS_IN, id),
                );
            }
        } else if tty && process.stdin_close && process.stdin_queue.is_empty() {
            // A terminal has no end of input but the EOF character.
            if process.stdin >= 0 {
                write(process.stdin, b"\x04");
            }
            process.stdin_close = false;
        }
        let (total, session) = (process.stdin_taken, process.session);
        if tty {
            self.watch_outputs(id);
        }
        if total != before
            && let Some(session) = session
        {
            self.send(session, id, &Event::StdinTaken { total });
        }
    }

    /// Sends `signal` to a process, or to its whole tree.
    fn signal(&mut self, id: u32, signal: u8, tree: bool) {
        let Some(process) = self.processes.get(&id) else {
            return;
        };
        let signal = usize::from(signal);
        if process.exit.is_none() {
            call(SYS_KILL, process.pid as usize, signal, 0);
        }
        if !tree {
            return;
        }
        // Its process group (it leads one), then whatever carries its tag in
        // another group; a few rounds catch processes forked meanwhile.
        call(SYS_KILL, (-process.pid) as usize, signal, 0);
        let tag = process.tag.clone();
        for _ in 0..5 {
            if kill_tagged(&tag, signal) == 0 {
                break;
            }
        }
    }

    /// Reaps every child that ended and records the ends of our processes.
    fn reap(&mut self) {
        let mut info = [0u8; 128];
        while read(self.signals, &mut info) > 0 {}
        loop {
            let mut status = 0i32;
            // SAFETY: `status` is an int.
            let pid = unsafe {
                syscall(
                    SYS_WAIT4,
                    usize::MAX,
                    &mut status as *mut i32 as usize,
                    1,
                    0,
                )
            };
            if pid <= 0 {
                return;
            }
            let exit = if status & 0x7f == 0 {
                Exit::Code((status >> 8) as u8)
            } else {
                Exit::Signal((status & 0x7f) as u8)
            };
            let found = self
                .processes
                .iter()
                .find(|(_, p)| p.pid as isize == pid && p.exit.is_none())
                .map(|(&id, _)| id);
            if let Some(id) = found {
                self.ends += 1;
                let ends = self.ends;
                if let Some(process) = self.processes.get_mut(&id) {
                    process.exit = Some(exit);
                    process.ended_at = ends;
                }
            }
        }
    }

    /// After any event: drains the pipes of ended processes, sends what flow
    /// control allows, sends ends, forgets what no one will ask for again.
    fn pump(&mut self) {
        let ids: Vec<u32> = self.processes.keys().copied().collect();
        for &id in &ids {
            self.drain_ended(id);
        }
        // Until nothing more is queued: a flush that empties a backed-up
        // socket makes room for output (and ends) that no event would
        // bring back here.
        loop {
            let queued = self.unsent();
            for &id in &ids {
                self.send_output(id);
            }
            let queued_more = self.unsent() != queued;
            let sessions: Vec<u32> = self.sessions.keys().copied().collect();
            for id in sessions {
                self.flush(id);
            }
            if !queued_more {
                break;
            }
        }
        self.forget();
    }

    /// Bytes queued for the sessions and not yet written.
    fn unsent(&self) -> usize {
        self.sessions
            .values()
            .map(|s| s.output.len() - s.written)
            .sum()
    }

    /// Reads what an ended process left in its pipes, then closes them.
    fn drain_ended(&mut self, id: u32) {
        for stream in 0..2 {
            loop {
                let Some(process) = self.processes.get(&id) else {
                    return;
                };
                let output = &process.outputs[stream];
                if process.exit.is_none() || output.fd < 0 {
                    break;
                }
                if output.room(process.session.is_some()) == 0 {
                    break; // read on once acknowledged
                }
                let before = output.end();
                let fd = output.fd;
                self.read_output(id, stream);
                let Some(process) = self.processes.get(&id) else {
                    return;
                };
                if process.outputs[stream].fd == fd && process.outputs[stream].end() == before {
                    // Empty for now: what came before the exit is all read.
                    self.close_output(id, stream);
                }
            }
        }
        self.watch_outputs(id);
    }

    /// Sends an attached process's output within its window, then its end.
    fn send_output(&mut self, id: u32) {
        let Some(process) = self.processes.get_mut(&id) else {
            return;
        };
        let Some(session_id) = process.session else {
            return;
        };
        let Some(session) = self.sessions.get_mut(&session_id) else {
            process.session = None;
            return;
        };
        for (stream, output) in process.outputs.iter_mut().enumerate() {
            let stream = if stream == 0 { STDOUT } else { STDERR };
            if output.sent < output.start {
                Event::Dropped {
                    stream,
                    from: output.sent,
                    to: output.start,
                }
                .encode(id, &mut session.output);
                output.sent = output.start;
                output.acked = output.acked.max(output.start);
            }
            while output.sent < output.end()
                && output.sent - output.acked < OUTPUT_WINDOW
                && session.output.len() - session.written < SOCKET_BACKLOG
            {
                let from = (output.sent - output.start) as usize;
                let window = (OUTPUT_WINDOW - (output.sent - output.acked)) as usize;
                let len = (output.kept.len() - from).min(OUTPUT_CHUNK).min(window);
                let (a, b) = output.kept.as_slices();
                // The chunk's bytes in the first slice, then in the second.
                let in_a = a.len().saturating_sub(from).min(len);
                let from_b = from.saturating_sub(a.len());
                let parts = [
                    &a[from.min(a.len())..from.min(a.len()) + in_a],
                    &b[from_b..from_b + len - in_a],
                ];
                sandlot_wire::encode_output(id, stream, output.sent, parts, &mut session.output);
                output.sent += len as u64;
            }
        }
        let all_sent = process
            .outputs
            .iter()
            .all(|o| o.fd < 0 && o.sent == o.end());
        if let (Some(exit), false, true) = (process.exit, process.exit_sent, all_sent)
            && session.output.len() - session.written < SOCKET_BACKLOG
        {
            Event::Exited(exit).encode(id, &mut session.output);
            process.exit_sent = true;
        }
    }

    /// Writes a session's queued frames as far as its socket takes them.
    fn flush(&mut self, id: u32) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        while session.written < session.output.len() {
            let n = write(session.fd, &session.output[session.written..]);
            if n == -EAGAIN {
                break;
            }
            if n <= 0 {
                self.end_session(id);
                return;
            }
            session.written += n as usize;
        }
        // Written bytes are dropped when all are, or when they are most of it:
        // no moving of what waits after every partial write.
        if session.written == session.output.len() {
            session.output.clear();
            session.written = 0;
        } else if session.written > session.output.len() / 2 {
            session.output.drain(..session.written);
            session.written = 0;
        }
        let want = !session.output.is_empty();
        if want != session.writing {
            let events = if want { EPOLLIN | EPOLLOUT } else { EPOLLIN };
            self.epoll.set(session.fd, events, token(SESSION, id));
            session.writing = want;
        }
    }

    /// Forgets ended processes whose end an attached session received (unless
    /// detached), and the oldest ended beyond [`ENDED_KEPT`].
    fn forget(&mut self) {
        let done: Vec<u32> = self
            .processes
            .iter()
            .filter(|(_, p)| p.exit_sent && p.flags & START_DETACHED == 0)
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            self.remove(id);
        }
        loop {
            let ended: Vec<(u64, u32)> = self
                .processes
                .iter()
                .filter(|(_, p)| p.exit.is_some())
                .map(|(&id, p)| (p.ended_at, id))
                .collect();
            if ended.len() <= ENDED_KEPT {
                return;
            }
            let oldest = ended.iter().min().map(|&(_, id)| id);
            if let Some(id) = oldest {
                self.remove(id);
            }
        }
    }

    fn remove(&mut self, id: u32) {
        self.close_output(id, 0);
        self.close_output(id, 1);
        if let Some(process) = self.processes.remove(&id)
            && process.stdin >= 0
            && process.flags & START_TTY == 0
        {
            self.epoll.remove(process.stdin);
            close(process.stdin);
        }
    }
}

/// Sets a terminal's size.
fn resize(fd: i32, rows: u16, cols: u16) {
    let size = [rows, cols, 0, 0];
    // SAFETY: `size` is a struct winsize.
    unsafe { syscall(SYS_IOCTL, fd as usize, 0x5414, size.as_ptr() as usize, 0) };
}

/// Sends `signal` to every process whose environment holds `tag`, and to the
/// group each one leads; how many were found.
fn kill_tagged(tag: &[u8], signal: usize) -> usize {
    let mut found = 0;
    each_process(|name| {
        if let Some(pid) = parse_pid(name)
            && environ_holds(name, tag)
        {
            call(SYS_KILL, pid, signal, 0);
            call(SYS_KILL, pid.wrapping_neg(), signal, 0);
            found += 1;
        }
    });
    found
}

fn parse_pid(name: &[u8]) -> Option<usize> {
    if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    name.iter().try_fold(0usize, |n, &d| {
        n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    })
}

/// Whether `/proc/PID/environ` holds `tag` as an entry's start.
fn environ_holds(pid: &[u8], tag: &[u8]) -> bool {
    let mut path = Vec::from(&b"/proc/"[..]);
    path.extend_from_slice(pid);
    path.extend_from_slice(b"/environ\0");
    let fd = open(&path, O_RDONLY | O_CLOEXEC);
    if fd < 0 {
        return false;
    }
    let mut environ = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = read(fd as i32, &mut buf);
        if n <= 0 || environ.len() > 1 << 20 {
            break;
        }
        environ.extend_from_slice(&buf[..n as usize]);
    }
    close(fd as i32);
    environ.split(|&b| b == 0).any(|entry| entry == tag)
}

/// Everything a child needs between fork and exec, prepared before the fork
/// so the child allocates nothing.
struct Launch {
    argv: Vec<Vec<u8>>,
    envs: Vec<Vec<u8>>,
    workdir: Vec<u8>,
    /// Candidate paths of the program, NUL-terminated, in `$PATH` order.
    programs: Vec<Vec<u8>>,
}

impl Launch {
    fn new(start: &Start<'_>, envp: *const *const u8, tag: &[u8]) -> Self {
        let nul = |bytes: &[u8]| {
            let mut v = Vec::with_capacity(bytes.len() + 1);
            v.extend_from_slice(bytes);
            v.push(0);
            v
        };
        let name_of = |entry: &[u8]| -> Vec<u8> {
            let end = entry.iter().position(|&b| b == b'=').unwrap_or(entry.len());
            entry[..end].to_vec()
        };
        let mut envs: Vec<Vec<u8>> = Vec::new();
        let overridden = |entry: &[u8]| {
            let name = name_of(entry);
            start.env.iter().any(|e| name_of(e) == name) || name == name_of(tag)
        };
        let mut at = envp;
        // SAFETY: envp is the null-terminated array the kernel gave us.
        unsafe {
            while !(*at).is_null() {
                let entry = crate::c_str(*at);
                if !overridden(entry) {
                    envs.push(nul(entry));
                }
                at = at.add(1);
            }
        }
        envs.extend(start.env.iter().map(|e| nul(e)));
        envs.push(nul(tag));
        let program = start.argv[0];
        let programs = if program.contains(&b'/') {
            alloc::vec![nul(program)]
        } else {
            let path = envs
                .iter()
                .find_map(|e| e.strip_prefix(b"PATH="))
                .map(|p| &p[..p.len() - 1])
                .unwrap_or(DEFAULT_PATH);
            path.split(|&b| b == b':')
                .map(|dir| {
                    let mut candidate = Vec::from(if dir.is_empty() { b"." } else { dir });
                    candidate.push(b'/');
                    candidate.extend_from_slice(program);
                    candidate.push(0);
                    candidate
                })
                .collect()
        };
        Launch {
            argv: start.argv.iter().map(|w| nul(w)).collect(),
            envs,
            workdir: if start.workdir.is_empty() {
                Vec::new()
            } else {
                nul(start.workdir)
            },
            programs,
        }
    }

    /// Forks a child with pipes for its streams: (pid, [stdout, stderr, stdin]).
    fn spawn_piped(&self, stdin: bool) -> Result<(i32, [i32; 3]), isize> {
        let (out_r, out_w) = pipe(0).ok_or(EAGAIN)?;
        let (err_r, err_w) = pipe(0).ok_or(EAGAIN)?;
        let (in_r, in_w) = if stdin {
            pipe(0).ok_or(EAGAIN)?
        } else {
            (open(b"/dev/null\0", O_RDONLY | O_CLOEXEC) as i32, -1)
        };
        let pid = self.fork(|| {
            call(SYS_DUP2, in_r.max(0) as usize, 0, 0);
            if in_r < 0 {
                close(0);
            }
            call(SYS_DUP2, out_w as usize, 1, 0);
            call(SYS_DUP2, err_w as usize, 2, 0);
        });
        for fd in [out_w, err_w, in_r] {
            close(fd);
        }
        for fd in [out_r, err_r, in_w] {
            if fd >= 0 {
                // Non-blocking from here on (pipe2 flags would reach the child's ends too).
                call(SYS_FCNTL, fd as usize, F_SETFL, O_NONBLOCK);
            }
        }
        // Room for a fast writer between two reads.
        call(SYS_FCNTL, out_r as usize, F_SETPIPE_SZ, 1 << 20);
        if in_w >= 0 {
            call(SYS_FCNTL, in_w as usize, F_SETPIPE_SZ, 1 << 20);
        }
        match pid {
            Ok(pid) => Ok((pid, [out_r, err_r, in_w])),
            Err(errno) => {
                for fd in [out_r, err_r, in_w] {
                    close(fd);
                }
                Err(errno)
            }
        }
    }

    /// Forks a child on a new terminal: (pid, [terminal, -1, terminal]).
    fn spawn_tty(&self, rows: u16, cols: u16) -> Result<(i32, [i32; 3]), isize> {
        let master = open(b"/dev/ptmx\0", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
        if master < 0 {
            return Err(master);
        }
        let master = master as i32;
        let unlock = 0i32;
        let mut number = 0u32;
        // SAFETY: TIOCSPTLCK takes an int, TIOCGPTN writes one.
        unsafe {
            syscall(
                SYS_IOCTL,
                master as usize,
                0x4004_5431,
                &unlock as *const i32 as usize,
                0,
            );
            syscall(
                SYS_IOCTL,
                master as usize,
                0x8004_5430,
                &mut number as *mut u32 as usize,
                0,
            );
        }
        resize(master, rows.max(1), cols.max(1));
        let mut path = Vec::from(&b"/dev/pts/"[..]);
        push_decimal(&mut path, u64::from(number));
        path.push(0);
        let pid = self.fork(|| {
            let terminal = open(&path, O_RDWR);
            if terminal >= 0 {
                // SAFETY: TIOCSCTTY takes an int argument.
                unsafe { syscall(SYS_IOCTL, terminal as usize, 0x540E, 0, 0) };
                for fd in 0..3 {
                    call(SYS_DUP2, terminal as usize, fd, 0);
                }
            }
        });
        match pid {
            Ok(pid) => Ok((pid, [master, -1, master])),
            Err(errno) => {
                close(master);
                Err(errno)
            }
        }
    }

    /// Forks; the child leads a new session, sets up its streams with
    /// `streams`, enters the workdir and runs the program. A program that
    /// cannot be run says why on stderr and exits 127 (not found) or 126;
    /// a workdir that cannot be entered, 1.
    fn fork(&self, streams: impl FnOnce()) -> Result<i32, isize> {
        let argv: Vec<*const u8> = self
            .argv
            .iter()
            .map(|w| w.as_ptr())
            .chain([core::ptr::null()])
            .collect();
        let envp: Vec<*const u8> = self
            .envs
            .iter()
            .map(|e| e.as_ptr())
            .chain([core::ptr::null()])
            .collect();
        let pid = call(SYS_FORK, 0, 0, 0);
        if pid < 0 {
            return Err(-pid);
        }
        if pid > 0 {
            return Ok(pid as i32);
        }
        // The child: no allocation from here on.
        call(SYS_SETSID, 0, 0, 0);
        streams();
        sigprocmask(2, 0);
        set_disposition(SIGPIPE, 0);
        if !self.workdir.is_empty() {
            // SAFETY: the workdir is NUL-terminated.
            let r = unsafe { syscall(SYS_CHDIR, self.workdir.as_ptr() as usize, 0, 0, 0) };
            if r < 0 {
                say_failure(b"cannot enter ", &self.workdir, r);
                exit(1);
            }
        }
        let mut error = -ENOENT;
        for program in &self.programs {
            // SAFETY: program, argv and envp are NUL-terminated and null-terminated.
            let r = unsafe {
                syscall(
                    SYS_EXECVE,
                    program.as_ptr() as usize,
                    argv.as_ptr() as usize,
                    envp.as_ptr() as usize,
                    0,
                )
            };
            // Keep looking past a directory without it; remember a denial.
            if r == -EACCES {
                error = r;
            } else if r != -ENOENT && r != -ENOTDIR {
                error = r;
                break;
            }
        }
        say_failure(b"cannot run ", &self.argv[0], error);
        exit(if error == -ENOENT { 127 } else { 126 })
    }
}

/// Writes `sandlot-agent: WHAT "NAME": REASON` to stderr (no allocation).
fn say_failure(what: &[u8], name: &[u8], errno: isize) {
    let name = &name[..name.len().saturating_sub(1)];
    let reason: &[u8] = match -errno {
        2 => b"no such file or directory",
        13 => b"permission denied",
        20 => b"not a directory",
        8 => b"not an executable format",
        _ => b"it failed",
    };
    for part in [
        b"sandlot-agent: ".as_slice(),
        what,
        b"\"",
        name,
        b"\": ",
        reason,
        b"\n",
    ] {
        write(2, part);
    }
}

// An output frame always fits the payload limit.
const _: () = assert!(MAX_PAYLOAD > OUTPUT_CHUNK + HEADER_LEN + 9);
