use std::io::Write;
use std::time::Duration;

use sandlot_core::{Client, Error, ExecOptions, Result};

use crate::args::ExecArgs;

pub async fn run(client: &Client, args: ExecArgs) -> Result<i32> {
    let timeout = args
        .timeout
        .map(|t| {
            Duration::try_from_secs_f64(t)
                .map_err(|_| Error::invalid("--timeout", "must be a number of seconds >= 0"))
        })
        .transpose()?;
    let options = ExecOptions {
        stdin: None,
        timeout,
    };
    let result = client
        .exec_sandbox(&args.name, &args.command, &options)
        .await?;
    let _ = std::io::stdout().lock().write_all(&result.stdout);
    let _ = std::io::stderr().lock().write_all(&result.stderr);
    Ok(result.exit_code)
}
