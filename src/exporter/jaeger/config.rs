//! `[exporters.jaeger.<name>]`: Jaeger's `api_v2` gRPC collector API, for
//! collectors older than 1.35 (newer ones take OTLP: use the `otlp` exporter).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::exporter::otlp::config::{Compression, OtlpExporterConfig, OtlpProtocol, TlsConfig};
use crate::exporter::otlp::TENANT_PLACEHOLDER;
use crate::exporter::{BuildError, DynExporter, ExporterConfig};
use crate::model::Signal;
use crate::settings::breaker::CircuitBreakerConfig;
use crate::settings::delivery::{RetryConfig, SendingQueueConfig};
use crate::settings::units::HumanDuration;
use crate::settings::validate::push;
use crate::settings::ConfigError;

use super::JaegerExporter;

/// Request compression: what every Jaeger collector's gRPC server understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JaegerCompression {
    None,
    Gzip,
}

/// `[exporters.jaeger.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JaegerExporterConfig {
    /// The collector's gRPC address: `http://` or `https://`, host and port, no path
    /// (`"http://jaeger-collector:14250"`). Required.
    pub endpoint: String,
    /// `"none"` or `"gzip"`. Default `"none"`.
    #[serde(default = "default_compression")]
    pub compression: JaegerCompression,
    /// Extra gRPC metadata, e.g. `{ "x-api-key" = "${API_KEY}" }`. A value with `{tenant}`
    /// is filled in with each batch's tenant and left out for batches without one. Values
    /// are never printed by `check-config`. Default none.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Deadline of one `PostSpans` call. Duration, greater than 0. Default `"5s"`.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// `[exporters.jaeger.<name>.tls]`: as the `otlp` exporter's.
    #[serde(default)]
    pub tls: TlsConfig,
    /// `[exporters.jaeger.<name>.retry_on_failure]`: backoff for `UNAVAILABLE` and the
    /// other retryable answers. Default: all defaults (on).
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// `[exporters.jaeger.<name>.sending_queue]`. Default: all defaults.
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
    /// `[exporters.jaeger.<name>.circuit_breaker]`: stops sending to a backend that keeps
    /// failing and probes it with one batch at a time. Default: all defaults (on).
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
}

fn default_compression() -> JaegerCompression {
    JaegerCompression::None
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

impl JaegerExporterConfig {
    /// The same settings as an `otlp` gRPC exporter's: the transport, its
    /// checks and its key names are shared.
    pub fn otlp_config(&self) -> OtlpExporterConfig {
        OtlpExporterConfig {
            endpoint: self.endpoint.clone(),
            protocol: OtlpProtocol::Grpc,
            compression: match self.compression {
                JaegerCompression::None => Compression::None,
                JaegerCompression::Gzip => Compression::Gzip,
            },
            headers: self.headers.clone(),
            tenant_header: None,
            timeout: self.timeout,
            tls: self.tls.clone(),
            retry_on_failure: self.retry_on_failure.clone(),
            sending_queue: self.sending_queue.clone(),
            circuit_breaker: self.circuit_breaker.clone(),
        }
    }
}

impl ExporterConfig for JaegerExporterConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.endpoint.contains(TENANT_PLACEHOLDER) {
            push(
                errors,
                path,
                "endpoint",
                "{tenant} is not supported in a jaeger endpoint (use headers)",
            );
            return;
        }
        self.otlp_config().validate(path, errors);
    }

    fn warnings(&self, path: &str, warnings: &mut Vec<ConfigError>) {
        self.otlp_config().warnings(path, warnings);
    }

    fn describe(&self) -> String {
        let otlp = self.otlp_config().describe();
        // "grpc <endpoint>, …" → "jaeger api_v2 grpc <endpoint>, …"
        format!("jaeger api_v2 {otlp}")
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

    fn build(&self, id: &str, signal: Signal) -> Result<Arc<dyn DynExporter>, BuildError> {
        let exporter = JaegerExporter::build(id, signal, self).map_err(BuildError::new)?;
        Ok(Arc::new(exporter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        let config: JaegerExporterConfig = toml::from_str(text).unwrap();
        let mut errors = Vec::new();
        config.validate("exporters.jaeger.j", &mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_and_key_paths() {
        assert!(errors("endpoint = \"http://127.0.0.1:14250\"").is_empty());
        let config: JaegerExporterConfig = toml::from_str("endpoint = \"http://h:14250\"").unwrap();
        assert_eq!(config.compression, JaegerCompression::None);
        assert_eq!(config.timeout.get(), std::time::Duration::from_secs(5));
        let all = errors(
            "endpoint = \"http://h:14250/api\"\ntimeout = \"0s\"\nheaders = { \"bad name\" = \"x\" }",
        )
        .join("\n");
        for want in [
            "exporters.jaeger.j.endpoint",
            "exporters.jaeger.j.timeout",
            "exporters.jaeger.j.headers.bad name",
        ] {
            assert!(all.contains(want), "{want} missing in:\n{all}");
        }
        assert!(errors("endpoint = \"http://{tenant}:14250\"")[0].contains("{tenant}"));
        assert!(toml::from_str::<JaegerExporterConfig>(
            "endpoint = \"http://h:1\"\ncompression = \"zstd\""
        )
        .is_err());
    }

    #[test]
    fn describe_hides_header_values() {
        let config: JaegerExporterConfig = toml::from_str(
            "endpoint = \"http://h:14250\"\ncompression = \"gzip\"\nheaders = { \"x-key\" = \"sekrit\" }",
        )
        .unwrap();
        let text = config.describe();
        assert!(
            text.starts_with("jaeger api_v2 grpc http://h:14250"),
            "{text}"
        );
        assert!(text.contains("gzip") && text.contains("x-key"), "{text}");
        assert!(!text.contains("sekrit"), "{text}");
    }
}
