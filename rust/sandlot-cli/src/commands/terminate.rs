use sandlot_core::{Client, Result};

use crate::args::TerminateArgs;
use crate::printer::Printer;

/// Terminates each named sandbox in turn; fails at the first that cannot be.
pub async fn run(client: &Client, printer: &Printer, args: TerminateArgs) -> Result<i32> {
    let mut statuses = Vec::new();
    for name in &args.names {
        let status = client.terminate_sandbox(name).await?;
        printer.line(&format!("{} {}", status.name, status.phase));
        statuses.push(status);
    }
    if printer.is_json() {
        printer.statuses(&statuses);
    }
    Ok(0)
}
