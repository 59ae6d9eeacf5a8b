//! All output goes through [`Printer`]: text tables for people, JSON with `--json`.

use comfy_table::{Table, presets::NOTHING};
use sandlot_core::{Error, SandboxStatus, VolumeStatus};

/// Prints results and errors in the chosen format.
#[derive(Debug)]
pub struct Printer {
    json: bool,
}

impl Printer {
    pub fn new(json: bool) -> Self {
        Printer { json }
    }

    /// True when output is JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// One sandbox, as a key-value listing or a JSON object.
    pub fn status(&self, status: &SandboxStatus) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(status).unwrap_or_default()
            );
            return;
        }
        let time =
            |t: Option<jiff::Timestamp>| t.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
        let map = |m: &std::collections::BTreeMap<String, String>, sep: &str| {
            if m.is_empty() {
                "-".to_owned()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k}{sep}{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let rows = [
            ("name", status.name.clone()),
            ("namespace", status.namespace.clone()),
            ("phase", status.phase.to_string()),
            (
                "exit code",
                status
                    .exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
            (
                "reason",
                status
                    .termination_reason
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
            (
                "message",
                status.message.clone().unwrap_or_else(|| "-".into()),
            ),
            ("image", status.image.clone()),
            ("tags", map(&status.tags, "=")),
            ("volumes", map(&status.volume_mounts, " <- ")),
            ("created", time(status.created_at)),
            ("started", time(status.started_at)),
            ("finished", time(status.finished_at)),
        ];
        for (key, value) in rows {
            println!("{key:<10} {value}");
        }
    }

    /// A new sandbox: its name alone, so scripts can capture it, or its status as JSON.
    pub fn created(&self, status: &SandboxStatus) {
        if self.json {
            self.status(status);
        } else {
            println!("{}", status.name);
        }
    }

    /// Several sandboxes, as a table or a JSON array.
    pub fn statuses(&self, statuses: &[SandboxStatus]) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(statuses).unwrap_or_default()
            );
            return;
        }
        let mut table = Table::new();
        table.load_style(NOTHING);
        table.set_header(["NAME", "PHASE", "EXIT", "REASON", "IMAGE", "CREATED"]);
        for s in statuses {
            table.add_row([
                s.name.clone(),
                s.phase.to_string(),
                s.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                s.termination_reason
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                s.image.clone(),
                s.created_at.map(|t| t.to_string()).unwrap_or_default(),
            ]);
        }
        println!("{}", table.trim_fmt());
    }

    /// A new volume: its name, or its status as JSON.
    pub fn created_volume(&self, volume: &VolumeStatus) {
        if self.json {
            self.volume(volume);
        } else {
            println!("{}", volume.name);
        }
    }

    /// One volume, as a key-value listing or a JSON object.
    pub fn volume(&self, volume: &VolumeStatus) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(volume).unwrap_or_default()
            );
            return;
        }
        let rows = [
            ("name", volume.name.clone()),
            ("namespace", volume.namespace.clone()),
            ("phase", volume.phase.to_string()),
            ("size", volume.size.clone()),
            (
                "class",
                volume.storage_class.clone().unwrap_or_else(|| "-".into()),
            ),
            ("access", volume.access_mode.clone()),
            (
                "attached",
                if volume.attached_to.is_empty() {
                    "-".into()
                } else {
                    volume.attached_to.join(", ")
                },
            ),
            (
                "created",
                volume
                    .created_at
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
        ];
        for (key, value) in rows {
            println!("{key:<10} {value}");
        }
    }

    /// Several volumes, as a table or a JSON array.
    pub fn volumes(&self, volumes: &[VolumeStatus]) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(volumes).unwrap_or_default()
            );
            return;
        }
        let mut table = Table::new();
        table.load_style(NOTHING);
        table.set_header(["NAME", "PHASE", "SIZE", "CLASS", "ATTACHED"]);
        for v in volumes {
            table.add_row([
                v.name.clone(),
                v.phase.to_string(),
                v.size.clone(),
                v.storage_class.clone().unwrap_or_default(),
                v.attached_to.join(","),
            ]);
        }
        println!("{}", table.trim_fmt());
    }

    /// A line for people (suppressed with --json, where the data says it).
    pub fn line(&self, text: &str) {
        if !self.json {
            println!("{text}");
        }
    }

    /// An error: one line of what went wrong, then a hint when there is one.
    pub fn error(&self, err: &Error) {
        eprintln!("error: {err}");
        if let Some(hint) = hint(err) {
            eprintln!("hint: {hint}");
        }
    }
}

fn hint(err: &Error) -> Option<&'static str> {
    match err {
        Error::ClusterUnreachable { .. } => {
            Some("point KUBECONFIG at a cluster, or run `make cluster` for the local one")
        }
        Error::NotRunning { .. } => {
            Some("exec needs a running sandbox; `sandlot get NAME` shows its phase")
        }
        Error::NameConflict { .. } => {
            Some("sandbox names stay taken while the record exists; choose another name")
        }
        _ => None,
    }
}
