//! `sending_queue` and `retry_on_failure`: the tables every exporter carries.

use serde::Deserialize;

use crate::settings::units::{ByteSize, HumanDuration};
use crate::settings::validate::{join, push, Validate, GREATER_THAN_ZERO};
use crate::settings::ConfigError;

/// `[exporters.<kind>.<name>.sending_queue]` (Collector names).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendingQueueConfig {
    /// Workers sending in parallel from the queue. Integer, greater than 0. Default `4`.
    pub num_consumers: usize,
    /// Items (spans, data points, log records) the queue holds, batching and
    /// in-flight requests included; beyond it new data is refused. Integer, greater than 0.
    /// Default `200000`. With `storage = "disk"`: the items waiting in memory to be written.
    pub queue_size: u64,
    /// Where queued batches wait: `"memory"` (lost on restart) or `"disk"` (a
    /// segmented log in `[storage] directory`, kept across restarts and
    /// crashes; the client is answered only once its data is on disk).
    /// Default `"memory"`.
    pub storage: QueueStorage,
    /// `[…sending_queue.disk]`: the disk queue, with `storage = "disk"`. Default: all defaults.
    pub disk: DiskQueueConfig,
}

impl Default for SendingQueueConfig {
    fn default() -> Self {
        SendingQueueConfig {
            num_consumers: 4,
            queue_size: 200_000,
            storage: QueueStorage::Memory,
            disk: DiskQueueConfig::default(),
        }
    }
}

/// `sending_queue.storage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueStorage {
    Memory,
    Disk,
}

/// When a disk queue's record counts as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// After `fdatasync`, one per group of concurrent requests (group commit).
    Fsync,
    /// After the write; `fdatasync` every `sync_interval` (a crash may lose that much).
    Interval,
    /// After the write; the operating system syncs when it likes.
    None,
}

/// What a full disk queue does with new data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Refuse it retryably (gRPC `UNAVAILABLE` / HTTP 503 with a retry delay).
    Backpressure,
    /// Delete the oldest segment not being written (its items counted as dropped).
    DropOldest,
}

/// `[exporters.<kind>.<name>.sending_queue.disk]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskQueueConfig {
    /// Bytes of segments on disk this queue may hold. Size, at least `segment_bytes`.
    /// Default `"1GiB"`.
    pub max_bytes: ByteSize,
    /// Bytes of one pre-allocated segment file. Size, at least 64 KiB. Default `"16MiB"`.
    pub segment_bytes: ByteSize,
    /// `"fsync"` (default), `"interval"` or `"none"`.
    pub durability: Durability,
    /// With `durability = "interval"`: how often. Duration, greater than 0. Default `"1s"`.
    pub sync_interval: HumanDuration,
    /// `"backpressure"` (default) or `"drop_oldest"`.
    pub on_full: OnFull,
}

impl Default for DiskQueueConfig {
    fn default() -> Self {
        DiskQueueConfig {
            max_bytes: ByteSize(1 << 30),
            segment_bytes: ByteSize::mib(16),
            durability: Durability::Fsync,
            sync_interval: HumanDuration::from_secs(1),
            on_full: OnFull::Backpressure,
        }
    }
}

/// Smallest segment accepted.
pub const MIN_SEGMENT_BYTES: u64 = 64 * 1024;

impl Validate for DiskQueueConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.segment_bytes.get() < MIN_SEGMENT_BYTES {
            push(
                errors,
                path,
                "segment_bytes",
                format!("must be at least 64KiB, got {}", self.segment_bytes.get()),
            );
        }
        if self.max_bytes.get() < self.segment_bytes.get() {
            push(
                errors,
                path,
                "max_bytes",
                format!(
                    "must be at least segment_bytes ({} bytes), got {}",
                    self.segment_bytes.get(),
                    self.max_bytes.get()
                ),
            );
        }
        if self.sync_interval.get().is_zero() {
            push(errors, path, "sync_interval", GREATER_THAN_ZERO);
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
        let mut text = format!(
            "queue {} items, {} consumers",
            self.queue_size, self.num_consumers
        );
        if self.storage == QueueStorage::Disk {
            let d = &self.disk;
            text.push_str(&format!(
                ", on disk up to {} bytes in {}-byte segments, {:?}, {:?} when full",
                d.max_bytes.get(),
                d.segment_bytes.get(),
                d.durability,
                d.on_full
            ));
        }
        text
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
        self.disk.validate(&join(path, "disk"), errors);
    }
}

/// `[storage]`: where disk queues live (as the Collector's `file_storage` extension).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory of the disk queues, one subdirectory per exporter and signal.
    /// Default `"/var/lib/otlp-gateway/queue"`.
    pub directory: std::path::PathBuf,
    /// Bytes all disk queues together may hold. Size. Default `"8GiB"`. At start the
    /// filesystem must have this much free (counting what the queues hold already).
    pub max_bytes: ByteSize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            directory: std::path::PathBuf::from("/var/lib/otlp-gateway/queue"),
            max_bytes: ByteSize(8 << 30),
        }
    }
}

impl Validate for StorageConfig {
    fn validate(&self, path: &str, errors: &mut Vec<ConfigError>) {
        if self.directory.as_os_str().is_empty() {
            push(errors, path, "directory", "must not be empty");
        }
        if self.max_bytes.get() < MIN_SEGMENT_BYTES {
            push(errors, path, "max_bytes", "must be at least 64KiB");
        }
    }
}
