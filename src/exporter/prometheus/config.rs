//! `[exporters.prometheusremotewrite.<name>]`: Prometheus remote-write 1.0
//! to Prometheus, Mimir, Cortex, Thanos receive, VictoriaMetrics…

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use http::uri::{Scheme, Uri};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;

use crate::exporter::otlp::config::TlsConfig;
use crate::exporter::otlp::TENANT_PLACEHOLDER;
use crate::exporter::{BuildError, DynExporter, ExporterConfig};
use crate::model::Signal;
use crate::settings::breaker::CircuitBreakerConfig;
use crate::settings::delivery::{RetryConfig, SendingQueueConfig};
use crate::settings::units::HumanDuration;
use crate::settings::validate::{join, push, Validate, GREATER_THAN_ZERO};
use crate::settings::ConfigError;

use super::translate::{DeltaMode, TranslateConfig};
use super::PrometheusExporter;

/// Headers the exporter sets itself.
pub(super) const EXPORTER_HEADERS: [&str; 9] = [
    "content-type",
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "x-prometheus-remote-write-version",
    "authorization",
    "te",
    "host",
    "connection",
];

/// `[exporters.prometheusremotewrite.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusExporterConfig {
    /// The remote-write URL: `http://` or `https://`, host, port and path
    /// (`"http://prometheus:9090/api/v1/write"`, `"https://mimir:443/api/v1/push"`). Required.
    pub endpoint: String,
    /// Deadline of one request. Duration, greater than 0. Default `"5s"`.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Extra request headers. A value with `{tenant}` is filled in with each batch's tenant
    /// (`{ "X-Scope-OrgID" = "{tenant}" }` for Mimir and Cortex) and left out for batches
    /// without one. Values are never printed by `check-config`. Default none.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `basic_auth = { username = "…", password_env = "PROM_PASSWORD" }`: HTTP basic auth, the
    /// password read from that environment variable at start-up. Default none.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// Environment variable holding a bearer token (`Authorization: Bearer …`), read at
    /// start-up. Not together with `basic_auth`. Default none.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// `[exporters.prometheusremotewrite.<name>.tls]`: as the `otlp` exporter's.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Resource attributes copied onto every series as labels (besides `job` and
    /// `instance`), e.g. `["deployment.environment", "k8s.namespace.name"]`. Default none.
    #[serde(default)]
    pub promote_resource_attributes: Vec<String>,
    /// Send the other resource attributes as a `target_info` series per resource. Default `true`.
    #[serde(default = "yes")]
    pub target_info: bool,
    /// Unit and type suffixes on metric names (`_seconds`, `_bytes`, `_total`, `_ratio`).
    /// Default `true`.
    #[serde(default = "yes")]
    pub add_metric_suffixes: bool,
    /// Delta temporality sums and histograms: `"convert"` (added up per series into
    /// cumulative ones, in memory) or `"refuse"` (dropped, counted). Default `"convert"`.
    #[serde(default = "default_delta")]
    pub delta: DeltaMode,
    /// Series whose running delta sum is kept at most; delta points of new series beyond it
    /// are refused, counted. Greater than 0. Default `100000`.
    #[serde(default = "default_delta_max_series")]
    pub delta_max_series: usize,
    /// Samples in one request at most; a batch with more goes out as several requests, in
    /// order. Greater than 0. Default `2000`.
    #[serde(default = "default_max_samples")]
    pub max_samples_per_send: usize,
    /// Concurrent senders. Every series always goes through the same one (by a hash of its
    /// resource's `job`, `instance` and promoted attributes), so no series is ever sent
    /// out of order. Replaces `sending_queue.num_consumers`. Greater than 0. Default `4`.
    #[serde(default = "default_shards")]
    pub num_shards: usize,
    /// `[exporters.prometheusremotewrite.<name>.retry_on_failure]`: backoff for 5xx, 429
    /// and connection failures. Default: all defaults (on).
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// `[exporters.prometheusremotewrite.<name>.sending_queue]`: `queue_size` is shared by
    /// the shards; `num_consumers` is replaced by `num_shards`.
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
    /// `[exporters.prometheusremotewrite.<name>.circuit_breaker]`: stops sending to a backend that keeps
    /// failing and probes it with one batch at a time. Default: all defaults (on).
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    /// `sending_queue` with `num_consumers = num_shards`, made on first use.
    #[serde(skip)]
    shard_queue: OnceLock<SendingQueueConfig>,
}

/// `basic_auth = { username, password_env }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    /// Environment variable holding the password.
    pub password_env: String,
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}
fn yes() -> bool {
    true
}
fn default_delta() -> DeltaMode {
    DeltaMode::Convert
}
fn default_delta_max_series() -> usize {
    100_000
}
fn default_max_samples() -> usize {
    2000
}
fn default_shards() -> usize {
    4
}

impl PrometheusExporterConfig {
    /// The translation settings.
    pub fn translate_config(&self) -> TranslateConfig {
        TranslateConfig {
            add_metric_suffixes: self.add_metric_suffixes,
            target_info: self.target_info,
            promote_resource_attributes: self.promote_resource_attributes.clone(),
            delta: self.delta,
            delta_max_series: self.delta_max_series,
        }
    }
}

/// Reads the secret in environment variable `name`.
pub(super) fn secret_from_env(name: &str) -> Result<String, &'static str> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(value),
        Ok(_) => Err("is empty"),
        Err(std::env::VarError::NotPresent) => Err("is not set"),
        Err(std::env::VarError::NotUnicode(_)) => Err("is not UTF-8"),
    }
}

impl ExporterConfig for PrometheusExporterConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        let problem = match self.endpoint.parse::<Uri>() {
            Err(error) => Some(error.to_string()),
            Ok(uri) => {
                let scheme = uri.scheme();
                if scheme != Some(&Scheme::HTTP) && scheme != Some(&Scheme::HTTPS) {
                    Some("must start with http:// or https://".to_owned())
                } else if uri.host().is_none_or(str::is_empty) {
                    Some("no host".to_owned())
                } else if uri.port_u16().is_none() {
                    Some("no port (e.g. http://prometheus:9090/api/v1/write)".to_owned())
                } else if matches!(uri.path(), "" | "/") {
                    Some("no path (e.g. /api/v1/write)".to_owned())
                } else {
                    None
                }
            }
        };
        if let Some(problem) = problem {
            push(
                errors,
                path,
                "endpoint",
                format!("invalid endpoint \"{}\": {problem}", self.endpoint),
            );
        }
        for (name, value) in &self.headers {
            let header_path = join(&join(path, "headers"), name);
            match HeaderName::from_bytes(name.as_bytes()) {
                Err(_) => errors.push(ConfigError::new(
                    &header_path,
                    format!("invalid header name \"{name}\""),
                )),
                Ok(key) if EXPORTER_HEADERS.contains(&key.as_str()) => errors
                    .push(ConfigError::new(
                    &header_path,
                    "set by the exporter (use basic_auth or bearer_token_env for authorization)",
                )),
                Ok(_) => {}
            }
            // The value may be a secret: never echo it.
            if HeaderValue::from_str(&value.replace(TENANT_PLACEHOLDER, "tenant")).is_err() {
                errors.push(ConfigError::new(
                    &header_path,
                    "invalid header value: use visible ASCII, spaces and tabs",
                ));
            }
        }
        if let Some(auth) = &self.basic_auth {
            let auth_path = join(path, "basic_auth");
            if auth.username.contains(':') {
                push(errors, &auth_path, "username", "must not contain ':'");
            }
            if let Err(problem) = secret_from_env(&auth.password_env) {
                push(
                    errors,
                    &auth_path,
                    "password_env",
                    format!("environment variable {} {problem}", auth.password_env),
                );
            }
            if self.bearer_token_env.is_some() {
                push(
                    errors,
                    path,
                    "bearer_token_env",
                    "not together with basic_auth: choose one",
                );
            }
        }
        if let Some(name) = &self.bearer_token_env {
            if let Err(problem) = secret_from_env(name) {
                push(
                    errors,
                    path,
                    "bearer_token_env",
                    format!("environment variable {name} {problem}"),
                );
            }
        }
        if self.timeout.get().is_zero() {
            push(errors, path, "timeout", GREATER_THAN_ZERO);
        }
        for (field, value) in [
            ("delta_max_series", self.delta_max_series),
            ("max_samples_per_send", self.max_samples_per_send),
            ("num_shards", self.num_shards),
        ] {
            if value == 0 {
                push(errors, path, field, GREATER_THAN_ZERO);
            }
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
        let queue = &self.sending_queue;
        if queue.num_consumers != SendingQueueConfig::default().num_consumers
            && queue.num_consumers != self.num_shards
        {
            warnings.push(ConfigError::new(
                join(&join(path, "sending_queue"), "num_consumers"),
                format!("ignored: num_shards ({}) senders run", self.num_shards),
            ));
        }
    }

    fn describe(&self) -> String {
        let mut parts = vec![
            format!("remote-write 1.0 {}", self.endpoint),
            format!("timeout {}", self.timeout),
            format!(
                "{} shards, {} samples per request",
                self.num_shards, self.max_samples_per_send
            ),
            format!("delta {}", self.delta.as_str()),
        ];
        if !self.add_metric_suffixes {
            parts.push("no metric suffixes".to_owned());
        }
        if !self.target_info {
            parts.push("no target_info".to_owned());
        }
        if !self.promote_resource_attributes.is_empty() {
            parts.push(format!(
                "promoted [{}]",
                self.promote_resource_attributes.join(", ")
            ));
        }
        if !self.headers.is_empty() {
            let names: Vec<&str> = self.headers.keys().map(String::as_str).collect();
            parts.push(format!("headers [{}]", names.join(", ")));
        }
        if let Some(auth) = &self.basic_auth {
            parts.push(format!(
                "basic auth {} (password from ${})",
                auth.username, auth.password_env
            ));
        }
        if let Some(name) = &self.bearer_token_env {
            parts.push(format!("bearer token from ${name}"));
        }
        if self.endpoint.starts_with("https://") {
            parts.push(self.tls.describe());
        }
        parts.push(self.retry_on_failure.describe());
        parts.push(format!("queue {} items", self.sending_queue.queue_size));
        parts.push(self.circuit_breaker.describe());
        parts.join(", ")
    }

    fn sending_queue(&self) -> &SendingQueueConfig {
        self.shard_queue.get_or_init(|| SendingQueueConfig {
            num_consumers: self.num_shards.max(1),
            ..self.sending_queue.clone()
        })
    }

    fn retry_on_failure(&self) -> Option<&RetryConfig> {
        Some(&self.retry_on_failure)
    }

    fn circuit_breaker(&self) -> &CircuitBreakerConfig {
        &self.circuit_breaker
    }

    fn build(&self, id: &str, signal: Signal) -> Result<Arc<dyn DynExporter>, BuildError> {
        let exporter = PrometheusExporter::build(id, signal, self).map_err(BuildError::new)?;
        Ok(Arc::new(exporter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> PrometheusExporterConfig {
        toml::from_str(text).unwrap()
    }

    fn errors(config: &PrometheusExporterConfig) -> Vec<String> {
        let mut errors = Vec::new();
        config.validate("exporters.prometheusremotewrite.p", &mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_follow_the_collector() {
        let config = parse("endpoint = \"http://127.0.0.1:9090/api/v1/write\"");
        assert!(errors(&config).is_empty(), "{:?}", errors(&config));
        assert_eq!(config.max_samples_per_send, 2000);
        assert!(config.add_metric_suffixes && config.target_info);
        assert_eq!(config.delta, DeltaMode::Convert);
        assert_eq!(config.sending_queue().num_consumers, 4);
        let config = parse("endpoint = \"http://h:1/w\"\nnum_shards = 7");
        assert_eq!(config.sending_queue().num_consumers, 7);
        assert!(config.describe().contains("7 shards"));
    }

    #[test]
    fn errors_carry_key_paths() {
        let config = parse(
            r#"
endpoint = "http://h:9090"
timeout = "0s"
max_samples_per_send = 0
num_shards = 0
bearer_token_env = "OTLP_GATEWAY_TEST_SURELY_UNSET"
headers = { "Content-Type" = "text/plain", "bad name" = "x" }
"#,
        );
        let all = errors(&config).join("\n");
        for want in [
            "exporters.prometheusremotewrite.p.endpoint",
            "exporters.prometheusremotewrite.p.timeout",
            "exporters.prometheusremotewrite.p.max_samples_per_send",
            "exporters.prometheusremotewrite.p.num_shards",
            "exporters.prometheusremotewrite.p.bearer_token_env",
            "exporters.prometheusremotewrite.p.headers.Content-Type",
            "exporters.prometheusremotewrite.p.headers.bad name",
        ] {
            assert!(all.contains(want), "{want} missing in:\n{all}");
        }
        assert!(toml::from_str::<PrometheusExporterConfig>(
            "endpoint = \"http://h:1/w\"\ndelta = \"keep\""
        )
        .is_err());
        assert!(toml::from_str::<PrometheusExporterConfig>(
            "endpoint = \"http://h:1/w\"\nnope = 1"
        )
        .is_err());
    }

    #[test]
    fn secrets_are_never_described() {
        std::env::set_var("OTLP_GATEWAY_TEST_PROM_PASSWORD", "hunter2");
        let config = parse(
            r#"
endpoint = "https://mimir:443/api/v1/push"
headers = { "X-Scope-OrgID" = "{tenant}", "X-Key" = "sekrit" }
basic_auth = { username = "gw", password_env = "OTLP_GATEWAY_TEST_PROM_PASSWORD" }
"#,
        );
        assert!(errors(&config).is_empty(), "{:?}", errors(&config));
        let text = config.describe();
        assert!(
            !text.contains("hunter2") && !text.contains("sekrit"),
            "{text}"
        );
        assert!(text.contains("basic auth gw"), "{text}");
    }
}
