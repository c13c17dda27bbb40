//! `[processors.batch]`: how each exporter's batcher groups items.

use serde::Deserialize;

use crate::settings::units::HumanDuration;

/// `[processors.batch]`, applied to every exporter's batcher (Collector names).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Items (spans, data points, log records) that trigger a flush. Greater than 0. Default `8192`.
    pub send_batch_size: u64,
    /// Upper bound on items in one export request; larger batches are split.
    /// `0` means no bound. Default `0`. Must be `0` or `>= send_batch_size`.
    pub send_batch_max_size: u64,
    /// Time after the first item of a batch when it is flushed however small.
    /// Duration, greater than 0. Default `"200ms"`.
    pub timeout: HumanDuration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: HumanDuration::from_millis(200),
        }
    }
}
