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
//! [`Queue`] is what the batcher pushes to and the workers pop from. The
//! in-memory [`MemoryQueue`] implements it today; a disk queue (offline
//! buffering that survives restarts) implements the same trait, acking a
//! [`Delivery`] only after the export finished.

pub mod breaker;
/// The `sending_queue` and `retry_on_failure` tables (kept in [`crate::settings`], where
/// every exporter kind's config can reach them).
pub mod config {
    pub use crate::settings::delivery::{RetryConfig, SendingQueueConfig};
}
pub mod memory;
pub mod retry;
pub mod sender;

use std::future::Future;

pub use memory::MemoryQueue;

use crate::budget::Reservation;
use crate::model::{Batch, Context, Envelope};

/// A batch with its context and the items it holds against its exporter's budget.
#[derive(Debug)]
pub struct QueuedBatch {
    pub batch: Batch,
    pub context: Context,
    pub reservation: Reservation,
}

impl QueuedBatch {
    /// `envelope` holding `reservation`.
    pub fn new(envelope: Envelope, reservation: Reservation) -> Self {
        QueuedBatch {
            batch: envelope.batch,
            context: envelope.context,
            reservation,
        }
    }

    /// A batch with the empty context, for tests and unbounded paths.
    pub fn detached(batch: Batch) -> Self {
        let items = batch.items();
        QueuedBatch {
            batch,
            context: Context::default(),
            reservation: Reservation::detached(items),
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
}

/// A batch popped from a queue; finishing it (dropping or [`Delivery::ack`])
/// releases its items. A durable queue deletes it only on `ack`.
#[derive(Debug)]
pub struct Delivery {
    item: QueuedBatch,
}

impl Delivery {
    pub fn in_memory(item: QueuedBatch) -> Self {
        Delivery { item }
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
    pub fn ack(self) {}
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
