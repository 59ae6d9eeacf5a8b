//! Ports: reaching a server that runs in a sandbox.
//!
//! - `forward.rs`: a local listener; each connection it accepts becomes one
//!   Kubernetes port-forward stream, dialled inside the sandbox's network
//!   namespace (no pod network, so no NetworkPolicy is involved).
//! - `expose.rs`: a ClusterIP Service that selects only the sandbox, owned by
//!   its pod, and the NetworkPolicy ingress allowance for the callers named.
//! - here: whether something listens on a port, read from the sandbox's own
//!   `/proc/net/tcp` and `/proc/net/tcp6`, so nothing connects to the server
//!   to find out.

mod expose;
mod forward;

use std::collections::BTreeSet;
use std::time::Duration;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::files::FileTarget;

pub use expose::{ExposeRequest, ExposedPort};
pub use forward::{ForwardStats, PortForward};

/// The sandbox's tables of TCP sockets, read to find listeners.
const SOCKET_TABLES: [&[u8]; 2] = [b"/proc/net/tcp", b"/proc/net/tcp6"];
/// The most of one table read; a sandbox with more sockets than this fits
/// (some 50,000) is not looked through further.
const MAX_TABLE_BYTES: u64 = 8 << 20;
/// Between two looks while waiting for a port.
const WAIT_POLL: Duration = Duration::from_millis(50);

/// `port` (the value of `field`) as a TCP port, 1 to 65535.
pub fn check_port(field: &str, port: i64) -> Result<u16> {
    u16::try_from(port)
        .ok()
        .filter(|&port| port != 0)
        .ok_or_else(|| Error::invalid(field, format!("{port} is not a TCP port (1 to 65535)")))
}

/// `port` (the value of `field`) as a local port to listen on: 0 lets the
/// system choose one.
pub fn check_local_port(field: &str, port: i64) -> Result<u16> {
    u16::try_from(port).map_err(|_| {
        Error::invalid(
            field,
            format!("{port} is not a TCP port (1 to 65535, or 0 for any free one)"),
        )
    })
}

/// The local ports of the sockets in LISTEN state in a `/proc/net/tcp` or
/// `tcp6` table (`sl local_address rem_address st ...`, the address
/// `HEX:PORT` in hex, LISTEN being state `0A`). Lines that do not parse are
/// skipped.
fn listening_ports(table: &str) -> BTreeSet<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != "0A" {
                return None;
            }
            let (_, port) = local.rsplit_once(':')?;
            u16::from_str_radix(port, 16).ok()
        })
        .collect()
}

impl Client {
    /// Whether something in sandbox `name` listens on TCP `port`, on any of
    /// its addresses. Needs a running sandbox ([`Error::NotRunning`]).
    pub async fn port_listening(&self, name: &str, port: u16) -> Result<bool> {
        let target = FileTarget::Sandbox(name.to_owned());
        for table in SOCKET_TABLES {
            let read = match self
                .read_file(&target, table, 0, Some(MAX_TABLE_BYTES))
                .await
            {
                Ok(reader) => reader.read_all().await,
                Err(err) => Err(err),
            };
            let text = match read {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                // A kernel (or gVisor) without IPv6 has no tcp6 table.
                Err(Error::File { errno: 2, .. }) => continue,
                Err(err) => return Err(err),
            };
            if listening_ports(&text).contains(&port) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Returns once something in sandbox `name` listens on `port`; a sandbox
    /// that stops running ends the wait with [`Error::NotRunning`], and
    /// `timeout` with [`Error::Timeout`].
    pub async fn wait_for_port(&self, name: &str, port: u16, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let looking = async {
            loop {
                match self.port_listening(name, port).await {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(err @ Error::NotRunning { .. }) => return Err(err),
                    // A sandbox that ends while its tables are read breaks
                    // the read: if it ends (its status may lag), say that.
                    Err(err) => return Err(self.ended_instead(name, err).await),
                }
                tokio::time::sleep(WAIT_POLL).await;
            }
        };
        tokio::time::timeout_at(deadline, looking)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout {
                    what: format!("port {port} of sandbox {name:?} to accept connections"),
                    after: timeout,
                })
            })
    }

    /// [`Error::PortNotOpen`] unless something in sandbox `name` listens on
    /// `port`.
    pub(crate) async fn require_listening(&self, name: &str, port: u16) -> Result<()> {
        if self.port_listening(name, port).await? {
            Ok(())
        } else {
            Err(Error::PortNotOpen {
                name: name.to_owned(),
                port,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F40 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 4244 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:2328 0100007F:D2F1 06 00000000:00000000 00:00000000 00000000  1000        0 0 3 0000000000000000
   garbage line
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:FFFF 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 77 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn only_sockets_in_listen_state_count() {
        assert_eq!(listening_ports(TCP), BTreeSet::from([8000, 3000]));
        assert_eq!(listening_ports(TCP6), BTreeSet::from([65535]));
        assert!(listening_ports("").is_empty());
        assert!(listening_ports(TCP.lines().next().unwrap()).is_empty());
    }

    #[test]
    fn ports_outside_tcp_s_range_are_refused_naming_the_field() {
        assert_eq!(check_port("port", 1).unwrap(), 1);
        assert_eq!(check_port("port", 65535).unwrap(), 65535);
        for bad in [0, -1, 65536, i64::MAX] {
            let err = check_port("port", bad).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidSpec { field, rule }
                    if field == "port" && rule.contains("1 to 65535")),
                "{err:?}"
            );
        }
        assert_eq!(check_local_port("local_port", 0).unwrap(), 0);
        let err = check_local_port("local_port", 70000).unwrap_err();
        assert!(err.to_string().contains("local_port"), "{err}");
    }
}
