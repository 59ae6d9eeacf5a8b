use sandlot_core::{Client, ListFilter, Phase, Result};

use crate::args::ListArgs;
use crate::printer::Printer;

/// Lists sandboxes: the active ones by default, or those in the given phases,
/// or every one with --all-phases.
pub async fn run(client: &Client, printer: &Printer, args: ListArgs) -> Result<i32> {
    let phases = if !args.phase.is_empty() {
        args.phase.clone()
    } else if args.all_phases {
        Vec::new()
    } else {
        vec![Phase::Queued, Phase::Creating, Phase::Running]
    };
    let filter = ListFilter {
        tags: args.tags()?,
        phases,
    };
    printer.statuses(&client.list_sandboxes(&filter).await?);
    Ok(0)
}
