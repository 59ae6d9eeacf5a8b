//! The network gate: what every sandbox whose network is restricted runs
//! before its workload, so the workload's first packet is already subject to
//! the sandbox's NetworkPolicy.
//!
//! "In force" is observed, not assumed: the gate connects to the Kubernetes API
//! server (`$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, which every
//! restricted network denies) every 50 ms, and two denied attempts in a row
//! (refused, unreachable, or no answer within 200 ms) mean the policy applies.
//! A NetworkPolicy engine may program a new pod's rules only after the pod is
//! running (kube-router does), so without the gate a workload could send
//! packets before its policy holds. If the policy is still not in force after
//! the deadline, the gate exits 1 with a message (also in the container's
//! termination message, which starts with `sandlot network gate:`).
//!
//! Usage:
//! - `gate DEADLINE_SECONDS -- COMMAND [ARG...]`: the sandbox container's
//!   entrypoint. Once the policy holds, it becomes COMMAND (looked up in
//!   `$PATH` as the runtime would), saying nothing; a COMMAND that cannot be
//!   run exits 127 (not found) or 126 with a termination message.
//! - `gate DEADLINE_SECONDS`: an init container (for sandboxes that keep the
//!   image's entrypoint); it exits 0 once the policy holds.
//! - `gate --await`: run by sandlot as an exec before the first command in a
//!   sandbox whose entrypoint is the gate; it exits 0 once process 1 is no
//!   longer the gate (the policy held and the workload started), 1 after the
//!   deadline.
//!
//! Placed into sandboxes through a ConfigMap and run with the sandbox's own
//! image, it must run in any image, shell or libc or not: it is freestanding
//! (no std, no libc, Linux x86-64 system calls), a few kilobytes, and built by
//! `build.rs` with rustc alone.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

const SYS_READ: usize = 0;
const SYS_WRITE: usize = 1;
const SYS_OPEN: usize = 2;
const SYS_CLOSE: usize = 3;
const SYS_POLL: usize = 7;
const SYS_NANOSLEEP: usize = 35;
const SYS_SOCKET: usize = 41;
const SYS_CONNECT: usize = 42;
const SYS_EXECVE: usize = 59;
const SYS_GETSOCKOPT: usize = 55;
const SYS_CLOCK_GETTIME: usize = 228;
const SYS_EXIT_GROUP: usize = 231;

const AF_INET: usize = 2;
const SOCK_STREAM_NONBLOCK: usize = 1 | 0o4000;
const SOL_SOCKET: usize = 1;
const SO_ERROR: usize = 4;
const POLLOUT: i16 = 4;
const EINPROGRESS: isize = 115;
const ENOENT: isize = 2;
const ENOTDIR: isize = 20;
const O_RDONLY: usize = 0;
const O_WRONLY: usize = 1;
const CLOCK_MONOTONIC: usize = 1;

const ATTEMPT_MS: i64 = 200;
const PAUSE_MS: i64 = 50;
const DENIALS_NEEDED: u32 = 2;
const DEFAULT_DEADLINE_SECONDS: i64 = 60;
/// How often `--await` looks at process 1.
const AWAIT_PAUSE_MS: i64 = 5;
/// Where the runtime looks for a command when the environment has no `PATH`.
const DEFAULT_PATH: &[u8] = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// The kernel enters at `_start` with argc, argv and envp on the stack.
global_asm!(
    ".globl _start",
    "_start:",
    "mov rdi, rsp",
    "and rsp, -16",
    "call gate_main",
    "ud2",
);

/// # Safety
/// Called once by `_start` with the initial stack pointer.
#[unsafe(no_mangle)]
unsafe extern "C" fn gate_main(stack: *const usize) -> ! {
    // SAFETY: the initial stack holds argc, argc argument pointers, a null,
    // then environment pointers up to a null (the Linux process ABI).
    let (argv, envp) = unsafe {
        let argc = *stack;
        let argv = stack.add(1) as *const *const u8;
        (core::slice::from_raw_parts(argv, argc), argv.add(argc + 1))
    };
    let arg = |i: usize| argv.get(i).map(|&p| unsafe { c_str(p) });
    if arg(1) == Some(b"--await") {
        await_workload(arg(0).unwrap_or_default())
    }
    let deadline_seconds = arg(1)
        .and_then(parse_u64)
        .map_or(DEFAULT_DEADLINE_SECONDS, |s| s as i64);
    // With `-- COMMAND...`, the command's argument vector is the rest of ours,
    // null-terminated like ours.
    let command =
        (arg(2) == Some(b"--") && argv.len() > 3).then(|| unsafe { argv.as_ptr().add(3) });
    let host = unsafe { env(envp, b"KUBERNETES_SERVICE_HOST") };
    let port = unsafe { env(envp, b"KUBERNETES_SERVICE_PORT") };
    let target = match (host.and_then(parse_ipv4), port.and_then(parse_u64)) {
        (Some(ip), Some(port)) if port > 0 && port < 65536 => (ip, port as u16),
        _ => fail(
            1,
            &[
                b"sandlot network gate: $KUBERNETES_SERVICE_HOST/PORT hold no IPv4 address and \
                port, so the gate cannot tell whether the NetworkPolicy is in force",
            ],
        ),
    };
    let deadline = now_ms() + deadline_seconds * 1000;
    let mut denials = 0;
    loop {
        if connects(target) {
            denials = 0;
        } else {
            denials += 1;
            if denials >= DENIALS_NEEDED {
                match command {
                    Some(command) => unsafe { run(command, envp) },
                    None => {
                        say(2, b"sandlot network gate: the NetworkPolicy is in force\n");
                        exit(0)
                    }
                }
            }
        }
        if now_ms() > deadline {
            fail(
                1,
                &[b"sandlot network gate: the sandbox could still reach the Kubernetes API server \
                  when its deadline passed, so its NetworkPolicy is not in force: this cluster may \
                  not enforce NetworkPolicy (use network \"unrestricted\" there), or the policy \
                  allows that address"],
            );
        }
        sleep_ms(PAUSE_MS);
    }
}

/// `--await`: exits 0, saying "passed" on stdout, once process 1 (the
/// container's entrypoint) is no longer `gate_path`, that is once the gate
/// found the policy in force and became the workload; 1 if it still is after
/// the deadline or cannot be read.
fn await_workload(gate_path: &[u8]) -> ! {
    let deadline = now_ms() + (DEFAULT_DEADLINE_SECONDS + 5) * 1000;
    loop {
        // Process 1's argument vector: its first entry, then a NUL.
        let mut cmdline = [0u8; 256];
        let fd = unsafe {
            syscall(
                SYS_OPEN,
                c"/proc/1/cmdline".as_ptr() as usize,
                O_RDONLY,
                0,
                0,
                0,
            )
        };
        if fd < 0 {
            say(2, b"sandlot network gate: cannot read /proc/1/cmdline\n");
            exit(1);
        }
        let read = unsafe {
            syscall(
                SYS_READ,
                fd as usize,
                cmdline.as_mut_ptr() as usize,
                cmdline.len(),
                0,
                0,
            )
        };
        unsafe { syscall(SYS_CLOSE, fd as usize, 0, 0, 0, 0) };
        if read < 0 {
            say(2, b"sandlot network gate: cannot read /proc/1/cmdline\n");
            exit(1);
        }
        // Nothing read (process 1 is exiting) proves nothing: look again.
        let first = cmdline
            .get(..read as usize)
            .unwrap_or_default()
            .split(|&b| b == 0)
            .next();
        if read > 0 && first != Some(gate_path) {
            // Said on stdout too: an exec's exit status can be lost on its way
            // (containerd 2 then reports success), so sandlot wants both.
            say(1, b"sandlot network gate: passed\n");
            exit(0);
        }
        if now_ms() > deadline {
            say(
                2,
                b"sandlot network gate: the sandbox's NetworkPolicy did not hold in time\n",
            );
            exit(1);
        }
        sleep_ms(AWAIT_PAUSE_MS);
    }
}

/// Replaces this process with `command` (a null-terminated argument vector),
/// looked up in `$PATH` unless its name holds a `/`, as the runtime looks up
/// an entrypoint. Returns only by failing: 127 if not found, else 126.
///
/// # Safety
/// `command` and `envp` must be null-terminated arrays of C strings.
#[expect(
    clippy::manual_contains,
    reason = "contains() calls core's memchr, which needs an unwinder the gate lacks"
)]
unsafe fn run(command: *const *const u8, envp: *const *const u8) -> ! {
    let name = unsafe { c_str(*command) };
    let execve = |path: *const u8| unsafe {
        syscall(
            SYS_EXECVE,
            path as usize,
            command as usize,
            envp as usize,
            0,
            0,
        )
    };
    let mut error = -ENOENT;
    if name.iter().any(|&b| b == b'/') {
        error = execve(name.as_ptr());
    } else if !name.is_empty() {
        let path = unsafe { env(envp, b"PATH") }.unwrap_or(DEFAULT_PATH);
        for dir in path.split(|&b| b == b':') {
            let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
            let mut full = [0u8; 4096];
            if dir.len() + name.len() + 2 > full.len() {
                continue;
            }
            // No ranges or indexing: their panics would pull in core's formatting.
            for (slot, &b) in full.iter_mut().zip(dir.iter().chain(b"/").chain(name)) {
                *slot = b;
            }
            let this = execve(full.as_ptr());
            // Not here: look further. A file here that cannot run: say so,
            // unless one further on can.
            if this != -ENOENT && this != -ENOTDIR {
                error = this;
            }
        }
    }
    let (code, why): (usize, &[u8]) = if error == -ENOENT || error == -ENOTDIR {
        (127, b"not found")
    } else {
        (126, b"cannot be executed")
    };
    fail(
        code,
        &[b"sandlot network gate: cannot run \"", name, b"\": ", why],
    )
}

/// Whether a TCP connection to `target` is accepted within [`ATTEMPT_MS`].
fn connects((ip, port): ([u8; 4], u16)) -> bool {
    let fd = unsafe { syscall(SYS_SOCKET, AF_INET, SOCK_STREAM_NONBLOCK, 0, 0, 0) };
    if fd < 0 {
        fail(1, &[b"sandlot network gate: socket() failed"]);
    }
    let fd = fd as usize;
    // struct sockaddr_in: family, port (network order), address, padding.
    let mut addr = [0u8; 16];
    addr[0..2].copy_from_slice(&(AF_INET as u16).to_ne_bytes());
    addr[2..4].copy_from_slice(&port.to_be_bytes());
    addr[4..8].copy_from_slice(&ip);
    let started = unsafe { syscall(SYS_CONNECT, fd, addr.as_ptr() as usize, 16, 0, 0) };
    let connected = match started {
        0 => true,
        e if e == -EINPROGRESS => {
            // struct pollfd: fd, events, revents.
            let mut pollfd = [0u8; 8];
            pollfd[0..4].copy_from_slice(&(fd as i32).to_ne_bytes());
            pollfd[4..6].copy_from_slice(&POLLOUT.to_ne_bytes());
            let ready = unsafe {
                syscall(
                    SYS_POLL,
                    pollfd.as_mut_ptr() as usize,
                    1,
                    ATTEMPT_MS as usize,
                    0,
                    0,
                )
            };
            let mut error = 0i32;
            let mut len = 4u32;
            ready == 1
                && unsafe {
                    syscall(
                        SYS_GETSOCKOPT,
                        fd,
                        SOL_SOCKET,
                        SO_ERROR,
                        &mut error as *mut i32 as usize,
                        &mut len as *mut u32 as usize,
                    )
                } == 0
                && error == 0
        }
        _ => false,
    };
    unsafe { syscall(SYS_CLOSE, fd, 0, 0, 0, 0) };
    connected
}

/// Exits `code` after writing `message` (its parts in order) to stderr and to
/// the termination message.
fn fail(code: usize, message: &[&[u8]]) -> ! {
    // The kubelet reports this file's content as the container's termination message.
    let fd = unsafe {
        syscall(
            SYS_OPEN,
            c"/dev/termination-log".as_ptr() as usize,
            O_WRONLY,
            0,
            0,
            0,
        )
    };
    for part in message {
        if fd >= 0 {
            say(fd as usize, part);
        }
        say(2, part);
    }
    if fd >= 0 {
        unsafe { syscall(SYS_CLOSE, fd as usize, 0, 0, 0, 0) };
    }
    say(2, b"\n");
    exit(code)
}

fn say(fd: usize, message: &[u8]) {
    unsafe {
        syscall(
            SYS_WRITE,
            fd,
            message.as_ptr() as usize,
            message.len(),
            0,
            0,
        )
    };
}

fn exit(code: usize) -> ! {
    unsafe { syscall(SYS_EXIT_GROUP, code, 0, 0, 0, 0) };
    loop {
        core::hint::spin_loop();
    }
}

fn now_ms() -> i64 {
    let mut time = [0i64; 2];
    unsafe {
        syscall(
            SYS_CLOCK_GETTIME,
            CLOCK_MONOTONIC,
            time.as_mut_ptr() as usize,
            0,
            0,
            0,
        )
    };
    time[0] * 1000 + time[1] / 1_000_000
}

fn sleep_ms(ms: i64) {
    let time = [ms / 1000, (ms % 1000) * 1_000_000];
    unsafe { syscall(SYS_NANOSLEEP, time.as_ptr() as usize, 0, 0, 0, 0) };
}

/// The value of environment variable `name`, if set.
///
/// # Safety
/// `envp` must be the process's null-terminated environment array.
unsafe fn env(mut envp: *const *const u8, name: &[u8]) -> Option<&'static [u8]> {
    unsafe {
        while !(*envp).is_null() {
            let entry = c_str(*envp);
            if entry.len() > name.len() && entry.starts_with(name) && entry[name.len()] == b'=' {
                return Some(&entry[name.len() + 1..]);
            }
            envp = envp.add(1);
        }
    }
    None
}

/// # Safety
/// `ptr` must point to a NUL-terminated string that lives for the process.
unsafe fn c_str(ptr: *const u8) -> &'static [u8] {
    let mut len = 0;
    unsafe {
        // Volatile reads: a plain loop is turned into a call to libc's strlen.
        while ptr.add(len).read_volatile() != 0 {
            len += 1;
        }
        core::slice::from_raw_parts(ptr, len)
    }
}

fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 18 {
        return None;
    }
    text.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

fn parse_ipv4(text: &[u8]) -> Option<[u8; 4]> {
    let mut ip = [0u8; 4];
    let mut parts = text.split(|&b| b == b'.');
    for octet in &mut ip {
        let value = parse_u64(parts.next()?)?;
        *octet = u8::try_from(value).ok()?;
    }
    parts.next().is_none().then_some(ip)
}

/// # Safety
/// A raw Linux system call: the arguments must be valid for `number`.
unsafe fn syscall(number: usize, a: usize, b: usize, c: usize, d: usize, e: usize) -> isize {
    let result: isize;
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") number as isize => result,
            in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d, in("r8") e,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    result
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    fail(1, &[b"sandlot network gate: internal error"])
}

// The compiler may call these four for copies, fills and comparisons; without a
// libc the gate provides them. Volatile accesses keep the loops from being
// turned back into calls to themselves.

/// # Safety
/// `dest` and `src` must be valid for `n` bytes and not overlap.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    for i in 0..n {
        unsafe { dest.add(i).write_volatile(src.add(i).read_volatile()) };
    }
    dest
}

/// # Safety
/// `dest` must be valid for `n` bytes.
#[unsafe(no_mangle)]
unsafe extern "C" fn memset(dest: *mut u8, byte: i32, n: usize) -> *mut u8 {
    for i in 0..n {
        unsafe { dest.add(i).write_volatile(byte as u8) };
    }
    dest
}

/// # Safety
/// `a` and `b` must be valid for `n` bytes.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// `a` and `b` must be valid for `n` bytes.
#[unsafe(no_mangle)]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    unsafe { memcmp(a, b, n) }
}
