use std::time::Duration;

use sandlot_core::{Client, Error, Result};

use crate::args::WaitArgs;
use crate::printer::Printer;

pub async fn run(client: &Client, printer: &Printer, args: WaitArgs) -> Result<i32> {
    let timeout = Duration::try_from_secs_f64(args.timeout)
        .map_err(|_| Error::invalid("--timeout", "must be a number of seconds >= 0"))?;
    printer.status(
        &client
            .wait_sandbox(&args.name, &args.phase, timeout)
            .await?,
    );
    Ok(0)
}
