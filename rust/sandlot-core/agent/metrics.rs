//! The sandbox's resource figures, read from its own cgroup (v2, else v1)
//! and `/proc`, as the daemon answers a metrics request.

use alloc::vec::Vec;
use sandlot_wire::{Metrics, UNKNOWN};

use crate::sys::*;

/// A limit at least this large means none (cgroup v1 reports a huge number).
const NO_LIMIT: u64 = 1 << 60;

pub fn measure() -> Metrics {
    let v2 = read_file(b"/sys/fs/cgroup/cgroup.controllers\0", &mut [0; 512]).is_some();
    let mut buf = [0u8; 8192];
    let (cpu_ns, memory_bytes, memory_limit_bytes) = if v2 {
        let cpu = read_file(b"/sys/fs/cgroup/cpu.stat\0", &mut buf)
            .and_then(|text| field(text, b"usage_usec"))
            .map_or(UNKNOWN, |usec| usec.saturating_mul(1000));
        let inactive = read_file(b"/sys/fs/cgroup/memory.stat\0", &mut buf)
            .and_then(|text| field(text, b"inactive_file"))
            .unwrap_or(0);
        let current = number(b"/sys/fs/cgroup/memory.current\0");
        let limit = number(b"/sys/fs/cgroup/memory.max\0");
        (cpu, working_set(current, inactive), limit)
    } else {
        let cpu = [
            &b"/sys/fs/cgroup/cpuacct/cpuacct.usage\0"[..],
            b"/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage\0",
        ]
        .iter()
        .map(|path| number(path))
        .find(|&n| n != UNKNOWN)
        .unwrap_or(UNKNOWN);
        let inactive = read_file(b"/sys/fs/cgroup/memory/memory.stat\0", &mut buf)
            .and_then(|text| field(text, b"total_inactive_file"))
            .unwrap_or(0);
        let current = number(b"/sys/fs/cgroup/memory/memory.usage_in_bytes\0");
        let limit = number(b"/sys/fs/cgroup/memory/memory.limit_in_bytes\0");
        (cpu, working_set(current, inactive), limit)
    };
    let (network_rx_bytes, network_tx_bytes) = network(&mut buf);
    Metrics {
        at_ns: now_ns(),
        cpu_ns,
        memory_bytes,
        memory_limit_bytes: if memory_limit_bytes >= NO_LIMIT {
            UNKNOWN
        } else {
            memory_limit_bytes
        },
        processes: count_processes(),
        network_rx_bytes,
        network_tx_bytes,
    }
}

fn working_set(current: u64, inactive: u64) -> u64 {
    if current == UNKNOWN {
        UNKNOWN
    } else {
        current.saturating_sub(inactive)
    }
}

/// A whole small file (NUL-terminated path), or `None`.
fn read_file<'b>(path: &[u8], buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let fd = open(path, O_RDONLY | O_CLOEXEC);
    if fd < 0 {
        return None;
    }
    let mut len = 0;
    while len < buf.len() {
        let n = read(fd as i32, &mut buf[len..]);
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    close(fd as i32);
    Some(&buf[..len])
}

/// When the sandbox's first process (its pid 1) started, in nanoseconds since
/// the epoch: its start in clock ticks after boot (100 a second on Linux), on
/// the real-time clock.
pub fn started_ns() -> Option<i64> {
    let mut buf = [0u8; 1024];
    let stat = read_file(b"/proc/1/stat\0", &mut buf)?;
    // After the command in parentheses: the state (field 3) ... the start (22).
    let after = stat.iter().rposition(|&b| b == b')')?;
    let ticks = stat[after + 1..]
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .nth(19)
        .and_then(parse)?;
    let boot = clock_ns(CLOCK_REALTIME).checked_sub(clock_ns(CLOCK_BOOTTIME))?;
    let start = boot.checked_add(ticks.checked_mul(10_000_000)?)?;
    i64::try_from(start).ok()
}

/// The sandbox's mounts: where its scratch volumes (Kubernetes emptyDir on
/// the node's disk, which counts against its disk limit) are mounted, each
/// once, and every mount point.
pub fn mounts() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut buf = alloc::vec![0u8; 1 << 20];
    let Some(text) = read_file(b"/proc/self/mountinfo\0", &mut buf) else {
        return (Vec::new(), Vec::new());
    };
    let mut sources: Vec<&[u8]> = Vec::new();
    let mut mounts = Vec::new();
    let mut points = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        // id, parent, device, root, mount point, options..., "-", type, source.
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == b"-") else {
            continue;
        };
        let (Some(root), Some(point), Some(kind)) =
            (fields.get(3), fields.get(4), fields.get(dash + 1))
        else {
            continue;
        };
        points.push(unescape(point));
        let scratch = root.windows(EMPTY_DIR.len()).any(|w| w == EMPTY_DIR);
        if scratch && *kind != b"tmpfs" && !sources.contains(root) {
            sources.push(root);
            mounts.push(unescape(point));
        }
    }
    (mounts, points)
}

/// Where the kubelet keeps a pod's emptyDir volumes, in a mount's root.
const EMPTY_DIR: &[u8] = b"/volumes/kubernetes.io~empty-dir/";

/// A mountinfo path with its octal escapes (`\040` for a space) undone.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(
                    d.iter()
                        .fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')),
                );
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// A file holding one number; [`UNKNOWN`] if unreadable or not a number ("max").
fn number(path: &[u8]) -> u64 {
    read_file(path, &mut [0; 64])
        .and_then(|text| parse(text.trim_ascii()))
        .unwrap_or(UNKNOWN)
}

fn parse(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    text.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The value of `name` in a "name value" per line file.
fn field(text: &[u8], name: &[u8]) -> Option<u64> {
    text.split(|&b| b == b'\n').find_map(|line| {
        let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
        (words.next()? == name).then(|| parse(words.next()?))?
    })
}

/// Bytes received and sent on every interface but loopback (`/proc/net/dev`).
fn network(buf: &mut [u8]) -> (u64, u64) {
    let Some(text) = read_file(b"/proc/net/dev\0", buf) else {
        return (UNKNOWN, UNKNOWN);
    };
    let (mut rx, mut tx) = (0u64, 0u64);
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].trim_ascii() == b"lo" {
            continue;
        }
        let mut fields = line[colon + 1..]
            .split(|&b| b == b' ')
            .filter(|w| !w.is_empty());
        // Receive: bytes and 7 more fields; then transmit bytes.
        let received = fields.next().and_then(parse);
        let sent = fields.nth(7).and_then(parse);
        if let (Some(received), Some(sent)) = (received, sent) {
            rx = rx.saturating_add(received);
            tx = tx.saturating_add(sent);
        }
    }
    (rx, tx)
}

/// Processes in the sandbox's PID namespace.
fn count_processes() -> u64 {
    let mut count = 0;
    if each_process(|_| count += 1) {
        count
    } else {
        UNKNOWN
    }
}
