use sandlot_core::{Client, Result};

use crate::args::PurgeArgs;
use crate::commands::confirm;
use crate::printer::Printer;

/// Purges the records of ended sandboxes; asks first unless --yes.
pub async fn run(client: &Client, printer: &Printer, args: PurgeArgs) -> Result<i32> {
    let selection = args.selection()?;
    if args.dry_run {
        for name in client.purge_candidates(&selection, args.older_than).await? {
            println!("{name} would be purged");
        }
        return Ok(0);
    }
    if !args.yes {
        confirm("Delete the records (and logs) of the matching ended sandboxes?")?;
    }
    for name in client.purge_sandboxes(&selection, args.older_than).await? {
        printer.line(&format!("{name} purged"));
    }
    Ok(0)
}
