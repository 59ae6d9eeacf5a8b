use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sandlot_core::{Client, Error, ExposeRequest, Phase, Result, check_port};

use crate::args::{ExposeArgs, PortArgs, PortForwardArgs};
use crate::printer::Printer;

/// How often a forward looks for failed connections to report.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Forwards until the sandbox ends (an error: `NotRunning`) or the process is
/// interrupted. The first line on stdout says the local address.
pub async fn forward(client: &Client, printer: &Printer, args: PortForwardArgs) -> Result<i32> {
    let (local_port, remote) = args.ports()?;
    let ip: IpAddr = args.address.parse().map_err(|_| {
        Error::invalid(
            "--address",
            format!("{:?} is not an IP address", args.address),
        )
    })?;
    if let Some(wait) = args.wait {
        let wait = Duration::try_from_secs_f64(wait)
            .map_err(|_| Error::invalid("--wait", "must be a number of seconds >= 0"))?;
        client.wait_for_port(&args.name, remote, wait).await?;
    }
    let forward = client
        .port_forward(&args.name, remote, SocketAddr::new(ip, local_port))
        .await?;
    println!(
        "Forwarding from {} to port {remote} of sandbox {}",
        forward.local_addr(),
        args.name
    );
    let _ = std::io::stdout().flush();
    let ended = [Phase::Succeeded, Phase::Failed, Phase::Terminated];
    let mut reported = 0;
    loop {
        match client.wait_sandbox(&args.name, &ended, REPORT_EVERY).await {
            Ok(status) => {
                return Err(Error::NotRunning {
                    name: args.name,
                    phase: status.phase.to_string(),
                });
            }
            Err(Error::Timeout { .. }) => {}
            Err(err) => return Err(err),
        }
        let stats = forward.stats();
        if stats.failed > reported {
            reported = stats.failed;
            printer.warning(&format!(
                "a connection could not be forwarded ({} so far): {}",
                stats.failed,
                stats.last_error.unwrap_or_default()
            ));
        }
    }
}

pub async fn expose(client: &Client, printer: &Printer, args: ExposeArgs) -> Result<i32> {
    let request = ExposeRequest {
        port: check_port("PORT", args.port)?,
        service: args.service_name,
        allow_from: (!args.allow_from.is_empty()).then_some(args.allow_from),
    };
    let exposed = client.expose_port(&args.name, &request).await?;
    if printer.is_json() {
        println!(
            "{}",
            serde_json::to_string_pretty(&exposed).unwrap_or_default()
        );
    } else {
        println!("{}", exposed.url);
    }
    Ok(0)
}

pub async fn unexpose(client: &Client, printer: &Printer, args: PortArgs) -> Result<i32> {
    let port = check_port("PORT", args.port)?;
    if !client.unexpose_port(&args.name, port).await? {
        printer.note(&format!(
            "port {port} of sandbox {} was not exposed",
            args.name
        ));
    }
    Ok(0)
}
