//! The `sandlot` command line as a library: [`run`] takes the arguments and
//! returns the exit status, so the binary and the Python console script share it.

mod args;
mod commands;
mod printer;

use clap::Parser;
use sandlot_core::{Client, ConnectOptions, Error, ExecPath, Ttl};

use crate::args::{Cli, Command};
use crate::printer::Printer;

/// Exit status for an operation that failed.
pub const EXIT_FAILURE: i32 = 1;
/// Exit status for bad usage or invalid input (clap's convention).
pub const EXIT_USAGE: i32 = 2;
/// Exit status when the sandbox is not running.
pub const EXIT_NOT_RUNNING: i32 = 3;
/// Exit status when the sandbox, volume, pool or file does not exist.
pub const EXIT_NOT_FOUND: i32 = 4;
/// Exit status when a wait or call timed out (as `timeout(1)`).
pub const EXIT_TIMEOUT: i32 = 124;

/// How long the CLI waits at exit for the work it left running in the background.
const BACKGROUND_WORK_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the CLI with `argv` (program name first) and returns the exit status.
/// For `exec`, that is the command's own exit code.
pub fn run(argv: Vec<std::ffi::OsString>) -> i32 {
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return EXIT_FAILURE;
        }
    };
    let printer = Printer::new(cli.output, cli.quiet);
    let status = match runtime.block_on(dispatch(cli, &printer)) {
        Ok(status) => status,
        Err(err) => {
            printer.error(&err);
            exit_status(&err)
        }
    };
    // Work the command left running in the background (the replacement a
    // claim from a pool starts, the kill of an abandoned command) gets a few
    // seconds to send its requests; connections still closing are not waited for.
    sandlot_core::wait_for_background_kills(BACKGROUND_WORK_LIMIT);
    runtime.shutdown_background();
    status
}

/// The documented exit status for an error.
fn exit_status(err: &Error) -> i32 {
    match err.underlying() {
        Error::InvalidSpec { .. } => EXIT_USAGE,
        Error::NotRunning { .. } => EXIT_NOT_RUNNING,
        Error::NotFound { .. }
        | Error::VolumeDeleting { .. }
        | Error::File {
            errno: commands::files::ENOENT,
            ..
        } => EXIT_NOT_FOUND,
        Error::Timeout { .. } | Error::ExecTimeout { .. } => EXIT_TIMEOUT,
        _ => EXIT_FAILURE,
    }
}

async fn dispatch(cli: Cli, printer: &Printer) -> sandlot_core::Result<i32> {
    let request_rate = cli.request_rate()?;
    let options = ConnectOptions {
        namespace: cli.namespace,
        context: cli.context,
        kubeconfig: cli.kubeconfig,
        default_ttl: Ttl::Default,
        owned_by_pod: cli.owned_by_pod,
        exec_path: cli
            .exec_path
            .as_deref()
            .map(|path| ExecPath::parse("--exec-path", path))
            .transpose()?,
        request_rate,
    };
    // Arguments are checked before connecting, so bad input sends nothing.
    cli.command.validate()?;
    let connect = || Client::connect(options);
    match cli.command {
        Command::Create(args) => {
            let spec = args.spec()?;
            commands::create::run(&connect().await?, printer, &spec, &args).await
        }
        Command::List(args) => commands::list::run(&connect().await?, printer, args).await,
        Command::Get(args) => commands::get::run(&connect().await?, printer, args).await,
        Command::Logs(args) => commands::logs::run(&connect().await?, args).await,
        Command::Exec(args) if args.detach => {
            commands::process::detach(&connect().await?, printer, args).await
        }
        Command::Exec(args) => commands::exec::run(&connect().await?, args).await,
        Command::Ps(args) => commands::process::list(&connect().await?, printer, args).await,
        Command::Attach(args) => commands::process::attach(&connect().await?, args).await,
        Command::Kill(args) => commands::process::kill(&connect().await?, args).await,
        Command::Top(args) => commands::process::top(&connect().await?, printer, args).await,
        command @ (Command::Cp(_) | Command::Ls(_) | Command::Cat(_) | Command::Chmod(_)) => {
            let client = connect().await?;
            let done = commands::files::run(&client, printer, command).await;
            // A volume's helper ends with the command, not 30 s later.
            client.release_helpers().await;
            done
        }
        Command::Wait(args) => commands::wait::run(&connect().await?, printer, args).await,
        Command::PortForward(args) => {
            commands::port::forward(&connect().await?, printer, args).await
        }
        Command::Expose(args) => commands::port::expose(&connect().await?, printer, args).await,
        Command::Unexpose(args) => commands::port::unexpose(&connect().await?, printer, args).await,
        Command::Terminate(args) => {
            commands::terminate::run(&connect().await?, printer, args).await
        }
        Command::Purge(args) => commands::purge::run(&connect().await?, printer, args).await,
        Command::Volume(command) => {
            commands::volume::run(&connect().await?, printer, command).await
        }
        Command::Pool(command) => commands::pool::run(&connect().await?, printer, command).await,
    }
}
