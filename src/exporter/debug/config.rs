//! `[exporters.debug.<name>]`: log what passes through.

use std::sync::Arc;

use serde::Deserialize;

use crate::exporter::{BuildError, DynExporter, ExporterConfig};
use crate::model::Signal;
use crate::settings::breaker::CircuitBreakerConfig;
use crate::settings::delivery::{RetryConfig, SendingQueueConfig};
use crate::settings::validate::{join, Validate};
use crate::settings::ConfigError;

use super::DebugExporter;

/// How much the debug exporter logs per batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verbosity {
    /// One line: signal and item count.
    Basic,
    /// Adds resource count, services and one sample item.
    Normal,
    /// Adds every item, decoded (costly; for debugging only).
    Detailed,
}

/// `[exporters.debug.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugExporterConfig {
    /// `"basic"`, `"normal"` or `"detailed"`. Default `"basic"`.
    #[serde(default = "default_verbosity")]
    pub verbosity: Verbosity,
    /// `[exporters.debug.<name>.sending_queue]`: the queue in front of it. Default: all defaults.
    #[serde(default)]
    pub sending_queue: SendingQueueConfig,
    /// `[exporters.debug.<name>.circuit_breaker]`: stops sending to a backend that keeps
    /// failing and probes it with one batch at a time. Default: all defaults (on).
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
}

fn default_verbosity() -> Verbosity {
    Verbosity::Basic
}

impl Default for DebugExporterConfig {
    fn default() -> Self {
        DebugExporterConfig {
            verbosity: default_verbosity(),
            sending_queue: SendingQueueConfig::default(),
            circuit_breaker: CircuitBreakerConfig::default(),
        }
    }
}

impl Verbosity {
    pub fn as_str(self) -> &'static str {
        match self {
            Verbosity::Basic => "basic",
            Verbosity::Normal => "normal",
            Verbosity::Detailed => "detailed",
        }
    }
}

impl ExporterConfig for DebugExporterConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        self.sending_queue
            .validate(&join(path, "sending_queue"), errors);
        self.circuit_breaker
            .validate(&join(path, "circuit_breaker"), errors);
    }

    fn describe(&self) -> String {
        format!(
            "{}, {}, {}",
            self.verbosity.as_str(),
            self.sending_queue.describe(),
            self.circuit_breaker.describe()
        )
    }

    fn sending_queue(&self) -> &SendingQueueConfig {
        &self.sending_queue
    }

    fn retry_on_failure(&self) -> Option<&RetryConfig> {
        None
    }

    fn circuit_breaker(&self) -> &CircuitBreakerConfig {
        &self.circuit_breaker
    }

    fn build(&self, id: &str, _signal: Signal) -> Result<Arc<dyn DynExporter>, BuildError> {
        Ok(Arc::new(DebugExporter::new(id, self)))
    }
}
