use std::time::Duration;

use sandlot_core::{Client, Phase, Result};

use crate::args::CreateArgs;
use crate::printer::Printer;

pub async fn run(client: &Client, printer: &Printer, args: CreateArgs) -> Result<i32> {
    let spec = args.spec()?;
    let mut status = client.create_sandbox(&spec).await?;
    if args.wait {
        let timeout = Duration::try_from_secs_f64(args.timeout).map_err(|_| {
            sandlot_core::Error::invalid("--timeout", "must be a number of seconds >= 0")
        })?;
        let ready = [
            Phase::Running,
            Phase::Succeeded,
            Phase::Failed,
            Phase::Terminated,
        ];
        status = client.wait_sandbox(&status.name, &ready, timeout).await?;
    }
    printer.created(&status);
    Ok(0)
}
