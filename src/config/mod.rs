//! `config.toml`: the schema (every component's `XConfig`), loading with
//! `${VAR}` expansion, and validation that reports every problem with its key path.

pub mod types;

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::batch::config::BatchConfig;
use crate::exporter::debug::config::DebugExporterConfig;
use crate::exporter::otlp::config::OtlpExporterConfig;
use crate::model::Signal;
use crate::receiver::config::OtlpReceiverConfig;
use crate::telemetry::config::{AdminConfig, ServiceConfig};

pub use types::{ByteSize, HumanDuration};

/// The root of `config.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub service: ServiceConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub receivers: ReceiversConfig,
    #[serde(default)]
    pub processors: ProcessorsConfig,
    #[serde(default)]
    pub exporters: ExportersConfig,
    #[serde(default)]
    pub pipelines: PipelinesConfig,
}

/// `[receivers]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiversConfig {
    #[serde(default)]
    pub otlp: OtlpReceiverConfig,
}

/// `[processors]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorsConfig {
    #[serde(default)]
    pub batch: BatchConfig,
}

/// `[exporters]`: keyed by kind, then by a name of your choosing
/// (`[exporters.otlp.jaeger]` is referred to as `"otlp/jaeger"`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportersConfig {
    #[serde(default)]
    pub otlp: BTreeMap<String, OtlpExporterConfig>,
    #[serde(default)]
    pub debug: BTreeMap<String, DebugExporterConfig>,
}

/// `[pipelines]`: which exporters each signal goes to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelinesConfig {
    pub traces: Option<PipelineConfig>,
    pub metrics: Option<PipelineConfig>,
    pub logs: Option<PipelineConfig>,
}

impl PipelinesConfig {
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
    /// Exporter ids, `"<kind>/<name>"` (e.g. `["otlp/jaeger", "debug/console"]`).
    pub exporters: Vec<String>,
}
