//! `[exporters.otlp.<name>]`: OTLP over gRPC or HTTP/protobuf to any collector (Jaeger v2 included).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use http::uri::{Scheme, Uri};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;

use crate::exporter::{BuildError, DynExporter, ExporterConfig};
use crate::model::Signal;
use crate::settings::breaker::CircuitBreakerConfig;
use crate::settings::delivery::{RetryConfig, SendingQueueConfig};
use crate::settings::units::HumanDuration;
use crate::settings::validate::{file_problem, join, push, Validate, GREATER_THAN_ZERO};
use crate::settings::ConfigError;

use super::OtlpExporter;

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
    /// With `{tenant}` in it (`"https://{tenant}.ingest.example.com:4317"`) the exporter is
    /// built once per tenant listed under `[tenants]`, each with its own queue and workers,
    /// and each batch goes to its tenant's; this needs `[tenancy]` with
    /// `unknown_tenants = "reject"`.
    pub endpoint: String,
    /// `"grpc"` or `"http_protobuf"`. Default `"grpc"`.
    #[serde(default = "default_protocol")]
    pub protocol: OtlpProtocol,
    /// `"none"`, `"gzip"` or `"zstd"`. Default `"gzip"` (as the Collector).
    #[serde(default = "default_compression")]
    pub compression: Compression,
    /// Extra request headers (gRPC metadata), e.g. `{ "x-api-key" = "${API_KEY}" }`. Default none.
    /// Names and values must be valid HTTP; values are never printed by `check-config`. A value
    /// with `{tenant}` is filled in with each batch's tenant (`"Bearer {tenant}-ingest"`), and
    /// left out for batches without one.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Header (gRPC metadata) that carries each batch's tenant, e.g. `"X-Scope-OrgID"` for
    /// Tempo, Mimir and Loki. Batches without a tenant are sent without it. Default none.
    #[serde(default)]
    pub tenant_header: Option<String>,
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
    /// `[exporters.otlp.<name>.circuit_breaker]`: stops sending to a backend that keeps
    /// failing and probes it with one batch at a time. Default: all defaults (on).
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
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

impl TlsConfig {
    /// The `check-config` words for an `https://` endpoint: `tls (web roots)`,
    /// `tls (ca_file <path>)`, with a warning when verification is off.
    pub fn describe(&self) -> String {
        let roots = match &self.ca_file {
            Some(file) => format!("ca_file {}", file.display()),
            None => "web roots".to_owned(),
        };
        let verify = if self.insecure_skip_verify {
            ", NOT VERIFIED (insecure_skip_verify)"
        } else {
            ""
        };
        format!("tls ({roots}{verify})")
    }
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http_protobuf",
        }
    }
}

impl ExporterConfig for OtlpExporterConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        // An endpoint naming `{tenant}` is checked with a sample tenant id (a number where
        // it stands for the port); each tenant's is checked again when it is built.
        let sample = if self.endpoint.contains(":{tenant}") {
            "4317"
        } else {
            "tenant"
        };
        exporter_endpoint(
            &self.endpoint.replace(super::TENANT_PLACEHOLDER, sample),
            self.protocol,
            &join(path, "endpoint"),
            errors,
        );
        for (name, value) in &self.headers {
            let header_path = join(&join(path, "headers"), name);
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                errors.push(ConfigError::new(
                    &header_path,
                    format!("invalid header name \"{name}\""),
                ));
            }
            // The value may be a secret: never echo it.
            if HeaderValue::from_str(value).is_err() {
                errors.push(ConfigError::new(
                    &header_path,
                    "invalid header value: use visible ASCII, spaces and tabs",
                ));
            }
        }
        if let Some(name) = &self.tenant_header {
            if let Err(reason) = super::check_header_name(name, self.protocol) {
                push(
                    errors,
                    path,
                    "tenant_header",
                    format!("invalid header name \"{name}\": {reason}"),
                );
            }
        }
        if self.timeout.get().is_zero() {
            push(errors, path, "timeout", GREATER_THAN_ZERO);
        }
        self.tls.validate(&join(path, "tls"), errors);
        self.retry_on_failure
            .validate(&join(path, "retry_on_failure"), errors);
        self.sending_queue
            .validate(&join(path, "sending_queue"), errors);
        self.circuit_breaker
            .validate(&join(path, "circuit_breaker"), errors);
    }

    fn warnings(&self, path: &str, warnings: &mut Vec<ConfigError>) {
        let plain = self.endpoint.starts_with("http://");
        if plain && (self.tls.ca_file.is_some() || self.tls.insecure_skip_verify) {
            warnings.push(ConfigError::new(
                join(path, "tls"),
                "ignored: the endpoint is http:// (plain text)",
            ));
        }
    }

    fn describe(&self) -> String {
        let mut parts = vec![
            format!("{} {}", self.protocol.as_str(), self.endpoint),
            self.compression.as_str().to_owned(),
            format!("timeout {}", self.timeout),
        ];
        if !self.headers.is_empty() {
            let names: Vec<&str> = self.headers.keys().map(String::as_str).collect();
            parts.push(format!("headers [{}]", names.join(", ")));
        }
        if let Some(name) = &self.tenant_header {
            parts.push(format!("tenant in {name}"));
        }
        if self.endpoint.starts_with("https://") {
            parts.push(self.tls.describe());
        }
        parts.push(self.retry_on_failure.describe());
        parts.push(self.sending_queue.describe());
        parts.push(self.circuit_breaker.describe());
        parts.join(", ")
    }

    fn sending_queue(&self) -> &SendingQueueConfig {
        &self.sending_queue
    }

    fn retry_on_failure(&self) -> Option<&RetryConfig> {
        Some(&self.retry_on_failure)
    }

    fn circuit_breaker(&self) -> &CircuitBreakerConfig {
        &self.circuit_breaker
    }

    fn build(&self, id: &str, _signal: Signal) -> Result<Arc<dyn DynExporter>, BuildError> {
        let exporter = OtlpExporter::build(id, self).map_err(BuildError::new)?;
        Ok(Arc::new(exporter))
    }

    fn per_tenant(&self) -> bool {
        self.endpoint.contains(super::TENANT_PLACEHOLDER)
    }

    fn build_for_tenant(
        &self,
        id: &str,
        _signal: Signal,
        tenant: &str,
    ) -> Result<Arc<dyn DynExporter>, BuildError> {
        let mut config = self.clone();
        config.endpoint = self.endpoint.replace(super::TENANT_PLACEHOLDER, tenant);
        let exporter = OtlpExporter::build(id, &config).map_err(BuildError::new)?;
        Ok(Arc::new(exporter))
    }
}

/// An exporter endpoint is an `http://` or `https://` URL with host and port; a gRPC one has no path.
fn exporter_endpoint(
    endpoint: &str,
    protocol: OtlpProtocol,
    path: &str,
    errors: &mut Vec<ConfigError>,
) {
    let problem = match endpoint.parse::<Uri>() {
        Err(error) => Some(error.to_string()),
        Ok(uri) => {
            let scheme = uri.scheme();
            if scheme != Some(&Scheme::HTTP) && scheme != Some(&Scheme::HTTPS) {
                Some("must start with http:// or https://".to_owned())
            } else if uri.host().is_none_or(str::is_empty) {
                Some("no host".to_owned())
            } else if uri.port_u16().is_none() {
                Some("no port (e.g. http://collector:4317)".to_owned())
            } else if protocol == OtlpProtocol::Grpc && !matches!(uri.path(), "" | "/") {
                Some("a gRPC endpoint takes no path".to_owned())
            } else if uri.query().is_some() {
                Some("no query string allowed".to_owned())
            } else {
                None
            }
        }
    };
    if let Some(problem) = problem {
        errors.push(ConfigError::new(
            path,
            format!("invalid endpoint \"{endpoint}\": {problem}"),
        ));
    }
}

impl Validate for TlsConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if let Some(file) = &self.ca_file {
            if let Some(problem) = file_problem(file) {
                push(
                    errors,
                    path,
                    "ca_file",
                    format!("{problem}: \"{}\"", file.display()),
                );
            }
        }
    }
}
