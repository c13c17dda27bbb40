//! `sending_queue` and `retry_on_failure`: the tables every exporter carries.

use serde::Deserialize;

use crate::config::types::HumanDuration;

/// `[exporters.<kind>.<name>.sending_queue]` (Collector names).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendingQueueConfig {
    /// Workers sending in parallel from the queue. Integer, greater than 0. Default `4`.
    pub num_consumers: usize,
    /// Items (spans, data points, log records) the queue holds, batching and
    /// in-flight requests included; beyond it new data is refused. Integer, greater than 0.
    /// Default `200000`.
    pub queue_size: u64,
}

impl Default for SendingQueueConfig {
    fn default() -> Self {
        SendingQueueConfig {
            num_consumers: 4,
            queue_size: 200_000,
        }
    }
}

/// `[exporters.<kind>.<name>.retry_on_failure]` (Collector names and defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retry retryable failures at all. Default `true`.
    pub enabled: bool,
    /// Wait before the first retry. Duration, greater than 0. Default `"5s"`.
    pub initial_interval: HumanDuration,
    /// Jitter: each wait is drawn from `interval * (1 ± randomization_factor)`.
    /// At least 0 and less than 1. Default `0.5`.
    pub randomization_factor: f64,
    /// Growth of the wait after each retry. At least 1. Default `1.5`.
    pub multiplier: f64,
    /// Cap on one wait. Duration, at least `initial_interval`. Default `"30s"`.
    pub max_interval: HumanDuration,
    /// Give up (and drop, counted) after this long since the first attempt.
    /// Duration, at least `initial_interval`. Default `"300s"`.
    pub max_elapsed_time: HumanDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: HumanDuration::from_secs(5),
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: HumanDuration::from_secs(30),
            max_elapsed_time: HumanDuration::from_secs(300),
        }
    }
}
