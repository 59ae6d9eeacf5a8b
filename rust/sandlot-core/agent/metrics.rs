//! The sandbox's resource figures, read from its own cgroup (v2, else v1)
//! and `/proc`, as the daemon answers a metrics request.

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
