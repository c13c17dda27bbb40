//! The accept loop both receivers share: bounded connections and graceful
//! shutdown.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulConnection, GracefulShutdown};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::error::ReceiveError;

/// A bound listener with the connection limits both receivers share.
#[derive(Debug)]
pub struct Listener {
    pub listener: TcpListener,
    pub local_addr: SocketAddr,
    pub max_connections: usize,
    pub max_concurrent_streams: u32,
}

impl Listener {
    /// Binds `endpoint` (`host:port`; host names resolve) after checking the limits.
    ///
    /// # Errors
    /// [`ReceiveError::ZeroLimit`] when a limit is 0, [`ReceiveError::Bind`]
    /// when the address is taken, not local or does not resolve.
    pub async fn bind(
        transport: &'static str,
        endpoint: &str,
        max_connections: usize,
        max_concurrent_streams: u32,
    ) -> Result<Self, ReceiveError> {
        let zero = |field| ReceiveError::ZeroLimit { transport, field };
        if max_connections == 0 {
            return Err(zero("max_connections"));
        }
        if max_concurrent_streams == 0 {
            return Err(zero("max_concurrent_streams"));
        }
        let bind_error = |source| ReceiveError::Bind {
            endpoint: endpoint.to_owned(),
            source,
        };
        let listener = TcpListener::bind(endpoint).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Listener {
            listener,
            local_addr,
            max_connections,
            max_concurrent_streams,
        })
    }
}

/// Pause after a failed `accept` (e.g. out of file descriptors), so the
/// loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Accepts connections until `shutdown`, serving each with `connect`.
///
/// At most `max_connections` are open at once: a permit is taken *before*
/// `accept`, so further clients wait in the listen backlog rather than being
/// accepted and starved. On `shutdown` the listener is closed, every open
/// connection is told to finish (HTTP/2 `GOAWAY`, HTTP/1 closes after the
/// response in flight), and this returns once they have.
pub async fn serve<F, C>(
    listener: TcpListener,
    max_connections: usize,
    transport: &'static str,
    shutdown: CancellationToken,
    mut connect: F,
) where
    F: FnMut(TokioIo<TcpStream>) -> C,
    C: GracefulConnection + Send + 'static,
    C::Error: Display,
{
    let permits = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                // Never closed; stop serving if it ever is.
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    warn!(transport, %error, "Accepting a connection failed.");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        if let Err(error) = stream.set_nodelay(true) {
            debug!(transport, %error, "Setting TCP_NODELAY failed.");
        }
        let connection = graceful.watch(connect(TokioIo::new(stream)));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(transport, %error, "Connection ended with an error.");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    debug!(transport, "Receiver stopped.");
}
