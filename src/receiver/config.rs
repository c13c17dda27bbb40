//! `[receivers.otlp]`: where and how OTLP is received.

use serde::Deserialize;

use crate::config::types::{ByteSize, HumanDuration};

/// `[receivers.otlp]`: the OTLP receiver. A protocol table that is absent is not served.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    /// OTLP/gRPC. Default: on, at `127.0.0.1:4317`.
    #[serde(default = "default_grpc")]
    pub grpc: Option<GrpcConfig>,
    /// OTLP/HTTP. Default: on, at `127.0.0.1:4318`.
    #[serde(default = "default_http")]
    pub http: Option<HttpConfig>,
    /// `Retry-After` / `RetryInfo` delay sent with a backpressure refusal. Default `"1s"`.
    #[serde(default = "default_retry_after")]
    pub retry_after: HumanDuration,
}

impl Default for OtlpReceiverConfig {
    fn default() -> Self {
        OtlpReceiverConfig {
            grpc: default_grpc(),
            http: default_http(),
            retry_after: default_retry_after(),
        }
    }
}

fn default_grpc() -> Option<GrpcConfig> {
    Some(GrpcConfig::default())
}
fn default_http() -> Option<HttpConfig> {
    Some(HttpConfig::default())
}
fn default_retry_after() -> HumanDuration {
    HumanDuration::from_secs(1)
}

/// `[receivers.otlp.grpc]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Listen address. Default `"127.0.0.1:4317"`; use `"0.0.0.0:4317"` in a container.
    pub endpoint: String,
    /// Largest request accepted as received (compressed). Default `"8MiB"`.
    pub max_request_bytes: ByteSize,
    /// Largest request accepted after decompression. Default `"64MiB"`.
    pub max_decompressed_bytes: ByteSize,
    /// Concurrent HTTP/2 streams per connection. Default `100`.
    pub max_concurrent_streams: u32,
    /// Open connections at once; further connections wait to be accepted. Default `1000`.
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
    /// Listen address. Default `"127.0.0.1:4318"`.
    pub endpoint: String,
    /// Largest request body accepted as received (compressed). Default `"8MiB"`.
    pub max_request_bytes: ByteSize,
    /// Largest request body accepted after decompression. Default `"64MiB"`.
    pub max_decompressed_bytes: ByteSize,
    /// Open connections at once; further connections wait to be accepted. Default `1000`.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "127.0.0.1:4318".into(),
            max_request_bytes: ByteSize::mib(8),
            max_decompressed_bytes: ByteSize::mib(64),
            max_connections: 1000,
        }
    }
}
