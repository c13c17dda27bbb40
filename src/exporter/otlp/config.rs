//! `[exporters.otlp.<name>]`: OTLP over gRPC or HTTP/protobuf to any collector (Jaeger v2 included).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::types::HumanDuration;
use crate::queue::config::{RetryConfig, SendingQueueConfig};

/// Wire protocol of the OTLP exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    /// OTLP/gRPC (`endpoint` like `http://host:4317`).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`endpoint` like `http://host:4318`; `/v1/<signal>` is appended).
    HttpProtobuf,
}

/// Request compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// `[exporters.otlp.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpExporterConfig {
    /// Where to send: `http://` or `https://` URL with host and port. Required.
    /// For `grpc` no path (`"http://jaeger:4317"`); for `http_protobuf` an optional base path,
    /// to which `/v1/<signal>` is appended (`"https://otlp.example.com:443/otlp"`).
    pub endpoint: String,
    /// `"grpc"` or `"http_protobuf"`. Default `"grpc"`.
    #[serde(default = "default_protocol")]
    pub protocol: OtlpProtocol,
    /// `"none"`, `"gzip"` or `"zstd"`. Default `"gzip"` (as the Collector).
    #[serde(default = "default_compression")]
    pub compression: Compression,
    /// Extra request headers (gRPC metadata), e.g. `{ "x-api-key" = "${API_KEY}" }`. Default none.
    /// Names and values must be valid HTTP; values are never printed by `check-config`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Deadline of one request. Duration, greater than 0. Default `"5s"`.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// `[exporters.otlp.<name>.tls]`: TLS for `https://` endpoints (ignored, with a warning, for
    /// `http://`). Default: the built-in web roots, verified.
    #[serde(default)]
    pub tls: TlsConfig,
    /// `[exporters.otlp.<name>.retry_on_failure]`: backoff for retryable failures.
    /// Default: all defaults (on).
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// `[exporters.otlp.<name>.sending_queue]`: the queue in front of it. Default: all defaults.
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
}

fn default_protocol() -> OtlpProtocol {
    OtlpProtocol::Grpc
}
fn default_compression() -> Compression {
    Compression::Gzip
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

/// `[exporters.otlp.<name>.tls]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file of CA certificates to trust instead of the built-in web roots. Must exist;
    /// relative paths are from the working directory. Default none.
    /// Example: `ca_file = "/etc/otlp-gateway/ca.pem"`.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. For tests only. Default `false`.
    pub insecure_skip_verify: bool,
}
