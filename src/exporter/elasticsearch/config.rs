//! `[exporters.elasticsearch.<name>]`: spans and log records as documents through the `_bulk` API.

use std::sync::Arc;

use http::uri::{Scheme, Uri};
use serde::Deserialize;

use crate::exporter::otlp::config::TlsConfig;
use crate::exporter::{BuildError, DynExporter, ExporterConfig};
use crate::model::Signal;
use crate::settings::breaker::CircuitBreakerConfig;
use crate::settings::delivery::{RetryConfig, SendingQueueConfig};
use crate::settings::units::{ByteSize, HumanDuration};
use crate::settings::validate::{join, push, Validate, GREATER_THAN_ZERO};
use crate::settings::ConfigError;

use super::index::IndexTemplate;
use super::ElasticsearchExporter;

/// How spans and log records become documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mapping {
    /// OpenTelemetry names: `@timestamp`, `trace_id`, `attributes.*`, `resource.attributes.*`, …
    Otel,
    /// Elastic Common Schema names for log records: `message`, `log.level`, `service.name`,
    /// `trace.id`, … (spans always use `otel`).
    Ecs,
}

impl Mapping {
    pub fn as_str(self) -> &'static str {
        match self {
            Mapping::Otel => "otel",
            Mapping::Ecs => "ecs",
        }
    }
}

/// The bulk action of every document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpType {
    /// Write only if the id is new: a retried document answers 409, counted as delivered.
    /// Required for data streams.
    Create,
    /// Write or overwrite the document with that id.
    Index,
}

impl OpType {
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Create => "create",
            OpType::Index => "index",
        }
    }
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkCompression {
    None,
    Gzip,
}

/// `[exporters.elasticsearch.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchExporterConfig {
    /// The cluster: `http://` or `https://` URL with host and port, and an optional path
    /// prefix (a proxy), to which `/_bulk` is appended. Required.
    /// Example: `"https://es.example.com:9200"`.
    pub endpoint: String,
    /// `"otel"` or `"ecs"` (log records only). Default `"otel"`.
    #[serde(default = "default_mapping")]
    pub mapping: Mapping,
    /// Index (or data stream) of each span, from a template: `{tenant}` is the batch's
    /// tenant (`default_tenant` without one); `{yyyy.MM.dd}` (letters `yyyy`, `MM`, `dd`,
    /// `HH` with any of `.-_`) is the span's start time in UTC; any other `{key}` is that
    /// resource attribute (`{service.name}`; `unknown` when absent). The result is
    /// lower-cased and characters Elasticsearch refuses become `_`.
    /// Default `"otel-traces-{yyyy.MM.dd}"`.
    #[serde(default = "default_traces_index")]
    pub traces_index: String,
    /// The same for log records (date from the record's time, else its observed time).
    /// Default `"otel-logs-{yyyy.MM.dd}"`.
    #[serde(default = "default_logs_index")]
    pub logs_index: String,
    /// `{tenant}` of batches that carry no tenant. Default `"default"`.
    #[serde(default = "default_tenant")]
    pub default_tenant: String,
    /// `"create"` (a retried document is never written twice; required for data streams)
    /// or `"index"` (overwrite by id). Default `"create"`.
    #[serde(default = "default_op_type")]
    pub op_type: OpType,
    /// Documents in one bulk request; a larger batch is sent as several. Greater than 0.
    /// Default `5000`.
    #[serde(default = "default_bulk_max_documents")]
    pub bulk_max_documents: usize,
    /// Bytes (uncompressed NDJSON) in one bulk request; a larger batch is sent as several
    /// (a single larger document goes alone). Greater than 0. Default `"5MiB"`.
    #[serde(default = "default_bulk_max_bytes")]
    pub bulk_max_bytes: ByteSize,
    /// `"gzip"` or `"none"`. Default `"gzip"`.
    #[serde(default = "default_compression")]
    pub compression: BulkCompression,
    /// User name for basic authentication (with `password_env`). Default none.
    #[serde(default)]
    pub user: Option<String>,
    /// Environment variable holding the basic-authentication password. Default none.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Environment variable holding an API key (the encoded `id:key` form Elasticsearch
    /// returns), sent as `Authorization: ApiKey <key>`. Default none.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Deadline of one bulk request. Duration, greater than 0. Default `"30s"`.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// `[exporters.elasticsearch.<name>.tls]`: trust for `https://` endpoints (`ca_file`,
    /// `insecure_skip_verify`). Default: the built-in web roots, verified.
    #[serde(default)]
    pub tls: TlsConfig,
    /// `[exporters.elasticsearch.<name>.retry_on_failure]`: backoff for retryable failures,
    /// whole requests and single documents alike. Default: all defaults (on).
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// `[exporters.elasticsearch.<name>.sending_queue]`: the queue in front of it;
    /// `num_consumers` is the number of bulk requests in flight. Default: all defaults.
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
    /// `[exporters.elasticsearch.<name>.circuit_breaker]`: stops sending to a backend that keeps
    /// failing and probes it with one batch at a time. Default: all defaults (on).
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
}

fn default_mapping() -> Mapping {
    Mapping::Otel
}
fn default_traces_index() -> String {
    "otel-traces-{yyyy.MM.dd}".to_owned()
}
fn default_logs_index() -> String {
    "otel-logs-{yyyy.MM.dd}".to_owned()
}
fn default_tenant() -> String {
    "default".to_owned()
}
fn default_op_type() -> OpType {
    OpType::Create
}
fn default_bulk_max_documents() -> usize {
    5000
}
fn default_bulk_max_bytes() -> ByteSize {
    ByteSize::mib(5)
}
fn default_compression() -> BulkCompression {
    BulkCompression::Gzip
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}

impl ElasticsearchExporterConfig {
    /// The index template of `signal` (metrics have none).
    pub fn index_for(&self, signal: Signal) -> Option<&str> {
        match signal {
            Signal::Traces => Some(&self.traces_index),
            Signal::Logs => Some(&self.logs_index),
            Signal::Metrics => None,
        }
    }
}

impl ExporterConfig for ElasticsearchExporterConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        let problem = match self.endpoint.trim().parse::<Uri>() {
            Err(error) => Some(error.to_string()),
            Ok(uri) => {
                let scheme = uri.scheme();
                if scheme != Some(&Scheme::HTTP) && scheme != Some(&Scheme::HTTPS) {
                    Some("must start with http:// or https://".to_owned())
                } else if uri.host().is_none_or(str::is_empty) {
                    Some("no host".to_owned())
                } else if uri.query().is_some() {
                    Some("no query string allowed".to_owned())
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
        for (key, template) in [
            ("traces_index", &self.traces_index),
            ("logs_index", &self.logs_index),
        ] {
            if let Err(problem) = IndexTemplate::parse(template) {
                push(
                    errors,
                    path,
                    key,
                    format!("invalid index template \"{template}\": {problem}"),
                );
            }
        }
        if self.default_tenant.trim().is_empty() {
            push(errors, path, "default_tenant", "must not be empty");
        }
        if self.bulk_max_documents == 0 {
            push(errors, path, "bulk_max_documents", GREATER_THAN_ZERO);
        }
        if self.bulk_max_bytes.get() == 0 {
            push(errors, path, "bulk_max_bytes", GREATER_THAN_ZERO);
        }
        if self.timeout.get().is_zero() {
            push(errors, path, "timeout", GREATER_THAN_ZERO);
        }
        match (&self.user, &self.password_env) {
            (Some(_), None) => push(errors, path, "password_env", "required with user"),
            (None, Some(_)) => push(errors, path, "user", "required with password_env"),
            _ => {}
        }
        if self.user.as_deref().is_some_and(|u| u.contains(':')) {
            push(errors, path, "user", "must not contain ':'");
        }
        if self.user.is_some() && self.api_key_env.is_some() {
            push(
                errors,
                path,
                "api_key_env",
                "use either user/password_env or api_key_env, not both",
            );
        }
        for (key, name) in [
            ("password_env", &self.password_env),
            ("api_key_env", &self.api_key_env),
        ] {
            if name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                push(errors, path, key, "must name an environment variable");
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
        let plain = self.endpoint.trim().starts_with("http://");
        if plain && (self.tls.ca_file.is_some() || self.tls.insecure_skip_verify) {
            warnings.push(ConfigError::new(
                join(path, "tls"),
                "ignored: the endpoint is http:// (plain text)",
            ));
        }
        // The secret itself is read when the exporter is built; say early when it is missing.
        for (key, name) in [
            ("password_env", &self.password_env),
            ("api_key_env", &self.api_key_env),
        ] {
            if let Some(name) = name {
                if !name.trim().is_empty() && std::env::var_os(name).is_none() {
                    warnings.push(ConfigError::new(
                        join(path, key),
                        format!("environment variable {name} is not set"),
                    ));
                }
            }
        }
    }

    fn describe(&self) -> String {
        let mut parts = vec![
            format!("bulk {}", self.endpoint),
            format!("mapping {}", self.mapping.as_str()),
            format!(
                "indices {} / {}",
                self.traces_index.as_str(),
                self.logs_index.as_str()
            ),
            format!("op_type {}", self.op_type.as_str()),
            format!(
                "at most {} documents / {} per request",
                self.bulk_max_documents, self.bulk_max_bytes
            ),
            match self.compression {
                BulkCompression::Gzip => "gzip".to_owned(),
                BulkCompression::None => "none".to_owned(),
            },
            format!("timeout {}", self.timeout),
        ];
        if let (Some(user), Some(env)) = (&self.user, &self.password_env) {
            parts.push(format!("basic auth {user} (password from ${env})"));
        }
        if let Some(env) = &self.api_key_env {
            parts.push(format!("api key from ${env}"));
        }
        if self.endpoint.trim().starts_with("https://") {
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

    fn build(&self, id: &str, signal: Signal) -> Result<Arc<dyn DynExporter>, BuildError> {
        let exporter = ElasticsearchExporter::build(id, signal, self).map_err(BuildError::new)?;
        Ok(Arc::new(exporter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(toml_text: &str) -> Vec<String> {
        let config: ElasticsearchExporterConfig = toml::from_str(toml_text).unwrap();
        let mut errors = Vec::new();
        config.validate("exporters.elasticsearch.es", &mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let config: ElasticsearchExporterConfig =
            toml::from_str("endpoint = \"http://localhost:9200\"").unwrap();
        assert_eq!(config.mapping, Mapping::Otel);
        assert_eq!(config.op_type, OpType::Create);
        assert_eq!(config.bulk_max_bytes, ByteSize::mib(5));
        assert_eq!(config.compression, BulkCompression::Gzip);
        assert!(errors("endpoint = \"http://localhost:9200\"").is_empty());
    }

    #[test]
    fn problems_carry_their_key_path() {
        let found = errors(
            "endpoint = \"ftp://x\"\ntraces_index = \"t-{yyyy.MM.dd\"\nbulk_max_documents = 0\n\
             user = \"elastic\"\napi_key_env = \"K\"\ntimeout = \"0s\"\n",
        );
        let joined = found.join("\n");
        for key in [
            "exporters.elasticsearch.es.endpoint",
            "exporters.elasticsearch.es.traces_index",
            "exporters.elasticsearch.es.bulk_max_documents",
            "exporters.elasticsearch.es.password_env",
            "exporters.elasticsearch.es.api_key_env",
            "exporters.elasticsearch.es.timeout",
        ] {
            assert!(joined.contains(key), "{key} missing in:\n{joined}");
        }
    }

    #[test]
    fn describe_never_shows_secrets() {
        let config: ElasticsearchExporterConfig = toml::from_str(
            "endpoint = \"https://es:9200\"\nuser = \"elastic\"\npassword_env = \"ES_PASSWORD\"\n",
        )
        .unwrap();
        let text = config.describe();
        assert!(
            text.contains("basic auth elastic (password from $ES_PASSWORD)"),
            "{text}"
        );
        assert!(text.contains("tls (web roots)"), "{text}");
    }
}
