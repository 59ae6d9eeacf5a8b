use sandlot_core::{Client, ListFilter, Result};

use crate::args::ListArgs;
use crate::printer::Printer;

pub async fn run(client: &Client, printer: &Printer, args: ListArgs) -> Result<i32> {
    let filter = ListFilter {
        tags: args.tags()?,
        phases: args.phase,
    };
    printer.statuses(&client.list_sandboxes(&filter).await?);
    Ok(0)
}
