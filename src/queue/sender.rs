//! The workers that drain one exporter's queue: each pops a batch, encodes it
//! once, sends it with retry, counts the outcome and releases the batch's items.
//!
//! # Partial success
//! When an attempt answers [`ExportError::Partial`], the delivered (and
//! refused) items are counted and their budget released at once; the
//! exporter has cut its request down to the rest, which alone is retried.
//!
//! # Circuit breaker
//! With a [`CircuitBreaker`] (one per exporter, shared by its workers), every
//! attempt first asks it for leave: while it is open the worker waits there,
//! with its batch, and the queue fills behind it. That wait is left out of
//! the batch's `max_elapsed_time`, and after a retryable failure that finds
//! the breaker open it replaces the retry's own backoff wait, so an outage
//! longer than the retry budget delays data instead of dropping it.
//!
//! # Shutdown
//! Workers stop when the queue is closed and empty. When `abort` is
//! cancelled (the drain deadline passed), retry and breaker waits are cut
//! short and what is still queued is dropped and counted with reason
//! `shutdown` — except a disk queue's batches, which are left
//! unacknowledged on disk for the next start.

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, histogram};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::exporter::{DynExporter, ExportError};
use crate::model::Signal;
use crate::telemetry::metrics::{
    reason, EXPORTER_ITEMS_DROPPED, EXPORTER_ITEMS_FAILED, EXPORTER_ITEMS_SENT,
    EXPORTER_REQUEST_DURATION, EXPORTER_RETRIES,
};

use super::breaker::{CircuitBreaker, CircuitState};
use super::retry::RetryPolicy;
use super::{Delivery, Queue};

/// Sends one exporter's queued batches.
#[derive(Clone)]
pub struct Sender {
    id: String,
    signal: Signal,
    exporter: Arc<dyn DynExporter>,
    retry: RetryPolicy,
    breaker: Option<Arc<CircuitBreaker>>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("id", &self.id)
            .field("signal", &self.signal)
            .finish_non_exhaustive()
    }
}

impl Sender {
    pub fn new(
        id: &str,
        signal: Signal,
        exporter: Arc<dyn DynExporter>,
        retry: RetryPolicy,
    ) -> Self {
        Sender {
            id: id.to_string(),
            signal,
            exporter,
            retry,
            breaker: None,
        }
    }

    /// Asks `breaker` (the exporter's, shared by all its workers) before every attempt.
    #[must_use]
    pub fn with_breaker(mut self, breaker: Option<Arc<CircuitBreaker>>) -> Self {
        self.breaker = breaker;
        self
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

    /// Encodes one batch, sends it (with retry) and counts how it ended.
    pub async fn deliver(&self, mut delivery: Delivery, abort: &CancellationToken) {
        let signal = self.signal.as_str();
        let items = delivery.batch().items();
        if abort.is_cancelled() {
            if delivery.is_durable() {
                // Not sent: it stays on disk for the next start.
                return;
            }
            self.dropped(items, reason::SHUTDOWN);
            delivery.ack();
            return;
        }
        let mut request = match self.exporter.encode(delivery.batch(), delivery.context()) {
            Ok(request) => request,
            Err(error) => {
                self.dropped(items, reason::PERMANENT);
                warn_rate_limited(
                    &self.id,
                    &format!("dropped {items} items (encode): {error}"),
                );
                delivery.ack();
                return;
            }
        };
        let mut retrying = self.retry.start();
        loop {
            // Items this attempt carries: fewer after a partial success.
            let attempt_items = self.exporter.items(&request);
            let permit = match &self.breaker {
                Some(breaker) => {
                    let waiting = Instant::now();
                    let permit = breaker.admit(abort).await;
                    retrying.exclude(waiting.elapsed());
                    let Some(permit) = permit else {
                        if delivery.is_durable() {
                            return; // shutting down: stays on disk
                        }
                        self.dropped(attempt_items, reason::SHUTDOWN);
                        warn_rate_limited(
                            &self.id,
                            &format!("dropped {attempt_items} items (shutdown) at an open circuit breaker"),
                        );
                        break;
                    };
                    Some(permit)
                }
                None => None,
            };
            let started = Instant::now();
            let result = self.exporter.send(&mut request).await;
            if let Some(permit) = permit {
                permit.record(&result);
            }
            histogram!(EXPORTER_REQUEST_DURATION, "exporter" => self.id.clone(), "signal" => signal)
                .record(started.elapsed().as_secs_f64());
            let error = match result {
                Ok(outcome) => {
                    let rejected = outcome.rejected_items.min(attempt_items);
                    self.sent(attempt_items - rejected);
                    if rejected > 0 {
                        self.dropped(rejected, reason::PARTIAL_SUCCESS);
                        warn_rate_limited(
                            &self.id,
                            &format!("backend rejected {rejected} items: {}", outcome.message),
                        );
                    }
                    break;
                }
                Err(error) => error,
            };
            if let ExportError::Partial {
                delivered,
                rejected,
                ..
            } = &error
            {
                let delivered = (*delivered).min(attempt_items);
                let rejected = (*rejected).min(attempt_items - delivered);
                self.sent(delivered);
                if rejected > 0 {
                    self.dropped(rejected, reason::PARTIAL_SUCCESS);
                }
                delivery.release(delivered + rejected);
            }
            let failed = self.exporter.items(&request);
            counter!(EXPORTER_ITEMS_FAILED, "exporter" => self.id.clone(), "signal" => signal, "reason" => error.kind())
                .increment(failed);
            if failed == 0 {
                break;
            }
            if self.breaker_open() && error.is_retryable() && self.retry.is_enabled() {
                // The breaker's wait (not charged to the budget) stands in for the retry's own:
                // a long outage costs each batch nothing but its failed attempts.
                counter!(EXPORTER_RETRIES, "exporter" => self.id.clone(), "signal" => signal)
                    .increment(1);
                tracing::debug!(exporter = %self.id, %error, "Export failed, will retry once the circuit breaker lets it.");
                continue;
            }
            let Some(wait) = retrying.next_wait(&error, abort) else {
                if abort.is_cancelled() && delivery.is_durable() {
                    return; // stays on disk
                }
                self.give_up(failed, &error, abort);
                break;
            };
            counter!(EXPORTER_RETRIES, "exporter" => self.id.clone(), "signal" => signal)
                .increment(1);
            tracing::debug!(exporter = %self.id, %error, ?wait, "Export failed, will retry.");
            if !retrying.wait(wait, abort).await {
                if delivery.is_durable() {
                    return; // shutting down: stays on disk
                }
                self.give_up(failed, &error, abort);
                break;
            }
        }
        delivery.ack();
    }

    /// Whether the exporter's breaker stops attempts right now (open, or half-open with its probe out).
    fn breaker_open(&self) -> bool {
        self.breaker
            .as_ref()
            .is_some_and(|breaker| breaker.state() != CircuitState::Closed)
    }

    fn give_up(&self, items: u64, error: &ExportError, abort: &CancellationToken) {
        let why = match (error, abort.is_cancelled()) {
            (_, true) => reason::SHUTDOWN,
            (ExportError::Permanent { .. }, false) => reason::PERMANENT,
            (_, false) => reason::RETRIES_EXHAUSTED,
        };
        self.dropped(items, why);
        warn_rate_limited(&self.id, &format!("dropped {items} items ({why}): {error}"));
    }

    fn sent(&self, items: u64) {
        counter!(EXPORTER_ITEMS_SENT, "exporter" => self.id.clone(), "signal" => self.signal.as_str())
            .increment(items);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    use crate::exporter::{ExportOutcome, Exporter};
    use crate::model::{Batch, Context};
    use crate::queue::QueuedBatch;
    use crate::settings::breaker::CircuitBreakerConfig;
    use crate::settings::delivery::RetryConfig;
    use crate::settings::units::HumanDuration;
    use crate::testkit;

    /// A backend that answers 503 until `up_at`, then takes everything.
    #[derive(Debug)]
    struct Outage {
        up_at: Instant,
        attempts: AtomicU64,
        delivered: AtomicU64,
    }

    impl Outage {
        fn for_secs(secs: u64) -> Arc<Outage> {
            Arc::new(Outage {
                up_at: Instant::now() + Duration::from_secs(secs),
                attempts: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
            })
        }
    }

    impl Exporter for Arc<Outage> {
        type Request = u64;

        fn encode(&self, batch: &Batch, _context: &Context) -> Result<u64, ExportError> {
            Ok(batch.items())
        }

        async fn send(&self, request: &mut u64) -> Result<ExportOutcome, ExportError> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if Instant::now() < self.up_at {
                return Err(ExportError::Retryable {
                    reason: "503".into(),
                    retry_after: None,
                });
            }
            self.delivered.fetch_add(*request, Ordering::SeqCst);
            Ok(ExportOutcome::default())
        }

        fn items(&self, request: &u64) -> u64 {
            *request
        }
    }

    /// Retries every second, giving up 10 s after the first attempt.
    fn retry() -> RetryPolicy {
        RetryPolicy::from_config(&RetryConfig {
            enabled: true,
            initial_interval: HumanDuration::from_secs(1),
            randomization_factor: 0.0,
            multiplier: 1.0,
            max_interval: HumanDuration::from_secs(1),
            max_elapsed_time: HumanDuration::from_secs(10),
        })
    }

    fn sender(backend: &Arc<Outage>, breaker: Option<Arc<CircuitBreaker>>) -> Sender {
        Sender::new("otlp/t", Signal::Traces, Arc::new(backend.clone()), retry())
            .with_breaker(breaker)
    }

    fn breaker() -> Arc<CircuitBreaker> {
        Arc::new(CircuitBreaker::new(
            "otlp/t",
            &CircuitBreakerConfig {
                consecutive_failures: 3,
                ..CircuitBreakerConfig::default()
            },
        ))
    }

    fn delivery() -> Delivery {
        Delivery::in_memory(QueuedBatch::detached(testkit::batch(Signal::Traces, 1, 10)))
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_at_an_open_breaker_does_not_spend_the_retry_budget() {
        // Without a breaker, a 100 s outage outlasts the 10 s budget: the batch is dropped.
        let backend = Outage::for_secs(100);
        sender(&backend, None)
            .deliver(delivery(), &CancellationToken::new())
            .await;
        assert_eq!(backend.delivered.load(Ordering::SeqCst), 0);
        assert!(backend.attempts.load(Ordering::SeqCst) >= 10);

        // With one, the batch waits for the backend and arrives.
        let backend = Outage::for_secs(100);
        let start = Instant::now();
        sender(&backend, Some(breaker()))
            .deliver(delivery(), &CancellationToken::new())
            .await;
        assert_eq!(backend.delivered.load(Ordering::SeqCst), 10);
        assert!(start.elapsed() >= Duration::from_secs(100));
        // 3 to open it, then probes 1 + 2 + 4 + … s apart (±20 %): 7 or 8 more, not 100.
        let attempts = backend.attempts.load(Ordering::SeqCst);
        assert!((5..=14).contains(&attempts), "{attempts} attempts");
    }

    #[tokio::test(start_paused = true)]
    async fn an_hour_long_outage_drops_nothing() {
        // Retry waits of up to 5 s against a 10 s budget: charged after every failed probe,
        // they would use the budget up within a few probes.
        let growing = RetryPolicy::from_config(&RetryConfig {
            enabled: true,
            initial_interval: HumanDuration::from_secs(1),
            randomization_factor: 0.0,
            multiplier: 2.0,
            max_interval: HumanDuration::from_secs(5),
            max_elapsed_time: HumanDuration::from_secs(10),
        });
        let backend = Outage::for_secs(3600);
        Sender::new("otlp/t", Signal::Traces, Arc::new(backend.clone()), growing)
            .with_breaker(Some(breaker()))
            .deliver(delivery(), &CancellationToken::new())
            .await;
        assert_eq!(backend.delivered.load(Ordering::SeqCst), 10);
        // 3 to open, ~6 probes while the wait doubles to 60 s, then one a minute.
        let attempts = backend.attempts.load(Ordering::SeqCst);
        assert!((60..=90).contains(&attempts), "{attempts} attempts");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_off_still_make_one_attempt() {
        let backend = Outage::for_secs(100);
        Sender::new(
            "otlp/t",
            Signal::Traces,
            Arc::new(backend.clone()),
            RetryPolicy::disabled(),
        )
        .with_breaker(Some(breaker()))
        .deliver(delivery(), &CancellationToken::new())
        .await;
        assert_eq!(backend.attempts.load(Ordering::SeqCst), 1);
        assert_eq!(backend.delivered.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn workers_share_the_breaker_and_stop_attempting_while_it_is_open() {
        let backend = Outage::for_secs(60);
        let queue = crate::queue::MemoryQueue::new(64);
        for _ in 0..20 {
            queue
                .push(QueuedBatch::detached(testkit::batch(Signal::Traces, 1, 10)))
                .await
                .unwrap();
        }
        queue.close();
        let mut tasks = JoinSet::new();
        sender(&backend, Some(breaker())).spawn(queue, 4, CancellationToken::new(), &mut tasks);
        while tasks.join_next().await.is_some() {}
        assert_eq!(backend.delivered.load(Ordering::SeqCst), 200);
        // Four workers retrying every second for 60 s would make ~240 attempts.
        let during_outage = backend.attempts.load(Ordering::SeqCst) - 20;
        assert!(during_outage <= 20, "{during_outage} failed attempts");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cuts_the_breaker_wait_short() {
        let backend = Outage::for_secs(3600);
        let abort = CancellationToken::new();
        let aborter = {
            let abort = abort.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                abort.cancel();
            })
        };
        let start = Instant::now();
        sender(&backend, Some(breaker()))
            .deliver(delivery(), &abort)
            .await;
        assert!(
            start.elapsed() <= Duration::from_secs(31),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(backend.delivered.load(Ordering::SeqCst), 0);
        aborter.await.unwrap();
    }
}
