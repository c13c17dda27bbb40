//! `sending_queue` and `retry_on_failure`: the tables every exporter carries.

use serde::Deserialize;

use crate::settings::units::HumanDuration;
use crate::settings::validate::{push, Validate, GREATER_THAN_ZERO};
use crate::settings::ConfigError;

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

impl SendingQueueConfig {
    /// The settings in words, for `check-config`.
    pub fn describe(&self) -> String {
        format!(
            "queue {} items, {} consumers",
            self.queue_size, self.num_consumers
        )
    }
}

impl RetryConfig {
    /// The settings in words, for `check-config`.
    pub fn describe(&self) -> String {
        if !self.enabled {
            return "no retry".to_owned();
        }
        format!(
            "retry {}..{} x{} ±{}, give up after {}",
            self.initial_interval,
            self.max_interval,
            self.multiplier,
            self.randomization_factor,
            self.max_elapsed_time
        )
    }
}

impl Validate for RetryConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        let initial = self.initial_interval.get();
        if initial.is_zero() {
            push(errors, path, "initial_interval", GREATER_THAN_ZERO);
        }
        // Written so that NaN fails too.
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            push(
                errors,
                path,
                "multiplier",
                format!("must be at least 1, got {}", self.multiplier),
            );
        }
        let factor = self.randomization_factor;
        if !(0.0..1.0).contains(&factor) {
            push(
                errors,
                path,
                "randomization_factor",
                format!("must be at least 0 and less than 1, got {factor}"),
            );
        }
        if self.max_interval.get() < initial {
            push(
                errors,
                path,
                "max_interval",
                format!(
                    "must be at least initial_interval ({})",
                    self.initial_interval
                ),
            );
        }
        if self.max_elapsed_time.get() < initial {
            push(
                errors,
                path,
                "max_elapsed_time",
                format!(
                    "must be at least initial_interval ({})",
                    self.initial_interval
                ),
            );
        }
    }
}

impl Validate for SendingQueueConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.num_consumers == 0 {
            push(errors, path, "num_consumers", GREATER_THAN_ZERO);
        }
        if self.queue_size == 0 {
            push(errors, path, "queue_size", GREATER_THAN_ZERO);
        }
    }
}
