use std::io::Write;

use futures::StreamExt;
use sandlot_core::{Client, LogOptions, Result};

use crate::args::LogsArgs;

/// Prints the log; with --follow, line by line until the sandbox ends.
pub async fn run(client: &Client, args: LogsArgs) -> Result<i32> {
    let options = LogOptions {
        tail_lines: args.tail,
        since_seconds: args.since.map(|d| d.as_secs().max(1)),
        timestamps: args.timestamps,
    };
    let mut stdout = std::io::stdout().lock();
    if !args.follow {
        let text = client.sandbox_logs(&args.name, &options).await?;
        // A closed pipe (`| head`) is not an error worth reporting.
        let _ = stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush());
        return Ok(0);
    }
    let mut lines = client.stream_logs(&args.name, &options, true).await?;
    while let Some(line) = lines.next().await {
        if writeln!(stdout, "{}", line?)
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
    }
    Ok(0)
}
