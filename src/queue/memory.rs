//! In-memory queue: a bounded MPMC channel of batches.
//!
//! The bound that matters is the exporter's [`ItemBudget`](super::ItemBudget),
//! reserved before a batch enters the batcher; the channel's own message
//! bound only has to be at least the number of batches that budget allows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Mutex};

use super::{Delivery, Queue, QueueError, QueuedBatch};

/// A bounded in-memory [`Queue`]. Lost on restart.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    tx: Arc<std::sync::Mutex<Option<mpsc::Sender<QueuedBatch>>>>,
    rx: Arc<Mutex<mpsc::Receiver<QueuedBatch>>>,
    len: Arc<AtomicUsize>,
}

impl MemoryQueue {
    /// A queue holding at most `max_batches` batches.
    pub fn new(max_batches: usize) -> Self {
        let (tx, rx) = mpsc::channel(max_batches.max(1));
        MemoryQueue {
            tx: Arc::new(std::sync::Mutex::new(Some(tx))),
            rx: Arc::new(Mutex::new(rx)),
            len: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn sender(&self) -> Option<mpsc::Sender<QueuedBatch>> {
        self.tx.lock().map(|tx| tx.clone()).unwrap_or(None)
    }
}

impl Queue for MemoryQueue {
    async fn push(&self, item: QueuedBatch) -> Result<(), QueueError> {
        let tx = self.sender().ok_or(QueueError::Closed)?;
        self.len.fetch_add(1, Ordering::AcqRel);
        tx.send(item).await.map_err(|_| {
            self.len.fetch_sub(1, Ordering::AcqRel);
            QueueError::Closed
        })
    }

    async fn pop(&self) -> Option<Delivery> {
        let item = self.rx.lock().await.recv().await?;
        self.len.fetch_sub(1, Ordering::AcqRel);
        Some(Delivery::in_memory(item))
    }

    fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Batch, Signal};

    fn item(n: u64) -> QueuedBatch {
        QueuedBatch::detached(Batch::from_validated(Signal::Logs, bytes::Bytes::new(), n))
    }

    #[tokio::test]
    async fn fifo_then_none_after_close() {
        let q = MemoryQueue::new(4);
        q.push(item(1)).await.unwrap();
        q.push(item(2)).await.unwrap();
        assert_eq!(q.len(), 2);
        q.close();
        assert!(q.push(item(3)).await.is_err());
        assert_eq!(q.pop().await.unwrap().batch().items(), 1);
        assert_eq!(q.pop().await.unwrap().batch().items(), 2);
        assert!(q.pop().await.is_none());
    }
}
