use sandlot_core::{Client, Result};

use crate::args::TerminateArgs;
use crate::printer::Printer;

/// Terminates the selected sandboxes and prints one line per sandbox; exits 1
/// if any could not be terminated.
pub async fn run(client: &Client, printer: &Printer, args: TerminateArgs) -> Result<i32> {
    let selection = args.selection()?;
    if args.dry_run {
        for name in client.select_sandboxes(&selection).await? {
            printer.line(&format!("{name} would be terminated"));
        }
        return Ok(0);
    }
    let outcomes = client.terminate_sandboxes(&selection).await?;
    let mut failed = 0;
    for outcome in &outcomes {
        match (&outcome.status, &outcome.error) {
            (_, Some(err)) => {
                failed += 1;
                eprintln!("error: {}: {err}", outcome.name);
            }
            (Some(status), None) => printer.line(&format!("{} {}", status.name, status.phase)),
            (None, None) => {}
        }
    }
    if printer.is_json() {
        let statuses: Vec<_> = outcomes.into_iter().filter_map(|o| o.status).collect();
        printer.statuses(&statuses);
    }
    Ok(if failed > 0 { crate::EXIT_FAILURE } else { 0 })
}
