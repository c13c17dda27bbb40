//! Batcher: groups one exporter's input into export-sized batches.
//!
//! The first user of the stage contract ([`Transform`]): it holds items and
//! says when they are due. It emits when the pending batch reaches
//! `send_batch_size` items, cuts batches larger than `send_batch_max_size`,
//! and emits whatever is pending `timeout` after its first item arrived.
//! [`Batcher::run`] drives it with [`run_timed`] into the exporter's queue.
//!
//! # Backpressure
//! Its input is bounded; its output is the exporter's [`Queue`], whose push
//! waits while the queue is at its bound.
//!
//! # Shutdown
//! When the input closes it flushes what is pending, closes the queue and returns.

pub mod config;

use std::time::Duration;

use metrics::{counter, histogram};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::model::Signal;
use crate::pipeline::{run_timed, StageError, Transform};
use crate::queue::{Queue, QueuedBatch};
use crate::telemetry::metrics::{BATCH_FLUSHES, BATCH_ITEMS};

pub use config::BatchConfig;

/// The batcher of one exporter: a [`Transform`] from admitted batches to
/// export-sized batches.
#[derive(Debug)]
pub struct Batcher {
    exporter: String,
    signal: Signal,
    send_batch_size: u64,
    send_batch_max_size: Option<u64>,
    timeout: Duration,
    /// The batch being filled, and when its first items arrived.
    pending: Option<(QueuedBatch, Instant)>,
}

/// What made a batch leave the batcher (the `trigger` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Size,
    Timeout,
    Shutdown,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Size => "size",
            Trigger::Timeout => "timeout",
            Trigger::Shutdown => "shutdown",
        }
    }
}

impl Batcher {
    /// A batcher for `exporter`'s `signal` data, from validated config.
    pub fn new(config: &BatchConfig, exporter: &str, signal: Signal) -> Self {
        Batcher {
            exporter: exporter.to_string(),
            signal,
            send_batch_size: config.send_batch_size.max(1),
            send_batch_max_size: (config.send_batch_max_size > 0)
                .then_some(config.send_batch_max_size),
            timeout: config.timeout.get(),
            pending: None,
        }
    }

    /// Runs until `input` closes, then flushes, closes `queue` and returns.
    pub async fn run<Q: Queue>(self, input: mpsc::Receiver<QueuedBatch>, queue: Q) {
        run_timed(self, input, |item| async {
            if queue.push(item).await.is_err() {
                // Only after close, which only this task does after its last push.
                tracing::error!("Queue closed before the batcher; batch lost.");
            }
        })
        .await;
        queue.close();
    }

    /// Emits the pending batch, cut into pieces of at most `send_batch_max_size`.
    fn emit(&mut self, trigger: Trigger, out: &mut Vec<QueuedBatch>) {
        let Some((mut held, _)) = self.pending.take() else {
            return;
        };
        if let Some(max) = self.send_batch_max_size {
            while held.batch.items() > max {
                let batch = held.batch.split_to(max);
                let reservation = held.reservation.split(batch.items());
                self.record(batch.items(), trigger);
                out.push(QueuedBatch { batch, reservation });
            }
        }
        self.record(held.batch.items(), trigger);
        out.push(held);
    }

    fn record(&self, items: u64, trigger: Trigger) {
        let labels = [
            ("exporter", self.exporter.clone()),
            ("signal", self.signal.as_str().to_string()),
        ];
        histogram!(BATCH_ITEMS, &labels).record(items as f64);
        counter!(BATCH_FLUSHES, "exporter" => self.exporter.clone(), "signal" => self.signal.as_str(), "trigger" => trigger.as_str()).increment(1);
    }
}

impl Transform for Batcher {
    type In = QueuedBatch;
    type Out = QueuedBatch;

    fn name(&self) -> &'static str {
        "batch"
    }

    fn process(&mut self, item: QueuedBatch, out: &mut Vec<QueuedBatch>) -> Result<(), StageError> {
        let full = match self.pending.as_mut() {
            Some((held, _)) => {
                held.batch.append(item.batch);
                held.reservation.merge(item.reservation);
                held.batch.items() >= self.send_batch_size
            }
            None => {
                let full = item.batch.items() >= self.send_batch_size;
                self.pending = Some((item, Instant::now()));
                full
            }
        };
        if full {
            self.emit(Trigger::Size, out);
        }
        Ok(())
    }

    fn deadline(&self) -> Option<Instant> {
        self.pending
            .as_ref()
            .map(|(_, first)| *first + self.timeout)
    }

    fn on_deadline(&mut self, _now: Instant, out: &mut Vec<QueuedBatch>) {
        self.emit(Trigger::Timeout, out);
    }

    fn flush(&mut self, out: &mut Vec<QueuedBatch>) {
        self.emit(Trigger::Shutdown, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::HumanDuration;
    use crate::queue::{MemoryQueue, Reservation};

    fn config(size: u64, max: u64, timeout_ms: u64) -> BatchConfig {
        BatchConfig {
            send_batch_size: size,
            send_batch_max_size: max,
            timeout: HumanDuration::from_millis(timeout_ms),
        }
    }

    fn item(spans: usize, seed: u64) -> QueuedBatch {
        let body = crate::model::test_payload::traces(seed, spans);
        let batch = crate::model::Batch::decode(Signal::Traces, body)
            .unwrap()
            .batch;
        let n = batch.items();
        QueuedBatch {
            batch,
            reservation: Reservation::detached(n),
        }
    }

    #[test]
    fn as_a_transform_it_holds_until_size_and_says_when_it_is_due() {
        let mut batcher = Batcher::new(&config(16, 0, 200), "t", Signal::Traces);
        let mut out = Vec::new();
        assert_eq!(batcher.deadline(), None, "nothing held, nothing due");
        batcher.process(item(8, 1), &mut out).unwrap();
        assert!(out.is_empty());
        let due = batcher.deadline().expect("due once it holds items");
        batcher.process(item(4, 2), &mut out).unwrap();
        assert_eq!(
            batcher.deadline(),
            Some(due),
            "due counts from the first item"
        );
        batcher.on_deadline(due, &mut out);
        assert_eq!(
            out.iter().map(|q| q.batch.items()).collect::<Vec<_>>(),
            vec![12]
        );
        batcher.process(item(16, 3), &mut out).unwrap();
        assert_eq!(out.len(), 2, "a full batch leaves at once");
        batcher.flush(&mut out);
        assert_eq!(out.len(), 2, "nothing left to flush");
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_on_size() {
        let (tx, rx) = mpsc::channel(8);
        let queue = MemoryQueue::new(8);
        let task = tokio::spawn(
            Batcher::new(&config(16, 0, 10_000), "t", Signal::Traces).run(rx, queue.clone()),
        );
        tx.send(item(8, 1)).await.unwrap();
        tx.send(item(8, 2)).await.unwrap();
        let out = queue.pop().await.unwrap();
        assert_eq!(out.batch().items(), 16);
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_on_timeout_after_first_item() {
        let (tx, rx) = mpsc::channel(8);
        let queue = MemoryQueue::new(8);
        let _task = tokio::spawn(
            Batcher::new(&config(1000, 0, 200), "t", Signal::Traces).run(rx, queue.clone()),
        );
        let start = Instant::now();
        tx.send(item(8, 1)).await.unwrap();
        let out = queue.pop().await.unwrap();
        assert_eq!(out.batch().items(), 8);
        assert_eq!(start.elapsed(), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn cuts_at_max_size_and_splits_the_reservation() {
        let (tx, rx) = mpsc::channel(8);
        let queue = MemoryQueue::new(8);
        let task = tokio::spawn(
            Batcher::new(&config(20, 24, 10_000), "t", Signal::Traces).run(rx, queue.clone()),
        );
        tx.send(item(64, 1)).await.unwrap();
        drop(tx);
        task.await.unwrap();
        let mut sizes = Vec::new();
        while let Some(d) = queue.pop().await {
            sizes.push((d.batch().items(), d.item_reservation_items()));
        }
        assert_eq!(sizes, vec![(24, 24), (24, 24), (16, 16)]);
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_pending_on_close() {
        let (tx, rx) = mpsc::channel(8);
        let queue = MemoryQueue::new(8);
        let task = tokio::spawn(
            Batcher::new(&config(1000, 0, 10_000), "t", Signal::Traces).run(rx, queue.clone()),
        );
        tx.send(item(8, 1)).await.unwrap();
        drop(tx);
        task.await.unwrap();
        assert_eq!(queue.pop().await.unwrap().batch().items(), 8);
        assert!(queue.pop().await.is_none(), "queue closed after the flush");
    }
}
