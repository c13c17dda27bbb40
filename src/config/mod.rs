//! `config.toml`: the schema (every component's `XConfig`), loading with
//! `${VAR}` expansion, and validation that reports every problem with its key path.
//!
//! ```text
//! file ─► expand ${VAR} ─► toml + serde_path_to_error ─► Config ─► validate (all problems) ─► report
//! ```
//!
//! # Errors
//!
//! Every problem is a [`ConfigError`] printed on one line as `<path> (line N): <message>`
//! (see [`error`]). Parsing stops at the first type error (serde cannot go on); the semantic pass
//! ([`validate`]) reports every problem it finds. `run` and `check-config` both go through
//! [`load_and_validate`], so the gateway never starts on a config that `check-config` rejects.

pub mod error;
pub mod expand;
pub mod load;
mod locate;
pub mod report;
pub mod types;
pub mod validate;

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::batch::config::BatchConfig;
use crate::exporter::debug::config::DebugExporterConfig;
use crate::exporter::otlp::config::OtlpExporterConfig;
use crate::model::Signal;
use crate::queue::config::{RetryConfig, SendingQueueConfig};
use crate::receiver::config::OtlpReceiverConfig;
use crate::telemetry::config::{AdminConfig, ServiceConfig};

pub use error::{ConfigError, ConfigErrors};
pub use load::{
    load_and_validate, load_and_validate_str, load_and_validate_str_with, load_file, load_str,
    load_str_with,
};
pub use report::describe;
pub use types::{ByteSize, HumanDuration};
pub use validate::Validate;

/// The root of `config.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[service]`: shutdown and the gateway's own logs. Default: all defaults.
    #[serde(default)]
    pub service: ServiceConfig,
    /// `[admin]`: the `/health`, `/ready`, `/metrics` listener. Default: all defaults.
    #[serde(default)]
    pub admin: AdminConfig,
    /// `[receivers]`: where data comes in. Default: OTLP/gRPC and OTLP/HTTP on loopback.
    #[serde(default)]
    pub receivers: ReceiversConfig,
    /// `[processors]`: stages between receivers and exporters. Default: all defaults.
    #[serde(default)]
    pub processors: ProcessorsConfig,
    /// `[exporters]`: where data goes. Default none; a pipeline needs at least one.
    #[serde(default)]
    pub exporters: ExportersConfig,
    /// `[pipelines]`: which exporters each signal goes to. At least one pipeline is required.
    #[serde(default)]
    pub pipelines: PipelinesConfig,
}

/// `[receivers]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiversConfig {
    /// `[receivers.otlp]`. Default: both protocols on, at `127.0.0.1:4317` and `127.0.0.1:4318`.
    #[serde(default)]
    pub otlp: OtlpReceiverConfig,
}

/// `[processors]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorsConfig {
    /// `[processors.batch]`, applied in front of every exporter. Default: all defaults.
    #[serde(default)]
    pub batch: BatchConfig,
}

/// `[exporters]`: keyed by kind, then by a name of your choosing
/// (`[exporters.otlp.jaeger]` is referred to as `"otlp/jaeger"`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportersConfig {
    /// `[exporters.otlp.<name>]`: OTLP/gRPC or OTLP/HTTP senders, by name. Default none.
    #[serde(default)]
    pub otlp: BTreeMap<String, OtlpExporterConfig>,
    /// `[exporters.debug.<name>]`: log what passes through, by name. Default none.
    #[serde(default)]
    pub debug: BTreeMap<String, DebugExporterConfig>,
}

/// `[pipelines]`: which exporters each signal goes to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelinesConfig {
    /// `[pipelines.traces]`. Absent: received spans are acknowledged and dropped (counted).
    pub traces: Option<PipelineConfig>,
    /// `[pipelines.metrics]`. Absent: received data points are acknowledged and dropped (counted).
    pub metrics: Option<PipelineConfig>,
    /// `[pipelines.logs]`. Absent: received log records are acknowledged and dropped (counted).
    pub logs: Option<PipelineConfig>,
}

impl PipelinesConfig {
    /// The pipeline of `signal`, if configured.
    pub fn get(&self, signal: Signal) -> Option<&PipelineConfig> {
        match signal {
            Signal::Traces => self.traces.as_ref(),
            Signal::Metrics => self.metrics.as_ref(),
            Signal::Logs => self.logs.as_ref(),
        }
    }
}

/// `[pipelines.<signal>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Exporter ids, `"<kind>/<name>"` (e.g. `["otlp/jaeger", "debug/console"]`). Required:
    /// at least one, each defined under `[exporters]`, none twice.
    pub exporters: Vec<String>,
}

/// Exporter kinds, as written in `[exporters.<kind>.<name>]` and in ids (`<kind>/<name>`).
pub const EXPORTER_KINDS: [&str; 2] = ["debug", "otlp"];

/// One configured exporter, found by its id (`"otlp/jaeger"`).
#[derive(Debug, Clone, Copy)]
pub enum ExporterRef<'a> {
    /// `[exporters.otlp.<name>]`
    Otlp(&'a str, &'a OtlpExporterConfig),
    /// `[exporters.debug.<name>]`
    Debug(&'a str, &'a DebugExporterConfig),
}

impl<'a> ExporterRef<'a> {
    /// `"otlp"` or `"debug"`.
    pub fn kind(&self) -> &'static str {
        match self {
            ExporterRef::Otlp(..) => "otlp",
            ExporterRef::Debug(..) => "debug",
        }
    }

    /// The name under the kind (`"jaeger"` in `[exporters.otlp.jaeger]`).
    pub fn name(&self) -> &'a str {
        match self {
            ExporterRef::Otlp(name, _) | ExporterRef::Debug(name, _) => name,
        }
    }

    /// `"<kind>/<name>"`, as pipelines name it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }

    /// Its `sending_queue` table.
    pub fn sending_queue(&self) -> &'a SendingQueueConfig {
        match self {
            ExporterRef::Otlp(_, c) => &c.sending_queue,
            ExporterRef::Debug(_, c) => &c.sending_queue,
        }
    }

    /// Its `retry_on_failure` table; `None` for kinds that never fail (debug).
    pub fn retry_on_failure(&self) -> Option<&'a RetryConfig> {
        match self {
            ExporterRef::Otlp(_, c) => Some(&c.retry_on_failure),
            ExporterRef::Debug(..) => None,
        }
    }
}

impl Config {
    /// Every defined exporter's id (`"<kind>/<name>"`), sorted.
    pub fn exporter_ids(&self) -> Vec<String> {
        self.exporter_refs().map(|e| e.id()).collect()
    }

    /// Every defined exporter, sorted by id.
    pub fn exporter_refs(&self) -> impl Iterator<Item = ExporterRef<'_>> {
        // Kinds in EXPORTER_KINDS order (alphabetical), names in BTreeMap order: sorted by id.
        let debug = self
            .exporters
            .debug
            .iter()
            .map(|(name, c)| ExporterRef::Debug(name, c));
        let otlp = self
            .exporters
            .otlp
            .iter()
            .map(|(name, c)| ExporterRef::Otlp(name, c));
        debug.chain(otlp)
    }

    /// The exporter with id `"<kind>/<name>"`, if defined.
    pub fn exporter(&self, id: &str) -> Option<ExporterRef<'_>> {
        let (kind, name) = id.split_once('/')?;
        match kind {
            "otlp" => self
                .exporters
                .otlp
                .get_key_value(name)
                .map(|(name, c)| ExporterRef::Otlp(name, c)),
            "debug" => self
                .exporters
                .debug
                .get_key_value(name)
                .map(|(name, c)| ExporterRef::Debug(name, c)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exporters_are_found_by_id() {
        let config: Config = toml::from_str(
            "[exporters.otlp.jaeger]\nendpoint = \"http://h:1\"\n[exporters.debug.console]\n",
        )
        .unwrap();
        assert_eq!(config.exporter_ids(), ["debug/console", "otlp/jaeger"]);
        let jaeger = config.exporter("otlp/jaeger").unwrap();
        assert!(matches!(jaeger, ExporterRef::Otlp("jaeger", c) if c.endpoint == "http://h:1"));
        assert_eq!(jaeger.id(), "otlp/jaeger");
        assert!(config
            .exporter("debug/console")
            .unwrap()
            .retry_on_failure()
            .is_none());
        assert!(config.exporter("debug/jaeger").is_none());
        assert!(config.exporter("otlp").is_none());
        assert!(config.exporter("zipkin/jaeger").is_none());
    }
}
