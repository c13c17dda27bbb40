//! The workers that drain one exporter's queue: each pops a batch, sends it
//! with retry, counts the outcome and releases the batch's items.
//!
//! # Shutdown
//! Workers stop when the queue is closed and empty. When `abort` is
//! cancelled (the drain deadline passed), retry waits are cut short and what
//! is still queued is dropped and counted with reason `shutdown`.

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, histogram};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::exporter::{ExportError, Exporter};
use crate::model::Signal;
use crate::telemetry::metrics::{
    reason, EXPORTER_ITEMS_DROPPED, EXPORTER_ITEMS_FAILED, EXPORTER_ITEMS_SENT,
    EXPORTER_REQUEST_DURATION, EXPORTER_RETRIES,
};

use super::retry::RetryPolicy;
use super::{Delivery, Queue};

/// Sends one exporter's queued batches.
#[derive(Debug, Clone)]
pub struct Sender {
    id: String,
    signal: Signal,
    exporter: Arc<Exporter>,
    retry: RetryPolicy,
}

impl Sender {
    pub fn new(id: &str, signal: Signal, exporter: Arc<Exporter>, retry: RetryPolicy) -> Self {
        Sender {
            id: id.to_string(),
            signal,
            exporter,
            retry,
        }
    }

    /// Starts `consumers` workers on `queue` into `tasks`.
    pub fn spawn<Q: Queue + Clone>(
        &self,
        queue: Q,
        consumers: usize,
        abort: CancellationToken,
        tasks: &mut JoinSet<()>,
    ) {
        for _ in 0..consumers.max(1) {
            let sender = self.clone();
            let queue = queue.clone();
            let abort = abort.clone();
            tasks.spawn(async move {
                while let Some(delivery) = queue.pop().await {
                    sender.deliver(delivery, &abort).await;
                }
            });
        }
    }

    /// Sends one batch (with retry) and counts how it ended.
    pub async fn deliver(&self, delivery: Delivery, abort: &CancellationToken) {
        let batch = delivery.batch();
        let items = batch.items();
        let signal = self.signal.as_str();
        if abort.is_cancelled() {
            self.dropped(items, reason::SHUTDOWN);
            delivery.ack();
            return;
        }
        let result = self
            .retry
            .run(
                abort,
                || async {
                    let started = Instant::now();
                    let result = self.exporter.export(batch).await;
                    histogram!(EXPORTER_REQUEST_DURATION, "exporter" => self.id.clone(), "signal" => signal)
                        .record(started.elapsed().as_secs_f64());
                    if let Err(error) = &result {
                        counter!(EXPORTER_ITEMS_FAILED, "exporter" => self.id.clone(), "signal" => signal, "reason" => error.kind())
                            .increment(items);
                    }
                    result
                },
                |error: &ExportError, wait: Duration| {
                    counter!(EXPORTER_RETRIES, "exporter" => self.id.clone(), "signal" => signal).increment(1);
                    tracing::debug!(exporter = %self.id, %error, ?wait, "Export failed, will retry.");
                },
            )
            .await;
        match result {
            Ok(outcome) => {
                let rejected = outcome.rejected_items.min(items);
                counter!(EXPORTER_ITEMS_SENT, "exporter" => self.id.clone(), "signal" => signal)
                    .increment(items - rejected);
                if rejected > 0 {
                    self.dropped(rejected, reason::PARTIAL_SUCCESS);
                    warn_rate_limited(
                        &self.id,
                        &format!("backend rejected {rejected} items: {}", outcome.message),
                    );
                }
            }
            Err(error) => {
                let why = match (&error, abort.is_cancelled()) {
                    (_, true) => reason::SHUTDOWN,
                    (ExportError::Retryable { .. }, false) => reason::RETRIES_EXHAUSTED,
                    (ExportError::Permanent { .. }, false) => reason::PERMANENT,
                };
                self.dropped(items, why);
                warn_rate_limited(&self.id, &format!("dropped {items} items ({why}): {error}"));
            }
        }
        delivery.ack();
    }

    fn dropped(&self, items: u64, why: &'static str) {
        counter!(EXPORTER_ITEMS_DROPPED, "exporter" => self.id.clone(), "signal" => self.signal.as_str(), "reason" => why)
            .increment(items);
    }
}

/// Logs at most one warning per exporter every 10 seconds; the counters carry the rest.
fn warn_rate_limited(exporter: &str, message: &str) {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static LAST: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);
    let now = Instant::now();
    let Ok(mut guard) = LAST.lock() else { return };
    let last = guard.get_or_insert_with(HashMap::new);
    match last.get(exporter) {
        Some(at) if now.duration_since(*at) < Duration::from_secs(10) => {}
        _ => {
            last.insert(exporter.to_string(), now);
            tracing::warn!(exporter, error = message, "Export failed; items dropped.");
        }
    }
}
