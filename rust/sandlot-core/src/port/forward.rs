//! A port-forward: a local TCP listener whose every accepted connection is
//! relayed over its own Kubernetes port-forward stream (`pods/portforward`, a
//! websocket through the API server and the kubelet) to a port of a sandbox.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kube::api::Portforwarder;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::client::Client;
use crate::error::{Error, Result, api_status};
use crate::retry::retry;

/// What a forward has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardStats {
    /// Local connections accepted.
    pub accepted: u64,
    /// Of those, the ones still open.
    pub active: u64,
    /// Of those, the ones that could not be relayed (the stream was refused,
    /// or nothing accepted the connection in the sandbox).
    pub failed: u64,
    /// Why the last failed one failed.
    pub last_error: Option<String>,
}

/// The shared counters behind [`ForwardStats`].
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    active: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Counters {
    fn failed(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }
}

/// A running forward from a local address to `port` of a sandbox. Closing or
/// dropping it stops the listener and cuts every connection it relays.
#[derive(Debug)]
pub struct PortForward {
    sandbox: String,
    port: u16,
    local: SocketAddr,
    counters: Arc<Counters>,
    /// The accepting task, until closed.
    accepting: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
}

impl PortForward {
    /// The sandbox forwarded to.
    pub fn sandbox(&self) -> &str {
        &self.sandbox
    }

    /// The sandbox's port forwarded to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The local address listened on (the port the system chose, if it did).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// What the forward has done so far.
    pub fn stats(&self) -> ForwardStats {
        let c = &self.counters;
        ForwardStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            active: c.active.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            last_error: c
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Stops listening and cuts every relayed connection; returns once the
    /// listening socket is closed.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let accepting = self
            .accepting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(accepting) = accepting {
            accepting.abort();
            let _ = accepting.await;
        }
    }

    /// Whether [`PortForward::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        if let Some(accepting) = self
            .accepting
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            accepting.abort();
        }
    }
}

/// A port-forward stream that ends its websocket task when dropped.
struct Stream(Portforwarder);

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Client {
    /// Starts forwarding `local` (port 0: one the system chooses) to `port` of
    /// sandbox `name`, once that sandbox runs ([`Error::NotRunning`]), something
    /// listens on the port in it ([`Error::PortNotOpen`]) and the cluster
    /// lets port-forwards through ([`Error::PermissionDenied`] without
    /// `pods/portforward`).
    pub async fn port_forward(
        &self,
        name: &str,
        port: u16,
        local: SocketAddr,
    ) -> Result<PortForward> {
        self.require_listening(name, port).await?;
        self.require_forward_allowed(name).await?;
        let listener = TcpListener::bind(local).await.map_err(|err| {
            Error::invalid("local_port", format!("cannot listen on {local}: {err}"))
        })?;
        let local = listener.local_addr().map_err(|err| {
            Error::invalid("local_port", format!("cannot listen on {local}: {err}"))
        })?;
        let counters = Arc::new(Counters::default());
        let accepting = tokio::spawn(accept(
            self.clone(),
            name.to_owned(),
            port,
            listener,
            counters.clone(),
        ));
        Ok(PortForward {
            sandbox: name.to_owned(),
            port,
            local,
            counters,
            accepting: Mutex::new(Some(accepting)),
            closed: AtomicBool::new(false),
        })
    }

    /// Ok if this client may open port-forwards to sandbox `name`, found
    /// without connecting to anything in it: a stream to port 0, which the
    /// cluster refuses as a bad request only once it has authorized it.
    async fn require_forward_allowed(&self, name: &str) -> Result<()> {
        match self.pods().portforward(name, &[0]).await {
            Ok(stream) => {
                stream.abort();
                Ok(())
            }
            Err(err) if api_status(&err).is_some_and(|s| s.code == 400) => Ok(()),
            Err(err) => Err(self.sandbox_error(err, name)),
        }
    }

    /// One port-forward stream to `port` of sandbox `name`, tried again while
    /// the API server is briefly unavailable or the connection to it drops
    /// (see [`retry`]): opening a stream starts nothing in the sandbox, so
    /// another try is always safe, and the local connection waits for it.
    async fn open_stream(&self, name: &str, port: u16) -> Result<Stream> {
        let ports = [port];
        retry(|| self.pods().portforward(name, &ports))
            .await
            .map(Stream)
            .map_err(|err| self.sandbox_error(err, name))
    }
}

/// Accepts connections until aborted; aborting drops the set of relays, which
/// cuts them.
async fn accept(
    client: Client,
    name: String,
    port: u16,
    listener: TcpListener,
    counters: Arc<Counters>,
) {
    let mut relays = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else {
                    // Out of descriptors, for instance: let some close first.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                counters.active.fetch_add(1, Ordering::Relaxed);
                let (client, name, counters) = (client.clone(), name.clone(), counters.clone());
                relays.spawn(async move {
                    if let Err(why) = relay(&client, &name, port, socket).await {
                        counters.failed(why);
                    }
                    counters.active.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Some(_) = relays.join_next(), if !relays.is_empty() => {}
        }
    }
}

/// Relays one local connection over a stream of its own until either side
/// ends; `Err` says why it could not be relayed.
async fn relay(
    client: &Client,
    name: &str,
    port: u16,
    mut socket: TcpStream,
) -> Result<(), String> {
    let _ = socket.set_nodelay(true);
    let mut stream = client
        .open_stream(name, port)
        .await
        .map_err(|err| err.to_string())?;
    let (Some(mut remote), Some(refused)) = (stream.0.take_stream(port), stream.0.take_error(port))
    else {
        return Err("the port-forward stream had no channel for the port".into());
    };
    tokio::select! {
        // A connection either side resets is an ending, not a failure.
        _ = tokio::io::copy_bidirectional(&mut socket, &mut remote) => Ok(()),
        Some(why) = refused => Err(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_api::{self, failure, respond};

    #[tokio::test(start_paused = true)]
    async fn a_stream_is_opened_again_while_the_server_is_unavailable_and_not_after_a_lasting_refusal()
     {
        let (client, mut handle) = test_api::client();
        let opening = tokio::spawn(async move { client.open_stream("sb", 8000).await.err() });
        let mut asked = 0;
        for code in [503, 429, 404] {
            let (request, send) = handle.next_request().await.unwrap();
            assert!(request.uri().path().ends_with("/pods/sb/portforward"));
            asked += 1;
            send.send_response(respond(code, failure(code, "NotNow")));
        }
        let err = opening
            .await
            .unwrap()
            .expect("a lasting refusal ends the tries");
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        assert_eq!(asked, 3);
    }
}
