//! Between the batcher and the exporter: a bounded queue per exporter, the
//! workers that drain it, and the retry around each send.
//!
//! # Backpressure
//! Every exporter has an [`ItemBudget`](crate::budget::ItemBudget) (`sending_queue.queue_size` items).
//! The pipeline reserves a batch's items before handing it to the exporter's
//! batcher; the [`Reservation`] travels with the items through batching, the
//! queue and the export attempts, and is released only when they are
//! delivered or given up. A full budget refuses new data at once, which the
//! receiver turns into a retryable answer: memory stays bounded and nothing
//! acknowledged is dropped for lack of room.
//!
//! # Queue contract
//! [`Queue`] is what the workers pop from: the in-memory [`MemoryQueue`]
//! (behind a batcher) or the [`DiskQueue`] (a segmented log kept across
//! restarts), which deletes a record only when its [`Delivery`] is
//! acknowledged after the export finished, and answers a batch's client
//! (through [`QueuedBatch::durable`]) only once the record is on disk.

pub mod breaker;
/// The `sending_queue` and `retry_on_failure` tables (kept in [`crate::settings`], where
/// every exporter kind's config can reach them).
pub mod config {
    pub use crate::settings::delivery::{RetryConfig, SendingQueueConfig};
}
pub mod disk;
pub mod memory;
pub mod retry;
pub mod sender;

use std::future::Future;

use tokio::sync::oneshot;

pub use disk::DiskQueue;
pub use memory::MemoryQueue;

use crate::budget::Reservation;
use crate::model::{Batch, Context, Envelope};

/// A batch with its context and the items it holds against its exporter's budget.
#[derive(Debug)]
pub struct QueuedBatch {
    pub batch: Batch,
    pub context: Context,
    pub reservation: Reservation,
    /// Told when the batch is durable, for a queue that writes it to disk:
    /// its client is answered only then. `None`: nobody waits (memory
    /// queues, data acknowledged upstream already).
    pub durable: Option<DurableReply>,
}

/// Where a disk queue says whether a batch reached the disk.
pub type DurableReply = oneshot::Sender<Result<(), QueueError>>;

impl QueuedBatch {
    /// `envelope` holding `reservation`.
    pub fn new(envelope: Envelope, reservation: Reservation) -> Self {
        QueuedBatch {
            batch: envelope.batch,
            context: envelope.context,
            reservation,
            durable: None,
        }
    }

    /// A batch with the empty context, for tests and unbounded paths.
    pub fn detached(batch: Batch) -> Self {
        let items = batch.items();
        QueuedBatch {
            batch,
            context: Context::default(),
            reservation: Reservation::detached(items),
            durable: None,
        }
    }

    /// The batch and its context, without the reservation (which is released).
    pub fn into_envelope(self) -> Envelope {
        Envelope {
            context: self.context,
            batch: self.batch,
        }
    }
}

/// Why a queue refused an item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("queue is closed")]
    Closed,
    #[error("disk queue is full")]
    Full,
    #[error("disk queue storage failed: {0}")]
    Storage(String),
}

/// Settles a durable delivery: its records are deleted from disk.
pub type DurableAck = Box<dyn FnOnce() + Send + Sync>;

/// A batch popped from a queue; finishing it (dropping or [`Delivery::ack`])
/// releases its items. A durable queue deletes it only on `ack`: a durable
/// delivery dropped without one (shutdown) stays on disk for the next start.
pub struct Delivery {
    item: QueuedBatch,
    durable: Option<DurableAck>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("item", &self.item)
            .field("durable", &self.durable.is_some())
            .finish()
    }
}

impl Delivery {
    pub fn in_memory(item: QueuedBatch) -> Self {
        Delivery {
            item,
            durable: None,
        }
    }

    /// A batch read from disk; `ack` settles it there.
    pub fn durable(item: QueuedBatch, ack: DurableAck) -> Self {
        Delivery {
            item,
            durable: Some(ack),
        }
    }

    /// Whether the batch stays queued (on disk) unless acknowledged.
    pub fn is_durable(&self) -> bool {
        self.durable.is_some()
    }

    pub fn batch(&self) -> &Batch {
        &self.item.batch
    }

    pub fn context(&self) -> &Context {
        &self.item.context
    }

    /// Releases `items` of the reservation at once: items a partial success
    /// delivered (or the backend refused for good) while the rest is retried.
    pub fn release(&mut self, items: u64) {
        drop(self.item.reservation.split(items));
    }

    /// Items this delivery holds against its exporter's budget.
    pub fn item_reservation_items(&self) -> u64 {
        self.item.reservation.items()
    }

    /// The batch is done with: delivered or given up, either way counted.
    pub fn ack(self) {
        if let Some(ack) = self.durable {
            ack();
        }
    }
}

/// A bounded FIFO of batches for one exporter, shared by its workers.
pub trait Queue: Send + Sync + 'static {
    /// Appends `item`, waiting while the queue is at its message bound.
    fn push(&self, item: QueuedBatch) -> impl Future<Output = Result<(), QueueError>> + Send;
    /// The oldest batch; `None` once the queue is closed and empty.
    fn pop(&self) -> impl Future<Output = Option<Delivery>> + Send;
    /// Refuses further pushes; pops drain what is left.
    fn close(&self);
    /// Batches waiting.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
