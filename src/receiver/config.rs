//! `[receivers.otlp]`: where and how OTLP is received.

use serde::Deserialize;

use super::tls::ServerTlsConfig;
use crate::settings::units::{ByteSize, HumanDuration};

/// `[receivers.otlp]`: the OTLP receiver.
///
/// As in the Collector, only the protocols whose table is present are served: with
/// `[receivers.otlp.grpc]` alone there is no HTTP listener. When `[receivers.otlp]` is absent
/// altogether, both protocols are served with their defaults. At least one must be on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    /// OTLP/gRPC, served when `[receivers.otlp.grpc]` is present (even empty).
    /// Default when `[receivers.otlp]` is absent: on, at `127.0.0.1:4317`.
    #[serde(default)]
    pub grpc: Option<GrpcConfig>,
    /// OTLP/HTTP (`POST /v1/traces`, `/v1/metrics`, `/v1/logs`), served when
    /// `[receivers.otlp.http]` is present (even empty).
    /// Default when `[receivers.otlp]` is absent: on, at `127.0.0.1:4318`.
    #[serde(default)]
    pub http: Option<HttpConfig>,
    /// `Retry-After` (HTTP) / `RetryInfo` (gRPC) delay sent with a backpressure refusal.
    /// Default `"1s"`. Example: `retry_after = "500ms"`.
    #[serde(default = "default_retry_after")]
    pub retry_after: HumanDuration,
    /// Bytes of request bodies (as received plus decompressed) that requests being read
    /// and decoded may hold at once, over both protocols; past it new data is refused
    /// with a retryable answer. Default `"256MiB"`.
    #[serde(default = "default_max_inflight_bytes")]
    pub max_inflight_bytes: ByteSize,
}

impl Default for OtlpReceiverConfig {
    fn default() -> Self {
        OtlpReceiverConfig {
            grpc: Some(GrpcConfig::default()),
            http: Some(HttpConfig::default()),
            retry_after: default_retry_after(),
            max_inflight_bytes: default_max_inflight_bytes(),
        }
    }
}

fn default_max_inflight_bytes() -> ByteSize {
    ByteSize::mib(256)
}
fn default_retry_after() -> HumanDuration {
    HumanDuration::from_secs(1)
}

/// `[receivers.otlp.grpc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Listen address, `IP:port` (no host names). Default `"127.0.0.1:4317"`; use
    /// `"0.0.0.0:4317"` in a container. Port `0` picks a free port (tests).
    pub endpoint: String,
    /// Largest request accepted as received (compressed), in bytes: an integer or a string with
    /// a unit (`"8MiB"`, `"512KiB"`). Default `"8MiB"`. Must be greater than 0.
    pub max_request_bytes: ByteSize,
    /// Largest request accepted after decompression, in bytes (same forms). Default `"64MiB"`.
    /// Must be at least `max_request_bytes`.
    pub max_decompressed_bytes: ByteSize,
    /// Concurrent HTTP/2 streams per connection. Default `100`. Must be greater than 0.
    pub max_concurrent_streams: u32,
    /// Open connections at once. At the limit a new connection is still served: the
    /// connection idle the longest is closed to make room (counted,
    /// `reason="evicted"`); only when every connection has a request in flight is the new one
    /// refused. Default `1000`. Must be greater than 0.
    pub max_connections: usize,
    /// A new connection must send its first request head within this (the TLS handshake, first byte, protocol
    /// detection, the HTTP/2 handshake and the headers), and a kept-alive connection its next
    /// one within this of the previous answer, or it is closed. Default `"10s"`.
    pub read_header_timeout: HumanDuration,
    /// The whole request body must arrive within this of its head; a trickling client is
    /// answered `DEADLINE_EXCEEDED` and its budget released. Default `"30s"`.
    pub read_timeout: HumanDuration,
    /// A connection with no request in flight for this long is closed (keep-alive idle).
    /// Default `"60s"`.
    pub idle_timeout: HumanDuration,
    /// HTTP/2 keep-alive: a PING is sent after this long without frames from the client.
    /// `"0s"` turns pings off. Default `"30s"`.
    pub keepalive_time: HumanDuration,
    /// HTTP/2 keep-alive: a connection whose PING is not answered within this is closed.
    /// Default `"10s"`.
    pub keepalive_timeout: HumanDuration,
    /// TCP keepalive probes after this long idle, so the kernel drops dead peers. `"0s"` turns
    /// them off. Default `"60s"`.
    pub tcp_keepalive: HumanDuration,
    /// `[receivers.otlp.grpc.tls]`: serve TLS (ALPN `h2`) with this certificate, and with
    /// `client_ca_file` require client certificates (mTLS). Default: none (plain text).
    pub tls: Option<ServerTlsConfig>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "127.0.0.1:4317".into(),
            max_request_bytes: ByteSize::mib(8),
            max_decompressed_bytes: ByteSize::mib(64),
            max_concurrent_streams: 100,
            max_connections: 1000,
            read_header_timeout: HumanDuration::from_secs(10),
            read_timeout: HumanDuration::from_secs(30),
            idle_timeout: HumanDuration::from_secs(60),
            keepalive_time: HumanDuration::from_secs(30),
            keepalive_timeout: HumanDuration::from_secs(10),
            tcp_keepalive: HumanDuration::from_secs(60),
            tls: None,
        }
    }
}

/// `[receivers.otlp.http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address, `IP:port` (no host names). Default `"127.0.0.1:4318"`; use
    /// `"0.0.0.0:4318"` in a container. Port `0` picks a free port (tests).
    pub endpoint: String,
    /// Largest request body accepted as received (compressed), in bytes: an integer or a string
    /// with a unit (`"8MiB"`). Default `"8MiB"`. Must be greater than 0.
    pub max_request_bytes: ByteSize,
    /// Largest request body accepted after decompression, in bytes. Default `"64MiB"`.
    /// Must be at least `max_request_bytes`.
    pub max_decompressed_bytes: ByteSize,
    /// Concurrent HTTP/2 streams per connection (clients speaking h2c). Default `100`.
    /// Must be greater than 0.
    pub max_concurrent_streams: u32,
    /// Open connections at once. At the limit a new connection is still served: the
    /// connection idle the longest is closed to make room (counted,
    /// `reason="evicted"`); only when every connection has a request in flight is the new one
    /// refused. Default `1000`. Must be greater than 0.
    pub max_connections: usize,
    /// A new connection must send its first request head within this (the TLS handshake, first byte, protocol
    /// detection, the HTTP/2 handshake and the headers), and a kept-alive connection its next
    /// one within this of the previous answer, or it is closed. Default `"10s"`.
    pub read_header_timeout: HumanDuration,
    /// The whole request body must arrive within this of its head; a trickling client is
    /// answered 408 and its budget released. Default `"30s"`.
    pub read_timeout: HumanDuration,
    /// A connection with no request in flight for this long is closed (keep-alive idle).
    /// Default `"60s"`.
    pub idle_timeout: HumanDuration,
    /// HTTP/2 keep-alive: a PING is sent after this long without frames from the client (h2c clients).
    /// `"0s"` turns pings off. Default `"30s"`.
    pub keepalive_time: HumanDuration,
    /// HTTP/2 keep-alive: a connection whose PING is not answered within this is closed.
    /// Default `"10s"`.
    pub keepalive_timeout: HumanDuration,
    /// TCP keepalive probes after this long idle, so the kernel drops dead peers. `"0s"` turns
    /// them off. Default `"60s"`.
    pub tcp_keepalive: HumanDuration,
    /// `[receivers.otlp.http.tls]`: serve TLS (ALPN `h2`, `http/1.1`) with this certificate, and with
    /// `client_ca_file` require client certificates (mTLS). Default: none (plain text).
    pub tls: Option<ServerTlsConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "127.0.0.1:4318".into(),
            max_request_bytes: ByteSize::mib(8),
            max_decompressed_bytes: ByteSize::mib(64),
            max_concurrent_streams: 100,
            max_connections: 1000,
            read_header_timeout: HumanDuration::from_secs(10),
            read_timeout: HumanDuration::from_secs(30),
            idle_timeout: HumanDuration::from_secs(60),
            keepalive_time: HumanDuration::from_secs(30),
            keepalive_timeout: HumanDuration::from_secs(10),
            tcp_keepalive: HumanDuration::from_secs(60),
            tls: None,
        }
    }
}

/// The connection settings both protocols share, as the accept loop uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_concurrent_streams: u32,
    pub read_header_timeout: std::time::Duration,
    pub read_timeout: std::time::Duration,
    pub idle_timeout: std::time::Duration,
    /// `None`: no HTTP/2 pings.
    pub keepalive_time: Option<std::time::Duration>,
    pub keepalive_timeout: std::time::Duration,
    /// `None`: no TCP keepalive.
    pub tcp_keepalive: Option<std::time::Duration>,
}

macro_rules! connection_limits {
    ($config:ty) => {
        impl $config {
            /// Its connection settings.
            pub fn connection_limits(&self) -> ConnectionLimits {
                let nonzero = |d: HumanDuration| (!d.get().is_zero()).then_some(d.get());
                ConnectionLimits {
                    max_connections: self.max_connections,
                    max_concurrent_streams: self.max_concurrent_streams,
                    read_header_timeout: self.read_header_timeout.get(),
                    read_timeout: self.read_timeout.get(),
                    idle_timeout: self.idle_timeout.get(),
                    keepalive_time: nonzero(self.keepalive_time),
                    keepalive_timeout: self.keepalive_timeout.get(),
                    tcp_keepalive: nonzero(self.tcp_keepalive),
                }
            }
        }
    };
}
connection_limits!(GrpcConfig);
connection_limits!(HttpConfig);
