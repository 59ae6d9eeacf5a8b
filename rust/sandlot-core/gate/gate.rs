//! The network gate: the init container of every sandbox whose network is
//! restricted. It exits 0 once the sandbox's NetworkPolicy is in force, so the
//! workload's first packet is already subject to it, and exits 1 with a
//! message if the policy is still not in force after its deadline.
//!
//! "In force" is observed, not assumed: the gate connects to the Kubernetes API
//! server (`$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, which every
//! restricted network denies) every 100 ms, and two denied attempts in a row
//! (refused, unreachable, or no answer within 200 ms) mean the policy applies.
//! A NetworkPolicy engine may program a new pod's rules only after the pod is
//! running (kube-router does), so without the gate a workload could send
//! packets before its policy holds.
//!
//! Placed into sandboxes through a ConfigMap and run with the sandbox's own
//! image, it must run in any image, shell or libc or not: it is freestanding
//! (no std, no libc, Linux x86-64 system calls), a few kilobytes, and built by
//! `build.rs` with rustc alone. Usage: `gate [DEADLINE_SECONDS]` (default 60).
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

const SYS_WRITE: usize = 1;
const SYS_OPEN: usize = 2;
const SYS_CLOSE: usize = 3;
const SYS_POLL: usize = 7;
const SYS_NANOSLEEP: usize = 35;
const SYS_SOCKET: usize = 41;
const SYS_CONNECT: usize = 42;
const SYS_GETSOCKOPT: usize = 55;
const SYS_CLOCK_GETTIME: usize = 228;
const SYS_EXIT_GROUP: usize = 231;

const AF_INET: usize = 2;
const SOCK_STREAM_NONBLOCK: usize = 1 | 0o4000;
const SOL_SOCKET: usize = 1;
const SO_ERROR: usize = 4;
const POLLOUT: i16 = 4;
const EINPROGRESS: isize = 115;
const O_WRONLY: usize = 1;
const CLOCK_MONOTONIC: usize = 1;

const ATTEMPT_MS: i64 = 200;
const PAUSE_MS: i64 = 100;
const DENIALS_NEEDED: u32 = 2;
const DEFAULT_DEADLINE_SECONDS: i64 = 60;

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
    let deadline_seconds = argv
        .get(1)
        .and_then(|&arg| parse_u64(unsafe { c_str(arg) }))
        .map_or(DEFAULT_DEADLINE_SECONDS, |s| s as i64);
    let host = unsafe { env(envp, b"KUBERNETES_SERVICE_HOST") };
    let port = unsafe { env(envp, b"KUBERNETES_SERVICE_PORT") };
    let target = match (host.and_then(parse_ipv4), port.and_then(parse_u64)) {
        (Some(ip), Some(port)) if port > 0 && port < 65536 => (ip, port as u16),
        _ => fail(
            b"sandlot network gate: $KUBERNETES_SERVICE_HOST/PORT hold no IPv4 address and port, \
              so the gate cannot tell whether the NetworkPolicy is in force",
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
                say(2, b"sandlot network gate: the NetworkPolicy is in force\n");
                exit(0);
            }
        }
        if now_ms() > deadline {
            fail(
                b"sandlot network gate: the sandbox could still reach the Kubernetes API server \
                  when its deadline passed, so its NetworkPolicy is not in force: this cluster may \
                  not enforce NetworkPolicy (use network \"unrestricted\" there), or the policy \
                  allows that address",
            );
        }
        sleep_ms(PAUSE_MS);
    }
}

/// Whether a TCP connection to `target` is accepted within [`ATTEMPT_MS`].
fn connects((ip, port): ([u8; 4], u16)) -> bool {
    let fd = unsafe { syscall(SYS_SOCKET, AF_INET, SOCK_STREAM_NONBLOCK, 0, 0, 0) };
    if fd < 0 {
        fail(b"sandlot network gate: socket() failed");
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

fn fail(message: &[u8]) -> ! {
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
    if fd >= 0 {
        say(fd as usize, message);
        unsafe { syscall(SYS_CLOSE, fd as usize, 0, 0, 0, 0) };
    }
    say(2, message);
    say(2, b"\n");
    exit(1)
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
    fail(b"sandlot network gate: internal error")
}
