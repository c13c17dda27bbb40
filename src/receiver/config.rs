//! `[receivers.otlp]`: where and how OTLP is received.

use serde::Deserialize;

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
    /// Open connections at once; further connections wait to be accepted. Default `1000`.
    /// Must be greater than 0.
    pub max_connections: usize,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "127.0.0.1:4317".into(),
            max_request_bytes: ByteSize::mib(8),
            max_decompressed_bytes: ByteSize::mib(64),
            max_concurrent_streams: 100,
            max_connections: 1000,
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
    /// Open connections at once; further connections wait to be accepted. Default `1000`.
    /// Must be greater than 0.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "127.0.0.1:4318".into(),
            max_request_bytes: ByteSize::mib(8),
            max_decompressed_bytes: ByteSize::mib(64),
            max_concurrent_streams: 100,
            max_connections: 1000,
        }
    }
}
