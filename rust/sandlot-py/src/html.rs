//! HTML reprs for notebooks: small tables, phases coloured.

use sandlot_core::{ExecResult, Phase, PoolStatus, SandboxStatus, VolumeStatus};

/// `text` with HTML's special characters escaped.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn phase_cell(phase: Phase) -> String {
    let color = match phase {
        Phase::Queued | Phase::Creating => "#b8860b",
        Phase::Running => "#2e8b57",
        Phase::Succeeded => "#1f6feb",
        Phase::Failed => "#d1242f",
        Phase::Terminated => "#6e7781",
    };
    format!("<td style=\"color:{color};font-weight:bold\">{phase}</td>")
}

fn cell(text: &str) -> String {
    format!("<td>{}</td>", escape(text))
}

/// A table of sandboxes, one row each.
pub fn sandboxes_table(statuses: &[&SandboxStatus]) -> String {
    let mut html = String::from(
        "<table><thead><tr><th>name</th><th>phase</th><th>exit code</th><th>reason</th><th>image</th><th>network</th><th>created</th></tr></thead><tbody>",
    );
    for s in statuses {
        html.push_str("<tr>");
        html.push_str(&cell(&s.name));
        html.push_str(&phase_cell(s.phase));
        html.push_str(&cell(
            &s.exit_code.map(|c| c.to_string()).unwrap_or_default(),
        ));
        html.push_str(&cell(
            s.termination_reason.map(|r| r.as_str()).unwrap_or_default(),
        ));
        html.push_str(&cell(&s.image));
        html.push_str(&cell(s.network.as_str()));
        html.push_str(&cell(
            &s.created_at.map(|t| t.to_string()).unwrap_or_default(),
        ));
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

/// A table of volumes, one row each.
pub fn volumes_table(volumes: &[&VolumeStatus]) -> String {
    let mut html = String::from(
        "<table><thead><tr><th>name</th><th>phase</th><th>size</th><th>class</th><th>attached to</th></tr></thead><tbody>",
    );
    for v in volumes {
        html.push_str("<tr>");
        html.push_str(&cell(&v.name));
        html.push_str(&cell(v.phase.as_str()));
        html.push_str(&cell(&v.size));
        html.push_str(&cell(v.storage_class.as_deref().unwrap_or_default()));
        html.push_str(&cell(&v.attached_to.join(", ")));
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

/// A table of warm pools, one row each.
pub fn pools_table(pools: &[&PoolStatus]) -> String {
    let mut html = String::from(
        "<table><thead><tr><th>name</th><th>image</th><th>size</th><th>ready</th><th>starting</th><th>stale</th><th>network</th></tr></thead><tbody>",
    );
    for p in pools {
        html.push_str("<tr>");
        html.push_str(&cell(&p.name));
        html.push_str(&cell(&p.image));
        for count in [p.size, p.ready, p.starting, p.stale] {
            html.push_str(&cell(&count.to_string()));
        }
        html.push_str(&cell(p.network.as_str()));
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

/// An exec result: the exit code, then stdout and stderr as preformatted text.
pub fn exec_result(result: &ExecResult) -> String {
    let color = if result.exit_code == 0 {
        "#2e8b57"
    } else {
        "#d1242f"
    };
    let block = |label: &str, bytes: &[u8]| {
        if bytes.is_empty() {
            String::new()
        } else {
            format!(
                "<div><b>{label}</b><pre>{}</pre></div>",
                escape(&String::from_utf8_lossy(bytes))
            )
        }
    };
    format!(
        "<div><span style=\"color:{color};font-weight:bold\">exit code {}</span>{}{}</div>",
        result.exit_code,
        block("stdout", &result.stdout),
        block("stderr", &result.stderr)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_escaped() {
        let result = ExecResult {
            stdout: b"<script>alert(1)</script>".to_vec(),
            stderr: Vec::new(),
            exit_code: 0,
            truncated: false,
            through_agent: false,
        };
        let html = exec_result(&result);
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("<script>"));
    }
}
