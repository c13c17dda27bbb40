//! `[exporters.debug.<name>]`: log what passes through.

use serde::Deserialize;

use crate::queue::config::SendingQueueConfig;

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
}

fn default_verbosity() -> Verbosity {
    Verbosity::Basic
}

impl Default for DebugExporterConfig {
    fn default() -> Self {
        DebugExporterConfig {
            verbosity: default_verbosity(),
            sending_queue: SendingQueueConfig::default(),
        }
    }
}
