use std::io::IsTerminal;
use std::time::Duration;

use sandlot_core::{Client, Error, ExecProcess, Result, SpawnOptions};
use tokio::io::AsyncWriteExt;

use crate::args::ExecArgs;

/// Runs the command, streaming its output as it comes, and returns its exit code.
/// With -t, this terminal is put in raw mode (restored on exit) and its size
/// follows window changes; Ctrl-C then reaches the remote command. With
/// --timeout, the command's processes are killed when it passes (the command
/// then runs under the image's `/bin/sh`).
pub async fn run(client: &Client, args: ExecArgs) -> Result<i32> {
    let timeout = args
        .timeout
        .map(|t| {
            Duration::try_from_secs_f64(t)
                .map_err(|_| Error::invalid("--timeout", "must be a number of seconds >= 0"))
        })
        .transpose()?;
    let tty = args.tty && std::io::stdin().is_terminal();
    let options = SpawnOptions {
        stdin: args.interactive || tty,
        tty,
        killable: timeout.is_some(),
        ..SpawnOptions::default()
    };
    let process = client
        .spawn_exec(&args.name, &args.command, &options)
        .await?;
    let killer = process.killer();
    let _raw = if tty { Some(RawMode::enable()?) } else { None };
    let run = stream(process, tty);
    let Some(limit) = timeout else {
        return run.await;
    };
    match tokio::time::timeout(limit, run).await {
        Ok(code) => code,
        Err(_) => {
            if let Some(killer) = killer {
                // Best effort: the timeout is what the user is told.
                let _ = killer.kill().await;
            }
            Err(Error::Timeout {
                what: format!("command in sandbox {:?}", args.name),
                after: limit,
            })
        }
    }
}

/// Streams a process's output to this terminal (and this terminal's stdin to
/// it, if open) until it ends; its exit code.
pub async fn stream(mut process: ExecProcess, tty: bool) -> Result<i32> {
    let (stdout, stderr, stdin) = (
        process.take_stdout(),
        process.take_stderr(),
        process.take_stdin(),
    );
    if tty {
        if let Ok((width, height)) = crossterm::terminal::size() {
            process.resize(width, height)?;
        }
    }
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
    let exit = process.wait();
    let follow_size = async {
        if !tty {
            return std::future::pending::<()>().await;
        }
        let Ok(mut changes) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return std::future::pending::<()>().await;
        };
        while changes.recv().await.is_some() {
            if let Ok((width, height)) = crossterm::terminal::size() {
                let _ = process.resize(width, height);
            }
        }
    };
    let code = tokio::select! {
        (_, _, code) = async { tokio::join!(copy_out, copy_err, exit) } => code,
        () = follow_size => unreachable_resize(),
    };
    if let Some(feeder) = feeder {
        feeder.abort();
    }
    code
}

/// The window-size loop only ends if the signal stream does, which it never does.
fn unreachable_resize() -> Result<i32> {
    Err(Error::invalid("tty", "window size signal stream ended"))
}

/// Raw mode of this terminal for the life of the value.
pub struct RawMode;

impl RawMode {
    pub fn enable() -> Result<Self> {
        crossterm::terminal::enable_raw_mode().map_err(|err| {
            Error::invalid(
                "--tty",
                format!("cannot put the terminal in raw mode: {err}"),
            )
        })?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}
