//! Processes kept by a sandbox's agent: `exec --detach`, `ps`, `attach`, `kill`.

use sandlot_core::{Client, Result, SpawnOptions};

use crate::args::{ExecArgs, KillArgs, NameArg, ProcessArgs};
use crate::printer::Printer;

/// Starts the command detached and prints its process id.
pub async fn detach(client: &Client, printer: &Printer, args: ExecArgs) -> Result<i32> {
    let options = SpawnOptions {
        detach: true,
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

/// Streams the process's output from the start the agent keeps; its exit code.
pub async fn attach(client: &Client, args: ProcessArgs) -> Result<i32> {
    let process = client.attach_process(&args.name, args.id, [0, 0]).await?;
    let dropped = process.dropped();
    let code = super::exec::stream(process, false).await;
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
