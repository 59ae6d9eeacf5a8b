//! The sandbox agent: runs commands in a sandbox for sandlot's client over one
//! long-lived stream, so a command costs a frame instead of a new Kubernetes
//! exec, and a command outlives the stream that started it.
//!
//! Four parts, one program:
//! - `agent session`: what the client runs, once per connection, as a
//!   Kubernetes exec. It relays bytes between its stdin/stdout and the daemon,
//!   starting the daemon first if there is none.
//! - the daemon: one per sandbox, started by the first session, listening on
//!   an abstract Unix socket (no network port, no file). It starts and reaps
//!   the processes, keeps their recent output (see `sandlot_wire`), and serves
//!   any number of sessions; a process keeps running, and its output kept,
//!   when the session that started it ends.
//! - `agent file`: one file operation (read, write, stat, list, mkdir,
//!   remove, rename, pack, unpack), its request on stdin; run by the client as
//!   a command of the daemon or as a Kubernetes exec (see `files`).
//! - `agent wait`: the command of a helper pod, as its pid 1: it reaps the
//!   children re-parented to it (the daemon a session starts) and exits 0 on
//!   SIGTERM or SIGINT.
//!
//! Placed into sandboxes through a ConfigMap and run with the sandbox's own
//! image, it must run in any image, shell or libc or not: it is freestanding
//! (no std, no libc, Linux x86-64 system calls) and built by `build.rs` with
//! rustc alone. It is as untrusted as the workload beside it, which may kill,
//! replace or impersonate it; the client checks every frame it sends.
#![no_std]
#![no_main]

extern crate alloc;

mod daemon;
mod files;
mod metrics;
mod sys;

use core::arch::global_asm;
use sys::*;

#[global_allocator]
static ALLOCATOR: Allocator = Allocator::new();

// The kernel enters at `_start` with argc, argv and envp on the stack.
global_asm!(
    ".globl _start",
    "_start:",
    "mov rdi, rsp",
    "and rsp, -16",
    "call agent_main",
    "ud2",
);

/// # Safety
/// Called once by `_start` with the initial stack pointer.
#[unsafe(no_mangle)]
unsafe extern "C" fn agent_main(stack: *const usize) -> ! {
    // SAFETY: the initial stack holds argc, argc argument pointers, a null,
    // then environment pointers up to a null (the Linux process ABI).
    let (argv, envp) = unsafe {
        let argc = *stack;
        let argv = stack.add(1) as *const *const u8;
        (core::slice::from_raw_parts(argv, argc), argv.add(argc + 1))
    };
    // SAFETY: argument strings are NUL-terminated and live for the program.
    let mode = argv.get(1).map(|&p| unsafe { c_str(p) });
    match mode {
        Some(b"session") => session(envp),
        Some(b"file") => files::run(),
        Some(b"wait") => wait(),
        _ => {
            write(
                2,
                b"usage: agent session | agent file | agent wait\n\
                \x20 session: relays sandlot's frames on stdin and stdout to the sandbox's \
                agent, starting it if none runs\n\
                \x20 file: does the one file operation requested on stdin\n\
                \x20 wait: reaps the children it inherits until SIGTERM or SIGINT (a pod's pid 1)\n",
            );
            exit(2)
        }
    }
}

/// # Safety
/// `ptr` points to a NUL-terminated string that lives for the program.
unsafe fn c_str(ptr: *const u8) -> &'static [u8] {
    let mut len = 0;
    unsafe {
        while *ptr.add(len) != 0 {
            len += 1;
        }
        core::slice::from_raw_parts(ptr, len)
    }
}

/// A `sockaddr_un` for the daemon's abstract name, and its length.
fn socket_address() -> ([u8; 110], usize) {
    let mut address = [0u8; 110];
    address[0] = 1; // AF_UNIX, little endian
    // address[2] stays 0: the abstract namespace.
    address[3..3 + SOCKET_NAME.len()].copy_from_slice(SOCKET_NAME);
    (address, 3 + SOCKET_NAME.len())
}

/// A Unix stream socket connected to the daemon, or the errno.
fn connect_daemon() -> Result<i32, isize> {
    let fd = call(SYS_SOCKET, 1, 1 | O_CLOEXEC, 0);
    if fd < 0 {
        return Err(fd);
    }
    let (address, len) = socket_address();
    // SAFETY: `address` is a sockaddr_un of `len` bytes.
    let r = unsafe { syscall(SYS_CONNECT, fd as usize, address.as_ptr() as usize, len, 0) };
    if r < 0 {
        close(fd as i32);
        return Err(r);
    }
    Ok(fd as i32)
}

/// Waits as a helper pod's pid 1: reaps every child that ends (among them
/// the daemons that sessions start, re-parented here) until SIGTERM or
/// SIGINT, then exits 0.
fn wait() -> ! {
    let signals = 1u64 << (SIGTERM - 1) | 1 << (SIGINT - 1) | 1 << (SIGCHLD - 1);
    // Blocked signals are queued even for a pid 1 without handlers.
    sigprocmask(0, signals);
    loop {
        // SAFETY: `signals` is an 8-byte signal set; no info, no timeout.
        let signal = unsafe {
            syscall(
                SYS_RT_SIGTIMEDWAIT,
                &signals as *const u64 as usize,
                0,
                0,
                8,
            )
        };
        if signal == SIGTERM as isize || signal == SIGINT as isize {
            exit(0);
        }
        // WNOHANG; no status wanted.
        while call(SYS_WAIT4, usize::MAX, 0, 1) > 0 {}
    }
}

/// Relays frames between stdin/stdout and the daemon until either side ends.
fn session(envp: *const *const u8) -> ! {
    let socket = match connect_daemon() {
        Ok(fd) => fd,
        Err(_) => {
            start_daemon(envp);
            let mut connected = Err(0);
            // The daemon binds its socket first thing; give it 5 s at most.
            for _ in 0..500 {
                connected = connect_daemon();
                if connected.is_ok() {
                    break;
                }
                sleep_ms(10);
            }
            match connected {
                Ok(fd) => fd,
                Err(_) => {
                    write(2, b"sandlot-agent: the agent daemon did not start\n");
                    exit(1)
                }
            }
        }
    };
    relay(socket)
}

/// Starts the daemon as a grandchild in a session of its own, detached from
/// this exec's streams (so the exec can end while the daemon runs on).
fn start_daemon(envp: *const *const u8) {
    let pid = call(SYS_FORK, 0, 0, 0);
    if pid < 0 {
        return;
    }
    if pid == 0 {
        call(SYS_SETSID, 0, 0, 0);
        if call(SYS_FORK, 0, 0, 0) != 0 {
            exit(0);
        }
        let null = open(b"/dev/null\0", O_RDWR);
        for fd in 0..3 {
            if null >= 0 {
                call(SYS_DUP2, null as usize, fd, 0);
            } else {
                close(fd as i32);
            }
        }
        if null > 2 {
            close(null as i32);
        }
        daemon::run(envp)
    }
    let mut status = 0i32;
    // SAFETY: `status` is an int.
    unsafe {
        syscall(
            SYS_WAIT4,
            pid as usize,
            &mut status as *mut i32 as usize,
            0,
            0,
        )
    };
}

/// Copies stdin to `socket` and `socket` to stdout until either ends: with
/// splice(2) where the kernel can (the runtime's pipes, a Unix socket; no
/// copy through this process), else by reading and writing.
fn relay(socket: i32) -> ! {
    const IN: i16 = 1;
    // Larger pipes to the container runtime: fewer wakeups on both sides
    // (F_SETPIPE_SZ; refused above the system's limit, which is harmless).
    call(SYS_FCNTL, 1, F_SETPIPE_SZ, 1 << 20);
    let mut buf = [0u8; 256 * 1024];
    // struct pollfd: fd (i32), events (i16), revents (i16).
    let mut fds: [(i32, i16, i16); 2] = [(0, IN, 0), (socket, IN, 0)];
    let mut splicing = [true, true];
    loop {
        // SAFETY: `fds` is an array of two pollfd.
        let r = unsafe { syscall(SYS_POLL, fds.as_mut_ptr() as usize, 2, usize::MAX, 0) };
        if r == -EINTR {
            continue;
        }
        if r < 0 {
            exit(1);
        }
        for (from, to) in [(0usize, socket), (1usize, 1)] {
            if fds[from].2 == 0 {
                continue;
            }
            if splicing[from] {
                match splice(fds[from].0, to, buf.len()) {
                    n if n > 0 => continue,
                    0 => exit(0),
                    // Not between these descriptors: copy instead, from now on.
                    n if n == -EINVAL || n == -ENOSYS => splicing[from] = false,
                    _ => exit(0),
                }
            }
            let n = read(fds[from].0, &mut buf);
            if n <= 0 || !write_all(to, &buf[..n as usize]) {
                exit(0);
            }
        }
    }
}

/// Moves up to `len` bytes from `from` to `to` in the kernel (one of them a
/// pipe); the count, 0 at the end of input, or the errno.
fn splice(from: i32, to: i32, len: usize) -> isize {
    loop {
        // SAFETY: no offsets are passed (both descriptors are streams).
        let n = unsafe {
            syscall6(
                SYS_SPLICE,
                from as usize,
                0,
                to as usize,
                0,
                len,
                SPLICE_F_MOVE,
            )
        };
        if n != -EINTR {
            return n;
        }
    }
}
