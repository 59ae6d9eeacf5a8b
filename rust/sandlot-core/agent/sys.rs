//! What the agent needs from the kernel and a libc, without a libc: Linux
//! x86-64 system calls, an allocator on `mmap`, the memory functions the
//! compiler calls, and the panic handler.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::asm;
use core::cell::UnsafeCell;

pub const SYS_READ: usize = 0;
pub const SYS_WRITE: usize = 1;
pub const SYS_OPEN: usize = 2;
pub const SYS_CLOSE: usize = 3;
pub const SYS_POLL: usize = 7;
pub const SYS_LSEEK: usize = 8;
pub const SYS_MMAP: usize = 9;
pub const SYS_MUNMAP: usize = 11;
pub const SYS_RT_SIGACTION: usize = 13;
pub const SYS_RT_SIGPROCMASK: usize = 14;
pub const SYS_IOCTL: usize = 16;
pub const SYS_MREMAP: usize = 25;
pub const SYS_DUP2: usize = 33;
pub const SYS_NANOSLEEP: usize = 35;
pub const SYS_GETPID: usize = 39;
pub const SYS_SENDFILE: usize = 40;
pub const SYS_SOCKET: usize = 41;
pub const SYS_CONNECT: usize = 42;
pub const SYS_BIND: usize = 49;
pub const SYS_LISTEN: usize = 50;
pub const SYS_FORK: usize = 57;
pub const SYS_EXECVE: usize = 59;
pub const SYS_WAIT4: usize = 61;
pub const SYS_KILL: usize = 62;
pub const SYS_FCNTL: usize = 72;
pub const SYS_CHDIR: usize = 80;
pub const SYS_RENAME: usize = 82;
pub const SYS_FCHMOD: usize = 91;
pub const SYS_SETSID: usize = 112;
pub const SYS_RT_SIGTIMEDWAIT: usize = 128;
pub const SYS_PRCTL: usize = 157;
pub const SYS_GETDENTS64: usize = 217;
pub const SYS_CLOCK_GETTIME: usize = 228;
pub const SYS_EXIT_GROUP: usize = 231;
pub const SYS_EPOLL_WAIT: usize = 232;
pub const SYS_EPOLL_CTL: usize = 233;
pub const SYS_OPENAT: usize = 257;
pub const SYS_MKDIRAT: usize = 258;
pub const SYS_NEWFSTATAT: usize = 262;
pub const SYS_UNLINKAT: usize = 263;
pub const SYS_SYMLINKAT: usize = 266;
pub const SYS_READLINKAT: usize = 267;
pub const SYS_FCHMODAT: usize = 268;
pub const SYS_SPLICE: usize = 275;
pub const SYS_UTIMENSAT: usize = 280;
pub const SYS_ACCEPT4: usize = 288;
pub const SYS_SIGNALFD4: usize = 289;
pub const SYS_EPOLL_CREATE1: usize = 291;
pub const SYS_PIPE2: usize = 293;
pub const SYS_RENAMEAT2: usize = 316;

pub const F_SETFL: usize = 4;
pub const F_SETPIPE_SZ: usize = 1031;

pub const O_RDONLY: usize = 0;
pub const O_WRONLY: usize = 1;
pub const O_RDWR: usize = 2;
pub const O_CREAT: usize = 0o100;
pub const O_EXCL: usize = 0o200;
pub const O_NOCTTY: usize = 0o400;
pub const O_TRUNC: usize = 0o1000;
pub const O_NONBLOCK: usize = 0o4000;
pub const O_DIRECTORY: usize = 0o200000;
pub const O_NOFOLLOW: usize = 0o400000;
pub const O_PATH: usize = 0o10000000;
pub const O_CLOEXEC: usize = 0o2000000;

/// The `dir` of the `*at` calls that means the working directory.
pub const AT_FDCWD: i32 = -100;
pub const AT_SYMLINK_NOFOLLOW: usize = 0x100;
pub const AT_REMOVEDIR: usize = 0x200;
pub const AT_EMPTY_PATH: usize = 0x1000;

pub const EINTR: isize = 4;
pub const EAGAIN: isize = 11;
pub const ENOENT: isize = 2;
pub const EIO: isize = 5;
pub const EACCES: isize = 13;
pub const EEXIST: isize = 17;
pub const ENOTDIR: isize = 20;
pub const EISDIR: isize = 21;
pub const EINVAL: isize = 22;
pub const EPIPE: isize = 32;
pub const ENOSYS: isize = 38;
pub const ENOTEMPTY: isize = 39;
pub const ELOOP: isize = 40;
pub const EOVERFLOW: isize = 75;

pub const SPLICE_F_MOVE: usize = 1;

pub const SIGINT: usize = 2;
pub const SIGPIPE: usize = 13;
pub const SIGTERM: usize = 15;
pub const SIGCHLD: usize = 17;

/// The name the daemon listens on, in the abstract socket namespace (no
/// file: works on a read-only root filesystem), versioned with the protocol.
pub const SOCKET_NAME: &[u8] = b"sandlot-agent-1";

/// # Safety
/// A raw Linux system call: the arguments must be valid for `number`.
pub unsafe fn syscall6(
    number: usize,
    a: usize,
    b: usize,
    c: usize,
    d: usize,
    e: usize,
    f: usize,
) -> isize {
    let result: isize;
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") number as isize => result,
            in("rdi") a, in("rsi") b, in("rdx") c, in("r10") d, in("r8") e, in("r9") f,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    result
}

/// # Safety
/// As [`syscall6`].
pub unsafe fn syscall(number: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    unsafe { syscall6(number, a, b, c, d, 0, 0) }
}

/// A system call that has no pointer arguments, retried while interrupted.
pub fn call(number: usize, a: usize, b: usize, c: usize) -> isize {
    loop {
        // SAFETY: callers pass only numbers and descriptors, no pointers.
        let result = unsafe { syscall(number, a, b, c, 0) };
        if result != -EINTR {
            return result;
        }
    }
}

pub fn read(fd: i32, buf: &mut [u8]) -> isize {
    loop {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe {
            syscall(
                SYS_READ,
                fd as usize,
                buf.as_mut_ptr() as usize,
                buf.len(),
                0,
            )
        };
        if n != -EINTR {
            return n;
        }
    }
}

pub fn write(fd: i32, buf: &[u8]) -> isize {
    loop {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { syscall(SYS_WRITE, fd as usize, buf.as_ptr() as usize, buf.len(), 0) };
        if n != -EINTR {
            return n;
        }
    }
}

/// Writes all of `buf` to a blocking descriptor; false if it fails.
pub fn write_all(fd: i32, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        let n = write(fd, buf);
        if n <= 0 {
            return false;
        }
        buf = &buf[n as usize..];
    }
    true
}

pub fn close(fd: i32) {
    if fd >= 0 {
        call(SYS_CLOSE, fd as usize, 0, 0);
    }
}

/// Opens a NUL-terminated path.
pub fn open(path: &[u8], flags: usize) -> isize {
    debug_assert_eq!(path.last(), Some(&0));
    // SAFETY: `path` is NUL-terminated.
    unsafe { syscall(SYS_OPEN, path.as_ptr() as usize, flags, 0, 0) }
}

/// Opens the NUL-terminated `path` in `dir`, creating it with `mode` if
/// `flags` say so.
pub fn open_at(dir: i32, path: &[u8], flags: usize, mode: u32) -> isize {
    debug_assert_eq!(path.last(), Some(&0));
    // SAFETY: `path` is NUL-terminated.
    unsafe {
        syscall(
            SYS_OPENAT,
            dir as usize,
            path.as_ptr() as usize,
            flags,
            mode as usize,
        )
    }
}

/// A pipe: (read end, write end), both close-on-exec.
pub fn pipe(flags: usize) -> Option<(i32, i32)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` holds two descriptors.
    let r = unsafe {
        syscall(
            SYS_PIPE2,
            fds.as_mut_ptr() as usize,
            O_CLOEXEC | flags,
            0,
            0,
        )
    };
    (r == 0).then_some((fds[0], fds[1]))
}

pub fn exit(code: usize) -> ! {
    loop {
        // SAFETY: exit_group takes no pointers and does not return.
        unsafe { syscall(SYS_EXIT_GROUP, code, 0, 0, 0) };
    }
}

pub fn sleep_ms(ms: u64) {
    let time = [ms / 1000, (ms % 1000) * 1_000_000];
    // SAFETY: `time` is a timespec.
    unsafe { syscall(SYS_NANOSLEEP, time.as_ptr() as usize, 0, 0, 0) };
}

/// Sets the disposition of `signal` to default (0) or ignore (1).
pub fn set_disposition(signal: usize, handler: usize) {
    // struct kernel_sigaction: handler, flags, restorer, mask.
    let action = [handler, 0, 0, 0];
    // SAFETY: `action` is a kernel sigaction; no handler function is set.
    unsafe { syscall(SYS_RT_SIGACTION, signal, action.as_ptr() as usize, 0, 8) };
}

/// Blocks (how 0) or sets (how 2) the signal mask.
pub fn sigprocmask(how: usize, mask: u64) {
    // SAFETY: `mask` is an 8-byte signal set.
    unsafe { syscall(SYS_RT_SIGPROCMASK, how, &mask as *const u64 as usize, 0, 8) };
}

/// Calls `each` with the name (the pid, in decimal) of every process in this
/// PID namespace, from `/proc`; false if `/proc` cannot be read.
pub fn each_process(mut each: impl FnMut(&[u8])) -> bool {
    let dir = open(b"/proc\0", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if dir < 0 {
        return false;
    }
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe {
            syscall(
                SYS_GETDENTS64,
                dir as usize,
                buf.as_mut_ptr() as usize,
                buf.len(),
                0,
            )
        };
        if n <= 0 {
            break;
        }
        let mut at = 0;
        while at + 19 < n as usize {
            // struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name.
            let reclen = u16::from_le_bytes([buf[at + 16], buf[at + 17]]) as usize;
            let name = &buf[at + 19..(at + reclen).min(n as usize)];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            at += reclen.max(1);
            if name.first().is_some_and(u8::is_ascii_digit) {
                each(name);
            }
        }
    }
    close(dir as i32);
    true
}

/// A wrapper that lets single-threaded state live in a static.
pub struct Single<T>(pub UnsafeCell<T>);

// SAFETY: the agent has one thread; a forked child only calls execve or exits.
unsafe impl<T> Sync for Single<T> {}

/// Blocks of one size class, carved from 64 KiB maps, reused through a free
/// list; bigger blocks are maps of their own. Single-threaded.
pub struct Allocator {
    free: Single<[usize; CLASSES]>,
}

const CLASSES: usize = 9; // 16 B .. 4 KiB
const SLAB: usize = 64 * 1024;
const PAGE: usize = 4096;

impl Allocator {
    pub const fn new() -> Self {
        Allocator {
            free: Single(UnsafeCell::new([0; CLASSES])),
        }
    }
}

fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(16);
    (size <= PAGE).then(|| (size.next_power_of_two().trailing_zeros() - 4) as usize)
}

fn map(len: usize) -> *mut u8 {
    // SAFETY: an anonymous private map takes no pointers.
    let ptr = unsafe { syscall6(SYS_MMAP, 0, len, 3, 0x22, usize::MAX, 0) };
    if ptr < 0 {
        core::ptr::null_mut()
    } else {
        ptr as *mut u8
    }
}

fn pages(len: usize) -> usize {
    len.div_ceil(PAGE) * PAGE
}

// SAFETY: blocks are handed out once until freed; maps are page-aligned, and a
// class block of size S is S-aligned (slabs are page-aligned, S divides PAGE).
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > PAGE {
            return core::ptr::null_mut();
        }
        let Some(class) = class_of(layout) else {
            return map(pages(layout.size()));
        };
        // SAFETY: single-threaded; the free list links blocks through their first word.
        unsafe {
            let free = &mut *self.free.0.get();
            if free[class] == 0 {
                let size = 16 << class;
                let slab = map(SLAB);
                if slab.is_null() {
                    return slab;
                }
                for offset in (0..SLAB).step_by(size).rev() {
                    let block = slab.add(offset) as *mut usize;
                    *block = free[class];
                    free[class] = block as usize;
                }
            }
            let block = free[class] as *mut usize;
            free[class] = *block;
            block as *mut u8
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            // SAFETY: the block is a map of this length.
            unsafe { syscall(SYS_MUNMAP, ptr as usize, pages(layout.size()), 0, 0) };
            return;
        };
        // SAFETY: single-threaded; the block was handed out for this class.
        unsafe {
            let free = &mut *self.free.0.get();
            *(ptr as *mut usize) = free[class];
            free[class] = ptr as usize;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align(new_size, layout.align()).unwrap_or(layout);
        if class_of(layout).is_none() && class_of(new).is_none() {
            // SAFETY: the block is a map of the old length; mremap may move it.
            let ptr = unsafe {
                syscall6(
                    SYS_MREMAP,
                    ptr as usize,
                    pages(layout.size()),
                    pages(new_size),
                    1,
                    0,
                    0,
                )
            };
            return if ptr < 0 {
                core::ptr::null_mut()
            } else {
                ptr as *mut u8
            };
        }
        // SAFETY: as alloc and dealloc; the copy stays within both blocks.
        unsafe {
            let moved = self.alloc(new);
            if !moved.is_null() {
                memcpy(moved, ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            moved
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    write(2, b"sandlot-agent: internal error\n");
    exit(101)
}

// The compiler calls these for copies, fills and comparisons; without a libc
// the agent provides them, with string instructions (no loop the compiler
// could turn back into a call to the function itself).

/// # Safety
/// `dest` and `src` must be valid for `n` bytes and not overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dest
}

/// # Safety
/// `dest` and `src` must be valid for `n` bytes; they may overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize) <= (src as usize) || (dest as usize) >= (src as usize) + n {
        return unsafe { memcpy(dest, src, n) };
    }
    // Overlapping with dest after src: copy backwards.
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rcx") n => _, inout("rdi") dest.add(n - 1) => _,
             inout("rsi") src.add(n - 1) => _, options(nostack));
    }
    dest
}

/// # Safety
/// `dest` must be valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, byte: i32, n: usize) -> *mut u8 {
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dest => _, in("al") byte as u8,
             options(nostack, preserves_flags));
    }
    dest
}

/// # Safety
/// `a` and `b` must be valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// `s` must be NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut len = 0;
    while unsafe { s.add(len).read_volatile() } != 0 {
        len += 1;
    }
    len
}

/// # Safety
/// `a` and `b` must be valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    unsafe { memcmp(a, b, n) }
}

/// Appends `value` in decimal.
pub fn push_decimal(out: &mut alloc::vec::Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The monotonic clock, in nanoseconds.
pub fn now_ns() -> u64 {
    clock_ns(CLOCK_MONOTONIC)
}

pub const CLOCK_REALTIME: usize = 0;
pub const CLOCK_MONOTONIC: usize = 1;
/// The monotonic clock, counting time suspended: nanoseconds since boot.
pub const CLOCK_BOOTTIME: usize = 7;

/// Clock `clock`, in nanoseconds.
pub fn clock_ns(clock: usize) -> u64 {
    let mut time = [0u64; 2];
    // SAFETY: `time` is a timespec.
    unsafe { syscall(SYS_CLOCK_GETTIME, clock, time.as_mut_ptr() as usize, 0, 0) };
    time[0] * 1_000_000_000 + time[1]
}
