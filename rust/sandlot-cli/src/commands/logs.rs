use std::io::{IsTerminal, Write};

use futures::StreamExt;
use sandlot_core::{Client, LogOptions, Result};

use crate::args::LogsArgs;
use crate::printer::terminal_safe;

/// Prints the log; with --follow, lines as they arrive until the sandbox
/// ends. To a terminal, control characters the sandbox wrote are shown as escapes; to a
/// pipe or file, the log goes out as the bytes the sandbox wrote.
pub async fn run(client: &Client, args: LogsArgs) -> Result<i32> {
    let options = LogOptions {
        tail_lines: args.tail,
        since_seconds: args.since.map(|d| d.as_secs().max(1)),
        timestamps: args.timestamps,
    };
    let mut stdout = std::io::stdout().lock();
    let terminal = stdout.is_terminal();
    if !args.follow {
        let bytes = if terminal {
            let text = client.sandbox_logs(&args.name, &options).await?;
            terminal_safe(&text).into_owned().into_bytes()
        } else {
            client.sandbox_log_bytes(&args.name, &options).await?
        };
        // A closed pipe (`| head`) is not an error worth reporting.
        let _ = stdout.write_all(&bytes).and_then(|()| stdout.flush());
        return Ok(0);
    }
    let mut batches = client.stream_logs(&args.name, &options, true).await?;
    while let Some(batch) = batches.next().await {
        let mut out = Vec::new();
        for line in batch?.lines() {
            if terminal {
                out.extend_from_slice(terminal_safe(&String::from_utf8_lossy(line)).as_bytes());
            } else {
                out.extend_from_slice(line);
            }
            out.push(b'\n');
        }
        // A closed pipe (`| head`) ends the follow quietly.
        if stdout
            .write_all(&out)
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
    }
    Ok(0)
}
