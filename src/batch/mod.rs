//! Batcher: groups one exporter's input into export-sized batches.
//!
//! The first user of the stage contract ([`Transform`]): it holds items and
//! says when they are due. It keeps one pending batch per [`Context`] (a
//! batch never mixes tenants or routes), emits a pending batch when it
//! reaches `send_batch_size` items, cuts batches larger than
//! `send_batch_max_size`, and emits whatever is pending `timeout` after its
//! first item arrived.
//! [`Batcher::run`] drives it with [`run_timed`] into the exporter's queue.
//!
//! # Backpressure
//! Its input is bounded; its output is the exporter's [`Queue`], whose push
//! waits while the queue is at its bound.
//!
//! # Shutdown
//! When the input closes it flushes what is pending, closes the queue and returns.

pub mod config;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use metrics::{counter, histogram};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::model::{Context, Signal};
use crate::queue::{Queue, QueuedBatch};
use crate::stage::{run_timed, StageError, Transform};
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
    /// The batch being filled per context, and when its first items arrived.
    pending: HashMap<Context, (QueuedBatch, Instant)>,
    /// Contexts in the order their pending batch started, with that start:
    /// the front is the next due. Entries whose batch has left since (or was
    /// restarted) are stale and skipped.
    due: VecDeque<(Instant, Context)>,
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
            pending: HashMap::new(),
            due: VecDeque::new(),
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

    /// Emits the pending batch of `context`, cut into pieces of at most `send_batch_max_size`.
    fn emit(&mut self, context: &Context, trigger: Trigger, out: &mut Vec<QueuedBatch>) {
        let Some((mut held, _)) = self.pending.remove(context) else {
            return;
        };
        if let Some(max) = self.send_batch_max_size {
            while held.batch.items() > max {
                let batch = held.batch.split_to(max);
                let reservation = held.reservation.split(batch.items());
                self.record(batch.items(), trigger);
                out.push(QueuedBatch {
                    batch,
                    context: held.context.clone(),
                    reservation,
                    durable: None,
                });
            }
        }
        self.record(held.batch.items(), trigger);
        out.push(held);
    }

    /// Drops stale entries from the front of `due`.
    fn skip_stale(&mut self) {
        while let Some((started, context)) = self.due.front() {
            match self.pending.get(context) {
                Some((_, first)) if first == started => return,
                _ => {
                    self.due.pop_front();
                }
            }
        }
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
        let context = item.context.clone();
        let full = match self.pending.get_mut(&context) {
            Some((held, _)) => {
                held.batch.append(item.batch);
                held.reservation.merge(item.reservation);
                held.batch.items() >= self.send_batch_size
            }
            None => {
                let full = item.batch.items() >= self.send_batch_size;
                if !full {
                    let now = Instant::now();
                    self.due.push_back((now, context.clone()));
                    self.pending.insert(context.clone(), (item, now));
                } else {
                    self.pending.insert(context.clone(), (item, Instant::now()));
                }
                full
            }
        };
        if full {
            self.emit(&context, Trigger::Size, out);
        }
        Ok(())
    }

    fn deadline(&self) -> Option<Instant> {
        // Stale entries may sit in front; their deadline is early, which only
        // makes `on_deadline` run, find nothing due and skip them.
        self.due.front().map(|(first, _)| *first + self.timeout)
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<QueuedBatch>) {
        loop {
            self.skip_stale();
            let Some((first, context)) = self.due.front() else {
                return;
            };
            if *first + self.timeout > now {
                return;
            }
            let context = context.clone();
            self.due.pop_front();
            self.emit(&context, Trigger::Timeout, out);
        }
    }

    fn flush(&mut self, out: &mut Vec<QueuedBatch>) {
        self.due.clear();
        let contexts: Vec<Context> = self.pending.keys().cloned().collect();
        for context in contexts {
            self.emit(&context, Trigger::Shutdown, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::MemoryQueue;
    use crate::settings::units::HumanDuration;

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
        QueuedBatch::detached(batch)
    }

    fn for_tenant(tenant: &str, spans: usize, seed: u64) -> QueuedBatch {
        let mut item = item(spans, seed);
        item.context = Context::default().with_tenant(tenant);
        item
    }

    #[test]
    fn batches_never_mix_contexts_and_each_context_is_due_on_its_own() {
        let mut batcher = Batcher::new(&config(16, 0, 200), "t", Signal::Traces);
        let mut out = Vec::new();
        batcher.process(for_tenant("a", 8, 1), &mut out).unwrap();
        let due_a = batcher.deadline().unwrap();
        batcher.process(for_tenant("b", 12, 2), &mut out).unwrap();
        batcher.process(for_tenant("a", 8, 3), &mut out).unwrap();
        assert_eq!(out.len(), 1, "tenant a reached 16 on its own");
        assert_eq!(out[0].context.tenant(), Some("a"));
        assert_eq!(out[0].batch.items(), 16);
        assert_eq!(out[0].reservation.items(), 16);
        // a's entry in the due queue is stale now: the deadline emits b alone, not a again.
        batcher.on_deadline(due_a + Duration::from_millis(500), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].context.tenant(), Some("b"));
        assert_eq!(out[1].batch.items(), 12);
        assert_eq!(batcher.deadline(), None, "nothing held");
        batcher.process(for_tenant("c", 1, 4), &mut out).unwrap();
        batcher.process(item(1, 5), &mut out).unwrap();
        batcher.flush(&mut out);
        let mut flushed: Vec<_> = out[2..].iter().map(|q| q.context.tenant()).collect();
        flushed.sort();
        assert_eq!(flushed, [None, Some("c")]);
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
