//! All output goes through [`Printer`]: aligned tables (coloured on a terminal),
//! JSON with stable field names, or bare names for pipes.

use std::io::{IsTerminal, Write};

use comfy_table::{Table, presets::NOTHING};
use sandlot_core::{
    AgentProcessInfo, EntryKind, Error, FileEntry, ObjectKind, Phase, PoolStatus, SandboxMetrics,
    SandboxStatus, VolumeStatus,
};

use crate::args::Output;

/// Prints results and errors in the chosen format.
#[derive(Debug)]
pub struct Printer {
    output: Output,
    quiet: bool,
    color: bool,
}

impl Printer {
    pub fn new(output: Output, quiet: bool) -> Self {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Printer {
            output,
            quiet,
            color,
        }
    }

    /// True when output is JSON.
    pub fn is_json(&self) -> bool {
        self.output == Output::Json
    }

    /// One sandbox: a key-value listing, a JSON object, or its name.
    pub fn status(&self, status: &SandboxStatus) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(status).unwrap_or_default()
            ),
            Output::Name => println!("{}", status.name),
            Output::Table => {
                let mut rows = vec![
                    ("name", status.name.clone()),
                    ("namespace", status.namespace.clone()),
                    ("phase", self.phase(status.phase)),
                    (
                        "exit code",
                        or_dash(status.exit_code.map(|c| c.to_string())),
                    ),
                    (
                        "reason",
                        or_dash(status.termination_reason.map(|r| r.to_string())),
                    ),
                    ("message", or_dash(status.message.clone())),
                    ("image", status.image.clone()),
                    ("tags", pairs(status.tags.iter(), "=")),
                    ("volumes", pairs(status.volume_mounts.iter(), " <- ")),
                    ("network", network_text(status)),
                    ("user ns", yes_no(status.user_namespace)),
                    ("pool", pool_text(status)),
                ];
                if let Some(reason) = &status.pool_fallback {
                    rows.push(("fallback", reason.clone()));
                }
                rows.extend([
                    ("created", or_dash(status.created_at.map(|t| t.to_string()))),
                    ("started", or_dash(status.started_at.map(|t| t.to_string()))),
                    (
                        "finished",
                        or_dash(status.finished_at.map(|t| t.to_string())),
                    ),
                ]);
                for (key, value) in rows {
                    println!("{key:<10} {}", terminal_safe(&value));
                }
            }
        }
    }

    /// Several sandboxes: a table, a JSON array, or names.
    pub fn statuses(&self, statuses: &[SandboxStatus]) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(statuses).unwrap_or_default()
            ),
            Output::Name => statuses.iter().for_each(|s| println!("{}", s.name)),
            Output::Table => {
                let now = jiff::Timestamp::now();
                let mut table = Table::new();
                table.load_style(NOTHING);
                table.set_header([
                    "NAME", "PHASE", "EXIT", "REASON", "IMAGE", "NETWORK", "AGE", "TAGS",
                ]);
                for s in statuses {
                    table.add_row([
                        s.name.clone(),
                        self.phase(s.phase),
                        s.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                        s.termination_reason
                            .map(|r| r.to_string())
                            .unwrap_or_default(),
                        terminal_safe(&s.image).into_owned(),
                        s.network.to_string(),
                        s.created_at.map(|t| age(now, t)).unwrap_or_default(),
                        s.tags
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(","),
                    ]);
                }
                println!("{}", table.trim_fmt());
            }
        }
    }

    /// A new sandbox: its name alone (so scripts can capture it), or JSON.
    pub fn created(&self, status: &SandboxStatus) {
        match self.output {
            Output::Json => self.status(status),
            _ => println!("{}", status.name),
        }
    }

    /// One volume: a key-value listing, a JSON object, or its name.
    pub fn volume(&self, volume: &VolumeStatus) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(volume).unwrap_or_default()
            ),
            Output::Name => println!("{}", volume.name),
            Output::Table => {
                let rows = [
                    ("name", volume.name.clone()),
                    ("namespace", volume.namespace.clone()),
                    ("phase", volume.phase.to_string()),
                    ("size", volume.size.clone()),
                    ("class", or_dash(volume.storage_class.clone())),
                    ("access", volume.access_mode.clone()),
                    (
                        "attached",
                        or_dash(
                            (!volume.attached_to.is_empty()).then(|| volume.attached_to.join(", ")),
                        ),
                    ),
                    ("created", or_dash(volume.created_at.map(|t| t.to_string()))),
                ];
                for (key, value) in rows {
                    println!("{key:<10} {}", terminal_safe(&value));
                }
            }
        }
    }

    /// A new volume: its name, or JSON.
    pub fn created_volume(&self, volume: &VolumeStatus) {
        match self.output {
            Output::Json => self.volume(volume),
            _ => println!("{}", volume.name),
        }
    }

    /// Several volumes: a table, a JSON array, or names.
    pub fn volumes(&self, volumes: &[VolumeStatus]) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(volumes).unwrap_or_default()
            ),
            Output::Name => volumes.iter().for_each(|v| println!("{}", v.name)),
            Output::Table => {
                let now = jiff::Timestamp::now();
                let mut table = Table::new();
                table.load_style(NOTHING);
                table.set_header(["NAME", "PHASE", "SIZE", "CLASS", "ATTACHED", "AGE"]);
                for v in volumes {
                    table.add_row([
                        v.name.clone(),
                        v.phase.to_string(),
                        v.size.clone(),
                        v.storage_class.clone().unwrap_or_default(),
                        v.attached_to.join(","),
                        v.created_at.map(|t| age(now, t)).unwrap_or_default(),
                    ]);
                }
                println!("{}", table.trim_fmt());
            }
        }
    }

    /// One pool: a key-value listing, a JSON object, or its name.
    pub fn pool(&self, pool: &PoolStatus) {
        match self.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(pool).unwrap_or_default()),
            Output::Name => println!("{}", pool.name),
            Output::Table => {
                let rows = [
                    ("name", pool.name.clone()),
                    ("namespace", pool.namespace.clone()),
                    ("image", pool.image.clone()),
                    ("size", pool.size.to_string()),
                    ("ready", pool.ready.to_string()),
                    ("starting", pool.starting.to_string()),
                    ("stale", pool.stale.to_string()),
                    ("network", pool.network.to_string()),
                    ("idle", format!("{}s", pool.idle_seconds)),
                    ("max ttl", format!("{}s", pool.max_ttl_seconds)),
                    ("version", pool.version.clone()),
                    ("template", pool.template.clone()),
                    ("created", or_dash(pool.created_at.map(|t| t.to_string()))),
                ];
                for (key, value) in rows {
                    println!("{key:<10} {}", terminal_safe(&value));
                }
            }
        }
    }

    /// A pool just created or updated: its name, or JSON.
    pub fn created_pool(&self, pool: &PoolStatus) {
        match self.output {
            Output::Json => self.pool(pool),
            _ => println!("{}", pool.name),
        }
    }

    /// Several pools: a table, a JSON array, or names.
    pub fn pools(&self, pools: &[PoolStatus]) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(pools).unwrap_or_default()
            ),
            Output::Name => pools.iter().for_each(|p| println!("{}", p.name)),
            Output::Table => {
                let now = jiff::Timestamp::now();
                let mut table = Table::new();
                table.load_style(NOTHING);
                table.set_header([
                    "NAME", "IMAGE", "SIZE", "READY", "STARTING", "STALE", "NETWORK", "AGE",
                ]);
                for p in pools {
                    table.add_row([
                        p.name.clone(),
                        terminal_safe(&p.image).into_owned(),
                        p.size.to_string(),
                        p.ready.to_string(),
                        p.starting.to_string(),
                        p.stale.to_string(),
                        p.network.to_string(),
                        p.created_at.map(|t| age(now, t)).unwrap_or_default(),
                    ]);
                }
                println!("{}", table.trim_fmt());
            }
        }
    }

    /// A pool deleted, and how many warm sandboxes that ended: a line for
    /// people, a JSON object, or its name.
    pub fn pool_deleted(&self, name: &str, ended: u32) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::json!({ "name": name, "warm_sandboxes_ended": ended })
            ),
            Output::Name => println!("{name}"),
            Output::Table => self.line(&format!(
                "{name} deleted ({ended} warm sandbox{} ended)",
                if ended == 1 { "" } else { "es" }
            )),
        }
    }

    /// The id of a process started detached: bare, or a JSON object.
    pub fn process_id(&self, id: u32) {
        match self.output {
            Output::Json => println!("{}", serde_json::json!({ "id": id })),
            Output::Name | Output::Table => println!("{id}"),
        }
    }

    /// The processes a sandbox's agent keeps: a table, a JSON array, or ids.
    pub fn processes(&self, processes: &[AgentProcessInfo]) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(processes).unwrap_or_default()
            ),
            Output::Name => processes.iter().for_each(|p| println!("{}", p.id)),
            Output::Table => {
                let mut table = Table::new();
                table.load_style(NOTHING);
                table.set_header([
                    "ID", "PID", "STATE", "DETACHED", "STDOUT", "STDERR", "COMMAND",
                ]);
                for p in processes {
                    table.add_row([
                        p.id.to_string(),
                        p.pid.to_string(),
                        p.exit_code
                            .map_or_else(|| "running".to_owned(), |code| format!("exited {code}")),
                        if p.detached { "yes" } else { "no" }.to_owned(),
                        p.stdout_end.to_string(),
                        p.stderr_end.to_string(),
                        terminal_safe(&p.command.join(" ")).into_owned(),
                    ]);
                }
                println!("{}", table.trim_fmt());
            }
        }
    }

    /// A sandbox's resources: a table row (the header first if `header`), or
    /// a JSON object per line.
    pub fn metrics(&self, m: &SandboxMetrics, header: bool) {
        if self.output == Output::Json {
            println!("{}", serde_json::to_string(m).unwrap_or_default());
            return;
        }
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
        let mib = |v: Option<u64>| or_dash(v.map(|b| format!("{:.1}Mi", b as f64 / 1048576.0)));
        let count = |v: Option<u64>| or_dash(v.map(|n| n.to_string()));
        let mut table = Table::new();
        table.load_style(NOTHING);
        if header {
            table.set_header([
                "CPU",
                "MEMORY",
                "LIMIT",
                "PROCESSES",
                "NET IN",
                "NET OUT",
                "DISK",
                "DISK LIMIT",
            ]);
        }
        table.add_row([
            or_dash(m.cpu_cores.map(|c| format!("{c:.3}"))),
            mib(m.memory_bytes),
            mib(m.memory_limit_bytes),
            count(m.processes),
            count(m.network_rx_bytes),
            count(m.network_tx_bytes),
            mib(m.disk_used_bytes),
            mib(m.disk_limit_bytes),
        ]);
        println!("{}", table.trim_fmt());
    }

    /// Entries of a file listing: their names (with `long`, after the mode,
    /// size and modification time, and followed by a symlink's target), or
    /// a JSON array. Names go out as their bytes; to a terminal, control
    /// characters show as escapes (and bytes that are not UTF-8 as U+FFFD,
    /// as they do in JSON).
    pub fn entries(&self, entries: &[FileEntry], long: bool) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.output == Output::Json {
            let listed: Vec<_> = entries.iter().map(entry_json).collect();
            let text = serde_json::to_string_pretty(&listed).unwrap_or_default();
            return writeln!(stdout, "{text}").and_then(|()| stdout.flush());
        }
        let terminal = stdout.is_terminal();
        let shown = |bytes: &[u8]| -> Vec<u8> {
            if terminal {
                terminal_safe(&String::from_utf8_lossy(bytes))
                    .into_owned()
                    .into_bytes()
            } else {
                bytes.to_vec()
            }
        };
        let long = long && self.output == Output::Table;
        let size_width = entries
            .iter()
            .map(|e| e.size.to_string().len())
            .max()
            .unwrap_or(0);
        let mut out = Vec::new();
        for entry in entries {
            if long {
                let mtime = jiff::Timestamp::from_second(entry.mtime.0)
                    .map(|t| t.to_string())
                    .unwrap_or_else(|_| "-".into());
                let mode = mode_text(entry.kind, entry.mode);
                let size = entry.size;
                write!(out, "{mode} {size:>size_width$} {mtime} ")?;
            }
            out.extend_from_slice(&shown(&entry.path));
            if let (true, Some(target)) = (long, &entry.target) {
                out.extend_from_slice(b" -> ");
                out.extend_from_slice(&shown(target));
            }
            out.push(b'\n');
        }
        stdout.write_all(&out).and_then(|()| stdout.flush())
    }

    /// Whether a progress line may be drawn on stderr: it is a terminal and
    /// --quiet was not given.
    pub fn shows_progress(&self) -> bool {
        !self.quiet && std::io::stderr().is_terminal()
    }

    /// A line for people: suppressed by --quiet and by JSON or name output.
    pub fn line(&self, text: &str) {
        if !self.quiet && self.output == Output::Table {
            println!("{text}");
        }
    }

    /// A note for people on stderr: the command did what was asked, in a way
    /// worth knowing. Suppressed by --quiet.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("note: {}", terminal_safe(text));
        }
    }

    /// A warning: the command goes on. Shown even with --quiet.
    pub fn warning(&self, text: &str) {
        eprintln!("warning: {}", terminal_safe(text));
    }

    /// An error: one line of what went wrong, then a hint when there is one.
    pub fn error(&self, err: &Error) {
        eprintln!("error: {}", terminal_safe(&err.to_string()));
        if let Some(hint) = hint(err) {
            eprintln!("hint: {hint}");
        }
    }

    fn phase(&self, phase: Phase) -> String {
        if !self.color {
            return phase.to_string();
        }
        let code = match phase {
            Phase::Queued | Phase::Creating => "33",
            Phase::Running => "32",
            Phase::Succeeded => "34",
            Phase::Failed => "31",
            Phase::Terminated => "90",
        };
        format!("\u{1b}[{code}m{phase}\u{1b}[0m")
    }
}

/// `text` with the control characters a terminal would act on (escape
/// sequences, bell, carriage return, ...) written out as escapes (`\u{1b}`);
/// newlines and tabs stay. Text a sandbox wrote is shown through this, so it
/// cannot retitle, clear or rewrite the user's terminal.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| {
            if unsafe_char(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".into())
}

fn pairs<K: std::fmt::Display, V: std::fmt::Display>(
    map: impl Iterator<Item = (K, V)>,
    separator: &str,
) -> String {
    let text = map
        .map(|(k, v)| format!("{k}{separator}{v}"))
        .collect::<Vec<_>>()
        .join(", ");
    if text.is_empty() { "-".into() } else { text }
}

/// "42s", "5m", "3h", "2d": the largest whole unit.
fn age(now: jiff::Timestamp, then: jiff::Timestamp) -> String {
    let seconds = now.as_second().saturating_sub(then.as_second()).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn hint(err: &Error) -> Option<&'static str> {
    match err.underlying() {
        Error::ClusterUnreachable { .. } => Some(
            "point KUBECONFIG (or --kubeconfig) at a cluster, or run `make cluster` for the local one",
        ),
        Error::NotRunning { .. } => {
            Some("exec needs a running sandbox; `sandlot get NAME` shows its phase")
        }
        Error::NameConflict {
            kind: ObjectKind::Pool,
            ..
        } => Some(
            "a pool's name stays taken until `sandlot pool delete`; `sandlot pool update` changes its options",
        ),
        Error::NameConflict { .. } => {
            Some("names stay taken while the sandbox record or volume exists; choose another name")
        }
        Error::VolumeInUse { .. } => Some("terminate those sandboxes first, or pass --force"),
        Error::QuotaExceeded { .. } => Some(
            "the namespace's ResourceQuota is used up: terminate or purge sandboxes, or ask for a larger quota",
        ),
        Error::PermissionDenied { .. } => Some(
            "check the RBAC of your credentials for this namespace (deploy/rbac.yaml), or use another with -n/--namespace",
        ),
        _ => None,
    }
}

/// A listed entry as JSON: names as text (bytes that are not UTF-8 become
/// U+FFFD), the mode as a number, the modification time in RFC 3339.
fn entry_json(entry: &FileEntry) -> serde_json::Value {
    let mtime = jiff::Timestamp::new(entry.mtime.0, entry.mtime.1 as i32)
        .map(|t| t.to_string())
        .ok();
    serde_json::json!({
        "path": String::from_utf8_lossy(&entry.path),
        "kind": entry.kind.as_str(),
        "mode": entry.mode,
        "size": entry.size,
        "mtime": mtime,
        "target": entry.target.as_deref().map(String::from_utf8_lossy),
    })
}

/// `drwxr-xr-x`: an entry's kind and permission bits as `ls -l` shows them
/// (`?` for a fifo, socket or device).
fn mode_text(kind: EntryKind, mode: u32) -> String {
    let mut text = String::with_capacity(10);
    text.push(match kind {
        EntryKind::File => '-',
        EntryKind::Directory => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::Other => '?',
    });
    // Owner, group, others; each with its set-id or sticky bit.
    for (shift, special, letter) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = mode >> shift;
        text.push(if bits & 4 != 0 { 'r' } else { '-' });
        text.push(if bits & 2 != 0 { 'w' } else { '-' });
        text.push(match (mode & special != 0, bits & 1 != 0) {
            (true, true) => letter,
            (true, false) => letter.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    text
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.into()
}

/// The pool a sandbox came from ("-" for none), marked "(warm)" while it
/// waits in the pool unclaimed.
fn pool_text(status: &SandboxStatus) -> String {
    match &status.pool {
        None => "-".into(),
        Some(pool) if status.warm => format!("{pool} (warm)"),
        Some(pool) => pool.clone(),
    }
}

/// The network mode, followed by its allowlist if it has one.
fn network_text(status: &SandboxStatus) -> String {
    if status.allow_egress.is_empty() {
        status.network.to_string()
    } else {
        format!("{} {}", status.network, status.allow_egress.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_as_escapes() {
        assert_eq!(terminal_safe("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(
            terminal_safe("\u{1b}]0;owned\u{7}\r\u{9b}2J"),
            "\\u{1b}]0;owned\\u{7}\\r\\u{9b}2J"
        );
    }

    #[test]
    fn modes_read_as_ls_shows_them() {
        assert_eq!(mode_text(EntryKind::Directory, 0o755), "drwxr-xr-x");
        assert_eq!(mode_text(EntryKind::File, 0o640), "-rw-r-----");
        assert_eq!(mode_text(EntryKind::Symlink, 0o777), "lrwxrwxrwx");
        assert_eq!(mode_text(EntryKind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_text(EntryKind::Directory, 0o3770), "drwxrws--T");
        assert_eq!(mode_text(EntryKind::Other, 0o2600), "?rw---S---");
    }

    #[test]
    fn ages_use_the_largest_whole_unit() {
        let now: jiff::Timestamp = "2026-01-10T00:00:00Z".parse().unwrap();
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(age(now, at("2026-01-09T23:59:18Z")), "42s");
        assert_eq!(age(now, at("2026-01-09T23:55:00Z")), "5m");
        assert_eq!(age(now, at("2026-01-09T21:00:00Z")), "3h");
        assert_eq!(age(now, at("2026-01-07T00:00:00Z")), "3d");
    }
}
