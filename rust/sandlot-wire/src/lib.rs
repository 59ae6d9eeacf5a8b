//! The frames that sandlot's client and the sandbox agent exchange over one
//! byte stream (the agent's stdin and stdout, carried by one Kubernetes exec).
//!
//! A frame is a 9-byte header, then its payload:
//! `payload length (u32 LE) | kind (u8) | id (u32 LE)`. A request the agent
//! answers carries a request number the client chose, and the answer carries
//! it back; everything about one process (its output, its exit, its stdin)
//! carries the process's id, which the agent gives out. Integers are little
//! endian; byte strings are a u32 length and the bytes.
//!
//! Both sides treat the other's frames as hostile input: a payload longer
//! than [`MAX_PAYLOAD`] is refused before it is read, and every field is
//! bounds-checked when decoded. No std, no dependencies: the agent is a
//! freestanding program built with rustc alone.
#![no_std]

extern crate alloc;

use alloc::vec::Vec;

/// The protocol this build speaks. The client says its own in
/// [`Request::Hello`]; the agent answers with the lower of the two in
/// [`Event::Welcome`] and speaks that. Version 2 adds [`Event::TakenOver`].
pub const VERSION: u32 = 2;
/// The oldest protocol either side still speaks.
pub const OLDEST_VERSION: u32 = 1;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 9;
/// The longest payload either side accepts.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// The most output one [`Event::Output`] frame carries.
pub const OUTPUT_CHUNK: usize = 64 * 1024;
/// Output of one stream the agent sends ahead of the client's
/// [`Request::Ack`]: the client buffers at most this much per stream.
pub const OUTPUT_WINDOW: u64 = 4 << 20;
/// Stdin the client sends ahead of the agent's [`Event::StdinTaken`]: the
/// agent holds at most this much per process (a file upload's throughput
/// needs several round trips' worth in flight).
pub const STDIN_WINDOW: u64 = 4 << 20;
/// Output kept per stream of a process, for a client that attaches later;
/// older output is dropped first ([`Event::Dropped`]).
pub const OUTPUT_KEPT: u64 = 4 << 20;

/// Output streams.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

/// Flags of [`Start`].
pub const START_STDIN: u8 = 1;
pub const START_TTY: u8 = 2;
/// The process outlives its caller: the client does not end it when the call
/// that started it goes away, and the agent keeps its end for
/// [`Request::List`].
pub const START_DETACHED: u8 = 4;

mod kind {
    pub const HELLO: u8 = 1;
    pub const START: u8 = 2;
    pub const STDIN: u8 = 3;
    pub const SIGNAL: u8 = 4;
    pub const RESIZE: u8 = 5;
    pub const ACK: u8 = 6;
    pub const ATTACH: u8 = 7;
    pub const LIST: u8 = 8;
    pub const RELEASE: u8 = 9;
    pub const METRICS: u8 = 10;
    pub const WELCOME: u8 = 64;
    pub const STARTED: u8 = 65;
    pub const FAILED: u8 = 66;
    pub const OUTPUT: u8 = 67;
    pub const EXITED: u8 = 68;
    pub const STDIN_TAKEN: u8 = 69;
    pub const DROPPED: u8 = 70;
    pub const PROCESSES: u8 = 71;
    pub const MEASURED: u8 = 72;
    pub const TAKEN_OVER: u8 = 73;
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The header announces a payload longer than [`MAX_PAYLOAD`].
    TooLong(u32),
    /// A kind this side does not know.
    UnknownKind(u8),
    /// A field runs past the payload's end.
    Truncated,
    /// Bytes left over after the last field.
    Trailing,
    /// A field holds a value outside its range.
    Invalid(&'static str),
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::TooLong(len) => write!(
                f,
                "a frame announces {len} bytes, more than the {MAX_PAYLOAD} allowed"
            ),
            WireError::UnknownKind(kind) => write!(f, "a frame of unknown kind {kind}"),
            WireError::Truncated => f.write_str("a frame ends inside a field"),
            WireError::Trailing => f.write_str("a frame has bytes after its last field"),
            WireError::Invalid(what) => write!(f, "a frame holds an invalid {what}"),
        }
    }
}

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: u32,
    pub kind: u8,
    pub id: u32,
}

impl Header {
    /// Reads a header, refusing a payload longer than [`MAX_PAYLOAD`].
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Header, WireError> {
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if len as usize > MAX_PAYLOAD {
            return Err(WireError::TooLong(len));
        }
        Ok(Header {
            len,
            kind: bytes[4],
            id: u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]),
        })
    }
}

/// What to run: the payload of [`Request::Start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start<'a> {
    /// [`START_STDIN`], [`START_TTY`], [`START_DETACHED`].
    pub flags: u8,
    /// Terminal size (TTY only).
    pub rows: u16,
    pub cols: u16,
    /// The directory to run in; empty: the agent's own.
    pub workdir: &'a [u8],
    /// The command; its first word is looked up in `$PATH` unless it holds a `/`.
    pub argv: Vec<&'a [u8]>,
    /// `NAME=VALUE` entries added to (or replacing in) the agent's environment.
    pub env: Vec<&'a [u8]>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(u8),
    /// A signal ended it.
    Signal(u8),
}

impl Exit {
    /// The exit code a shell would report: the code, or 128 plus the signal.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(code) => i32::from(code),
            Exit::Signal(signal) => 128 + i32::from(signal),
        }
    }
}

/// A process as [`Event::Processes`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessEntry<'a> {
    pub id: u32,
    pub pid: u32,
    /// [`START_TTY`], [`START_DETACHED`].
    pub flags: u8,
    /// `None` while it runs.
    pub exit: Option<Exit>,
    /// Output written so far: the next offset of stdout and of stderr.
    pub stdout_end: u64,
    pub stderr_end: u64,
    /// Its command, the words separated by NUL bytes.
    pub command: &'a [u8],
}

/// What the client sends. The id of the frame is a request number for
/// `Hello`, `Start`, `Attach` and `List` (answered), and a process id for the
/// rest (not answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// The first frame; answered by [`Event::Welcome`].
    Hello {
        version: u32,
    },
    /// Answered by [`Event::Started`] (then the process's output follows on
    /// this connection) or [`Event::Failed`].
    Start(Start<'a>),
    /// Bytes for the process's stdin; empty: close it.
    Stdin(&'a [u8]),
    /// Sends `signal` to the process, or with `tree` to it and every process
    /// it started (its group, its descendants, and whatever carries its tag).
    Signal {
        signal: u8,
        tree: bool,
    },
    Resize {
        rows: u16,
        cols: u16,
    },
    /// The client has taken a stream's output up to `offset`.
    Ack {
        stream: u8,
        offset: u64,
    },
    /// Sends this connection the process's output from these offsets on, and
    /// its exit; answered by [`Event::Started`] or [`Event::Failed`].
    Attach {
        process: u32,
        stdout: u64,
        stderr: u64,
    },
    /// Answered by [`Event::Processes`].
    List,
    /// This connection no longer reads the process's output: it runs on, its
    /// output kept as for a process nobody is attached to.
    Release,
    /// Answered by [`Event::Measured`].
    Metrics,
}

/// What the agent reads of its sandbox's resources; [`UNKNOWN`] where it
/// could not read a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metrics {
    /// The agent's monotonic clock, in nanoseconds.
    pub at_ns: u64,
    /// CPU time the sandbox's cgroup has used, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use less what the kernel can reclaim at once (the working set).
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    /// Processes in the sandbox.
    pub processes: u64,
    /// Bytes received and sent on its network interfaces (loopback left out).
    pub network_rx_bytes: u64,
    pub network_tx_bytes: u64,
}

/// A figure of [`Metrics`] the agent could not read.
pub const UNKNOWN: u64 = u64::MAX;

/// What the agent sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    Welcome {
        version: u32,
        pid: u32,
    },
    Started {
        process: u32,
    },
    /// A request failed: an errno (0 if none applies) and what happened.
    Failed {
        errno: i32,
        message: &'a [u8],
    },
    Output {
        stream: u8,
        offset: u64,
        data: &'a [u8],
    },
    /// The process ended and all of its output up to its end was sent.
    Exited(Exit),
    /// The process's stdin has taken this many bytes in all.
    StdinTaken {
        total: u64,
    },
    /// Output of a stream from `from` to `to` is no longer kept.
    Dropped {
        stream: u8,
        from: u64,
        to: u64,
    },
    Processes(Vec<ProcessEntry<'a>>),
    Measured(Metrics),
    /// Another connection attached to the process: this one gets nothing
    /// more of it (protocol 2).
    TakenOver,
}

/// Appends an [`Event::Output`] frame whose data is `parts` one after the
/// other (the agent's kept output may wrap around its buffer).
pub fn encode_output(id: u32, stream: u8, offset: u64, parts: [&[u8]; 2], out: &mut Vec<u8>) {
    let len = 1 + 8 + parts[0].len() + parts[1].len();
    out.reserve(HEADER_LEN + len);
    header(out, kind::OUTPUT, id, len);
    out.push(stream);
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(parts[0]);
    out.extend_from_slice(parts[1]);
}

/// Appends the frame header for a payload of `len` bytes.
fn header(out: &mut Vec<u8>, kind: u8, id: u32, len: usize) {
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&id.to_le_bytes());
}

/// Builds a payload after its header, whose length is filled in at the end.
struct Frame<'o> {
    out: &'o mut Vec<u8>,
    start: usize,
}

impl<'o> Frame<'o> {
    fn new(out: &'o mut Vec<u8>, kind: u8, id: u32) -> Self {
        let start = out.len();
        header(out, kind, id, 0);
        Frame { out, start }
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i32(&mut self, v: i32) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.out.extend_from_slice(v);
        self
    }
    fn rest(&mut self, v: &[u8]) -> &mut Self {
        self.out.extend_from_slice(v);
        self
    }
    fn exit(&mut self, exit: Option<Exit>) -> &mut Self {
        match exit {
            None => self.u8(0).u8(0),
            Some(Exit::Code(code)) => self.u8(1).u8(code),
            Some(Exit::Signal(signal)) => self.u8(2).u8(signal),
        }
    }
}

impl Drop for Frame<'_> {
    fn drop(&mut self) {
        let len = (self.out.len() - self.start - HEADER_LEN) as u32;
        self.out[self.start..self.start + 4].copy_from_slice(&len.to_le_bytes());
    }
}

/// Reads a payload's fields in order, never past its end.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32(&mut self) -> Result<i32, WireError> {
        Ok(self.u32()? as i32)
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut bytes = [0; 8];
        bytes.copy_from_slice(b);
        Ok(u64::from_le_bytes(bytes))
    }
    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    /// A count of items that each take at least `min_size` bytes: refused if
    /// the payload cannot hold that many, so nothing is reserved for a lie.
    fn count(&mut self, min_size: usize) -> Result<usize, WireError> {
        let count = self.u32()? as usize;
        if count > self.rest.len() / min_size {
            return Err(WireError::Truncated);
        }
        Ok(count)
    }
    fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.rest)
    }
    fn exit(&mut self) -> Result<Option<Exit>, WireError> {
        match (self.u8()?, self.u8()?) {
            (0, _) => Ok(None),
            (1, code) => Ok(Some(Exit::Code(code))),
            (2, signal) => Ok(Some(Exit::Signal(signal))),
            _ => Err(WireError::Invalid("exit")),
        }
    }
    fn stream(&mut self) -> Result<u8, WireError> {
        match self.u8()? {
            stream @ (STDOUT | STDERR) => Ok(stream),
            _ => Err(WireError::Invalid("stream")),
        }
    }
    fn end(&self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing)
        }
    }
}

impl<'a> Request<'a> {
    /// Appends this request as a frame with `id`.
    pub fn encode(&self, id: u32, out: &mut Vec<u8>) {
        match self {
            Request::Hello { version } => {
                Frame::new(out, kind::HELLO, id).u32(*version);
            }
            Request::Start(start) => {
                let mut f = Frame::new(out, kind::START, id);
                f.u8(start.flags)
                    .u16(start.rows)
                    .u16(start.cols)
                    .bytes(start.workdir);
                f.u32(start.argv.len() as u32);
                for word in &start.argv {
                    f.bytes(word);
                }
                f.u32(start.env.len() as u32);
                for entry in &start.env {
                    f.bytes(entry);
                }
            }
            Request::Stdin(data) => {
                Frame::new(out, kind::STDIN, id).rest(data);
            }
            Request::Signal { signal, tree } => {
                Frame::new(out, kind::SIGNAL, id)
                    .u8(*signal)
                    .u8(u8::from(*tree));
            }
            Request::Resize { rows, cols } => {
                Frame::new(out, kind::RESIZE, id).u16(*rows).u16(*cols);
            }
            Request::Ack { stream, offset } => {
                Frame::new(out, kind::ACK, id).u8(*stream).u64(*offset);
            }
            Request::Attach {
                process,
                stdout,
                stderr,
            } => {
                Frame::new(out, kind::ATTACH, id)
                    .u32(*process)
                    .u64(*stdout)
                    .u64(*stderr);
            }
            Request::List => {
                Frame::new(out, kind::LIST, id);
            }
            Request::Release => {
                Frame::new(out, kind::RELEASE, id);
            }
            Request::Metrics => {
                Frame::new(out, kind::METRICS, id);
            }
        }
    }

    /// Reads the payload of a frame of `kind`.
    pub fn decode(kind: u8, payload: &'a [u8]) -> Result<Request<'a>, WireError> {
        let mut f = Fields { rest: payload };
        let request = match kind {
            kind::HELLO => Request::Hello { version: f.u32()? },
            kind::START => {
                let (flags, rows, cols, workdir) = (f.u8()?, f.u16()?, f.u16()?, f.bytes()?);
                let argc = f.count(4)?;
                let mut argv = Vec::with_capacity(argc);
                for _ in 0..argc {
                    argv.push(f.bytes()?);
                }
                let envc = f.count(4)?;
                let mut env = Vec::with_capacity(envc);
                for _ in 0..envc {
                    env.push(f.bytes()?);
                }
                if argv.is_empty() {
                    return Err(WireError::Invalid("command"));
                }
                Request::Start(Start {
                    flags,
                    rows,
                    cols,
                    workdir,
                    argv,
                    env,
                })
            }
            kind::STDIN => Request::Stdin(f.rest()),
            kind::SIGNAL => Request::Signal {
                signal: f.u8()?,
                tree: f.u8()? != 0,
            },
            kind::RESIZE => Request::Resize {
                rows: f.u16()?,
                cols: f.u16()?,
            },
            kind::ACK => Request::Ack {
                stream: f.stream()?,
                offset: f.u64()?,
            },
            kind::ATTACH => Request::Attach {
                process: f.u32()?,
                stdout: f.u64()?,
                stderr: f.u64()?,
            },
            kind::LIST => Request::List,
            kind::RELEASE => Request::Release,
            kind::METRICS => Request::Metrics,
            other => return Err(WireError::UnknownKind(other)),
        };
        f.end()?;
        Ok(request)
    }
}

impl<'a> Event<'a> {
    /// Appends this event as a frame with `id`.
    pub fn encode(&self, id: u32, out: &mut Vec<u8>) {
        match self {
            Event::Welcome { version, pid } => {
                Frame::new(out, kind::WELCOME, id).u32(*version).u32(*pid);
            }
            Event::Started { process } => {
                Frame::new(out, kind::STARTED, id).u32(*process);
            }
            Event::Failed { errno, message } => {
                Frame::new(out, kind::FAILED, id).i32(*errno).rest(message);
            }
            Event::Output {
                stream,
                offset,
                data,
            } => {
                Frame::new(out, kind::OUTPUT, id)
                    .u8(*stream)
                    .u64(*offset)
                    .rest(data);
            }
            Event::Exited(exit) => {
                Frame::new(out, kind::EXITED, id).exit(Some(*exit));
            }
            Event::StdinTaken { total } => {
                Frame::new(out, kind::STDIN_TAKEN, id).u64(*total);
            }
            Event::Dropped { stream, from, to } => {
                Frame::new(out, kind::DROPPED, id)
                    .u8(*stream)
                    .u64(*from)
                    .u64(*to);
            }
            Event::Processes(entries) => {
                let mut f = Frame::new(out, kind::PROCESSES, id);
                f.u32(entries.len() as u32);
                for entry in entries {
                    f.u32(entry.id)
                        .u32(entry.pid)
                        .u8(entry.flags)
                        .exit(entry.exit)
                        .u64(entry.stdout_end)
                        .u64(entry.stderr_end)
                        .bytes(entry.command);
                }
            }
            Event::Measured(m) => {
                Frame::new(out, kind::MEASURED, id)
                    .u64(m.at_ns)
                    .u64(m.cpu_ns)
                    .u64(m.memory_bytes)
                    .u64(m.memory_limit_bytes)
                    .u64(m.processes)
                    .u64(m.network_rx_bytes)
                    .u64(m.network_tx_bytes);
            }
            Event::TakenOver => {
                Frame::new(out, kind::TAKEN_OVER, id);
            }
        }
    }

    /// Reads the payload of a frame of `kind`.
    pub fn decode(kind: u8, payload: &'a [u8]) -> Result<Event<'a>, WireError> {
        let mut f = Fields { rest: payload };
        let event = match kind {
            kind::WELCOME => Event::Welcome {
                version: f.u32()?,
                pid: f.u32()?,
            },
            kind::STARTED => Event::Started { process: f.u32()? },
            kind::FAILED => Event::Failed {
                errno: f.i32()?,
                message: f.rest(),
            },
            kind::OUTPUT => Event::Output {
                stream: f.stream()?,
                offset: f.u64()?,
                data: f.rest(),
            },
            kind::EXITED => Event::Exited(f.exit()?.ok_or(WireError::Invalid("exit"))?),
            kind::STDIN_TAKEN => Event::StdinTaken { total: f.u64()? },
            kind::DROPPED => {
                let (stream, from, to) = (f.stream()?, f.u64()?, f.u64()?);
                if to < from {
                    return Err(WireError::Invalid("dropped range"));
                }
                Event::Dropped { stream, from, to }
            }
            kind::PROCESSES => {
                // id, pid, flags, exit (2), two offsets, a command length.
                let count = f.count(4 + 4 + 1 + 2 + 16 + 4)?;
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    entries.push(ProcessEntry {
                        id: f.u32()?,
                        pid: f.u32()?,
                        flags: f.u8()?,
                        exit: f.exit()?,
                        stdout_end: f.u64()?,
                        stderr_end: f.u64()?,
                        command: f.bytes()?,
                    });
                }
                Event::Processes(entries)
            }
            kind::MEASURED => Event::Measured(Metrics {
                at_ns: f.u64()?,
                cpu_ns: f.u64()?,
                memory_bytes: f.u64()?,
                memory_limit_bytes: f.u64()?,
                processes: f.u64()?,
                network_rx_bytes: f.u64()?,
                network_tx_bytes: f.u64()?,
            }),
            kind::TAKEN_OVER => Event::TakenOver,
            other => return Err(WireError::UnknownKind(other)),
        };
        f.end()?;
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn split(frame: &[u8]) -> (Header, &[u8]) {
        let header = Header::parse(frame[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!(header.len as usize, frame.len() - HEADER_LEN);
        (header, &frame[HEADER_LEN..])
    }

    #[test]
    fn requests_read_back_as_written() {
        let requests = [
            Request::Hello { version: VERSION },
            Request::Start(Start {
                flags: START_STDIN | START_DETACHED,
                rows: 24,
                cols: 80,
                workdir: b"/tmp",
                argv: vec![b"sh".as_slice(), b"-c", b"exit 3"],
                env: vec![b"A=1".as_slice()],
            }),
            Request::Stdin(b"\0\xffdata"),
            Request::Stdin(b""),
            Request::Signal {
                signal: 9,
                tree: true,
            },
            Request::Resize { rows: 1, cols: 2 },
            Request::Ack {
                stream: STDERR,
                offset: 1 << 40,
            },
            Request::Attach {
                process: 7,
                stdout: 3,
                stderr: 4,
            },
            Request::List,
            Request::Release,
            Request::Metrics,
        ];
        for (id, request) in requests.iter().enumerate() {
            let mut out = Vec::new();
            request.encode(id as u32, &mut out);
            let (header, payload) = split(&out);
            assert_eq!(header.id, id as u32);
            assert_eq!(&Request::decode(header.kind, payload).unwrap(), request);
        }
    }

    #[test]
    fn events_read_back_as_written() {
        let events = [
            Event::Welcome {
                version: VERSION,
                pid: 12,
            },
            Event::Started { process: 3 },
            Event::Failed {
                errno: 2,
                message: b"no such file",
            },
            Event::Output {
                stream: STDOUT,
                offset: 5,
                data: b"\0\x01\xfe",
            },
            Event::Exited(Exit::Signal(9)),
            Event::Exited(Exit::Code(42)),
            Event::StdinTaken { total: 99 },
            Event::Dropped {
                stream: STDOUT,
                from: 0,
                to: 10,
            },
            Event::Processes(vec![ProcessEntry {
                id: 1,
                pid: 40,
                flags: START_DETACHED,
                exit: None,
                stdout_end: 10,
                stderr_end: 0,
                command: b"sleep\x0010",
            }]),
            Event::Measured(Metrics {
                at_ns: 1,
                cpu_ns: 2,
                memory_bytes: 3,
                memory_limit_bytes: UNKNOWN,
                processes: 5,
                network_rx_bytes: 6,
                network_tx_bytes: 7,
            }),
            Event::TakenOver,
        ];
        for event in &events {
            let mut out = Vec::new();
            event.encode(9, &mut out);
            let (header, payload) = split(&out);
            assert_eq!(&Event::decode(header.kind, payload).unwrap(), event);
        }
    }

    #[test]
    fn output_in_parts_is_one_output_frame() {
        let mut out = Vec::new();
        encode_output(3, STDERR, 9, [b"ab", b"cd"], &mut out);
        let (header, payload) = split(&out);
        assert_eq!(header.id, 3);
        assert_eq!(
            Event::decode(header.kind, payload).unwrap(),
            Event::Output {
                stream: STDERR,
                offset: 9,
                data: b"abcd"
            }
        );
    }

    #[test]
    fn hostile_frames_are_refused_not_trusted() {
        let mut too_long = [0u8; HEADER_LEN];
        too_long[..4].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        assert_eq!(
            Header::parse(&too_long),
            Err(WireError::TooLong(MAX_PAYLOAD as u32 + 1))
        );
        assert_eq!(Event::decode(200, b""), Err(WireError::UnknownKind(200)));
        assert_eq!(
            Event::decode(kind::STARTED, b"\x01"),
            Err(WireError::Truncated)
        );
        assert_eq!(
            Event::decode(kind::STARTED, b"\x01\0\0\0\0"),
            Err(WireError::Trailing)
        );
        // A list that claims four billion entries reserves nothing.
        assert_eq!(
            Event::decode(kind::PROCESSES, &u32::MAX.to_le_bytes()),
            Err(WireError::Truncated)
        );
        assert_eq!(
            Event::decode(kind::OUTPUT, b"\x07\0\0\0\0\0\0\0\0"),
            Err(WireError::Invalid("stream"))
        );
        assert_eq!(
            Event::decode(kind::EXITED, b"\0\0"),
            Err(WireError::Invalid("exit"))
        );
        // A byte string longer than what is left.
        let mut start = Vec::new();
        start.extend_from_slice(&[0, 0, 0, 0, 0]);
        start.extend_from_slice(&100u32.to_le_bytes());
        assert_eq!(
            Request::decode(kind::START, &start),
            Err(WireError::Truncated)
        );
    }
}
