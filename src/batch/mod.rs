//! Batcher: groups one exporter's input into export-sized batches.
//!
//! A task stage (it owns time): flushes when the pending batch reaches
//! `send_batch_size` items, cuts batches larger than `send_batch_max_size`,
//! and flushes whatever is pending `timeout` after its first item arrived.
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
use tokio::time::{sleep_until, Instant};

use crate::model::Signal;
use crate::queue::{Queue, QueuedBatch};
use crate::telemetry::metrics::{BATCH_FLUSHES, BATCH_ITEMS};

pub use config::BatchConfig;

/// The running batcher of one exporter.
#[derive(Debug)]
pub struct Batcher {
    exporter: String,
    signal: Signal,
    send_batch_size: u64,
    send_batch_max_size: Option<u64>,
    timeout: Duration,
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
        }
    }

    /// Runs until `input` closes, then flushes, closes `queue` and returns.
    pub async fn run<Q: Queue>(self, mut input: mpsc::Receiver<QueuedBatch>, queue: Q) {
        let mut pending: Option<(QueuedBatch, Instant)> = None;
        loop {
            let deadline = pending.as_ref().map(|(_, first)| *first + self.timeout);
            let received = tokio::select! {
                item = input.recv() => item,
                _ = sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                    if let Some((batch, _)) = pending.take() {
                        self.flush(batch, Trigger::Timeout, &queue).await;
                    }
                    continue;
                }
            };
            let Some(item) = received else { break };
            match pending.as_mut() {
                Some((held, _)) => {
                    held.batch.append(item.batch);
                    held.reservation.merge(item.reservation);
                }
                None => pending = Some((item, Instant::now())),
            }
            if pending
                .as_ref()
                .is_some_and(|(held, _)| held.batch.items() >= self.send_batch_size)
            {
                if let Some((batch, _)) = pending.take() {
                    self.flush(batch, Trigger::Size, &queue).await;
                }
            }
        }
        if let Some((batch, _)) = pending.take() {
            self.flush(batch, Trigger::Shutdown, &queue).await;
        }
        queue.close();
    }

    /// Pushes `held` to the queue, cut into pieces of at most `send_batch_max_size`.
    async fn flush<Q: Queue>(&self, mut held: QueuedBatch, trigger: Trigger, queue: &Q) {
        loop {
            let piece = match self.send_batch_max_size {
                Some(max) if held.batch.items() > max => {
                    let batch = held.batch.split_to(max);
                    let reservation = held.reservation.split(batch.items());
                    QueuedBatch { batch, reservation }
                }
                _ => {
                    self.push(held, trigger, queue).await;
                    return;
                }
            };
            self.push(piece, trigger, queue).await;
        }
    }

    async fn push<Q: Queue>(&self, item: QueuedBatch, trigger: Trigger, queue: &Q) {
        let labels = [
            ("exporter", self.exporter.clone()),
            ("signal", self.signal.as_str().to_string()),
        ];
        histogram!(BATCH_ITEMS, &labels).record(item.batch.items() as f64);
        counter!(BATCH_FLUSHES, "exporter" => self.exporter.clone(), "signal" => self.signal.as_str(), "trigger" => trigger.as_str()).increment(1);
        if queue.push(item).await.is_err() {
            // Only after close, which only this task does after its last push.
            tracing::error!(exporter = %self.exporter, "Queue closed before the batcher; batch lost.");
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
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
