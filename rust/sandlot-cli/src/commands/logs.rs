use std::io::Write;

use sandlot_core::{Client, LogOptions, Result};

use crate::args::LogsArgs;

pub async fn run(client: &Client, args: LogsArgs) -> Result<i32> {
    let options = LogOptions {
        tail_lines: args.tail,
        since_seconds: None,
        timestamps: args.timestamps,
    };
    let text = client.sandbox_logs(&args.name, &options).await?;
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    Ok(0)
}
