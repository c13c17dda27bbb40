//! The disk queue: one exporter's batches in a segmented log on disk, kept
//! across restarts and crashes.
//!
//! ```text
//! fan-out ─► writer task ─(group commit: write each record, one fdatasync)─► log ─► pop ─► senders
//!               └─ answers each batch's client only once its record is durable       └─ ack ─► cursor
//! ```
//!
//! The writer takes whatever batches are waiting (up to [`MAX_GROUP`]),
//! appends one record each and commits them with one `fdatasync`
//! (`durability = "fsync"`), then tells each batch's [`DurableReply`]. Its
//! items leave the exporter's memory budget then: on disk they are bounded
//! by `max_bytes` (and the global `[storage] max_bytes`). Readers get only
//! committed records, merged into batches of up to `send_batch_max_size`
//! items of one context. A delivered (or given up) batch is acknowledged;
//! the cursor (lowest unacknowledged sequence) is made durable, then
//! segments wholly below it are deleted. At shutdown what is not delivered
//! stays on disk and is sent after the next start.

pub mod fs;
mod log;
pub mod record;

#[cfg(test)]
mod memfs;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use metrics::{counter, gauge};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use self::fs::{Fs, FsFile, StdFs};
pub use self::log::{Log, LogError, LogSettings, ReadBatch, Recovery};

use super::{Delivery, Queue, QueueError, QueuedBatch};
use crate::budget::{ItemBudget, Reservation};
use crate::model::Signal;
use crate::settings::delivery::{DiskQueueConfig, Durability, OnFull};
use crate::telemetry::metrics::{
    reason, EXPORTER_ITEMS_DROPPED, QUEUE_DISK_BYTES, QUEUE_DISK_CORRUPT_RECORDS,
    QUEUE_DISK_ITEMS_DROPPED, QUEUE_DISK_PENDING_RECORDS, QUEUE_DISK_SYNC_FAILURES,
};
use crate::telemetry::ReadinessCheck;

/// Batches written with one commit at most.
pub const MAX_GROUP: usize = 256;
/// How long an unhealthy storage waits between probes.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// Acknowledgements gathered before the cursor is written.
const PERSIST_COALESCE: Duration = Duration::from_millis(5);

struct Shared {
    id: String,
    signal: Signal,
    log: Log,
    max_items: u64,
    /// New records committed, or the writer stopped.
    committed: Notify,
    writer_done: AtomicBool,
    abort: CancellationToken,
    persist: Arc<Notify>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last acknowledgements are written before the process goes.
        if let Err(error) = self.log.persist() {
            tracing::error!(queue = %self.id, %error, "Cannot write the disk queue cursor at shutdown; delivered records will be sent again.");
        }
        self.persist.notify_one();
    }
}

/// One exporter's disk queue; clones share it.
#[derive(Clone)]
pub struct DiskQueue {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DiskQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskQueue")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

/// How the writer treats a full queue and when records are durable.
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    pub durability: Durability,
    pub sync_interval: Duration,
    pub on_full: OnFull,
}

impl From<&DiskQueueConfig> for WriterSettings {
    fn from(config: &DiskQueueConfig) -> Self {
        WriterSettings {
            durability: config.durability,
            sync_interval: config.sync_interval.get(),
            on_full: config.on_full,
        }
    }
}

impl DiskQueue {
    /// Opens the queue of exporter `id` in `dir`, recovering what a previous
    /// run left. `budget` holds its segments' bytes (a share of the global
    /// budget); `max_items` caps one delivery; `abort` stops readers at the
    /// drain deadline (what is left stays on disk).
    ///
    /// # Errors
    /// [`LogError`] when the directory or a segment cannot be made.
    pub fn open(
        fs: Arc<dyn Fs>,
        dir: &Path,
        settings: LogSettings,
        budget: ItemBudget,
        (id, signal): (&str, Signal),
        max_items: u64,
        abort: CancellationToken,
    ) -> Result<(DiskQueue, Recovery), LogError> {
        let (log, recovery) = Log::open(fs, dir, settings, budget)?;
        if recovery.torn_bytes > 0 || recovery.corrupt_records > 0 || recovery.cursor_lost {
            tracing::warn!(
                queue = id,
                ?recovery,
                "Disk queue recovered from an unclean stop."
            );
        } else if recovery.pending_records > 0 {
            tracing::info!(
                queue = id,
                records = recovery.pending_records,
                "Disk queue has records from before; delivering them."
            );
        }
        let queue = DiskQueue {
            shared: Arc::new(Shared {
                id: id.to_owned(),
                signal,
                log,
                max_items: max_items.max(1),
                committed: Notify::new(),
                writer_done: AtomicBool::new(false),
                abort,
                persist: Arc::new(Notify::new()),
            }),
        };
        queue.update_gauges();
        Ok((queue, recovery))
    }

    fn update_gauges(&self) {
        let s = &self.shared;
        let labels = [
            ("exporter", s.id.clone()),
            ("signal", s.signal.as_str().to_owned()),
        ];
        gauge!(QUEUE_DISK_BYTES, &labels).set(s.log.disk_bytes() as f64);
        gauge!(QUEUE_DISK_PENDING_RECORDS, &labels).set(s.log.pending_records() as f64);
        // The log counts (a corrupt record when the reader meets it); the metrics follow.
        let counters = &s.log.counters;
        counter!(QUEUE_DISK_CORRUPT_RECORDS, &labels)
            .absolute(counters.corrupt_records.load(Ordering::Relaxed));
        counter!(QUEUE_DISK_SYNC_FAILURES, &labels)
            .absolute(counters.sync_failures.load(Ordering::Relaxed));
    }

    /// Starts the writer (fed by `input`, ends when it closes) and the cursor writer.
    pub fn spawn(
        &self,
        input: mpsc::Receiver<QueuedBatch>,
        settings: WriterSettings,
        writers: &mut JoinSet<()>,
        others: &mut JoinSet<()>,
    ) {
        writers.spawn(write_loop(self.clone(), input, settings));
        others.spawn(persist_loop(
            Arc::downgrade(&self.shared),
            self.shared.persist.clone(),
        ));
    }

    /// What `/ready` asks this queue.
    pub fn readiness(&self) -> Arc<dyn ReadinessCheck> {
        Arc::new(Health {
            id: self.shared.id.clone(),
            shared: Arc::downgrade(&self.shared),
        })
    }

    /// Reads the next delivery off the blocking pool.
    async fn read(&self) -> Option<Delivery> {
        let shared = self.shared.clone();
        let read = tokio::task::spawn_blocking(move || shared.log.read(shared.max_items)).await;
        match read {
            Ok(Ok(Some(batch))) => Some(self.delivery(batch)),
            Ok(Ok(None)) => None,
            Ok(Err(error)) => {
                tracing::error!(queue = %self.shared.id, %error, "Disk queue read failed.");
                None
            }
            Err(_) => None,
        }
    }

    fn delivery(&self, read: ReadBatch) -> Delivery {
        let items = read.batch.items();
        let item = QueuedBatch {
            batch: read.batch,
            context: read.context,
            reservation: Reservation::detached(items),
            durable: None,
        };
        let shared = Arc::downgrade(&self.shared);
        let (first, last) = (read.first_seq, read.last_seq);
        Delivery::durable(
            item,
            Box::new(move || {
                if let Some(shared) = shared.upgrade() {
                    shared.log.ack(first, last);
                    shared.persist.notify_one();
                }
            }),
        )
    }
}

impl Queue for DiskQueue {
    /// Appends one batch and commits it (tests; the pipeline feeds [`DiskQueue::spawn`]'s writer).
    async fn push(&self, item: QueuedBatch) -> Result<(), QueueError> {
        let shared = self.shared.clone();
        let result = tokio::task::spawn_blocking(move || {
            shared.log.append(&item.context, &item.batch, false)?;
            shared.log.commit(true)
        })
        .await
        .map_err(|e| QueueError::Storage(e.to_string()))?;
        self.shared.committed.notify_waiters();
        result.map_err(|e| to_queue_error(&e))
    }

    async fn pop(&self) -> Option<Delivery> {
        loop {
            if self.shared.abort.is_cancelled() {
                return None;
            }
            let committed = self.shared.committed.notified();
            tokio::pin!(committed);
            committed.as_mut().enable();
            if let Some(delivery) = self.read().await {
                return Some(delivery);
            }
            if self.shared.writer_done.load(Ordering::Acquire) {
                // Nothing was committed after the writer stopped: one more read settles it.
                return self.read().await;
            }
            tokio::select! {
                () = committed => {}
                () = self.shared.abort.cancelled() => return None,
                // A safety net against a missed wake-up.
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Nothing to do: the writer stops when its input channel closes (the
    /// fan-out dropped), and readers stop once it has and the log is read.
    fn close(&self) {}

    fn len(&self) -> usize {
        usize::try_from(self.shared.log.pending_records()).unwrap_or(usize::MAX)
    }
}

fn to_queue_error(error: &LogError) -> QueueError {
    match error {
        LogError::Full(_) => QueueError::Full,
        other => QueueError::Storage(other.to_string()),
    }
}

/// Appends one batch, making room by dropping old segments when so configured.
fn append(shared: &Shared, item: &QueuedBatch, on_full: OnFull) -> Result<(), LogError> {
    // Data nobody waits for was acknowledged upstream already: never refused for room.
    let force = item.durable.is_none();
    loop {
        match shared.log.append(&item.context, &item.batch, force) {
            Err(LogError::Full(dir)) if on_full == OnFull::DropOldest => {
                match shared.log.drop_oldest()? {
                    Some(lost) => {
                        for (tenant, items) in lost {
                            let tenant = tenant.as_deref().unwrap_or("").to_owned();
                            counter!(QUEUE_DISK_ITEMS_DROPPED, "exporter" => shared.id.clone(), "signal" => shared.signal.as_str(), "tenant" => tenant)
                                .increment(items);
                            counter!(EXPORTER_ITEMS_DROPPED, "exporter" => shared.id.clone(), "signal" => shared.signal.as_str(), "reason" => reason::DISK_FULL)
                                .increment(items);
                        }
                    }
                    None => return Err(LogError::Full(dir)),
                }
            }
            other => return other.map(|_| ()),
        }
    }
}

async fn write_loop(
    queue: DiskQueue,
    mut input: mpsc::Receiver<QueuedBatch>,
    settings: WriterSettings,
) {
    let shared = &queue.shared;
    let mut tick = tokio::time::interval(settings.sync_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let interval = settings.durability == Durability::Interval;
    let mut next_probe = tokio::time::Instant::now();
    loop {
        let first = tokio::select! {
            received = input.recv() => match received {
                Some(item) => item,
                None => break,
            },
            _ = tick.tick(), if interval => {
                let s = shared.clone();
                if let Ok(Err(error)) = tokio::task::spawn_blocking(move || s.log.sync()).await {
                    queue.update_gauges();
                    tracing::error!(queue = %shared.id, %error, "Disk queue sync failed.");
                }
                continue;
            }
        };
        let mut group = Vec::with_capacity(8);
        group.push(first);
        while group.len() < MAX_GROUP {
            match input.try_recv() {
                Ok(item) => group.push(item),
                Err(_) => break,
            }
        }
        if shared.log.is_unhealthy() && tokio::time::Instant::now() >= next_probe {
            next_probe = tokio::time::Instant::now() + PROBE_EVERY;
            let s = shared.clone();
            if let Ok(Ok(())) = tokio::task::spawn_blocking(move || s.log.probe_health()).await {
                tracing::info!(queue = %shared.id, "Disk queue storage is healthy again.");
            }
        }
        let s = shared.clone();
        let written = tokio::task::spawn_blocking(move || {
            let results: Vec<_> = group
                .iter()
                .map(|item| append(&s, item, settings.on_full))
                .collect();
            let commit = s.log.commit(settings.durability == Durability::Fsync);
            (group, results, commit)
        })
        .await;
        let Ok((group, results, commit)) = written else {
            tracing::error!(queue = %shared.id, "Disk queue writer task failed.");
            break;
        };
        for (item, result) in group.into_iter().zip(results) {
            let outcome = match (&result, &commit) {
                (Ok(()), Ok(())) => Ok(()),
                (Err(error), _) | (_, Err(error)) => Err(error),
            };
            if let Err(error) = &outcome {
                if item.durable.is_none() {
                    // Acknowledged upstream and now lost: counted.
                    counter!(EXPORTER_ITEMS_DROPPED, "exporter" => shared.id.clone(), "signal" => shared.signal.as_str(), "reason" => reason::STORAGE)
                        .increment(item.batch.items());
                    tracing::error!(queue = %shared.id, %error, "Disk queue could not write acknowledged data; dropped.");
                } else {
                    tracing::debug!(queue = %shared.id, %error, "Disk queue refused a batch.");
                }
            }
            if let Some(reply) = item.durable {
                let _ = reply.send(outcome.map_err(to_queue_error));
            }
        }
        shared.committed.notify_waiters();
        queue.update_gauges();
    }
    let s = shared.clone();
    let _ = tokio::task::spawn_blocking(move || s.log.commit(true)).await;
    shared.writer_done.store(true, Ordering::Release);
    shared.committed.notify_waiters();
}

/// Writes the cursor after acknowledgements (coalesced) and deletes delivered segments.
async fn persist_loop(shared: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        tokio::time::sleep(PERSIST_COALESCE).await;
        let Some(strong) = shared.upgrade() else {
            return;
        };
        if !strong.log.cursor_dirty() {
            continue;
        }
        let queue = DiskQueue { shared: strong };
        let s = queue.shared.clone();
        match tokio::task::spawn_blocking(move || s.log.persist()).await {
            Ok(Err(error)) => {
                tracing::error!(queue = %queue.shared.id, %error, "Cannot write the disk queue cursor.");
            }
            Ok(Ok(())) => queue.update_gauges(),
            Err(_) => {}
        }
    }
}

#[derive(Debug)]
struct Health {
    id: String,
    shared: Weak<Shared>,
}

impl ReadinessCheck for Health {
    fn not_ready(&self) -> Option<String> {
        let shared = self.shared.upgrade()?;
        shared.log.is_unhealthy().then(|| {
            format!(
                "disk queue of {} unhealthy (write or sync failures)",
                self.id
            )
        })
    }
}
