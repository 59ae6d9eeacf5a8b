use sandlot_core::{Client, Result};

use crate::args::NameArg;
use crate::printer::Printer;

pub async fn run(client: &Client, printer: &Printer, args: NameArg) -> Result<i32> {
    printer.status(&client.get_sandbox(&args.name).await?);
    Ok(0)
}
