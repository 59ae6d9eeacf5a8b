//! What a sandbox's agent does beyond exec: `exec --detach`, `ps`,
//! `attach`, `kill`, `top`.

use std::io::IsTerminal;
use std::time::Duration;

use sandlot_core::{Client, Error, Result, SpawnOptions};

use crate::args::{AttachArgs, ExecArgs, KillArgs, NameArg, TopArgs};
use crate::printer::Printer;

/// Starts the command detached and prints its process id.
pub async fn detach(client: &Client, printer: &Printer, args: ExecArgs) -> Result<i32> {
    let options = SpawnOptions {
        detach: true,
        stdin: args.interactive || args.tty,
        tty: args.tty,
        ..SpawnOptions::default()
    };
    let process = client
        .spawn_exec(&args.name, &args.command, &options)
        .await?;
    let id = process.id().unwrap_or_default();
    // Dropped: the agent keeps the process and its output.
    drop(process);
    printer.process_id(id);
    Ok(0)
}

pub async fn list(client: &Client, printer: &Printer, args: NameArg) -> Result<i32> {
    printer.processes(&client.list_processes(&args.name).await?);
    Ok(0)
}

/// Streams the process's output from the start the agent keeps (and with -i
/// this terminal's stdin to it); its exit code. With -t, a process on a
/// terminal gets this one in raw mode, and its size.
pub async fn attach(client: &Client, args: AttachArgs) -> Result<i32> {
    let terminal = args.tty && std::io::stdin().is_terminal();
    let stdin = args.interactive || args.tty;
    let process = client
        .attach_process(&args.name, args.id, [0, 0], stdin)
        .await?;
    let tty = terminal && process.has_tty();
    if args.tty && !tty {
        eprintln!(
            "note: no terminal mode: {}",
            if terminal {
                "the process was not started with one"
            } else {
                "this stdin is not a terminal"
            }
        );
    }
    let dropped = process.dropped();
    let raw = if tty {
        Some(super::exec::RawMode::enable()?)
    } else {
        None
    };
    let code = super::exec::stream(process, tty).await;
    drop(raw);
    if dropped > 0 {
        eprintln!("note: {dropped} earlier bytes of output were no longer kept");
    }
    code
}

pub async fn kill(client: &Client, args: KillArgs) -> Result<i32> {
    client
        .signal_process(&args.name, args.id, args.signal)
        .await?;
    Ok(0)
}

/// One reading, or with --follow one per interval until the sandbox ends.
pub async fn top(client: &Client, printer: &Printer, args: TopArgs) -> Result<i32> {
    let interval = Duration::try_from_secs_f64(args.interval)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| Error::invalid("--interval", "must be a number of seconds > 0"))?;
    let mut readings = client.follow_metrics(&args.name, interval);
    let mut first = true;
    while let Some(metrics) = readings.next().await? {
        printer.metrics(&metrics, first);
        first = false;
        if !args.follow {
            break;
        }
    }
    Ok(0)
}
