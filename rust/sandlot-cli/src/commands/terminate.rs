use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use sandlot_core::{Client, Result, Selection};

use crate::args::TerminateArgs;
use crate::commands::confirm;
use crate::printer::Printer;

/// Terminates the selected sandboxes with bounded concurrency, showing progress
/// on a terminal, and prints one line per sandbox; exits 1 if any failed.
pub async fn run(client: &Client, printer: &Printer, args: TerminateArgs) -> Result<i32> {
    let selection = args.selection()?;
    let names = client.select_sandboxes(&selection).await?;
    if args.dry_run {
        names
            .iter()
            .for_each(|name| println!("{name} would be terminated"));
        return Ok(0);
    }
    if selection.all && !args.yes {
        confirm(&format!(
            "Terminate all {} sandboxes of namespace {:?}?",
            names.len(),
            client.namespace()
        ))?;
    }
    let progress = if names.len() > 1 && std::io::stderr().is_terminal() && !printer.is_json() {
        let bar = ProgressBar::new(names.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} terminated {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    if names.is_empty() {
        return Ok(0);
    }
    let chosen = Selection {
        names,
        ..Selection::default()
    };
    let outcomes = client
        .terminate_sandboxes_with(&chosen, |_| {
            if let Some(bar) = &progress {
                bar.inc(1);
            }
        })
        .await?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let mut failed = 0;
    let mut statuses = Vec::new();
    for outcome in outcomes {
        match (outcome.status, outcome.error) {
            (_, Some(err)) => {
                failed += 1;
                eprintln!("error: {}: {err}", outcome.name);
            }
            (Some(status), None) => {
                printer.line(&format!("{} {}", status.name, status.phase));
                statuses.push(status);
            }
            (None, None) => {}
        }
    }
    if printer.is_json() {
        printer.statuses(&statuses);
    }
    Ok(if failed > 0 { crate::EXIT_FAILURE } else { 0 })
}
