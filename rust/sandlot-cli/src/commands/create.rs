use std::time::Duration;

use sandlot_core::{Client, Phase, Result, SandboxSpec};

use crate::args::CreateArgs;
use crate::printer::Printer;

/// Creates the sandbox of `spec` (built from `args` before connecting) and,
/// with --wait, waits until it runs or has ended.
pub async fn run(
    client: &Client,
    printer: &Printer,
    spec: &SandboxSpec,
    args: &CreateArgs,
) -> Result<i32> {
    // An error here is create_sandbox's to report (with the sandbox's name).
    if let Ok(Some(notice)) = client.user_namespace_fallback(spec).await {
        printer.warning(&notice);
        client.user_namespace_fallback_shown();
    }
    let mut status = client
        .create_sandbox(spec)
        .await
        .map_err(user_namespace_flag)?;
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
    if let (Some(pool), Some(reason)) = (&status.pool, &status.pool_fallback) {
        printer.note(&format!(
            "{} was created without a warm sandbox of pool {pool:?}: {reason}",
            status.name
        ));
    }
    printer.created(&status);
    Ok(0)
}

/// A refusal of `user_namespace`, named by its flag.
pub fn user_namespace_flag(err: sandlot_core::Error) -> sandlot_core::Error {
    match err.underlying() {
        sandlot_core::Error::InvalidSpec { field, rule } if field == "user_namespace" => {
            sandlot_core::Error::invalid("--user-namespace", rule.clone())
        }
        _ => err,
    }
}
