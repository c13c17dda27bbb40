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

pub mod expand;
pub mod load;
mod locate;
pub mod report;
pub mod validate;

use serde::Deserialize;

use crate::batch::config::BatchConfig;
use crate::model::Signal;
use crate::receiver::config::OtlpReceiverConfig;
use crate::telemetry::config::{AdminConfig, ServiceConfig};

pub use crate::exporter::{ExporterEntry, ExportersConfig, EXPORTER_KINDS};
pub use crate::settings::{ByteSize, HumanDuration};
pub use crate::settings::{ConfigError, ConfigErrors};
pub use load::{
    load_and_validate, load_and_validate_str, load_and_validate_str_with, load_file, load_str,
    load_str_with,
};
pub use report::describe;
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
    /// `[connectors]`: stages that turn one signal into another. Default: none.
    #[serde(default)]
    pub connectors: ConnectorsConfig,
    /// `[exporters]`: where data goes. Default none; a pipeline needs at least one.
    #[serde(default)]
    pub exporters: ExportersConfig,
    /// `[pipelines]`: which exporters each signal goes to. At least one pipeline is required.
    #[serde(default)]
    pub pipelines: PipelinesConfig,
    /// `[tenancy]`: when present, every request gets a tenant (authenticated when
    /// `[tenancy.auth]` is present), quotas apply and `[[routes]]` pick exporters per tenant.
    /// Default: absent (no tenants, no authentication).
    pub tenancy: Option<crate::tenancy::TenancyConfig>,
    /// `[tenants.<id>]`: known tenants (tier, token variable, certificate subjects, quota).
    /// Needs `[tenancy]`. Default: none.
    #[serde(default)]
    pub tenants: std::collections::BTreeMap<String, crate::tenancy::TenantConfig>,
    /// `[[routes]]`: the exporters of some tenants' data, first match wins; other tenants use
    /// the pipelines' exporters. Needs `[tenancy]`. Default: none.
    #[serde(default)]
    pub routes: Vec<crate::tenancy::RouteConfig>,
    /// `[storage]`: where exporters with `sending_queue.storage = "disk"` keep their
    /// queues. Default: all defaults.
    #[serde(default)]
    pub storage: crate::settings::delivery::StorageConfig,
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
    /// `[processors.tail_sampling]`: when present, the traces pipeline samples whole traces.
    /// Default: absent (every span goes on).
    pub tail_sampling: Option<crate::sampling::TailSamplingConfig>,
    /// `[processors.redaction]`: when present, every signal's pipeline masks
    /// card numbers and applies key rules first. Default: absent (nothing redacted).
    pub redaction: Option<crate::redaction::RedactionConfig>,
}

/// `[connectors]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorsConfig {
    /// `[connectors.spanmetrics]`: when present, every span the traces pipeline receives
    /// (after redaction, before tail sampling) is counted into `calls` and `duration`
    /// metrics that enter the metrics pipeline. Needs both pipelines. Default: absent.
    pub spanmetrics: Option<crate::spanmetrics::SpanMetricsConfig>,
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

impl Config {
    /// Every defined exporter's id (`"<kind>/<name>"`), sorted.
    pub fn exporter_ids(&self) -> Vec<String> {
        self.exporters.iter().map(|e| e.id()).collect()
    }

    /// The exporters `signal`'s data may go to: the pipeline's, then those only routes name.
    pub fn signal_exporters(&self, signal: Signal) -> Vec<String> {
        let Some(pipeline) = self.pipelines.get(signal) else {
            return Vec::new();
        };
        let mut ids = pipeline.exporters.clone();
        for route in &self.routes {
            for id in route.exporters_for(signal) {
                if !ids.contains(id) {
                    ids.push(id.clone());
                }
            }
        }
        ids
    }

    /// The exporter with id `"<kind>/<name>"`, if defined.
    pub fn exporter(&self, id: &str) -> Option<ExporterEntry<'_>> {
        self.exporters.get(id)
    }
}
