use std::time::Duration;

use sandlot_core::{Client, Error, Result, SpawnOptions};
use tokio::io::AsyncWriteExt;

use crate::args::ExecArgs;

/// Runs the command, streaming its output as it comes, and returns its exit code.
pub async fn run(client: &Client, args: ExecArgs) -> Result<i32> {
    let timeout = args
        .timeout
        .map(|t| {
            Duration::try_from_secs_f64(t)
                .map_err(|_| Error::invalid("--timeout", "must be a number of seconds >= 0"))
        })
        .transpose()?;
    let options = SpawnOptions {
        stdin: args.interactive,
        ..SpawnOptions::default()
    };
    let run = async {
        let mut process = client
            .spawn_exec(&args.name, &args.command, &options)
            .await?;
        let (stdout, stderr, stdin) = (
            process.take_stdout(),
            process.take_stderr(),
            process.take_stdin(),
        );
        // Stdin is fed in the background: the command may end before our input does.
        let feeder = stdin.map(|mut writer| {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut writer).await;
                let _ = writer.shutdown().await;
            })
        });
        let copy_out = async {
            if let Some(mut out) = stdout {
                let mut terminal = tokio::io::stdout();
                let _ = tokio::io::copy(&mut out, &mut terminal).await;
                let _ = terminal.flush().await;
            }
        };
        let copy_err = async {
            if let Some(mut err) = stderr {
                let mut terminal = tokio::io::stderr();
                let _ = tokio::io::copy(&mut err, &mut terminal).await;
                let _ = terminal.flush().await;
            }
        };
        let ((), (), code) = tokio::join!(copy_out, copy_err, process.wait());
        if let Some(feeder) = feeder {
            feeder.abort();
        }
        code
    };
    match timeout {
        Some(limit) => tokio::time::timeout(limit, run)
            .await
            .map_err(|_| Error::Timeout {
                what: format!("command in sandbox {:?}", args.name),
                after: limit,
            })?,
        None => run.await,
    }
}
