//! An exporter branch: what stands behind an exporter's fan-out [`Target`].
//!
//! ```text
//! unordered (default):  Target ─► Batcher ─► MemoryQueue ─► num_consumers senders
//! partitioned:          Target ─► router ─┬► Batcher ─► MemoryQueue ─► 1 sender   (partition 0)
//!                                         └► …                                     (num_consumers partitions)
//! on disk:              Target ─► DiskQueue writer ─► log ─► num_consumers senders (1 when partitioned)
//! ```
//!
//! With a disk queue the target is durable: a client's batch is answered
//! once it is on disk, and the log (read in order, merged into batches of up
//! to `send_batch_max_size` items) stands in for the batcher. An exporter
//! that needs ordered partitions gets one sender, which keeps the log's order.
//!
//! An exporter that needs items of one key in order (remote-write: samples
//! of one series) returns a [`Partitioner`]; the router splits each batch by
//! key and each partition has exactly one sender, so neither parallel
//! workers nor retries reorder a key's items.
//!
//! # Shutdown
//! When the fan-out is dropped the router (if any) ends, the batchers flush
//! and close their queues, and the senders drain them.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::batch::{BatchConfig, Batcher};
use crate::budget::ItemBudget;
use crate::exporter::{DynExporter, Partitioner};
use crate::model::{Envelope, Signal};
use crate::queue::breaker::CircuitBreaker;
use crate::queue::disk::WriterSettings;
use crate::queue::retry::RetryPolicy;
use crate::queue::sender::Sender;
use crate::queue::{DiskQueue, MemoryQueue, QueuedBatch};
use crate::settings::delivery::SendingQueueConfig;

use super::fanout::{Target, TargetKind};

/// Batches waiting for one exporter's batcher (or router).
const BATCHER_CHANNEL: usize = 1024;

/// The settings of one exporter branch.
#[derive(Debug, Clone)]
pub struct BranchSettings<'a> {
    /// Exporter id, `kind/name`.
    pub id: &'a str,
    pub signal: Signal,
    pub batch: &'a BatchConfig,
    pub queue: &'a SendingQueueConfig,
    pub retry: RetryPolicy,
    /// The exporter's disk queue, opened, when `sending_queue.storage = "disk"`.
    pub disk: Option<DiskQueue>,
    /// The exporter's circuit breaker (shared by all its workers), if it has one.
    pub breaker: Option<Arc<CircuitBreaker>>,
}

/// The tasks of running branches: batchers (and routers), and senders,
/// joined in that order at shutdown.
#[derive(Debug, Default)]
pub struct BranchTasks {
    pub batchers: JoinSet<()>,
    pub senders: JoinSet<()>,
}

/// Starts the branch of `exporter` and returns its target, with a budget of
/// `queue.queue_size` items.
pub fn spawn_branch(
    settings: &BranchSettings<'_>,
    exporter: Arc<dyn DynExporter>,
    abort: &CancellationToken,
    tasks: &mut BranchTasks,
) -> Target {
    let budget = ItemBudget::new(settings.queue.queue_size);
    let sender = Sender::new(
        settings.id,
        settings.signal,
        exporter.clone(),
        settings.retry.clone(),
    )
    .with_breaker(settings.breaker.clone());
    if let Some(disk) = &settings.disk {
        let (target, rx) = Target::new(settings.id, TargetKind::Exporter, budget, BATCHER_CHANNEL);
        disk.spawn(
            rx,
            WriterSettings::from(&settings.queue.disk),
            &mut tasks.batchers,
            &mut tasks.senders,
        );
        let consumers = match exporter.partitioner() {
            Some(_) => 1,
            None => settings.queue.num_consumers,
        };
        sender.spawn(disk.clone(), consumers, abort.clone(), &mut tasks.senders);
        return target.durable();
    }
    match exporter.partitioner() {
        None => {
            let (target, rx) =
                Target::new(settings.id, TargetKind::Exporter, budget, BATCHER_CHANNEL);
            let queue = chain(settings, rx, tasks);
            sender.spawn(
                queue,
                settings.queue.num_consumers,
                abort.clone(),
                &mut tasks.senders,
            );
            target
        }
        Some(partitioner) => {
            let partitions = settings.queue.num_consumers.max(1);
            let mut inputs = Vec::with_capacity(partitions);
            for _ in 0..partitions {
                let (tx, rx) = mpsc::channel(BATCHER_CHANNEL);
                let queue = chain(settings, rx, tasks);
                sender.spawn(queue, 1, abort.clone(), &mut tasks.senders);
                inputs.push(tx);
            }
            let (target, rx) =
                Target::new(settings.id, TargetKind::Exporter, budget, BATCHER_CHANNEL);
            tasks.batchers.spawn(route(rx, partitioner, inputs));
            target
        }
    }
}

/// One batcher into one queue; returns the queue for its senders.
fn chain(
    settings: &BranchSettings<'_>,
    input: mpsc::Receiver<QueuedBatch>,
    tasks: &mut BranchTasks,
) -> MemoryQueue {
    // Every queued batch holds at least one item, so the budget bounds the queue.
    let queue = MemoryQueue::new(
        usize::try_from(settings.queue.queue_size)
            .unwrap_or(usize::MAX)
            .min(1 << 20),
    );
    tasks.batchers.spawn(
        Batcher::new(settings.batch, settings.id, settings.signal).run(input, queue.clone()),
    );
    queue
}

/// Splits every input by the partitioner and hands each part, in order, to its partition.
async fn route(
    mut input: mpsc::Receiver<QueuedBatch>,
    partitioner: Arc<dyn Partitioner>,
    partitions: Vec<mpsc::Sender<QueuedBatch>>,
) {
    while let Some(QueuedBatch {
        batch,
        context,
        mut reservation,
        ..
    }) = input.recv().await
    {
        let parts = partitioner.split(Envelope::with_context(context, batch), partitions.len());
        for (index, part) in parts {
            let Some(partition) = partitions.get(index % partitions.len()) else {
                continue;
            };
            // Each part takes its items of the input's reservation along.
            let items = part.items();
            let part = QueuedBatch::new(part, reservation.split(items));
            // Waits while the partition's batcher is behind; its items are in the budget already.
            if partition.send(part).await.is_err() {
                tracing::error!("Partition closed before its router; batch lost.");
            }
        }
    }
}
