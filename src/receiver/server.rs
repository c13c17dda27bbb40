//! The accept loop both receivers share: connection limits without lockout,
//! connection timeouts, and a shutdown that always ends.
//!
//! # What a client can hold, and for how long
//! - A new connection must bring its first request head within
//!   `read_header_timeout` (this bounds the first byte, protocol detection,
//!   the HTTP/2 handshake and the headers); a kept-alive connection with no
//!   request in flight is closed after `idle_timeout`. Request bodies have
//!   their own deadline (`read_timeout`, enforced where they are read).
//! - HTTP/2 PINGs (`keepalive_time` / `keepalive_timeout`) and TCP keepalive
//!   (`tcp_keepalive`) drop dead peers.
//! - At `max_connections` a new connection is still served: the connection
//!   idle the longest is closed to make room. Only when every connection has
//!   a request in flight is the new one refused (closed at once).
//!
//! - With TLS, the handshake runs on the connection's own task and is part of
//!   the first `read_header_timeout`; a connection still handshaking counts
//!   against `max_connections` (and is idle, so it is the first evicted). A
//!   failed handshake is counted as `reason="tls_handshake"`.
//!
//! Every close is counted by reason on
//! `otlp_gateway_receiver_connections_closed_total`, and the open
//! connections on `otlp_gateway_receiver_connections`.
//!
//! # Shutdown
//! On `shutdown` the listener closes and every connection is told to finish
//! (HTTP/2 `GOAWAY`, HTTP/1 closes after the response in flight). Whatever is
//! still open when `grace` runs out is closed (`reason="shutdown_forced"`),
//! so a silent client can never hold the process.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulConnection;
use metrics::{counter, gauge};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::config::ConnectionLimits;
use super::error::ReceiveError;
use super::tls::{self, PeerIdentity, ServerTlsConfig, TlsServer};
use crate::telemetry::metrics::{RECEIVER_CONNECTIONS, RECEIVER_CONNECTIONS_CLOSED};

/// A bound listener with the connection settings both receivers share.
#[derive(Debug)]
pub struct Listener {
    pub listener: TcpListener,
    pub local_addr: SocketAddr,
    pub limits: ConnectionLimits,
    /// `None`: plain text.
    pub tls: Option<Arc<TlsServer>>,
}

impl Listener {
    /// Binds `endpoint` (`host:port`; host names resolve) after checking the limits and, with
    /// `tls`, loading its certificate and key (offering `alpn`).
    ///
    /// # Errors
    /// [`ReceiveError::ZeroLimit`] when a limit is 0, [`ReceiveError::Tls`] when
    /// a TLS file is missing or unusable, [`ReceiveError::Bind`]
    /// when the address is taken, not local or does not resolve.
    pub async fn bind(
        transport: &'static str,
        endpoint: &str,
        limits: ConnectionLimits,
        tls: Option<&ServerTlsConfig>,
        alpn: &'static [&'static [u8]],
    ) -> Result<Self, ReceiveError> {
        let zero = |field| ReceiveError::ZeroLimit { transport, field };
        if limits.max_connections == 0 {
            return Err(zero("max_connections"));
        }
        if limits.max_concurrent_streams == 0 {
            return Err(zero("max_concurrent_streams"));
        }
        for (field, value) in [
            ("read_header_timeout", limits.read_header_timeout),
            ("read_timeout", limits.read_timeout),
            ("idle_timeout", limits.idle_timeout),
            ("keepalive_timeout", limits.keepalive_timeout),
        ] {
            if value.is_zero() {
                return Err(zero(field));
            }
        }
        let tls = tls
            .map(|settings| TlsServer::load(transport, settings, alpn))
            .transpose()
            .map_err(|source| ReceiveError::Tls { transport, source })?
            .map(Arc::new);
        let bind_error = |source| ReceiveError::Bind {
            endpoint: endpoint.to_owned(),
            source,
        };
        let listener = TcpListener::bind(endpoint).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Listener {
            listener,
            local_addr,
            limits,
            tls,
        })
    }
}

/// Why a connection ended: the `reason` label of the closed-connections counter.
mod closed {
    /// The client closed it, or it ended normally.
    pub const CLIENT: &str = "client";
    /// The connection failed (protocol error, reset).
    pub const ERROR: &str = "error";
    /// No request head within `read_header_timeout` of accepting it.
    pub const HEADER_TIMEOUT: &str = "header_timeout";
    /// No request in flight for `idle_timeout`.
    pub const IDLE_TIMEOUT: &str = "idle_timeout";
    /// Closed to make room for a new connection at `max_connections`.
    pub const EVICTED: &str = "evicted";
    /// Refused at `max_connections`: every connection had a request in flight.
    pub const LIMIT: &str = "limit";
    /// Finished within the shutdown grace.
    pub const SHUTDOWN: &str = "shutdown";
    /// Still open when the shutdown grace ran out, closed.
    pub const SHUTDOWN_FORCED: &str = "shutdown_forced";
    /// The TLS handshake failed (plain text on a TLS port, certificate refused).
    pub const TLS_HANDSHAKE: &str = "tls_handshake";
}

/// How long a connection told to finish (idle, evicted) may take before it is dropped.
const FINISH_GRACE: Duration = Duration::from_secs(1);

/// Pause after a failed `accept` (e.g. out of file descriptors), so the
/// loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// What a connection's service tells the accept loop: requests in flight and
/// the last activity, so idle connections can be timed out or evicted.
#[derive(Debug)]
pub struct ConnectionState {
    /// Requests being handled.
    active: AtomicUsize,
    /// Whether a request head ever arrived.
    served: AtomicBool,
    /// Milliseconds since `epoch` of the last request start or end.
    last_activity_ms: AtomicU64,
    epoch: Instant,
    /// Notified to close the connection (evicted).
    close: Notify,
}

impl ConnectionState {
    fn new() -> Self {
        ConnectionState {
            active: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            last_activity_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            close: Notify::new(),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity_ms.store(ms, Ordering::Release);
    }

    fn last_activity(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_activity_ms.load(Ordering::Acquire))
    }

    fn is_idle(&self) -> bool {
        self.active.load(Ordering::Acquire) == 0
    }

    /// A request head arrived; the guard marks its end when dropped.
    pub fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.served.store(true, Ordering::Release);
        self.active.fetch_add(1, Ordering::AcqRel);
        self.touch();
        RequestGuard {
            state: self.clone(),
        }
    }

    /// When the connection is due to close if nothing happens, and why;
    /// `None` while a request is in flight.
    fn idle_deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, &'static str)> {
        if !self.is_idle() {
            return None;
        }
        if self.served.load(Ordering::Acquire) {
            Some((
                self.last_activity() + limits.idle_timeout,
                closed::IDLE_TIMEOUT,
            ))
        } else {
            Some((
                self.epoch + limits.read_header_timeout,
                closed::HEADER_TIMEOUT,
            ))
        }
    }
}

/// Marks one request of a connection as in flight until dropped.
#[derive(Debug)]
pub struct RequestGuard {
    state: Arc<ConnectionState>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.state.touch();
        self.state.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections of one listener, for eviction at the limit.
#[derive(Debug, Default)]
struct Registry {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnectionState>>>,
}

impl Registry {
    fn insert(&self, state: Arc<ConnectionState>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, state);
        }
        id
    }

    fn remove(&self, id: u64) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&id);
        }
    }

    fn len(&self) -> usize {
        self.open.lock().map_or(0, |open| open.len())
    }

    /// Makes room for one more connection under `max`: asks the connection
    /// idle the longest to close (no longer counted from now on). `false`
    /// when every connection has a request in flight.
    fn make_room(&self, max: usize) -> bool {
        let Ok(mut open) = self.open.lock() else {
            return false;
        };
        if open.len() < max {
            return true;
        }
        let victim = open
            .iter()
            .filter(|(_, state)| state.is_idle())
            .min_by_key(|(_, state)| state.last_activity())
            .map(|(id, _)| *id);
        match victim.and_then(|id| open.remove(&id)) {
            Some(state) => {
                state.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// How a receiver stops: the token that starts it, and how long open
/// connections may take to finish before they are closed.
#[derive(Debug, Clone)]
pub struct Shutdown {
    pub token: CancellationToken,
    pub grace: Duration,
}

/// Grace of a receiver stopped by a bare token (tests; the gateway gives a
/// third of `service.shutdown_timeout`).
const DEFAULT_GRACE: Duration = Duration::from_secs(10);

impl From<CancellationToken> for Shutdown {
    fn from(token: CancellationToken) -> Self {
        Shutdown {
            token,
            grace: DEFAULT_GRACE,
        }
    }
}

/// Serves the connections of a receiver: builds the HTTP connection on a
/// client's stream (plain TCP, or TLS after the handshake).
pub trait Connect: Send + Sync + 'static {
    /// The connection serving `io`, whose requests mark themselves on `state`; `peer` is the
    /// verified client certificate's identity (mTLS only), to put in each request's extensions.
    fn connect<I>(
        &self,
        io: TokioIo<I>,
        state: Arc<ConnectionState>,
        peer: Option<PeerIdentity>,
    ) -> impl GracefulConnection<Error: Display + Send> + Send + 'static
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static;
}

/// Accepts connections until `shutdown`, serving each with `connect`, which
/// gets the connection's [`ConnectionState`] to mark its requests. With TLS,
/// the certificate files are watched for changes meanwhile.
pub async fn serve<C: Connect>(
    listener: Listener,
    transport: &'static str,
    shutdown: Shutdown,
    connect: C,
) {
    let Listener {
        listener,
        limits,
        tls,
        ..
    } = listener;
    let connect = Arc::new(connect);
    let stop_watching = CancellationToken::new();
    if let Some(tls) = &tls {
        tokio::spawn(tls.clone().watch(stop_watching.clone()));
    }
    let _stop_watching = stop_watching.drop_guard();
    let registry = Arc::new(Registry::default());
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            biased;
            () = shutdown.token.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    warn!(transport, %error, "Accepting a connection failed.");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        if !registry.make_room(limits.max_connections) {
            count_closed(transport, closed::LIMIT);
            drop(stream);
            continue;
        }
        configure(&stream, &limits, transport);
        let state = Arc::new(ConnectionState::new());
        let id = registry.insert(state.clone());
        gauge!(RECEIVER_CONNECTIONS, "transport" => transport).set(registry.len() as f64);
        let registry = registry.clone();
        let token = shutdown.token.clone();
        let on_closed = move |why| {
            registry.remove(id);
            gauge!(RECEIVER_CONNECTIONS, "transport" => transport).set(registry.len() as f64);
            count_closed(transport, why);
        };
        match &tls {
            None => {
                let connection = connect.connect(TokioIo::new(stream), state.clone(), None);
                connections.spawn(async move {
                    on_closed(drive(connection, &state, &limits, &token).await);
                });
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                let connect = connect.clone();
                connections.spawn(async move {
                    let why = match handshake(acceptor, stream, &state, &limits, &token).await {
                        Ok((stream, peer)) => {
                            let connection =
                                connect.connect(TokioIo::new(stream), state.clone(), peer);
                            drive(connection, &state, &limits, &token).await
                        }
                        Err(why) => why,
                    };
                    on_closed(why);
                });
            }
        }
    }
    drop(listener);
    // Every connection task sees the token and tells its connection to finish.
    let finished = tokio::time::timeout(shutdown.grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        let left = connections.len();
        warn!(
            transport,
            left,
            grace = ?shutdown.grace,
            "Connections still open at the end of the shutdown grace; closing them."
        );
        counter!(RECEIVER_CONNECTIONS_CLOSED, "transport" => transport, "reason" => closed::SHUTDOWN_FORCED)
            .increment(left as u64);
        connections.shutdown().await;
    }
    gauge!(RECEIVER_CONNECTIONS, "transport" => transport).set(0.0);
    debug!(transport, "Receiver stopped.");
}

/// The TLS handshake of a new connection, within the first `read_header_timeout` (the
/// request head must then come within what is left of it). Cut short by the shutdown and by
/// eviction; the error is why the connection ends.
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    state: &ConnectionState,
    limits: &ConnectionLimits,
    shutdown: &CancellationToken,
) -> Result<
    (
        tokio_rustls::server::TlsStream<TcpStream>,
        Option<PeerIdentity>,
    ),
    &'static str,
> {
    let deadline = state.epoch + limits.read_header_timeout;
    tokio::select! {
        result = tokio::time::timeout_at(deadline, tls::handshake(acceptor, stream)) => match result {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(error)) => {
                debug!(%error, "TLS handshake failed.");
                Err(closed::TLS_HANDSHAKE)
            }
            Err(_) => Err(closed::HEADER_TIMEOUT),
        },
        () = shutdown.cancelled() => Err(closed::SHUTDOWN),
        () = state.close.notified() => Err(closed::EVICTED),
    }
}

fn count_closed(transport: &'static str, why: &'static str) {
    counter!(RECEIVER_CONNECTIONS_CLOSED, "transport" => transport, "reason" => why).increment(1);
}

/// Socket options: no Nagle delay, TCP keepalive.
fn configure(stream: &TcpStream, limits: &ConnectionLimits, transport: &'static str) {
    if let Err(error) = stream.set_nodelay(true) {
        debug!(transport, %error, "Setting TCP_NODELAY failed.");
    }
    if let Some(after) = limits.tcp_keepalive {
        let keepalive = socket2::TcpKeepalive::new().with_time(after);
        if let Err(error) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
            debug!(transport, %error, "Setting TCP keepalive failed.");
        }
    }
}

/// Runs one connection until it ends, times out idle, is evicted or the
/// shutdown tells it to finish; returns why it ended.
async fn drive<C>(
    connection: C,
    state: &ConnectionState,
    limits: &ConnectionLimits,
    shutdown: &CancellationToken,
) -> &'static str
where
    C: GracefulConnection,
    C::Error: Display + Send,
{
    let mut connection = pin!(connection);
    let ended = |result: Result<(), C::Error>| match result {
        Ok(()) => closed::CLIENT,
        Err(error) => {
            debug!(%error, "Connection ended with an error.");
            closed::ERROR
        }
    };
    loop {
        // While a request is in flight its own deadlines apply; look again later.
        let due = state
            .idle_deadline(limits)
            .map_or(Instant::now() + limits.idle_timeout, |(due, _)| due);
        tokio::select! {
            result = connection.as_mut() => return ended(result),
            () = shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                // The accept loop closes what is left when the grace runs out.
                if let Err(error) = connection.as_mut().await {
                    debug!(%error, "Connection ended with an error during shutdown.");
                }
                return closed::SHUTDOWN;
            }
            () = state.close.notified() => {
                finish(connection.as_mut()).await;
                return closed::EVICTED;
            }
            () = sleep_until(due) => {
                // Still idle and past its deadline (a request may have come and gone meanwhile).
                if let Some((due, why)) = state.idle_deadline(limits) {
                    if due <= Instant::now() {
                        finish(connection.as_mut()).await;
                        return why;
                    }
                }
            }
        }
    }
}

/// Tells an idle connection to finish (HTTP/2 `GOAWAY`) and drops it if it
/// has not within [`FINISH_GRACE`].
async fn finish<C>(mut connection: std::pin::Pin<&mut C>)
where
    C: GracefulConnection,
{
    connection.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(FINISH_GRACE, connection).await;
}
